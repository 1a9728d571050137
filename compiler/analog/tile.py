"""One tile segment: program it, then run MVMs through it exactly as docs/analog_mvm.md specifies.

This is the reference implementation of the analog MVM contract, one segment at a time. The range passes
(passes/ranges.py, passes/range_optimization.py) call it to measure a segment's MVM error under the spec's
quantization and noise; the lowered simulator (block.py) computes the same thing batched over all
segments of a weight block, and tests check the two agree.

    gen = torch.Generator().manual_seed(0)
    seg = program_segment(w_seg, hw, gen, t_inference=3600.0, col_w_max=None)   # one programmed instance
    y = analog_mvm(x, seg, dac_range=3.0, adc_range=10.0, hw=hw, generator=gen)  # x (..., R) -> y (..., C)
    err = (y - x @ w_seg.T).norm() / (x @ w_seg.T).norm()

`y` is in weight units (de-normalized, drift compensated), without bias: for a segment of a block that
splits its inputs, the block's output is the sum of its segments' outputs plus the bias.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from compiler.analog.device import PCMDevice, differential_targets, drift_compensation_factor
from compiler.hw_spec import HardwareSpec

DEFAULT_ADC_RANGE = 10.0  # normalized output units; aihwkit's out_bound (docs/analog_mvm.md step 5)

RangeLike = float | torch.Tensor | None


@dataclass
class ProgrammedSegment:
    """A segment's weights as the chip holds them at one inference time t.

    g_eff: (C, R) effective normalized conductance (G+ - G-) / g_max read at t (programming noise, drift
        and read noise included; read noise is drawn once per programmed instance and time, see docs/simulator.md);
    w_max: (C,) weight normalization per column (w = g * w_max);
    drift_compensation: 0-dim tensor, the global drift compensation factor of the segment (1 when off).
    """
    g_eff: torch.Tensor
    w_max: torch.Tensor
    drift_compensation: torch.Tensor

    @property
    def output_scale(self) -> torch.Tensor:
        """(C,) digital factor from normalized output units back to weight units, per unit of dac_range."""
        return self.w_max * self.drift_compensation

    def to(self, device: torch.device | str) -> "ProgrammedSegment":
        return ProgrammedSegment(self.g_eff.to(device), self.w_max.to(device), self.drift_compensation.to(device))


def column_w_max(weight: torch.Tensor, col_w_max: torch.Tensor | None = None) -> torch.Tensor:
    """(C,) normalization: segment.col_w_max where set, else max|W_seg| for every column (1 if W_seg is 0)."""
    if col_w_max is not None:
        w_max = torch.as_tensor(col_w_max, dtype=weight.dtype, device=weight.device).reshape(-1)
        if w_max.numel() != weight.shape[0]:
            raise ValueError(f"col_w_max has {w_max.numel()} values for a segment of {weight.shape[0]} columns")
        if not bool((w_max > 0).all()):
            raise ValueError("col_w_max must be positive in every column")
        return w_max
    peak = weight.abs().max() if weight.numel() else torch.zeros((), dtype=weight.dtype, device=weight.device)
    value = peak if float(peak) > 0 else torch.ones((), dtype=weight.dtype, device=weight.device)
    return value.expand(weight.shape[0]).clone()


def program_segment(weight: torch.Tensor, hw: HardwareSpec, generator: torch.Generator | None,
                    t_inference: float = 0.0, col_w_max: torch.Tensor | None = None,
                    read_generator: torch.Generator | None = None) -> ProgrammedSegment:
    """Program W_seg (C outputs, R inputs) as differential PCM pairs and read it at `t_inference` seconds.

    Draws, in this order from `generator`: programming noise of G+ and G-, drift exponents of G+ and G-;
    then the read noise at t from `read_generator` (default: `generator`). Each effect follows the spec's
    flags (hw.device.*) and coefficients.
    """
    weight = weight.detach().to(torch.float32)
    device = PCMDevice(hw.device)
    w_max = column_w_max(weight, col_w_max)
    g_pos, g_neg = differential_targets(weight, w_max[:, None])
    targets = torch.stack([g_pos, g_neg])                           # (2, C, R): G+ and G-, normalized
    g_prog = device.program(targets, generator)
    nu = device.drift_exponents(targets, generator)
    g_t = device.at_time(g_prog, nu, t_inference, read_generator or generator)
    g_eff_t = g_t[0] - g_t[1]
    if hw.device.drift_compensation:
        factor = drift_compensation_factor(g_prog[0] - g_prog[1], g_eff_t)
    else:
        factor = torch.ones((), dtype=weight.dtype, device=weight.device)
    return ProgrammedSegment(g_eff=g_eff_t, w_max=w_max, drift_compensation=factor)


def ideal_segment(weight: torch.Tensor, col_w_max: torch.Tensor | None = None) -> ProgrammedSegment:
    """The segment as the weights ask for it (clipped by col_w_max), with no device non-ideality."""
    weight = weight.detach().to(torch.float32)
    w_max = column_w_max(weight, col_w_max)
    g_pos, g_neg = differential_targets(weight, w_max[:, None])
    return ProgrammedSegment(g_pos - g_neg, w_max, torch.ones((), dtype=weight.dtype, device=weight.device))


# --- periphery --------------------------------------------------------------------------------------

def levels(bits: int) -> int:
    """Symmetric quantizer levels per side: 2**(bits-1) - 1 (8 bits: +-127)."""
    return 2 ** (bits - 1) - 1


def resolve_dac_range(x: torch.Tensor, dac_range: RangeLike) -> torch.Tensor:
    """The DAC range as a tensor broadcastable against x (..., R).

    None -> aihwkit's abs_max noise management: max |x| of each input vector (1 where a vector is all zero).
    """
    if dac_range is None:
        peak = x.abs().amax(dim=-1, keepdim=True)
        return torch.where(peak > 0, peak, torch.ones_like(peak))
    value = torch.as_tensor(dac_range, dtype=x.dtype, device=x.device)
    if not bool((value > 0).all()):
        raise ValueError(f"dac_range must be positive, got {dac_range}")
    return value


def dac(x: torch.Tensor, dac_range: torch.Tensor, bits: int | None) -> torch.Tensor:
    """Step 1: x_n = clamp(x / dac_range, -1, 1), quantized to round(x_n L) / L with L = levels(bits).

    bits None is an ideal DAC: neither clipped nor quantized (x_n = x / dac_range).
    """
    x_n = x / dac_range
    if bits is not None:
        scale = float(levels(bits))
        x_n = x_n.clamp_(-1.0, 1.0).mul_(scale).round_().div_(scale)
    return x_n


def adc(y_n: torch.Tensor, adc_range: torch.Tensor, bits: int | None) -> torch.Tensor:
    """Step 5: clamp to +-adc_range, quantized to round(y_n / adc_range L) / L adc_range.

    bits None is an ideal ADC: neither clipped nor quantized.
    """
    if bits is None:
        return y_n
    scale = float(levels(bits))
    y_n = torch.maximum(torch.minimum(y_n, adc_range), -adc_range)
    return (y_n / adc_range).mul_(scale).round_().div_(scale).mul_(adc_range)


def resolve_adc_range(adc_range: RangeLike, like: torch.Tensor) -> torch.Tensor:
    """adc_range as a tensor (scalar, or (C,) per column); None -> DEFAULT_ADC_RANGE."""
    value = torch.as_tensor(DEFAULT_ADC_RANGE if adc_range is None else adc_range, dtype=like.dtype,
                            device=like.device)
    if not bool((value > 0).all()):
        raise ValueError(f"adc_range must be positive, got {adc_range}")
    return value


def analog_mvm(x: torch.Tensor, segment: ProgrammedSegment, dac_range: RangeLike, adc_range: RangeLike,
               hw: HardwareSpec, generator: torch.Generator | None = None) -> torch.Tensor:
    """One MVM per input vector through a programmed segment (docs/analog_mvm.md steps 1-6, without bias).

    x: (..., R) inputs of the segment's rows; dac_range: float (the segment's), None (abs_max per input
    vector) or a tensor broadcastable to x[..., :1]; adc_range: float, (C,) tensor or None (10);
    generator: draws the output noise (hw.output_noise, per output per MVM). Returns (..., C) in weight units.
    """
    x = x.to(segment.g_eff.dtype)
    d_range = resolve_dac_range(x, dac_range)
    x_n = dac(x, d_range, hw.dac.bits)
    y_n = x_n @ segment.g_eff.T
    if hw.output_noise > 0:
        noise = torch.randn(y_n.shape, generator=generator, device=y_n.device, dtype=y_n.dtype)
        y_n = y_n + hw.output_noise * noise
    y_n = adc(y_n, resolve_adc_range(adc_range, y_n), hw.adc.bits)
    return y_n * d_range * segment.output_scale
