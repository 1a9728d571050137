"""GLUE evaluation data and the official GLUE metrics.

Reads the official GLUE layout (what GLUE's download script writes): one directory per task, a
dev file inside, tab-separated, no quoting. Each task's text columns, label column and label set
are below (the column names are those of the files' header rows; CoLA's dev.tsv has no header).
Also reads a task from the `datasets` library's local cache (`glue:sst2`), when that library is
installed; nothing here touches the network.

Metrics are the official ones of each task (Wang et al. 2019, GLUE, Table 1): accuracy; F1 and
accuracy for MRPC and QQP; Matthews correlation for CoLA; Pearson and Spearman for STS-B. They
are implemented with numpy alone.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compiler.errors import UserError


@dataclass(frozen=True)
class GlueTask:
    """One GLUE task: where its dev set is, which columns hold what, how it is scored."""
    name: str                           # official directory name, e.g. "SST-2"
    key: str                            # the `datasets` library's config name, e.g. "sst2"
    dev_file: str
    text_columns: tuple[str | int, ...]  # header names (or column indices where the file has no header)
    label_column: str | int
    labels: tuple[str, ...] | None      # label strings in the canonical index order; None = regression
    metrics: tuple[str, ...]            # official metrics, first = the headline one
    positive_label: str | None = None   # the class F1 is computed for
    hf_text_columns: tuple[str, ...] = ()
    hf_split: str = "validation"

    @property
    def has_header(self) -> bool:
        return not isinstance(self.label_column, int)

    @property
    def is_regression(self) -> bool:
        return self.labels is None

    @property
    def num_labels(self) -> int:
        return 1 if self.labels is None else len(self.labels)


# Label orders follow transformers' GLUE processors (transformers/data/processors/glue.py), the
# order most fine-tuned GLUE checkpoints were trained with; a model's own id2label wins when it
# names the labels (see label_permutation).
GLUE_TASKS: dict[str, GlueTask] = {t.key: t for t in (
    GlueTask("CoLA", "cola", "dev.tsv", (3,), 1, ("0", "1"), ("matthews_corr",),
             hf_text_columns=("sentence",)),
    GlueTask("SST-2", "sst2", "dev.tsv", ("sentence",), "label", ("0", "1"), ("accuracy",),
             hf_text_columns=("sentence",)),
    GlueTask("MRPC", "mrpc", "dev.tsv", ("#1 String", "#2 String"), "Quality", ("0", "1"), ("f1", "accuracy"),
             positive_label="1", hf_text_columns=("sentence1", "sentence2")),
    GlueTask("QQP", "qqp", "dev.tsv", ("question1", "question2"), "is_duplicate", ("0", "1"), ("accuracy", "f1"),
             positive_label="1", hf_text_columns=("question1", "question2")),
    GlueTask("STS-B", "stsb", "dev.tsv", ("sentence1", "sentence2"), "score", None, ("pearson", "spearman"),
             hf_text_columns=("sentence1", "sentence2")),
    GlueTask("MNLI", "mnli", "dev_matched.tsv", ("sentence1", "sentence2"), "gold_label",
             ("contradiction", "entailment", "neutral"), ("accuracy",),
             hf_text_columns=("premise", "hypothesis"), hf_split="validation_matched"),
    GlueTask("QNLI", "qnli", "dev.tsv", ("question", "sentence"), "label", ("entailment", "not_entailment"),
             ("accuracy",), hf_text_columns=("question", "sentence")),
    GlueTask("RTE", "rte", "dev.tsv", ("sentence1", "sentence2"), "label", ("entailment", "not_entailment"),
             ("accuracy",), hf_text_columns=("sentence1", "sentence2")),
    GlueTask("WNLI", "wnli", "dev.tsv", ("sentence1", "sentence2"), "label", ("0", "1"), ("accuracy",),
             hf_text_columns=("sentence1", "sentence2")),
)}
COLA_COLUMNS = 4  # source, label, original annotation, sentence


@dataclass
class GlueData:
    """The labelled examples of one task. Labels are indices into task.labels, or floats (STS-B)."""
    task: GlueTask
    source: str
    text_a: list[str]
    text_b: list[str] | None
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.text_a)

    def head(self, n: int) -> "GlueData":
        """The first n examples (for quick runs)."""
        return GlueData(self.task, self.source, self.text_a[:n], None if self.text_b is None else self.text_b[:n],
                        self.labels[:n])


def find_task(name: str) -> GlueTask:
    """The task called `name` in any usual spelling (SST-2, sst2, sst_2, STS-B, stsb, ...)."""
    wanted = _normalize(name)
    for task in GLUE_TASKS.values():
        if wanted in (_normalize(task.name), task.key):
            return task
    raise UserError(f"unknown GLUE task {name!r}; expected one of {', '.join(t.name for t in GLUE_TASKS.values())}")


def load_eval_data(spec: str | os.PathLike) -> GlueData:
    """Read `--eval DATA`: a GLUE task directory (DIR/SST-2), a GLUE root holding one task, a task's
    .tsv file, or `glue:TASK` for the `datasets` library's local cache."""
    text = str(spec)
    if text.startswith("glue:"):
        return load_from_datasets(text[len("glue:"):])
    path = Path(text).expanduser()
    if not path.exists():
        raise UserError(f"--eval {text}: no such file or directory; give a GLUE task directory such as glue_data/SST-2")
    if path.is_file():
        return read_glue_file(path, _task_of_directory(path.parent, text))
    if _is_task_name(path.name):
        task = find_task(path.name)
        return read_glue_file(path / task.dev_file, task)
    subdirs = sorted(p for p in path.iterdir() if p.is_dir() and _is_task_name(p.name))
    if len(subdirs) == 1:
        task = find_task(subdirs[0].name)
        return read_glue_file(subdirs[0] / task.dev_file, task)
    if subdirs:
        raise UserError(f"--eval {text}: holds several GLUE tasks ({', '.join(p.name for p in subdirs)}); "
                        f"give one task directory, e.g. {path / subdirs[0].name}")
    raise UserError(f"--eval {text}: not a GLUE task directory (its name is no GLUE task and it holds none); "
                    f"expected e.g. glue_data/SST-2 with dev.tsv inside")


