"""A weight block simulated as its option says (compiler/block_options.py): analog at its ADC bits, analog on k
independent tile sets averaged, or digital integer MACs. `staged_block` is the one place the simulator builds a
block; lowering.build_simulator calls it per block."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from compiler.analog.integer import weight_matmul
from compiler.analog.programming import segment_seed
from compiler.block_options import ANALOG, BlockOption, analog_hw
from compiler.hw_spec import HardwareSpec

# stream id that derives a redundant copy's chip seed (0-2 are programming, read noise, output noise)
_COPY_STREAM = 3


def copy_seed(seed: int, copy: int) -> int:
    """The chip seed of redundant copy `copy` (0: the chip's own): other devices, so independent noise."""
    return seed if copy == 0 else segment_seed(seed, copy, _COPY_STREAM)


def staged_block(option: BlockOption, hw: HardwareSpec, seed: int,
                 analog: Callable[[HardwareSpec, int, int], nn.Module],
                 weight: Callable[[], tuple[torch.Tensor, torch.Tensor | None]], device: torch.device) -> nn.Module:
    """The block's module. `analog(hw, seed, copy)`: the block's analog module under that spec and chip seed;
    `weight()`: the block's weight (out, in) and bias, for a digital block."""
    if option.kind == ANALOG:
        tiles_hw = analog_hw(hw, option)
        copies = [analog(tiles_hw, copy_seed(seed, c), c) for c in range(option.copies)]
        return copies[0] if len(copies) == 1 else AveragedBlock(copies)
    w, bias = weight()
    return DigitalBlock(w.to(device), None if bias is None else bias.to(device), option.bits)


class AveragedBlock(nn.Module):
    """k copies of a block on their own tiles, each reading every input; the outputs averaged digitally."""

    def __init__(self, copies: list[nn.Module]):
        super().__init__()
        self.copies = nn.ModuleList(copies)
        self.name, self.in_features, self.out_features = copies[0].name, copies[0].in_features, copies[0].out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.copies[0](x)
        for block in self.copies[1:]:
            out = out + block(x)
        return out / len(self.copies)


class DigitalBlock(nn.Module):
    """The block on the integer units: compiler.analog.integer.weight_matmul (weights per output channel and inputs
    per vector in `bits`, exact accumulation; float32 holds the sums below 2^24: L^2 x in_features, e.g. 31^2 x 1536
    at 6 bits), then the bias."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, bits: int):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.name, self.bits = "digital", bits
        self.register_buffer("weight", weight.detach().to(torch.float32))
        self.register_buffer("bias", None if bias is None else bias.detach().to(torch.float32))

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead, dtype = x.shape[:-1], x.dtype
        out = weight_matmul(x.reshape(-1, self.in_features).to(torch.float32), self.weight, self.bits)
        if self.bias is not None:
            out += self.bias
        return out.reshape(*lead, self.out_features).to(dtype)
