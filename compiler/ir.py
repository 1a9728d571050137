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

from compiler.errors import UserError
from compiler.hw_spec import HardwareSpec
from compiler.models import ModelInfo, max_positions
from reports.schema import SCHEMA_VERSION

if TYPE_CHECKING:
    from torch.export import ExportedProgram


class Kind(str, Enum):
    ANALOG = "analog"
    DIGITAL_INT = "digital_int6"
    DIGITAL = "digital"


Span = tuple[int, int]  # half-open [start, stop)
# mapping.json lists every segment (and every layer's tile slices) up to this many segments; beyond, it holds
# them as runs (PlacedGraph.to_json): an 8B decoder's 28,628 segments listed one by one made 18 MB
FULL_MAPPING_SEGMENTS = 10_000

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
    # DIGITAL_INT only: the first operand is a softmax output P, quantized unsigned over [0, 1]
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
    def simulator(self, t_inference: float = 0.0, seed: int | None = 0, **options):
        """One programmed chip instance, drifted to `t_inference` seconds (finite, >= 0); seed=None draws a fresh
        chip, recorded as the result's `.seed` (see compiler.backends.simulator)."""
        from compiler.backends.simulator import build_simulator
        return build_simulator(self, t_inference=t_inference, seed=seed, **options)

    def estimate(self, batch: int = 1, seq_len: int = 128, **options):
        """Energy, latency and throughput of one inference (see compiler.backends.estimator); options: those of
        estimate (gen_len: a causal LM's prefill and decode)."""
        from compiler.backends.estimator import estimate
        return estimate(self, batch=batch, seq_len=seq_len, **options)

    # --- serialization -----------------------------------------------------------------------
    def to_json(self, full: bool | None = None) -> dict:
        """The content of mapping.json (typed definition: reports/schema.py, MappingJson; docs/outputs.md).

        `full`: every segment listed, and every layer's tile slices (True); the compact form (False): segments
        as runs of a regular split rule (`segment_runs`), no per-layer slices and no per-tile utilization (the
        report derives both from blocks and runs); None: full up to FULL_MAPPING_SEGMENTS segments."""
        if full is None:
            full = len(self.segments) <= FULL_MAPPING_SEGMENTS
        util = self.tile_utilization() if full else {}
        segments = {s.id: s for s in self.segments}
        layers = []
        for p in self.placements.values():
            if p.kind is Kind.DIGITAL and p.in_features is None:
                continue  # shape-only ops (view, transpose, ...) carry no work worth listing
            entry = {"name": p.module or p.node, "node": p.node, "kind": p.kind.value, "op": p.op,
                     "in_features": p.in_features, "out_features": p.out_features}
            if p.kind is Kind.ANALOG:
                entry["block"] = p.block
                if p.experts:
                    entry["experts"] = p.experts
            if p.kind is Kind.ANALOG and full:
                entry["tiles"] = [
                    {"tile": sl.tile, "chip": sl.tile // self.tiles_per_chip, "segment": sl.segment,
                     "rows": list(sl.rows), "cols": list(sl.cols), "in_features": list(sl.in_features),
                     "out_features": list(sl.out_features), "dac_range": segments[sl.segment].dac_range,
                     "adc_range": segments[sl.segment].adc_range, **({"copy": sl.copy} if sl.copy else {}),
                     **({"expert": sl.expert} if sl.expert is not None else {})}
                    for sl in self.layer_slices(p.node)]
            layers.append(entry)
        return {
            "schema_version": SCHEMA_VERSION,
            "model": self.model_info.name,
            "task": self.model_info.task,
            "weights": self.model_info.weights,
            "weights_source": self.model_info.source,
            **({"head": self.model_info.head} if self.model_info.head is not None else {}),
            "hw": self.hw.name,
            "hw_file": self.hw.source_file,
            "hw_spec": self.hw.to_dict(),
            "hw_overrides": dict(self.hw.overrides or {}),  # the report shows them without the spec file
            "allocation": self.allocation,
            "tile_shape": [self.hw.tile.rows, self.hw.tile.cols],
            "tiles_used": self.tiles_used,
            "tiles_available": self.hw.tile.count * self.hw.tile.max_chips,
            "tiles_per_chip": self.hw.tile.count,
            "chips_used": self.chips_used,
            **({"replicas": self.replicas} if self.replicas > 1 else {}),
            "analog_weights": self.analog_weights,
            "mean_utilization": self.mean_utilization,
            "tile_utilization": {str(t): u for t, u in util.items()},
            "blocks": [{k: v for k, v in asdict(b).items() if k != "expert" or v is not None}
                       for b in self.blocks.values()],
            "segments": [_segment_json(s) for s in self.segments] if full else [],
            **({} if full else {"segment_runs": segment_runs(self.segments)}),
            "layers": layers,
            **({"objective": self.objective, "strategies": self.strategies} if self.strategies else {}),
        }


