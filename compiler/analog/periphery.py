"""A tile's periphery: DAC, ADC, output noise and IR drop (docs/analog_mvm.md, steps 1, 4 and 5).

Every quantizer has two modes, chosen by the `ste` argument rather than by a second copy:
- exact (simulation, `ste=False`): the values the chip produces, computed without autograd (in place
  where the caller owns the tensor);
- straight-through (training, `ste=True`): the same forward values; the gradient passes through the
  rounding unchanged and is zero where a value was clipped (the clamp's own gradient).
"""
from __future__ import annotations

import torch

# The ADC range (normalized output units) where none was calibrated: aihwkit's IOParameters.out_bound
# of its StandardHWATrainingPreset (10); its plain IOParameters default is 12.
DEFAULT_ADC_RANGE = 10.0

RangeLike = float | torch.Tensor | None


def levels(bits: int) -> int:
    """Symmetric quantizer levels per side: 2**(bits-1) - 1 (8 bits: +-127)."""
    return 2 ** (bits - 1) - 1


class _ClampRound(torch.autograd.Function):
    """round(clamp(x / scale, -1, 1) * L) / L, times scale if `rescale`; straight-through backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: torch.Tensor, steps: int, rescale: bool) -> torch.Tensor:
        q = x / scale
        inside = q.abs() <= 1.0
        q.clamp_(-1.0, 1.0).mul_(steps).round_().div_(steps)
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


def clamp_round(x: torch.Tensor, scale: torch.Tensor, steps: int, rescale: bool, ste: bool) -> torch.Tensor:
    """round(clamp(x / scale, -1, 1) * steps) / steps (times scale if `rescale`), exact or straight-through."""
    if ste:
        return _ClampRound.apply(x, scale.detach(), steps, rescale)
    q = (x / scale).clamp_(-1.0, 1.0).mul_(steps).round_().div_(steps)
    return q.mul_(scale) if rescale else q


def resolve_dac_range(x: torch.Tensor, dac_range: RangeLike) -> torch.Tensor:
    """The DAC range as a tensor broadcastable against x (..., R).

    None -> aihwkit's abs_max noise management: max |x| of each input vector (1 where a vector is all zero).
    """
    if dac_range is None:
        peak = x.detach().abs().amax(dim=-1, keepdim=True)
        return torch.where(peak > 0, peak, torch.ones_like(peak))
    value = torch.as_tensor(dac_range, dtype=x.dtype, device=x.device)
    if not bool((value > 0).all()):
        raise ValueError(f"dac_range must be positive, got {dac_range}")
    return value


def resolve_adc_range(adc_range: RangeLike, like: torch.Tensor) -> torch.Tensor:
    """adc_range as a tensor (scalar, or (C,) per column); None -> DEFAULT_ADC_RANGE."""
    value = torch.as_tensor(DEFAULT_ADC_RANGE if adc_range is None else adc_range, dtype=like.dtype,
                            device=like.device)
    if not bool((value > 0).all()):
        raise ValueError(f"adc_range must be positive, got {adc_range}")
    return value


def dac(x: torch.Tensor, dac_range: torch.Tensor, bits: int | None, ste: bool = False) -> torch.Tensor:
    """Step 1: x_n = clamp(x / dac_range, -1, 1), quantized to round(x_n L) / L with L = levels(bits).

    bits None is an ideal DAC: neither clipped nor quantized (x_n = x / dac_range).
    """
    if bits is None:
        return x / dac_range
    return clamp_round(x, dac_range, levels(bits), rescale=False, ste=ste)


def adc(y_n: torch.Tensor, adc_range: torch.Tensor, bits: int | None, ste: bool = False) -> torch.Tensor:
    """Step 5: clamp to +-adc_range, quantized to round(y_n / adc_range L) / L adc_range.

    bits None is an ideal ADC: neither clipped nor quantized.
    """
    if bits is None:
        return y_n
    return clamp_round(y_n, adc_range, levels(bits), rescale=True, ste=ste)


def add_output_noise(y_n: torch.Tensor, sigma: float, generator: torch.Generator | None) -> torch.Tensor:
    """Step 4: y_n + sigma N(0, 1), per output and per MVM, in normalized output units (aihwkit's
    convention: a full input through one g_max device reads 1, whatever ADC range is chosen)."""
    if sigma <= 0:
        return y_n
    noise = torch.randn(y_n.shape, generator=generator, device=y_n.device, dtype=y_n.dtype)
    return y_n + sigma * noise


# --- IR drop --------------------------------------------------------------------------------------
# First-order model of the voltage lost on a column's bit line (docs/analog_mvm.md, "IR drop"). The
# column collects current towards its ADC at the end of the last tile row; each wire segment between two
# adjacent cells has resistance r. With the cells' currents replaced by their mean i (uniform load), the
# bit line at tile row t (0 = farthest from the ADC, of n rows) sits at r i (n(n+1) - t(t+1)) / 2 above
# virtual ground, so that cell loses that much of its read voltage. To first order in r:
#     y_c = sum_t g_ct x_t (1 - rho i_c p_t),  p_t = (n(n+1) - t(t+1)) / 2,  rho = r g_max,
# with i_c the mean cell current per bit line in units of g_max V_read. A weight's current flows in one
# line of its differential pair, so each line carries about half of sum_t |g_ct x_t|:
#     i_c = sum_t |g_ct| |x_t| / (2 n).
# aihwkit's IOParameters.ir_drop is the reference for the approach (a steady-state drop that grows with
# the input current and the distance from the output); this closed form is ours.

def ir_drop_profile(tile_rows: int, rows: tuple[int, int], dtype: torch.dtype = torch.float32,
                    device: torch.device | str = "cpu") -> torch.Tensor:
    """p_t of the tile rows `rows` = [start, stop) of a tile with `tile_rows` rows, shape (stop - start,)."""
    n = float(tile_rows)
    t = torch.arange(rows[0], rows[1], dtype=torch.float64)
    return ((n * (n + 1) - t * (t + 1)) / 2.0).to(dtype=dtype, device=device)


def ir_drop_rho(wire_ohm: float, g_max_uS: float) -> float:
    """rho = r g_max: the wire segment's resistance relative to the lowest device resistance."""
    return wire_ohm * g_max_uS * 1e-6


def ir_drop_loss(x_n: torch.Tensor, g: torch.Tensor, profile: torch.Tensor, rho: float,
                 tile_rows: int) -> torch.Tensor:
    """The output lost to IR drop, rho i_c sum_t g_ct x_t p_t, (..., C), for inputs x_n (..., R) and
    conductances g (C, R) on tile rows with profile p (R,): subtract it from x_n @ g.T."""
    load = (x_n.abs() @ g.abs().T) / (2.0 * tile_rows)
    return rho * load * ((x_n * profile) @ g.T)
