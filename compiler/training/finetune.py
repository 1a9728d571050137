"""Hardware-aware (HWA) fine-tuning: make a model robust to the PCM chip before it is programmed.

Spoon et al. 2021 (Front. Comput. Neurosci.) reach software-equivalent BERT accuracy on PCM by training
with the hardware's noise in the loop. `hwa_finetune` does that in a short fine-tune of a copy of the
model, compiled first (compile_model: the same allocation, calibration and range optimizations as the chip
it will run on), so that training programs the weights through the compiled placement: the same blocks and
tile segments, fused and packed, with the same normalization, ranges and compensation as the simulator
(compiler.training.hardware). It trains
- with labels (a list of (text, label) pairs, or GLUE-format data): on the task loss;
- without labels: by distillation from the original FP model as teacher (relative MSE of the final
  output -- logits, or last hidden states at real tokens), on unlabeled text (the built-in sentences
  compiler.sentences.CALIBRATION by default, or a text file), so it runs offline.
The result is the original architecture with its weights tuned (and clipped per tile segment), and
compiles as usual.

`hardware_aware=False` runs the same loop (same data, optimizer, schedule) through the FP model: the
plain fine-tuning baseline the benchmarks and tests compare against.
"""
from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compiler.evaluation.accuracy import output_tensor
from compiler.config import DEFAULT_SEQ_LEN
from compiler.errors import UserError
from compiler.hw_spec import HardwareSpec, load_hw_spec
from compiler.training.data import TrainingSet, load_training_data
from compiler.training.hardware import HwaNoiseConfig, TrainingChip
from compiler.models import ModelInfo, model_info, transformers_bars
from compiler.progress import bar as progress_bar

TEACHER_CACHE_LIMIT = 50_000_000  # cache the teacher's outputs up to this many values (200 MB float32)


@dataclass
class HwaSummary:
    """What one fine-tuning run did (attached to the returned model as `aimc_hwa`; goes into hwa.json)."""
    objective: str                  # "task" (labels) or "distillation" (FP model as teacher)
    hardware_aware: bool
    data: str
    samples: int
    steps: int
    lr: float
    batch_size: int
    seq_len: int
    seed: int
    device: str
    noise: dict | None
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    placement: dict | None = None   # the compiled placement trained through (allocation, tiles, segments)

    def to_dict(self) -> dict:
        return asdict(self)


