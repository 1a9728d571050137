"""Weights to conductances, and programming them: one segment, many segments at once, or into a buffer.

Mapping (docs/analog_mvm.md, step 2): a segment's weights W_seg (C outputs, R inputs) are normalized per
column by w_max_c (the segment's `col_w_max`, else max|W_seg| for every column), clipped to [-1, 1] and
split into a differential pair g+ = max(g, 0), g- = max(-g, 0) of normalized conductances G / g_max.
Programming then applies the device model (device.PCMDevice) to both devices and reads them at time t.

Two implementations of the same device model:
- torch (`program_pairs` and what builds on it): any device, torch.Generators;
- native (`program_into` with `native_kernels`): the fused C kernel of kernels.c, CPU only, several
  threads, parameters from `device_params`.
Both key every random draw on (seed, segment id), so a segment's conductances do not depend on the order
in which segments are programmed, and the same seed gives the same programmed chip at every t; they use
different random streams, so they agree in distribution, not number for number.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from compiler.analog import native
from compiler.analog.device import G_LOG_FLOOR, QS_POWER_FLOOR, PCMDevice, drift_compensation_factor
from compiler.hw_spec import HardwareSpec

_MASK64 = (1 << 64) - 1


# --- weights to conductances --------------------------------------------------------------------------

def segment_w_max(weight: torch.Tensor, col_w_max: torch.Tensor | None = None) -> torch.Tensor:
    """(C,) float32 normalization of W_seg (C, R): `col_w_max` where set, else max|W_seg| for every
    column (1 if W_seg is all zero, so that it maps to zero conductance)."""
    if col_w_max is not None:
        w_max = torch.as_tensor(col_w_max).to(device=weight.device, dtype=torch.float32).reshape(-1)
        if w_max.numel() != weight.shape[0]:
            raise ValueError(f"col_w_max has {w_max.numel()} values for a segment of {weight.shape[0]} columns")
        if not bool((w_max > 0).all()):
            raise ValueError("col_w_max must be positive in every column")
        return w_max.contiguous()
    peak = float(weight.detach().abs().amax()) if weight.numel() else 0.0  # aminmax: ~80x slower on CPU
    return torch.full((weight.shape[0],), peak if peak > 0 else 1.0, dtype=torch.float32, device=weight.device)


def normalized_weights(weight: torch.Tensor, w_max: torch.Tensor) -> torch.Tensor:
    """g = clamp(W / w_max, -1, 1) for W (..., C, R) and w_max (..., C): the signed target conductance."""
    return (weight / w_max[..., None]).clamp(-1.0, 1.0)


def differential_targets(g: torch.Tensor) -> torch.Tensor:
    """(2, ...) stack of the pair's targets g+ = max(g, 0) and g- = max(-g, 0)."""
    return torch.stack([g.clamp(min=0.0), (-g).clamp(min=0.0)])


# --- torch programming -------------------------------------------------------------------------------

