"""The two post-training (PT) range optimizations of Lammie et al. 2024 (ISCAS, arXiv 2401.09859).

Both run after passes.ranges (they need its CalibrationStats) and only calibrate: no gradient, no
change to the FP weights.

(a) Per-column conductance range (`optimize_column_ranges`). By default a tile maps max|W_seg| to
    g_max for every column, so a column of small weights uses a sliver of the conductance range, where
    PCM noise is largest relative to the signal (programming noise has a floor of 0.26 uS, read noise
    grows as g^-0.65: DESIGN.md "Device physics"). Here each column c gets its own w_max_c, chosen from
    the output statistics so that its expected largest output s_c = |mean| + L std lands on the
    segment's ADC range A: w_max_c = s_c / (dac_range * A), with A the range that the column of
    largest s_c needs at the per-tile normalization (so w_max_c = w_tile * s_c / max s). Two bounds:
    never above w_tile (no column uses less conductance than before), and never below the
    (1 - weight_clip_fraction) quantile of the column's |W| (a column whose calibration outputs were
    small must not clip more than that fraction of its weights). The inverse scale is applied
    digitally after the ADC (docs/analog_mvm.md step 6).
(b) Per-segment input (DAC) range (`optimize_input_ranges`). The percentile from passes.ranges is a
    starting point; a 1-D search over candidate ranges around it (a geometric grid, then a finer step
    around the best) keeps the one that minimizes the segment's MVM error on the sampled calibration
    inputs, measured through the simulator's tile model with the spec's quantization and noise at
    time `t_inference` (common random numbers: every candidate sees the same programmed tile and the
    same noise draws). The ADC range follows the candidate (A scales as 1 / dac_range).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tqdm import tqdm

from compiler.errors import UserError
from compiler.ir import PlacedGraph, TileSegment
from passes.ranges import CalibrationStats, adc_range_for, block_weight, segment_weight

WEIGHT_CLIP_FRACTION = 0.01    # at most this fraction of a column's weights may clip under (a)
SEARCH_T_INFERENCE = 3600.0    # the drift time the input-range search optimizes for (1 h, as Table II)
COARSE_FACTORS = tuple(2.0 ** k for k in (-2, -1, 0, 1, 2))  # times the percentile range
FINE_STEP = math.sqrt(2.0)     # then one step either side of the best coarse factor
SEARCH_TOKENS = 128            # sampled calibration inputs the search evaluates per segment
SEARCH_COLUMNS = 128           # columns programmed for the search (a stratified sample): programming the
                               # whole tile would dominate the time, and the DAC range acts on all columns


# --- (a) per-column conductance range -----------------------------------------------------------------

def column_w_max(weight: torch.Tensor, expected_max: torch.Tensor, w_tile: float,
                 weight_clip_fraction: float = WEIGHT_CLIP_FRACTION) -> torch.Tensor:
    """w_max_c for each column (row of `weight`, shape (columns, rows)); always positive and finite."""
    magnitude = weight.abs().float()
    if w_tile <= 0:  # an all-zero segment: any positive normalization maps it to zero conductance
        return torch.ones(weight.shape[0])
    s = expected_max.float().clamp(min=0)
    s_max = float(s.max()) if s.numel() else 0.0
    target = w_tile * s / s_max if s_max > 0 and math.isfinite(s_max) else torch.full_like(s, w_tile)
    rank = min(magnitude.shape[1], max(1, math.ceil((1.0 - weight_clip_fraction) * magnitude.shape[1])))
    floor = torch.kthvalue(magnitude, rank, dim=1).values  # at most the clip fraction of |W| lies above it
    w = torch.maximum(target, floor).clamp(max=w_tile)
    # a column of zeros (floor 0) with no output: keep the per-tile value
    return torch.where(w > 0, w, torch.full_like(w, w_tile))


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
        for segment in (s for s in chosen if s.block == block):
            w_seg = segment_weight(placed, segment, w_block)
            expected = stats.segment_output(segment).expected_max(stats.output_sigmas)
            segment.col_w_max = column_w_max(w_seg, expected, stats.weight_abs_max[segment.id], weight_clip_fraction)
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
    spec's quantization and noise (compiler.backends.simulator.tile, the docs/analog_mvm.md reference).
    """
    from compiler.backends.simulator.tile import analog_mvm, program_segment

    w = (segment_weight(placed, segment) if weight is None else weight).float()
    generator = torch.Generator().manual_seed(seed)
    programmed = program_segment(w, placed.hw, generator, t_inference, segment.col_w_max)
    return [mvm_error(analog_mvm(x, programmed, segment.dac_range, segment.adc_range, placed.hw, generator),
                            x.float() @ w.t()) for x in inputs]


