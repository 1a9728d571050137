"""Tile allocation: analog weight blocks -> rectangles (segments) of crossbar tiles.

Strategies:
- naive:  every layer on its own, split into a grid of tile-sized pieces, one tile per piece
          (roberta-base on 512x512: 486 tiles, as in Lammie et al. 2024).
- fused:  layers that read the same input tensor (Q, K, V) become one block before splitting,
          so their partial column tiles merge.
- packed: fused, then the partial pieces (the row/column remainders) share tiles: each tile holds
          non-overlapping rectangles, time-multiplexed (a segment's MVM drives only its own rows).
          Fewest tiles, but pieces of one block sharing a tile serialize, and that stretches the pipeline.
- layered: packed within each transformer layer (`compiler.ir.layer_group` of its blocks), and each layer
          starts on a fresh chip when that makes it span fewer chips (on one chip where it fits): a layer's
          activations then cross chip links only between layers, not inside them. Tiles left empty at the end
          of a chip are the price.
- slack:  packed, but a tile is shared only by pieces of different blocks whose combined busy time per
          inference fits the pipeline period (`busy`, `period`: the estimator's schedule, given by
          compiler/placement.py), so packing costs no latency where the schedule allows it.
`replicate` then adds copies of chosen blocks on fresh tiles (`TileSegment.copy`); tokens alternate copies.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from compiler.errors import UserError
from compiler.ir import Kind, PlacedGraph, TileSegment, WeightBlock, layer_group

STRATEGIES = ("naive", "fused", "packed", "layered", "slack")
# tile pieces the allocator builds at most (one object each): beyond, tiles this small for this model are
# no chip anyone builds, and the pieces alone would take gigabytes (roberta-base on 1x1 tiles: 85M)
MAX_PIECES = 1_000_000


@dataclass
class _Piece:
    block: str
    block_rows: tuple[int, int]
    block_cols: tuple[int, int]

    @property
    def height(self) -> int:
        return self.block_rows[1] - self.block_rows[0]

    @property
    def width(self) -> int:
        return self.block_cols[1] - self.block_cols[0]


def allocate_tiles(placed: PlacedGraph, strategy: str = "packed", busy: dict[str, float] | None = None,
                   period: float | None = None) -> PlacedGraph:
    """Fill `placed.blocks` and `placed.segments` (in place; returns placed).

    slack only: `busy` maps a block name to the seconds one of its pieces keeps a tile busy per inference,
    `period` is the pipeline period that sharing a tile must not exceed."""
    if strategy not in STRATEGIES:
        raise UserError(f"unknown allocation {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    if strategy == "slack" and (busy is None or period is None):
        raise ValueError("slack allocation needs each block's busy time and the period (compiler/placement.py)")
    placed.blocks = _make_blocks(placed, fuse=strategy != "naive")
    _check_capacity_from_shapes(placed, strategy)
    rows, cols = placed.hw.tile.rows, placed.hw.tile.cols
    pieces = [piece for block in placed.blocks.values() for piece in _grid_pieces(block, rows, cols)]
    if strategy == "packed":
        placed.segments = _pack(pieces, rows, cols)
    elif strategy == "layered":
        tile = placed.hw.tile
        placed.segments = _layered(pieces, rows, cols, tile.count, tile.count * tile.max_chips)
    elif strategy == "slack":
        placed.segments = _pack(pieces, rows, cols, busy, period)
    else:
        placed.segments = [_segment(i, i, p, 0, 0) for i, p in enumerate(pieces)]
    placed.allocation = strategy
    _check_capacity(placed)
    return placed


def _make_blocks(placed: PlacedGraph, fuse: bool) -> dict[str, WeightBlock]:
    """One block per layer, or per shared input tensor when fusing; layers keep graph order. A layer of stacked
    experts is never fused: one block per expert, a 2-D slice (out, in) of its weight."""
    input_of = {n.name: n.args[1 if str(n.target) == "aten.addmm.default" else 0].name
                for n in placed.graph.nodes if n.name in placed.placements
                and placed.placements[n.name].kind is Kind.ANALOG}
    groups: dict[str, list[str]] = {}
    for node, source in input_of.items():
        groups.setdefault(source if fuse and not placed.placements[node].experts else node, []).append(node)
    blocks = {}
    for members in groups.values():
        layers = [placed.placements[m] for m in members]
        if layers[0].experts:
            p = layers[0]
            names = [_unique(f"{p.weight}[{e}]", blocks) for e in range(p.experts)]
            for e, name in enumerate(names):
                blocks[name] = WeightBlock(name, members, p.in_features, p.out_features, expert=e)
            p.block, p.block_col_offset = names[0], 0
            continue
        name = layers[0].module if len(layers) == 1 else _common_prefix([p.module for p in layers]) + "fused"
        name = _unique(name, blocks)
        offset = 0
        for p in layers:
            p.block, p.block_col_offset = name, offset
            offset += p.out_features
        blocks[name] = WeightBlock(name, members, layers[0].in_features, offset)
    return blocks


def _common_prefix(names: list[str]) -> str:
    parts = [n.split(".") for n in names]
    prefix = []
    for column in zip(*parts):
        if len(set(column)) != 1:
            break
        prefix.append(column[0])
    joined = ".".join(prefix)
    return joined + "." if joined else ""


def _unique(name: str, taken: dict) -> str:
    candidate, i = name, 1
    while candidate in taken:
        i += 1
        candidate = f"{name}#{i}"
    return candidate


def _grid_pieces(block: WeightBlock, rows: int, cols: int) -> list[_Piece]:
    name, n_in, n_out = block.name, block.in_features, block.out_features
    col_spans = [(c, min(c + cols, n_out)) for c in range(0, n_out, cols)]  # shared by every row of pieces
    return [_Piece(name, row_span, col_span)
            for row_span in [(r, min(r + rows, n_in)) for r in range(0, n_in, rows)] for col_span in col_spans]


def _segment(seg_id: int, tile: int, piece: _Piece, row0: int, col0: int) -> TileSegment:
    # positional, without the height/width properties: a 70B model's allocations build ~2 million of these
    (r0, r1), (c0, c1) = block_rows, block_cols = piece.block_rows, piece.block_cols
    return TileSegment(seg_id, tile, (row0, row0 + r1 - r0), (col0, col0 + c1 - c0), piece.block, block_rows,
                       block_cols)


def _moved(s: TileSegment, seg_id: int, tile: int) -> TileSegment:
    """`s` under a new id on another tile (dataclasses.replace, without its per-call field walk)."""
    return TileSegment(seg_id, tile, s.rows, s.cols, s.block, s.block_rows, s.block_cols, s.dac_range, s.adc_range,
                       s.col_w_max, s.copy)


def _pack(pieces: list[_Piece], rows: int, cols: int, busy: dict[str, float] | None = None,
          period: float | None = None) -> list[TileSegment]:
    """Full pieces get a tile each; partial ones are packed by MaxRects (best area fit), largest first.
    With `busy` and `period`: a tile takes a piece only if its busy time stays within the period and it holds
    no other piece of the same block (those would serialize inside one stage)."""
    segments: list[TileSegment] = []
    full = [p for p in pieces if p.height == rows and p.width == cols]
    partial = sorted((p for p in pieces if not (p.height == rows and p.width == cols)),
                     key=lambda p: (-p.height * p.width, -max(p.height, p.width)))
    for p in full:
        segments.append(_segment(len(segments), len(segments), p, 0, 0))
    free: list[list[tuple[int, int, int, int]]] = []  # per open tile: free rectangles (r, c, h, w)
    load: list[float] = []                             # per open tile: busy seconds per inference
    holds: list[set[str]] = []                         # per open tile: the blocks on it
    first_open = len(full)
    limit = period * (1 + 1e-9) if period is not None else None
    for p in partial:
        best = None
        cost = busy.get(p.block, 0.0) if busy is not None else 0.0
        for t, rects in enumerate(free):
            if limit is not None and (load[t] + cost > limit or p.block in holds[t]):
                continue
            for r in rects:
                if p.height <= r[2] and p.width <= r[3]:
                    waste = r[2] * r[3] - p.height * p.width
                    if best is None or waste < best[0]:
                        best = (waste, t, r)
        if best is None:
            free.append([(0, 0, rows, cols)])
            load.append(0.0)
            holds.append(set())
            best = (0, len(free) - 1, (0, 0, rows, cols))
        _, t, (r0, c0, _, _) = best
        load[t] += cost
        holds[t].add(p.block)
        segments.append(_segment(len(segments), first_open + t, p, r0, c0))
        free[t] = _split_free(free[t], (r0, c0, p.height, p.width))
    return segments


def _layered(pieces: list[_Piece], rows: int, cols: int, per_chip: int, capacity: int) -> list[TileSegment]:
    """Each layer's pieces packed on tiles of their own, layer after layer in model order; a layer starts on the
    next chip when it would span more chips from where the last one ended than from a fresh chip. Where those
    gaps would take more tiles than the chips allow (`capacity`), the layers follow one another without gaps."""
    layers: dict[str, list[_Piece]] = {}
    for p in pieces:
        layers.setdefault(layer_group(p.block), []).append(p)
    packed = [_pack(group, rows, cols) for group in layers.values()]
    for gaps in (True, False):
        segments: list[TileSegment] = []
        start = 0  # the first free tile
        for layer in packed:
            count = max(s.tile for s in layer) + 1
            if gaps and (start % per_chip + count - 1) // per_chip > (count - 1) // per_chip:
                start = -(-start // per_chip) * per_chip
            segments += [_moved(s, len(segments) + i, start + s.tile) for i, s in enumerate(layer)]
            start += count
        if start <= capacity:
            break
    return segments


def replicate(placed: PlacedGraph, copies: dict[str, int]) -> PlacedGraph:
    """Add copies of blocks (name -> total copies, >= 1) on fresh tiles, one tile per piece (in place).

    A copy holds every weight of its block exactly once, under new segment ids (so the simulator programs it
    as other devices) and `copy` = 1, 2, ...; it takes its ranges from copy 0, which holds the same weights."""
    placed.segments = [s for s in placed.segments if s.copy == 0]
    next_tile = max((s.tile for s in placed.segments), default=-1) + 1
    next_id = max((s.id for s in placed.segments), default=-1) + 1
    added = []
    for block, k in copies.items():
        originals = [s for s in placed.segments if s.block == block]
        for c in range(1, k):
            for s in originals:
                added.append(replace(s, id=next_id, tile=next_tile, rows=(0, s.rows[1] - s.rows[0]),
                                     cols=(0, s.cols[1] - s.cols[0]), copy=c,
                                     col_w_max=None if s.col_w_max is None else s.col_w_max.clone()))
                if placed.ranges_before_pt is not None and s.id in placed.ranges_before_pt:
                    placed.ranges_before_pt[next_id] = placed.ranges_before_pt[s.id]
                next_id, next_tile = next_id + 1, next_tile + 1
    placed.segments = placed.segments + added
    _check_capacity(placed)
    return placed


def _split_free(rects: list[tuple[int, int, int, int]], used: tuple[int, int, int, int]) -> list[tuple[int, int, int, int]]:
    """MaxRects update: cut `used` out of every free rectangle it overlaps, then drop contained ones."""
    ur, uc, uh, uw = used
    out = []
    for r, c, h, w in rects:
        if ur >= r + h or ur + uh <= r or uc >= c + w or uc + uw <= c:
            out.append((r, c, h, w))
            continue
        if ur > r:
            out.append((r, c, ur - r, w))
        if ur + uh < r + h:
            out.append((ur + uh, c, r + h - ur - uh, w))
        if uc > c:
            out.append((r, c, h, uc - c))
        if uc + uw < c + w:
            out.append((r, uc + uw, h, c + w - uc - uw))
    return [a for i, a in enumerate(out)
            if not any(i != j and _contains(b, a) and (b != a or j < i) for j, b in enumerate(out))]


def _contains(outer: tuple[int, int, int, int], inner: tuple[int, int, int, int]) -> bool:
    return (outer[0] <= inner[0] and outer[1] <= inner[1] and inner[0] + inner[2] <= outer[0] + outer[2]
            and inner[1] + inner[3] <= outer[1] + outer[3])


def _check_capacity_from_shapes(placed: PlacedGraph, strategy: str) -> None:
    """Fail fast, before any piece is built: the tiles the blocks need at least (naive and fused: exactly one
    per grid piece; packed: the weights over the cells of a tile), against what the spec offers."""
    tile = placed.hw.tile
    blocks = placed.blocks.values()
    pieces = sum(math.ceil(b.in_features / tile.rows) * math.ceil(b.out_features / tile.cols) for b in blocks)
    weights = sum(b.in_features * b.out_features for b in blocks)
    needed = math.ceil(weights / (tile.rows * tile.cols)) if strategy in ("packed", "layered") else pieces
    capacity = tile.count * tile.max_chips
    if needed > capacity:
        raise UserError(f"{placed.model_info.name} needs at least {needed:,} tiles of {tile.rows}x{tile.cols} "
                        f"({strategy} allocation) but {placed.hw.name} offers {capacity:,} ({tile.count} per chip x "
                        f"{tile.max_chips} chips); use larger tiles or raise tile.count or tile.max_chips")
    if pieces > MAX_PIECES:
        raise UserError(f"{placed.model_info.name} on {tile.rows}x{tile.cols} tiles is {pieces:,} tile pieces; the "
                        f"allocator builds at most {MAX_PIECES:,}: use larger tiles")


def _check_capacity(placed: PlacedGraph) -> None:
    tile = placed.hw.tile
    capacity = tile.count * tile.max_chips
    if placed.tiles_used > capacity:
        raise UserError(f"{placed.model_info.name} needs {placed.tiles_used} tiles of {tile.rows}x{tile.cols} "
                        f"({placed.allocation} allocation) but {placed.hw.name} offers {capacity} "
                        f"({tile.count} per chip x {tile.max_chips} chips); raise tile.count or tile.max_chips "
                        f"(--set tile.max_chips=N)")
