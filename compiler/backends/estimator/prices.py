"""Energy and duration of each action, read from a spec and converted to SI units (J, s).

A cost field the estimator needs but the spec leaves out is one UserError naming the spec file and the dotted
field: never a silent zero. Digital primitives are published at a reference node (Horowitz, ISSCC 2014: 45 nm,
0.9 V) and scaled to the chip's node as switched capacitance times supply squared: E = E_ref * (node / node_ref)
* (vdd / vdd_ref)^2 (first-order CMOS scaling: gate and wire capacitance shrink with feature size). A tile's
prices are split by what they scale with (docs/estimator.md, 2): the array per cell and per bit-line length, the
input drivers per row and per input level, the converter per column by its model (converters.py), the local
digital unit per column, the clock per row and column lane and per cycle, the network per bit and per tile pitch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from compiler.errors import UserError
from compiler.hw_spec import HardwareSpec
from compiler.backends.estimator.converters import Converter, converter
from compiler.backends.estimator.devices import cell_read_power_W
from compiler.backends.estimator.area import chip_area
from compiler.backends.estimator.fields import FF, NS, PJ, require
from compiler.backends.estimator.static import static_power

PRECISION_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}
# Horowitz gives no bfloat16 figures; bf16 is priced as fp16 (same width, a smaller multiplier: an upper bound).
PRECISION_FIELDS = {"fp32": "fp32", "fp16": "fp16", "bf16": "fp16", "int8": "int8"}


def node_scale(spec: Any, prefix: str) -> float:
    """Factor from the reference node of `prefix`.digital to the spec's node: (L/L_ref) * (V/V_ref)^2."""
    ref_nm = require(spec, f"{prefix}.digital.node_nm", "node of the published digital energies")
    ref_vdd = require(spec, f"{prefix}.digital.vdd_V", "supply of the published digital energies")
    vdd = require(spec, f"{prefix}.vdd_V", "logic supply at the chip's node")
    return (spec.technology_nm / ref_nm) * (vdd / ref_vdd) ** 2


@dataclass(frozen=True)
class DigitalPrices:
    """Digital primitives at the chip's node, in joules, for the precision of the digital units."""
    scale: float
    add_J: float
    mult_J: float
    int8_add_J: float
    int8_mult_J: float
    int32_add_J: float
    sram_read_J_per_byte: float
    sram_write_J_per_byte: float
    bytes_per_element: int

    def recipe_J(self, mults: int, adds: int) -> float:
        return mults * self.mult_J + adds * self.add_J

    def integer_mac_J(self, bits: int, inner: int) -> float:
        """One b-bit MAC: an array multiplier costs ~b^2 (Horowitz: 8-bit 0.2 pJ, 32-bit 3.1 pJ = 15.5x for
        16x the b^2), an adder ~its width; the accumulator holds 2b + log2(inner) bits."""
        acc_bits = 2 * bits + math.ceil(math.log2(max(inner, 2)))
        return self.int8_mult_J * (bits / 8) ** 2 + self.int32_add_J * acc_bits / 32


def digital_prices(spec: Any, prefix: str, precision: str) -> DigitalPrices:
    """Prices of `spec`.`prefix`.digital (prefix 'energy') for the digital units' precision."""
    scale = node_scale(spec, prefix)
    kind = PRECISION_FIELDS[precision]

    def pj(name: str, purpose: str) -> float:
        return require(spec, f"{prefix}.digital.{name}", purpose) * PJ * scale

    return DigitalPrices(
        scale=scale,
        add_J=pj(f"{kind}_add_pJ", f"{precision} additions of the digital units"),
        mult_J=pj(f"{kind}_mult_pJ", f"{precision} multiplications of the digital units"),
        int8_add_J=pj("int8_add_pJ", "the PWM compare of each input row, per clock cycle"),
        int8_mult_J=pj("int8_mult_pJ", "integer multipliers of the MAC units"),
        int32_add_J=pj("int32_add_pJ", "integer accumulators of the MAC units"),
        sram_read_J_per_byte=pj("sram_read_pJ_per_byte", "SRAM reads of activations"),
        sram_write_J_per_byte=pj("sram_write_pJ_per_byte", "SRAM writes of activations"),
        bytes_per_element=PRECISION_BYTES[precision])


