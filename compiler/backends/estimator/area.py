"""Silicon area per component of a tile and of one chip, from the spec's `area` section and the converter's.

A tile: the PCM array (rows x cols weight cells), its converters, its input drivers (a line driver and a PWM
register and comparator per row), its programming circuitry (a driver per group of columns forming the ~3 V,
100-700 uA write pulses, and each row's select-line drivers), its local digital unit (lanes for the columns' affine
scaling), its control, its router (5 ports with buffers of link width) and its activation SRAM. The chip adds the
shared digital lanes and attention MACs. Logic is built from standard cells published at a reference node (Aladdin,
40 nm) and scaled by (node / node_ref)^2; integer units of the same width stand in for floating-point ones (the
library has none); the other areas are the spec's, at its node. Derivations: docs/estimator.md, 4; the validation
against HERMES' core and chip: section 6.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from compiler.hw_spec import HardwareSpec
from compiler.backends.estimator.components import CHIP_COMPONENTS
from compiler.backends.estimator.converters import converter_area_um2
from compiler.backends.estimator.fields import UM2_PER_MM2, require

ROUTER_PORTS = 5  # a 2D mesh router: four neighbours and the tile
PRECISION_BITS = {"fp32": 32, "fp16": 16, "bf16": 16, "int8": 8}


@dataclass(frozen=True)
class Logic:
    """Standard cells at the chip's node, um^2."""
    add32: float
    mult32: float
    register_per_bit: float
    comparator32: float

    def adder(self, bits: float) -> float:
        return self.add32 * bits / 32

    def multiplier(self, bits: float) -> float:
        return self.mult32 * (bits / 32) ** 2

    def lane(self, bits: float) -> float:
        """One add/mult lane of the digital units: a multiplier and an adder of the precision's width."""
        return self.multiplier(bits) + self.adder(bits)


def logic_cells(hw: HardwareSpec) -> Logic:
    ref = require(hw, "area.logic.node_nm", "node of the published standard-cell areas")
    scale = (hw.technology_nm / ref) ** 2
    return Logic(add32=require(hw, "area.logic.add32_um2", "area of a 32-bit adder") * scale,
                 mult32=require(hw, "area.logic.mult32_um2", "area of a 32-bit multiplier") * scale,
                 register_per_bit=require(hw, "area.logic.register_um2_per_bit", "area of a register bit") * scale,
                 comparator32=require(hw, "area.logic.comparator32_um2", "area of a 32-bit comparator") * scale)


@dataclass(frozen=True)
class ChipArea:
    tile_um2: dict[str, float]          # one tile, by component
    shared_um2: dict[str, float]        # the chip's shared digital units
    tiles: int                          # tiles on one chip

    @property
    def tile_mm2(self) -> float:
        return math.fsum(self.tile_um2.values()) / UM2_PER_MM2

    def by_component_mm2(self, tiles: int | None = None) -> dict[str, float]:
        """Area by component of `tiles` tiles (default: the chip's) and the shared units."""
        n = self.tiles if tiles is None else tiles
        parts = {c: n * self.tile_um2.get(c, 0.0) / UM2_PER_MM2 for c in CHIP_COMPONENTS}
        for c, um2 in self.shared_um2.items():
            parts[c] = um2 / UM2_PER_MM2
        return parts

    @property
    def chip_mm2(self) -> float:
        return math.fsum(self.by_component_mm2().values())


def tile_area_um2(hw: HardwareSpec, logic: Logic | None = None) -> dict[str, float]:
    logic = logic or logic_cells(hw)
    rows, cols = hw.tile.rows, hw.tile.cols
    dac_bits = require(hw, "dac.bits", "input resolution; an ideal (null) DAC has no cost model")
    per_row = (require(hw, "area.wordline_driver_um2", "area of an input-line driver")
               + dac_bits * logic.register_per_bit + logic.comparator32 * dac_bits / 32)
    adc, sharing = converter_area_um2(hw, logic.register_per_bit)
    lane = logic.lane(PRECISION_BITS[hw.digital.other_precision])
    ldpu = require(hw, "energy.local_digital_unit", "whether a local digital unit scales each column output")
    per_lane = require(hw, "area.columns_per_ldpu_lane", "columns served by one local digital lane")
    link_bits = require(hw, "latency.link_bits_per_column", "tile link width per column") * cols
    flits = require(hw, "area.router_flits_per_port", "router buffer depth")
    drivers = math.ceil(cols / require(hw, "area.columns_per_program_driver", "columns one programming driver serves"))
    programming = (drivers * require(hw, "area.program_driver_um2", "area of a programming driver")
                   + rows * require(hw, "area.row_select_um2", "area of a row's select-line drivers"))
    sram_bits = require(hw, "area.sram_KiB_per_tile", "activation SRAM per tile") * 8192
    cell = require(hw, "area.sram_bitcell_um2", "SRAM bit-cell area")
    efficiency = require(hw, "area.sram_array_efficiency", "bit cells' share of an SRAM macro")
    return {
        "tile_array": rows * cols * require(hw, "area.weight_cell_um2", "area of a weight cell"),
        "adc": math.ceil(cols / sharing) * adc,
        "dac": rows * per_row,
        "local_digital": math.ceil(cols / per_lane) * lane if ldpu else 0.0,
        "control": require(hw, "area.tile_control_um2", "area of a tile's control"),
        "programming": programming,
        "network": ROUTER_PORTS * flits * link_bits * logic.register_per_bit,
        "sram": sram_bits * cell / efficiency,
    }


def chip_area(hw: HardwareSpec) -> ChipArea:
    logic = logic_cells(hw)
    lanes = require(hw, "latency.digital_lanes_per_tile", "add/mult primitives per cycle per tile") * hw.tile.count
    macs = require(hw, "latency.attention_macs_per_cycle_per_tile", "attention MACs per cycle per tile") \
        * hw.tile.count
    bits = hw.digital.attention_bits or 8
    shared = {"digital_units": lanes * logic.lane(PRECISION_BITS[hw.digital.other_precision]),
              "attention_units": macs * (logic.multiplier(bits) + logic.adder(2 * bits + 8))}
    return ChipArea(tile_um2=tile_area_um2(hw, logic), shared_um2=shared, tiles=hw.tile.count)