def read_glue_file(path: Path, task: GlueTask) -> GlueData:
    """Parse one GLUE .tsv file of `task` (tab-separated, unquoted; a header row except for CoLA)."""
    if not path.is_file():
        raise UserError(f"{path}: missing; a GLUE {task.name} directory holds {task.dev_file}")
    try:
        lines = path.read_text(encoding="utf-8-sig").split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read it as UTF-8 text ({exc})") from None
    rows = [(number, line.rstrip("\r").split("\t")) for number, line in enumerate(lines, 1) if line.strip()]
    if task.has_header:
        if not rows:
            raise UserError(f"{path}: empty; expected a header row and {task.name} examples")
        header = rows.pop(0)[1]
        text_idx = [_column_index(header, c, path, task) for c in task.text_columns]
        label_idx = _column_index(header, task.label_column, path, task)
        width = len(header)
    else:
        text_idx, label_idx, width = list(task.text_columns), task.label_column, COLA_COLUMNS
    if not rows:
        raise UserError(f"{path}: holds no examples")
    texts: list[list[str]] = [[] for _ in text_idx]
    labels: list = []
    for number, fields in rows:
        if len(fields) != width:
            raise UserError(f"{path}:{number}: {len(fields)} tab-separated fields, expected {width} "
                            f"(GLUE {task.name} format{'' if task.has_header else ', no header row'})")
        for column, index in zip(texts, text_idx):
            column.append(fields[index])
        labels.append(_parse_label(fields[label_idx], task, f"{path}:{number}"))
    return GlueData(task, str(path), texts[0], texts[1] if len(texts) > 1 else None, _label_array(labels, task))


def load_from_datasets(name: str) -> GlueData:
    """A GLUE task's validation split from the `datasets` library's local cache (never downloads)."""
    task = find_task(name)
    try:
        import datasets
    except ImportError:
        raise UserError(f"--eval glue:{name} needs the `datasets` library (pip install datasets) with GLUE "
                        f"cached locally; or give a GLUE-format directory") from None
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    errors = []
    for repo in ("nyu-mll/glue", "glue"):
        try:
            split = datasets.load_dataset(repo, task.key, split=task.hf_split)
            break
        except Exception as exc:  # the library raises many types for "not cached"; report them all
            errors.append(f"{repo}: {type(exc).__name__}")
    else:
        raise UserError(f"--eval glue:{name}: GLUE {task.name} is not in the local datasets cache "
                        f"({'; '.join(errors)}); give a GLUE-format directory instead")
    names = split.features["label"].names if task.labels is not None else None
    raw = [int(v) if names is not None else float(v) for v in split["label"]]
    if any(v < 0 for v in raw if names is not None):
        raise UserError(f"--eval glue:{name}: the {task.hf_split} split has no labels")
    labels = [_canonical_label(names[v], v, task) for v in raw] if names is not None else raw
    columns = [list(split[c]) for c in task.hf_text_columns]
    return GlueData(task, f"datasets:glue/{task.key}/{task.hf_split}", columns[0],
                    columns[1] if len(columns) > 1 else None, _label_array(labels, task))


def label_permutation(task: GlueTask, id2label: dict | None) -> np.ndarray:
    """model output index -> task label index. The model's id2label decides when it names the task's
    labels (e.g. roberta-large-mnli: CONTRADICTION, NEUTRAL, ENTAILMENT); otherwise the canonical order."""
    assert task.labels is not None
    canonical = np.arange(len(task.labels))
    if not id2label:
        return canonical
    wanted = {label.lower(): i for i, label in enumerate(task.labels)}
    named = [wanted.get(str(id2label[i]).lower()) for i in sorted(id2label)]
    if len(named) == len(task.labels) and None not in named and len(set(named)) == len(named):
        return np.array(named)
    return canonical


