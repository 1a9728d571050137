import dataclasses
import inspect
import random

import numpy as np
import pytest
import torch
from torch import nn

from compiler import Kind, compile_model, load_hw_spec
from compiler.writers import mapping_json
from passes import allocate_tiles


def test_roberta_base_naive_needs_486_tiles_as_in_lammie_et_al(roberta_placed_naive):
    assert roberta_placed_naive.tiles_used == 486
    analog = roberta_placed_naive.analog_layers()
    assert len(analog) == 12 * 6 + 2  # Q, K, V, O, FFN1, FFN2 per layer + the classifier's dense and out_proj
    assert sum(p.in_features * p.out_features for p in analog) == 85_526_016  # ~85.5M analog weights


def test_roberta_base_fused_and_packed_need_fewer_tiles(roberta_placed_naive):
    placed = roberta_placed_naive
    try:
        counts = {s: allocate_tiles(placed, s).tiles_used for s in ("naive", "fused", "packed")}
        qkv = [b for b in placed.blocks.values() if len(b.layers) == 3]
    finally:
        allocate_tiles(placed, "naive")
    lower_bound = -(-85_526_016 // (512 * 512))
    assert counts["naive"] == 486
    assert lower_bound <= counts["packed"] < counts["fused"] < counts["naive"]
    assert lower_bound == 327
    assert len(qkv) == 12  # Q, K and V of every layer share their input and are fused


def test_default_allocation_beats_naive(roberta_base, pcm_1m, roberta_placed_naive):
    from compiler.ir import PlacedGraph
    placements = {name: dataclasses.replace(p) for name, p in roberta_placed_naive.placements.items()}
    placed = PlacedGraph(roberta_placed_naive.exported, roberta_placed_naive.model, pcm_1m,
                         roberta_placed_naive.model_info, placements)
    strategy = inspect.signature(compile_model).parameters["allocation"].default
    from compiler.placement import place
    place(placed, strategy)
    assert placed.tiles_used < 486


def test_partition_kinds(roberta_placed_naive):
    kinds = {}
    for p in roberta_placed_naive.placements.values():
        kinds.setdefault(p.kind, []).append(p)
    assert len(kinds[Kind.ATTENTION_MATMUL]) == 24  # QK^T and AV in each of 12 layers
    assert all(p.op == "aten.linear.default" for p in kinds[Kind.ANALOG])
    assert any(p.op == "aten.softmax.int" for p in kinds[Kind.DIGITAL])
    assert any(p.op == "aten.layer_norm.default" for p in kinds[Kind.DIGITAL])


def test_single_linear_uses_exactly_one_tile(pcm_1m):
    placed = compile_model(nn.Linear(512, 512), (torch.randn(4, 512),), pcm_1m)
    assert placed.tiles_used == 1
    assert placed.mean_utilization == 1.0
    mapping = mapping_json(placed)
    (layer,) = [entry for entry in mapping["layers"] if entry["kind"] == "analog"]
    assert (layer["in_features"], layer["out_features"]) == (512, 512)
    assert layer["tiles"][0]["rows"] == [0, 512] and layer["tiles"][0]["cols"] == [0, 512]


class _Branchy(nn.Module):
    """Two layers reading one input (fusable), then a layer on their concatenation, then a head."""

    def __init__(self, d_in: int, d_a: int, d_b: int, d_out: int):
        super().__init__()
        self.a, self.b = nn.Linear(d_in, d_a), nn.Linear(d_in, d_b, bias=False)
        self.c, self.head = nn.Linear(d_a + d_b, d_out), nn.Linear(d_out, 3)

    def forward(self, x):
        return self.head(torch.relu(self.c(torch.cat([self.a(x), self.b(x)], dim=-1))))


def _check_every_weight_placed_once(placed):
    rows, cols = placed.hw.tile.rows, placed.hw.tile.cols
    for layer in placed.analog_layers():
        cover = np.zeros((layer.in_features, layer.out_features), dtype=np.int32)
        for sl in placed.layer_slices(layer.node):
            assert sl.rows[1] - sl.rows[0] == sl.in_features[1] - sl.in_features[0]
            assert sl.cols[1] - sl.cols[0] == sl.out_features[1] - sl.out_features[0]
            cover[sl.in_features[0]:sl.in_features[1], sl.out_features[0]:sl.out_features[1]] += 1
        assert (cover == 1).all(), f"{layer.node}: weights placed {cover.min()}..{cover.max()} times"
    by_tile = {}
    for seg in placed.segments:
        assert 0 <= seg.rows[0] < seg.rows[1] <= rows and 0 <= seg.cols[0] < seg.cols[1] <= cols
        by_tile.setdefault(seg.tile, np.zeros((rows, cols), dtype=np.int32))
        by_tile[seg.tile][seg.rows[0]:seg.rows[1], seg.cols[0]:seg.cols[1]] += 1
    for tile, occupancy in by_tile.items():
        assert occupancy.max() == 1, f"tile {tile}: segments overlap"
    assert placed.tiles_used == len(by_tile)
    weights = sum(p.in_features * p.out_features for p in placed.analog_layers())
    assert placed.tiles_used >= -(-weights // (rows * cols))


@pytest.mark.parametrize("case", range(12))
def test_every_weight_placed_exactly_once_random_shapes(case):
    rng = random.Random(case)
    dims = [rng.choice([1, 3, 17, 64, 100, 255, 256, 300, 513, 700]) for _ in range(4)]
    tile = (rng.choice([16, 64, 128, 256, 512]), rng.choice([16, 64, 100, 256, 512]))
    hw = load_hw_spec("pcm_1M", {"tile.rows": tile[0], "tile.cols": tile[1], "tile.max_chips": 1000})
    model = _Branchy(*dims)
    placed = compile_model(model, (torch.randn(2, dims[0]),), hw, allocation="naive")
    counts = {}
    for strategy in ("naive", "fused", "packed", "layered"):
        allocate_tiles(placed, strategy)
        _check_every_weight_placed_once(placed)
        counts[strategy] = placed.tiles_used
    assert counts["packed"] <= counts["fused"] <= counts["naive"] and counts["packed"] <= counts["layered"]


def test_model_larger_than_the_chip_is_a_clear_error(pcm_1m):
    from compiler import UserError
    hw = load_hw_spec("pcm_1M", {"tile.rows": 16, "tile.cols": 16, "tile.count": 4, "tile.max_chips": 1})
    with pytest.raises(UserError, match=r"needs (at least )?\d+ tiles.*offers 4"):
        compile_model(nn.Linear(64, 64), (torch.randn(2, 64),), hw)


def test_model_spanning_chips_reports_chips_used():
    hw = load_hw_spec("pcm_1M", {"tile.rows": 16, "tile.cols": 16, "tile.count": 4, "tile.max_chips": 8})
    placed = compile_model(nn.Linear(64, 64), (torch.randn(2, 64),), hw)
    assert placed.tiles_used == 16 and placed.chips_used == 4


def test_gpt2_conv1d_layers_are_analog(pcm_1m):
    from compiler import load_model
    model, example = load_model("gpt2", seq_len=16)
    placed = compile_model(model, example, pcm_1m)
    analog = placed.analog_layers()
    assert len(analog) == 12 * 4 + 1  # c_attn, c_proj, c_fc, mlp.c_proj per block + lm_head
    c_attn = analog[0]
    assert c_attn.weight_transposed and (c_attn.in_features, c_attn.out_features) == (768, 2304)
    assert torch.equal(placed.weight_of(c_attn), model.transformer.h[0].attn.c_attn.weight.t())
    _check_every_weight_placed_once(placed)


# --- placement for an objective (compiler/placement.py) -------------------------------------------------------

def _fresh(placed_naive, hw):
    from compiler.ir import PlacedGraph
    placements = {name: dataclasses.replace(p) for name, p in placed_naive.placements.items()}
    return PlacedGraph(placed_naive.exported, placed_naive.model, hw, placed_naive.model_info, placements)


def test_auto_objectives_on_roberta_base(roberta_placed_naive, pcm_1m):
    from compiler.placement import place
    placed = _fresh(roberta_placed_naive, pcm_1m)
    place(placed, "auto", "tiles")
    assert placed.tiles_used == 327
    rows = {r["name"]: r for r in placed.strategies}
    naive = rows["naive"]
    assert rows["packed"]["chosen"] and rows["naive"]["tiles"] == 486
    place(placed, "auto")  # balanced: fewest tiles within 2 % of the best latency
    assert placed.tiles_used < 486 and placed.allocation == "slack"
    chosen = next(r for r in placed.strategies if r["chosen"])
    assert chosen["latency_s"] <= naive["latency_s"] * 1.02
    copies = place(placed, "auto", "latency")
    chosen = next(r for r in placed.strategies if r["chosen"])
    assert chosen["latency_s"] <= naive["latency_s"] and copies  # spare tiles hold copies
    assert chosen["tiles"] <= 512
    # on pcm_1M the attention units, not a tile, set the period: copies cannot raise throughput, and the
    # strategies say so (packed, whose shared tiles serialize, is the one tile-bound mapping)
    assert rows["packed"]["bottleneck_tile"] is not None and naive["bottleneck"] == "attention units"
    assert chosen["throughput_per_s"] == pytest.approx(naive["throughput_per_s"])


def test_throughput_objective_replicates_the_mapping_on_chips_of_its_own(roberta_placed_naive, pcm_1m):
    """On one chip the attention units bound roberta-base; with a tile budget for a second chip, a whole replica
    of the mapping (its own chip, its own digital units) doubles throughput at the same latency."""
    from compiler.backends.estimator import estimate
    from compiler.placement import place
    placed = _fresh(roberta_placed_naive, pcm_1m)
    place(placed, "auto", "throughput")  # no budget: the chips the mapping needs, no replica
    assert placed.replicas == 1
    one = estimate(placed, sensitivity=False)
    place(placed, "auto", "throughput", max_tiles=1024)
    rows = {r["name"]: r for r in placed.strategies}
    naive = rows["naive"]
    chosen = next(r for r in placed.strategies if r["chosen"])
    assert placed.replicas == chosen["replicas"] == 2 and chosen["tiles"] == 2 * placed.tiles_used <= 1024
    assert chosen["throughput_per_s"] >= 1.3 * naive["throughput_per_s"]
    assert chosen["latency_s"] == pytest.approx(rows["slack"]["latency_s"])
    two = estimate(placed, sensitivity=False)
    # one inference costs what it cost on one replica; the stream, the leakage and the silicon double
    assert two.energy_J == pytest.approx(one.energy_J) and two.latency_s == pytest.approx(one.latency_s)
    assert two.throughput_inferences_per_s == pytest.approx(2 * one.throughput_inferences_per_s)
    assert two.area_mm2 == pytest.approx(2 * one.area_mm2)
    assert two.static_power_W == pytest.approx(2 * one.static_power_W)
    assert two.power_W == pytest.approx(2 * one.power_W)
    totals = two.to_json()["totals"]
    assert totals["replicas"] == 2 and totals["period_s"] == pytest.approx(one.period_s / 2)
    assert mapping_json(placed)["replicas"] == 2
    # the area's uncertainty range brackets the area the report's card shows: every replica's silicon
    low, middle, high = estimate(placed).to_json()["sensitivity"]["ranges"]["area_mm2"]
    assert middle == pytest.approx(two.area_mm2) and low <= middle <= high


def test_budgets_are_respected_or_refused(roberta_placed_naive, pcm_1m):
    from compiler.errors import UserError
    from compiler.placement import place
    placed = _fresh(roberta_placed_naive, pcm_1m)
    place(placed, "auto", max_tiles=400)
    assert placed.tiles_used <= 400
    with pytest.raises(UserError, match="no mapping of roberta-base on pcm_1M fits --max-tiles 100"):
        place(placed, "auto", max_tiles=100)
    with pytest.raises(UserError, match="fits --max-latency"):
        place(placed, "auto", max_latency_s=1e-6)
    place(placed, "auto", "tiles", max_latency_s=250e-6)
    assert next(r for r in placed.strategies if r["chosen"])["latency_s"] <= 250e-6


def test_a_budget_between_slack_and_packed_gets_a_mapping_between_them(roberta_placed_naive, pcm_1m):
    """--max-tiles 400 on roberta-base: slack needs more, packed 327; the search tries slack with the least
    busy blocks packed and keeps the fastest that fits, where it used to fall back to packed."""
    from compiler.placement import place
    placed = _fresh(roberta_placed_naive, pcm_1m)
    place(placed, "auto")
    slack = next(r for r in placed.strategies if r["name"] == "slack")
    packed = next(r for r in placed.strategies if r["name"] == "packed")
    budget = (slack["tiles"] + packed["tiles"]) // 2
    assert packed["tiles"] < budget < slack["tiles"]
    place(placed, "auto", "latency", max_tiles=budget)
    rows = {r["name"]: r for r in placed.strategies}
    between = [r for name, r in rows.items() if "least busy packed" in name]
    assert between and all(packed["tiles"] <= r["tiles"] < slack["tiles"] for r in between)
    chosen = next(r for r in placed.strategies if r["chosen"])
    assert "least busy packed" in chosen["name"] and chosen["tiles"] <= budget
    assert chosen["latency_s"] < packed["latency_s"]       # better than the packed fallback
    assert placed.tiles_used == chosen["tiles"]              # the chosen mapping is the one applied
    _assert_each_weight_once_per_copy(placed)


def _assert_each_weight_once_per_copy(placed):
    for block in placed.blocks.values():
        for c in range(placed.copies(block.name)):
            covered = np.zeros((block.in_features, block.out_features), dtype=np.int32)
            for s in placed.block_segments(block.name, copy=c):
                assert s.rows[1] - s.rows[0] == s.block_rows[1] - s.block_rows[0]
                assert s.cols[1] - s.cols[0] == s.block_cols[1] - s.block_cols[0]
                covered[s.block_rows[0]:s.block_rows[1], s.block_cols[0]:s.block_cols[1]] += 1
            assert (covered == 1).all(), (block.name, c)
    cells: dict[int, np.ndarray] = {}
    for s in placed.segments:  # no two segments overlap on a tile
        grid = cells.setdefault(s.tile, np.zeros((placed.hw.tile.rows, placed.hw.tile.cols), dtype=np.int32))
        grid[s.rows[0]:s.rows[1], s.cols[0]:s.cols[1]] += 1
    assert all((g <= 1).all() for g in cells.values())
    assert len({s.id for s in placed.segments}) == len(placed.segments)


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=25, deadline=None)
@given(shapes=st.lists(st.tuples(st.integers(1, 90), st.integers(1, 90)), min_size=1, max_size=4),
       tile=st.tuples(st.integers(4, 40), st.integers(4, 40)), strategy=st.sampled_from(["naive", "fused", "packed", "layered"]),
       copies=st.integers(1, 3))
def test_every_weight_placed_once_per_copy(shapes, tile, strategy, copies):
    from passes.tile_allocation import replicate
    layers = [nn.Linear(a, b) for a, b in shapes]
    chain = []
    for i, layer in enumerate(layers):  # each layer reads the previous one's output
        chain.append(nn.Linear(layers[i - 1].out_features, layer.in_features) if i else nn.Identity())
        chain.append(layer)
    model = nn.Sequential(*[m for m in chain if not isinstance(m, nn.Identity)])
    hw = load_hw_spec("pcm_1M", overrides={"tile.rows": tile[0], "tile.cols": tile[1], "tile.max_chips": 64})
    placed = compile_model(model, (torch.randn(2, shapes[0][0]),), hw, allocation=strategy)
    _assert_each_weight_once_per_copy(placed)
    replicate(placed, {name: copies for name in list(placed.blocks)[::2]})
    _assert_each_weight_once_per_copy(placed)
    assert placed.copies(next(iter(placed.blocks))) == copies


def test_replicated_copies_are_distinct_devices(pcm_1m):
    from passes.tile_allocation import replicate
    hw = load_hw_spec("pcm_1M", overrides={"output_noise": 0.0})
    model = nn.Sequential(nn.Linear(64, 32))
    placed = compile_model(model, (torch.randn(4, 64),), hw, allocation="naive", calibration=4)
    replicate(placed, {next(iter(placed.blocks)): 2})
    assert {s.copy for s in placed.segments} == {0, 1} and placed.tiles_used == 2
    sim = placed.simulator(seed=3)
    (block,) = sim.blocks.values()
    x = torch.randn(6, 64)
    a, b = block.copies[0](x), block.copies[1](x)
    assert not torch.allclose(a, b)                  # other devices: other programming noise
    out = block(x)                                   # token i on copy i mod 2
    assert torch.allclose(out[0::2], block.copies[0](x[0::2])) and torch.allclose(out[1::2], block.copies[1](x[1::2]))


def test_layered_gaps_never_take_more_chips_than_the_spec_allows():
    """Three 40x40 layers on 16x16 tiles (7 tiles each when packed), 12 tiles to a chip: with room, each layer
    starts on a chip of its own; where those gaps would need a third chip and the spec allows two, the layers
    follow one another."""
    model = nn.Sequential(nn.Linear(40, 40), nn.Linear(40, 40), nn.Linear(40, 40))
    for chips in (3, 2):
        hw = load_hw_spec("pcm_1M", {"tile.rows": 16, "tile.cols": 16, "tile.count": 12, "tile.max_chips": chips})
        placed = compile_model(model, (torch.randn(2, 40),), hw, allocation="layered")
        _check_every_weight_placed_once(placed)
        on = {block: sorted({s.tile // 12 for s in placed.segments if s.block == block}) for block in "012"}
        assert placed.tiles_used == 21 and placed.chips_used == chips
        assert on == ({"0": [0], "1": [1], "2": [2]} if chips == 3 else {"0": [0], "1": [0, 1], "2": [1]})


def test_a_moved_segment_keeps_every_other_field():
    """_layered moves packed segments with its own constructor call (not dataclasses.replace): a field added to
    TileSegment must be carried there too."""
    from compiler.ir import TileSegment
    from passes.tile_allocation import _moved
    s = TileSegment(3, 4, (1, 2), (5, 9), "b", (10, 11), (20, 24), dac_range=0.5, adc_range=1.5,
                    col_w_max=torch.ones(4), copy=2)
    moved = _moved(s, 7, 8)
    # the fields _moved passes on, in order: a new field fails here until _moved carries it
    assert [f.name for f in dataclasses.fields(TileSegment)] == [
        "id", "tile", "rows", "cols", "block", "block_rows", "block_cols", "dac_range", "adc_range", "col_w_max", "copy"]
    for f in dataclasses.fields(TileSegment):
        expected = {"id": 7, "tile": 8}.get(f.name, getattr(s, f.name))
        assert getattr(moved, f.name) is expected or getattr(moved, f.name) == expected, f.name
