"""Energy and duration of each action, read from a spec and converted to SI units (J, s).

A cost field the estimator needs but the spec leaves out is one UserError naming the spec file and
the dotted field: never a silent zero. Digital primitives are published at a reference node
(Horowitz, ISSCC 2014: 45 nm, 0.9 V) and scaled to the chip's node as switched capacitance times
supply squared: E = E_ref * (node / node_ref) * (vdd / vdd_ref)^2 (first-order CMOS scaling: gate and
wire capacitance shrink with feature size; see docs/estimator.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from compiler.errors import UserError
from compiler.hw_spec import HardwareSpec

PRECISION_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}
# Horowitz gives no bfloat16 figures; bf16 is priced as fp16 (same width, a smaller multiplier: an upper bound).
PRECISION_FIELDS = {"fp32": "fp32", "fp16": "fp16", "bf16": "fp16", "int8": "int8"}
PJ, FJ, NS, PS = 1e-12, 1e-15, 1e-9, 1e-12


def require(spec: Any, dotted: str, purpose: str) -> Any:
    """The value of `dotted` in `spec`; a UserError naming the field if it (or its section) is missing."""
    value: Any = spec
    for part in dotted.split("."):
        value = getattr(value, part, None) if value is not None else None
    if value is None:
        where = getattr(spec, "source_file", "") or getattr(spec, "name", "the hardware spec")
        raise UserError(f"{where}: the estimator needs {dotted} ({purpose}) but the spec leaves it unset (missing or null); "
                        f"add it with its source (see docs/estimator.md)")
    return value


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
        int8_mult_J=pj("int8_mult_pJ", "integer multipliers of the MAC units"),
        int32_add_J=pj("int32_add_pJ", "integer accumulators of the MAC units"),
        sram_read_J_per_byte=pj("sram_read_pJ_per_byte", "SRAM reads of activations"),
        sram_write_J_per_byte=pj("sram_write_pJ_per_byte", "SRAM writes of activations"),
        bytes_per_element=PRECISION_BYTES[precision])


@dataclass(frozen=True)
class TilePrices:
    """One MVM on a tile segment, per cell, per driven row and per read column."""
    phases: int                     # read phases per MVM (bit-serial inputs: one per bit)
    phase_window_s: float           # input pulse window of one phase
    mvm_time_s: float               # tile occupancy of one MVM
    array_J_per_cell: float         # conduction energy of one weight cell over one MVM (full-scale input)
    dac_J_per_row: float
    adc_J_per_col: float
    input_bytes: int                # per input element sent to the tile
    output_bytes: int               # per output element sent back
    network_J_per_byte: float
    network_bytes_per_s: float
    mvm_overhead_s: float


def tile_prices(hw: HardwareSpec) -> TilePrices:
    dac_bits = require(hw, "dac.bits", "input resolution; an ideal (null) DAC has no cost model")
    adc_bits = require(hw, "adc.bits", "output resolution; an ideal (null) ADC has no cost model")
    step = require(hw, "latency.pwm_step_ns", "duration of one input pulse level") * NS
    adc_time = require(hw, "latency.adc_ps_per_lsb", "ADC conversion time per LSB") * PS * 2 ** adc_bits
    overlapped = require(hw, "latency.adc_during_input", "whether the ADC converts while inputs are applied")
    overhead = require(hw, "latency.mvm_overhead_ns", "per-MVM time not hidden by pipelining") * NS
    if hw.dac.encoding == "PWM":  # signed PWM: sign on the line polarity, |x| up to 2^(b-1) - 1 levels
        phases, levels = 1, max(1, 2 ** (dac_bits - 1) - 1)
    elif hw.dac.encoding == "bit-serial":  # one single-level read per input bit
        phases, levels = dac_bits, 1
    else:  # amplitude: one pulse whose voltage carries the value
        phases, levels = 1, 1
    window = levels * step
    phase_time = max(window, adc_time) if overlapped else window + adc_time
    volts = require(hw, "energy.read_voltage_V", "read bias of the crossbar")
    g_frac = require(hw, "energy.mean_conductance_fraction", "mean conductance of a weight cell")
    cell_power = g_frac * hw.device.g_max_uS * 1e-6 * volts ** 2  # G V^2, watts
    adc_J = require(hw, "energy.adc_fJ_per_step", "ADC energy per conversion step") * FJ * 2 ** adc_bits
    return TilePrices(
        phases=phases, phase_window_s=window, mvm_time_s=phases * phase_time + overhead,
        array_J_per_cell=phases * window * cell_power,
        dac_J_per_row=phases * require(hw, "energy.dac_pJ_per_conversion", "input driver energy") * PJ,
        adc_J_per_col=phases * adc_J,
        input_bytes=math.ceil(dac_bits / 8), output_bytes=math.ceil(adc_bits / 8),
        network_J_per_byte=require(hw, "energy.network_pJ_per_byte", "on-chip network energy") * PJ,
        network_bytes_per_s=require(hw, "latency.network_bytes_per_ns", "tile link bandwidth") / NS,
        mvm_overhead_s=overhead)


@dataclass(frozen=True)
class DigitalThroughput:
    clock_hz: float
    lanes: int
    attention_macs_per_cycle: int

    def lane_time_s(self, primitives: float) -> float:
        return primitives / (self.lanes * self.clock_hz)

    def attention_time_s(self, macs: float) -> float:
        return macs / (self.attention_macs_per_cycle * self.clock_hz)


def digital_throughput(hw: HardwareSpec) -> DigitalThroughput:
    return DigitalThroughput(
        clock_hz=require(hw, "latency.digital_clock_GHz", "clock of the digital units") * 1e9,
        lanes=require(hw, "latency.digital_lanes", "add/mult primitives per cycle of the digital units"),
        attention_macs_per_cycle=require(hw, "latency.attention_macs_per_cycle", "INT6 attention MACs per cycle"))


def check_prices(hw: HardwareSpec) -> None:
    """Read every field the estimator prices `hw` with: a missing one is the same UserError, raised before
    any work (the CLI calls it before the model loads)."""
    tile_prices(hw)
    digital_prices(hw, "energy", hw.digital.other_precision)
    digital_throughput(hw)