def segment_runs(segments: list[TileSegment]) -> list[dict]:
    """Segments as runs (reports/schema.py, SegmentRun): consecutive ids on consecutive tiles, the same
    rectangle of each tile, the same block copy and ranges, holding the block's pieces in raster order (piece k
    at block rows + (k // across) x height, block cols + (k % across) x width). The allocator lays a block's
    full pieces out so: a 70B decoder's 265,128 segments make a few hundred runs."""
    runs: list[dict] = []
    for s in segments:
        if runs and _extends(runs[-1], s):
            runs[-1]["count"] += 1
            continue
        if runs and runs[-1]["across"] is None:
            runs[-1]["across"] = runs[-1]["count"]
        runs.append({"segment": s.id, "tile": s.tile, "count": 1, "across": None, "rows": list(s.rows),
                     "cols": list(s.cols), "block": s.block, "block_rows": list(s.block_rows),
                     "block_cols": list(s.block_cols), "copy": s.copy, "dac_range": s.dac_range,
                     "adc_range": s.adc_range})
        if s.col_w_max is not None:  # per-column values: summarized, as for a listed segment
            runs[-1]["col_w_max_range"] = [float(s.col_w_max.min()), float(s.col_w_max.max())]
    if runs and runs[-1]["across"] is None:
        runs[-1]["across"] = runs[-1]["count"]
    return runs


def _extends(run: dict, s: TileSegment) -> bool:
    """Whether `s` is the next segment of `run` by its rule (fixing the rule's `across` at the first wrap)."""
    k = run["count"]
    if (s.id != run["segment"] + k or s.tile != run["tile"] + k or s.block != run["block"] or s.copy != run["copy"]
            or list(s.rows) != run["rows"] or list(s.cols) != run["cols"] or "col_w_max_range" in run
            or s.col_w_max is not None or s.dac_range != run["dac_range"] or s.adc_range != run["adc_range"]):
        return False
    h, w = s.rows[1] - s.rows[0], s.cols[1] - s.cols[0]
    (r0, _), (c0, _) = run["block_rows"], run["block_cols"]
    if run["across"] is None:  # still on the first strip: continue it, or wrap to the next one
        if tuple(s.block_rows) == (r0, r0 + h) and tuple(s.block_cols) == (c0 + k * w, c0 + (k + 1) * w):
            return True
        if tuple(s.block_rows) == (r0 + h, r0 + 2 * h) and tuple(s.block_cols) == (c0, c0 + w):
            run["across"] = k
            return True
        return False
    i, j = divmod(k, run["across"])
    return (tuple(s.block_rows) == (r0 + i * h, r0 + (i + 1) * h)
            and tuple(s.block_cols) == (c0 + j * w, c0 + (j + 1) * w))


def _segment_json(segment: TileSegment) -> dict:
    data = {k: v for k, v in asdict(segment).items() if k != "col_w_max"}
    if segment.col_w_max is not None:  # per-column values are many; summarize them
        data["col_w_max_range"] = [float(segment.col_w_max.min()), float(segment.col_w_max.max())]
    return data
