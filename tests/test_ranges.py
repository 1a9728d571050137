"""passes.ranges and passes.range_optimization: calibration statistics, range assignment, PT optimizations."""
import json
import math
import warnings

import pytest
import torch

from compiler import compile_model, load_hw_spec, sentences
from compiler.errors import UserError
from compiler.writers import mapping_json
from passes.range_optimization import (calibrate_ranges, column_w_max, optimize_column_ranges,
                                       optimize_input_ranges, segment_mvm_errors)
from passes.ranges import (AbsHistogram, assign_ranges, builtin_texts, calibration_inputs, collect_statistics,
                           segment_weight)


pytestmark = pytest.mark.usefixtures("one_thread")


def _linear_placed(pcm_1m, in_features=64, out_features=16, seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(in_features, out_features)
    return compile_model(model, (torch.randn(4, in_features),), pcm_1m)


@pytest.fixture(scope="module")
def minilm_calibrated(pcm_1m, minilm_32):
    """all-MiniLM-L6-v2 (real weights), seq_len 32, ranges from 16 built-in sentences."""
    model, example, exported = minilm_32
    placed = compile_model(model, example, pcm_1m, exported=exported)
    stats = assign_ranges(placed, calibration_inputs(placed, 16))
    return placed, stats


def _assert_ranges_valid(placed):
    for s in placed.segments:
        assert s.dac_range is not None and math.isfinite(s.dac_range) and s.dac_range > 0, s
        assert s.adc_range is not None and math.isfinite(s.adc_range) and s.adc_range > 0, s
        if s.col_w_max is not None:
            assert s.col_w_max.shape == (s.cols[1] - s.cols[0],)
            assert torch.isfinite(s.col_w_max).all() and (s.col_w_max > 0).all(), s


# --- statistics ---------------------------------------------------------------------------------------

def test_histogram_percentile_matches_exact_quantile():
    torch.manual_seed(0)
    values = torch.randn(200_000) * torch.rand(200_000) * 3
    hist = AbsHistogram()
    for chunk in values.split(30_000):  # streamed in pieces
        hist.add(chunk)
    for p in (50.0, 99.0, 99.9):
        exact = float(values.abs().sort().values[int(p / 100 * (values.numel() - 1))])
        assert hist.percentile(p) == pytest.approx(exact, rel=0.03)
    assert hist.percentile(100.0) == pytest.approx(float(values.abs().max()))


def test_histogram_counts_zeros():
    hist = AbsHistogram()
    hist.add(torch.cat([torch.zeros(990), torch.full((10,), 2.0)]))
    assert hist.percentile(50.0) == 0.0
    assert hist.percentile(99.5) == pytest.approx(2.0, rel=0.03)


def test_ranges_follow_their_definition_on_a_linear_layer(pcm_1m):
    placed = _linear_placed(pcm_1m)
    torch.manual_seed(1)
    x = torch.randn(64, 64) * 2.0
    stats = assign_ranges(placed, calibration_inputs(placed, {"input": x}), input_percentile=99.0)
    (segment,) = placed.segments
    exact_p99 = float(x.abs().flatten().sort().values[int(0.99 * (x.numel() - 1))])
    assert segment.dac_range == pytest.approx(exact_p99, rel=0.03)
    assert segment.dac_range < float(x.abs().max())  # a percentile, not the max
    w = segment_weight(placed, segment)
    y = x @ w.t()
    expected = (y.mean(0).abs() + stats.output_sigmas * y.std(0, unbiased=False)).max()
    assert segment.adc_range == pytest.approx(float(expected / (segment.dac_range * w.abs().max())), rel=1e-4)
    assert segment.col_w_max is None


def test_minilm_ranges_positive_finite_and_in_mapping_json(minilm_calibrated):
    placed, stats = minilm_calibrated
    _assert_ranges_valid(placed)
    assert not stats.fallbacks
    mapping = json.loads(json.dumps(mapping_json(placed), allow_nan=False))
    tiles = [t for layer in mapping["layers"] if layer["kind"] == "analog" for t in layer["tiles"]]
    assert tiles and all(t["dac_range"] > 0 and t["adc_range"] > 0 for t in tiles)


def test_padding_tokens_are_not_counted(minilm_calibrated):
    placed, stats = minilm_calibrated
    calibration = calibration_inputs(placed, 16)
    real_tokens = int(calibration.kwargs["attention_mask"].sum())
    assert calibration.kwargs["attention_mask"].numel() > real_tokens  # the set does hold padding
    first_block = placed.blocks[next(iter(placed.blocks))].name
    assert stats.blocks[first_block].tokens == real_tokens


def test_sample_memory_is_bounded(pcm_1m):
    placed = _linear_placed(pcm_1m)
    stats = collect_statistics(placed, calibration_inputs(placed, {"input": torch.randn(500, 64)}),
                               sample_tokens=32, batch_size=64)
    (block,) = stats.blocks.values()
    assert block.tokens == 500 and block.sample.rows.shape == (32, 64)


def test_builtin_texts_are_distinct_beyond_the_built_in_set():
    texts = builtin_texts(100)
    assert len(texts) == 100 and len(set(texts)) == 100
    assert texts[:len(sentences.CALIBRATION)] == sentences.CALIBRATION
    assert not set(texts) & set(sentences.EVALUATION)


def test_model_without_tokenizer_gets_random_ids_of_the_example_shape(pcm_1m):
    from transformers import BertConfig, BertModel
    config = BertConfig(vocab_size=300, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, attn_implementation="eager")
    model = BertModel(config).eval()
    example = {"input_ids": torch.randint(0, 300, (2, 12)), "attention_mask": torch.ones(2, 12, dtype=torch.long)}
    placed = compile_model(model, example, pcm_1m)
    calibration = calibration_inputs(placed, 6)
    ids = calibration.kwargs["input_ids"]
    assert ids.shape == (6, 12) and int(ids.max()) < 300
    assert calibration.kwargs["attention_mask"].eq(1).all()
    assign_ranges(placed, calibration)
    _assert_ranges_valid(placed)


# --- bad calibration data -----------------------------------------------------------------------------

def test_no_calibration_means_none(pcm_1m):
    placed = _linear_placed(pcm_1m)
    assert calibration_inputs(placed, None) is None
    assert calibration_inputs(placed, 0) is None


@pytest.mark.parametrize("bad", [{"input": torch.randn(0, 64)}, {}, [], -3, "text"])
def test_empty_or_malformed_calibration_is_a_user_error(pcm_1m, bad):
    placed = _linear_placed(pcm_1m)
    with pytest.raises(UserError):
        calibration = calibration_inputs(placed, bad)
        assign_ranges(placed, calibration)


def test_texts_without_tokenizer_is_a_user_error(pcm_1m):
    placed = _linear_placed(pcm_1m)
    with pytest.raises(UserError, match="no tokenizer"):
        calibration_inputs(placed, ["a sentence"])


def test_all_zero_inputs_is_a_user_error(pcm_1m):
    placed = _linear_placed(pcm_1m)
    with pytest.raises(UserError, match="zero"):
        assign_ranges(placed, calibration_inputs(placed, {"input": torch.zeros(8, 64)}))


@pytest.mark.parametrize("poison", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_activations_are_a_user_error(pcm_1m, poison):
    placed = _linear_placed(pcm_1m)
    x = torch.randn(8, 64)
    x[3, 5] = poison
    with pytest.raises(UserError, match="NaN/Inf"):
        assign_ranges(placed, calibration_inputs(placed, {"input": x}))


def test_segment_with_all_zero_inputs_falls_back_with_a_warning(pcm_1m):
    placed = _linear_placed(pcm_1m, in_features=700)  # rows split 512 + 188 on 512-row tiles
    assert len(placed.segments) == 2
    x = torch.randn(16, 700)
    x[:, 512:] = 0.0
    with pytest.warns(UserWarning, match="all calibration inputs were zero"):
        stats = assign_ranges(placed, calibration_inputs(placed, {"input": x}))
    _assert_ranges_valid(placed)
    live, dead = sorted(placed.segments, key=lambda s: s.block_rows)
    assert dead.dac_range == live.dac_range  # taken from its block
    assert len(stats.fallbacks) == 2  # dac_range and adc_range of the dead segment


def test_single_calibration_sample_works(pcm_1m):
    placed = _linear_placed(pcm_1m)
    assign_ranges(placed, calibration_inputs(placed, {"input": torch.randn(1, 64)}))
    _assert_ranges_valid(placed)


# --- post-training optimizations ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def minilm_held_out(minilm_calibrated):
    """Statistics (and input samples) of the evaluation sentences: data the ranges never saw."""
    placed, _ = minilm_calibrated
    return collect_statistics(placed, calibration_inputs(placed, list(sentences.EVALUATION)))


def _snapshot(placed):
    return [(s.dac_range, s.adc_range, None if s.col_w_max is None else s.col_w_max.tolist()) for s in placed.segments]


def _restore(placed, snapshot):
    for s, (dac, adc, col) in zip(placed.segments, snapshot):
        s.dac_range, s.adc_range, s.col_w_max = dac, adc, None if col is None else torch.tensor(col)


def _mean_errors(placed, segments, held_in, held_out):
    """Mean relative MVM error at 1 h over segments x 2 programmed instances (seeds unlike the search's),
    on held-in (calibration) and held-out (evaluation) inputs."""
    rows = [segment_mvm_errors(placed, s, [held_in.segment_sample(s)[:128], held_out.segment_sample(s)[:128]],
                               seed=seed) for s in segments for seed in (0, 1)]
    return {"held-in": sum(r[0] for r in rows) / len(rows), "held-out": sum(r[1] for r in rows) / len(rows)}


@pytest.fixture(scope="module")
def minilm_errors_without_pt(minilm_calibrated, minilm_held_out):
    placed, stats = minilm_calibrated
    segments = placed.segments[::10]  # a spread over layers and block kinds: QKV, FFN1, FFN2, ...
    return segments, _mean_errors(placed, segments, stats, minilm_held_out)


@pytest.mark.parametrize("column, inputs", [(True, False), (False, True), (True, True)],
                         ids=["column range", "input range", "both"])
def test_pt_optimization_lowers_mvm_error_held_in_and_held_out(minilm_calibrated, minilm_held_out,
                                                               minilm_errors_without_pt, column, inputs):
    placed, stats = minilm_calibrated
    segments, before = minilm_errors_without_pt
    baseline = _snapshot(placed)
    try:
        if column:
            optimize_column_ranges(placed, stats, segments=segments)
        if inputs:
            optimize_input_ranges(placed, stats, segments=segments, progress=False)
        _assert_ranges_valid(placed)
        after = _mean_errors(placed, segments, stats, minilm_held_out)
    finally:
        _restore(placed, baseline)
    print(f"MVM error without PT {before}, with {after}")
    for name in before:
        assert after[name] < 0.97 * before[name], (name, before, after)


def test_column_ranges_use_more_conductance_and_clip_at_most_the_allowed_fraction(minilm_calibrated):
    placed, stats = minilm_calibrated
    baseline = _snapshot(placed)
    try:
        optimize_column_ranges(placed, stats, weight_clip_fraction=0.01)
        _assert_ranges_valid(placed)
        for s in placed.segments:
            w = segment_weight(placed, s)
            w_tile = stats.weight_abs_max[s.id]
            assert (s.col_w_max <= w_tile * (1 + 1e-6)).all()
            clipped = (w.abs() > s.col_w_max[:, None] * (1 + 1e-6)).float().mean(1)
            assert (clipped <= 0.01 + 1.0 / w.shape[1]).all()
            # no column's expected largest output exceeds the segment's ADC range
            expected = stats.segment_output(s).expected_max(stats.output_sigmas)
            assert (expected / (s.dac_range * s.col_w_max) <= s.adc_range * (1 + 1e-5)).all()
        assert any(bool((s.col_w_max < 0.5 * stats.weight_abs_max[s.id]).any()) for s in placed.segments)
        assert "col_w_max_range" in json.dumps(mapping_json(placed), allow_nan=False)
    finally:
        _restore(placed, baseline)


def test_column_w_max_is_positive_for_degenerate_columns():
    weight = torch.tensor([[0.0, 0.0], [1.0, -2.0], [0.5, 0.1]])
    expected = torch.tensor([0.0, 3.0, 0.0])  # a zero column, and a column whose outputs were never seen
    w = column_w_max(weight, expected, w_tile=2.0, weight_clip_fraction=0.0)
    assert torch.isfinite(w).all() and (w > 0).all()
    assert w[1] == pytest.approx(2.0) and w[2] == pytest.approx(0.5)  # unseen column: no weight clips
    assert (column_w_max(torch.zeros(2, 3), torch.zeros(2), w_tile=0.0) > 0).all()


def test_optimizations_need_ranges_first(pcm_1m):
    placed = _linear_placed(pcm_1m)
    stats = collect_statistics(placed, calibration_inputs(placed, {"input": torch.randn(8, 64)}))
    with pytest.raises(UserError, match="assign_ranges"):
        optimize_column_ranges(placed, stats)
    with pytest.raises(UserError, match="assign_ranges"):
        optimize_input_ranges(placed, stats)


@pytest.mark.parametrize("column, inputs", [(False, False), (True, False), (False, True), (True, True)])
def test_compile_model_flags_turn_each_optimization_off_alone(pcm_1m, column, inputs):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(600, 64), torch.nn.GELU(), torch.nn.Linear(64, 8))
    x = torch.randn(32, 600)
    placed = compile_model(model, (torch.randn(4, 600),), pcm_1m, calibration={"input": x},
                           pt_column_range=column, pt_input_range=inputs)
    _assert_ranges_valid(placed)
    reference = compile_model(model, (torch.randn(4, 600),), pcm_1m)
    stats = assign_ranges(reference, calibration_inputs(reference, {"input": x}))
    for s, r in zip(placed.segments, reference.segments):
        assert (s.col_w_max is not None) == column
        assert (s.dac_range == r.dac_range) == (not inputs) or s.dac_range == r.dac_range
    if not inputs:
        assert [s.dac_range for s in placed.segments] == [r.dac_range for r in reference.segments]
    assert stats.samples == 32


def test_compile_without_calibration_leaves_ranges_unset(pcm_1m):
    placed = _linear_placed(pcm_1m)
    assert calibrate_ranges(placed, None) is None
    assert all(s.dac_range is None and s.adc_range is None and s.col_w_max is None for s in placed.segments)


def test_default_column_range_clips_no_weight_and_an_ideal_segment_is_exact(minilm_calibrated):
    """No weight clips under the default rule, so with every non-ideality off the chip computes x @ W.T."""
    from compiler.analog.programming import ideal_segment
    placed, stats = minilm_calibrated
    baseline = _snapshot(placed)
    try:
        optimize_column_ranges(placed, stats)
        for s in placed.segments[::7]:
            w = segment_weight(placed, s)
            assert (w.abs() <= s.col_w_max[:, None] * (1 + 1e-6)).all()
            g = ideal_segment(w, s.col_w_max)
            assert torch.allclose(g.g_eff * g.w_max[:, None], w, rtol=1e-5, atol=1e-7)
    finally:
        _restore(placed, baseline)


def test_batched_search_agrees_with_the_reference_tile_model(minilm_calibrated):
    """The error the batched search reports at the start range equals tile.analog_mvm's on one segment
    with noise off (the two share the DAC/ADC functions; programming is then exact)."""
    from compiler import load_hw_spec
    placed, stats = minilm_calibrated
    quiet = load_hw_spec("pcm_1M", {"output_noise": 0.0, "device.programming_noise": False,
                                    "device.drift": False, "device.read_noise": False})
    segment = placed.segments[3]
    baseline, hw = _snapshot(placed), placed.hw
    try:
        placed.hw = quiet
        start = segment.dac_range
        expected = segment_mvm_errors(placed, segment, [stats.segment_sample(segment)[:64]], seed=0)[0]
        (choice,) = optimize_input_ranges(placed, stats, tokens=64, columns=10_000, segments=[segment],
                                          progress=False)
        assert choice.start == start and choice.error_start == pytest.approx(expected, rel=1e-4)
        assert choice.error_chosen <= choice.error_start
    finally:
        placed.hw = hw
        _restore(placed, baseline)


def test_ranges_before_pt_are_those_of_passes_ranges_and_simulating_them_leaves_the_placement(pcm_1m):
    torch.manual_seed(0)
    model = torch.nn.Linear(64, 16)
    x = torch.randn(32, 64)
    placed = compile_model(model, (torch.randn(4, 64),), pcm_1m, calibration={"input": x})
    plain = compile_model(model, (torch.randn(4, 64),), pcm_1m, calibration={"input": x},
                          pt_column_range=False, pt_input_range=False)
    assert plain.ranges_before_pt is None and placed.ranges_before_pt is not None
    assert _snapshot_by_id(placed.ranges_before_pt) == _snapshot(plain)
    optimized = _snapshot(placed)
    ideal = load_hw_spec("pcm_1M", overrides={"device.programming_noise": False, "device.drift": False,
                                             "device.read_noise": False, "output_noise": 0.0})
    without = placed.simulator(hw=ideal, ranges=placed.ranges_before_pt)(x)
    assert _snapshot(placed) == optimized                       # evaluation never changes the mapping
    assert all(s.col_w_max is not None for s in placed.segments)
    assert torch.allclose(without, plain.simulator(hw=ideal)(x))  # the chip as compiled without PT
    with pytest.raises(ValueError, match="segment"):
        placed.simulator(ranges={})


def _snapshot_by_id(ranges):
    return [(r.dac_range, r.adc_range, None if r.col_w_max is None else r.col_w_max.tolist())
            for _, r in sorted(ranges.items())]


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from transformers import BertConfig, BertModel
    torch.manual_seed(0)
    config = BertConfig(vocab_size=300, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64)
    path = tmp_path_factory.mktemp("tiny") / "bert"
    BertModel(config).save_pretrained(path)
    return path


def test_cli_accuracy_json_carries_the_pt_off_comparison(tiny_checkpoint, tmp_path, capsys):
    from compiler.cli import main
    out = tmp_path / "out"
    code = main([str(tiny_checkpoint), "--hw", "pcm_1M", "--simulate", "--eval-sentences", "32", "--drift-times", "1s,1h", "--seeds", "2",
                 "--calibration", "4", "--seq-len", "16", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    accuracy = json.loads((out / "accuracy.json").read_text())
    assert accuracy["pt_optimization"] is True
    without = accuracy["results_without_pt_opt"]
    assert [r["label"] for r in without] == [r["label"] for r in accuracy["results"]] == ["1s", "1h"]
    for a, b in zip(accuracy["results"], without):
        assert set(a) == set(b) and set(a["per_seed"]) == set(b["per_seed"])
        assert len(b["per_seed"]["output_rel_l2"]) == 2
        assert a["per_seed"] != b["per_seed"]  # a different chip configuration, not a copy
    assert "PT optimization off" in err and "PT optimization off" in (out / "report.html").read_text()


def test_pt_off_comparison_needs_a_pt_optimized_placement(pcm_1m):
    from compiler.evaluation.accuracy import evaluate_accuracy
    torch.manual_seed(0)
    model = torch.nn.Linear(64, 16)
    plain = compile_model(model, (torch.randn(4, 64),), pcm_1m, calibration={"input": torch.randn(16, 64)},
                          pt_column_range=False, pt_input_range=False)
    with pytest.raises(UserError, match="PT-off comparison"):
        evaluate_accuracy(plain, "1h", 1, progress=False, compare_without_pt=True)