def program_pairs(g: torch.Tensor, hw: HardwareSpec, generator: torch.Generator | None, t_inference: float,
                  read_generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Program signed targets g (..., C, R) as differential pairs and read them at t.

    Draws, in this order from `generator`: programming noise of g+ and g-, their drift exponents; then
    the read noise at t from `read_generator` (default: `generator`). Returns the effective conductances
    (G+ - G-) / g_max right after programming and at t, each shaped like g.
    """
    device = PCMDevice(hw.device)
    targets = differential_targets(g.detach().to(torch.float32))
    g_prog = device.program(targets, generator)
    nu = device.drift_exponents(targets, generator)
    g_t = device.at_time(g_prog, nu, t_inference, read_generator or generator)
    return g_prog[0] - g_prog[1], g_t[0] - g_t[1]


def compensation(hw: HardwareSpec, g_eff_prog: torch.Tensor, g_eff_t: torch.Tensor) -> torch.Tensor:
    """The global drift compensation factor of each (..., C, R) array (ones when the spec turns it off)."""
    if hw.device.drift_compensation:
        return drift_compensation_factor(g_eff_prog, g_eff_t)
    return torch.ones(g_eff_t.shape[:-2], dtype=g_eff_t.dtype, device=g_eff_t.device)


@dataclass
class ProgrammedSegment:
    """A segment's weights as the chip holds them at one inference time t.

    g_eff: (C, R) effective normalized conductance (G+ - G-) / g_max read at t;
    w_max: (C,) weight normalization per column (w = g * w_max);
    drift_compensation: 0-dim tensor, the segment's global drift compensation factor (1 when off).
    """
    g_eff: torch.Tensor
    w_max: torch.Tensor
    drift_compensation: torch.Tensor

    @property
    def output_scale(self) -> torch.Tensor:
        """(C,) digital factor from normalized output units back to weight units, per unit of dac_range."""
        return self.w_max * self.drift_compensation


def program_segment(weight: torch.Tensor, hw: HardwareSpec, generator: torch.Generator | None,
                    t_inference: float = 0.0, col_w_max: torch.Tensor | None = None,
                    read_generator: torch.Generator | None = None) -> ProgrammedSegment:
    """Program W_seg (C outputs, R inputs) and read it at `t_inference` seconds (see program_pairs)."""
    weight = weight.detach().to(torch.float32)
    w_max = segment_w_max(weight, col_w_max)
    g_prog, g_t = program_pairs(normalized_weights(weight, w_max), hw, generator, t_inference, read_generator)
    return ProgrammedSegment(g_t, w_max, compensation(hw, g_prog, g_t))


def ideal_segment(weight: torch.Tensor, col_w_max: torch.Tensor | None = None) -> ProgrammedSegment:
    """The segment as the weights ask for it (clipped by col_w_max), with no device non-ideality."""
    weight = weight.detach().to(torch.float32)
    w_max = segment_w_max(weight, col_w_max)
    return ProgrammedSegment(normalized_weights(weight, w_max), w_max, torch.ones((), device=weight.device))


def program_segments(weights: torch.Tensor, w_max: torch.Tensor, hw: HardwareSpec, generator: torch.Generator,
                     t_inference: float) -> tuple[torch.Tensor, torch.Tensor]:
    """S segments of one shape at once (weights (S, C, R), w_max (S, C)): g_eff at t (S, C, R) and the
    output scale w_max * drift compensation (S, C)."""
    g_prog, g_t = program_pairs(normalized_weights(weights.float(), w_max), hw, generator, t_inference)
    return g_t, w_max * compensation(hw, g_prog, g_t)[:, None]


# --- keyed programming into a buffer (simulator, range search, training) -----------------------------

def segment_seed(seed: int, segment_id: int, stream: int) -> int:
    """A 63-bit seed for one torch.Generator: segment (or block) id, stream 0 programming and drift,
    1 read noise, 2 output noise (keyed by block)."""
    # the constant keeps (seed 0, segment 0, stream 0) off torch.manual_seed(0), the stream that also
    # initialized many users' weights (noise drawn from it would correlate with the weights)
    value = (seed * 0x9E3779B97F4A7C15 + segment_id * 0xD1B54A32D192ED03 + stream * 0xABC98388FB8FAC03
             + 0x632BE59BD9B4E019) & _MASK64
    value ^= value >> 31
    value = (value * 0xBF58476D1CE4E5B9) & _MASK64
    return (value ^ (value >> 29)) & ((1 << 63) - 1)


def device_params(hw: HardwareSpec, t_inference: float) -> torch.Tensor:
    """The device model as kernels.c's program_rows reads it (see the enum there): every coefficient from
    the spec and device.PCMDevice, so the C kernel holds no physics constant of its own."""
    spec = hw.device
    model = PCMDevice(spec)
    c0, c1, c2 = (c / spec.programming_noise_fit_g_max_uS for c in spec.programming_noise_poly_uS)
    mean, std, qs = spec.drift_nu_mean, spec.drift_nu_std, spec.read_noise_qs
    values = [float(spec.programming_noise), c0, c1, c2,
              float(spec.drift), mean.slope, mean.intercept, mean.lo, mean.hi,
              std.slope, std.intercept, std.lo, std.hi, model.drift_factor_log(t_inference),
              float(spec.read_noise), qs.coeff, qs.exponent, qs.max, model.read_noise_spread(t_inference),
              G_LOG_FLOOR, QS_POWER_FLOOR]
    return torch.tensor(values, dtype=torch.float64)


def use_native(device: torch.device, requested: bool | None = None) -> bool:
    """Whether to run the native kernels: on CPU where they build (requested None), or as requested."""
    if requested is None:
        return device.type == "cpu" and native.available()
    if requested and (device.type != "cpu" or not native.available()):
        raise ValueError(f"native kernels requested but unavailable on {device}: "
                         f"{native.unavailable_reason() or 'they run on CPU only'}")
    return requested


def simulator_backend(device: torch.device | str, requested: bool | None = None) -> dict[str, str]:
    """accuracy.json's `simulator`: the implementation that runs on `device` ("native" kernels or "torch" ops)
    and its random stream. The two draw the same distributions but different numbers for the same seed; torch's
    CPU and CUDA generators differ from each other too, hence the device in the torch stream's name."""
    device = torch.device(device)
    if use_native(device, requested):
        return {"backend": "native", "random_stream": native.RANDOM_STREAM}
    info = {"backend": "torch", "random_stream": f"torch-{device.type}-v1"}
    if device.type == "cpu" and requested is None:
        info["native_unavailable"] = native.unavailable_reason() or ""
    return info


def program_into(out: torch.Tensor, w_seg: torch.Tensor, w_max: torch.Tensor, row_mult: torch.Tensor,
                 segment_id: int, hw: HardwareSpec, t_inference: float, seed: int,
                 params: torch.Tensor | None = None, native_kernels: bool = False) -> float:
    """Program W_seg (C, R) with normalization w_max (C,), read it at t, write g_eff * row_mult[:, None]
    into `out` (C, R); returns the segment's global drift compensation factor (1 when off)."""
    if native_kernels:
        params = device_params(hw, t_inference) if params is None else params
        sum_prog, sum_t = native.program_rows(w_seg.detach().to(torch.float32), w_max, params, seed & _MASK64,
                                              segment_id, out, row_mult)
        if not hw.device.drift_compensation:
            return 1.0
        reference, drifted = float(sum_prog.abs().sum()), float(sum_t.abs().sum())
        return reference / drifted if drifted > 0 else 1.0
    device = out.device
    generator = torch.Generator(device=device).manual_seed(segment_seed(seed, segment_id, 0))
    read_generator = torch.Generator(device=device).manual_seed(segment_seed(seed, segment_id, 1))
    g = normalized_weights(w_seg.detach().to(device=device, dtype=torch.float32), w_max)
    g_prog, g_t = program_pairs(g, hw, generator, t_inference, read_generator)
    torch.mul(g_t, row_mult[:, None], out=out)
    return float(compensation(hw, g_prog, g_t))
