"""Accuracy in simulation: how close the noisy, drifting chip stays to the FP model, and what is left
of the task metric, per drift time, as mean, std and 95 % confidence interval over programmed chip
instances (seeds); results on disjoint seed lists merge exactly (merge_accuracy).

The FP model's outputs are computed once; then, per seed (one programmed chip), per drift time,
the chip is drifted to t (`placed.simulator`) and the same inputs run through it in batches.
What is measured (schema in docs/outputs.md, "accuracy.json"):
- every model: relative L2 error of the final output (logits, or last hidden states at the
  non-padding tokens), ||analog - FP||_F / ||FP||_F over the whole evaluation set;
- classifiers and language models: top-1 agreement with the FP model's argmax;
- feature-extraction models (sentence encoders such as all-MiniLM-L6-v2): the sentence embedding
  as sentence-transformers makes it (mean of the last hidden states over the attention mask), its
  cosine similarity to the FP embedding, and retrieval agreement: the fraction of sentences i whose
  analog embedding has FP sentence i as its nearest (cosine) FP embedding;
- with GLUE evaluation data: the task's official metric(s), for the FP model and on the chip.
"""
from __future__ import annotations

import inspect
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from compiler import sentences
from compiler.backends.simulator import simulator_backend
from compiler.errors import UserError
from compiler.frontend import normalize_example
from compiler.evaluation.glue import GlueData, label_permutation, load_eval_data, task_metrics
from compiler.models import model_info
from compiler.config import DEFAULT_SEQ_LEN
# CI_LEVEL, ci_half_width and student_t_quantile are imported from here too (the bench, the tests)
from compiler.evaluation.intervals import (CI_LEVEL, bounded_interval, ci_half_width, finite_mean,  # noqa: F401
                                           finite_std, metric_range, student_t_quantile)
from compiler.progress import bar as progress_bar
from reports.schema import SCHEMA_VERSION

SECONDS_PER_UNIT = {"": 1.0, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0,
                    "y": 365.0 * 86400.0}  # a year of 365 days, as drift studies quote "1 year" (3.15e7 s)
