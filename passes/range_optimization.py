"""The two post-training (PT) range optimizations of Lammie et al. 2024 (ISCAS, arXiv 2401.09859).

Both run after passes.ranges (they need its CalibrationStats) and only calibrate: no gradient, no
change to the FP weights.

(a) Per-column conductance range (`optimize_column_ranges`). By default a tile maps max|W_seg| to
    g_max for every column, so a column of small weights uses a sliver of the conductance range, where
    PCM noise is largest relative to the signal (programming noise has a floor of 0.26 uS, read noise
    grows as g^-0.65: docs/analog_mvm.md, step 2). Here each column c gets its own w_max_c, chosen from
    the output statistics so that its expected largest output s_c = |mean| + L std lands on the
    segment's ADC range A: w_max_c = s_c / (dac_range * A), with A the range that the column of
    largest s_c needs at the per-tile normalization (so w_max_c = w_tile * s_c / max s). Two bounds:
    never above w_tile (no column uses less conductance than before), and never below the
    (1 - weight_clip_fraction) quantile of the column's |W| (a column whose calibration outputs were
    small must not clip more than that fraction of its weights). The inverse scale is applied
    digitally after the ADC (docs/analog_mvm.md step 6).
    The default clip fraction is 0: w_max_c lies in [max|w_c|, w_tile] and no weight clips. With 1 %
    (the earlier default) all-MiniLM-L6-v2 lost 18 % output rel. L2 on a chip with every non-ideality
    off, since transformer weight outliers multiply outlier input features, and won nothing under
    noise at 1 h (calibration MVM error and fidelity, docs/pt_optimization.md).
(b) Per-segment input (DAC) range (`optimize_input_ranges`). The percentile from passes.ranges is a
    starting point; a 1-D search over candidate ranges around it (an octave grid, then a half and a
    quarter octave around the best) keeps the one that minimizes the segment's MVM error on the sampled
    calibration inputs, measured with the analog core (compiler.analog: the spec's device model, DAC and
    ADC) with the spec's quantization and noise at time `t_inference` (common random
    numbers: every candidate sees the same programmed tile and the same noise draws). The ADC range
    follows the candidate (A scales as 1 / dac_range). Segments of one shape are searched together in
    batched tensor ops.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from compiler.analog.periphery import adc, dac
from compiler.analog.programming import (device_params, program_into, program_segment, program_segments,
                                         use_native)
from compiler.analog.tile import analog_mvm
from compiler.errors import UserError
from compiler.ir import PlacedGraph, TileSegment
from compiler.progress import bar as progress_bar
from passes.ranges import CalibrationStats, adc_range_for, block_weight, segment_weight

WEIGHT_CLIP_FRACTION = 0.0     # at most this fraction of a column's weights may clip under (a)
SEARCH_T_INFERENCE = 3600.0    # the drift time the input-range search optimizes for (1 h, as Table II)
SEARCH_GRID = (0.25, 0.5, 1.0, 2.0, 4.0)  # times the percentile range: octaves from 1/4 to 4
FINE_STEPS = (2.0 ** 0.5, 2.0 ** 0.25)  # then a half and a quarter octave either side of the best so far
SEARCH_BATCH_ELEMENTS = 1 << 24  # candidate x token x row elements per batched search call (64 MB float32)
SEARCH_TOKENS = 128            # sampled calibration inputs the search evaluates per segment
SEARCH_COLUMNS = 128           # columns programmed for the search (a stratified sample): programming the
                               # whole tile would dominate the time, and the DAC range acts on all columns


# --- (a) per-column conductance range -----------------------------------------------------------------

def column_w_max(weight: torch.Tensor, expected_max: torch.Tensor, w_tile: float,
                 weight_clip_fraction: float = WEIGHT_CLIP_FRACTION,
                 floor: torch.Tensor | None = None) -> torch.Tensor:
    """w_max_c for each column (row of `weight`, shape (columns, rows)); always positive and finite.

    `floor`: the columns' clip floor if already computed (_clip_floor of `weight`)."""
    if w_tile <= 0:  # an all-zero segment: any positive normalization maps it to zero conductance
        return torch.ones(weight.shape[0])
    s = expected_max.float().clamp(min=0)
    s_max = float(s.max()) if s.numel() else 0.0
    target = w_tile * s / s_max if s_max > 0 and math.isfinite(s_max) else torch.full_like(s, w_tile)
    if floor is None:
        floor = _clip_floor(weight, weight_clip_fraction)
    w = torch.maximum(target, floor).clamp(max=w_tile)
    # a column of zeros (floor 0) with no output: keep the per-tile value
    return torch.where(w > 0, w, torch.full_like(w, w_tile))


