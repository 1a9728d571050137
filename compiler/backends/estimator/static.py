"""Static power: the leakage of the logic (per mm^2) and of the SRAM (per bit) that is powered while a model runs.

Powered: the tiles with work (all of a chip's tiles unless `static.idle_tiles_gated`: PCM keeps its weights
unpowered, so an idle tile can be switched off) and every chip's shared digital units. Not counted: the PCM array
(its access devices are off between reads) and the converters, whose published figure of merit is their total
power, leakage included, per conversion.
"""
from __future__ import annotations

import math

from compiler.hw_spec import HardwareSpec
from compiler.backends.estimator.area import ChipArea
from compiler.backends.estimator.components import LEAKING_LOGIC
from compiler.backends.estimator.fields import require



def static_power(hw: HardwareSpec, area: ChipArea, tiles: int, chips: int) -> dict[str, float]:
    """Leakage (W) by component with `tiles` tiles powered over `chips` chips."""
    logic_W_per_mm2 = require(hw, "static.logic_mW_per_mm2", "logic leakage per area") * 1e-3
    sram_W_per_bit = require(hw, "static.sram_pW_per_bit", "SRAM leakage per bit") * 1e-12
    gated = require(hw, "static.idle_tiles_gated", "whether idle tiles are power-gated")
    powered = tiles if gated else chips * hw.tile.count
    parts = area.by_component_mm2(powered)
    power = {c: logic_W_per_mm2 * parts[c] * (chips if c in area.shared_um2 else 1) for c in LEAKING_LOGIC}
    power["sram"] = sram_W_per_bit * powered * hw.area.sram_KiB_per_tile * 8192
    return power


def total_W(parts: dict[str, float]) -> float:
    return math.fsum(parts.values())
