"""Lowering of a PlacedGraph to an executable noisy simulator (one programmed chip instance at time t).

`build_simulator(placed, t_inference, seed, device)` programs every segment of every weight block once
(programming noise and drift exponents from `seed`, drift and read noise at `t_inference`), then rewrites
the exported graph (`lower_graph`, shared with hardware-aware training; `placed.exported.module()`,
dynamic in batch and sequence length):
- each weight block becomes one block module call placed before its first layer (`AnalogBlock` here, a
  training block in compiler/training); each analog layer's node becomes the block output (or its slice of
  it, for fused Q, K, V: the block runs once per input);
- each ATTENTION_MATMUL matmul becomes compiler.analog.integer.attention_matmul at hw.digital.attention_bits
  (unchanged if null);
- every other node runs as in the FP model.
The result takes the model's own arguments and returns the model's own output structure.
"""
from __future__ import annotations

import math
import numbers
import secrets
from typing import Any

import torch
from torch import nn

from compiler.backends.simulator.block import AnalogBlock, LayerWeight, ReplicatedBlock, segment_weight
from compiler.backends.simulator.options import staged_block
from compiler.analog.integer import attention_matmul
from compiler.analog.programming import device_params, use_native
from compiler.errors import UserError
from compiler.hw_spec import HardwareSpec
from compiler.ir import Kind, PlacedGraph, SegmentRanges, WeightBlock
from compiler.progress import bar as progress_bar


class SimulatedModel(nn.Module):
    """One programmed chip instance at one inference time; call it like the model. `seed` is the seed it was
    programmed with (drawn fresh when build_simulator got seed=None)."""

    def __init__(self, graph_module: torch.fx.GraphModule, blocks: dict[str, AnalogBlock | ReplicatedBlock], hw: HardwareSpec,
                 t_inference: float, seed: int, device: torch.device,
                 inputs: dict[str, tuple[int | None, ...]] | None = None):
        super().__init__()
        self.graph_module = graph_module
        self.blocks = blocks          # the same modules as inside graph_module, by block name
        self.hw, self.t_inference, self.seed, self.device = hw, t_inference, seed, device
        self.inputs = inputs          # the compiled inputs: name -> shape, None for a dynamic dimension

    @torch.no_grad()
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        self._check_inputs(args, kwargs)
        args = tuple(_to(a, self.device) for a in args)
        kwargs = {k: _to(v, self.device) for k, v in kwargs.items()}
        try:
            return self.graph_module(*args, **kwargs)
        except AssertionError as exc:  # torch.export's input guards, e.g. a sequence beyond the position table
            if not str(exc).startswith("Guard failed"):
                raise
            raise UserError(f"the inputs do not fit the compiled model ({str(exc)[:120]}); it takes "
                            f"{self.expected()}") from None

    def expected(self) -> str:
        """The compiled inputs, e.g. `input_ids [?, ?], attention_mask [?, ?]` (? = any size)."""
        return ", ".join(f"{name} [{', '.join('?' if d is None else str(d) for d in shape)}]"
                         for name, shape in (self.inputs or {}).items()) or "the example inputs' shapes"

    def _check_inputs(self, args: tuple, kwargs: dict) -> None:
        """Names, ranks and fixed sizes against the compiled inputs: a UserError naming the expected shape
        rather than the exported graph's bare guard."""
        if self.inputs is None:
            return
        names = list(self.inputs)
        given = dict(zip(names, args))
        if len(args) > len(names) or set(given) & set(kwargs) or set(given) | set(kwargs) != set(names):
            raise UserError(f"the simulated model takes {self.expected()}; got {len(args)} positional input(s) and "
                            f"{', '.join(kwargs) or 'no keyword inputs'}")
        for name, value in {**given, **kwargs}.items():
            shape = self.inputs[name]
            if not isinstance(value, torch.Tensor):
                continue
            if value.dim() != len(shape) or any(d is not None and d != n for d, n in zip(shape, value.shape)):
                raise UserError(f"input {name} has shape {list(value.shape)}; the model was compiled for "
                                f"{self.expected()}")


def _to(value: Any, device: torch.device) -> Any:
    return value.to(device) if isinstance(value, torch.Tensor) else value


