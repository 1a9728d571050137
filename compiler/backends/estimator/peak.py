"""Peak MVM throughput of a chip: every tile busy with full-size MVMs, back to back.

This is the figure chips are quoted with (HERMES: 63.1 TOPS at 9.76 TOPS/W in 1-phase mode, Le Gallo
et al., Nature Electronics 2023). It is built from the same per-action prices as the workload
estimate (compiler.backends.estimator.prices.tile_mvm_energy): ops = 2 x rows x cols per MVM, inputs uniform
over their range (PEAK_INPUT_FILL: the chips' papers do not publish the inputs of their measured MVMs; a PWM
pulse conducts for its input's length, so full-length pulses would bound the array's energy from above), one
input vector in and one output vector out over the on-chip network per MVM, the chip's static power
(every tile powered) shared by the tiles, and the chip's area for TOPS/mm^2. The derivation for HERMES and
for Ambrogio et al.'s chip is in docs/estimator.md.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from compiler.hw_spec import HardwareSpec
from compiler.backends.estimator.area import chip_area
from compiler.backends.estimator.prices import segment_time, tile_mvm_energy, tile_prices
from compiler.backends.estimator.static import static_power, total_W

# Mean |x| over full scale of inputs uniform over the range: the peak's PWM pulses are half their full length on
# average (an assumption; its effect on the validation is in docs/estimator.md, section 6).
PEAK_INPUT_FILL = 0.5


@dataclass(frozen=True)
class PeakThroughput:
    tiles: int
    ops_per_mvm: int
    mvm_time_s: float
    mvm_energy_J: float
    energy_by_component_J: dict[str, float]     # one tile's MVM, its share of the static power included
    tops: float
    tops_per_w: float
    chip_area_mm2: float
    tile_area_mm2: float
    tops_per_mm2: float
    static_power_W: float

    def to_json(self) -> dict:
        return asdict(self)


def peak_throughput(hw: HardwareSpec) -> PeakThroughput:
    """All `hw.tile.count` tiles of one chip doing full rows x cols MVMs."""
    tile = tile_prices(hw)
    rows, cols = hw.tile.rows, hw.tile.cols
    energy = tile_mvm_energy(tile, rows, cols, PEAK_INPUT_FILL if hw.dac.encoding == "PWM" else 1.0)
    mvm_time = segment_time(tile, rows, cols)
    area = chip_area(hw)
    static_W = total_W(static_power(hw, area, tiles=hw.tile.count, chips=1))
    energy["static"] = static_W * mvm_time / hw.tile.count
    mvm_energy = math.fsum(energy.values())
    ops = 2 * rows * cols
    tops = hw.tile.count * ops / mvm_time / 1e12
    return PeakThroughput(tiles=hw.tile.count, ops_per_mvm=ops, mvm_time_s=mvm_time, mvm_energy_J=mvm_energy,
                          energy_by_component_J=energy, tops=tops, tops_per_w=ops / mvm_energy / 1e12,
                          chip_area_mm2=area.chip_mm2, tile_area_mm2=area.tile_mm2,
                          tops_per_mm2=tops / area.chip_mm2, static_power_W=static_W)
