"""The output converters: one model per architecture, found through a registry (docs/estimator.md, 2).

A model names its spec section (`adc.<name>`, a dataclass) and prices one conversion of one column from it: energy,
time, whether it runs while the inputs are applied, and its area. `adc.architecture` picks the model. Built in:
- cco, a current-controlled oscillator (HERMES): the column current drives an oscillator whose counter counts for the
  whole input window, so energy = oscillator power x max(window, full-scale count) + readout per counter bit. The
  window is the input PWM's; bits change the counter (readout, area) and the resolution, not the oscillator's power.
- ramp, single-slope: after the integration the column's charge becomes a duration of up to 2^bits steps (Ambrogio
  et al. 2023), its comparator on throughout: energy = comparator power x 2^bits x step + readout per bit.
- sar, successive approximation: (bits + 1) comparison cycles after the integration; energy = Walden FOM x 2^bits +
  the Schreier thermal term 10^((6.02 bits + 1.76 - FOM_S) / 10) / 2 (~4^bits): Murmann's survey envelope.
A converter shared by k columns converts them one after another. `register_converter(model)` adds a model (its spec
section too: compiler.hw_spec.register_converter_section); the estimator and the spec loader know no other list.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from compiler.errors import UserError
from compiler.hw_spec import (CcoAdcSpec, HardwareSpec, RampAdcSpec, SarAdcSpec, register_converter_section)
from compiler.backends.estimator.fields import FJ, PS, require

SAR_SAMPLING_CYCLES = 1  # the sampling phase before the bit cycles
UW = 1e-6


@dataclass(frozen=True)
class Conversion:
    """One conversion of one column, as a model prices it."""
    energy_J: float
    time_s: float
    during_input: bool              # converts while the inputs are applied (else after them)


class ConverterModel(Protocol):
    """What a converter model provides. `spec` is the model's section adc.<name> (an instance of spec_cls)."""
    name: str
    spec_cls: type
    description: str

    def conversion(self, hw: HardwareSpec, spec: Any, bits: int, window_s: float) -> Conversion: ...

    def area_um2(self, hw: HardwareSpec, spec: Any, bits: int, register_um2_per_bit: float) -> float: ...


CONVERTERS: dict[str, ConverterModel] = {}


def register_converter(model: ConverterModel) -> None:
    """Make `model` available as adc.architecture = model.name, its numbers in the spec section adc.<name>."""
    register_converter_section(model.name, model.spec_cls)
    CONVERTERS[model.name] = model


def unregister_converter(name: str) -> None:
    CONVERTERS.pop(name, None)
    register_converter_section(name, None)


