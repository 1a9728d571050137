"""Price a weight block as its option says (compiler/block_options.py; docs/accuracy_budget.md, "Pricing").

- analog at b ADC bits: the block's segments priced with the tile prices of the spec at adc.bits = b (converter
  energy and conversion time follow the converter model's dependence on bits);
- analog with k copies: every tile action of the block k times (each copy reads every input on tiles of its own,
  in parallel, so the time per vector is one copy's), plus (k - 1) additions per output and one scaling by 1/k;
- digital INT b: the block's MACs on the chip's integer MAC units (the attention units: same price per MAC,
  `DigitalPrices.integer_mac_J`, same throughput), inputs quantized and outputs dequantized (one multiply per
  element), the bias added, the weights read from SRAM once per inference at b bits each, activations read
  and written as for an analog block. Its weights stay in SRAM, powered (`weight_sram_bits`: leaked per bit,
  gated never); they must fit, in whole tile macros per block, in the SRAM of the tiles the reference mapping
  leaves without work (`sram_use`, `free_macros`), which the redundant copies' tiles use too.
"""
from __future__ import annotations

import math
from typing import Callable, Mapping

from compiler.block_options import DIGITAL, BlockOption, analog_hw, option_of
from compiler.hw_spec import HardwareSpec
from compiler.ir import PlacedGraph
from compiler.backends.estimator.components import TILE_COMPONENTS
from compiler.backends.estimator.prices import DigitalPrices, DigitalThroughput, TilePrices, tile_prices
from compiler.backends.estimator.schedule import ATTENTION_UNITS, Stage
from compiler.backends.estimator.workload import AnalogWork


def option_stage(work: AnalogWork, option: BlockOption, hw: HardwareSpec, digital: DigitalPrices,
                 throughput: DigitalThroughput, fill: Mapping[int, float],
                 analog_stage: Callable[[AnalogWork, TilePrices, DigitalPrices, Mapping[int, float]], Stage]) -> Stage:
    """The stage of `work` under `option` (`analog_stage`: chip.py's pricing of an analog block on given tiles)."""
    if option.kind == DIGITAL:
        return _digital_block(work, option.bits, digital, throughput)
    stage = analog_stage(work, tile_prices(analog_hw(hw, option), digital), digital, fill)
    k = option.copies
    if k > 1:
        for component in TILE_COMPONENTS:
            stage.energy_J[component] *= k
        for action in ("tile_mvms", "array_cell_reads", "dac_conversions", "adc_conversions", "local_digital_scalings",
                       "network_bytes", "analog_macs"):
            stage.counts[action] = stage.counts.get(action, 0.0) * k
        averaged = work.vectors * work.out_features
        stage.energy_J["accumulation"] += averaged * ((k - 1) * digital.add_J + digital.mult_J)
        stage.counts["accumulation_adds"] = stage.counts.get("accumulation_adds", 0.0) + averaged * (k - 1)
    return stage


def _digital_block(work: AnalogWork, bits: int, digital: DigitalPrices, throughput: DigitalThroughput) -> Stage:
    n, macs = work.vectors, work.macs
    act = digital.bytes_per_element
    weight_bytes = work.in_features * work.out_features * bits / 8
    elements = n * work.out_features
    energy = dict.fromkeys(TILE_COMPONENTS + ("accumulation", "sram"), 0.0)
    energy["digital_matmul"] = macs * digital.integer_mac_J(bits, work.in_features) \
        + (n * work.in_features + elements) * digital.mult_J
    energy["accumulation"] = n * work.bias_features * digital.add_J
    energy["sram"] = act * (n * work.in_features * digital.sram_read_J_per_byte
                            + elements * digital.sram_write_J_per_byte) + weight_bytes * digital.sram_read_J_per_byte
    time_s = throughput.attention_time_s(macs)
    counts = {"digital_block_macs": macs, "accumulation_adds": n * work.bias_features,
              "sram_read_bytes": act * n * work.in_features + weight_bytes, "sram_write_bytes": act * elements}
    return Stage(id=work.id, name=work.name, layer=work.layer, vectors=n, vector_time_s=time_s / n if n else 0.0,
                 deps=work.deps, energy_J=energy, busy_s={ATTENTION_UNITS: time_s}, ops=2.0 * macs, counts=counts)


# --- what the options change of the chip as a whole ---------------------------------------------------------

def tiles_powered(placed: PlacedGraph) -> int:
    """Tiles with analog work: the tiles of blocks that stay analog, plus (k - 1) x the tiles of each block with k
    copies (each copy laid out as the block is: an upper bound where the block shares tiles with others)."""
    options = placed.block_options
    analog = {s.tile for s in placed.segments
              if option_of(options, s.block, placed.hw).kind != DIGITAL}
    extra = 0
    for name, option in options.items():
        if option.kind != DIGITAL and option.copies > 1:
            extra += (option.copies - 1) * len({s.tile for s in placed.segments if s.block == name})
    return len(analog) + extra


def weight_sram_bits(placed: PlacedGraph) -> int:
    """Bits of SRAM that hold the weights of digital blocks."""
    return sum(placed.blocks[name].in_features * placed.blocks[name].out_features * option.bits
               for name, option in placed.block_options.items() if option.kind == DIGITAL and name in placed.blocks)


def macro_bits(hw: HardwareSpec) -> int | None:
    """Bits of one tile's SRAM macro (area.sram_KiB_per_tile); None when the spec gives no size."""
    kib = getattr(getattr(hw, "area", None), "sram_KiB_per_tile", None)
    return None if kib is None else int(kib * 8192)


def sram_use(placed: PlacedGraph, block: str, option: BlockOption) -> int:
    """Tile SRAM macros an option takes from the tiles the reference mapping leaves free: a digital block's weights
    (whole macros per block), or the tiles of k - 1 extra copies (whose macros buffer their own activations)."""
    bits = macro_bits(placed.hw)
    if option.kind == DIGITAL:
        b = placed.blocks[block]
        return 0 if bits is None else math.ceil(b.in_features * b.out_features * option.bits / bits)
    return (option.copies - 1) * len({s.tile for s in placed.segments if s.block == block})


def free_macros(placed: PlacedGraph) -> float:
    """Macros of the tiles on the mapping's chips that the reference mapping leaves without work (the tiles digital
    blocks vacate are not counted: a conservative capacity); inf when the spec gives no SRAM size."""
    if macro_bits(placed.hw) is None:
        return math.inf
    return max(placed.chips_used, 1) * placed.hw.tile.count - len({s.tile for s in placed.segments})


def sram_problem(placed: PlacedGraph) -> str | None:
    """Why the options do not fit the free SRAM, or None when they do."""
    used = sum(sram_use(placed, name, option) for name, option in placed.block_options.items())
    free = free_macros(placed)
    if used <= free:
        return None
    return f"the digital blocks' weights and the redundant copies need {used} tile SRAM macros; {free:g} are free"