def hwa_finetune(model: nn.Module, hw: HardwareSpec | str, data: Any = None, steps: int = 40, lr: float = 1e-4,
                 batch_size: int = 16, seq_len: int = DEFAULT_SEQ_LEN, *, noise: HwaNoiseConfig | None = None,
                 hardware_aware: bool = True, seed: int = 0, device: str = "cpu", tokenizer: Any = None,
                 allocation: str = "packed", calibration: Any = 32, pt_column_range: bool = True,
                 pt_input_range: bool = True, warmup_fraction: float = 0.1, weight_decay: float = 0.0,
                 max_grad_norm: float = 1.0, progress: bool = True, block_options: dict | None = None) -> nn.Module:
    """Fine-tune a copy of `model` with the compiled chip in the loop; return it (eval mode).

    data: None (built-in unlabeled sentences), a text file (one sentence per line), a GLUE task directory,
    .tsv file or `glue:TASK`, a list of sentences or of (text, label) / (text_a, text_b, label), or tensors
    (see compiler.training.data). Labeled data trains on the task loss, unlabeled data distills the FP model.
    noise: what to inject (compiler.training.hardware.HwaNoiseConfig; default: everything the spec describes,
    drift times log-uniform in [1 h, 1 y]). allocation, calibration, pt_column_range, pt_input_range: how
    the copy is compiled for training, as compile_model takes them (use the values the tuned model will be
    compiled with). block_options: block name -> BlockOption (--accuracy-budget's choice): the chip trained through
    runs each block as its option says. Dropout stays off: the compiled graph is the model in eval mode, and the injected noise
    regularizes. The original model is not modified. The result carries `aimc_info` and `aimc_hwa`.
    """
    from compiler.pipeline import compile_model
    from passes import calibrate_ranges

    _check_arguments(steps, lr, batch_size, seq_len, warmup_fraction, device)
    hw = hw if isinstance(hw, HardwareSpec) else load_hw_spec(hw)
    noise = noise or HwaNoiseConfig()
    info = model_info(model)
    config = getattr(model, "config", None)
    training = load_training_data(data, tokenizer or info.tokenizer, seq_len, getattr(config, "id2label", None))
    if training.labeled:
        _check_labels(model, training)
    home = next((p.device for p in model.parameters()), torch.device("cpu"))
    student = _copy_model(model)
    student.aimc_info = info  # compile_model calibrates with the model's tokenizer
    _use_eager_attention(student)
    summary = HwaSummary("task" if training.labeled else "distillation", hardware_aware, training.description,
                         training.size, steps, lr, batch_size, seq_len, seed, device,
                         asdict(noise) if hardware_aware else None)
    started = time.perf_counter()
    cuda = [torch.device(device).index or 0] if device.startswith("cuda") else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        example_args, example_kwargs, _ = training.select(torch.arange(min(2, training.size)))
        placed = compile_model(student, example_kwargs or example_args, hw, allocation=allocation)
        placed.block_options = {n: o for n, o in (block_options or {}).items() if n in placed.blocks}
        chip = None
        if hardware_aware:
            chip = TrainingChip(placed, noise, torch.Generator().manual_seed(seed), seed)
            chip.clip_weights()  # start inside the mapped range, then calibrate for the clipped weights
            stats = calibrate_ranges(placed, calibration, column_range=pt_column_range, input_range=pt_input_range,
                                     progress=False)
            summary.placement = {"allocation": placed.allocation, "tiles": placed.tiles_used,
                                 "segments": len(placed.segments),
                                 "calibration": stats.description if stats is not None else None}
        student.to(device)
        teacher = None if training.labeled else _Teacher(model, training, batch_size, device)
        frozen = _freeze_embeddings(student, placed)
        try:
            summary.losses = _train(chip or student, training, teacher, chip, steps, lr, batch_size, warmup_fraction,
                                    weight_decay, max_grad_norm, seed, device, progress, student)
        finally:
            for param in frozen:
                param.requires_grad_(True)
            if teacher is not None:
                teacher.release()
        student.eval()
        student.to(home)
    summary.seconds = time.perf_counter() - started
    student.aimc_info = ModelInfo(info.name, info.task, info.weights,
                                  f"{'HWA' if hardware_aware else 'plain'} fine-tuned ({summary.objective}) "
                                  f"from {info.source}", info.tokenizer)
    student.aimc_hwa = summary
    return student


def save_finetuned(model: nn.Module, directory: str | Path) -> Path:
    """Write a fine-tuned model where load_model can read it: save_pretrained + its tokenizer."""
    directory = Path(directory)
    if not hasattr(model, "save_pretrained"):
        raise UserError(f"{type(model).__name__} is not a Hugging Face model: it cannot be saved as a checkpoint")
    directory.mkdir(parents=True, exist_ok=True)
    with transformers_bars():  # "Writing model shards": a bar only where ours are drawn (not with -q, not in a pipe)
        model.save_pretrained(str(directory))
    tokenizer = model_info(model).tokenizer
    if tokenizer is not None:
        tokenizer.save_pretrained(str(directory))
    return directory


# --- the training loop --------------------------------------------------------------------------------

def _train(forward: nn.Module, training: TrainingSet, teacher: "_Teacher | None", chip: TrainingChip | None,
           steps: int, lr: float, batch_size: int, warmup_fraction: float, weight_decay: float, max_grad_norm: float,
           seed: int, device: str, progress: bool, student: nn.Module) -> list[float]:
    """The loop: `forward` is the training chip (HWA) or the student itself (plain); both update `student`."""
    params = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    warmup = max(1, int(round(warmup_fraction * steps))) if warmup_fraction > 0 else 0
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, warmup, steps))
    order = _BatchOrder(training.size, min(batch_size, training.size), seed)
    losses = []
    label = "HWA fine-tuning" if chip is not None else "fine-tuning"
    bar = progress_bar(range(steps), desc=label, unit="step", enabled=progress)
    for _ in bar:
        index = order.next()
        args, kwargs, labels = training.select(index)
        args, kwargs = _trim_padding(args, kwargs)
        args = tuple(_to(a, device) for a in args)
        kwargs = {k: _to(v, device) for k, v in kwargs.items()}
        if chip is not None:
            chip.program()       # a fresh chip instance at a drawn drift time
        output = forward(*args, **kwargs)
        if labels is not None:
            loss = _task_loss(output, labels.to(device))
        else:
            loss = _distillation_loss(output, teacher.targets(index, args, kwargs), kwargs.get("attention_mask"))
        if not torch.isfinite(loss):
            raise UserError(f"fine-tuning diverged (loss {float(loss)}); lower the learning rate (now {lr:g})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        optimizer.step()
        schedule.step()
        if chip is not None:
            chip.clip_weights()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.4g}")
    bar.close()
    return losses


