"""Range assignment: the DAC input range and ADC output range of every tile segment, from calibration data.

The FP model runs once over the calibration inputs (the exported graph, with a recording call inserted
before each weight block's first layer). Statistics are streamed, so memory stays bounded whatever the
calibration set's size:
- per segment input span (the block input features on its rows): a log-spaced histogram of |x|, from
  which a high percentile gives `dac_range` (not the max: one outlier would waste the 8-bit DAC's levels);
- per segment column: mean and std of the FP partial output y = x[:, rows] @ W_seg.T, from which
  mean + L sigma is the column's expected largest |output|; `adc_range` is the largest of these
  over the segment's columns, in the normalized units of docs/analog_mvm.md. They come from the
  first and second moments of the input span (sum x and the Gram matrix x^T x over a random subset of
  OUTPUT_TOKENS input vectors per block: moments need no more): mean_c = w_c . E[x] and
  var_c = w_c^T Cov(x) w_c. The Gram costs sum(R^2) per vector against R * out_features for the
  outputs themselves (about 3x less for roberta-base), and one matmul per span per batch replaces one
  per segment (the per-op overhead dominated on a busy 2-core CPU);
- per block: a uniform random sample of input vectors (bottom-k of random keys), which
  passes.range_optimization uses to measure a segment's MVM error.

Only real tokens count: where the inputs carry an `attention_mask`, padded positions are left out.

Bad data: no calibration inputs, or NaN/Inf at an analog layer's input -> UserError. A segment whose
inputs (or outputs) were all zero gets a documented fallback, with a warning, never a zero range:
dac_range from the other segments of its block (else the median over the model); adc_range
DEFAULT_ADC_RANGE. If every analog input in the model is zero, that is a UserError.
"""
from __future__ import annotations

import inspect
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch

from compiler import sentences
from compiler.analog.periphery import DEFAULT_ADC_RANGE
from compiler.errors import UserError
from compiler.frontend import normalize_example
from compiler.ir import PlacedGraph, Span, TileSegment
from compiler.progress import bar as progress_bar

INPUT_PERCENTILE = 99.9      # dac_range = this percentile of |x| over the segment's inputs
OUTPUT_SIGMAS = 4.0          # L in "mean + L sigma": a column's expected largest |output|
SAMPLE_TOKENS = 256          # input vectors kept per block for passes.range_optimization
OUTPUT_TOKENS = 2048         # input vectors per block (spread over the batches) for the output moments
BATCH_SIZE = 8               # calibration sequences per forward pass

# |x| histogram from 2^-40 to 2^40: per octave, 32 equal-width bins (3.1 % relative resolution at most).
# A bin is the float32 exponent and the top 5 mantissa bits, read off the bit pattern with integer ops
# (no log2: the histogram of every analog input was the costliest part of calibration); |x| < 2^-40
# counts as zero, |x| >= 2^40 goes to the top bin.
_LOG2_LO, _LOG2_HI, _BINS_PER_OCTAVE = -40, 40, 32
_BINS = (_LOG2_HI - _LOG2_LO) * _BINS_PER_OCTAVE
_MANTISSA_SHIFT = 23 - 5
_FIRST_CODE = (127 + _LOG2_LO) << 5     # (biased exponent, 5 mantissa bits) of 2^-40
_ABS_MASK = 0x7FFFFFFF