# Sequences of random token ids for a model without tokenizer (random weights, fidelity only): as many as the
# hand-written evaluation sentences; the built-in sentence count does not apply to them
RANDOM_EVAL_SEQUENCES = 32
_TIME = re.compile(r"^\s*((?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)

METRIC_DESCRIPTIONS = {
    "output_rel_l2": ("relative L2 error ||analog - FP|| / ||FP|| of the final output over the evaluation set", False),
    "top1_agreement": ("fraction of predictions (examples, or tokens for LMs) whose argmax equals the FP model's", True),
    "embedding_cosine_mean": ("mean cosine similarity of analog to FP sentence embeddings (mean pooling)", True),
    "embedding_cosine_min": ("lowest cosine similarity of an analog to its FP sentence embedding", True),
    "embedding_rel_l2": ("relative L2 error of the sentence embeddings over the evaluation set", False),
    "retrieval_agreement": ("fraction of sentences i whose analog embedding's nearest FP embedding is FP sentence i "
                            "(secondary: it saturates at 1 while the cosine is far from 1; docs/accuracy.md)", True),
}


@dataclass(frozen=True)
class DriftTime:
    label: str      # as the user wrote it, e.g. "1h"
    seconds: float


def parse_drift_times(text: str) -> list[DriftTime]:
    """'1s,1h,1d,1y' -> drift times. Units s, m/min, h, d, w, y (365 days); a bare number is seconds."""
    items = [item.strip() for item in str(text).split(",")]
    if not any(items) or not all(items):
        raise UserError(f"--drift-times {text!r}: expected a comma-separated list such as 1s,1h,1d,1y")
    times = []
    for item in items:
        match = _TIME.match(item)
        unit = match.group(2).lower() if match else None
        if unit not in SECONDS_PER_UNIT:
            raise UserError(f"--drift-times: {item!r} is not a time; write a number with a unit "
                            f"(s, m, h, d, w, y), e.g. 1s,1h,1d,1y or 3600")
        seconds = float(match.group(1)) * SECONDS_PER_UNIT[unit]
        if not math.isfinite(seconds):
            raise UserError(f"--drift-times: {item!r} is too large")
        times.append(DriftTime(item, seconds))
    seen = [t.seconds for t in times]
    if len(set(seen)) != len(seen):
        raise UserError(f"--drift-times {text!r}: a time is listed twice")
    return times


def evaluate_accuracy(placed, drift_times: str | Sequence[DriftTime | float], seeds: int | Sequence[int],
                      eval_data: str | GlueData | None = None, device: str = "cpu", batch_size: int = 16,
                      progress: bool = True, max_examples: int | None = None,
                      simulator_options: Mapping[str, Any] | None = None,
                      reference_model: torch.nn.Module | None = None, compare_without_pt: bool = False,
                      eval_sentences: int | None = sentences.DEFAULT_EVAL_SENTENCES) -> dict:
    """Simulate `placed` at each drift time for each seed; return the content of accuracy.json.

    `seeds`: a count N (seeds 0..N-1) or the seeds themselves. `eval_data`: a GLUE-format path,
    `glue:TASK` or loaded GlueData; None measures fidelity on `eval_sentences` built-in English sentences
    (compiler.sentences.evaluation_texts; None = all of them). `max_examples` keeps the first examples only
    (quick runs). `simulator_options` go to
    `placed.simulator` as they are (e.g. {"hw": spec} to simulate the placement under another spec).
    `reference_model`: the FP model fidelity is measured against (default `placed.model`); for a model
    fine-tuned for the chip (compiler.training.finetune), the original model, so the fine-tune's own drift counts as error.
    `compare_without_pt`: also simulate the placement with the ranges of passes.ranges alone (post-training
    optimizations off, same calibration statistics, same seeds and drift times) into
    `results_without_pt_opt`; needs a placement compiled with calibration and PT on.
    """
    started = time.perf_counter()
    times = _drift_times(drift_times)
    seed_list = _seed_list(seeds)
    if batch_size < 1:
        raise UserError(f"batch size must be >= 1, got {batch_size}")
    _check_device(device)
    info = placed.model_info
    glue = _checked_glue(placed, eval_data)
    if glue is not None and max_examples is not None:
        glue = glue.head(max_examples)
    inputs = build_eval_inputs(placed, glue, batch_size, max_examples, eval_sentences)
    readout = _Readout.for_model(placed)

    # each variant: (key in accuracy.json, ranges to simulate; None = the placement's own)
    variants: list[tuple[str, dict | None]] = [("results", None)]
    if compare_without_pt:
        if placed.ranges_before_pt is None:
            raise UserError("no PT-off comparison possible: the placement was compiled without calibration or "
                            "with the post-training optimizations off")
        variants.append(("results_without_pt_opt", placed.ranges_before_pt))
    steps = (1 + len(variants) * len(seed_list) * len(times)) * len(inputs.batches)
    with torch.no_grad(), progress_bar(total=steps, desc="FP reference", unit="batch", enabled=progress) as bar:
        reference = _run_fp(reference_model if reference_model is not None else placed.model, inputs, readout,
                            device, bar)
        fp_task = _task_scores(glue, reference, inputs, placed) if glue is not None else None
        per_variant: dict[str, list[list[dict[str, float]]]] = {}
        for key, ranges in variants:  # the PT-off variant: same seeds, same drift times, same FP reference
            per_seed: list[list[dict[str, float]]] = [[] for _ in times]
            options = dict(simulator_options or {})
            if ranges is not None:
                options["ranges"] = ranges
            for seed in seed_list:
                for slot, drift in enumerate(times):
                    bar.set_description(f"seed {seed}, t={drift.label}"
                                        + (", PT off" if key != "results" else ""))
                    chip = placed.simulator(t_inference=drift.seconds, seed=seed, device=device, **options)
                    analog = _run(chip, inputs, readout, device, bar)
                    del chip
                    scores = fidelity(reference, analog, readout.top1)
                    if glue is not None:
                        scores.update({f"task_{k}": v
                                       for k, v in _task_scores(glue, analog, inputs, placed).items()})
                    per_seed[slot].append(scores)
            per_variant[key] = per_seed
        per_seed = per_variant["results"]

    simulated_hw = (simulator_options or {}).get("hw") or placed.hw
    result: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "model": info.name,
        "task": info.task,
        "weights": info.weights,
        "hw": simulated_hw.name,
        "hw_file": simulated_hw.source_file,
        "device": device,
        # which implementation ran and its random stream: runs compare number for number only on the same one
        "simulator": simulator_backend(device, (simulator_options or {}).get("native_kernels")),
        "seeds": seed_list,
        "drift_times": [{"label": t.label, "seconds": t.seconds} for t in times],
        "eval": {"source": inputs.source, "glue_task": glue.task.name if glue else None,
                 "examples": inputs.examples, "batches": len(inputs.batches), "batch_size": batch_size,
                 "max_seq_len": inputs.seq_len},
        "output": readout.output_name,
        "metrics": {name: {"description": METRIC_DESCRIPTIONS.get(name, _task_description(name))[0],
                           "higher_is_better": METRIC_DESCRIPTIONS.get(name, ("", True))[1]}
                    for name in (per_seed[0][0] if per_seed and per_seed[0] else {})},
        "fp_reference": {"task": _clean(fp_task)},
        "results": [_summarize(t, rows, inputs.examples) for t, rows in zip(times, per_seed)],
        **({"pt_optimization": True,
            "results_without_pt_opt": [_summarize(t, rows, inputs.examples)
                                       for t, rows in zip(times, per_variant["results_without_pt_opt"])]}
           if compare_without_pt else {}),
        "notes": inputs.notes + readout.notes,
        "elapsed_s": time.perf_counter() - started,
    }
    if reference_model is not None:
        result["fp_reference"]["model"] = model_info(reference_model).source
    if info.weights == "random":
        result["weights_note"] = ("RANDOM weights (no real checkpoint offline): fidelity of a random network to "
                                  "itself is reported; it says little about a trained model's accuracy")
    return result


