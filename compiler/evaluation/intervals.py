"""Intervals over seeds: the 95 % confidence interval of a mean over programmed chip instances (Student's t,
exact quantile), and that interval kept inside a metric's range (bounded_interval; docs/accuracy.md,
"Intervals inside the metric's range"). numpy and the standard library only: the sweep's paired statistics
(compiler/dse/paired.py) use it without torch."""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

CI_LEVEL = 0.95  # the two-sided confidence level of every interval over seeds (accuracy.json's ci95)


# The range of each metric (lowest, highest; None = unbounded): fractions of examples in [0, 1], cosines and
# correlations in [-1, 1], relative errors and divergences in [0, inf); a metric not named here: unbounded.
_FRACTIONS = ("top1_agreement", "retrieval_agreement", "task_accuracy", "task_f1", "next_token_top1_agreement",
              "gen_prefix_match_fraction")
_CORRELATIONS = ("embedding_cosine_mean", "embedding_cosine_min", "task_matthews_corr", "task_pearson",
                 "task_spearman")
_POSITIVE = ("output_rel_l2", "embedding_rel_l2", "next_token_kl_nats", "gen_prefix_match_tokens")


def metric_range(name: str) -> tuple[float, float | None] | None:
    """(lowest, highest or None) of a metric's values; None for a metric of unknown range."""
    if name in _CORRELATIONS:
        return (-1.0, 1.0)
    if name in _POSITIVE:
        return (0.0, None)
    return (0.0, 1.0) if name in _FRACTIONS else None


def bounded_interval(values: Sequence[float | None], bounds: tuple[float, float | None] | None,
                     examples: int | None = None, level: float = CI_LEVEL) -> tuple[float | None, float | None]:
    """The `level` interval of the mean over seeds inside the metric's range: Student's t over the per-seed
    values on a scale where the range is the whole line, mapped back. [0, 1] (fractions): the empirical logit
    log((k + 1/2) / (n - k + 1/2)) of the k = value * n successes in `examples` = n (Cox's correction keeps 0 and
    1 finite; without n, values are kept 1e-9 inside); [-1, 1] (cosines, correlations): Fisher's z = atanh;
    [0, inf) (relative errors): log (a value at 0 leaves the interval unset); a metric of unknown range
    (`bounds` None): the plain t-interval. The seeds, not the examples, are the independent draws (examples of one
    chip share its noise), which is why this is not a Wilson interval over all the examples. (None, None) with
    fewer than two finite values. The interval is of the mean on the transformed scale, mapped back; with
    a wide spread it can sit off the arithmetic mean (`mean` in accuracy.json)."""
    finite = _finite(values)
    if len(finite) < 2:
        return None, None
    if bounds is None:  # unknown range: the plain t-interval
        mean, half = float(np.mean(finite)), ci_half_width(finite, level)
        return mean - half, mean + half
    lo, hi = bounds
    if hi is None:
        if any(v <= lo for v in finite):
            return None, None
        forward, back = (lambda v: math.log(v - lo)), (lambda z: lo + math.exp(z))
    else:
        width = hi - lo
        if lo == 0.0 and hi == 1.0 and examples:
            forward = lambda v: math.log((min(max(v, 0.0), 1.0) * examples + 0.5) /
                                         ((1 - min(max(v, 0.0), 1.0)) * examples + 0.5))
            back = lambda z: (math.exp(z) * (examples + 0.5) - 0.5) / (examples * (1 + math.exp(z)))
        else:
            eps = 1e-9
            forward = lambda v: math.atanh(min(max(2 * (v - lo) / width - 1, -1 + eps), 1 - eps))
            back = lambda z: lo + width * (math.tanh(z) + 1) / 2
    z = [forward(v) for v in finite]
    half = student_t_quantile((1 + level) / 2, len(z) - 1) * float(np.std(z, ddof=1)) / math.sqrt(len(z))
    mid = float(np.mean(z))
    low, high = back(mid - half), back(mid + half)
    if hi is not None:
        low, high = max(low, lo), min(high, hi)
    return float(max(low, lo)), float(high)


def _finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def finite_mean(values: Sequence[float | None]) -> float | None:
    values = _finite(values)
    return float(np.mean(values)) if values else None


def finite_std(values: Sequence[float | None]) -> float | None:
    """Sample standard deviation over seeds (ddof=1); None with fewer than two finite values."""
    values = _finite(values)
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def ci_half_width(values: Sequence[float | None], level: float = CI_LEVEL) -> float | None:
    """Half-width of the two-sided `level` confidence interval of the mean of `values` (one value per seed,
    i.e. per independently programmed chip): t_{(1+level)/2, n-1} * s / sqrt(n), Student's t because the std
    s is itself estimated from n seeds. None with fewer than two finite values (no spread to estimate)."""
    finite = _finite(values)
    if len(finite) < 2:
        return None
    return student_t_quantile((1 + level) / 2, len(finite) - 1) * float(np.std(finite, ddof=1)) / math.sqrt(len(finite))


def student_t_quantile(p: float, df: int) -> float:
    """The p-quantile (p > 0.5) of Student's t with integer `df` degrees of freedom, exact to float precision:
    bisection on the closed-form CDF for integer df (Abramowitz & Stegun, Handbook of Mathematical Functions,
    26.7.3 and 26.7.4: A(t|df) = P(|T| <= t) as a finite sum in theta = arctan(t / sqrt(df)))."""
    if not 0.5 < p < 1 or df < 1:
        raise ValueError(f"student_t_quantile needs 0.5 < p < 1 and df >= 1, got p={p}, df={df}")
    target = 2 * p - 1  # P(|T| <= t)
    lo, hi = 0.0, 1.0
    while _t_two_sided(hi, df) < target:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if _t_two_sided(mid, df) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-15 * hi:
            break
    return (lo + hi) / 2


def _t_two_sided(t: float, df: int) -> float:
    """A(t|df) = P(|T| <= t) for integer df (Abramowitz & Stegun 26.7.3 odd df, 26.7.4 even df)."""
    theta = math.atan(t / math.sqrt(df))
    c2, s = math.cos(theta) ** 2, math.sin(theta)
    if df % 2:  # 2/pi * (theta + sin cos (1 + 2/3 cos^2 + 2*4/(3*5) cos^4 + ... up to cos^(df-3)))
        if df == 1:
            return 2 * theta / math.pi
        term = total = 1.0
        for k in range(1, (df - 3) // 2 + 1):
            term *= (2 * k) / (2 * k + 1) * c2
            total += term
        return 2 / math.pi * (theta + s * math.cos(theta) * total)
    term = total = 1.0  # even df: sin (1 + 1/2 cos^2 + 1*3/(2*4) cos^4 + ... up to cos^(df-2))
    for k in range(1, (df - 2) // 2 + 1):
        term *= (2 * k - 1) / (2 * k) * c2
        total += term
    return s * total