def _bin_codes(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(bits of |x| as int32, histogram slot per value): slot 0 zero (|x| < 2^-40), 1.._BINS the bins,
    _BINS + 1 overflow (|x| >= 2^40, Inf and NaN). x: float32."""
    bits = x.contiguous().view(torch.int32) & _ABS_MASK  # sign cleared: int order = order of |x|
    slots = (bits >> _MANTISSA_SHIFT).sub_(_FIRST_CODE - 1).clamp_(0, _BINS + 1)
    return bits, slots


def _abs_value(bits: torch.Tensor) -> float:
    """The float whose |x| bit pattern is `bits` (an int32 scalar tensor)."""
    return float(bits.reshape(1).view(torch.float32))


# --- calibration inputs -----------------------------------------------------------------------------

@dataclass
class CalibrationSet:
    """Model inputs for N calibration samples: tensors whose first dimension is N are split into batches."""
    args: tuple
    kwargs: dict[str, Any]
    size: int
    description: str

    def batches(self, batch_size: int = BATCH_SIZE) -> Iterator[tuple[tuple, dict]]:
        # torch.export specializes size-1 dimensions, so no batch may hold a single sample
        starts = list(range(0, self.size, batch_size))
        if len(starts) > 1 and self.size - starts[-1] == 1:
            starts.pop()
        for i, start in enumerate(starts):
            stop = starts[i + 1] if i + 1 < len(starts) else self.size
            yield (tuple(self._slice(a, start, stop) for a in self.args),
                   {k: self._slice(v, start, stop) for k, v in self.kwargs.items()})

    def _slice(self, value: Any, start: int, stop: int) -> Any:
        if not isinstance(value, torch.Tensor) or value.dim() == 0 or value.shape[0] != self.size:
            return value
        part = value[start:stop]
        return torch.cat([part, part]) if part.shape[0] == 1 else part


def calibration_inputs(placed: PlacedGraph, calibration: int | list[str] | dict | tuple | None,
                       seed: int = 0) -> CalibrationSet | None:
    """Turn compile_model's `calibration=` into model inputs (None or 0: no calibration).

    - int N: N built-in sentences (compiler.sentences.CALIBRATION; past its length, pairs of them joined)
      tokenized with the model's tokenizer; for a model without one, N random samples shaped like the
      example (token ids uniform over the vocabulary, float inputs Gaussian with the example's mean/std);
    - list of texts: tokenized with the model's tokenizer;
    - dict (keyword inputs) or tuple (positional inputs) of tensors whose first dimension is the sample.
    """
    if calibration is None or (isinstance(calibration, int) and not isinstance(calibration, bool)
                               and calibration == 0):
        return None
    if isinstance(calibration, bool):
        raise UserError("calibration must be a number of sequences, a list of texts or a dict of tensors, not a bool")
    if isinstance(calibration, int):
        if calibration < 0:
            raise UserError(f"--calibration must be >= 0 sequences (got {calibration})")
        if placed.model_info.tokenizer is not None:
            return _tokenize(placed, builtin_texts(calibration), f"{calibration} built-in sentences")
        return _synthetic(placed, calibration, seed)
    if isinstance(calibration, (list, tuple)) and calibration and all(isinstance(t, str) for t in calibration):
        if placed.model_info.tokenizer is None:
            raise UserError(f"{placed.model_info.name} has no tokenizer, so calibration texts cannot be used; "
                            f"give a dict of input tensors or a number of random samples")
        return _tokenize(placed, list(calibration), f"{len(calibration)} user texts")
    if isinstance(calibration, (dict, tuple, list)):
        if len(calibration) == 0:
            raise UserError("the calibration set is empty; give at least 2 samples or calibration=None to skip")
        args, kwargs = normalize_example(calibration)
        return _from_tensors(*_like_example(placed, args, kwargs))
    raise UserError(f"calibration must be an int, a list of texts, a dict/tuple of tensors or None, "
                    f"not {type(calibration).__name__}")


def builtin_texts(count: int) -> list[str]:
    """`count` distinct calibration texts: the built-in sentences, then pairs of them joined."""
    base = sentences.CALIBRATION
    texts = list(base[:count])
    n = len(base)
    step = 1
    while len(texts) < count:  # pair i with i + step (mod n): a new pairing each round, never a repeat
        texts.extend(f"{base[i]} {base[(i + step) % n]}" for i in range(min(n, count - len(texts))))
        step += 1
        if step >= n:
            raise UserError(f"--calibration {count}: at most {n * (n - 1) + n} built-in sequences; "
                            f"give your own texts for more")
    return texts


def _example_seq_len(placed: PlacedGraph) -> int | None:
    _, kwargs = normalize_example(placed.example)
    ids = kwargs.get("input_ids")
    return int(ids.shape[-1]) if isinstance(ids, torch.Tensor) and ids.dim() >= 2 else None


def _tokenize(placed: PlacedGraph, texts: list[str], description: str) -> CalibrationSet:
    if not texts:
        raise UserError("the calibration set is empty; give at least one text or calibration=None to skip")
    tokenizer = placed.model_info.tokenizer
    max_len = _example_seq_len(placed) or 128
    # padding to the batch's longest text, not to max_len: padded positions are ignored anyway
    enc = tokenizer(texts, padding="longest", truncation=True, max_length=max_len, return_tensors="pt")
    args, kwargs = _like_example(placed, (), dict(enc))
    return CalibrationSet(args, kwargs, len(texts), description)


def _synthetic(placed: PlacedGraph, count: int, seed: int) -> CalibrationSet:
    """Random samples shaped like the example: for random-weight models and bare modules."""
    generator = torch.Generator().manual_seed(seed)
    vocab = getattr(getattr(placed.model, "config", None), "vocab_size", None)
    args, kwargs = normalize_example(placed.example)

    def like(name: str, value: Any) -> Any:
        if not isinstance(value, torch.Tensor) or value.dim() == 0:
            return value
        shape = (count, *value.shape[1:])
        if name == "attention_mask":
            return torch.ones(shape, dtype=value.dtype)
        if value.is_floating_point():
            std = float(value.float().std()) if value.numel() > 1 else 1.0
            return torch.randn(shape, generator=generator) * std + float(value.float().mean())
        if name == "input_ids" and vocab:
            return torch.randint(min(5, vocab - 1), vocab, shape, generator=generator, dtype=value.dtype)
        lo, hi = int(value.min()), int(value.max())
        return torch.randint(lo, hi + 1, shape, generator=generator, dtype=value.dtype)

    return CalibrationSet(tuple(like("", a) for a in args), {k: like(k, v) for k, v in kwargs.items()}, count,
                          f"{count} random samples shaped like the example")


def _like_example(placed: PlacedGraph, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """User inputs rearranged into the example's calling convention (the exported program expects it)."""
    ex_args, ex_kwargs = normalize_example(placed.example)
    signature = inspect.signature(placed.model.forward)
    try:
        given = signature.bind_partial(*args, **kwargs).arguments
        wanted = list(signature.bind_partial(*ex_args, **ex_kwargs).arguments)
    except TypeError as exc:
        raise UserError(f"the calibration inputs do not fit {type(placed.model).__name__}.forward ({exc})") from None
    values = {}
    for name in wanted:
        if name in given:
            values[name] = given[name]
        elif name == "attention_mask" and "input_ids" in given:  # no mask given: every token is real
            values[name] = torch.ones_like(given["input_ids"])
        elif name == "token_type_ids" and "input_ids" in given:  # single-segment inputs
            values[name] = torch.zeros_like(given["input_ids"])
        else:
            raise UserError(f"the calibration inputs lack {name!r}, which the example inputs have")
    positional = wanted[:len(ex_args)]
    return tuple(values[n] for n in positional), {n: values[n] for n in wanted[len(ex_args):]}


def _from_tensors(args: tuple, kwargs: dict) -> CalibrationSet:
    tensors = [v for v in (*args, *kwargs.values()) if isinstance(v, torch.Tensor) and v.dim() > 0]
    if not tensors:
        raise UserError("the calibration inputs hold no tensors; give tensors whose first dimension is the sample")
    size = tensors[0].shape[0]
    if size == 0:
        raise UserError("the calibration set is empty (0 samples); give at least one sample or calibration=None")
    return CalibrationSet(tuple(args), dict(kwargs), int(size), f"{size} user samples")


# --- streamed statistics ----------------------------------------------------------------------------

@dataclass
class AbsHistogram:
    """Log-spaced histogram of |x|: percentiles to about 2 % with constant memory."""
    counts: torch.Tensor = field(default_factory=lambda: torch.zeros(_BINS, dtype=torch.float64))
    zeros: int = 0
    total: int = 0
    max: float = 0.0

    def add(self, values: torch.Tensor) -> None:
        """Count |x| of finite values."""
        bits, slots = _bin_codes(values.detach().float())
        self.add_counts(torch.bincount(slots.flatten(), minlength=_BINS + 2).double(), _abs_value(bits.max()))

    def add_magnitudes(self, mag: torch.Tensor) -> None:
        """Count |x| values that are already non-negative and finite."""
        self.add(mag)

    def add_counts(self, counts: torch.Tensor, peak: float) -> None:
        """Add slot counts (_bin_codes' slots: zero, the bins, overflow) and the largest |x| they hold."""
        zeros = int(counts[0])
        self.total += int(counts.sum())
        self.zeros += zeros
        self.counts += counts[1:_BINS + 1]
        self.counts[-1] += counts[_BINS + 1]  # finite values >= 2^40: the top bin
        if self.total > self.zeros:
            self.max = max(self.max, peak)

    def percentile(self, percent: float) -> float:
        """The `percent` percentile of |x| (0 where that many values were zero); never above the max."""
        rank = percent / 100.0 * self.total
        if self.total == 0 or rank <= self.zeros:
            return 0.0
        cumulative = torch.cumsum(self.counts, 0) + self.zeros
        index = int(torch.searchsorted(cumulative, torch.tensor([rank], dtype=torch.float64)).clamp(max=_BINS - 1))
        before = float(cumulative[index - 1]) if index > 0 else float(self.zeros)
        inside = float(self.counts[index])
        frac = (rank - before) / inside if inside > 0 else 1.0
        octave, step = divmod(index, _BINS_PER_OCTAVE)  # bins are equal-width within an octave
        value = 2.0 ** (_LOG2_LO + octave) * (1.0 + (step + min(max(frac, 0.0), 1.0)) / _BINS_PER_OCTAVE)
        return min(value, self.max)


@dataclass
class ColumnStats:
    """Per-column running moments of a segment's FP partial outputs (float64 sums)."""
    count: int = 0
    sum: torch.Tensor | None = None
    sum_sq: torch.Tensor | None = None

    def add(self, y: torch.Tensor) -> None:
        self.count += y.shape[0]
        s, s2 = y.sum(0).double(), (y * y).sum(0).double()  # per-batch sums in float32 (a few 100 rows)
        self.sum = s if self.sum is None else self.sum + s
        self.sum_sq = s2 if self.sum_sq is None else self.sum_sq + s2

    @property
    def mean(self) -> torch.Tensor:
        return self.sum / max(self.count, 1)

    @property
    def std(self) -> torch.Tensor:
        return (self.sum_sq / max(self.count, 1) - self.mean ** 2).clamp(min=0).sqrt()

    def expected_max(self, sigmas: float = OUTPUT_SIGMAS) -> torch.Tensor:
        """|mean| + L sigma per column: the largest |output| the column is expected to produce."""
        return (self.mean.abs() + sigmas * self.std).float()


@dataclass
class InputSample:
    """A uniform random sample of a block's input vectors (the rows with the smallest random keys)."""
    capacity: int
    rows: torch.Tensor | None = None
    keys: torch.Tensor | None = None

    def add(self, x: torch.Tensor, generator: torch.Generator) -> None:
        keys = torch.rand(x.shape[0], generator=generator)
        rows = x.detach().float()
        if self.rows is not None:
            rows, keys = torch.cat([self.rows, rows]), torch.cat([self.keys, keys])
        if rows.shape[0] > self.capacity:
            keep = torch.topk(keys, self.capacity, largest=False).indices
            rows, keys = rows[keep], keys[keep]
        self.rows, self.keys = rows.clone(), keys


@dataclass
class SpanMoments:
    """First and second moments of one input span (float64 sums): sum x (R,) and the Gram x^T x (R, R)."""
    count: int = 0
    sum: torch.Tensor | None = None
    gram: torch.Tensor | None = None

    def add(self, x: torch.Tensor) -> None:
        self.count += x.shape[0]
        s, g = x.sum(0).double(), (x.t() @ x).double()  # per-batch sums in float32 (a few 100 rows)
        self.sum = s if self.sum is None else self.sum.add_(s)
        self.gram = g if self.gram is None else self.gram.add_(g)

    def column_stats(self, weight: torch.Tensor) -> ColumnStats:
        """Moments of y = x @ weight.T (weight (C, R)): mean_c = w_c . mu, var_c = w_c^T Cov w_c."""
        n = max(self.count, 1)
        mu = self.sum / n
        cov = (self.gram / n - torch.outer(mu, mu)).float()  # centred before float32: no cancellation
        w = weight.float()
        mean = w.double() @ mu
        var = ((w @ cov) * w).sum(1).double().clamp_(min=0)
        return ColumnStats(self.count, mean * self.count, (var + mean * mean) * self.count)


@dataclass
class BlockStats:
    """Everything calibration learned about one weight block's input and its segments' outputs."""
    block: str
    inputs: dict[Span, AbsHistogram]        # per input span (a segment's block_rows)
    outputs: dict[int, ColumnStats]         # per segment id (filled from `moments` after the pass)
    sample: InputSample
    tokens: int = 0
    moments: dict[Span, SpanMoments] = field(default_factory=dict)  # per input span


@dataclass
class CalibrationStats:
    """The result of assign_ranges: statistics per block, and what fell back to defaults."""
    blocks: dict[str, BlockStats]
    samples: int
    description: str
    input_percentile: float
    output_sigmas: float
    weight_abs_max: dict[int, float] = field(default_factory=dict)  # per segment: max|W_seg|
    fallbacks: list[str] = field(default_factory=list)

    def segment_input(self, segment: TileSegment) -> AbsHistogram:
        return self.blocks[segment.block].inputs[segment.block_rows]

    def segment_output(self, segment: TileSegment) -> ColumnStats:
        return self.blocks[segment.block].outputs[segment.id]

    def segment_sample(self, segment: TileSegment) -> torch.Tensor:
        """Sampled calibration inputs of the segment's rows, (tokens, rows)."""
        rows = self.blocks[segment.block].sample.rows
        return rows[:, segment.block_rows[0]:segment.block_rows[1]]


# --- the pass ---------------------------------------------------------------------------------------

def block_weight(placed: PlacedGraph, block: str) -> torch.Tensor:
    """The block's weight (out_features, in_features): its layers' weights stacked along outputs."""
    layers = [placed.placements[n] for n in placed.blocks[block].layers]
    weights = [placed.weight_of(p).float() for p in layers]
    return weights[0] if len(weights) == 1 else torch.cat(weights, 0)


def segment_weight(placed: PlacedGraph, segment: TileSegment, block_w: torch.Tensor | None = None) -> torch.Tensor:
    """W_seg = W[block_cols, block_rows], shape (columns, rows)."""
    w = block_weight(placed, segment.block) if block_w is None else block_w
    return w[segment.block_cols[0]:segment.block_cols[1], segment.block_rows[0]:segment.block_rows[1]]


def collect_statistics(placed: PlacedGraph, calibration: CalibrationSet, *,
                       sample_tokens: int = SAMPLE_TOKENS, batch_size: int = BATCH_SIZE,
                       input_percentile: float = INPUT_PERCENTILE, output_sigmas: float = OUTPUT_SIGMAS,
                       output_tokens: int = OUTPUT_TOKENS, seed: int = 0) -> CalibrationStats:
    """Run the FP model over `calibration` once and stream the statistics of every analog block."""
    if not placed.segments:
        raise UserError("assign ranges after tile allocation: the placed graph has no tile segments")
    if calibration.size == 0:
        raise UserError("the calibration set is empty; give at least one sample or calibration=None to skip")
    stats = CalibrationStats({}, calibration.size, calibration.description, input_percentile, output_sigmas)
    by_block: dict[str, list[TileSegment]] = {}
    for s in placed.segments:
        by_block.setdefault(s.block, []).append(s)
    for name, segs in by_block.items():
        stats.blocks[name] = BlockStats(name, {s.block_rows: AbsHistogram() for s in segs},
                                        {s.id: ColumnStats() for s in segs}, InputSample(sample_tokens))
    weights = {name: block_weight(placed, name) for name in by_block}
    for s in placed.segments:
        stats.weight_abs_max[s.id] = float(segment_weight(placed, s, weights[s.block]).abs().amax())
    generator = torch.Generator().manual_seed(seed)
    token_mask: list[torch.Tensor | None] = [None]
    layouts = {name: _SpanLayout(sorted(b.inputs), placed.blocks[name].in_features) for name, b in stats.blocks.items()}

    def recorder(block: str):
        entry, layout = stats.blocks[block], layouts[block]

        def record(x: torch.Tensor) -> None:
            rows = _real_tokens(x, token_mask[0]).float()
            layout.add_histograms(rows, entry.inputs, block)  # raises on NaN/Inf
            entry.tokens += rows.shape[0]
            entry.sample.add(rows, generator)
            # output moments from a random subset of the batch's vectors: mean and std per column need
            # a few thousand vectors in all
            if rows.shape[0] > output_rows_per_batch:
                rows = rows[torch.randperm(rows.shape[0], generator=generator)[:output_rows_per_batch]]
            for span in layout.spans:
                entry.moments.setdefault(span, SpanMoments()).add(rows[:, span[0]:span[1]])
        return record

    batches = list(calibration.batches(batch_size))
    output_rows_per_batch = max(64, math.ceil(output_tokens / len(batches)))
    module = _instrumented_module(placed, {name: recorder(name) for name in by_block})
    placed.model.eval()
    with torch.inference_mode():
        for args, kwargs in progress_bar(batches, desc="calibration", unit="batch", leave=False,
                                         enabled=len(batches) >= 2):
            mask = kwargs.get("attention_mask")
            token_mask[0] = mask if isinstance(mask, torch.Tensor) else None
            try:
                module(*args, **kwargs)
            except UserError:
                raise
            except Exception as exc:  # shape guards, dtype errors: the inputs do not fit the exported model
                raise UserError(f"the model cannot run on the calibration inputs ({calibration.description}): "
                                f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from exc
    missing = [name for name, b in stats.blocks.items() if b.tokens == 0]
    if missing:
        raise UserError(f"calibration never reached analog block {missing[0]!r}; the inputs do not exercise the model")
    for name, segs in by_block.items():
        entry = stats.blocks[name]
        for span, moments in entry.moments.items():  # one matmul per span, then sliced per segment
            columns = moments.column_stats(weights[name][:, span[0]:span[1]])
            for s in segs:
                if s.block_rows == span:
                    lo, hi = s.block_cols
                    entry.outputs[s.id] = ColumnStats(columns.count, columns.sum[lo:hi], columns.sum_sq[lo:hi])
    return stats


class _SpanLayout:
    """The input spans of a block, for histogramming all of them with one bincount per batch."""

    def __init__(self, spans: list[Span], in_features: int):
        self.spans = spans
        offset = torch.full((in_features,), -1, dtype=torch.int32)
        for k, (lo, hi) in enumerate(spans):
            offset[lo:hi] = k * (_BINS + 2)
        if bool((offset < 0).any()):
            raise ValueError(f"segment row spans {spans} do not cover the block's {in_features} inputs")
        self.offset = offset

    def add_histograms(self, rows: torch.Tensor, histograms: dict[Span, AbsHistogram], block: str) -> None:
        """Count |x| of rows (vectors, features) into each span's histogram; UserError on NaN/Inf."""
        bits, slots = _bin_codes(rows)
        feature_max = bits.amax(0)
        slots += self.offset
        counts = torch.bincount(slots.flatten(), minlength=len(self.spans) * (_BINS + 2)).double()
        counts = counts.view(len(self.spans), _BINS + 2)
        if bool(counts[:, -1].any()) and not bool(torch.isfinite(rows).all()):
            bad = int((~torch.isfinite(rows)).sum())
            raise UserError(f"calibration produced NaN/Inf at the input of analog block {block!r} "
                            f"({bad} of {rows.numel()} values); check the model and the calibration inputs")
        for k, (lo, hi) in enumerate(self.spans):
            histograms[(lo, hi)].add_counts(counts[k], _abs_value(feature_max[lo:hi].max()))


def _real_tokens(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """x as (vectors, features), without padded positions when an attention mask says which they are."""
    flat = x.detach().reshape(-1, x.shape[-1])
    if mask is not None and mask.numel() == flat.shape[0]:
        keep = mask.reshape(-1) > 0
        if keep.any() and not keep.all():
            return flat[keep]
    return flat


def _instrumented_module(placed: PlacedGraph, recorders: dict) -> torch.nn.Module:
    """The exported program as a module, with recorders[block](x) called before each block's first layer."""
    module = placed.exported.module()
    first_layer = {placed.blocks[b].layers[0]: b for b in recorders}
    for node in list(module.graph.nodes):
        block = first_layer.get(node.name)
        if block is None:
            continue
        x = node.args[0] if str(node.target) == "aten.linear.default" else node.args[1]
        with module.graph.inserting_before(node):
            module.graph.call_function(recorders[block], (x,))
    module.recompile()
    return module


def assign_ranges(placed: PlacedGraph, calibration_inputs: CalibrationSet, *,
                  input_percentile: float = INPUT_PERCENTILE, output_sigmas: float = OUTPUT_SIGMAS,
                  sample_tokens: int = SAMPLE_TOKENS, batch_size: int = BATCH_SIZE, output_tokens: int = OUTPUT_TOKENS,
                  seed: int = 0) -> CalibrationStats:
    """Set every segment's dac_range and adc_range from calibration data (in place); return the statistics.

    dac_range: the `input_percentile` percentile of |x| over the segment's input span.
    adc_range: max over the segment's columns of (|mean| + L std) of the FP output, in normalized units
    (divided by dac_range and by the per-tile weight normalization max|W_seg|, docs/analog_mvm.md).
    The statistics feed passes.range_optimization.
    """
    if not 0 < input_percentile <= 100:
        raise UserError(f"input percentile must be in (0, 100], got {input_percentile}")
    if not (output_sigmas > 0 and math.isfinite(output_sigmas)):
        raise UserError(f"output sigmas L must be positive and finite, got {output_sigmas}")
    stats = collect_statistics(placed, calibration_inputs, sample_tokens=sample_tokens, batch_size=batch_size,
                               input_percentile=input_percentile, output_sigmas=output_sigmas,
                               output_tokens=output_tokens, seed=seed)
    _assign_dac_ranges(placed, stats)
    for segment in placed.segments:
        segment.col_w_max = None
        segment.adc_range = adc_range_for(placed, stats, segment, segment.dac_range)
    return stats


def _assign_dac_ranges(placed: PlacedGraph, stats: CalibrationStats) -> None:
    observed: dict[int, float] = {}
    for s in placed.segments:
        hist = stats.segment_input(s)
        value = hist.percentile(stats.input_percentile)
        if value <= 0 and hist.max > 0:  # mostly-zero inputs (sparse): the percentile of the nonzero ones
            nonzero = AbsHistogram(hist.counts, 0, hist.total - hist.zeros, hist.max)
            value = nonzero.percentile(stats.input_percentile)
        if value > 0 and math.isfinite(value):
            observed[s.id] = value
    if not observed:
        raise UserError(f"every analog layer saw only zero inputs on the calibration set ({stats.description}); "
                        f"give calibration data with nonzero activations")
    model_median = sorted(observed.values())[len(observed) // 2]
    for s in placed.segments:
        if s.id in observed:
            s.dac_range = observed[s.id]
            continue
        same_block = [observed[o.id] for o in placed.block_segments(s.block) if o.id in observed]
        s.dac_range = max(same_block) if same_block else model_median
        _fallback(stats, f"segment {s.id} ({s.block}, inputs {s.block_rows}): all calibration inputs were zero; "
                         f"dac_range {s.dac_range:.4g} taken from {'its block' if same_block else 'the model median'}")


def adc_range_for(placed: PlacedGraph, stats: CalibrationStats, segment: TileSegment, dac_range: float,
                  col_w_max: torch.Tensor | None = None) -> float:
    """The ADC range (normalized units) that holds every column's expected largest output at `dac_range`.

    With `col_w_max` None the columns share the per-tile normalization max|W_seg|.
    """
    expected = stats.segment_output(segment).expected_max(stats.output_sigmas)
    if col_w_max is None:
        w_tile = stats.weight_abs_max[segment.id]
        col_w_max = torch.full_like(expected, w_tile if w_tile > 0 else 1.0)
    value = float((expected / (dac_range * col_w_max)).max())
    if not (value > 0 and math.isfinite(value)):
        _fallback(stats, f"segment {segment.id} ({segment.block}): calibration outputs were all zero; "
                         f"adc_range set to the default {DEFAULT_ADC_RANGE}")
        return DEFAULT_ADC_RANGE
    return value


def _fallback(stats: CalibrationStats, message: str) -> None:
    if message in stats.fallbacks:
        return
    stats.fallbacks.append(message)
    warnings.warn(message, stacklevel=3)