# --- evaluation inputs ---------------------------------------------------------------------------
@dataclass
class EvalInputs:
    """The evaluation set, cut into batches ready for the model's forward()."""
    source: str
    batches: list[tuple[tuple, dict]]       # (positional args, keyword args) per batch, on CPU
    token_masks: list[torch.Tensor | None]  # (B, L) bool: non-padding tokens, per batch
    order: np.ndarray                       # example index of each row, batches concatenated
    seq_len: int | None
    notes: list[str] = field(default_factory=list)

    @property
    def examples(self) -> int:
        return len(self.order)


def build_eval_inputs(placed, glue: GlueData | None = None, batch_size: int = 16,
                      max_examples: int | None = None,
                      eval_sentences: int | None = len(sentences.EVALUATION)) -> EvalInputs:
    """Tokenized GLUE examples or `eval_sentences` built-in sentences (sorted by length so batches pad
    little; compiler.sentences.evaluation_texts, None = all; the default is the 32 hand-written ones, what
    this function gave before the larger set existed; evaluate_accuracy asks for more); random token ids for
    a model without tokenizer (RANDOM_EVAL_SEQUENCES of them); the compile example for a bare module."""
    model, info = placed.model, placed.model_info
    seq_len = _seq_len(placed.example)
    if glue is not None:
        return _tokenized(placed, glue.text_a, glue.text_b, batch_size, seq_len, glue.source)
    if eval_sentences is not None and eval_sentences < 1:
        raise UserError(f"--eval-sentences must be >= 1 (got {eval_sentences})")
    if info.tokenizer is not None:
        texts, source = sentences.evaluation_texts(eval_sentences)
        if max_examples:
            texts, source = texts[:max_examples], f"the first {min(max_examples, len(texts))} of {source}"
        return _tokenized(placed, texts, None, batch_size, seq_len, source)
    rows = min(RANDOM_EVAL_SEQUENCES, max_examples or RANDOM_EVAL_SEQUENCES)
    if getattr(getattr(model, "config", None), "vocab_size", None):
        from compiler.models import example_inputs
        ids = example_inputs(model, rows, seq_len or DEFAULT_SEQ_LEN)
        batches, masks = [], []
        for lo in range(0, rows, batch_size):
            kwargs = {k: v[lo:lo + batch_size] for k, v in ids.items()}
            batches.append(((), kwargs))
            masks.append(kwargs["attention_mask"].bool())
        return EvalInputs(f"{rows} sequences of random token ids (the model has no tokenizer)", batches, masks,
                          np.arange(rows), seq_len, ["inputs are random token ids: no tokenizer available"])
    args, kwargs = normalize_example(placed.example)
    rows = next((a.shape[0] for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor) and a.dim()), 1)
    return EvalInputs("the compile example inputs", [(args, kwargs)], [None], np.arange(rows), None)


