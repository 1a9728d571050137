"""GLUE reader on fixture files in the official layout, and the metrics against hand-computed values."""
from __future__ import annotations

import importlib.util
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from compiler.errors import UserError
from compiler.evaluation.glue import (GLUE_TASKS, accuracy, f1_score, find_task, label_permutation, load_eval_data,
                           matthews_corrcoef, pearson, spearman, task_metrics)

FIXTURES = Path(__file__).parent / "fixtures" / "glue"


# --- reader ------------------------------------------------------------------------------------
@pytest.mark.parametrize("directory, count, first_a, first_b, labels", [
    ("CoLA", 5, "The sailors rode the breeze clear of the harbour.", None, [1, 0, 1, 0, 1]),
    ("SST-2", 5, "it 's a charming and often affecting journey . ", None, [1, 0, 1, 1, 0]),
    ("MRPC", 4, "He said the foodservice pie business doesn 't fit the company 's long-term growth strategy .",
     "The foodservice pie business does not fit our long-term growth strategy , he said .", [1, 0, 0, 1]),
    ("QQP", 4, "Why are African-Americans so beautiful?", "Why are hispanics so beautiful?", [0, 0, 1, 1]),
    ("MNLI", 3, "The new rights are nice enough", "Everyone really likes the newest benefits ", [2, 0, 1]),
    ("QNLI", 3, "What came into force after the new constitution was herald?",
     "As of that day, the new constitution heralding the Second Republic came into force.", [0, 1, 1]),
    ("RTE", 3, "Dana Reeve, the widow of the actor Christopher Reeve, has died of lung cancer at age 44.",
     "Christopher Reeve had an accident.", [1, 0, 0]),
    ("WNLI", 3, "The drain is clogged with hair. It has to be cleaned.", "The hair has to be cleaned.", [0, 1, 1]),
])
def test_reads_each_task_in_official_layout(directory, count, first_a, first_b, labels):
    data = load_eval_data(FIXTURES / directory)
    assert data.task.name == directory
    assert len(data) == count
    assert data.text_a[0] == first_a
    assert (data.text_b[0] if data.text_b else None) == first_b
    assert data.labels.tolist() == labels
    assert data.labels.dtype == np.int64


def test_reads_stsb_scores_as_floats():
    data = load_eval_data(FIXTURES / "STS-B")
    assert data.task.is_regression
    assert data.labels.tolist() == [5.0, 4.75, 5.0, 2.4, 2.75]
    assert data.text_b[3] == "A man is playing guitar."


def test_mrpc_header_with_byte_order_mark_is_read():
    assert (FIXTURES / "MRPC" / "dev.tsv").read_bytes().startswith(b"\xef\xbb\xbf")  # as in GLUE's own file
    assert len(load_eval_data(FIXTURES / "MRPC")) == 4


def test_accepts_task_file_and_root_with_one_task(tmp_path):
    assert len(load_eval_data(FIXTURES / "SST-2" / "dev.tsv")) == 5
    shutil.copytree(FIXTURES / "RTE", tmp_path / "RTE")
    assert load_eval_data(tmp_path).task.name == "RTE"
    assert load_eval_data(str(tmp_path / "RTE")).task.key == "rte"


def test_task_names_in_any_spelling():
    assert find_task("sst2") is find_task("SST-2") is find_task("sst_2") is GLUE_TASKS["sst2"]
    assert find_task("STS-B").key == "stsb"
    with pytest.raises(UserError, match="unknown GLUE task 'squad'"):
        find_task("squad")


@pytest.mark.parametrize("make, message", [
    (lambda root: root / "nowhere", "no such file or directory"),
    (lambda root: root, "holds several GLUE tasks"),
    (lambda root: (root / "SQuAD").mkdir() or root / "SQuAD", "not a GLUE task directory"),
    (lambda root: (root / "SST-2" / "dev.tsv").unlink() or root / "SST-2", "missing"),
])
def test_bad_locations_are_user_errors(tmp_path, make, message):
    shutil.copytree(FIXTURES, tmp_path, dirs_exist_ok=True)
    with pytest.raises(UserError, match=message):
        load_eval_data(make(tmp_path))