@dataclass(frozen=True)
class TilePrices:
    """One MVM on a tile: per cell, per driven row, per read column and per tile, each by what it scales with."""
    phases: int                     # read phases per MVM (bit-serial inputs: one per bit)
    levels: int                     # input levels (clock cycles) of one phase's window
    phase_window_s: float           # full-length input window of one phase
    step_s: float                   # the tile clock period (one input level)
    mvm_time_s: float               # tile occupancy of one MVM
    converter: Converter
    cell_J: float                   # conduction of one cell over one MVM at full-length inputs (all phases)
    bitline_J_per_col: float        # charging one bit line (the tile's full height) in every phase
    row_J: float                    # one input row's driver: its line (the tile's full width) and its PWM compares
    adc_J_per_col: float            # one conversion per column and phase
    local_digital_J_per_col: float  # affine output scaling per column and phase (0 without a local digital unit)
    control_J: float                # the tile's clock over one MVM: every row and column lane, every cycle
    input_bits: float               # per input value sent to the tile
    output_bits: float              # per output value sent back
    network_J_per_bit: float        # one hop of the mesh: one tile pitch
    hop_mm: float
    link_bits_per_s: float
    mvm_overhead_s: float


def tile_prices(hw: HardwareSpec, digital: DigitalPrices | None = None) -> TilePrices:
    digital = digital or digital_prices(hw, "energy", hw.digital.other_precision)
    dac_bits = require(hw, "dac.bits", "input resolution; an ideal (null) DAC has no cost model")
    step = require(hw, "latency.pwm_step_ns", "duration of one input pulse level (the tile clock)") * NS
    overhead = require(hw, "latency.mvm_overhead_ns", "per-MVM time not hidden by pipelining") * NS
    if hw.dac.encoding == "PWM":  # signed PWM: sign on the line polarity, |x| up to 2^(b-1) - 1 levels
        phases, levels = 1, max(1, 2 ** (dac_bits - 1) - 1)
    elif hw.dac.encoding == "bit-serial":  # one single-level read per input bit
        phases, levels = dac_bits, 1
    else:  # amplitude: one pulse whose voltage carries the value
        phases, levels = 1, 1
    window = levels * step
    adc = converter(hw, window)
    convert = adc.tile_time_s(hw.tile.cols)
    phase_time = max(window, convert) if adc.during_input else window + convert
    mvm_time = phases * phase_time + overhead
    volts = require(hw, "energy.read_voltage_V", "read bias of the crossbar")
    vdd = require(hw, "energy.vdd_V", "logic supply at the chip's node")
    cell_power = cell_read_power_W(hw)  # by the device technology's model (devices.py)
    c_bitline = require(hw, "energy.bitline_fF_per_cell", "bit-line capacitance per cell") * FF
    c_wordline = require(hw, "energy.wordline_fF_per_cell", "input-line capacitance per cell") * FF
    c_clock = require(hw, "energy.clock_fF_per_lane", "clock load per row and column lane") * FF
    ldpu = require(hw, "energy.local_digital_unit", "whether a local digital unit scales each column output")
    cell_um2 = require(hw, "area.weight_cell_um2", "area of a weight cell (the tile pitch sets the network hop)")
    hop_mm = math.sqrt(hw.tile.rows * hw.tile.cols * cell_um2) / 1e3  # the side of the tile's PCM array
    wire = require(hw, "energy.network_pJ_per_bit_mm", "on-chip wire energy") * PJ
    wires = hw.energy.network_bits_per_value
    link = require(hw, "latency.link_bits_per_column", "tile link width per column")
    return TilePrices(
        phases=phases, levels=levels, phase_window_s=window, step_s=step, mvm_time_s=mvm_time, converter=adc,
        cell_J=phases * window * cell_power,
        bitline_J_per_col=phases * hw.tile.rows * c_bitline * volts ** 2,
        row_J=phases * (hw.tile.cols * c_wordline * vdd ** 2 + levels * digital.int8_add_J),
        adc_J_per_col=phases * adc.energy_J,
        local_digital_J_per_col=phases * (digital.mult_J + digital.add_J) if ldpu else 0.0,
        control_J=(hw.tile.rows + hw.tile.cols) * c_clock * vdd ** 2 * (mvm_time / step),
        input_bits=wires if wires is not None else 8 * math.ceil(dac_bits / 8),
        output_bits=wires if wires is not None else 8 * math.ceil(adc.bits / 8),
        network_J_per_bit=wire * hop_mm, hop_mm=hop_mm,
        link_bits_per_s=link * hw.tile.cols / step, mvm_overhead_s=overhead)


