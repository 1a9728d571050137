"""The digital integer units of the chip: attention's QK^T and P·V (docs/simulator.md, "Integer attention").

Both operands of an attention matmul become integer codes; the unit multiplies codes, accumulates them
exactly and rescales the sum once by the product of the two operands' steps. Two code formats:

- signed symmetric (Q, K, V): codes in [-L, L], L = 2**(bits-1) - 1, step = s / L with a dynamic scale
  s = max|x| computed at run time per sequence and head (`per_head`) or per sequence (`per_tensor`) of a
  (batch, heads, tokens, dim) operand. Each sequence is its own inference on the chip, unpadded, so no
  scale spans the batch and, given the model's token mask, padded positions are left out of the max:
  a sentence's result does not depend on what else shares its batch;
- unsigned probability (P, the softmax output): codes in [0, U], U = 2**bits - 1, over the fixed range
  [0, 1]: P >= 0 needs no sign bit, and a fixed range keeps a row's small probabilities from being
  rounded away by a large one elsewhere in the sequence. Entries below 1/(2U) still round to 0, so a
  row spread flat over many tokens loses much of its mass (measured in docs/simulator.md).

float32 holds the integer sums exactly below 2**24, e.g. U * L * tokens at 6 bits up to 8589 tokens for
P·V and L * L * head_dim for QK^T, so the simulated accumulation is the integer unit's.

Each quantizer has two modes, chosen by the `ste` argument rather than by a second copy:
- exact (simulation, `ste=False`): no autograd, in-place ops; `fused` runs the native kernel
  (kernels.c quantize_groups, the same operations in one pass) on CPU float32 operands;
- straight-through (training, `ste=True`): the same forward values; the gradient passes through the
  rounding unchanged and is zero where a value was clipped (where the clamp changed the rounded code).
"""
from __future__ import annotations

import torch

from compiler.analog import native
from compiler.analog.periphery import levels as signed_levels


def unsigned_levels(bits: int) -> int:
    """Top code of an unsigned `bits` quantizer: 2**bits - 1 (6 bits: 0..63)."""
    return 2 ** bits - 1


def scale_dims(x: torch.Tensor, per_head: bool) -> tuple[int, ...]:
    """The dims one dynamic scale spans: all but (sequence, head) of a (batch, heads, tokens, dim) tensor
    when `per_head`, all but the sequence otherwise; all dims of a tensor without a batch dim."""
    if x.dim() >= 4 and per_head:
        return tuple(range(2, x.dim()))
    if x.dim() >= 3:
        return tuple(range(1, x.dim()))
    return tuple(range(x.dim()))


def dynamic_scale(x: torch.Tensor, per_head: bool, token_mask: torch.Tensor | None = None,
                  token_dim: int = -2) -> torch.Tensor:
    """max|x| per sequence (and head), keepdim, detached; 1 where a group is all zero.

    token_mask (batch, tokens), nonzero = real token: padded positions along `token_dim` are left out
    (ignored where its shape does not match x's batch and token dims).
    """
    magnitude = x.detach().abs()
    mask = _token_mask(x, token_mask, token_dim)
    if mask is not None:
        magnitude = magnitude * mask
    scale = magnitude.amax(dim=scale_dims(x, per_head), keepdim=True)
    return torch.where(scale > 0, scale, torch.ones_like(scale))


def _token_mask(x: torch.Tensor, token_mask: torch.Tensor | None, token_dim: int) -> torch.Tensor | None:
    """token_mask as a 0/1 tensor broadcastable against x, or None where it does not apply to x."""
    if token_mask is None or x.dim() < 3 or token_mask.dim() != 2:
        return None
    dim = token_dim % x.dim()
    if dim == 0 or tuple(token_mask.shape) != (x.shape[0], x.shape[dim]):
        return None
    shape = [x.shape[0]] + [1] * (x.dim() - 1)
    shape[dim] = x.shape[dim]
    return (token_mask != 0).to(x.dtype).view(shape)


def _round_clamp_(scaled: torch.Tensor, lower: int, upper: int) -> torch.Tensor:
    """In place: x * (levels / s) -> its integer code. The one rounding formula of both modes (and kernels.c)."""
    return scaled.round_().clamp_(lower, upper)


