"""Training data for HWA fine-tuning: labeled (task loss) or unlabeled (distillation), as model inputs.

Accepted forms of `data`:
- None: the built-in unlabeled sentences (compiler.sentences.CALIBRATION), so it runs offline;
- a text file: one unlabeled sentence per line; a GLUE task directory (its train.tsv, else its dev set),
  a GLUE .tsv file or `glue:TASK` (the datasets cache): labeled, read by compiler.evaluation.glue;
- a list of strings (unlabeled), or of (text, label) / (text_a, text_b, label) tuples (labeled);
- tensors, for models without a tokenizer: a dict of keyword inputs whose first dimension is the sample
  (an optional "labels" entry makes it labeled), a bare input tensor (unlabeled), or a tuple
  (inputs, labels).
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch

from compiler import sentences
from compiler.config import DEFAULT_SEQ_LEN
from compiler.errors import UserError


@dataclass
class TrainingSet:
    """N samples as model inputs (positional and keyword tensors, first dimension N), optional labels."""
    args: tuple
    kwargs: dict[str, torch.Tensor]
    labels: torch.Tensor | None
    size: int
    description: str
    texts: list = field(default_factory=list, repr=False)

    @property
    def labeled(self) -> bool:
        return self.labels is not None

    def select(self, index: torch.Tensor) -> tuple[tuple, dict, torch.Tensor | None]:
        """The samples at `index`: (args, kwargs, labels)."""
        args = tuple(a[index] if _per_sample(a, self.size) else a for a in self.args)
        kwargs = {k: v[index] if _per_sample(v, self.size) else v for k, v in self.kwargs.items()}
        return args, kwargs, (self.labels[index] if self.labels is not None else None)

    def batches(self, batch_size: int) -> Iterator[tuple[tuple, dict, torch.Tensor | None]]:
        """Consecutive batches in sample order (for caching teacher outputs)."""
        for start in range(0, self.size, batch_size):
            yield self.select(torch.arange(start, min(start + batch_size, self.size)))


def _per_sample(value: Any, size: int) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == size


def load_training_data(data: Any, tokenizer: Any = None, seq_len: int = DEFAULT_SEQ_LEN,
                       id2label: dict | None = None) -> TrainingSet:
    """Turn hwa_finetune's `data` into a TrainingSet (see the module docstring for the accepted forms).

    `id2label`: the model's config.id2label, so GLUE labels land on the model's own output indices.
    """
    if data is None:
        return _from_texts(list(sentences.CALIBRATION), None, tokenizer, seq_len,
                           f"{len(sentences.CALIBRATION)} built-in sentences (compiler.sentences.CALIBRATION)")
    if isinstance(data, str) and data.startswith("glue:"):
        return _from_glue(data, tokenizer, seq_len, id2label)
    if isinstance(data, (str, Path)):
        return _from_path(Path(data).expanduser(), tokenizer, seq_len, id2label)
    if isinstance(data, torch.Tensor):
        return _from_tensors((data,), {}, None)
    if isinstance(data, dict):
        kwargs = dict(data)
        labels = kwargs.pop("labels", None)
        return _from_tensors((), kwargs, labels)
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(d, torch.Tensor) for d in data):
        return _from_tensors((data[0],), {}, data[1])
    if isinstance(data, (list, tuple)):
        return _from_list(list(data), tokenizer, seq_len)
    raise UserError(f"HWA training data: cannot use a {type(data).__name__}; give a text file, a GLUE task "
                    f"directory, a list of sentences or (text, label) pairs, or tensors")


def _from_path(path: Path, tokenizer: Any, seq_len: int, id2label: dict | None) -> TrainingSet:
    if path.is_dir() or path.suffix == ".tsv":
        return _from_glue(path, tokenizer, seq_len, id2label)
    if not path.is_file():
        raise UserError(f"{path}: HWA training data not found; give a text file (one sentence per line) or a "
                        f"GLUE task directory")
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read it as UTF-8 text ({exc})") from None
    texts = [line for line in lines if line]
    if not texts:
        raise UserError(f"{path}: no sentences in it; give one sentence per line")
    return _from_texts(texts, None, tokenizer, seq_len, f"{len(texts)} sentences from {path}")


def _glue_spec(spec: str | Path) -> str | Path:
    """What GLUE training reads: a task directory's train.tsv where it has one, else the spec itself (then
    compiler.evaluation.glue reads the dev set: the split --eval scores)."""
    from compiler.evaluation import glue

    path = Path(str(spec)).expanduser()
    if path.is_dir():
        try:
            task = glue.find_task(path.name)
        except UserError:
            task = None
        if task is not None and (path / "train.tsv").is_file():
            return path / "train.tsv"
    return spec


def glue_training_source(data: Any) -> str | None:
    """The source (as GlueData.source names it) of the labeled examples HWA training reads for `data`; None
    when `data` is not GLUE-format data. Lets the CLI refuse training on the split it scores."""
    if not isinstance(data, (str, Path)):
        return None
    text = str(data)
    path = Path(text).expanduser()
    if not (text.startswith("glue:") or path.is_dir() or path.suffix == ".tsv"):
        return None
    from compiler.evaluation import glue
    return glue.load_eval_data(_glue_spec(data)).source


def _from_glue(spec: str | Path, tokenizer: Any, seq_len: int, id2label: dict | None) -> TrainingSet:
    """A GLUE task: its train.tsv where the directory has one, else what compiler.evaluation.glue reads (the dev set)."""
    from compiler.evaluation import glue

    data = glue.load_eval_data(_glue_spec(spec))
    labels = data.labels
    if data.task.labels is not None:  # task label index -> the model's output index
        to_task = glue.label_permutation(data.task, id2label)
        to_model = {int(task_index): model_index for model_index, task_index in enumerate(to_task)}
        labels = [to_model[int(v)] for v in labels]
    else:
        labels = [float(v) for v in labels]
    texts = data.text_a if data.text_b is None else list(zip(data.text_a, data.text_b))
    pairs = [(*t, y) if isinstance(t, tuple) else (t, y) for t, y in zip(texts, labels)]
    return _from_list(pairs, tokenizer, seq_len, description=f"{len(pairs)} labeled {data.task.name} examples "
                                                             f"from {data.source}")


def _from_list(items: list, tokenizer: Any, seq_len: int, description: str | None = None) -> TrainingSet:
    if not items:
        raise UserError("HWA training data is empty; give at least one sentence or example")
    if all(isinstance(item, str) for item in items):
        return _from_texts(items, None, tokenizer, seq_len, description or f"{len(items)} sentences")
    if not all(isinstance(item, (tuple, list)) and len(item) in (2, 3) for item in items):
        raise UserError("HWA training data: a list must hold only sentences, or only (text, label) / "
                        "(text_a, text_b, label) tuples")
    if len({len(item) for item in items}) != 1:
        raise UserError("HWA training data: mix of (text, label) and (text_a, text_b, label); use one form")
    labels = [item[-1] for item in items]
    if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in labels):
        bad = next(v for v in labels if not isinstance(v, numbers.Real) or isinstance(v, bool))
        raise UserError(f"HWA training data: label {bad!r} is not a number; give class ids (int) or scores (float)")
    texts = [tuple(item[:-1]) if len(item) == 3 else item[0] for item in items]
    if all(isinstance(v, numbers.Integral) for v in labels):
        label_tensor = torch.tensor([int(v) for v in labels], dtype=torch.long)
    else:
        label_tensor = torch.tensor([float(v) for v in labels], dtype=torch.float32)
    return _from_texts(texts, label_tensor, tokenizer, seq_len, description or f"{len(items)} labeled examples")


def _from_texts(texts: list, labels: torch.Tensor | None, tokenizer: Any, seq_len: int,
                description: str) -> TrainingSet:
    if tokenizer is None:
        raise UserError("HWA training on text needs the model's tokenizer, and this model has none (random "
                        "weights from a bundled config, or a custom module); give tensors as data instead")
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:  # GPT-2 style: pad with EOS
        tokenizer.pad_token = tokenizer.eos_token
    if isinstance(texts[0], tuple):
        first, second = [t[0] for t in texts], [t[1] for t in texts]
        enc = tokenizer(first, second, padding="longest", truncation=True, max_length=seq_len, return_tensors="pt")
    else:
        enc = tokenizer(list(texts), padding="longest", truncation=True, max_length=seq_len, return_tensors="pt")
    kwargs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    return TrainingSet((), kwargs, labels, len(texts), description, list(texts))


def _from_tensors(args: tuple, kwargs: dict, labels: Any) -> TrainingSet:
    tensors = [t for t in (*args, *kwargs.values()) if isinstance(t, torch.Tensor) and t.dim() > 0]
    if not tensors:
        raise UserError("HWA training data holds no tensors; give tensors whose first dimension is the sample")
    size = tensors[0].shape[0]
    if size == 0:
        raise UserError("HWA training data is empty (0 samples)")
    if labels is not None:
        if not isinstance(labels, torch.Tensor) or labels.dim() == 0 or labels.shape[0] != size:
            raise UserError(f"HWA training labels must be a tensor with one entry per sample ({size})")
    return TrainingSet(tuple(args), dict(kwargs), labels, int(size), f"{size} samples (tensors)")