def tile_mvm_energy(tile: TilePrices, rows: int, cols: int, fill: float = 1.0) -> dict[str, float]:
    """Energy of one MVM on a rows x cols segment, by component (no partial sums, no bias, no SRAM)."""
    return {
        "tile_array": rows * cols * tile.cell_J * fill + cols * tile.bitline_J_per_col,
        "dac": rows * tile.row_J,
        "adc": cols * tile.adc_J_per_col,
        "local_digital": cols * tile.local_digital_J_per_col,
        "control": tile.control_J,
        "network": (rows * tile.input_bits + cols * tile.output_bits) * tile.network_J_per_bit,
    }


def segment_time(tile: TilePrices, rows: int, cols: int) -> float:
    """Tile occupancy of one MVM: the MVM itself, or the link transfer if that is slower (they overlap)."""
    return max(tile.mvm_time_s, (rows * tile.input_bits + cols * tile.output_bits) / tile.link_bits_per_s)


@dataclass(frozen=True)
class DigitalThroughput:
    clock_hz: float
    lanes: float
    attention_macs_per_cycle: float

    def lane_time_s(self, primitives: float) -> float:
        return primitives / (self.lanes * self.clock_hz)

    def attention_time_s(self, macs: float) -> float:
        return macs / (self.attention_macs_per_cycle * self.clock_hz)


def digital_throughput(hw: HardwareSpec) -> DigitalThroughput:
    """The chip's digital units: lanes and attention MACs per tile, times the tiles of one chip."""
    per_tile = require(hw, "latency.digital_lanes_per_tile", "add/mult primitives per cycle per tile")
    attention = require(hw, "latency.attention_macs_per_cycle_per_tile", "INT6 attention MACs per cycle per tile")
    return DigitalThroughput(
        clock_hz=require(hw, "latency.digital_clock_GHz", "clock of the digital units") * 1e9,
        lanes=per_tile * hw.tile.count, attention_macs_per_cycle=attention * hw.tile.count)


def check_prices(hw: HardwareSpec) -> None:
    """Read every field the estimator prices `hw` with, and check that every derived price is finite: a missing
    field or a price beyond a float is one UserError, raised before any work (the CLI calls it before the model
    loads; estimate() at its start)."""
    digital = digital_prices(hw, "energy", hw.digital.other_precision)
    tile = tile_prices(hw, digital)
    throughput = digital_throughput(hw)
    area = chip_area(hw)
    leakage = static_power(hw, area, tiles=hw.tile.count, chips=1)
    derived = {**{f"tile.{k}": v for k, v in vars(tile).items() if isinstance(v, (int, float))},
               **{f"digital.{k}": v for k, v in vars(digital).items() if isinstance(v, (int, float))},
               **{f"throughput.{k}": v for k, v in vars(throughput).items()},
               **{f"area.{k}": v for k, v in area.tile_um2.items()}, **{f"area.{k}": v for k, v in
                                                                        area.shared_um2.items()},
               **{f"static.{k}": v for k, v in leakage.items()},
               "converter.energy_J": tile.converter.energy_J, "converter.time_s": tile.converter.time_s}
    bad = [name for name, value in derived.items() if not math.isfinite(value) or abs(value) > MAX_PRICE]
    if bad:
        where = getattr(hw, "source_file", "") or hw.name
        raise UserError(f"{where}: the derived price {bad[0]} = {derived[bad[0]]:g} is beyond any chip; check the "
                        f"spec's cost fields (docs/specs.md gives their units and bounds)")


MAX_PRICE = 1e30  # no derived price (J, s, um^2, W) of a physical chip comes near; beyond it sums overflow
