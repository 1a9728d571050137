"""Training-time hardware model for HWA fine-tuning: the analog MVM of docs/analog_mvm.md, differentiable.

`attach_hardware_model(model, hw, config)` swaps every nn.Linear and GPT-2 Conv1D (the layers that
passes.partition places on analog tiles) for an `AnalogTrainingLinear`, and routes the model's
activation-by-activation matmuls (attention's QK^T and AV: the DIGITAL_INT nodes) through INT6
fake quantization. In training mode a forward pass then sees, per layer:

- DAC: inputs clipped to a per-tile range (the `input_percentile` percentile of |x| in the batch, as
  passes.ranges calibrates it) and quantized to the spec's DAC bits, straight-through gradient;
- weights: clipped to the mapped range w_max (per tile = max|W_tile| after optional Gaussian clipping,
  or per column), normalized to g = W / w_max, then perturbed like a differential PCM pair programmed
  and read at a random drift time t: a Gaussian with the exact per-g mean and std of programming noise,
  drift and 1/f read noise (tabulated from the simulator's PCMDevice with the spec's coefficients:
  sampling the full device model per weight per step cost 3x the whole training step), and global
  drift compensation per tile; the perturbation enters as a detached additive term (straight-through);
- output noise per tile MVM in normalized units, then the ADC (range |mean| + L std of the batch's
  outputs, the spec's bits) with straight-through rounding;
- attention: Q, K, V and the softmax output quantized to the spec's attention bits (symmetric, per
  tensor or per head), straight-through.

In eval mode every wrapper is the plain layer (bit-identical), and attention is untouched.
`detach()` puts the original modules back.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from compiler.errors import UserError
from compiler.hw_spec import HardwareSpec

SECONDS_PER_YEAR = 365.0 * 86400.0
INPUT_PERCENTILE = 99.9    # same DAC calibration statistic as passes.ranges
OUTPUT_SIGMAS = 4.0        # same "|mean| + L std" ADC statistic as passes.ranges
DEFAULT_ADC_RANGE = 10.0   # aihwkit's out_bound (docs/analog_mvm.md step 5)
_TINY = 1e-12


@dataclass(frozen=True)
class HwaNoiseConfig:
    """What the training-time hardware model injects. Defaults: everything the spec describes."""
    t_min_s: float = 3600.0                 # one drift time per step, drawn among t_points log-spaced ones
    t_max_s: float = SECONDS_PER_YEAR
    t_points: int = 8                       # drift times: this many log-spaced values in [t_min_s, t_max_s]
    noise_scale: float = 1.0                # multiplies the weights' deviation from their targets
    weight_noise: bool = True
    output_noise: bool = True
    quantize_io: bool = True                # DAC and ADC quantization (and their clipping)
    int6_attention: bool = True             # attention inputs at the spec's digital attention bits
    weight_range: str = "tile"              # "tile": one w_max per tile; "column": one per tile column
    clip_sigmas: float | None = 3.0         # clip each tile's weights to this many std (None: no clipping)
    input_percentile: float = INPUT_PERCENTILE
    output_sigmas: float = OUTPUT_SIGMAS

    def __post_init__(self) -> None:
        if not 0 < self.t_min_s <= self.t_max_s:
            raise UserError(f"HWA drift times must satisfy 0 < t_min <= t_max (got {self.t_min_s}, {self.t_max_s})")
        if self.t_points < 1:
            raise UserError(f"HWA t_points must be >= 1, got {self.t_points}")
        if self.noise_scale < 0:
            raise UserError(f"HWA noise_scale must be >= 0, got {self.noise_scale}")
        if self.weight_range not in ("tile", "column"):
            raise UserError(f"HWA weight_range must be 'tile' or 'column', got {self.weight_range!r}")
        if self.clip_sigmas is not None and self.clip_sigmas <= 0:
            raise UserError(f"HWA clip_sigmas must be positive or None, got {self.clip_sigmas}")
        if not 0 < self.input_percentile <= 100:
            raise UserError(f"HWA input_percentile must be in (0, 100], got {self.input_percentile}")


# --- straight-through quantizers ----------------------------------------------------------------

def ste_round(x: torch.Tensor) -> torch.Tensor:
    """round(x) forward, identity backward."""
    return x + (torch.round(x) - x).detach()


class _ClampRound(torch.autograd.Function):
    """q = round(clamp(x / scale, -1, 1) * L) / L, times scale if `rescale`.

    Backward: straight through the rounding, the clamp's own gradient (zero where x was clipped). One
    fused pass each way: on a CPU the quantizers' elementwise ops, not the matmuls, bound the step time.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: torch.Tensor, levels: int, rescale: bool) -> torch.Tensor:
        q = x / scale
        inside = q.abs() <= 1.0
        q.clamp_(-1.0, 1.0).mul_(levels).round_().div_(levels)
        if rescale:
            q.mul_(scale)
        ctx.save_for_backward(inside, scale)
        ctx.rescale = rescale
        return q

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        inside, scale = ctx.saved_tensors
        grad_x = grad * inside
        if not ctx.rescale:
            grad_x = grad_x / scale
        return grad_x, None, None, None