def _tokenized(placed, text_a: list[str], text_b: list[str] | None, batch_size: int, seq_len: int | None,
               source: str) -> EvalInputs:
    tokenizer = placed.model_info.tokenizer
    if tokenizer is None:
        raise UserError(f"{placed.model_info.name} has no tokenizer; task data cannot be tokenized")
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:  # GPT-2 style: pad with EOS
        tokenizer.pad_token = tokenizer.eos_token
    max_length = seq_len or tokenizer.model_max_length
    lengths = [len(ids) for ids in tokenizer(text_a, text_b, truncation=True, max_length=max_length)["input_ids"]]
    order = np.argsort(lengths, kind="stable")
    accepted = _forward_input_names(placed)
    notes: list[str] = []
    batches, masks = [], []
    for lo in range(0, len(order), batch_size):
        rows = order[lo:lo + batch_size].tolist()
        enc = tokenizer([text_a[i] for i in rows], [text_b[i] for i in rows] if text_b else None, padding=True,
                        truncation=True, max_length=max_length, return_tensors="pt")
        kwargs = {k: v for k, v in enc.items() if k in accepted}
        dropped = sorted(set(enc) - set(kwargs))
        if "token_type_ids" in dropped and bool(enc["token_type_ids"].any()):
            note = ("token_type_ids dropped: the model was compiled without them, so both FP and analog runs see "
                    "segment 0 for the second sentence (compile with token_type_ids in the example to keep them)")
            if note not in notes:
                notes.append(note)
        batches.append(((), kwargs))
        masks.append(enc["attention_mask"].bool())
    return EvalInputs(source, batches, masks, order, seq_len, notes)


def _forward_input_names(placed) -> set[str]:
    """The keyword inputs the compiled graph takes (those of the compile example)."""
    _, kwargs = normalize_example(placed.example)
    return set(kwargs) or {"input_ids", "attention_mask"}


def _seq_len(example: Any) -> int | None:
    if isinstance(example, Mapping) and isinstance(example.get("input_ids"), torch.Tensor):
        return int(example["input_ids"].shape[-1])
    return None


# --- outputs ---------------------------------------------------------------------------------------
@dataclass
class _Readout:
    """How to read one model's output: which tensor, per example or per token, argmax or embedding."""
    output_name: str
    per_token: bool
    top1: bool
    embeddings: bool
    notes: list[str] = field(default_factory=list)

    @staticmethod
    def for_model(placed) -> "_Readout":
        task = placed.model_info.task
        if task == "feature-extraction":
            return _Readout("last_hidden_state", per_token=True, top1=False, embeddings=True)
        if task == "sequence-classification":
            labels = getattr(getattr(placed.model, "config", None), "num_labels", 2)
            return _Readout("logits", per_token=False, top1=labels > 1, embeddings=False)
        if task in ("causal-lm", "masked-lm"):
            return _Readout("logits", per_token=True, top1=True, embeddings=False)
        return _Readout("output", per_token=False, top1=False, embeddings=False)


@dataclass
class Outputs:
    """What one pass over the evaluation set produced (rows in EvalInputs.order)."""
    finals: list[torch.Tensor]              # per batch: (items, features) float32 on CPU
    embeddings: torch.Tensor | None         # (examples, hidden)
    logits: torch.Tensor | None             # (examples, labels) for classifiers


