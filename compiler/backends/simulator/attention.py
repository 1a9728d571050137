"""INT-n attention (DESIGN.md): both operands of QK^T and AV quantized symmetrically, exact accumulation.

`quantized_matmul` replaces each DIGITAL_INT matmul of the exported graph. Q, K, V and the softmax
output are quantized to round(x / scale * L) / L * scale with L = 2**(bits-1) - 1 and scale = max|x|:
per tensor, or per head (dim 1 of a (batch, heads, tokens, dim) tensor). Each sequence of a batch is its
own inference on the chip, so scales are taken per sequence (dim 0), never across the batch: a
sentence's result does not depend on what else shares its batch. The product of two quantized tensors
is a product of integers times two scales; float32 holds those integer sums exactly for the sizes of
attention (|q k| <= 31 * 31 * head_dim < 2**24), so the accumulation is exact as on INT units.
"""
from __future__ import annotations

import torch

from compiler.analog import native
from compiler.analog.tile import levels


def quantize_symmetric(x: torch.Tensor, bits: int, per_head: bool) -> torch.Tensor:
    """Fake-quantize x to `bits` (symmetric), scale per sequence (and per head when asked and x is 4-D)."""
    if x.dim() >= 4 and per_head:
        dims = tuple(range(2, x.dim()))
    elif x.dim() >= 3:
        dims = tuple(range(1, x.dim()))
    else:
        dims = tuple(range(x.dim()))
    scale = x.abs().amax(dim=dims, keepdim=True)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    steps = float(levels(bits))
    return (x / scale * steps).round_().mul_(scale / steps)


def _quantize(x: torch.Tensor, bits: int, per_head: bool, fused: bool) -> torch.Tensor:
    """quantize_symmetric, in one fused pass (native.quantize_groups) for CPU float32 operands if `fused`."""
    if not fused or x.device.type != "cpu" or x.dtype != torch.float32 or x.dim() < 3:
        return quantize_symmetric(x, bits, per_head)
    base, transposed = x, False
    if not x.is_contiguous():
        if x.transpose(-1, -2).is_contiguous():      # K^T: a transposed view of a contiguous K
            base, transposed = x.transpose(-1, -2), True
        else:
            base = x.contiguous()
    groups = base.shape[0] * base.shape[1] if per_head and x.dim() >= 4 else base.shape[0]
    if groups == 0 or base.numel() == 0:
        return x.clone()
    out = native.quantize_groups(base, groups, levels(bits))
    return out.transpose(-1, -2) if transposed else out


def quantized_matmul(a: torch.Tensor, b: torch.Tensor, bits: int, per_head: bool, fused: bool = False) -> torch.Tensor:
    """a @ b with both operands quantized to `bits` (the DIGITAL_INT units of the chip); `fused`: use
    the native kernel on CPU (same quantizer, one pass)."""
    return torch.matmul(_quantize(a, bits, per_head, fused), _quantize(b, bits, per_head, fused))
