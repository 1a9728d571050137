"""Decoders at scale (issue 14, items 1, 3 and 6), on tiny configs: the CLI maps and prices a config-only folder on
the meta device; the compact mapping.json (segment runs) stands for exactly the segments and layer slices the full
one lists; the report draws one square per chip when a model holds too many tiles to draw one by one. The 8B and
70B runs themselves are in bench/scale.py (too slow for the tests)."""
import contextlib
import io
import json
import re
import warnings
from html.parser import HTMLParser

import pytest
import transformers as tf

from compiler import compile_model, load_hw_spec, load_model
from compiler.cli import main
from compiler.frontend import export_model
from compiler.ir import PlacedGraph
from compiler.models import model_info
from compiler.placement import place
from compiler.writers import mapping_json
from passes import partition
from reports.mapping_view import build_mapping_view, expand_runs
from reports.render import render_report
from reports.schema import MappingJson, check_output
from reports.tilemap import MAX_TILES_DRAWN

TINY = dict(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64, bos_token_id=1, eos_token_id=2, pad_token_id=0,
            tie_word_embeddings=False)


def _analog_weights(c: dict) -> int:
    """What the config implies: per layer Q, K, V, O, gate, up, down; then the LM head."""
    h, inter, d = c["hidden_size"], c["intermediate_size"], c["hidden_size"] // c["num_attention_heads"]
    q, kv = c["num_attention_heads"] * d, c["num_key_value_heads"] * d
    per_layer = h * q + 2 * h * kv + q * h + 2 * h * inter + inter * h
    return c["num_hidden_layers"] * per_layer + h * c["vocab_size"]


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("llama-tiny")
    (folder / "config.json").write_text(tf.LlamaConfig(**TINY).to_json_string())
    return folder


def _cli(*argv) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main([str(a) for a in argv])
    return code, err.getvalue() + "".join(str(w.message) for w in caught)


def test_config_only_folder_through_the_cli_on_meta(config_dir, tmp_path):
    out = tmp_path / "out"
    code, err = _cli(config_dir, "--hw", "pcm_1M", "--seq-len", "16", "--gen-len", "8", "--out", out)
    assert code == 0, err
    assert "RANDOM" not in err and "meta device" in err           # no random init, and said so
    mapping = json.loads((out / "mapping.json").read_text())
    assert mapping["weights"] == "none" and mapping["weights_source"] == str(config_dir)
    assert mapping["task"] == "causal-lm"
    assert mapping["analog_weights"] == _analog_weights(TINY)
    assert (out / "cost.json").is_file() and "Tile map" in (out / "report.html").read_text()


@pytest.fixture(scope="module")
def exported(config_dir):
    """The tiny decoder on meta, exported once: each test maps it onto its own tiles."""
    model, example = load_model(str(config_dir), seq_len=8, materialize=False)
    return model, example, export_model(model, example)


def _placed(exported, tile: int, allocation: str) -> PlacedGraph:
    """The exported tiny decoder on `tile` x `tile` tiles, 64 per chip, as compile_model maps it (no ranges)."""
    model, example, program = exported
    hw = load_hw_spec("pcm_1M", {"tile.rows": tile, "tile.cols": tile, "tile.count": 64, "tile.max_chips": 1000})
    placed = PlacedGraph(exported=program, model=model, hw=hw, model_info=model_info(model), example=example)
    partition(placed)
    place(placed, allocation)
    return placed


def _slices(view) -> dict[str, list[tuple]]:
    return {layer.name: sorted((s.tile, s.rows, s.cols, s.in_features, s.out_features, s.dac_range, s.adc_range)
                               for s in layer.slices) for layer in view.layers}