def _clip_floor(weight: torch.Tensor, weight_clip_fraction: float) -> torch.Tensor:
    """Per row of `weight`: the |W| value above which at most `weight_clip_fraction` of the row lies."""
    magnitude = weight.abs().float()
    rank = min(magnitude.shape[1], max(1, math.ceil((1.0 - weight_clip_fraction) * magnitude.shape[1])))
    if rank == magnitude.shape[1]:
        return magnitude.amax(1)
    return torch.kthvalue(magnitude, rank, dim=1).values


def optimize_column_ranges(placed: PlacedGraph, stats: CalibrationStats,
                           weight_clip_fraction: float = WEIGHT_CLIP_FRACTION,
                           segments: list[TileSegment] | None = None) -> PlacedGraph:
    """Set each segment's col_w_max from its output statistics, and its ADC range to match (in place).

    `segments`: only these (default: all).
    """
    if not 0 <= weight_clip_fraction < 1:
        raise UserError(f"weight clip fraction must be in [0, 1), got {weight_clip_fraction}")
    chosen = placed.segments if segments is None else segments
    _require_ranges(chosen)
    for block in {s.block for s in chosen}:
        w_block = block_weight(placed, block)
        floors: dict = {}  # per input span: the floor of every block column, one reduction per span
        for segment in (s for s in chosen if s.block == block):
            rows = segment.block_rows
            if rows not in floors:
                floors[rows] = _clip_floor(w_block[:, rows[0]:rows[1]], weight_clip_fraction)
            floor = floors[rows][segment.block_cols[0]:segment.block_cols[1]]
            expected = stats.segment_output(segment).expected_max(stats.output_sigmas)
            segment.col_w_max = column_w_max(segment_weight(placed, segment, w_block), expected,
                                             stats.weight_abs_max[segment.id], weight_clip_fraction, floor)
            segment.adc_range = adc_range_for(placed, stats, segment, segment.dac_range, segment.col_w_max)
    return placed


def _require_ranges(segments: list[TileSegment]) -> None:
    if any(s.dac_range is None or s.adc_range is None for s in segments):
        raise UserError("range optimization needs the ranges of passes.ranges.assign_ranges first "
                        "(compile with calibration data)")


# --- (b) per-segment input range ----------------------------------------------------------------------

@dataclass
class InputRangeChoice:
    """What the search found for one segment."""
    segment: int
    start: float          # the percentile range from passes.ranges
    chosen: float
    error_start: float    # MVM error (mvm_error) on the search sample at `start`
    error_chosen: float


def mvm_error(y: torch.Tensor, reference: torch.Tensor, column_weights: torch.Tensor | None = None) -> float:
    """The MVM error: the mean over input vectors of ||y - y_ref|| / ||y_ref|| (vectors whose y_ref is 0
    left out). Per vector, not over the whole batch, so that the few tokens with very large activations
    (transformers have them) do not decide the ranges of all the others. `column_weights` makes the
    norms of a column sample stand for all columns."""
    sq_err, sq_ref = (y - reference).pow(2), reference.pow(2)
    if column_weights is not None:
        sq_err, sq_ref = sq_err * column_weights, sq_ref * column_weights
    err, ref = sq_err.sum(-1), sq_ref.sum(-1)
    live = ref > 0
    if not bool(live.any()):
        return float(err.mean().sqrt())
    return float((err[live] / ref[live]).sqrt().mean())


