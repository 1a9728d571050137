"""What one weight block may run as: the options `--accuracy-budget` chooses between (docs/accuracy_budget.md).

- analog at an ADC resolution the spec lists (`block_options.adc_bits`): the block's tiles convert with that
  many bits; everything else as the spec says;
- analog with k-fold redundancy (`block_options.redundancy`): the block programmed on k independent tile sets
  (other devices: own programming noise, drift and read noise), the k outputs averaged digitally; noise
  down by about sqrt(k), tiles and tile energy up by k;
- digital (`block_options.digital_bits`): the block's MACs on the chip's integer units, weights per output
  channel and inputs per vector quantized symmetrically to that many bits, accumulation exact, as the
  attention matmuls run; its weights held in SRAM.

The reference option is analog at the spec's `adc.bits`, one copy: a block without an entry in
`PlacedGraph.block_options` takes it. The simulator (compiler/backends/simulator/options.py) and the estimator
(compiler/backends/estimator/options.py) both read a block's option from here, so what is priced is what is
simulated.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from compiler.errors import UserError
from compiler.hw_spec import HardwareSpec

ANALOG, DIGITAL = "analog", "digital"


@dataclass(frozen=True, order=True)
class BlockOption:
    kind: str                        # ANALOG or DIGITAL
    bits: int                        # analog: the ADC's bits; digital: the integer precision
    copies: int = 1                  # analog: k tile sets whose outputs are averaged (1: none)

    @property
    def label(self) -> str:
        if self.kind == DIGITAL:
            return f"digital INT{self.bits}"
        return f"analog {self.bits}b" + (f" x{self.copies}" if self.copies > 1 else "")

    def to_dict(self) -> dict:
        return {"kind": self.kind, "bits": self.bits, "copies": self.copies, "label": self.label}

    @staticmethod
    def from_dict(data: dict) -> "BlockOption":
        return BlockOption(data["kind"], int(data["bits"]), int(data.get("copies", 1)))


def reference_option(hw: HardwareSpec) -> BlockOption:
    """Analog at the spec's ADC bits, one copy: what every block runs as without a budget."""
    if hw.adc.bits is None:
        raise UserError(f"{hw.name}: --accuracy-budget needs ADCs with bits (adc.bits is null: an ideal converter "
                        f"has neither a cost nor a resolution to choose)")
    return BlockOption(ANALOG, hw.adc.bits)


def available_options(hw: HardwareSpec) -> list[BlockOption]:
    """Every option the spec allows a block, the reference first."""
    reference = reference_option(hw)
    spec = hw.block_options
    options = [reference]
    if spec is not None:
        options += [BlockOption(ANALOG, b) for b in sorted(spec.adc_bits or ()) if b != reference.bits]
        options += [BlockOption(ANALOG, reference.bits, k) for k in sorted(spec.redundancy or ())]
        if spec.digital_bits is not None:
            options.append(BlockOption(DIGITAL, spec.digital_bits))
    return options


def check_choices(hw: HardwareSpec) -> None:
    """A budget needs something to choose: one line naming the spec section otherwise."""
    if len(available_options(hw)) < 2:
        raise UserError(f"{hw.name}: --accuracy-budget has no options to choose between; give the spec a section "
                        f"block_options (adc_bits, redundancy, digital_bits; docs/specs.md), e.g. "
                        f"--set block_options.adc_bits=[6,7,8]")


def option_of(block_options: dict[str, BlockOption], block: str, hw: HardwareSpec) -> BlockOption:
    return block_options.get(block) or reference_option(hw)


def analog_hw(hw: HardwareSpec, option: BlockOption) -> HardwareSpec:
    """The spec an analog option's tiles run under: the option's ADC bits (the rest unchanged)."""
    if option.kind != ANALOG or option.bits == hw.adc.bits:
        return hw
    return dataclasses.replace(hw, adc=dataclasses.replace(hw.adc, bits=option.bits))