@pytest.mark.parametrize("tile, allocation", [(8, "naive"), (12, "packed"), (12, "fused"), (24, "slack")])
def test_compact_mapping_stands_for_the_full_one(exported, tile, allocation):
    """Runs expand to the very segments listed one by one; the report's slices and utilization agree."""
    placed = _placed(exported, tile, allocation)
    full, compact = mapping_json(placed, full=True), mapping_json(placed, full=False)
    for data in (full, compact):
        check_output("mapping.json", json.loads(json.dumps(data)))
    assert compact["segments"] == [] and "segment_runs" not in full
    assert len(compact["segment_runs"]) < len(full["segments"]) / 4       # the point: far fewer entries
    a, b = MappingJson.from_json(json.loads(json.dumps(full))), MappingJson.from_json(json.loads(json.dumps(compact)))
    assert expand_runs(b.segment_runs) == list(a.segments)
    va, vb = build_mapping_view(a), build_mapping_view(b)
    assert _slices(va) == _slices(vb)
    assert vb.tile_utilization == pytest.approx(va.tile_utilization)
    assert [g.tiles for g in va.groups] == [g.tiles for g in vb.groups]
    # and from the IR itself: every layer slice the compiler computes, as the compact file's reader derives it
    assert sum(len(placed.layer_slices(p.node)) for p in placed.analog_layers()) == \
           sum(len(layer.slices) for layer in vb.layers)