def segment_mvm_error(placed: PlacedGraph, segment: TileSegment, x: torch.Tensor,
                      t_inference: float = SEARCH_T_INFERENCE, seed: int = 0) -> float:
    """segment_mvm_errors for one input batch."""
    return segment_mvm_errors(placed, segment, [x], t_inference, seed)[0]


class _SegmentSearch:
    """The 1-D search of one segment's DAC range (common random numbers across candidates)."""

    def __init__(self, placed: PlacedGraph, stats: CalibrationStats, segment: TileSegment, weight: torch.Tensor,
                 t_inference: float, tokens: int, columns: int, instances: int, seed: int):
        from compiler.backends.simulator.tile import program_segment

        self.placed, self.stats, self.segment, self.seed = placed, stats, segment, seed
        expected = stats.segment_output(segment).expected_max(stats.output_sigmas)
        picked, self.column_weights = _column_subset(expected, columns)
        w = weight[picked]
        if segment.col_w_max is None:  # the subset keeps the whole segment's per-tile normalization
            col_w_max = torch.full((len(picked),), stats.weight_abs_max[segment.id] or 1.0)
        else:
            col_w_max = segment.col_w_max[picked]
        self.x = stats.segment_sample(segment)[:tokens]
        self.reference = self.x @ w.t()
        self.tiles = [program_segment(w, placed.hw, torch.Generator().manual_seed(seed + k), t_inference, col_w_max)
                      for k in range(instances)]

    def error(self, dac_range: float) -> float:
        from compiler.backends.simulator.tile import analog_mvm

        adc_range = adc_range_for(self.placed, self.stats, self.segment, dac_range, self.segment.col_w_max)
        total = 0.0
        for k, tile in enumerate(self.tiles):  # the same output-noise draws for every candidate
            generator = torch.Generator().manual_seed(self.seed + 1_000 + k)
            y = analog_mvm(self.x, tile, dac_range, adc_range, self.placed.hw, generator)
            total += mvm_error(y, self.reference, self.column_weights)
        return total / len(self.tiles)

    def run(self) -> InputRangeChoice:
        """Coarse geometric grid around the start, then one finer step either side of the best; apply it."""
        start = self.segment.dac_range
        tried = {1.0: self.error(start)}
        for factor in COARSE_FACTORS:
            tried.setdefault(factor, self.error(start * factor))
        best = min(tried, key=tried.get)
        for factor in (best / FINE_STEP, best * FINE_STEP):
            tried.setdefault(factor, self.error(start * factor))
        best = min(tried, key=tried.get)
        self.segment.dac_range = start * best
        self.segment.adc_range = adc_range_for(self.placed, self.stats, self.segment, self.segment.dac_range,
                                               self.segment.col_w_max)
        return InputRangeChoice(self.segment.id, start, self.segment.dac_range, tried[1.0], tried[best])


def optimize_input_ranges(placed: PlacedGraph, stats: CalibrationStats, t_inference: float = SEARCH_T_INFERENCE,
                          tokens: int = SEARCH_TOKENS, columns: int = SEARCH_COLUMNS, instances: int = 1,
                          seed: int = 10_000, progress: bool = True,
                          segments: list[TileSegment] | None = None) -> list[InputRangeChoice]:
    """Refine each segment's dac_range (and its ADC range with it) to minimize its MVM error (in place).

    The error is averaged over `instances` programmed tiles (seeds `seed + k`, disjoint from the
    simulator's usual seeds 0, 1, ...) on up to `tokens` sampled calibration inputs and a stratified
    sample of up to `columns` columns of the segment. `segments`: only these (default: all).
    Returns the choices.
    """
    if min(tokens, columns, instances) < 1:
        raise UserError(f"input-range search needs tokens, columns and instances >= 1 "
                        f"(got {tokens}, {columns}, {instances})")
    chosen = placed.segments if segments is None else segments
    _require_ranges(chosen)
    choices = []
    blocks = sorted({s.block for s in chosen}, key=lambda b: min(s.id for s in chosen if s.block == b))
    bar = tqdm(total=len(chosen), desc="input-range search", unit="segment", leave=False,
               disable=not progress or len(chosen) < 8)
    for block in blocks:
        w_block = block_weight(placed, block)
        for segment in (s for s in chosen if s.block == block):
            search = _SegmentSearch(placed, stats, segment, segment_weight(placed, segment, w_block),
                                    t_inference, tokens, columns, instances, seed)
            choices.append(search.run())
            bar.update()
    bar.close()
    return choices


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
    stats = assign_ranges(placed, inputs)
    if column_range:
        optimize_column_ranges(placed, stats)
    if input_range:
        optimize_input_ranges(placed, stats, t_inference=t_inference, progress=progress)
    return stats
