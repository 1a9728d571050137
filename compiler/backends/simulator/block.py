"""One weight block on its programmed tiles: the analog MVM of docs/analog_mvm.md, batched.

A block (ir.WeightBlock: Q, K and V fused, or one layer) is split by the allocator into segments: row
chunks (block input features, one tile's rows each) times column pieces. Every segment computes
    y_seg = de-normalize(ADC(MVM(DAC(x[rows] / dac_range), g_eff) + output noise))
and the block output is the digital sum over row chunks plus the bias. After programming, everything
about a segment that does not depend on the input is static, so it is folded into one matrix per row
chunk (all columns of the block side by side):
    W_k[c, :] = g_eff[c, :] / L_dac * L_adc / adc_range_c       (the MVM straight into ADC units),
    sigma_k[c] = output_noise * L_adc / adc_range_c             (output noise in ADC units),
    scale_k[c] = adc_range_c / L_adc * w_max_c * drift_compensation * dac_range   (back to weight units),
where L = 2**(bits-1) - 1 (a converter with bits null contributes 1 and neither clips nor rounds). A
forward is then: DAC codes per row chunk (and per distinct dac_range in it), one matmul per row chunk
into a (chunks, tokens, columns) buffer, and one fused pass (native.adc_epilogue on CPU, torch ops
otherwise) for output noise, ADC clamp and rounding, scaling and the digital sum. Without output noise
and ADC the block is linear and runs as plain matmuls on the folded matrix. IR drop, when the spec gives
the bit lines a resistance, is subtracted from the buffer after each row chunk's matmul.

Output noise is drawn per output, per MVM (per token and per segment), fresh on every call; the
weights' read noise is static for the instance (docs/simulator.md).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from compiler.analog import native
from compiler.analog.periphery import DEFAULT_ADC_RANGE, ir_drop_loss, ir_drop_profile, ir_drop_rho, levels
from compiler.analog.programming import program_into, segment_seed, segment_w_max
from compiler.hw_spec import HardwareSpec
from compiler.ir import Span, TileSegment

_MASK64 = (1 << 64) - 1


@dataclass
class DacGroup:
    """The segments of one row chunk that share a DAC range (usually all of them)."""
    dac_range: float | None
    col_spans: list[Span] = field(default_factory=list)

    def contiguous_span(self) -> Span | None:
        spans = sorted(self.col_spans)
        if all(a[1] == b[0] for a, b in zip(spans, spans[1:])):
            return spans[0][0], spans[-1][1]
        return None


@dataclass
class RowChunk:
    rows: Span
    groups: list[DacGroup]


def plan_chunks(block: str, segments: list[TileSegment], in_features: int, out_features: int) -> list[RowChunk]:
    """Group a block's segments by row span and DAC range; check they tile the block exactly once."""
    by_rows: dict[Span, list[TileSegment]] = {}
    for s in segments:
        by_rows.setdefault(tuple(s.block_rows), []).append(s)
    spans = sorted(by_rows)
    if not spans or spans[0][0] != 0 or spans[-1][1] != in_features or any(
            a[1] != b[0] for a, b in zip(spans, spans[1:])):
        raise ValueError(f"block {block}: segment row spans {spans} do not partition its {in_features} inputs")
    dac_kinds = {s.dac_range is None for s in segments}
    if len(dac_kinds) > 1:
        raise ValueError(f"block {block}: some segments have a DAC range and some do not; assign all or none")
    chunks = []
    for rows in spans:
        cols = sorted(tuple(s.block_cols) for s in by_rows[rows])
        if cols[0][0] != 0 or cols[-1][1] != out_features or any(a[1] != b[0] for a, b in zip(cols, cols[1:])):
            raise ValueError(f"block {block}: the segments of rows {rows} do not cover its {out_features} outputs")
        groups: dict[float | None, DacGroup] = {}
        for s in sorted(by_rows[rows], key=lambda s: s.block_cols):
            key = None if s.dac_range is None else float(s.dac_range)
            groups.setdefault(key, DacGroup(key)).col_spans.append(tuple(s.block_cols))
        chunks.append(RowChunk(rows, list(groups.values())))
    return chunks


