"""The compiled chip in the training forward pass: hardware-aware (HWA) fine-tuning trains on the tiles the
model will be programmed onto.

`TrainingChip(placed, config)` lowers the placed graph with the simulator's own rewrite
(compiler.backends.simulator.lower_graph): each weight block becomes a `TrainingBlock` over the block's
segments exactly as the allocator placed them (Q, K and V fused, pieces of several layers packed on one
tile), and each integer attention matmul the straight-through quantizer of compiler.analog.integer. The
graph shares the model's parameters, so training it trains the model. Every step, `program()` draws a drift
time and programs a fresh chip instance through the analog core (compiler.analog.programming: the device
model, keyed per segment like the simulator's), so per segment the training forward sees what the
simulator computes (docs/analog_mvm.md):
- the segment's weight normalization w_max (its col_w_max where the range passes set one, else max|W_seg|),
  its DAC range (or the simulator's per-vector range where none was calibrated) and ADC range;
- the programmed conductances at t, entering as a detached additive term on g = W / w_max (straight-
  through: the gradient sees the ideal weights), and the segment's global drift compensation;
- DAC and ADC quantization (straight-through), output noise and IR drop as the spec gives them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import nn

from compiler.analog.periphery import (DEFAULT_ADC_RANGE, adc, add_output_noise, dac, ir_drop_loss,
                                       ir_drop_profile, ir_drop_rho, resolve_dac_range)
from compiler.analog.programming import (device_params, normalized_weights, program_into, segment_w_max,
                                         use_native)
from compiler.analog.integer import weight_matmul
from compiler.backends.simulator.options import AveragedBlock, copy_seed
from compiler.block_options import DIGITAL, analog_hw
from compiler.errors import UserError
from compiler.hw_spec import HardwareSpec
from compiler.ir import PlacedGraph, TileSegment

SECONDS_PER_YEAR = 365.0 * 86400.0


@dataclass(frozen=True)
class HwaNoiseConfig:
    """What the training-time chip injects. Defaults: everything the spec describes."""
    t_min_s: float = 3600.0                 # one drift time per step, drawn among t_points log-spaced ones
    t_max_s: float = SECONDS_PER_YEAR
    t_points: int = 8
    noise_scale: float = 1.0                # multiplies the programmed conductances' deviation from their targets
    weight_noise: bool = True               # program the device model every step (else the ideal conductances)
    output_noise: bool = True
    quantize_io: bool = True                # DAC and ADC quantization (and their clipping)
    int_attention: bool = True              # attention operands at the spec's digital attention bits
    clip_sigmas: float | None = 3.0         # clip each segment's weights to this many std (None: no clipping)

    def __post_init__(self) -> None:
        if not 0 < self.t_min_s <= self.t_max_s:
            raise UserError(f"HWA drift times must satisfy 0 < t_min <= t_max (got {self.t_min_s}, {self.t_max_s})")
        if self.t_points < 1:
            raise UserError(f"HWA t_points must be >= 1, got {self.t_points}")
        if self.noise_scale < 0:
            raise UserError(f"HWA noise_scale must be >= 0, got {self.noise_scale}")
        if self.clip_sigmas is not None and self.clip_sigmas <= 0:
            raise UserError(f"HWA clip_sigmas must be positive or None, got {self.clip_sigmas}")


class DriftClock:
    """The drift time t of one training step, drawn among `points` log-spaced times in [t_min_s, t_max_s]."""

    def __init__(self, t_min_s: float, t_max_s: float, points: int = 8, generator: torch.Generator | None = None):
        count = 1 if t_min_s == t_max_s else points
        self.times = [math.exp(math.log(t_min_s) + i * (math.log(t_max_s) - math.log(t_min_s)) / max(count - 1, 1))
                      for i in range(count)]
        self.generator = generator
        self.t_s = self.times[-1]

    def tick(self) -> float:
        self.t_s = self.times[int(torch.randint(len(self.times), (), generator=self.generator))]
        return self.t_s


@dataclass
class _LayerParam:
    """One analog layer of a block: its live weight parameter and first column in the block."""
    offset: int
    param: nn.Parameter
    transposed: bool              # GPT-2 Conv1D stores (in, out)

    def weight(self) -> torch.Tensor:
        return self.param.t() if self.transposed else self.param

    @property
    def out_features(self) -> int:
        return self.weight().shape[0]


class TrainingBlock(nn.Module):
    """One weight block on its segments, differentiable: the simulator's AnalogBlock for training."""

    def __init__(self, name: str, in_features: int, out_features: int, layers: list[_LayerParam],
                 biases: list[tuple[nn.Parameter | None, int]], segments: list[TileSegment], hw: HardwareSpec,
                 config: HwaNoiseConfig):
        super().__init__()
        self.name, self.in_features, self.out_features = name, in_features, out_features
        self.layers, self.biases, self.hw, self.config = layers, biases, hw, config
        self.segments = sorted(segments, key=lambda s: (s.block_rows, s.block_cols))
        self.rho = ir_drop_rho(hw.ir_drop_wire_ohm, hw.device.g_max_uS)
        self.dac_bits = hw.dac.bits if config.quantize_io else None
        self.adc_bits = hw.adc.bits if config.quantize_io else None
        self.output_noise = hw.output_noise if config.output_noise else 0.0
        # per segment id, set by program(): normalization (C,), conductance offset (C, R), compensation
        self.w_max: dict[int, torch.Tensor] = {}
        self.offset: dict[int, torch.Tensor | None] = {}
        self.compensation: dict[int, float] = {}

    def weight(self) -> torch.Tensor:
        """The block's weight (out_features, in_features), its layers side by side; differentiable."""
        parts = [layer.weight() for layer in self.layers]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)

    def segment_views(self, segment: TileSegment) -> list[torch.Tensor]:
        """Views of the layers' weight data that hold the segment's rectangle (for in-place clipping)."""
        (c0, c1), (r0, r1) = segment.block_cols, segment.block_rows
        views = []
        for layer in self.layers:
            lo, hi = max(c0, layer.offset), min(c1, layer.offset + layer.out_features)
            if lo < hi:
                views.append(layer.weight().data[lo - layer.offset:hi - layer.offset, r0:r1])
        return views

    @torch.no_grad()
    def clip(self, sigmas: float) -> None:
        """Clip each segment's weights to +-sigmas std of that segment (aihwkit's LAYER_GAUSSIAN clipping,
        per tile segment: its noise is relative to its own w_max, so outliers must not set the range)."""
        for segment in self.segments:
            views = self.segment_views(segment)
            values = torch.cat([v.reshape(-1) for v in views])
            bound = float(sigmas * values.std(unbiased=False)) if values.numel() > 1 else float(values.abs().max())
            if bound > 0:
                for view in views:
                    view.clamp_(-bound, bound)

    @torch.no_grad()
    def program(self, t_s: float, seed: int, params: torch.Tensor | None, native_kernels: bool) -> None:
        """One chip instance at t: each segment's normalization, conductance offset and compensation."""
        weight = self.weight().detach()
        for s in self.segments:
            w_seg = weight[s.block_cols[0]:s.block_cols[1], s.block_rows[0]:s.block_rows[1]].float()
            w_max = segment_w_max(w_seg, s.col_w_max)
            self.w_max[s.id] = w_max
            if not (self.config.weight_noise and self.config.noise_scale > 0):
                self.offset[s.id], self.compensation[s.id] = None, 1.0
                continue
            g_t = torch.empty_like(w_seg)
            self.compensation[s.id] = program_into(g_t, w_seg, w_max, torch.ones_like(w_max), s.id, self.hw, t_s,
                                                   seed, params, native_kernels)
            self.offset[s.id] = g_t.sub_(normalized_weights(w_seg, w_max)).mul_(self.config.noise_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        flat = x.reshape(-1, self.in_features)
        weight = self.weight()
        chunks: dict[tuple[int, int], list[tuple[int, torch.Tensor]]] = {}
        for s in self.segments:
            chunks.setdefault(tuple(s.block_rows), []).append((s.block_cols[0], self._segment(flat, weight, s)))
        out = None
        for pieces in chunks.values():   # each row chunk covers every column once: the digital sum over chunks
            part = torch.cat([y for _, y in sorted(pieces, key=lambda p: p[0])], dim=-1)
            out = part if out is None else out + part
        bias = self._bias(out)
        if bias is not None:
            out = out + bias
        return out.reshape(*lead, self.out_features)

    def _segment(self, x: torch.Tensor, weight: torch.Tensor, s: TileSegment) -> torch.Tensor:
        (c0, c1), (r0, r1) = s.block_cols, s.block_rows
        w_max = self.w_max[s.id]
        g = normalized_weights(weight[c0:c1, r0:r1], w_max)
        if self.offset[s.id] is not None:
            g = g + self.offset[s.id]                      # straight-through: a detached additive term
        xs = x[:, r0:r1]
        d_range = resolve_dac_range(xs, s.dac_range)
        x_n = dac(xs, d_range, self.dac_bits, ste=True)
        y_n = x_n @ g.T
        if self.rho > 0:
            profile = ir_drop_profile(self.hw.tile.rows, s.rows, y_n.dtype, y_n.device)
            y_n = y_n - ir_drop_loss(x_n, g, profile, self.rho, self.hw.tile.rows)
        y_n = add_output_noise(y_n, self.output_noise, None)
        adc_range = torch.as_tensor(DEFAULT_ADC_RANGE if s.adc_range is None else s.adc_range,
                                    dtype=y_n.dtype, device=y_n.device)
        y_n = adc(y_n, adc_range, self.adc_bits, ste=True)
        return y_n * d_range * (w_max * self.compensation[s.id])

    def _bias(self, like: torch.Tensor) -> torch.Tensor | None:
        if all(b is None for b, _ in self.biases):
            return None
        return torch.cat([b if b is not None else torch.zeros(n, dtype=like.dtype, device=like.device)
                          for b, n in self.biases])


class DigitalTrainingBlock(TrainingBlock):
    """A block on the integer units (its --accuracy-budget option): compiler.analog.integer.weight_matmul
    straight-through, as the simulator's DigitalBlock computes it exactly; no tiles, nothing to program or clip."""

    def __init__(self, name: str, in_features: int, out_features: int, layers: list[_LayerParam],
                 biases: list[tuple[nn.Parameter | None, int]], hw: HardwareSpec, config: HwaNoiseConfig, bits: int):
        super().__init__(name, in_features, out_features, layers, biases, [], hw, config)
        self.bits = bits

    def clip(self, sigmas: float) -> None:
        pass

    def program(self, t_s: float, seed: int, params: torch.Tensor | None, native_kernels: bool) -> None:
        pass

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        out = weight_matmul(x.reshape(-1, self.in_features), self.weight(), self.bits, ste=True)
        bias = self._bias(out)
        return (out if bias is None else out + bias).reshape(*lead, self.out_features)


class TrainingChip(nn.Module):
    """The placed model with TrainingBlocks and straight-through attention; call it like the model."""

    def __init__(self, placed: PlacedGraph, config: HwaNoiseConfig, generator: torch.Generator | None = None,
                 seed: int = 0):
        super().__init__()
        from compiler.backends.simulator.lowering import lower_graph  # the simulator's own graph rewrite

        placed.refuse_stacked_experts("hardware-aware training")
        self.placed, self.config, self.seed, self.steps = placed, config, seed, 0
        hw = placed.hw
        self.clock = DriftClock(config.t_min_s, config.t_max_s, config.t_points, generator)
        self.blocks: dict[str, TrainingBlock] = {}
        for name, block in placed.blocks.items():
            layers, biases = [], []
            for node in block.layers:
                p = placed.placements[node]
                layers.append(_LayerParam(p.block_col_offset, placed.model.get_parameter(p.weight),
                                          p.weight_transposed))
                biases.append((placed.model.get_parameter(p.bias) if p.bias else None, p.out_features))
            self.blocks[name] = self._block(placed, name, layers, biases, config)
        attention_hw = hw if config.int_attention else _without_attention_quantization(hw)
        self.graph_module = lower_graph(placed, self.blocks, attention_hw, ste=True)

    @staticmethod
    def _block(placed: PlacedGraph, name: str, layers: list, biases: list, config: HwaNoiseConfig) -> nn.Module:
        """The block as its option says (placed.block_options, --accuracy-budget): analog at its ADC bits, k analog
        copies averaged (each programmed as its own chip), or digital."""
        block, option = placed.blocks[name], placed.block_options.get(name)
        if option is not None and option.kind == DIGITAL:
            return DigitalTrainingBlock(name, block.in_features, block.out_features, layers, biases, placed.hw,
                                        config, option.bits)
        hw = placed.hw if option is None else analog_hw(placed.hw, option)
        copies = [TrainingBlock(name, block.in_features, block.out_features, layers, biases,
                                placed.block_segments(name), hw, config) for _ in range(option.copies if option else 1)]
        return copies[0] if len(copies) == 1 else AveragedBlock(copies)

    def _analog_copies(self) -> list[tuple[int, TrainingBlock]]:
        """(copy index, block) of every block and every redundant copy (--accuracy-budget)."""
        return [pair for block in self.blocks.values()
                for pair in (enumerate(block.copies) if isinstance(block, AveragedBlock) else [(0, block)])]

    def clip_weights(self) -> None:
        if self.config.clip_sigmas is not None:
            for _, block in self._analog_copies():
                block.clip(self.config.clip_sigmas)

    def program(self) -> float:
        """A fresh chip instance for the next step: a drift time, then every segment programmed at it."""
        t_s = self.clock.tick()
        copies = self._analog_copies()
        device = copies[0][1].weight().device
        native_kernels = use_native(device)
        params = device_params(self.placed.hw, t_s) if native_kernels else None
        for copy, block in copies:  # a redundant copy: other devices, as the simulator programs it
            block.program(t_s, copy_seed(self.seed * 1_000_003 + self.steps, copy), params, native_kernels)
        self.steps += 1
        return t_s

    def segment_normalization(self) -> dict[int, torch.Tensor]:
        """w_max per segment id as the last program() set it (for checks against the simulator's)."""
        return {sid: w for _, block in self._analog_copies() for sid, w in block.w_max.items()}

    def forward(self, *args, **kwargs):
        return self.graph_module(*args, **kwargs)


def _without_attention_quantization(hw: HardwareSpec) -> HardwareSpec:
    return replace(hw, digital=replace(hw.digital, attention_bits=None))
