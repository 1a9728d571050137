"""The output converter: energy, time and area of one conversion, from the published model the spec chooses.

`adc.architecture` picks the model and its numbers come from `adc.cco` or `adc.sar` (docs/estimator.md, 2):
- cco, a counting converter (HERMES' current-controlled oscillator, a single-slope ramp): one count per LSB, so
  energy = Walden FOM x 2^bits and time = 2^bits x ps_per_lsb; it may count while the inputs are applied.
- sar, successive approximation: one comparison per bit after the column has integrated, time = (bits + 1) x
  ps_per_bit; energy = Walden FOM x 2^bits (technology-limited) + the Schreier thermal term
  10^((6.02 bits + 1.76 - FOM_S) / 10) / 2 (~4^bits), the two terms of the Murmann survey's energy envelope.
A converter shared by k columns converts them one after another: k conversions of time per MVM phase.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from compiler.hw_spec import HardwareSpec
from compiler.backends.estimator.fields import FJ, PS, require

SAR_SAMPLING_CYCLES = 1  # the sampling phase before the bit cycles


@dataclass(frozen=True)
class Converter:
    architecture: str
    bits: int
    energy_J: float                 # one conversion of one column
    time_s: float                   # one conversion of one column
    during_input: bool              # converts while the inputs are applied (else after them)
    columns_per_adc: int

    def tile_time_s(self, cols: int) -> float:
        """Time to convert `cols` columns once: the shared converters work through their columns in turn."""
        return min(self.columns_per_adc, max(cols, 1)) * self.time_s

    def count(self, cols: int) -> int:
        return -(-cols // self.columns_per_adc)


def _params(hw: HardwareSpec) -> tuple[str, Any]:
    arch = require(hw, "adc.architecture", "which converter model prices the ADC (cco or sar)")
    return arch, require(hw, f"adc.{arch}", f"the numbers of the {arch} converter model")


def converter(hw: HardwareSpec) -> Converter:
    bits = require(hw, "adc.bits", "output resolution; an ideal (null) ADC has no cost model")
    arch, _ = _params(hw)
    fom = require(hw, f"adc.{arch}.fom_fJ_per_step", "Walden figure of merit of the converter") * FJ
    if arch == "cco":
        time = 2 ** bits * require(hw, "adc.cco.ps_per_lsb", "counting converter's time per LSB") * PS
        during = require(hw, "adc.cco.integrates_during_input", "whether the converter counts during the input")
        return Converter(arch, bits, fom * 2 ** bits, time, bool(during), hw.adc.cco.columns_per_adc)
    thermal = sar_thermal_J(hw.adc.sar.schreier_fom_dB, bits)
    time = (bits + SAR_SAMPLING_CYCLES) * require(hw, "adc.sar.ps_per_bit", "SAR time per bit cycle") * PS
    return Converter(arch, bits, fom * 2 ** bits + thermal, time, False, hw.adc.sar.columns_per_adc)


def sar_thermal_J(schreier_fom_dB: float | None, bits: int) -> float:
    """P/fs of a Nyquist converter at SNDR = 6.02 bits + 1.76 dB on the Schreier envelope (0 without one)."""
    if schreier_fom_dB is None:
        return 0.0
    return 0.5 * 10 ** ((6.02 * bits + 1.76 - schreier_fom_dB) / 10)


def converter_area_um2(hw: HardwareSpec, register_um2_per_bit: float) -> float:
    """One converter at the spec's bits: a counting converter adds a counter flip-flop per bit over its
    reference; a SAR's capacitive DAC doubles per bit (area x 2^(bits - ref))."""
    bits = require(hw, "adc.bits", "output resolution; an ideal (null) ADC has no cost model")
    arch, params = _params(hw)
    area = require(hw, f"adc.{arch}.area_um2", "area of one converter")
    ref = require(hw, f"adc.{arch}.area_ref_bits", "resolution at which the converter's area is given")
    if arch == "cco":
        return max(area + (bits - ref) * register_um2_per_bit, 0.0)
    return area * 2.0 ** (bits - ref)
