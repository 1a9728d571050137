"""The reference analog MVM of one programmed segment, exactly as docs/analog_mvm.md specifies it.

The range passes call it to measure a segment's MVM error; the simulator computes the same thing batched
over the segments of a weight block (compiler/backends/simulator/block.py), and tests check the two agree.

    gen = torch.Generator().manual_seed(0)
    seg = program_segment(w_seg, hw, gen, t_inference=3600.0)                      # one programmed instance
    y = analog_mvm(x, seg, dac_range=3.0, adc_range=10.0, hw=hw, generator=gen)    # x (..., R) -> y (..., C)

`y` is in weight units (de-normalized, drift compensated), without bias: for a segment of a block that
splits its inputs, the block's output is the sum of its segments' outputs plus the bias.
"""
from __future__ import annotations

import torch

from compiler.analog.periphery import (RangeLike, adc, add_output_noise, dac, ir_drop_loss, ir_drop_profile,
                                       ir_drop_rho, resolve_adc_range, resolve_dac_range)
from compiler.analog.programming import ProgrammedSegment
from compiler.hw_spec import HardwareSpec


def analog_mvm(x: torch.Tensor, segment: ProgrammedSegment, dac_range: RangeLike, adc_range: RangeLike,
               hw: HardwareSpec, generator: torch.Generator | None = None,
               tile_rows: tuple[int, int] | None = None) -> torch.Tensor:
    """One MVM per input vector through a programmed segment (steps 1-6, without bias).

    x: (..., R) inputs of the segment's rows; dac_range: float (the segment's), None (abs_max per input
    vector) or a tensor broadcastable to x[..., :1]; adc_range: float, (C,) tensor or None (the default);
    generator: draws the output noise (per output per MVM); tile_rows: the tile rows [start, stop) the
    segment occupies, for IR drop (default: the first R rows). Returns (..., C) in weight units.
    """
    x = x.to(segment.g_eff.dtype)
    d_range = resolve_dac_range(x, dac_range)
    x_n = dac(x, d_range, hw.dac.bits)
    y_n = x_n @ segment.g_eff.T
    rho = ir_drop_rho(hw.ir_drop_wire_ohm, hw.device.g_max_uS)
    if rho > 0:
        rows = tile_rows or (0, x.shape[-1])
        profile = ir_drop_profile(hw.tile.rows, rows, x_n.dtype, x_n.device)
        y_n = y_n - ir_drop_loss(x_n, segment.g_eff, profile, rho, hw.tile.rows)
    y_n = add_output_noise(y_n, hw.output_noise, generator)
    y_n = adc(y_n, resolve_adc_range(adc_range, y_n), hw.adc.bits)
    return y_n * d_range * segment.output_scale