def output_tensor(output: Any, names: tuple[str, ...]) -> torch.Tensor:
    """The tensor of a model's output to judge: the first of `names` a ModelOutput/dict holds, else the first
    tensor of the output (a tensor is itself)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        for name in names:
            if output.get(name) is not None:
                return output[name]
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        for value in output:
            if isinstance(value, torch.Tensor):
                return value
    raise UserError(f"cannot read the model's output ({type(output).__name__}): expected a tensor, "
                    f"a tuple or a ModelOutput with {' or '.join(names)}")


def _run(forward, inputs: EvalInputs, readout: _Readout, device: str, bar) -> Outputs:
    finals, embeddings, logits = [], [], []
    for (args, kwargs), mask in zip(inputs.batches, inputs.token_masks):
        args = tuple(_to(a, device) for a in args)
        kwargs = {k: _to(v, device) for k, v in kwargs.items()}
        final = output_tensor(forward(*args, **kwargs), (readout.output_name,)).detach().float().cpu()
        if readout.embeddings and mask is not None:
            weights = mask.unsqueeze(-1).float()  # sentence-transformers' mean pooling over the attention mask
            embeddings.append((final * weights).sum(1) / weights.sum(1).clamp(min=1e-9))
        if not readout.per_token and readout.output_name == "logits":
            logits.append(final)
        finals.append(_items(final, mask))
        bar.update(1)
    return Outputs(finals, torch.cat(embeddings) if embeddings else None, torch.cat(logits) if logits else None)


def _run_fp(model: torch.nn.Module, inputs: EvalInputs, readout: _Readout, device: str, bar) -> Outputs:
    """The FP model's outputs, on `device`; the model goes back where it was."""
    home = next((p.device for p in model.parameters()), torch.device("cpu"))
    model.to(device)
    try:
        return _run(model, inputs, readout, device, bar)
    finally:
        model.to(home)


