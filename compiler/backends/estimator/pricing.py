"""One phase priced on the AIMC chip: the one loop every figure goes through (an inference, a point of the series, a
sensitivity variant, a prefill, a decode step).

A workload (workload.py, one Phase) becomes its stages (chip.py); a decoder's KV cache traffic, when given, loads
its attention stages (kv_cache.py); activations crossing chips add link stages (links.py); the batch's sequences
pipeline and the stages are scheduled (schedule.py); the leakage is gated (gating.py), or a reference evaluation's
rescaled to this spec (gating.rescaled: the sensitivity's variants). The digital baseline is priced apart
(baseline.py).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace
from typing import Mapping

from compiler.hw_spec import HardwareSpec
from compiler.ir import PlacedGraph
from compiler.backends.estimator.area import ChipArea, chip_area
from compiler.backends.estimator.chip import price_on_chip
from compiler.backends.estimator.gating import Leakage, leakage, rescaled, same_activity
from compiler.backends.estimator.kv_cache import KvPlacement, load_stages
from compiler.backends.estimator.links import NO_TRAFFIC, LinkTraffic, add_links
from compiler.backends.estimator.options import tiles_powered, weight_sram_bits
from compiler.backends.estimator.prices import PRECISION_BYTES, digital_prices
from compiler.backends.estimator.schedule import Schedule, Stage, StageId, independent_sequences, schedule
from compiler.backends.estimator.workload import Workload


@dataclass(frozen=True)
class Chip:
    """What the spec and the placement fix: the area, the tiles in use, the pulse lengths."""
    hw: HardwareSpec
    area: ChipArea
    tiles_used: int
    chips: int
    fill: Mapping[int, float]
    layouts: dict = field(default_factory=dict, compare=False)  # the blocks' chip layouts (links.py), reused
    weight_sram_bits: int = 0        # SRAM bits holding digital blocks' weights (--accuracy-budget), powered

    @staticmethod
    def of(placed: PlacedGraph, fill: Mapping[int, float]) -> "Chip":
        return Chip(placed.hw, chip_area(placed.hw), tiles_powered(placed), max(placed.chips_used, 1), fill,
                    weight_sram_bits=weight_sram_bits(placed))

    def with_hw(self, hw: HardwareSpec) -> "Chip":
        return Chip(hw, chip_area(hw), self.tiles_used, self.chips, self.fill, self.layouts, self.weight_sram_bits)

    def leakage(self, stages: list[Stage], timing: Schedule, retained_sram_bits: float = 0.0) -> Leakage:
        """The leakage of `stages` run as `timing` on these chips, idle tiles and units gated (gating.py); the SRAM
        holding digital blocks' weights (and `retained_sram_bits` more: a KV cache) stays powered."""
        return leakage(self.hw, self.area, self.chips, stages, timing, tiles_working=self.tiles_used,
                       retained_sram_bits=self.weight_sram_bits + retained_sram_bits)


@dataclass(frozen=True)
class KvTraffic:
    """A decoder phase's KV cache traffic: the cache as placed (kv_cache.place), each attention layer's stages (in
    the placement's layer order), one layer's bytes per token position of the whole batch, and the token positions
    the cache holds before the phase, those it reads and those it writes."""
    placement: KvPlacement
    layers: tuple[tuple[StageId, ...], ...]
    layer_bytes: float
    held: int
    read: int
    write: int

    @property
    def retained_sram_bits(self) -> float:
        """SRAM bits holding the cache: they stay powered through the phase (gating.py)."""
        tiers = self.placement.bytes_by_tier
        return 8 * (tiers.get("sram", 0.0) + tiers.get("package sram", 0.0))


@dataclass
class Evaluation:
    """One workload priced on the chip: its stages, schedule, leakage (None where rescaled from a reference, then
    `static_J` only), chip-link traffic and KV cache bytes moved by tier."""
    workload: Workload
    chip: Chip
    stages: list[Stage]
    schedule: Schedule
    leakage: Leakage | None
    static_J: float
    links: LinkTraffic = NO_TRAFFIC
    kv_bytes_by_tier: dict[str, float] = field(default_factory=dict)

    @functools.cached_property
    def energy_by_component_J(self) -> dict[str, float]:
        """Component -> joules, the leakage as `static`."""
        parts: dict[str, list[float]] = {}
        for s in self.stages:
            for component, joules in s.energy_J.items():
                parts.setdefault(component, []).append(joules)
        parts.setdefault("static", []).append(self.static_J)
        return {c: math.fsum(v) for c, v in parts.items()}

    @property
    def energy_J(self) -> float:
        return math.fsum(self.energy_by_component_J.values())


def evaluate(workload: Workload, chip: Chip, kv: KvTraffic | None = None, reference: Evaluation | None = None,
             exact: bool = True, analog_cache: dict | None = None, gate: bool = True) -> Evaluation:
    """`workload` priced on `chip`. kv: a decoder's cache traffic in this phase; reference: an evaluation of the
    same workload under another spec whose leakage is rescaled to this one (gating.rescaled) instead of gating anew:
    only where the schedules keep every tile and unit busy at the same times (`exact`, gating.same_activity), or
    always (not `exact`: the decode ranges' approximation); gated anew where the spec changes the gating itself.
    analog_cache: batch -> the blocks' stages, kept by a caller whose workloads' blocks do not change with the
    context (decode steps). gate=False: no leakage (static_J 0), for a caller that reads only stages and schedule."""
    hw = chip.hw
    if analog_cache is None:
        stages = price_on_chip(workload, hw, chip.fill)
    else:
        analog = analog_cache.get(workload.batch)
        if analog is None:
            analog = analog_cache[workload.batch] = price_on_chip(replace(workload, digital=()), hw, chip.fill)
        stages = analog + price_on_chip(replace(workload, analog=()), hw, chip.fill)
    tiers: dict[str, float] = {}
    if kv is not None:
        digital = digital_prices(hw, "energy", hw.digital.other_precision)
        tiers = load_stages(stages, kv.layers, kv.placement, hw, digital, kv.layer_bytes, kv.held, kv.read,
                            kv.write)
    links = NO_TRAFFIC
    if chip.chips > 1:  # activations of consecutive layers on different chips cross a chip-to-chip link
        stages, links = add_links(stages, workload, hw, PRECISION_BYTES[hw.digital.other_precision],
                                  cache=chip.layouts)
    if workload.has_sequence_dim:  # the batch's sequences are independent: they pipeline (schedule.py)
        independent_sequences(stages, workload.batch)
    timing = schedule(stages)
    static_J = None
    if reference is not None and (not exact or same_activity(stages, timing, reference.stages, reference.schedule)):
        ref = reference.chip
        static_J = rescaled(reference.leakage, ref.hw, ref.area, hw, chip.area, timing.latency_s)
    leak = None
    if static_J is None and not gate:
        static_J = 0.0
    if static_J is None:
        leak = chip.leakage(stages, timing, retained_sram_bits=kv.retained_sram_bits if kv is not None else 0.0)
        static_J = leak.energy_J
    return Evaluation(workload, chip, stages, timing, leak, static_J, links, tiers)
