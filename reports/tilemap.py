"""The tile map: every used tile drawn as a square, its layers drawn where they sit on the crossbar.

Inside a tile, x runs along the columns (outputs, bit lines) and y down the rows (inputs, word lines),
so a half-full tile shows its empty half, and the filled area of each cell *is* its utilization.
Tiles are grouped by transformer layer, one band per layer. Hand-built SVG: a few hundred tiles stay
small (no plotting library, no raster) and every rectangle carries the data its tooltip shows.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

from reports.mapping_view import MappingView

LABEL_WIDTH = 92       # px for the group labels on the left
DRAW_WIDTH = 1000      # px for the cells
GAP = 3                # px between cells
GROUP_GAP = 7          # extra px between groups
MAX_CELL, MIN_CELL = 30, 11


@dataclass
class TileMapSvg:
    svg: str
    width: int
    height: int
    cell: int


def _layout(view: MappingView) -> tuple[int, int]:
    """(cell size, cells per line): the largest group fits on one line when cells can stay readable."""
    widest = max((len(g.tiles) for g in view.groups), default=1)
    cell = math.floor(DRAW_WIDTH / widest) - GAP
    cell = max(MIN_CELL, min(MAX_CELL, cell))
    per_line = max(1, DRAW_WIDTH // (cell + GAP))
    return cell, per_line


def _r(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def render_tile_map(view: MappingView) -> TileMapSvg:
    cell, per_line = _layout(view)
    rows_per_tile, cols_per_tile = view.tile_rows, view.tile_cols
    role_of = {layer.name: layer.role for layer in view.layers}
    table_index = {layer.name: layer.index for layer in view.layers}
    parts: list[str] = []
    y = 0
    for band, group in enumerate(view.groups):
        lines = math.ceil(len(group.tiles) / per_line)
        band_height = lines * (cell + GAP) - GAP
        if band % 2 == 0:  # zebra bands make the grouping visible without heavy rules
            parts.append(f'<rect class="band" x="0" y="{y - 3}" width="{LABEL_WIDTH + DRAW_WIDTH + 4}" '
                         f'height="{band_height + 6}" rx="4"/>')
        parts.append(f'<text class="glabel" x="8" y="{y + min(cell, band_height) / 2 + 4:.1f}">'
                     f'{escape(group.label)}</text>')
        parts.append(f'<text class="gcount" x="{LABEL_WIDTH - 8}" y="{y + min(cell, band_height) / 2 + 4:.1f}">'
                     f'{len(group.tiles)}</text>')
        for i, tile in enumerate(group.tiles):
            tx = LABEL_WIDTH + (i % per_line) * (cell + GAP)
            ty = y + (i // per_line) * (cell + GAP)
            util = view.tile_utilization.get(tile, 0.0)
            parts.append(f'<g class="tile" data-tile="{tile}" data-util="{util:.6g}" '
                         f'transform="translate({tx},{ty})">')
            parts.append(f'<rect class="empty" width="{cell}" height="{cell}"/>')
            for piece in view.tile_slices.get(tile, []):
                x = piece.cols[0] / cols_per_tile * cell
                w = (piece.cols[1] - piece.cols[0]) / cols_per_tile * cell
                yy = piece.rows[0] / rows_per_tile * cell
                h = (piece.rows[1] - piece.rows[0]) / rows_per_tile * cell
                color = view.roles.get(role_of.get(piece.layer, ""), "#999")
                tip = (f"{piece.layer}|rows {piece.rows[0]}–{piece.rows[1]}, cols {piece.cols[0]}–{piece.cols[1]}"
                       f"|inputs {piece.in_features[0]}–{piece.in_features[1]}, "
                       f"outputs {piece.out_features[0]}–{piece.out_features[1]}")
                parts.append(f'<rect class="w" x="{_r(x)}" y="{_r(yy)}" width="{_r(w)}" height="{_r(h)}" '
                             f'fill="{color}" data-l="{table_index.get(piece.layer, -1)}" data-tip="{escape(tip)}"/>')
            parts.append(f'<rect class="edge" width="{cell}" height="{cell}"/></g>')
        y += band_height + GAP + GROUP_GAP
    height = max(0, y - GAP - GROUP_GAP + 4)
    width = LABEL_WIDTH + DRAW_WIDTH + 4
    svg = (f'<svg class="tilemap" viewBox="-2 -4 {width} {height + 4}" width="{width}" height="{height + 4}" '
           f'role="img" aria-label="tile map">' + "".join(parts) + "</svg>")
    return TileMapSvg(svg=svg, width=width, height=height, cell=cell)


def render_chip_map(view: MappingView, cell: int = 9, gap: float = 1.5, max_tiles: int = 4096) -> list[str]:
    """One small floorplan per chip in use: every tile of the chip, colored by the layer that fills most of it."""
    per_chip = view.data.tiles_per_chip or 0
    chips = view.data.chips_used or 0
    if per_chip <= 0 or per_chip > max_tiles or chips <= 0:
        return []
    chips = min(chips, max(view.tile_slices, default=0) // per_chip + 1)  # none past the last one holding weights
    cols = max(1, 2 ** math.ceil(math.log2(math.sqrt(per_chip * 2))))
    cols = min(cols, per_chip)
    rows = math.ceil(per_chip / cols)
    role_of = {layer.name: layer.role for layer in view.layers}
    group_label = {tile: group.label for group in view.groups for tile in group.tiles}
    svgs = []
    for chip in range(chips):
        parts = []
        for local in range(per_chip):
            tile = chip * per_chip + local
            x, y = (local % cols) * (cell + gap), (local // cols) * (cell + gap)
            pieces = view.tile_slices.get(tile)
            if not pieces:
                parts.append(f'<rect class="free" x="{_r(x)}" y="{_r(y)}" width="{cell}" height="{cell}"/>')
                continue
            main = max(pieces, key=lambda p: p.weights)
            color = view.roles.get(role_of.get(main.layer, ""), "#999")
            util = view.tile_utilization.get(tile, 0.0)
            tip = f"tile {tile} · {group_label.get(tile, '')}|{main.layer}|{100 * util:.1f} % of its cells used"
            parts.append(f'<rect x="{_r(x)}" y="{_r(y)}" width="{cell}" height="{cell}" fill="{color}" '
                         f'data-tip="{escape(tip)}"/>')
        width, height = cols * (cell + gap) - gap, rows * (cell + gap) - gap
        svgs.append(f'<svg class="chipmap" viewBox="0 0 {_r(width)} {_r(height)}" width="{_r(width)}" '
                    f'height="{_r(height)}" role="img" aria-label="chip {chip} floorplan">' + "".join(parts) + "</svg>")
    return svgs