class _STECodes(torch.autograd.Function):
    """Codes of x * k with a straight-through gradient: k inside the range, zero where the clamp acted."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, k: torch.Tensor, lower: int, upper: int) -> torch.Tensor:
        scaled = x * k
        inside = (scaled >= lower - 0.5) & (scaled <= upper + 0.5)
        ctx.save_for_backward(inside, k)
        return _round_clamp_(scaled, lower, upper)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        inside, k = ctx.saved_tensors
        return grad * inside * k, None, None, None


def quantize_codes(x: torch.Tensor, bits: int, per_head: bool, probability: bool, ste: bool = False,
                   fused: bool = False, token_mask: torch.Tensor | None = None,
                   token_dim: int = -2) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes, step): integer codes of x (as floats) and the step that scales them back, broadcastable
    against x. `probability`: the unsigned [0, 1] format (per_head and the mask are then moot), else signed
    symmetric with dynamic scales over the real tokens (see dynamic_scale)."""
    lower, upper = (0, unsigned_levels(bits)) if probability else (-signed_levels(bits), signed_levels(bits))
    native_pass = fused and not ste
    if probability:
        scale = torch.ones((), dtype=x.dtype, device=x.device)
    elif native_pass and _token_mask(x, token_mask, token_dim) is None:
        scale = None                                  # max|x| per group, taken by the kernel
    else:
        scale = dynamic_scale(x, per_head, token_mask, token_dim)
    if native_pass:
        out = _native_codes(x, lower, upper, per_head, probability, scale)
        if out is not None:
            return out
        scale = scale if scale is not None else dynamic_scale(x, per_head)
    top = torch.full_like(scale, upper)
    k, step = top.div(scale), scale.div(top)   # tensor / tensor: the kernel's rounding, bit for bit
    if ste:
        return _STECodes.apply(x, k, lower, upper), step
    return _round_clamp_(x.detach() * k, lower, upper), step


def _native_codes(x: torch.Tensor, lower: int, upper: int, per_head: bool, probability: bool,
                  scale: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """quantize_codes' exact mode in one pass of kernels.c, or None where the kernel does not apply.
    scale: the fixed or masked scale (keepdim, as dynamic_scale's), None for max|x| per group."""
    if x.device.type != "cpu" or x.dtype != torch.float32 or x.dim() < 3 or x.numel() == 0 or not native.available():
        return None
    base, transposed = x, False
    if not x.is_contiguous():
        if x.transpose(-1, -2).is_contiguous():      # K^T: a transposed view of a contiguous K
            base, transposed = x.transpose(-1, -2), True
        else:
            base = x.contiguous()
    # groups of one scale (with a fixed scale any grouping is right; heads give the threads work)
    heads = x.dim() >= 4 and (per_head or probability)
    lead = base.shape[:2] if heads else base.shape[:1]
    scales = None if scale is None else scale.expand(*lead, *[1] * (x.dim() - len(lead)))
    codes, step = native.quantize_groups(base, lead.numel(), upper, lower, scales)
    step = step[:1].reshape(()) if probability else step.view(*lead, *[1] * (x.dim() - len(lead)))
    return (codes.transpose(-1, -2) if transposed else codes), step


def quantize_symmetric(x: torch.Tensor, bits: int, per_head: bool, ste: bool = False) -> torch.Tensor:
    """x quantized to signed `bits` with a dynamic scale per sequence (and head): codes * step."""
    codes, step = quantize_codes(x, bits, per_head, probability=False, ste=ste)
    return codes * step


def quantize_probability(p: torch.Tensor, bits: int, ste: bool = False) -> torch.Tensor:
    """P in [0, 1] quantized to unsigned `bits` over the fixed range: round(P U) / U, U = 2**bits - 1."""
    codes, step = quantize_codes(p, bits, per_head=False, probability=True, ste=ste)
    return codes * step


def attention_matmul(a: torch.Tensor, b: torch.Tensor, bits: int, per_head: bool, a_is_probability: bool,
                     ste: bool = False, fused: bool = False, token_mask: torch.Tensor | None = None) -> torch.Tensor:
    """a @ b on the integer unit: both operands to `bits`-bit codes (a unsigned over [0, 1] where it is the
    softmax output P, else signed with dynamic scales), exact integer accumulation, one rescale.

    token_mask (batch, tokens): the model's attention mask; the scales skip padded tokens (rows of Q and
    of V, columns of K^T).
    """
    codes_a, step_a = quantize_codes(a, bits, per_head, a_is_probability, ste, fused, token_mask, -2)
    codes_b, step_b = quantize_codes(b, bits, per_head, False, ste, fused, token_mask,
                                     -2 if a_is_probability else -1)
    return torch.matmul(codes_a, codes_b).mul_(step_a * step_b)


def weight_matmul(x: torch.Tensor, weight: torch.Tensor, bits: int, ste: bool = False) -> torch.Tensor:
    """x @ weight.T on the integer units (a weight block run digitally, compiler/block_options.py): weight codes per
    output channel and input codes per vector (last dimension), signed symmetric in `bits` with scale max|.|,
    integer products summed exactly, the sum rescaled once. `ste`: straight-through (training)."""
    top = signed_levels(bits)
    w_peak = weight.detach().abs().amax(dim=1, keepdim=True)
    w_peak = torch.where(w_peak > 0, w_peak, torch.ones_like(w_peak))
    x_peak = x.detach().abs().amax(dim=-1, keepdim=True)
    x_peak = torch.where(x_peak > 0, x_peak, torch.ones_like(x_peak))
    if ste:
        w_codes = _STECodes.apply(weight, top / w_peak, -top, top)
        x_codes = _STECodes.apply(x, top / x_peak, -top, top)
    else:
        w_codes = _round_clamp_(weight * (top / w_peak), -top, top)
        x_codes = _round_clamp_(x * (top / x_peak), -top, top)
    return (x_codes @ w_codes.T) * (x_peak / top) * (w_peak.T / top)