@dataclass(frozen=True)
class Converter:
    """The chosen converter at the spec's bits and input window."""
    architecture: str
    bits: int
    energy_J: float                 # one conversion of one column
    time_s: float                   # one conversion of one column
    during_input: bool
    columns_per_adc: int

    def tile_time_s(self, cols: int) -> float:
        """Time to convert `cols` columns once: the shared converters work through their columns in turn."""
        return min(self.columns_per_adc, max(cols, 1)) * self.time_s

    def count(self, cols: int) -> int:
        return -(-cols // self.columns_per_adc)


def _model(hw: HardwareSpec) -> tuple[ConverterModel, Any, int]:
    bits = require(hw, "adc.bits", "output resolution; an ideal (null) ADC has no cost model")
    arch = require(hw, "adc.architecture", f"which converter model prices the ADC ({', '.join(CONVERTERS)})")
    model = CONVERTERS.get(arch)
    if model is None:  # a section registered with the loader but no model (a model unregistered since)
        raise UserError(f"adc.architecture = {arch!r}: no converter model of that name is registered "
                        f"({', '.join(CONVERTERS)})")
    return model, require(hw, f"adc.{arch}", f"the numbers of the {arch} converter model"), bits


def converter(hw: HardwareSpec, window_s: float) -> Converter:
    """The converter of `hw` for an input window of `window_s` (one phase's full-length PWM)."""
    model, spec, bits = _model(hw)
    c = model.conversion(hw, spec, bits, window_s)
    return Converter(model.name, bits, c.energy_J, c.time_s, c.during_input, spec.columns_per_adc)


def converter_area_um2(hw: HardwareSpec, register_um2_per_bit: float) -> tuple[float, int]:
    """(one converter's area, columns per converter)."""
    model, spec, bits = _model(hw)
    return model.area_um2(hw, spec, bits, register_um2_per_bit), spec.columns_per_adc


def node_warnings(hw: HardwareSpec) -> list[str]:
    """The converter's published figures are at their node; no published rule scales an analog converter's power to
    another node, so a differing node is said, never silently scaled."""
    try:
        model, spec, _ = _model(hw)
    except UserError:
        return []
    node = getattr(spec, "node_nm", None)
    if node is None or node == hw.technology_nm:
        return []
    return [f"adc.{model.name}: its figures were published at {node:g} nm and are used unscaled at the chip's "
            f"{hw.technology_nm:g} nm (no published node-scaling rule for this converter)"]


def _field(hw: HardwareSpec, arch: str, name: str, purpose: str) -> Any:
    return require(hw, f"adc.{arch}.{name}", purpose)


def _per_bit_register_area(hw: HardwareSpec, arch: str, bits: int, register_um2_per_bit: float) -> float:
    """The converter's published area at its reference bits, one register bit more or less per bit."""
    area = _field(hw, arch, "area_um2", "area of one converter")
    ref = _field(hw, arch, "area_ref_bits", "resolution at which the converter's area is given")
    return max(area + (bits - ref) * register_um2_per_bit, 0.0)


class Cco:
    name, spec_cls = "cco", CcoAdcSpec
    description = "current-controlled oscillator: counts during the input window (HERMES)"

    def conversion(self, hw: HardwareSpec, spec: CcoAdcSpec, bits: int, window_s: float) -> Conversion:
        full_count = 2 ** bits * _field(hw, "cco", "ps_per_lsb", "the oscillator's fastest count period") * PS
        power = _field(hw, "cco", "oscillator_uW", "the column oscillator's mean power while counting") * UW
        readout = _field(hw, "cco", "readout_fJ_per_bit", "reading out one counter bit") * FJ
        return Conversion(power * max(window_s, full_count) + bits * readout, full_count, True)

    def area_um2(self, hw: HardwareSpec, spec: CcoAdcSpec, bits: int, register_um2_per_bit: float) -> float:
        return _per_bit_register_area(hw, "cco", bits, register_um2_per_bit)  # a counter flip-flop per bit


class Ramp:
    name, spec_cls = "ramp", RampAdcSpec
    description = "single-slope: the column charge becomes a duration of up to 2^bits steps, after the input"

    def conversion(self, hw: HardwareSpec, spec: RampAdcSpec, bits: int, window_s: float) -> Conversion:
        duration = 2 ** bits * _field(hw, "ramp", "ps_per_lsb", "one step of the output duration") * PS
        power = _field(hw, "ramp", "comparator_uW", "the column comparator's power while its duration runs") * UW
        readout = _field(hw, "ramp", "readout_fJ_per_bit", "latching or counting out one bit") * FJ
        return Conversion(power * duration + bits * readout, duration, False)

    def area_um2(self, hw: HardwareSpec, spec: RampAdcSpec, bits: int, register_um2_per_bit: float) -> float:
        return _per_bit_register_area(hw, "ramp", bits, register_um2_per_bit)  # a latch per bit


class Sar:
    name, spec_cls = "sar", SarAdcSpec
    description = "successive approximation: one comparison per bit after the integration"

    def conversion(self, hw: HardwareSpec, spec: SarAdcSpec, bits: int, window_s: float) -> Conversion:
        fom = _field(hw, "sar", "fom_fJ_per_step", "Walden figure of merit of the converter") * FJ
        time = (bits + SAR_SAMPLING_CYCLES) * _field(hw, "sar", "ps_per_bit", "SAR time per bit cycle") * PS
        return Conversion(fom * 2 ** bits + sar_thermal_J(spec.schreier_fom_dB, bits), time, False)

    def area_um2(self, hw: HardwareSpec, spec: SarAdcSpec, bits: int, register_um2_per_bit: float) -> float:
        area = _field(hw, "sar", "area_um2", "area of one converter")
        ref = _field(hw, "sar", "area_ref_bits", "resolution at which the converter's area is given")
        return area * 2.0 ** (bits - ref)  # the capacitive DAC doubles per bit


def sar_thermal_J(schreier_fom_dB: float | None, bits: int) -> float:
    """P/fs of a Nyquist converter at SNDR = 6.02 bits + 1.76 dB on the Schreier envelope (0 without one)."""
    if schreier_fom_dB is None:
        return 0.0
    return 0.5 * 10 ** ((6.02 * bits + 1.76 - schreier_fom_dB) / 10)


for _builtin in (Cco(), Ramp(), Sar()):
    CONVERTERS[_builtin.name] = _builtin  # their sections are compiler.hw_spec's built-in CONVERTER_SECTIONS
