"""passes.ranges and passes.range_optimization: calibration statistics, range assignment, PT optimizations."""
import json
import math
import warnings

import pytest
import torch

from compiler import compile_model, load_model, sentences
from compiler.errors import UserError
from passes.ranges import (AbsHistogram, assign_ranges, builtin_texts, calibration_inputs, collect_statistics,
                           segment_weight)


def _linear_placed(pcm_1m, in_features=64, out_features=16, seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(in_features, out_features)
    return compile_model(model, (torch.randn(4, in_features),), pcm_1m)


@pytest.fixture(scope="module")
def minilm_calibrated(pcm_1m):
    """all-MiniLM-L6-v2 (real weights), seq_len 32, ranges from 16 built-in sentences."""
    model, example = load_model("sentence-transformers/all-MiniLM-L6-v2", seq_len=32)
    placed = compile_model(model, example, pcm_1m)
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
    mapping = json.loads(json.dumps(placed.to_json(), allow_nan=False))
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