@dataclass
class LayerWeight:
    """One layer of a block: its weight (out_features, in_features) and first column in the block."""
    offset: int
    weight: torch.Tensor


def segment_weight(layers: list[LayerWeight], cols: Span, rows: Span) -> torch.Tensor:
    """W[block_cols, block_rows] of a block stored as separate layers: a view where one layer holds it."""
    pieces = []
    for layer in layers:
        lo, hi = max(cols[0], layer.offset), min(cols[1], layer.offset + layer.weight.shape[0])
        if lo < hi:
            pieces.append(layer.weight[lo - layer.offset:hi - layer.offset, rows[0]:rows[1]])
    return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=0)


class AnalogBlock(nn.Module):
    """Computes a whole weight block (all its layers' outputs side by side) on its programmed segments.

    Construction programs the segments (programming.program_into, straight into the folded matrices).
    """

    def __init__(self, name: str, in_features: int, out_features: int, layers: list[LayerWeight],
                 bias: torch.Tensor | None, segments: list[TileSegment], hw: HardwareSpec, t_inference: float,
                 seed: int, key: int, device: torch.device, params: torch.Tensor | None = None,
                 native_kernels: bool = False):
        super().__init__()
        self.name, self.in_features, self.out_features = name, in_features, out_features
        self.chunks = plan_chunks(name, segments, in_features, out_features)
        self.dac_levels = levels(hw.dac.bits) if hw.dac.bits is not None else None
        self.adc_levels = levels(hw.adc.bits) if hw.adc.bits is not None else None
        self.output_noise = float(hw.output_noise)
        self.ir_drop_rho = ir_drop_rho(hw.ir_drop_wire_ohm, hw.device.g_max_uS)
        self.tile_rows = hw.tile.rows
        self.linear = self.adc_levels is None and self.output_noise == 0.0 and self.ir_drop_rho == 0.0
        self.per_vector_dac = segments[0].dac_range is None
        self.key, self.seed, self.calls = key, seed & _MASK64, 0
        self.device = device
        self.native = native_kernels
        self.generator = torch.Generator(device=device).manual_seed(segment_seed(seed, key, stream=2))   # output noise
        by_rows: dict[Span, list[TileSegment]] = {}
        for seg in segments:
            by_rows.setdefault(tuple(seg.block_rows), []).append(seg)
        weights, sigma, scale, w_max = [], [], [], []
        self.ir_drop_spans: list[list[tuple[Span, torch.Tensor, torch.Tensor]]] = []  # per chunk: (cols, p_t, to_adc)
        for chunk in self.chunks:
            w, sg, sc, wm = self._program_chunk(chunk, by_rows[chunk.rows], layers, hw, t_inference, seed, params)
            weights.append(w)
            sigma.append(sg)
            scale.append(sc)
            w_max.append(wm)
        self.register_buffer("sigma", torch.stack(sigma) if self.output_noise > 0 else None)
        self.register_buffer("w_max", torch.stack(w_max))    # (chunks, out_features): the programmed normalization
        self.register_buffer("scale", torch.stack(scale))
        self.register_buffer("bias", None if bias is None else bias.to(device=device, dtype=torch.float32))
        # Linear with an ideal DAC: the whole block is one matrix in weight units.
        self.single_matrix = self.linear and self.dac_levels is None
        if self.single_matrix:
            self.register_buffer("full_weight", torch.cat(weights, dim=1) if len(weights) > 1 else weights[0])
        else:
            for i, w in enumerate(weights):
                self.register_buffer(f"weight_{i}", w)

    # --- programming, folded ---------------------------------------------------------------------
    def _program_chunk(self, chunk: RowChunk, segments: list[TileSegment], layers: list[LayerWeight],
                       hw: HardwareSpec, t_inference: float, seed: int, params: torch.Tensor | None):
        rows = chunk.rows[1] - chunk.rows[0]
        weight = torch.empty(self.out_features, rows, dtype=torch.float32, device=self.device)
        sigma = torch.zeros(self.out_features, dtype=torch.float32, device=self.device)
        scale = torch.ones(self.out_features, dtype=torch.float32, device=self.device)
        w_max_all = torch.ones(self.out_features, dtype=torch.float32, device=self.device)
        ir_drop = []
        for seg in segments:
            c0, c1 = seg.block_cols
            w_seg = segment_weight(layers, seg.block_cols, seg.block_rows).to(self.device)
            w_max = segment_w_max(w_seg, seg.col_w_max)
            w_max_all[c0:c1] = w_max
            if self.linear:          # weight units (w_max folded in); DAC codes are dequantized on input
                compensation = program_into(weight[c0:c1], w_seg, w_max, w_max, seg.id, hw, t_inference, seed, params,
                                            self.native)
                if compensation != 1.0:
                    weight[c0:c1] *= compensation
                continue
            adc_range = torch.as_tensor(DEFAULT_ADC_RANGE if seg.adc_range is None else seg.adc_range,
                                        dtype=torch.float32, device=self.device).expand(c1 - c0)
            to_adc = self.adc_levels / adc_range if self.adc_levels is not None else torch.ones_like(adc_range)
            row_mult = (to_adc / self.dac_levels if self.dac_levels is not None else to_adc).contiguous()
            compensation = program_into(weight[c0:c1], w_seg, w_max, row_mult, seg.id, hw, t_inference, seed, params,
                                        self.native)
            sigma[c0:c1] = self.output_noise * to_adc
            dac = 1.0 if seg.dac_range is None else float(seg.dac_range)   # None: per vector, in dvec
            scale[c0:c1] = w_max * compensation / to_adc * dac
            if self.ir_drop_rho > 0:
                profile = ir_drop_profile(self.tile_rows, seg.rows, device=self.device)
                ir_drop.append(((c0, c1), profile, to_adc.contiguous()))
        self.ir_drop_spans.append(ir_drop)
        return weight, sigma, scale, w_max_all

    def weight_chunk(self, i: int) -> torch.Tensor:
        return getattr(self, f"weight_{i}")

    # --- forward ---------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead, dtype = x.shape[:-1], x.dtype
        flat = x.reshape(-1, self.in_features).to(torch.float32)
        if self.single_matrix:
            out = nn.functional.linear(flat, self.full_weight, self.bias)
        elif self.linear:
            out = self._linear(flat)
        else:
            out = self._analog(flat)
        self.calls += 1
        return out.reshape(*lead, self.out_features).to(dtype)

    def _dac_codes(self, x: torch.Tensor, dac_range: float | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """DAC codes of one row chunk's inputs, round(clamp(x / dac_range, -1, 1) L) (x / dac_range for an
        ideal DAC), and the per-vector range where dac_range is None (abs_max noise management)."""
        if self.native:
            return native.dac_codes(x, dac_range, self.dac_levels)
        peak = None
        if dac_range is None:
            peak = x.abs().amax(dim=1, keepdim=True)
            peak = torch.where(peak > 0, peak, torch.ones_like(peak))
        if self.dac_levels is None:
            return (x / peak if peak is not None else x / dac_range), (None if peak is None else peak.squeeze(1))
        codes = x * (self.dac_levels / peak) if peak is not None else x * (self.dac_levels / dac_range)
        return codes.clamp_(-self.dac_levels, self.dac_levels).round_(), (None if peak is None else peak.squeeze(1))

    def _linear(self, x: torch.Tensor) -> torch.Tensor:
        """No output noise, no ADC: the sum of the chunks' matmuls on dequantized DAC codes."""
        out = torch.zeros(x.shape[0], self.out_features, dtype=torch.float32, device=x.device)
        if self.bias is not None:
            out += self.bias
        for i, chunk in enumerate(self.chunks):
            xs = x[:, chunk.rows[0]:chunk.rows[1]]
            weight = self.weight_chunk(i)
            for group in chunk.groups:
                codes, peak = self._dac_codes(xs, group.dac_range)
                deq = codes * ((peak[:, None] if peak is not None else group.dac_range) / self.dac_levels)
                for c0, c1 in _spans(group):
                    out[:, c0:c1].addmm_(deq, weight[c0:c1].T)
        return out

    def _analog(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.shape[0]
        y = torch.empty(len(self.chunks), tokens, self.out_features, dtype=torch.float32, device=x.device)
        dvec = torch.empty(len(self.chunks), tokens, dtype=torch.float32, device=x.device) \
            if self.per_vector_dac else None
        for i, chunk in enumerate(self.chunks):
            xs = x[:, chunk.rows[0]:chunk.rows[1]]
            weight = self.weight_chunk(i)
            for group in chunk.groups:
                codes, peak = self._dac_codes(xs, group.dac_range)
                if dvec is not None:
                    dvec[i] = peak
                for c0, c1 in _spans(group):
                    torch.mm(codes, weight[c0:c1].T, out=y[i, :, c0:c1])
            if self.ir_drop_rho > 0:
                self._subtract_ir_drop(y[i], xs, i)
        if self.native:
            out = native.adc_epilogue(y, self.sigma, self.scale, dvec, self.adc_levels, self.bias,
                                      self.seed, self.key, self.calls)
        else:
            out = self._torch_epilogue(y, dvec)
        return out

    def _subtract_ir_drop(self, y: torch.Tensor, xs: torch.Tensor, i: int) -> None:
        """Subtract the IR drop of row chunk i's segments from y (ADC units). On the folded matrix
        (codes = x_n L_dac, weight = g_eff to_adc / L_dac) periphery.ir_drop_loss comes out multiplied by
        to_adc twice (once in the load, once in the sum): dividing once leaves ADC units."""
        weight = self.weight_chunk(i)
        chunk = self.chunks[i]
        for group in chunk.groups:
            codes, _ = self._dac_codes(xs, group.dac_range)
            for (c0, c1), profile, to_adc in self.ir_drop_spans[i]:
                if not any(a <= c0 and c1 <= b for a, b in group.col_spans):
                    continue
                loss = ir_drop_loss(codes, weight[c0:c1], profile, self.ir_drop_rho, self.tile_rows)
                y[:, c0:c1] -= loss / to_adc

    def _torch_epilogue(self, y: torch.Tensor, dvec: torch.Tensor | None) -> torch.Tensor:
        if self.sigma is not None:
            noise = torch.randn(y.shape, generator=self.generator, device=y.device, dtype=y.dtype)
            y.addcmul_(noise, self.sigma[:, None, :])
        if self.adc_levels is not None:
            y.clamp_(-self.adc_levels, self.adc_levels).round_()
        y.mul_(self.scale[:, None, :])
        if dvec is not None:
            y.mul_(dvec[:, :, None])
        out = y.sum(dim=0)
        if self.bias is not None:
            out += self.bias
        return out


def _spans(group: DacGroup) -> list[Span]:
    span = group.contiguous_span()
    return [span] if span is not None else sorted(group.col_spans)


class ReplicatedBlock(nn.Module):
    """A block programmed k times (replication: other tiles, so other devices); token i runs on copy i mod k,
    as the estimator's schedule streams them."""

    def __init__(self, copies: list[AnalogBlock]):
        super().__init__()
        self.copies = nn.ModuleList(copies)
        self.name, self.in_features, self.out_features = copies[0].name, copies[0].in_features, copies[0].out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        flat = x.reshape(-1, self.in_features)
        k = len(self.copies)
        out = None
        for c, block in enumerate(self.copies):
            part = flat[c::k]
            if part.shape[0] == 0:
                continue
            y = block(part)
            if out is None:
                out = y.new_empty(flat.shape[0], self.out_features)
            out[c::k] = y
        return out.reshape(*lead, self.out_features)
