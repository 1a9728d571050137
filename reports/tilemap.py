"""The tile map: every used tile drawn as a square, its layers drawn where they sit on the crossbar.

Inside a tile, x runs along the columns (outputs, bit lines) and y down the rows (inputs, word lines),
so a half-full tile shows its empty half, and the filled area of each cell *is* its utilization.
Tiles are grouped by transformer layer, one band per layer. Hand-built SVG: a few hundred tiles stay
small (no plotting library, no raster) and every rectangle carries the data its tooltip shows.

Beyond MAX_TILES_DRAWN tiles (an 8B decoder holds 28,628) the map draws one square per chip instead, striped
by the layer roles its tiles hold; clicking a chip draws that chip's tiles (reports/templates/report.js) from
a compact table embedded once (runs of tiles holding the same layer at the same fill), so the page stays small
at 518 chips.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape

from reports.mapping_view import MappingView

LABEL_WIDTH = 92       # px for the group labels on the left
DRAW_WIDTH = 1000      # px for the cells
GAP = 3                # px between cells
GROUP_GAP = 7          # extra px between groups
MAX_CELL, MIN_CELL = 30, 11
MAX_TILES_DRAWN = 2048  # beyond: one square per chip, drill into a chip (a tile each costs ~1 kB of page)
CHIP_CELL_MAX, CHIP_CELL_MIN = 56, 18


@dataclass
class TileMapSvg:
    svg: str
    width: int
    height: int
    cell: int
    by_chip: bool = False           # one square per chip; `chip_data` holds each chip's tiles for the drill-in
    chip_data: dict = field(default_factory=dict)
    chips: int = 0


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
    if len(view.tile_slices) > MAX_TILES_DRAWN and (view.data.tiles_per_chip or 0) > 0:
        return render_chip_overview(view)
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


def _main_pieces(view: MappingView) -> dict[int, object]:
    """Tile -> the slice filling most of it."""
    return {tile: max(pieces, key=lambda p: p.weights) for tile, pieces in view.tile_slices.items()}


def chip_table(view: MappingView) -> dict:
    """What the drill-in draws, per chip: runs [first tile on the chip, count, layer index, fill in permille] of
    consecutive tiles whose main layer and fill are the same; layers as [name, role index], roles as
    [role, color]. Tiles holding no weight are in no run."""
    per_chip = view.data.tiles_per_chip
    roles = list(view.roles)
    role_index = {role: i for i, role in enumerate(roles)}
    layer_index: dict[str, int] = {}
    layers: list[list] = []
    role_of = {layer.name: layer.role for layer in view.layers}
    chips: dict[int, list[list[int]]] = {}
    last = None
    for tile, main in sorted(_main_pieces(view).items()):
        if main.layer not in layer_index:
            layer_index[main.layer] = len(layers)
            layers.append([main.layer, role_index.get(role_of.get(main.layer, ""), -1)])
        chip, local = divmod(tile, per_chip)
        key = (chip, layer_index[main.layer], round(1000 * view.tile_utilization.get(tile, 0.0)))
        runs = chips.setdefault(chip, [])
        if last is not None and last[0] == key and last[1] == tile - 1:
            runs[-1][1] += 1
        else:
            runs.append([local, 1, key[1], key[2]])
        last = (key, tile)
    return {"per_chip": per_chip, "roles": [[r, view.roles[r]] for r in roles], "layers": layers,
            "chips": {str(c): runs for c, runs in chips.items()}}


def render_chip_overview(view: MappingView) -> TileMapSvg:
    """One square per chip in use, striped top to bottom by the roles of its tiles (each tile counted for the
    layer filling most of it), the unused rest grey; the square's data say what the tooltip shows."""
    per_chip = view.data.tiles_per_chip
    chips = max(view.tile_slices) // per_chip + 1
    per_line = max(1, math.ceil(math.sqrt(chips * 2)))
    cell = max(CHIP_CELL_MIN, min(CHIP_CELL_MAX, (LABEL_WIDTH + DRAW_WIDTH) // per_line - GAP))
    per_line = max(1, (LABEL_WIDTH + DRAW_WIDTH) // (cell + GAP))
    role_of = {layer.name: layer.role for layer in view.layers}
    group_of = {tile: group.label for group in view.groups for tile in group.tiles}
    counts: dict[int, dict[str, int]] = {}
    groups: dict[int, list[str]] = {}
    for tile, main in sorted(_main_pieces(view).items()):
        chip = tile // per_chip
        role = role_of.get(main.layer, "")
        counts.setdefault(chip, {})
        counts[chip][role] = counts[chip].get(role, 0) + 1
        label = group_of.get(tile, "")
        seen = groups.setdefault(chip, [])
        if label not in seen:
            seen.append(label)
    parts: list[str] = []
    for chip in range(chips):
        x, y = (chip % per_line) * (cell + GAP), (chip // per_line) * (cell + GAP)
        held = counts.get(chip, {})
        used = sum(held.values())
        names = groups.get(chip, [])
        span = names[0] if len(names) == 1 else f"{names[0]} – {names[-1]}" if names else "no weights"
        tip = f"chip {chip}|{used} of {per_chip} tiles hold weights|{span}"
        parts.append(f'<g class="chip" data-chip="{chip}" data-tip="{escape(tip)}" tabindex="0" role="button" '
                     f'aria-label="chip {chip}" transform="translate({x},{y})">'
                     f'<rect class="empty" width="{cell}" height="{cell}"/>')
        top = 0.0
        for role, color in view.roles.items():  # roles in model order: the stripes read like the layer stack
            n = held.get(role, 0)
            if n:
                h = n / per_chip * cell
                parts.append(f'<rect x="0" y="{_r(top)}" width="{cell}" height="{_r(h)}" fill="{color}"/>')
                top += h
        if cell >= 24:
            parts.append(f'<text class="clabel" x="{cell / 2:.1f}" y="{cell / 2 + 4:.1f}">{chip}</text>')
        parts.append(f'<rect class="edge" width="{cell}" height="{cell}"/></g>')
    lines = math.ceil(chips / per_line)
    width = min(chips, per_line) * (cell + GAP) - GAP
    height = lines * (cell + GAP) - GAP
    svg = (f'<svg class="tilemap chipview" viewBox="-2 -2 {width + 4} {height + 4}" width="{width + 4}" '
           f'height="{height + 4}" role="img" aria-label="chip map: one square per chip">' + "".join(parts) + "</svg>")
    return TileMapSvg(svg=svg, width=width, height=height, cell=cell, by_chip=True, chip_data=chip_table(view),
                      chips=chips)


def render_chip_map(view: MappingView, cell: int = 9, gap: float = 1.5, max_tiles: int = 4096) -> list[str]:
    """One small floorplan per chip in use: every tile of the chip, colored by the layer that fills most of it.
    None beyond MAX_TILES_DRAWN tiles: the chip overview (render_chip_overview) draws chips then."""
    per_chip = view.data.tiles_per_chip or 0
    chips = view.data.chips_used or 0
    if per_chip <= 0 or per_chip > max_tiles or chips <= 0 or len(view.tile_slices) > MAX_TILES_DRAWN:
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