def _lr_factor(step: int, warmup: int, steps: int) -> float:
    """Linear warm-up over `warmup` steps, then linear decay to 0 at `steps`."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    return max(0.0, (steps - step) / max(1, steps - warmup))


class _BatchOrder:
    """Shuffled epochs of sample indices, cut into batches (a short last batch joins the next epoch's)."""

    def __init__(self, size: int, batch_size: int, seed: int):
        self.size, self.batch_size = size, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.pending = torch.empty(0, dtype=torch.long)

    def next(self) -> torch.Tensor:
        while self.pending.numel() < self.batch_size:
            self.pending = torch.cat([self.pending, torch.randperm(self.size, generator=self.generator)])
        batch, self.pending = self.pending[:self.batch_size], self.pending[self.batch_size:]
        return batch


def _trim_padding(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Drop token positions that are padding in every sequence of the batch (right padding)."""
    mask = kwargs.get("attention_mask")
    if not isinstance(mask, torch.Tensor) or mask.dim() != 2:
        return args, kwargs
    used = mask.bool().any(0).nonzero()
    length = int(used.max()) + 1 if used.numel() else mask.shape[1]
    if length == mask.shape[1] or not bool(mask[:, length:].eq(0).all()):
        return args, kwargs
    shape = tuple(mask.shape)
    trim = lambda v: v[:, :length] if isinstance(v, torch.Tensor) and tuple(v.shape[:2]) == shape else v  # noqa: E731
    return tuple(trim(a) for a in args), {k: trim(v) for k, v in kwargs.items()}


# --- losses -------------------------------------------------------------------------------------------

def primary_output(output: Any) -> torch.Tensor:
    """The tensor a model's quality is judged on: logits, else last hidden states, else the first tensor."""
    return output_tensor(output, ("logits", "last_hidden_state"))


def _distillation_loss(output: Any, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Relative MSE ||s - t||^2 / ||t||^2 of the primary output, over real tokens where there is a mask."""
    student = primary_output(output).float()
    if student.shape != target.shape:
        raise UserError(f"student and teacher outputs differ in shape ({tuple(student.shape)} vs "
                        f"{tuple(target.shape)})")
    weight = None
    if mask is not None and student.dim() >= 3 and tuple(student.shape[:2]) == tuple(mask.shape):
        weight = mask.to(student.dtype).reshape(*mask.shape, *([1] * (student.dim() - 2)))
    err = (student - target) ** 2
    ref = target ** 2
    if weight is not None:
        err, ref = err * weight, ref * weight
    return err.sum() / ref.sum().clamp(min=1e-12)


def _task_loss(output: Any, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on the logits for class labels, MSE for regression targets (as Hugging Face heads do)."""
    logits = primary_output(output)
    if labels.dtype in (torch.long, torch.int32, torch.int64):
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
    return nn.functional.mse_loss(logits.reshape(labels.shape), labels.float())


class _Teacher:
    """The FP model's outputs on the training set: cached when small, else computed per batch."""

    def __init__(self, model: nn.Module, training: TrainingSet, batch_size: int, device: str):
        self.model = model
        self.device = device
        self.home = next((p.device for p in model.parameters()), torch.device("cpu"))
        self.was_training = model.training
        model.eval()
        model.to(device)
        self.cache: torch.Tensor | None = None
        first_args, first_kwargs, _ = training.select(torch.arange(min(batch_size, training.size)))
        probe = self._run(first_args, first_kwargs)
        if probe.numel() / probe.shape[0] * training.size <= TEACHER_CACHE_LIMIT:
            parts = [self._run(a, k) for a, k, _ in training.batches(batch_size)]
            self.cache = torch.cat([self._pad_to(p, max(q.shape[1] if q.dim() > 1 else 0 for q in parts))
                                    for p in parts]) if parts[0].dim() > 1 else torch.cat(parts)

    def _run(self, args: tuple, kwargs: dict) -> torch.Tensor:
        with torch.no_grad():
            args = tuple(_to(a, self.device) for a in args)
            kwargs = {k: _to(v, self.device) for k, v in kwargs.items()}
            return primary_output(self.model(*args, **kwargs)).detach().float()

    @staticmethod
    def _pad_to(t: torch.Tensor, length: int) -> torch.Tensor:
        return t if t.dim() < 2 or t.shape[1] == length else nn.functional.pad(
            t, (0, 0) * (t.dim() - 2) + (0, length - t.shape[1]))

    def targets(self, index: torch.Tensor, args: tuple, kwargs: dict) -> torch.Tensor:
        if self.cache is None:
            return self._run(args, kwargs)
        cached = self.cache[index.to(self.cache.device)]
        mask = kwargs.get("attention_mask")
        if cached.dim() >= 3 and isinstance(mask, torch.Tensor):
            cached = cached[:, :mask.shape[1]]
        return cached

    def release(self) -> None:
        self.cache = None
        self.model.to(self.home)
        self.model.train(self.was_training)


# --- helpers ------------------------------------------------------------------------------------------

def _copy_model(model: nn.Module) -> nn.Module:
    """A deep copy of the model's modules and weights (its tokenizer stays shared, not copied)."""
    info = model.__dict__.pop("aimc_info", None)
    try:
        student = copy.deepcopy(model)
    finally:
        if info is not None:
            model.aimc_info = info
    return student


def _use_eager_attention(model: nn.Module) -> None:
    """Integer attention acts on attention's explicit matmuls, which only eager attention exports."""
    config = getattr(model, "config", None)
    impl = getattr(config, "_attn_implementation", None)
    if impl in (None, "eager"):
        return
    try:
        model.set_attn_implementation("eager")
    except Exception as exc:  # a model that cannot switch: train without integer attention, and say so
        warnings.warn(f"cannot switch {type(model).__name__} to eager attention ({exc}); attention will not "
                      f"be quantized during HWA fine-tuning", stacklevel=3)


def _freeze_embeddings(model: nn.Module, placed) -> list[nn.Parameter]:
    """Stop training the embedding tables; returns what was frozen, to unfreeze afterwards.

    They are digital lookups the chip's noise never touches, and a short fine-tune moves only the rows of
    the tokens it sees. Their dense gradients and optimizer state cost more than the rest of a MiniLM step
    (the word table alone is 11.7M of its 22.7M weights). A table tied to an analog layer (GPT-2's LM head)
    stays trainable.
    """
    analog = {id(model.get_parameter(p.weight)) for p in placed.analog_layers()}
    frozen = [p for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters(recurse=False)
              if p.requires_grad and id(p) not in analog]
    for param in frozen:
        param.requires_grad_(False)
    return frozen


def _check_labels(model: nn.Module, training: TrainingSet) -> None:
    task = model_info(model).task
    if task not in ("sequence-classification", "custom"):
        raise UserError(f"labeled training data trains a sequence classifier on its task loss, but "
                        f"{model_info(model).name} is loaded for {task}; give unlabeled text (distillation from "
                        f"the FP model), or a checkpoint fine-tuned on the task (--task sequence-classification)")
    labels = training.labels
    num_labels = getattr(getattr(model, "config", None), "num_labels", None)
    if labels.dtype == torch.long and num_labels is not None:
        if int(labels.min()) < 0 or int(labels.max()) >= num_labels:
            raise UserError(f"training labels run from {int(labels.min())} to {int(labels.max())}, but the model "
                            f"has {num_labels} output label(s); load it with the task's number of labels")


def _check_arguments(steps: int, lr: float, batch_size: int, seq_len: int, warmup_fraction: float,
                     device: str) -> None:
    if steps < 1:
        raise UserError(f"HWA fine-tuning needs at least 1 step, got {steps}")
    if not (lr > 0 and math.isfinite(lr)):
        raise UserError(f"HWA learning rate must be positive, got {lr}")
    if batch_size < 1 or seq_len < 2:
        raise UserError(f"HWA batch size must be >= 1 and sequence length >= 2 (got {batch_size}, {seq_len})")
    if not 0 <= warmup_fraction < 1:
        raise UserError(f"HWA warm-up fraction must be in [0, 1), got {warmup_fraction}")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise UserError(f"HWA device {device!r}: expected cpu or cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"HWA device {device}: no CUDA device is available here; use cpu")


def _to(value: Any, device: str) -> Any:
    return value.to(device) if isinstance(value, torch.Tensor) else value
