"""How long the input pulses are: the array conducts for a PWM pulse's length, so its energy goes by the mean input.

The placement keeps each segment's input clip value (`dac_range`) but not how large its inputs are, so without
more the estimator prices every pulse at full length: an upper bound on the array's energy. Given the calibration
statistics of the range pass (passes.ranges.CalibrationStats, or anything whose `segment_input(segment)` has a
`percentile(percent)` of |x|), a segment's fill is its mean clipped |x| over its clip value: the mean of
min(Q(p), range) over the quantile function Q, on a grid of percentiles. Only PWM pulses vary in length.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from compiler.ir import PlacedGraph

FULL_LENGTH, CALIBRATED = "full_length", "calibrated_mean"
PERCENTILES = tuple(100.0 * (i + 0.5) / 40 for i in range(40))  # midpoints of 40 equal quantile slices


@dataclass(frozen=True)
class PulsePricing:
    mode: str                       # FULL_LENGTH (upper bound) or CALIBRATED
    fill: dict[int, float]          # segment id -> mean pulse length / full length (absent: 1)
    segments_calibrated: int

    @property
    def mean_fill(self) -> float:
        return math.fsum(self.fill.values()) / len(self.fill) if self.fill else 1.0

    def to_json(self) -> dict:
        note = ("every input pulse priced at full length: an upper bound on the array's energy (no calibration "
                "statistics were given to the estimator)") if self.mode == FULL_LENGTH else \
            (f"PWM pulses priced by the mean calibrated input of each segment ({self.segments_calibrated} segments)")
        return {"pricing": self.mode, "mean_fill": self.mean_fill, "segments_calibrated": self.segments_calibrated,
                "note": note}


def pulse_pricing(placed: PlacedGraph, calibration: Any = None,
                  input_fill: Mapping[int, float] | None = None) -> PulsePricing:
    """Full length, or per segment from `input_fill` (id -> fraction) or from `calibration` statistics."""
    if placed.hw.dac.encoding != "PWM" or (calibration is None and not input_fill):
        return PulsePricing(FULL_LENGTH, {}, 0)
    fill = {int(k): min(max(float(v), 0.0), 1.0) for k, v in (input_fill or {}).items()}
    if calibration is not None:
        for seg in placed.segments:
            if seg.id in fill or not seg.dac_range or seg.dac_range <= 0:
                continue
            hist = calibration.segment_input(seg)
            clipped = [min(hist.percentile(p), seg.dac_range) for p in PERCENTILES]
            fill[seg.id] = math.fsum(clipped) / len(clipped) / seg.dac_range
    return PulsePricing(CALIBRATED if fill else FULL_LENGTH, fill, len(fill))
