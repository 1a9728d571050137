"""The intermediate representation: the exported FX graph plus a typed placement per node.

Vocabulary (used throughout the project):
- analog *layer*: one weight-bearing node (aten.linear, or GPT-2's Conv1D as aten.addmm); its weight W
  has shape (out_features, in_features).
- weight *block*: one or more analog layers that read the same input tensor, concatenated along the
  output dimension (Q, K, V fused) -- the unit the allocator splits into pieces.
- tile *segment*: one rectangle of one tile holding one piece of one block. Tile rows are inputs
  (word lines), tile columns are outputs (bit lines). A segment is driven by one input vector and
  read in one MVM; segments sharing a tile are time-multiplexed (unused rows get zero input).
  DAC/ADC ranges belong to segments.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from typing import TYPE_CHECKING, Any

import torch

from compiler import backend
from compiler.config import DEFAULT_SEQ_LEN
from compiler.errors import UserError
from compiler.hw_spec import HardwareSpec
from compiler.models import ModelInfo, max_positions

if TYPE_CHECKING:
    from torch.export import ExportedProgram


class Kind(str, Enum):
    """Where a node runs. ATTENTION_MATMUL: a matmul of two activations (attention's QK^T and AV) on the digital
    unit in integers of `digital.attention_bits` (a spec field): its JSON value "digital_int6" is the schema's
    spelling from when the bits were fixed at 6 (docs/outputs.md)."""
    ANALOG = "analog"
    ATTENTION_MATMUL = "digital_int6"
    DIGITAL = "digital"


Span = tuple[int, int]  # half-open [start, stop)

# Ops that only reshape or route data; listed in mapping.json without features, costed as free.
SHAPE_OPS = {
    "aten.view.default", "aten.reshape.default", "aten.transpose.int", "aten.permute.default",
    "aten.contiguous.default", "aten.unsqueeze.default", "aten.squeeze.dim", "aten.expand.default",
    "aten.slice.Tensor", "aten.select.int", "aten.dropout.default", "aten.clone.default",
    "aten._assert_tensor_metadata.default", "aten.sym_size.int", "aten.alias.default", "aten.t.default",
    "aten.split.Tensor", "aten.split_with_sizes.default", "aten.chunk.default", "aten.to.dtype",
    "aten.to.dtype_layout", "aten.to.device", "aten.type_as.default", "aten.detach.default",
    "aten.flatten.using_ints", "aten.unflatten.int", "aten.view_as.default", "aten.expand_as.default",
}


@dataclass
class Placement:
    """Where one FX node runs. Analog fields are None for digital nodes."""
    node: str                       # FX node name in the exported graph
    kind: Kind
    op: str                         # ATen op, e.g. "aten.linear.default"
    module: str                     # nn.Module path that produced the node ("" if unknown)
    in_features: int | None = None
    out_features: int | None = None
    weight: str | None = None       # state-dict name of the weight (analog only)
    bias: str | None = None         # state-dict name of the bias (analog only)
    weight_transposed: bool = False  # True for GPT-2 Conv1D, whose weight is stored (in, out)
    block: str | None = None        # weight block holding this layer (analog only)
    block_col_offset: int = 0       # first column of this layer inside its block
    # ATTENTION_MATMUL only: the first operand is a softmax output P, quantized unsigned over [0, 1]
    operand_is_probability: bool = False
    # ANALOG only: experts stacked in the weight (mixture of experts, weight (E, out, in)); each expert is a
    # block of its own (WeightBlock.expert), `block` names expert 0's; 0 for a plain layer
    experts: int = 0

    @property
    def weights(self) -> int:
        """Analog weights of the layer (every expert's, for stacked experts)."""
        return self.in_features * self.out_features * max(self.experts, 1)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["kind"] = self.kind.value
        return data


def layer_group(module: str) -> str:
    """The per-layer bucket of a module path: the transformer block (`...layer.3`), else its parent module.

    `roberta.encoder.layer.3.attention.self.fused` -> `roberta.encoder.layer.3`;
    `roberta.embeddings.word_embeddings` -> `roberta.embeddings`; `classifier.dense` -> `classifier`.
    """
    if not module:
        return "(top level)"
    parts = module.split(".")
    for i, part in enumerate(parts):
        if part.isdigit():
            return ".".join(parts[:i + 1])
    return ".".join(parts[:-1]) if len(parts) > 1 else parts[0]


@dataclass
class WeightBlock:
    """Analog layers that share one input, concatenated along their outputs."""
    name: str
    layers: list[str]               # node names, in column order
    in_features: int
    out_features: int
    expert: int | None = None       # stacked experts: the expert whose 2-D slice of the weight this block holds


@dataclass
class TileSegment:
    """One rectangle of one tile holding rows `block_rows` x columns `block_cols` of one block."""
    id: int
    tile: int                       # global tile index; chip = tile // tiles per chip
    rows: Span                      # tile rows used
    cols: Span                      # tile columns used
    block: str
    block_rows: Span                # block input features on these rows
    block_cols: Span                # block output features on these columns
    dac_range: float | None = None  # input clip value (set by passes.ranges)
    adc_range: float | None = None  # ADC full scale, normalized output units (set by passes.ranges)
    # Per-column weight normalization w_max_c (length = columns of the segment; set by
    # passes.range_optimization). None = one per-tile value max|W| for every column.
    col_w_max: torch.Tensor | None = field(default=None, repr=False)
    # replication: which copy of its block this segment belongs to; every copy holds each weight once, on
    # its own tiles, and takes every k-th token (placement.py decides the copies, the estimator prices them)
    copy: int = 0

    @property
    def weights(self) -> int:
        return (self.rows[1] - self.rows[0]) * (self.cols[1] - self.cols[0])


@dataclass(frozen=True)
class AttentionLayer:
    """One attention layer as the traced graph has it (compiler.frontend.attention_layers): its matmuls on the
    attention unit and what a decoder's KV cache holds of it per token of a sequence: K of `kv_heads` heads of
    `head_dim`, and V (`values_per_token` counts both)."""
    layer: str                      # layer_group of the matmuls' module
    matmuls: tuple[str, ...]        # its attention matmul nodes (QK^T, PV), in graph order
    kv_heads: int
    head_dim: int
    values_per_token: int           # K and V elements cached per token of one sequence


@dataclass(frozen=True)
class SegmentRanges:
    """The ranges of one segment that the range passes set: a value to simulate other ranges with
    (PlacedGraph.simulator(ranges=...)) without changing the placement."""
    dac_range: float | None
    adc_range: float | None
    col_w_max: torch.Tensor | None = field(default=None, repr=False)


@dataclass
class LayerSlice:
    """The part of one segment that belongs to one layer (a view for reports and mapping.json)."""
    segment: int
    tile: int
    rows: Span
    cols: Span
    in_features: Span               # the layer's input features on `rows`
    out_features: Span              # the layer's output features on `cols`
    copy: int = 0                   # which copy of the block (replication)
    expert: int | None = None       # stacked experts: which expert's block


@dataclass
class PlacedGraph:
    exported: "ExportedProgram"
    model: torch.nn.Module
    hw: HardwareSpec
    model_info: ModelInfo
    placements: dict[str, Placement] = field(default_factory=dict)
    blocks: dict[str, WeightBlock] = field(default_factory=dict)
    segments: list[TileSegment] = field(default_factory=list)
    allocation: str = ""
    example: Any = None
    # the ranges per segment id as passes.ranges set them, before the post-training optimizations
    # (passes.range_optimization.calibrate_ranges); None without them
    ranges_before_pt: dict[int, SegmentRanges] | None = None
    # the strategies compiler/placement.py tried (tiles, latency, throughput each, the chosen one marked);
    # empty for an explicit allocation
    strategies: list[dict] = field(default_factory=list)
    objective: str = ""
    # whole copies of this mapping, each on chips of its own, each serving whole inferences (data parallel: the
    # throughput objective's answer when a chip's digital units set the period); tiles_used and chips_used count
    # one replica, the simulator programs one (another replica is another chip instance, i.e. another seed)
    replicas: int = 1
    # the calibration inputs' statistics (passes.range_optimization.CalibrationStats) when ranges were calibrated:
    # the estimator prices each PWM pulse by the measured mean input instead of full length; None without them
    calibration_stats: Any = None
    # --accuracy-budget: block name -> its compiler.block_options.BlockOption; a block without an entry runs as the
    # reference (analog at adc.bits); the simulator and the estimator read it
    block_options: dict[str, Any] = field(default_factory=dict)
    # the attention layers with their KV geometry (set by passes.partition from the traced graph's shapes)
    attention: tuple[AttentionLayer, ...] = ()

    # --- queries -----------------------------------------------------------------------------
    @property
    def graph(self) -> torch.fx.Graph:
        return self.exported.graph

    @property
    def max_positions(self) -> int | None:
        """The longest sequence the model accepts (its position table), None when it has no limit."""
        config = getattr(self.model, "config", None)
        limit = max_positions(config) if config is not None else None
        return limit if limit and limit < 1 << 30 else None

    def analog_layers(self) -> list[Placement]:
        return [p for p in self.placements.values() if p.kind is Kind.ANALOG]

    @property
    def analog_weights(self) -> int:
        return sum(p.weights for p in self.analog_layers())

    def blocks_of(self, node: str) -> list[WeightBlock]:
        """The blocks holding layer `node`: one, or one per expert of a stacked weight."""
        p = self.placements[node]
        if not p.experts:
            return [self.blocks[p.block]] if p.block in self.blocks else []  # [] before allocation
        return [b for b in self.blocks.values() if b.expert is not None and node in b.layers]

    def refuse_stacked_experts(self, what: str) -> None:
        """One line when the model has stacked experts (mixture of experts): `what` reads weight values per
        block, and nothing lowers an expert's block to tiles that only the router's tokens reach yet."""
        stacked = [p for p in self.analog_layers() if p.experts]
        if stacked:
            raise UserError(f"{self.model_info.name}: {what} is not supported for mixture-of-experts models yet "
                            f"({stacked[0].weight}: {stacked[0].experts} experts); experts are mapped and priced, "
                            f"but not simulated (routing tokens to expert tiles is missing); drop --simulate, "
                            f"--calibration and --hwa-finetune")

    @property
    def tiles_used(self) -> int:
        return len({s.tile for s in self.segments})

    @property
    def tiles_per_chip(self) -> int:
        return self.hw.tile.count

    @property
    def chips_used(self) -> int:
        return max((s.tile for s in self.segments), default=-1) // self.tiles_per_chip + 1

    def tile_utilization(self) -> dict[int, float]:
        """Fraction of each used tile's weight cells that hold a weight."""
        used: dict[int, int] = {}
        for s in self.segments:
            used[s.tile] = used.get(s.tile, 0) + s.weights
        return {t: n / self.hw.weights_per_tile for t, n in sorted(used.items())}

    @property
    def mean_utilization(self) -> float:
        util = self.tile_utilization()
        return sum(util.values()) / len(util) if util else 0.0

    def block_segments(self, block: str, copy: int | None = 0) -> list[TileSegment]:
        """The segments of one copy of `block` (copy=None: of every copy)."""
        return [s for s in self.segments if s.block == block and (copy is None or s.copy == copy)]

    def copies(self, block: str) -> int:
        return 1 + max((s.copy for s in self.segments if s.block == block), default=0)

    def segment_ranges(self) -> dict[int, SegmentRanges]:
        """The ranges every segment holds now, by segment id (col_w_max copied)."""
        return {s.id: SegmentRanges(s.dac_range, s.adc_range, None if s.col_w_max is None else s.col_w_max.clone())
                for s in self.segments}

    def segments_with(self, ranges: dict[int, SegmentRanges] | None) -> list[TileSegment]:
        """The segments, with `ranges` in place of their own (copies; the placement is not changed)."""
        if ranges is None:
            return self.segments
        missing = [s.id for s in self.segments if s.id not in ranges]
        if missing:
            raise ValueError(f"ranges given for {len(ranges)} segments; segment {missing[0]} has none")
        return [replace(s, dac_range=ranges[s.id].dac_range, adc_range=ranges[s.id].adc_range,
                        col_w_max=ranges[s.id].col_w_max) for s in self.segments]

    def layer_slices(self, node: str) -> list[LayerSlice]:
        """The tile rectangles holding layer `node`, in layer coordinates."""
        p = self.placements[node]
        lo, hi = p.block_col_offset, p.block_col_offset + p.out_features
        slices = []
        for block in self.blocks_of(node):
            for s in self.block_segments(block.name, copy=None):
                a, b = max(lo, s.block_cols[0]), min(hi, s.block_cols[1])
                if a >= b:
                    continue
                col0 = s.cols[0] + a - s.block_cols[0]
                slices.append(LayerSlice(segment=s.id, tile=s.tile, rows=s.rows, cols=(col0, col0 + b - a),
                                         in_features=s.block_rows, out_features=(a - lo, b - lo), copy=s.copy,
                                         expert=block.expert))
        return slices

    def weight_of(self, placement: Placement) -> torch.Tensor:
        """The layer's weight as (out_features, in_features)."""
        w = self.model.get_parameter(placement.weight).detach()
        return w.t() if placement.weight_transposed else w

    def bias_of(self, placement: Placement) -> torch.Tensor | None:
        return self.model.get_parameter(placement.bias).detach() if placement.bias else None

    # --- backends ----------------------------------------------------------------------------
    # The IR imports no backend: these two delegate through the table the `compiler` package wires
    # (compiler/__init__.py, BACKENDS); the functions themselves are compiler.backends.simulator.build_simulator
    # and compiler.backends.estimator.estimate.
    def simulator(self, t_inference: float = 0.0, seed: int | None = 0, **options):
        """One programmed chip instance, drifted to `t_inference` seconds (finite, >= 0); seed=None draws a fresh
        chip, recorded as the result's `.seed` (see compiler.backends.simulator)."""
        return backend("simulator")(self, t_inference=t_inference, seed=seed, **options)

    def estimate(self, batch: int = 1, seq_len: int = DEFAULT_SEQ_LEN, **options):
        """Energy, latency and throughput of one inference (see compiler.backends.estimator); options: those of
        estimate (gen_len: a causal LM's prefill and decode)."""
        return backend("estimate")(self, batch=batch, seq_len=seq_len, **options)
