"""Static power: the leakage of the logic (per mm^2 of standard cells) and of the SRAM (per bit).

Leaking: each tile's logic (input drivers, local digital unit, control, router) and activation SRAM, and each chip's
shared digital and attention units. Not counted: the PCM array (its access devices are off between reads) and the
converters, whose published figure of merit is their total power, leakage included, per conversion. Which of them
are powered when is gating.py's (power gating of idle tiles and units, from the schedule).
"""
from __future__ import annotations

import math

from compiler.hw_spec import HardwareSpec
from compiler.backends.estimator.area import ChipArea
from compiler.backends.estimator.components import LEAKING_LOGIC
from compiler.backends.estimator.fields import UM2_PER_MM2, require

SRAM = "sram"


def tile_leakage_W(hw: HardwareSpec, area: ChipArea) -> dict[str, float]:
    """One powered tile's leakage (W) by component: its leaking logic and its activation SRAM."""
    logic_W_per_mm2 = require(hw, "static.logic_mW_per_mm2", "logic leakage per area") * 1e-3
    sram_W_per_bit = require(hw, "static.sram_pW_per_bit", "SRAM leakage per bit") * 1e-12
    power = {c: logic_W_per_mm2 * area.tile_um2[c] / UM2_PER_MM2 for c in LEAKING_LOGIC if c in area.tile_um2}
    power[SRAM] = sram_W_per_bit * hw.area.sram_KiB_per_tile * 8192
    return power


def shared_leakage_W(hw: HardwareSpec, area: ChipArea) -> dict[str, float]:
    """One chip's shared units' leakage (W) by component, all powered."""
    logic_W_per_mm2 = require(hw, "static.logic_mW_per_mm2", "logic leakage per area") * 1e-3
    return {c: logic_W_per_mm2 * um2 / UM2_PER_MM2 for c, um2 in area.shared_um2.items() if c in LEAKING_LOGIC}


def static_power(hw: HardwareSpec, area: ChipArea, tiles: int, chips: int) -> dict[str, float]:
    """Leakage (W) by component with `tiles` tiles and every shared unit of `chips` chips powered (no gating)."""
    power = {c: tiles * w for c, w in tile_leakage_W(hw, area).items()}
    for c, w in shared_leakage_W(hw, area).items():
        power[c] = power.get(c, 0.0) + chips * w
    return power


def node_warnings(hw: HardwareSpec) -> list[str]:
    """Leakage per area is published at a node; it is not scaled to another (no scaling rule is used): said."""
    node = getattr(hw.static, "node_nm", None) if hw.static is not None else None
    if node is None or node == hw.technology_nm:
        return []
    return [f"static.logic_mW_per_mm2: the leakage per area was published at {node:g} nm and is used unscaled at the "
            f"chip's {hw.technology_nm:g} nm"]


def total_W(parts: dict[str, float]) -> float:
    return math.fsum(parts.values())