def quantize_normalized(x: torch.Tensor, scale: torch.Tensor, bits: int) -> torch.Tensor:
    """x / scale clipped to [-1, 1] and quantized to 2**(bits-1)-1 levels per side (straight-through)."""
    return _ClampRound.apply(x, scale.detach(), 2 ** (bits - 1) - 1, False)


def fake_quantize_symmetric(x: torch.Tensor, bits: int, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric quantization to 2**(bits-1)-1 levels per side of `scale` (clipped), straight-through."""
    return _ClampRound.apply(x, scale.detach().clamp(min=_TINY), 2 ** (bits - 1) - 1, True)


def int_attention_scale(x: torch.Tensor, per_head: bool) -> torch.Tensor:
    """max|x| per tensor, or per head (dim 1 of a (batch, heads, tokens, dim) tensor); detached."""
    x = x.detach().abs()
    if per_head and x.dim() == 4:
        return x.amax(dim=(0, 2, 3), keepdim=True)
    return x.amax()


# --- PCM weight noise (DESIGN.md "Device physics", the simulator's PCMDevice) -------------------------

def spans(size: int, step: int) -> list[tuple[int, int]]:
    """[lo, hi) pieces of `step` (the last one shorter): tile rows over inputs, tile columns over outputs."""
    return [(lo, min(lo + step, size)) for lo in range(0, size, step)]


def _per_block(values: torch.Tensor, block: int, reduce: str) -> torch.Tensor:
    """(n,) -> (n,): each value replaced by the sum or max of its block of `block` consecutive values."""
    n = values.shape[0]
    blocks = -(-n // block)
    view = nn.functional.pad(values, (0, blocks * block - n)).view(blocks, block)
    reduced = view.sum(1) if reduce == "sum" else view.amax(1)
    return reduced.repeat_interleave(block)[:n]


@dataclass
class ConductanceMoments:
    """Moments of one differential pair's effective conductance (G+ - G-)/g_max vs its signed target g.

    Tabulated on a grid of g in [-1, 1] by Monte Carlo through the simulator's device model
    (compiler.analog.device.PCMDevice), so training and simulation share one physics. Means are
    stored as shifts from the target, so the nearest-grid-point lookup errs by the shift's slope times
    half a grid step, not by half a grid step.
    """
    t_s: float
    grid: torch.Tensor          # (N,) signed targets, evenly spaced in [-1, 1]
    prog_shift: torch.Tensor    # (N,) E[g_eff] - g right after programming (the compensation reference)
    shift: torch.Tensor         # (N,) E[g_eff(t)] - g, drift and read noise included, before compensation
    std: torch.Tensor           # (N,) std of g_eff(t)

    def lookup(self, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(prog_shift, shift, std) at each entry of g in [-1, 1] (nearest grid point)."""
        half = (self.grid.numel() - 1) / 2.0
        # truncation of a positive value rounds to nearest; int32 + index_select: 4x faster than t[index]
        index = (g * half + (half + 0.5)).to(torch.int32).view(-1)
        return tuple(table.index_select(0, index).view_as(g) for table in (self.prog_shift, self.shift, self.std))

    def to(self, device: torch.device) -> "ConductanceMoments":
        return ConductanceMoments(self.t_s, self.grid.to(device), self.prog_shift.to(device),
                                  self.shift.to(device), self.std.to(device))


def conductance_moments(hw: HardwareSpec, t_s: float, points: int = 201, samples: int = 2048,
                        seed: int = 0) -> ConductanceMoments:
    """Monte Carlo moments of the programmed pair read at t (PCMDevice, the spec's flags and coefficients).

    Cached per device model and time: a table costs about 0.2 s, and every fine-tuning run (and test) in a
    process reuses the same few drift times. 2048 samples put the mean within ~1/45 of a std.
    """
    return _conductance_moments(hw.device, float(t_s), points, samples, seed)


@functools.lru_cache(maxsize=64)
def _conductance_moments(device_spec, t_s: float, points: int, samples: int, seed: int) -> ConductanceMoments:
    from compiler.analog.device import PCMDevice

    device = PCMDevice(device_spec)
    generator = torch.Generator().manual_seed(seed)
    grid = torch.linspace(-1.0, 1.0, points)
    g = grid[:, None].expand(points, samples)
    targets = torch.stack([g.clamp(min=0.0), (-g).clamp(min=0.0)])
    g_prog = device.program(targets, generator)
    nu = device.drift_exponents(targets, generator)
    g_t = device.at_time(g_prog, nu, t_s, generator)
    eff_prog, eff_t = g_prog[0] - g_prog[1], g_t[0] - g_t[1]
    return ConductanceMoments(t_s, grid, eff_prog.mean(1) - grid, eff_t.mean(1) - grid, eff_t.std(1))


def noisy_normalized_weights(g: torch.Tensor, moments: ConductanceMoments, cols: int, drift_compensation: bool,
                             scale: float = 1.0) -> torch.Tensor:
    """g (out, rows) of one tile row block, in [-1, 1] -> one random chip's (G+ - G-)/g_max at t.

    Each weight gets a Gaussian with the exact mean and std of the device model at its target (see
    ConductanceMoments); `scale` multiplies the deviation from g. The global drift compensation of each
    tile (every `cols` outputs; Joshi et al., Nat. Commun. 2020: an all-ones read after programming and at
    t, ratio of the summed |outputs|, as the simulator does) is folded into its conductances.
    """
    prog_shift, shift, std = moments.lookup(g)
    eff_t = torch.randn_like(g).mul_(std).add_(shift)
    if scale != 1.0:
        eff_t.mul_(scale)
    eff_t.add_(g)
    if not drift_compensation:
        return eff_t
    reference = _per_block((g.sum(1) + scale * prog_shift.sum(1)).abs(), cols, "sum")
    drifted = _per_block(eff_t.sum(1).abs(), cols, "sum")
    factor = torch.where(drifted > 0, reference / drifted.clamp(min=1e-30), torch.ones_like(reference))
    return eff_t.mul_(factor[:, None])


# --- weight ranges ------------------------------------------------------------------------------------

def tile_w_max(weight: torch.Tensor, rows: int, cols: int, per_column: bool) -> torch.Tensor:
    """The mapped weight range of (out, in) weights, (out, row_blocks): max|W_tile| per tile, or per column."""
    weight = weight.detach()
    ranges = []
    for lo, hi in spans(weight.shape[1], rows):
        per_col = weight[:, lo:hi].abs().amax(dim=1)
        ranges.append(per_col if per_column else _per_block(per_col, cols, "max"))
    return torch.stack(ranges, dim=1).clamp(min=_TINY)


@torch.no_grad()
def clip_weight_to_tiles(weight: torch.Tensor, rows: int, cols: int, sigmas: float) -> None:
    """In place: clip every tile of (out, in) weights (a view is fine) to +-sigmas * std(W_tile).

    aihwkit's LAYER_GAUSSIAN weight clipping (its HWA-training recipe), applied per tile: noise is
    relative to each tile's w_max, so a few outlier weights must not set the range of all the others.
    """
    for r0, r1 in spans(weight.shape[1], rows):
        for c0, c1 in spans(weight.shape[0], cols):
            tile = weight[c0:c1, r0:r1]
            bound = float(sigmas * tile.std(unbiased=False)) if tile.numel() > 1 else float(tile.abs().max())
            if bound > 0:
                tile.clamp_(-bound, bound)


# --- the analog layer wrapper -------------------------------------------------------------------------

class AnalogTrainingLinear(nn.Module):
    """An nn.Linear (or Conv1D, weight stored (in, out)) that runs through the analog MVM model in training."""

    def __init__(self, layer: nn.Module, hw: HardwareSpec, config: HwaNoiseConfig, clock: "DriftClock"):
        super().__init__()
        self.layer = layer
        self.hw = hw
        self.config = config
        self.clock = clock
        self.transposed = not isinstance(layer, nn.Linear)

    def weight_matrix(self) -> torch.Tensor:
        """The weight as (out_features, in_features), differentiable."""
        w = self.layer.weight
        return w.t() if self.transposed else w

    def clip_weights(self) -> None:
        if self.config.clip_sigmas is not None:
            clip_weight_to_tiles(self.weight_matrix().detach(), self.hw.tile.rows, self.hw.tile.cols,
                                 self.config.clip_sigmas)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self.layer(x)
        return self._analog_forward(x)

    def _analog_forward(self, x: torch.Tensor) -> torch.Tensor:
        cfg, hw = self.config, self.hw
        weight = self.weight_matrix()
        out_f, in_f = weight.shape
        flat = x.reshape(-1, in_f)
        # w_max >= |W| in every tile (column), so g = W / w_max needs no clamp: clipping acts on the weights
        w_max = tile_w_max(weight, hw.tile.rows, hw.tile.cols, per_column=cfg.weight_range == "column")
        noisy = cfg.weight_noise and cfg.noise_scale > 0
        moments = self.clock.moments(weight.device) if noisy else None
        compensate = hw.device.drift_compensation and hw.device.drift
        y = None
        for rb, (lo, hi) in enumerate(spans(in_f, hw.tile.rows)):
            scale = w_max[:, rb]
            g = weight[:, lo:hi] / scale[:, None]
            if moments is not None:
                with torch.no_grad():
                    delta = noisy_normalized_weights(g.detach(), moments, hw.tile.cols, compensate, cfg.noise_scale)
                    delta.sub_(g)
                g = g + delta   # straight-through: the gradient sees the ideal weights
            partial = self._tile_mvm(flat[:, lo:hi], g) * scale
            y = partial if y is None else y + partial   # partial sums of split inputs added digitally
        if self.layer.bias is not None:
            y = y + self.layer.bias
        return y.reshape(*x.shape[:-1], out_f)

    def _tile_mvm(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """One row block through every column tile: DAC, MVM, output noise, ADC; de-normalized by dac_range.

        As compiler.analog.tile.analog_mvm, with straight-through rounding; a converter whose
        bits are null is ideal (neither clipped nor quantized), as docs/analog_mvm.md says.
        """
        cfg, hw = self.config, self.hw
        dac_bits = hw.dac.bits if cfg.quantize_io else None
        adc_bits = hw.adc.bits if cfg.quantize_io else None
        dac_range = _percentile_abs(x, cfg.input_percentile) if dac_bits is not None else _abs_max(x)
        x_n = quantize_normalized(x, dac_range, dac_bits) if dac_bits is not None else x / dac_range
        y_n = nn.functional.linear(x_n, g)  # F.linear: never taken for an attention matmul by IntAttentionMode
        adc_range = self._adc_range(y_n.detach()) if adc_bits is not None else None
        if cfg.output_noise and hw.output_noise > 0:
            y_n = y_n + hw.output_noise * torch.randn_like(y_n)
        if adc_range is not None:
            y_n = fake_quantize_symmetric(y_n, adc_bits, adc_range)
        return y_n * dac_range

    def _adc_range(self, y_n: torch.Tensor) -> torch.Tensor:
        """Per column tile: max over its columns of |mean| + L std of the batch's outputs, for every column."""
        mean = y_n.mean(0)
        std = ((y_n * y_n).mean(0) - mean * mean).clamp_(min=0).sqrt_()
        expected = mean.abs_() + self.config.output_sigmas * std
        per_tile = _per_block(expected, self.hw.tile.cols, "max")
        return torch.where(per_tile > 0, per_tile, torch.full_like(per_tile, DEFAULT_ADC_RANGE))


def _abs_max(x: torch.Tensor) -> torch.Tensor:
    value = x.detach().abs().amax()
    return torch.where(value > 0, value, torch.ones_like(value))


PERCENTILE_SAMPLE = 1 << 16  # |x| values the per-batch DAC percentile looks at (a strided subsample)


def _percentile_abs(x: torch.Tensor, percent: float) -> torch.Tensor:
    """The `percent` percentile of |x| over the batch (detached), falling back to max|x|, then 1.

    Above PERCENTILE_SAMPLE values a strided subsample stands in for the batch (at 99.9 % that still
    leaves 65 values above the percentile): the exact selection cost more than the layer's matmul.
    """
    flat = x.detach().reshape(-1)
    if flat.numel() > PERCENTILE_SAMPLE:
        flat = flat[::flat.numel() // PERCENTILE_SAMPLE]
    flat = flat.abs()
    above = min(max(flat.numel() - int(math.ceil(percent / 100.0 * flat.numel())) + 1, 1), flat.numel())
    value = flat.topk(above, sorted=False).values.min()
    return torch.where(value > 0, value, _abs_max(x))


# --- attention -------------------------------------------------------------------------------------------

class IntAttentionMode(TorchFunctionMode):
    """Fake-quantizes both operands of every activation-by-activation matmul (attention's QK^T and AV).

    Linear layers run as F.linear / addmm and never hit this; a matmul with a Parameter operand is left
    alone, as passes.partition places only matmuls of two activations on the INT6 units.
    """

    _MATMULS = {torch.matmul, torch.Tensor.matmul, torch.bmm, torch.Tensor.__matmul__, torch.Tensor.__rmatmul__}

    def __init__(self, bits: int, per_head: bool):
        super().__init__()
        self.bits = bits
        self.per_head = per_head

    def __torch_function__(self, func: Callable, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self._MATMULS and len(args) == 2 and all(
                isinstance(a, torch.Tensor) and not isinstance(a, nn.Parameter) for a in args):
            args = tuple(fake_quantize_symmetric(a, self.bits, int_attention_scale(a, self.per_head)) for a in args)
        return func(*args, **kwargs)


# --- attaching and detaching ------------------------------------------------------------------------------

class DriftClock:
    """The drift time t shared by all layers in one training step (one chip instance per step).

    t is drawn among `points` log-spaced times in [t_min_s, t_max_s]; the device moments of each time are
    tabulated once, on first use.
    """

    def __init__(self, hw: HardwareSpec, t_min_s: float, t_max_s: float, points: int = 8,
                 generator: torch.Generator | None = None):
        self.hw = hw
        count = 1 if t_min_s == t_max_s else points
        self.times = [math.exp(math.log(t_min_s) + i * (math.log(t_max_s) - math.log(t_min_s)) / max(count - 1, 1))
                      for i in range(count)]
        self.generator = generator
        self.t_s = self.times[-1]
        self._tables: dict[tuple[float, str], ConductanceMoments] = {}

    def tick(self) -> float:
        self.t_s = self.times[int(torch.randint(len(self.times), (), generator=self.generator))]
        return self.t_s

    def moments(self, device: torch.device) -> ConductanceMoments:
        key = (self.t_s, str(device))
        if key not in self._tables:
            cpu = self._tables.get((self.t_s, "cpu")) or conductance_moments(self.hw, self.t_s)
            self._tables[(self.t_s, "cpu")] = cpu
            self._tables[key] = cpu.to(device)
        return self._tables[key]


def is_analog_layer(module: nn.Module) -> bool:
    """nn.Linear and GPT-2's Conv1D: the modules whose ops passes.partition puts on analog tiles."""
    if isinstance(module, nn.Linear):
        return True
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:
        return False
    return isinstance(module, Conv1D)


@dataclass
class HardwareModelHandle:
    """What attach_hardware_model changed, so detach() can undo it."""
    model: nn.Module
    wrappers: dict[str, AnalogTrainingLinear]
    clock: DriftClock
    hooks: list

    def analog_layers(self) -> Iterator[AnalogTrainingLinear]:
        return iter(self.wrappers.values())

    def clip_weights(self) -> None:
        for wrapper in self.wrappers.values():
            wrapper.clip_weights()

    def detach(self) -> nn.Module:
        """Put the original layers back and remove the attention hooks; returns the model."""
        for hook in self.hooks:
            hook.remove()
        self.hooks.clear()
        for path, wrapper in self.wrappers.items():
            parent, name = _parent_of(self.model, path)
            setattr(parent, name, wrapper.layer)
        self.wrappers.clear()
        return self.model


def attach_hardware_model(model: nn.Module, hw: HardwareSpec, config: HwaNoiseConfig | None = None,
                          generator: torch.Generator | None = None) -> HardwareModelHandle:
    """Wrap the analog layers of `model` (in place) and hook INT6 attention; active only in training mode."""
    config = config or HwaNoiseConfig()
    clock = DriftClock(hw, config.t_min_s, config.t_max_s, config.t_points, generator)
    paths = [name for name, module in model.named_modules() if name and is_analog_layer(module)]
    if not paths and is_analog_layer(model):
        raise UserError("HWA fine-tuning needs a model that contains analog layers; wrap a bare nn.Linear "
                        "in an nn.Sequential")
    if not paths:
        raise UserError(f"{type(model).__name__} has no nn.Linear or Conv1D layers: nothing to place on analog tiles")
    wrappers = {}
    for path in paths:
        parent, name = _parent_of(model, path)
        wrapper = AnalogTrainingLinear(getattr(parent, name), hw, config, clock)
        wrapper.train(model.training)
        setattr(parent, name, wrapper)
        wrappers[path] = wrapper
    hooks = []
    if config.int6_attention and hw.digital.attention_bits is not None:
        hooks = _attention_hooks(model, IntAttentionMode(hw.digital.attention_bits,
                                                          hw.digital.attention_scale == "per_head"))
    return HardwareModelHandle(model, wrappers, clock, hooks)


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The innermost modules whose class name says Attention (BertSelfAttention, GPT2Attention, ...):
    where attention's matmuls run. The model itself when there are none."""
    found = [m for m in model.modules() if "attention" in type(m).__name__.lower()]
    innermost = [m for m in found if not any(c is not m and "attention" in type(c).__name__.lower()
                                             for c in m.modules())]
    return innermost or [model]


def _attention_hooks(model: nn.Module, mode: IntAttentionMode) -> list:
    """Enter `mode` around each attention module's forward when it is in training mode (only there: the
    mode sees every torch call, so scoping it keeps the rest of the forward at full speed)."""
    entered: list[bool] = []

    def pre_hook(module, args):
        active = module.training
        if active:
            mode.__enter__()
        entered.append(active)

    def post_hook(module, args, output):
        if entered.pop():
            mode.__exit__(None, None, None)

    hooks = []
    for module in attention_modules(model):
        hooks.append(module.register_forward_pre_hook(pre_hook))
        hooks.append(module.register_forward_hook(post_hook, always_call=True))
    return hooks


def _parent_of(model: nn.Module, path: str) -> tuple[nn.Module, str]:
    parent_path, _, name = path.rpartition(".")
    return (model.get_submodule(parent_path) if parent_path else model), name