def build_simulator(placed: PlacedGraph, t_inference: float = 0.0, seed: int | None = 0,
                    device: str | torch.device = "cpu",
                    hw: HardwareSpec | None = None, progress: bool = False,
                    native_kernels: bool | None = None,
                    ranges: dict[int, SegmentRanges] | None = None) -> SimulatedModel:
    """Program one chip instance (`seed`; None draws a fresh one, recorded as the result's `.seed`), drift it
    to `t_inference` seconds (finite, >= 0), return the model on it.

    hw: simulate the placement under another spec of the same tile shape (default: placed.hw), e.g.
    load_hw_spec("pcm_1M", overrides={"adc.bits": None, "device.drift": False}) to switch effects off.
    progress: a bar over the blocks while programming (stderr; drawn on a terminal only, compiler.progress).
    native_kernels: None runs the fused C kernels on CPU where they build (native.py) and torch ops
    elsewhere; False forces torch ops (same model and distributions, another random stream).
    ranges: per segment id, ranges to program instead of the placement's own (e.g. placed.ranges_before_pt,
    the chip without the post-training optimizations); the placement is not changed.
    """
    placed.refuse_stacked_experts("simulation")
    hw = hw or placed.hw
    device = _device(device)
    if isinstance(t_inference, bool) or not isinstance(t_inference, (int, float)) or not math.isfinite(t_inference) \
            or t_inference < 0:
        raise UserError(f"t_inference must be a finite number of seconds >= 0, got {str(t_inference)[:40]}")
    if seed is None:
        seed = secrets.randbits(32)  # a fresh chip; SimulatedModel.seed records it to program the same one again
    elif isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise UserError(f"seed must be an integer or None (a fresh one), got {str(seed)[:40]}")
    seed = int(seed)  # numpy integers too
    if (hw.tile.rows, hw.tile.cols) != (placed.hw.tile.rows, placed.hw.tile.cols):
        raise UserError(f"spec {hw.name} has {hw.tile.rows}x{hw.tile.cols} tiles but the placement was made for "
                        f"{placed.hw.tile.rows}x{placed.hw.tile.cols}; compile the model for this spec")
    try:
        fused = use_native(device, native_kernels)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    params = device_params(hw, t_inference) if fused else None
    segments = placed.segments_with(ranges)
    modules: dict[str, AnalogBlock | ReplicatedBlock] = {}
    bar = progress_bar(placed.blocks.values(), desc=f"programming chip (seed {seed}, t={t_inference:g} s)",
                       unit="block", enabled=progress)
    for index, block in enumerate(bar):
        layers, bias = block_layers(placed, block)

        def analog(tiles_hw: HardwareSpec, chip_seed: int, redundant: int, block=block, index=index, layers=layers,
                   bias=bias) -> AnalogBlock | ReplicatedBlock:
            copies = [AnalogBlock(block.name, block.in_features, block.out_features, layers, bias,
                                  [s for s in segments if s.block == block.name and s.copy == c], tiles_hw,
                                  t_inference, chip_seed,
                                  # copies: own output-noise streams (keys past every block's); their segments
                                  # have their own ids, so programming and read noise differ too
                                  key=index + (c + redundant * n_copies) * len(placed.blocks), device=device,
                                  params=params, native_kernels=fused)
                      for c in range(n_copies)]
            return copies[0] if len(copies) == 1 else ReplicatedBlock(copies)

        n_copies = placed.copies(block.name)
        option = placed.block_options.get(block.name)
        modules[block.name] = analog(hw, seed, 0) if option is None else \
            staged_block(option, hw, seed, analog, lambda block=block: block_weight(placed, block), device)
    graph_module = lower_graph(placed, modules, hw, ste=False, fused=fused)
    graph_module.to(device)
    return SimulatedModel(graph_module, modules, hw, t_inference, seed, device, inputs=_input_shapes(placed))


def _input_shapes(placed: PlacedGraph) -> dict[str, tuple[int | None, ...]] | None:
    """The exported program's user inputs: name -> shape (None for a dynamic dimension); None when an input
    is no tensor (then nothing is checked ahead of the graph's own guards)."""
    names = list(placed.exported.graph_signature.user_inputs)
    found = {}
    for node in placed.exported.graph.nodes:
        if node.op == "placeholder" and node.name in names:
            value = node.meta.get("val")
            if not isinstance(value, torch.Tensor):
                return None
            found[node.name] = tuple(_fixed_size(d) for d in value.shape)
    return found if list(found) == names else None


def _fixed_size(dim: Any) -> int | None:
    """A dimension's size when the export fixed it (an int, or a symbol specialized to a number), else None."""
    if isinstance(dim, int):
        return dim
    expr = getattr(getattr(dim, "node", None), "expr", None)
    return int(expr) if expr is not None and getattr(expr, "is_number", False) else None