def test_compact_mapping_keeps_calibrated_ranges_and_copies(config_dir):
    """Segments with ranges (and block copies) run alone or by equal ranges: nothing is lost."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, example = load_model(str(config_dir), seq_len=8)  # random weights: ranges need values
    hw = load_hw_spec("pcm_1M", {"tile.rows": 16, "tile.cols": 16, "tile.count": 64, "tile.max_chips": 1000})
    placed = compile_model(model, example, hw, allocation="packed", calibration=2, pt_input_range=False)
    from passes.tile_allocation import replicate
    name = next(iter(placed.blocks))
    replicate(placed, {name: 2})
    full, compact = mapping_json(placed, full=True), mapping_json(placed, full=False)
    a, b = MappingJson.from_json(json.loads(json.dumps(full))), MappingJson.from_json(json.loads(json.dumps(compact)))
    assert any(s.dac_range is not None for s in a.segments) and any(s.copy for s in a.segments)
    assert expand_runs(b.segment_runs) == list(a.segments)
    assert _slices(build_mapping_view(a)) == _slices(build_mapping_view(b))


def test_default_form_follows_the_segment_count(exported):
    from compiler.writers import FULL_MAPPING_SEGMENTS
    placed = _placed(exported, 32, "packed")
    assert len(placed.segments) <= FULL_MAPPING_SEGMENTS and mapping_json(placed)["segments"]


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tiles, self.chips, self.data = 0, [], None
        self._in_data = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tiles += tag == "g" and a.get("class") == "tile"
        if tag == "g" and a.get("class") == "chip":
            self.chips.append(a)
        self._in_data = tag == "script" and a.get("id") == "chip-data"

    def handle_data(self, data):
        if self._in_data:
            self.data = json.loads(data)
            self._in_data = False


def test_chip_view_beyond_the_tile_threshold(exported):
    """A model of more tiles than MAX_TILES_DRAWN (forced with 8x8 tiles, 64 per chip): one square per chip,
    and a drill-in table holding every used tile once, on its chip, with its layer; the per-tile map below it."""
    placed = _placed(exported, 8, "packed")
    mapping = json.loads(json.dumps(mapping_json(placed)))
    assert placed.tiles_used > MAX_TILES_DRAWN
    page = _Page()
    page.feed(render_report(mapping))
    assert page.tiles == 0 and len(page.chips) == placed.chips_used
    table = page.data
    assert table["per_chip"] == 64
    tiles = {}
    for chip, runs in table["chips"].items():
        for first, count, layer, permille in runs:
            for local in range(first, first + count):
                tiles[int(chip) * 64 + local] = (table["layers"][layer][0], permille)
    util = placed.tile_utilization()
    assert sorted(tiles) == sorted(util)
    module_of = {p.node: p.module for p in placed.analog_layers()}
    for tile, (layer, permille) in tiles.items():
        on_tile = [s for s in placed.segments if s.tile == tile]
        held = {module_of[node] for s in on_tile for node in placed.blocks[s.block].layers}
        assert layer in held and permille == round(1000 * util[tile])
    used = {int(c["data-chip"]): int(re.search(r"\|(\d+) of", c["data-tip"]).group(1)) for c in page.chips}
    assert sum(used.values()) == placed.tiles_used
    # a small model keeps the per-tile map
    small = _placed(exported, 32, "packed")
    page = _Page()
    page.feed(render_report(json.loads(json.dumps(mapping_json(small)))))
    assert page.tiles == small.tiles_used and not page.chips and page.data is None



def test_compact_cost_json_summarizes_the_tiles_as_the_chart_draws_them(exported, monkeypatch):
    """Beyond FULL_COST_TILES tiles, cost.json holds the tiles' busy fractions in steps: each step's max and mean
    are those of its tiles; the tile-busy chart of the compact file is the chart of the full one."""
    import reports.schema as schema
    from compiler.writers import cost_json
    from reports import charts
    from reports.schema import CostJson, tile_steps
    placed = _placed(exported, 8, "packed")
    cost = placed.estimate(batch=1, seq_len=8, sensitivity=False)
    full = json.loads(json.dumps(cost_json(cost)))
    util = {int(t): u for t, u in full["schedule"]["tile_utilization"].items()}
    assert len(util) == placed.tiles_used <= schema.FULL_COST_TILES and "tile_utilization_steps" not in full["schedule"]
    monkeypatch.setattr(schema, "FULL_COST_TILES", placed.tiles_used - 1)   # this model now counts as large
    compact = json.loads(json.dumps(cost_json(cost)))
    check_output("cost.json", compact)
    steps = compact["schedule"]["tile_utilization_steps"]
    assert compact["schedule"]["tile_utilization"] == {} and steps["tiles"] == len(util)
    assert steps["per_step"] == -(-len(util) // schema.TILE_STEPS) and len(steps["max"]) <= schema.TILE_STEPS
    a, b = CostJson.from_json(full), CostJson.from_json(compact)
    drawn = [re.sub(r"\bf\d+-", "f-", charts.tile_busy(c, None)) for c in (a, b)]   # ids count figures drawn
    assert drawn[0] == drawn[1]
    assert json.loads(json.dumps(cost_json(cost, full=True)))["schedule"]["tile_utilization"] == full["schedule"][
        "tile_utilization"]
    # fewer steps than tiles: each step the max and mean of its consecutive tiles
    few = tile_steps(util, steps=7)
    per = few.per_step
    tiles = sorted(util)
    assert per == -(-len(tiles) // 7) and len(few.first_tile) <= 7
    for i, first in enumerate(few.first_tile):
        chunk = [util[t] for t in tiles[i * per:(i + 1) * per]]
        assert first == tiles[i * per] and few.max[i] == max(chunk) and few.mean[i] == pytest.approx(sum(chunk) / len(chunk))


def test_layered_keeps_each_layer_on_one_chip_and_crosses_fewer_links(exported):
    """16x16 tiles, 160 per chip: a decoder layer (144 tiles) fits a chip, and packed spreads some over two.
    Layered puts each on one chip; its activations then cross chip links between layers only."""
    from compiler.ir import layer_group
    model, example, program = exported
    hw = load_hw_spec("pcm_1M", {"tile.rows": 16, "tile.cols": 16, "tile.count": 160, "tile.max_chips": 1000})
    crossings, chips_of = {}, {}
    for allocation in ("packed", "layered"):
        placed = PlacedGraph(exported=program, model=model, hw=hw, model_info=model_info(model), example=example)
        partition(placed)
        place(placed, allocation)
        chips: dict[str, set[int]] = {}
        tiles: dict[str, set[int]] = {}
        for s in placed.segments:
            chips.setdefault(layer_group(s.block), set()).add(s.tile // 160)
            tiles.setdefault(layer_group(s.block), set()).add(s.tile)
        chips_of[allocation] = {layer: len(c) for layer, c in chips.items() if len(tiles[layer]) <= 160}
        crossings[allocation] = placed.estimate(batch=1, seq_len=8, sensitivity=False).links.crossings
    assert set(chips_of["layered"].values()) == {1} and max(chips_of["packed"].values()) > 1
    assert crossings["layered"] < crossings["packed"]