def _column_subset(expected_max: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices, weights) of a stratified column sample: the count/2 columns of largest expected output
    (they dominate a segment's error) with weight 1, and the rest evenly spaced, weighted to stand for
    all the others; all columns with weight 1 when there are at most `count`."""
    total = expected_max.numel()
    if total <= count:
        return torch.arange(total), torch.ones(total)
    top = torch.topk(expected_max, count // 2).indices
    rest = torch.ones(total, dtype=torch.bool)
    rest[top] = False
    others = rest.nonzero().flatten()
    spread = others[torch.linspace(0, others.numel() - 1, count - top.numel()).round().long().unique()]
    weights = torch.cat([torch.ones(top.numel()), torch.full((spread.numel(),), others.numel() / spread.numel())])
    return torch.cat([top, spread]), weights


def segment_mvm_errors(placed: PlacedGraph, segment: TileSegment, inputs: list[torch.Tensor],
                       t_inference: float = SEARCH_T_INFERENCE, seed: int = 0,
                       weight: torch.Tensor | None = None) -> list[float]:
    """The MVM error (see mvm_error) of the segment against x @ W_seg.T, for each x (tokens, rows) in `inputs`.

    One programmed instance (seed) at `t_inference` serves all inputs; the segment's own ranges; the
    spec's quantization and noise (compiler.analog.tile, the reference MVM).
    """
    w = (segment_weight(placed, segment) if weight is None else weight).float()
    generator = torch.Generator().manual_seed(seed)
    programmed = program_segment(w, placed.hw, generator, t_inference, segment.col_w_max)
    return [mvm_error(analog_mvm(x, programmed, segment.dac_range, segment.adc_range, placed.hw, generator),
                            x.float() @ w.t()) for x in inputs]


def segment_mvm_error(placed: PlacedGraph, segment: TileSegment, x: torch.Tensor,
                      t_inference: float = SEARCH_T_INFERENCE, seed: int = 0) -> float:
    """segment_mvm_errors for one input batch."""
    return segment_mvm_errors(placed, segment, [x], t_inference, seed)[0]


@dataclass
class _Prepared:
    """What the search needs of one segment: its column sample, inputs and reference outputs."""
    segment: TileSegment
    weight: torch.Tensor          # (columns, rows) of the column sample
    w_max: torch.Tensor           # (columns,)
    column_weights: torch.Tensor  # (columns,)
    x: torch.Tensor               # (tokens, rows)
    reference: torch.Tensor       # (tokens, columns)
    adc_at_unit_dac: float        # adc_range_for at dac_range 1 (it scales as 1 / dac_range); <= 0: fixed
    adc_fixed: float              # the ADC range where outputs were all zero (the fallback)


def _prepare(placed: PlacedGraph, stats: CalibrationStats, segment: TileSegment, weight: torch.Tensor,
             tokens: int, columns: int) -> _Prepared:
    expected = stats.segment_output(segment).expected_max(stats.output_sigmas)
    picked, column_weights = _column_subset(expected, columns)
    w = weight[picked].float()
    if segment.col_w_max is None:  # the subset keeps the whole segment's per-tile normalization
        w_max = torch.full((len(picked),), stats.weight_abs_max[segment.id] or 1.0)
    else:
        w_max = segment.col_w_max[picked].float()
    x = stats.segment_sample(segment)[:tokens]
    col_w_max = segment.col_w_max if segment.col_w_max is not None else \
        torch.full_like(expected, stats.weight_abs_max[segment.id] or 1.0)
    unit = float((expected / col_w_max).max())
    live = unit > 0 and math.isfinite(unit)
    fixed = adc_range_for(placed, stats, segment, 1.0, segment.col_w_max) if not live else 0.0
    return _Prepared(segment, w, w_max, column_weights, x, x @ w.t(), unit if live else 0.0, fixed)


def _batched_errors(group: list[_Prepared], g_eff: torch.Tensor, scale: torch.Tensor, dac_ranges: torch.Tensor,
                    hw, noise: torch.Tensor | None) -> torch.Tensor:
    """MVM error (mvm_error) of each segment of `group` at each of its candidate DAC ranges, (S, K).

    g_eff (S, C, R), scale (S, C): programmed segments; dac_ranges (S, K); noise (S, T, C) standard normal
    output-noise draws shared by every candidate (common random numbers), or None."""
    x = torch.stack([p.x for p in group])                            # (S, T, R)
    reference = torch.stack([p.reference for p in group])[:, None]  # (S, 1, T, C)
    column_weights = torch.stack([p.column_weights for p in group])[:, None, None]
    unit = torch.tensor([p.adc_at_unit_dac for p in group])[:, None]
    fixed = torch.tensor([p.adc_fixed for p in group])[:, None]
    adc_ranges = torch.where(unit > 0, unit / dac_ranges, fixed)      # (S, K): the ADC range follows the DAC's
    d = dac_ranges[:, :, None, None]
    s_, k_, t_, c_ = len(group), dac_ranges.shape[1], x.shape[1], g_eff.shape[1]
    # one bmm per call: (S, K*T, R) @ (S, R, C); a broadcast matmul would copy g_eff K times
    x_n = dac(x[:, None], d, hw.dac.bits).view(s_, k_ * t_, -1)
    y_n = torch.bmm(x_n, g_eff.transpose(1, 2)).view(s_, k_, t_, c_)  # (S, K, T, C)
    if noise is not None:
        y_n += hw.output_noise * noise[:, None]
    y = adc(y_n, adc_ranges[:, :, None, None], hw.adc.bits) * d * scale[:, None, None]
    err = ((y - reference).pow_(2) * column_weights).sum(-1)          # (S, K, T)
    ref = (reference.pow(2) * column_weights).sum(-1)                 # (S, 1, T)
    live = (ref > 0).expand_as(err)
    rel = torch.where(live, (err / ref.clamp(min=1e-30)).sqrt(), torch.zeros_like(err))
    count = live.sum(-1)
    fallback = err.mean(-1).sqrt()                                    # no live vector: absolute error
    return torch.where(count > 0, rel.sum(-1) / count.clamp(min=1), fallback)


def _search_group(placed: PlacedGraph, group: list[_Prepared], t_inference: float, instances: int,
                  seed: int) -> list[InputRangeChoice]:
    """The search for segments of one shape: all candidates of all segments in a few batched passes."""
    hw = placed.hw
    starts = torch.tensor([p.segment.dac_range for p in group], dtype=torch.float64)
    weights = torch.stack([p.weight for p in group])
    w_max = torch.stack([p.w_max for p in group])
    tokens, columns = group[0].x.shape[0], weights.shape[1]
    tiles = []
    native_kernels = use_native(torch.device("cpu"))
    params = device_params(hw, t_inference) if native_kernels else None
    for k in range(instances):
        generator = torch.Generator().manual_seed(seed + 7919 * k + group[0].segment.id)
        if native_kernels:  # the simulator's fused programming kernel, keyed per segment
            g_eff, ones = torch.empty_like(weights), torch.ones(columns)
            factors = [program_into(g_eff[i], weights[i], w_max[i].contiguous(), ones, p.segment.id, hw, t_inference,
                                    seed + 7919 * k, params, native_kernels=True) for i, p in enumerate(group)]
            scale = w_max * torch.tensor(factors, dtype=torch.float32)[:, None]
        else:
            g_eff, scale = program_segments(weights, w_max, hw, generator, t_inference)
        noise = (torch.randn((len(group), tokens, columns), generator=generator) if hw.output_noise > 0 else None)
        tiles.append((g_eff, scale, noise))

    def errors(factors: torch.Tensor) -> torch.Tensor:  # factors (S, K) times the start
        total = sum(_batched_errors(group, g, sc, (starts[:, None] * factors).float(), hw, n) for g, sc, n in tiles)
        return total / len(tiles)

    # an octave grid over [start / 4, 4 start] (the start included), then a half and a quarter octave
    # either side of the best so far: 9 evaluations, quarter-octave resolution
    tried = torch.tensor(SEARCH_GRID, dtype=torch.float64).expand(len(group), -1)
    found = errors(tried)
    for step in FINE_STEPS:
        best = tried.gather(1, found.argmin(1, keepdim=True))
        fine = torch.cat([best / step, best * step], 1)
        tried, found = torch.cat([tried, fine], 1), torch.cat([found, errors(fine)], 1)
    pick = found.argmin(1)
    start_index = SEARCH_GRID.index(1.0)
    choices = []
    for i, p in enumerate(group):
        factor = float(tried[i, pick[i]])
        p.segment.dac_range = p.segment.dac_range * factor
        p.segment.adc_range = (p.adc_at_unit_dac / p.segment.dac_range if p.adc_at_unit_dac > 0 else p.adc_fixed)
        choices.append(InputRangeChoice(p.segment.id, float(starts[i]), p.segment.dac_range,
                                        float(found[i, start_index]), float(found[i, pick[i]])))
    return choices


def optimize_input_ranges(placed: PlacedGraph, stats: CalibrationStats, t_inference: float = SEARCH_T_INFERENCE,
                          tokens: int = SEARCH_TOKENS, columns: int = SEARCH_COLUMNS, instances: int = 1,
                          seed: int = 10_000, progress: bool = True,
                          segments: list[TileSegment] | None = None) -> list[InputRangeChoice]:
    """Refine each segment's dac_range (and its ADC range with it) to minimize its MVM error (in place).

    The error is averaged over `instances` programmed tiles (seeds from `seed`, disjoint from the
    simulator's usual seeds 0, 1, ...) on up to `tokens` sampled calibration inputs and a stratified
    sample of up to `columns` columns of the segment. `segments`: only these (default: all).
    Segments of one shape (sampled columns x rows x tokens) are searched together, SEARCH_BATCH_ELEMENTS
    at a time: one programming call and one batched MVM per candidate set instead of one per segment
    and candidate (on a busy 2-core CPU the per-op overhead, not the arithmetic, dominated).
    Returns the choices, in segment order.
    """
    if min(tokens, columns, instances) < 1:
        raise UserError(f"input-range search needs tokens, columns and instances >= 1 "
                        f"(got {tokens}, {columns}, {instances})")
    chosen = placed.segments if segments is None else segments
    _require_ranges(chosen)
    groups: dict[tuple[int, int, int], list[_Prepared]] = {}
    for block in sorted({s.block for s in chosen}, key=lambda b: min(s.id for s in chosen if s.block == b)):
        w_block = block_weight(placed, block)
        for segment in (s for s in chosen if s.block == block):
            prepared = _prepare(placed, stats, segment, segment_weight(placed, segment, w_block), tokens, columns)
            groups.setdefault((*prepared.weight.shape, prepared.x.shape[0]), []).append(prepared)
    choices = []
    bar = progress_bar(total=len(chosen), desc="input-range search", unit="segment", leave=False,
                       enabled=progress and len(chosen) >= 8)
    with torch.inference_mode():
        for (cols, rows, toks), members in groups.items():
            per_call = max(1, SEARCH_BATCH_ELEMENTS // (len(SEARCH_GRID) * toks * max(rows, cols)))
            for i in range(0, len(members), per_call):
                part = members[i:i + per_call]
                choices.extend(_search_group(placed, part, t_inference, instances, seed))
                bar.update(len(part))
    bar.close()
    return sorted(choices, key=lambda c: c.segment)


# --- the stage compile_model runs -------------------------------------------------------------------

def calibrate_ranges(placed: PlacedGraph, calibration, column_range: bool = True, input_range: bool = True,
                     t_inference: float = SEARCH_T_INFERENCE, progress: bool = True) -> CalibrationStats | None:
    """passes.ranges, then the PT optimizations that are on; nothing when `calibration` is None or 0.

    `calibration`: see passes.ranges.calibration_inputs (an int N, a list of texts, tensors, or None).
    """
    from passes.ranges import assign_ranges, calibration_inputs

    inputs = calibration_inputs(placed, calibration)
    if inputs is None:
        return None
    placed.refuse_stacked_experts("calibration")
    stats = assign_ranges(placed, inputs)
    # kept so that a PT-off variant (the report's comparison) needs no second calibration
    placed.ranges_before_pt = placed.segment_ranges() if column_range or input_range else None
    if column_range:
        optimize_column_ranges(placed, stats)
    if input_range:
        optimize_input_ranges(placed, stats, t_inference=t_inference, progress=progress)
    return stats