def _items(final: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(items, features): the non-padding tokens of a per-token output, else one row per example."""
    if mask is not None and final.dim() >= 3 and tuple(final.shape[:2]) == tuple(mask.shape):
        return final[mask]
    if final.dim() >= 2:
        return final.reshape(-1, final.shape[-1])
    return final.reshape(1, -1)


def _to(value: Any, device: str) -> Any:
    return value.to(device) if isinstance(value, torch.Tensor) else value


# --- metrics -------------------------------------------------------------------------------------
def fidelity(reference: Outputs, analog: Outputs, top1: bool) -> dict[str, float]:
    """Fidelity of one analog pass to the FP pass (see the module docstring); `top1`: score argmax agreement."""
    err = ref = 0.0
    agree = items = 0
    for fp, an in zip(reference.finals, analog.finals):
        fp64, an64 = fp.double(), an.double()
        err += float(((an64 - fp64) ** 2).sum())
        ref += float((fp64 ** 2).sum())
        if top1:
            agree += int((an.argmax(-1) == fp.argmax(-1)).sum())
        items += fp.shape[0]
    scores = {"output_rel_l2": _ratio_sqrt(err, ref)}
    if top1:
        scores["top1_agreement"] = agree / items if items else float("nan")
    if reference.embeddings is not None and analog.embeddings is not None:
        scores.update(embedding_fidelity(reference.embeddings, analog.embeddings))
    return scores


def embedding_fidelity(fp: torch.Tensor, analog: torch.Tensor) -> dict[str, float]:
    """Cosine similarity, relative L2 and retrieval agreement of analog to FP embeddings (rows = sentences)."""
    fp, analog = fp.double(), analog.double()
    fp_unit = torch.nn.functional.normalize(fp, dim=1)
    analog_unit = torch.nn.functional.normalize(analog, dim=1)
    cosine = (fp_unit * analog_unit).sum(1)
    nearest = (analog_unit @ fp_unit.T).argmax(1)
    return {
        "embedding_cosine_mean": float(cosine.mean()),
        "embedding_cosine_min": float(cosine.min()),
        "embedding_rel_l2": _ratio_sqrt(float(((analog - fp) ** 2).sum()), float((fp ** 2).sum())),
        "retrieval_agreement": float((nearest == torch.arange(len(fp))).double().mean()),
    }


def _task_scores(glue: GlueData, outputs: Outputs, inputs: EvalInputs, placed) -> dict[str, float]:
    labels = glue.labels[inputs.order]
    if glue.task.is_regression:
        return task_metrics(glue.task, outputs.logits[:, 0].numpy(), labels)
    to_task = label_permutation(glue.task, getattr(placed.model.config, "id2label", None))
    return task_metrics(glue.task, to_task[outputs.logits.argmax(1).numpy()], labels)


def _ratio_sqrt(num: float, den: float) -> float:
    return math.sqrt(num / den) if den > 0 else float("nan")


# --- summaries -------------------------------------------------------------------------------------
RESULT_KEYS = ("results", "results_without_pt_opt", "results_without_hwa")  # per-drift-time result lists


def _summarize(drift: DriftTime, rows: list[dict[str, float]], examples: int | None = None) -> dict:
    names = list(rows[0]) if rows else []
    return summarize_per_seed(drift.label, drift.seconds,
                              {n: [_clean_value(row[n]) for row in rows] for n in names}, examples)


def summarize_per_seed(label: str, seconds: float, per_seed: Mapping[str, Sequence[float | None]],
                       examples: int | None = None) -> dict:
    """One drift time's entry of accuracy.json from its per-seed values (None = not finite): mean, sample std,
    the half-width of the 95 % confidence interval of the mean over seeds (ci95, on the metric's own scale) and
    that interval kept inside the metric's range (low, high: bounded_interval; `examples` the evaluation set's
    size, for the fractions), per metric. Computed from the per-seed values alone, so merged seed lists
    (merge_accuracy) give the same numbers as one run."""
    per_seed = {n: list(v) for n, v in per_seed.items()}
    bounds = {n: bounded_interval(v, metric_range(n), examples) for n, v in per_seed.items()}
    return {"label": label, "seconds": seconds,
            "mean": {n: finite_mean(v) for n, v in per_seed.items()},
            "std": {n: finite_std(v) for n, v in per_seed.items()},
            "ci95": {n: ci_half_width(v) for n, v in per_seed.items()},
            "low": {n: b[0] for n, b in bounds.items()},
            "high": {n: b[1] for n, b in bounds.items()},
            "per_seed": per_seed}


def merge_accuracy(parts: Sequence[dict]) -> dict:
    """One accuracy dict from evaluate_accuracy results of the same placement and settings on DISJOINT seed
    lists (e.g. chip instances simulated by different workers): exactly what one evaluate_accuracy call on the
    concatenated seed list (in the order of `parts`) returns, means, stds, confidence intervals and per-seed
    values of every result list (PT off, without HWA) included; elapsed_s is the sum of the parts' times.
    A seed's chip depends only on the seed, so a seed's values do not depend on how the seeds were split."""
    parts = list(parts)
    if not parts:
        raise ValueError("merge_accuracy: no parts to merge")
    seeds = [s for part in parts for s in part["seeds"]]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"merge_accuracy: the parts' seed lists overlap ({seeds})")
    first = parts[0]
    merged_keys = {"seeds", "elapsed_s", *RESULT_KEYS}
    for part in parts[1:]:
        differing = sorted(k for k in set(first) | set(part) if k not in merged_keys and first.get(k) != part.get(k))
        lists = [k for k in RESULT_KEYS if (k in first) != (k in part)]
        if differing or lists:
            raise ValueError(f"merge_accuracy: the parts differ in {', '.join(differing + lists)}; only results "
                             f"of the same placement and settings on different seeds merge")
    merged = {**first, "seeds": seeds, "elapsed_s": sum(float(p.get("elapsed_s") or 0.0) for p in parts)}
    for key in RESULT_KEYS:
        if first.get(key) is None:
            continue
        rows = []
        for slot, row in enumerate(first[key]):
            names = list(row["per_seed"])
            rows.append(summarize_per_seed(row["label"], row["seconds"],
                                           {n: [v for p in parts for v in p[key][slot]["per_seed"][n]]
                                            for n in names}, (first.get("eval") or {}).get("examples")))
        merged[key] = rows
    return merged


def _clean_value(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _clean(scores: dict[str, float] | None) -> dict[str, float | None] | None:
    return None if scores is None else {k: _clean_value(v) for k, v in scores.items()}


def _task_description(name: str) -> tuple[str, bool]:
    return (f"GLUE task metric {name.removeprefix('task_')} of the analog chip (FP value in fp_reference.task)", True)


# --- argument checks -------------------------------------------------------------------------------
def _drift_times(value: str | Sequence[DriftTime | float]) -> list[DriftTime]:
    if isinstance(value, str):
        return parse_drift_times(value)
    times = [v if isinstance(v, DriftTime) else DriftTime(f"{float(v):g}s", float(v)) for v in value]
    if not times or any(not math.isfinite(t.seconds) or t.seconds < 0 for t in times):
        raise UserError("drift times must be a non-empty list of times >= 0 s")
    return times


def _seed_list(seeds: int | Sequence[int]) -> list[int]:
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise UserError(f"--seeds must be >= 1 (got {seeds})")
    return seed_list


def _check_device(device: str) -> None:
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise UserError(f"--device {device!r}: expected cpu or cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device}: no CUDA device is available here; use --device cpu")


def _checked_glue(placed, eval_data: str | GlueData | None) -> GlueData | None:
    """Load the evaluation data and check this model can be scored on it (before any simulation)."""
    if eval_data is None:
        return None
    glue = eval_data if isinstance(eval_data, GlueData) else load_eval_data(eval_data)
    check_eval_compatible(placed.model, glue)
    return glue


def check_eval_compatible(model: torch.nn.Module, glue: GlueData) -> None:
    """Raise UserError unless `model` can be scored on `glue` (real weights, a classifier with the task's
    label count, a tokenizer). The CLI calls it right after loading the model, before compiling."""
    info = model_info(model)
    if info.weights == "random":
        raise UserError(f"--eval: {info.name} has RANDOM weights here (no real checkpoint offline), so task "
                        f"metrics would mean nothing; give a fine-tuned checkpoint directory, or drop --eval "
                        f"to measure fidelity only")
    if info.task != "sequence-classification":
        raise UserError(f"--eval {glue.task.name}: needs a sequence classifier, but {info.name} is loaded for "
                        f"{info.task}; give a checkpoint fine-tuned on {glue.task.name} (--task sequence-classification)")
    if info.tokenizer is None:
        raise UserError(f"--eval: {info.name} has no tokenizer, so {glue.task.name} text cannot be tokenized")
    labels = getattr(getattr(model, "config", None), "num_labels", None)
    if labels != glue.task.num_labels:
        raise UserError(f"--eval {glue.task.name}: the task has {glue.task.num_labels} label(s) but {info.name} "
                        f"outputs {labels}; give a checkpoint fine-tuned on {glue.task.name}")


def example_for_eval(model: torch.nn.Module, example: Any, glue: GlueData | None) -> Any:
    """The compile example, plus zero token_type_ids when `glue` is a sentence-pair task whose tokenizer
    marks the second sentence (BERT) and forward() takes them, so the compiled graph accepts them."""
    tokenizer = model_info(model).tokenizer
    if glue is None or glue.text_b is None or tokenizer is None or not isinstance(example, Mapping):
        return example
    if "token_type_ids" in example or "token_type_ids" not in getattr(tokenizer, "model_input_names", ()):
        return example
    if "token_type_ids" not in inspect.signature(model.forward).parameters:
        return example
    return {**example, "token_type_ids": torch.zeros_like(example["input_ids"])}


def simulator_line(result: dict) -> str:
    """Which implementation simulated the chips, for the terminal (accuracy.json's `simulator`)."""
    info = result["simulator"]
    what = "native C kernels" if info["backend"] == "native" else "torch ops"
    why = f"; native kernels unavailable: {info['native_unavailable']}" if info.get("native_unavailable") else ""
    return f"simulator: {info['backend']} ({what}), random stream {info['random_stream']}{why}"


def summary_lines(result: dict) -> list[str]:
    """One line per drift time: the headline metrics, mean +- std over seeds and [the 95 % confidence interval
    of the mean, inside the metric's range: low, high] (for the terminal; with one seed, the value alone)."""
    headline = [n for n in ("embedding_cosine_mean", "retrieval_agreement", "top1_agreement", "output_rel_l2")
                if n in result["metrics"]] + [n for n in result["metrics"] if n.startswith("task_")]
    lines = []
    for row in result["results"]:
        parts, spread = [], False
        for name in headline:
            mean, std, ci = row["mean"].get(name), row["std"].get(name), row.get("ci95", {}).get(name)
            low, high = row.get("low", {}).get(name), row.get("high", {}).get(name)
            if low is None and ci is not None:  # a result from before low/high: the symmetric interval
                low, high = mean - ci, mean + ci
            if mean is not None:
                parts.append(f"{name} {mean:.4f}" + (f" +- {std:.4f}" if std is not None else "")
                             + (f" [{low:.4f}, {high:.4f}]" if low is not None else ""))
                spread = spread or low is not None
        lines.append(f"t={row['label']}" + (f" (mean +- std [95% CI], {len(result['seeds'])} seeds)"
                                            if spread else "") + ": " + ", ".join(parts))
    return lines