def lower_graph(placed: PlacedGraph, blocks: dict[str, nn.Module], hw: HardwareSpec, ste: bool,
                fused: bool = False) -> torch.fx.GraphModule:
    """The exported graph with each weight block computed by blocks[name] and each integer attention matmul
    quantized (exact, or straight-through for training with `ste`); the model's other ops unchanged.

    The graph module shares the model's parameters (torch.export keeps the same objects), so a training
    block that reads them trains the model itself.
    """
    graph_module = placed.exported.module()
    nodes = {n.name: n for n in graph_module.graph.nodes}
    for index, block in enumerate(placed.blocks.values()):
        _lower_block(graph_module, nodes, placed, block, blocks[block.name], f"aimc_block_{index}")
    if hw.digital.attention_bits is not None:
        _lower_attention(graph_module, nodes, placed, hw, fused and not ste, ste)
    graph_module.graph.lint()
    graph_module.recompile()
    return graph_module


def _device(device: str | torch.device) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available to torch on this machine; use --device cpu")
    return device


def block_layers(placed: PlacedGraph, block: WeightBlock) -> tuple[list[LayerWeight], torch.Tensor | None]:
    """The block's layers (weight (out, in) and column offset each) and its concatenated bias (or None)."""
    layers = [placed.placements[name] for name in block.layers]
    weights = [LayerWeight(p.block_col_offset, placed.weight_of(p)) for p in layers]
    biases = [placed.bias_of(p) for p in layers]
    if all(b is None for b in biases):
        return weights, None
    bias = torch.cat([b.to(torch.float32) if b is not None else torch.zeros(p.out_features)
                      for b, p in zip(biases, layers)])
    return weights, bias


def block_weight(placed: PlacedGraph, block: WeightBlock) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The block's weight (out_features, in_features), its layers side by side, and its bias (or None)."""
    layers, bias = block_layers(placed, block)
    return segment_weight(layers, (0, block.out_features), (0, block.in_features)), bias


def _layer_output(block_output: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """One layer's columns of a fused block's output: a strided view, no copy. Attention splits only the
    last dimension of Q, K, V (view to heads x head_dim), which a column slice allows."""
    return block_output[..., start:stop]


def _lower_block(gm: torch.fx.GraphModule, nodes: dict[str, torch.fx.Node], placed: PlacedGraph,
                 block: WeightBlock, module: AnalogBlock, attr: str) -> None:
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    layer_nodes = [nodes[name] for name in block.layers]
    first = min(layer_nodes, key=order.__getitem__)
    source = first.args[0] if str(first.target) == "aten.linear.default" else first.args[1]
    gm.add_submodule(attr, module)
    with gm.graph.inserting_before(first):
        block_node = gm.graph.call_module(attr, (source,))
    for node in layer_nodes:
        p = placed.placements[node.name]
        if len(layer_nodes) == 1:
            replacement = block_node
        else:
            with gm.graph.inserting_before(node):
                replacement = gm.graph.call_function(
                    _layer_output, (block_node, p.block_col_offset, p.block_col_offset + p.out_features))
        replacement.meta = dict(node.meta)
        inputs = [a for a in node.all_input_nodes if a.op == "get_attr"]
        node.replace_all_uses_with(replacement)
        gm.graph.erase_node(node)
        for attr_node in inputs:             # the layer's weight and bias now live in the block
            if not attr_node.users:
                gm.graph.erase_node(attr_node)


def _lower_attention(gm: torch.fx.GraphModule, nodes: dict[str, torch.fx.Node], placed: PlacedGraph,
                     hw: HardwareSpec, fused: bool, ste: bool = False) -> None:
    """Each ATTENTION_MATMUL matmul -> integer.attention_matmul at the spec's bits and scale granularity, P
    unsigned where the partition traced the first operand to a softmax; `ste`: straight-through (training).
    The model's `attention_mask` input, where it has one, keeps padded tokens out of the dynamic scales:
    on the chip each sequence runs alone, unpadded."""
    per_head = hw.digital.attention_scale == "per_head"
    mask = nodes.get("attention_mask")
    mask = mask if mask is not None and mask.op == "placeholder" else None
    for p in placed.placements.values():
        if p.kind is not Kind.ATTENTION_MATMUL:
            continue
        node = nodes[p.node]
        a, b = node.args[0], node.args[1]
        node.target = attention_matmul
        node.args = (a, b, hw.digital.attention_bits, per_head, p.operand_is_probability, ste, fused, mask)
        node.kwargs = {}


__all__ = ["build_simulator", "SimulatedModel", "block_weight"]