@pytest.mark.parametrize("task, content, message", [
    ("SST-2", "text\tlabel\nfine film\t1\n", "header has no 'sentence' column"),
    ("SST-2", "sentence\tlabel\nfine film\t1\nbad film\n", r"dev.tsv:3: 1 tab-separated fields, expected 2"),
    ("SST-2", "sentence\tlabel\nfine film\tpositive\n", "label 'positive' is not one of SST-2's labels"),
    ("SST-2", "sentence\tlabel\n", "holds no examples"),
    ("SST-2", "", "empty"),
    ("CoLA", "index\tsentence\n0\tA sentence.\n", "2 tab-separated fields, expected 4"),
    ("STS-B", "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
              "0\tg\tf\t2012\t0\tn\tn\tA.\tB.\thigh\n", "label 'high' is not a number"),
])
def test_malformed_files_are_user_errors(tmp_path, task, content, message):
    directory = tmp_path / task
    directory.mkdir()
    (directory / find_task(task).dev_file).write_text(content)
    with pytest.raises(UserError, match=message):
        load_eval_data(directory)


@pytest.mark.skipif(importlib.util.find_spec("datasets") is not None, reason="datasets is installed here")
def test_datasets_source_without_the_library_is_a_user_error():
    with pytest.raises(UserError, match="needs the `datasets` library"):
        load_eval_data("glue:sst2")


def test_label_permutation_follows_model_label_names():
    mnli = GLUE_TASKS["mnli"]  # canonical: contradiction, entailment, neutral
    roberta_large_mnli = {0: "CONTRADICTION", 1: "NEUTRAL", 2: "ENTAILMENT"}
    assert label_permutation(mnli, roberta_large_mnli).tolist() == [0, 2, 1]
    assert label_permutation(mnli, {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}).tolist() == [0, 1, 2]
    assert label_permutation(GLUE_TASKS["sst2"], None).tolist() == [0, 1]


# --- metrics, against values computed by hand ----------------------------------------------------
PRED = np.array([1, 0, 1, 1, 0])
GOLD = np.array([1, 0, 0, 1, 1])  # TP 2, TN 1, FP 1, FN 1


def test_accuracy_and_f1_by_hand():
    assert accuracy(PRED, GOLD) == pytest.approx(3 / 5)
    assert f1_score(PRED, GOLD) == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert f1_score(np.zeros(3), np.zeros(3)) == 0.0  # no positives anywhere: nothing to score


def test_matthews_by_hand():
    # binary: (TP TN - FP FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (2 - 1) / sqrt(3 * 3 * 2 * 2)
    assert matthews_corrcoef(PRED, GOLD) == pytest.approx(1 / 6)
    assert matthews_corrcoef(GOLD, GOLD) == pytest.approx(1.0)
    assert matthews_corrcoef(1 - GOLD, GOLD) == pytest.approx(-1.0)
    assert matthews_corrcoef(np.ones(5), GOLD) == 0.0  # constant prediction: defined as 0
    # three classes: correct 3 of 6, true counts (2, 2, 2), predicted counts (3, 1, 2):
    # (3 * 6 - 12) / sqrt((36 - 14) * (36 - 12)) = 6 / sqrt(528)
    gold3, pred3 = np.array([0, 1, 2, 0, 1, 2]), np.array([0, 2, 1, 0, 0, 2])
    assert matthews_corrcoef(pred3, gold3) == pytest.approx(6 / math.sqrt(528))


def test_pearson_and_spearman_by_hand():
    # dx = (-1.5, -.5, .5, 1.5), dy = (-3, -1, 0, 4): 11 / sqrt(5 * 26)
    assert pearson([1, 2, 3, 4], [2, 4, 5, 9]) == pytest.approx(11 / math.sqrt(130))
    # tied ranks: x -> (1, 2.5, 2.5, 4), y -> (1, 3, 2, 4): 4.5 / sqrt(4.5 * 5)
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(4.5 / math.sqrt(22.5))
    assert spearman([1, 2, 3, 4], [1, 8, 27, 64]) == pytest.approx(1.0)  # monotone, not linear
    assert pearson([1, 2, 3, 4], [1, 8, 27, 64]) < 0.99
    assert math.isnan(pearson([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError):
        pearson([1, 2], [1, 2, 3])


def test_task_metrics_are_the_official_ones():
    assert task_metrics(GLUE_TASKS["sst2"], PRED, GOLD) == {"accuracy": pytest.approx(0.6)}
    assert task_metrics(GLUE_TASKS["mrpc"], PRED, GOLD) == {"f1": pytest.approx(2 / 3), "accuracy": pytest.approx(0.6)}
    assert list(task_metrics(GLUE_TASKS["qqp"], PRED, GOLD)) == ["accuracy", "f1"]
    assert task_metrics(GLUE_TASKS["cola"], PRED, GOLD) == {"matthews_corr": pytest.approx(1 / 6)}
    stsb = task_metrics(GLUE_TASKS["stsb"], np.array([1.0, 2, 3, 4]), np.array([2.0, 4, 5, 9]))
    assert stsb == {"pearson": pytest.approx(11 / math.sqrt(130)), "spearman": pytest.approx(1.0)}
