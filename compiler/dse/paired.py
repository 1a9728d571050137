"""Paired statistics of a sweep: each point's accuracy against a reference point, seed by seed.

Every simulated point programs its chip instances from the same seeds (0..N-1; a chip depends on its seed
alone, and each segment's noise is drawn from (seed, segment id)), so two points of the same tiling program
the same devices with the same noise and differ only by what the axis changed. The difference of two points
is then measured per seed, d_s = metric(point, seed s) - metric(reference, seed s), and its 95 % interval is
Student's t over those differences: mean(d) +- t_{0.975, n-1} s_d / sqrt(n). The noise the two points share
cancels, so the interval is much narrower than the two points' own intervals combined. Where the tilings
differ (another tile size), the segments differ, the noise is not shared and the pairing gains little; the
interval is still valid (the seeds are independent draws either way).

A difference is resolved when its interval excludes 0. The Pareto front counts a point as dominated only when
another point costs no more energy and is resolved better (docs/sweep.md).
"""
from __future__ import annotations

import math
from typing import Any

from compiler.evaluation.intervals import CI_LEVEL, student_t_quantile


def paired_difference(values: dict[int, float | None], reference: dict[int, float | None],
                      level: float = CI_LEVEL) -> dict[str, Any] | None:
    """mean, half-width, low, high and n of (values - reference) over the seeds both have a finite value for;
    resolved: the interval excludes 0. None when no seed is shared."""
    seeds = sorted(s for s in values if s in reference and _finite(values[s]) and _finite(reference[s]))
    if not seeds:
        return None
    diffs = [values[s] - reference[s] for s in seeds]
    n = len(diffs)
    mean = math.fsum(diffs) / n
    if n < 2:
        return {"n": n, "mean": mean, "ci95": None, "low": None, "high": None, "resolved": False}
    std = math.sqrt(math.fsum((d - mean) ** 2 for d in diffs) / (n - 1))
    half = student_t_quantile((1 + level) / 2, n - 1) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "ci95": half, "low": mean - half, "high": mean + half,
            "resolved": bool(mean - half > 0 or mean + half < 0)}


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def seed_values(row: dict) -> dict[int, float | None] | None:
    """Seed -> the headline metric at the longest drift time of a sweep.json row, or None."""
    entries = [a for a in row.get("accuracy") or [] if a.get("per_seed")]
    if not entries or not row.get("seeds"):
        return None
    last = max(entries, key=lambda a: a["seconds"])
    return dict(zip(row["seeds"], last["per_seed"]))


def pick_reference(rows: list[dict], reference: dict[str, str] | None) -> int | None:
    """Index of the reference row: the first whose values match every `reference` item (KEY -> value as
    written), else the grid's first point that did not fail; None when no row qualifies."""
    usable = [i for i, r in enumerate(rows) if r.get("status") != "failed"]
    if not reference:
        return usable[0] if usable else None
    for i, row in enumerate(rows):
        labels = row.get("labels") or [row["values"]]
        if any(all(label.get(k) == v for k, v in reference.items()) for label in labels):
            return i
    return None


def _ratio(value: float | None, base: float | None) -> float | None:
    return value / base if value is not None and base else None


def versus_reference(rows: list[dict], index: int | None) -> list[dict]:
    """The rows with `versus`: the accuracy difference to the reference row (paired over seeds) and the
    energy, latency and area ratios to it; None for the reference itself and failed points."""
    if index is None:
        return [{**row, "versus": None} for row in rows]
    ref = rows[index]
    ref_seeds = seed_values(ref)
    out = []
    for i, row in enumerate(rows):
        if i == index or row.get("status") == "failed":
            out.append({**row, "versus": None})
            continue
        seeds = seed_values(row)
        diff = paired_difference(seeds, ref_seeds) if seeds and ref_seeds and row.get("metric") == ref.get("metric") \
            else None
        out.append({**row, "versus": {
            "accuracy": diff,
            "energy_ratio": _ratio(row.get("energy_J"), ref.get("energy_J")),
            "latency_ratio": _ratio(row.get("latency_s"), ref.get("latency_s")),
            "area_ratio": _ratio(row.get("area_mm2"), ref.get("area_mm2"))}})
    return out


def resolved_better(row: dict, other: dict, higher_is_better: bool) -> bool:
    """Whether `row`'s accuracy is resolved better than `other`'s (paired over their shared seeds)."""
    a, b = seed_values(row), seed_values(other)
    if not a or not b:
        return False
    diff = paired_difference(a, b)
    if diff is None or not diff["resolved"]:
        return False
    return diff["mean"] > 0 if higher_is_better else diff["mean"] < 0


def better_than(rows: list[dict], usable: list[int]) -> dict[int, list[int]]:
    """i -> the rows among `usable` (indices of rows with per-seed accuracy) that row i is resolved better than."""
    return {i: [j for j in usable if j != i and rows[i].get("metric") == rows[j].get("metric")
                and resolved_better(rows[i], rows[j], rows[i].get("higher_is_better", True))] for i in usable}


def resolved_front(costs: dict[int, float], better: dict[int, list[int]]) -> set[int]:
    """The points (index -> cost, e.g. energy) that no other point dominates with a resolved difference: no
    other point costs as much or less and is resolved better (`better`: better_than's answer)."""
    return {i for i in costs if not any(j != i and costs[j] <= costs[i] and i in better.get(j, ())
                                        for j in costs)}


def summary_lines(rows: list[dict], index: int | None, axes: list[str]) -> list[str]:
    """What the sweep says, in a few lines: the reference, then the points resolved better, resolved worse and
    not resolved on the headline metric, each with its difference and its energy (and area) against the
    reference."""
    if index is None:
        return []
    ref = rows[index]
    name = lambda row: (", ".join(f"{k}={v}" for k, v in row["values"].items() if k in axes) or row["name"]) + \
        "".join(f" ({k}={v})" for k, v in (row.get("derived") or {}).items())
    metric = ref.get("metric")
    lines = []
    last = max((a for a in ref.get("accuracy") or [] if a.get("mean") is not None), key=lambda a: a["seconds"],
               default=None)
    head = f"reference: {name(ref)}"
    if metric and last:
        head += f" ({metric} {last['mean']:.4f} at t={last['label']}"
        head += f", {len(ref.get('seeds') or [])} seeds)" if ref.get("seeds") else ")"
    lines.append(head)
    groups: dict[str, list[str]] = {"resolved better": [], "resolved worse": [], "not resolved": []}
    costs_only = []
    for row in rows:
        versus = row.get("versus")
        if versus is None:
            continue
        cost = _cost_words(versus)
        diff = versus.get("accuracy")
        if diff is None or diff.get("ci95") is None:
            costs_only.append(f"{name(row)}: {cost}" + (" (one seed: no interval)" if diff else ""))
            continue
        higher = row.get("higher_is_better", True)
        text = f"{name(row)}: {diff['mean']:+.4f} [{diff['low']:+.4f}, {diff['high']:+.4f}]" + \
            (f", {cost}" if cost else "")
        if not diff["resolved"]:
            groups["not resolved"].append(text)
        else:
            groups["resolved better" if (diff["mean"] > 0) == higher else "resolved worse"].append(text)
    words = {"resolved better": "resolved better than the reference", "resolved worse":
             "resolved worse than the reference", "not resolved": "not resolved from the reference"}
    for label, items in groups.items():
        if items:
            lines.append(f"{words[label]} on {metric} (difference, paired 95 % interval over seeds): "
                         + _listed(items))
    if costs_only:
        lines.append("against the reference: " + _listed(costs_only))
    return lines


SUMMARY_ITEMS = 8  # points named per summary line; the table below (sweep.html, sweep.csv) has every one


def _listed(items: list[str]) -> str:
    shown = "; ".join(items[:SUMMARY_ITEMS])
    return shown + (f"; and {len(items) - SUMMARY_ITEMS} more (the table)" if len(items) > SUMMARY_ITEMS else "")


def _cost_words(versus: dict) -> str:
    parts = []
    for key, word in (("energy_ratio", "energy"), ("area_ratio", "area")):
        ratio = versus.get(key)
        if ratio is not None:
            change = (ratio - 1) * 100
            parts.append(f"{word} {'+' if change >= 0 else '-'}{abs(change):.0f} %" if abs(change) >= 0.5
                         else f"{word} same")
    return ", ".join(parts)
