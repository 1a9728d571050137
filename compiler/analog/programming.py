"""Program the chip: every segment of every weight block, one instance per seed, read at time t.

Two implementations of the same device model (pcm.py, DESIGN.md "Device physics"):
- native (CPU, when kernels.c builds): one fused pass per segment, rows on several threads;
- torch (CUDA, or CPU without a C compiler): tile.program_segment with torch.Generators.
Both key every random draw on (seed, segment id), so a segment's conductances do not depend on the
order in which segments are programmed, and the same seed gives the same programmed chip (programming
noise and drift exponents) at every t; they use different random streams, so they agree in
distribution, not number for number.
"""
from __future__ import annotations

import torch

from compiler.analog import native
from compiler.analog.device import PCMDevice
from compiler.analog.tile import column_w_max, program_segment
from compiler.hw_spec import HardwareSpec
from compiler.ir import TileSegment

_G_LOG_FLOOR = 1e-7      # as pcm._G_LOG_FLOOR (aihwkit's clip before the log of g)
_QS_POWER_FLOOR = 1e-3   # as pcm._QS_POWER_FLOOR
_MASK64 = (1 << 64) - 1


def segment_seed(seed: int, segment_id: int, stream: int) -> int:
    """A 63-bit seed for one torch.Generator: segment (or block) id, stream 0 programming and drift,
    1 read noise, 2 output noise (block.py, keyed by block)."""
    # the constant keeps (seed 0, segment 0, stream 0) off torch.manual_seed(0), the stream that also
    # initialized many users' weights (noise drawn from it would correlate with the weights)
    value = (seed * 0x9E3779B97F4A7C15 + segment_id * 0xD1B54A32D192ED03 + stream * 0xABC98388FB8FAC03
             + 0x632BE59BD9B4E019) & _MASK64
    value ^= value >> 31
    value = (value * 0xBF58476D1CE4E5B9) & _MASK64
    return (value ^ (value >> 29)) & ((1 << 63) - 1)


def device_params(hw: HardwareSpec, t_inference: float) -> torch.Tensor:
    """The parameter vector of kernels.c's program_rows (see the enum there)."""
    spec = hw.device
    model = PCMDevice(spec)
    c0, c1, c2 = (c / spec.programming_noise_fit_g_max_uS for c in spec.programming_noise_poly_uS)
    mean, std, qs = spec.drift_nu_mean, spec.drift_nu_std, spec.read_noise_qs
    values = [float(spec.programming_noise), c0, c1, c2,
              float(spec.drift), mean.slope, mean.intercept, mean.lo, mean.hi,
              std.slope, std.intercept, std.lo, std.hi, model.drift_factor_log(t_inference),
              float(spec.read_noise), qs.coeff, qs.exponent, qs.max, model.read_noise_spread(t_inference),
              _G_LOG_FLOOR, _QS_POWER_FLOOR]
    return torch.tensor(values, dtype=torch.float64)


def use_native(device: torch.device, requested: bool | None = None) -> bool:
    """Whether to run the native kernels: on CPU where they build (requested None), or as requested."""
    if requested is None:
        return device.type == "cpu" and native.available()
    if requested and (device.type != "cpu" or not native.available()):
        raise ValueError(f"native kernels requested but unavailable on {device}: "
                         f"{native.unavailable_reason() or 'they run on CPU only'}")
    return requested


def segment_w_max(w_seg: torch.Tensor, col_w_max: torch.Tensor | None) -> torch.Tensor:
    """(C,) float32 on w_seg's device: segment.col_w_max where set, else max|W_seg| (1 if W_seg is 0)."""
    if col_w_max is not None:
        return column_w_max(w_seg, col_w_max.to(w_seg.device, torch.float32)).contiguous()
    peak = float(w_seg.abs().amax())            # torch.aminmax is ~80x slower on CPU (torch 2.13)
    return torch.full((w_seg.shape[0],), peak if peak > 0 else 1.0, dtype=torch.float32, device=w_seg.device)


def program_into(out: torch.Tensor, w_seg: torch.Tensor, w_max: torch.Tensor, row_mult: torch.Tensor,
                 segment: TileSegment, hw: HardwareSpec, t_inference: float, seed: int,
                 params: torch.Tensor | None = None, native_kernels: bool = False) -> float:
    """Program W_seg (C, R) with normalization w_max (C,), read it at t, write g_eff * row_mult[:, None]
    into `out` (C, R); returns the segment's global drift compensation factor (1 when off)."""
    device = out.device
    if native_kernels:
        params = device_params(hw, t_inference) if params is None else params
        sum_prog, sum_t = native.program_rows(w_seg.to(torch.float32), w_max, params, seed & _MASK64, segment.id,
                                              out, row_mult)
        if not hw.device.drift_compensation:
            return 1.0
        reference, drifted = float(sum_prog.abs().sum()), float(sum_t.abs().sum())
        return reference / drifted if drifted > 0 else 1.0
    generator = torch.Generator(device=device).manual_seed(segment_seed(seed, segment.id, 0))
    read_generator = torch.Generator(device=device).manual_seed(segment_seed(seed, segment.id, 1))
    prog = program_segment(w_seg.to(device=device, dtype=torch.float32), hw, generator, t_inference, w_max,
                           read_generator)
    torch.mul(prog.g_eff, row_mult[:, None], out=out)
    return float(prog.drift_compensation)