# --- metrics (numpy only) ----------------------------------------------------------------------
def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    predictions, labels = _pair(predictions, labels)
    return float(np.mean(predictions == labels))


def f1_score(predictions: np.ndarray, labels: np.ndarray, positive: int = 1) -> float:
    """Binary F1 of class `positive`: 2 TP / (2 TP + FP + FN); 0 when there is nothing to score."""
    predictions, labels = _pair(predictions, labels)
    tp = np.sum((predictions == positive) & (labels == positive))
    fp = np.sum((predictions == positive) & (labels != positive))
    fn = np.sum((predictions != positive) & (labels == positive))
    denominator = 2 * tp + fp + fn
    return float(2 * tp / denominator) if denominator else 0.0


def matthews_corrcoef(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Matthews correlation, multiclass form (Gorodkin 2004); 0 when a marginal is constant."""
    predictions, labels = _pair(predictions, labels)
    classes, encoded = np.unique(np.concatenate([labels, predictions]), return_inverse=True)
    k, n = len(classes), len(labels)
    confusion = np.zeros((k, k), dtype=np.float64)
    np.add.at(confusion, (encoded[:n], encoded[n:]), 1.0)
    true_counts, pred_counts = confusion.sum(axis=1), confusion.sum(axis=0)
    correct, total = np.trace(confusion), confusion.sum()
    numerator = correct * total - pred_counts @ true_counts
    denominator = np.sqrt((total ** 2 - pred_counts @ pred_counts) * (total ** 2 - true_counts @ true_counts))
    return float(numerator / denominator) if denominator else 0.0


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation; NaN when either input is constant (undefined)."""
    x, y = _pair(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    dx, dy = x - x.mean(), y - y.mean()
    denominator = np.sqrt((dx @ dx) * (dy @ dy))
    return float(dx @ dy / denominator) if denominator else float("nan")


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation: Pearson of the ranks, ties sharing their average rank."""
    x, y = _pair(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    return pearson(_average_ranks(x), _average_ranks(y))


def task_metrics(task: GlueTask, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The task's official metrics. Predictions are task label indices (or scores for STS-B)."""
    if task.is_regression:
        return {"pearson": pearson(predictions, labels), "spearman": spearman(predictions, labels)}
    scores = {"accuracy": accuracy(predictions, labels)}
    if "f1" in task.metrics:
        scores["f1"] = f1_score(predictions, labels, positive=task.labels.index(task.positive_label))
    if "matthews_corr" in task.metrics:
        scores["matthews_corr"] = matthews_corrcoef(predictions, labels)
    return {name: scores[name] for name in task.metrics}


# --- helpers -----------------------------------------------------------------------------------
def _normalize(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def _is_task_name(name: str) -> bool:
    wanted = _normalize(name)
    return any(wanted in (_normalize(t.name), t.key) for t in GLUE_TASKS.values())


def _task_of_directory(directory: Path, spec: str) -> GlueTask:
    if not _is_task_name(directory.name):
        raise UserError(f"--eval {spec}: its directory {directory.name!r} names no GLUE task; "
                        f"keep GLUE's layout (e.g. glue_data/SST-2/dev.tsv)")
    return find_task(directory.name)


def _column_index(header: list[str], column: str, path: Path, task: GlueTask) -> int:
    if column not in header:
        raise UserError(f"{path}: header has no {column!r} column (GLUE {task.name} format expects "
                        f"{', '.join(repr(c) for c in (*task.text_columns, task.label_column))})")
    return header.index(column)


def _parse_label(text: str, task: GlueTask, where: str):
    text = text.strip()
    if task.labels is None:
        try:
            return float(text)
        except ValueError:
            raise UserError(f"{where}: label {text!r} is not a number ({task.name} scores are 0..5)") from None
    if text not in task.labels:
        raise UserError(f"{where}: label {text!r} is not one of {task.name}'s labels {', '.join(task.labels)}")
    return task.labels.index(text)


def _canonical_label(name: str, value: int, task: GlueTask) -> int:
    """A `datasets` ClassLabel value -> task label index (0/1 tasks keep their integer)."""
    if name in task.labels:
        return task.labels.index(name)
    if str(value) in task.labels:
        return task.labels.index(str(value))
    raise UserError(f"glue:{task.key}: label {name!r} is not one of {task.name}'s labels")


def _label_array(labels: list, task: GlueTask) -> np.ndarray:
    return np.array(labels, dtype=np.float64 if task.is_regression else np.int64)


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"metric needs two non-empty arrays of equal length, got {a.size} and {b.size}")
    return a, b


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    # a run of equal values shares the mean of the ranks it spans (1-based)
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    mean_rank = (starts + ends + 1) / 2.0
    ranks = np.empty(len(values))
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks
