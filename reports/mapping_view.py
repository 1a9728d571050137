"""What the report shows about the mapping, derived from mapping.json alone (read through reports/schema.py).

Vocabulary follows compiler/ir.py: an analog *layer* is one weight-bearing node; a *slice* is the
rectangle of one tile that holds part of one layer (rows = inputs, cols = outputs, half-open).
A *group* is one transformer layer (`roberta.encoder.layer.3`); a layer's *role* is its path
inside that group (`attention.self.query`), which gives it its color on the tile map.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from reports.schema import MappingJson, Segment, SegmentRun, Stage

# The repeated-layer container of common transformer implementations: BERT/RoBERTa `encoder.layer.N`,
# GPT-2 `h.N`, DistilBERT `transformer.layer.N`, T5/others `block.N`, LLaMA-style `layers.N`.
_GROUP_RE = re.compile(r"^(?P<group>(?:.*\.)?(?:layer|layers|h|block|blocks)\.(?P<index>\d+))(?:\.(?P<role>.+))?$")

# Categorical colors, in the order roles first appear (Q, K, V, attention out, FFN in, FFN out, head, ...):
# three blues for Q/K/V, then hues far apart so neighbouring roles never look alike.
ROLE_COLORS = ["#2f5f98", "#4a86c5", "#8db8e3", "#8061a9", "#e07b39", "#e9b63d", "#2a9d8f",
               "#c44e52", "#6b8e23", "#b07aa1", "#7f7f7f", "#17becf"]


@dataclass
class Slice:
    layer: str
    tile: int
    rows: tuple[int, int]
    cols: tuple[int, int]
    in_features: tuple[int, int]
    out_features: tuple[int, int]
    dac_range: float | None
    adc_range: float | None

    @property
    def weights(self) -> int:
        return (self.rows[1] - self.rows[0]) * (self.cols[1] - self.cols[0])


@dataclass
class LayerRow:
    """One row of the per-layer table."""
    index: int
    name: str
    node: str
    kind: str
    op: str
    in_features: int | None
    out_features: int | None
    block: str | None = None
    group: str = ""
    role: str = ""
    slices: list[Slice] = field(default_factory=list)
    experts: int = 0                # stacked experts (mixture of experts): the weight holds this many

    @property
    def tiles(self) -> list[int]:
        return sorted({s.tile for s in self.slices})

    @property
    def weights(self) -> int | None:
        if self.kind != "analog" or self.in_features is None or self.out_features is None:
            return None
        return self.in_features * self.out_features * max(self.experts, 1)

    def _range(self, attr: str) -> tuple[float | None, float | None]:
        values = [getattr(s, attr) for s in self.slices if getattr(s, attr) is not None]
        return (min(values), max(values)) if values else (None, None)

    @property
    def dac_range(self) -> tuple[float | None, float | None]:
        return self._range("dac_range")

    @property
    def adc_range(self) -> tuple[float | None, float | None]:
        return self._range("adc_range")


@dataclass
class Group:
    """Tiles of one transformer layer (or of the layers outside the repeated stack)."""
    key: str
    label: str
    tiles: list[int] = field(default_factory=list)


@dataclass
class MappingView:
    data: MappingJson
    layers: list[LayerRow]
    tile_utilization: dict[int, float]
    roles: dict[str, str]              # role -> color
    groups: list[Group]
    tile_slices: dict[int, list[Slice]]

    @property
    def tile_rows(self) -> int:
        return self.data.tile_shape[0]

    @property
    def tile_cols(self) -> int:
        return self.data.tile_shape[1]

    @property
    def analog_layers(self) -> list[LayerRow]:
        return [layer for layer in self.layers if layer.kind == "analog"]

    def stage_share(self, layer: LayerRow, stages: dict[str, Stage]) -> tuple[Stage | None, float]:
        """The pipeline stage a layer runs in and the layer's share of it: a digital op is its own stage;
        an analog layer runs in its weight block's stage and owns the block's columns it fills."""
        if layer.node in stages:
            return stages[layer.node], 1.0
        if layer.block and layer.block in stages:
            block = next((b for b in self.data.blocks if b.name == layer.block), None)
            if block and layer.out_features and block.out_features:
                return stages[layer.block], layer.out_features / block.out_features
            return stages[layer.block], 1.0
        return None, 0.0

    def layer_utilization(self, layer: LayerRow) -> float | None:
        """Mean utilization of the tiles a layer occupies (tiles it shares count fully)."""
        tiles = layer.tiles
        if not tiles:
            return None
        return sum(self.tile_utilization.get(t, 0.0) for t in tiles) / len(tiles)


def split_group(name: str) -> tuple[str, str, str]:
    """(group key, group label, role) of a layer name."""
    match = _GROUP_RE.match(name)
    if match:
        return match["group"], f"layer {match['index']}", match["role"] or name
    parent = name.rsplit(".", 1)[0] if "." in name else (name or "model")
    return parent, parent, name


def build_mapping_view(data: MappingJson) -> MappingView:
    layers: list[LayerRow] = []
    roles: dict[str, str] = {}
    tile_slices: dict[int, list[Slice]] = {}
    # the compact form (segment_runs, no per-layer tiles): each layer's slices derived from its block's segments
    derived = layer_slices(data) if data.segment_runs and not any(e.tiles for e in data.layers) else {}
    for index, entry in enumerate(data.layers):
        group, _, role = split_group(entry.name)
        row = LayerRow(index=index, name=entry.name, node=entry.node, kind=entry.kind, op=entry.op,
                       in_features=entry.in_features, out_features=entry.out_features, block=entry.block,
                       group=group, role=role, experts=entry.experts)
        pieces = [Slice(layer=row.name, tile=t.tile, rows=t.rows, cols=t.cols, in_features=t.in_features,
                        out_features=t.out_features, dac_range=t.dac_range, adc_range=t.adc_range)
                  for t in entry.tiles] if entry.tiles else derived.get(entry.node, [])
        for piece in pieces:
            piece.layer = row.name
            row.slices.append(piece)
            tile_slices.setdefault(piece.tile, []).append(piece)
        if row.kind == "analog" and role not in roles:
            roles[role] = ROLE_COLORS[len(roles) % len(ROLE_COLORS)]
        layers.append(row)
    util = dict(data.tile_utilization)
    if not util and tile_slices:  # the compact form writes none: each tile's cells holding a weight
        cells = data.tile_shape[0] * data.tile_shape[1]
        util = {tile: sum(p.weights for p in pieces) / cells for tile, pieces in sorted(tile_slices.items())}
    return MappingView(data=data, layers=layers, tile_utilization=util, roles=roles,
                       groups=_group_tiles(layers, tile_slices), tile_slices=tile_slices)


def expand_runs(runs: list[SegmentRun]) -> list[Segment]:
    """The segments that `segment_runs` stands for, by the rule each run states (reports/schema.py)."""
    segments = []
    for run in runs:
        (r0, r1), (c0, c1) = run.rows, run.cols
        (br, _), (bc, _) = run.block_rows, run.block_cols
        h, w = r1 - r0, c1 - c0
        for k in range(run.count):
            i, j = divmod(k, run.across)
            segments.append(Segment(id=run.segment + k, tile=run.tile + k, rows=run.rows, cols=run.cols,
                                    block=run.block, block_rows=(br + i * h, br + (i + 1) * h),
                                    block_cols=(bc + j * w, bc + (j + 1) * w), dac_range=run.dac_range,
                                    adc_range=run.adc_range, col_w_max_range=run.col_w_max_range, copy=run.copy))
    return segments


def layer_slices(data: MappingJson) -> dict[str, list[Slice]]:
    """Layer node -> the tile rectangles holding it, from the blocks and segments (listed or as runs): a layer
    owns its block's columns from the sum of the widths of the layers before it in the block."""
    by_block: dict[str, list[Segment]] = {}
    for seg in data.segments or expand_runs(data.segment_runs):
        by_block.setdefault(seg.block, []).append(seg)
    entries = {e.node: e for e in data.layers if e.kind == "analog"}
    out: dict[str, list[Slice]] = {}
    for block in data.blocks:
        lo = 0
        for node in block.layers:
            entry = entries.get(node)
            if entry is None or entry.out_features is None:
                break  # a hand-made file naming a layer it does not list: no offsets past it
            hi = lo + entry.out_features
            pieces = out.setdefault(node, [])
            for seg in by_block.get(block.name, ()):
                a, b = max(lo, seg.block_cols[0]), min(hi, seg.block_cols[1])
                if a >= b:
                    continue
                col0 = seg.cols[0] + a - seg.block_cols[0]
                pieces.append(Slice(layer=entry.name, tile=seg.tile, rows=seg.rows, cols=(col0, col0 + b - a),
                                    in_features=seg.block_rows, out_features=(a - lo, b - lo),
                                    dac_range=seg.dac_range, adc_range=seg.adc_range))
            lo = hi
    return out


def _group_tiles(layers: list[LayerRow], tile_slices: dict[int, list[Slice]]) -> list[Group]:
    """Each tile joins the group holding most of its weights; groups keep model order."""
    layer_group = {layer.name: split_group(layer.name)[:2] for layer in layers}
    order: dict[str, Group] = {}
    for layer in layers:
        if layer.slices and layer.group not in order:
            key, label = layer_group[layer.name]
            order[key] = Group(key=key, label=label)
    for tile in sorted(tile_slices):
        weight_by_group: dict[str, int] = {}
        for piece in tile_slices[tile]:
            key = layer_group[piece.layer][0]
            weight_by_group[key] = weight_by_group.get(key, 0) + piece.weights
        owner = max(weight_by_group, key=lambda k: (weight_by_group[k], -list(order).index(k)))
        order[owner].tiles.append(tile)
    return [g for g in order.values() if g.tiles]
