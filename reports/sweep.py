"""sweep.csv and sweep.html from sweep.json alone (no torch, nothing of `compiler`). The figures and the Pareto
front in sweep.json are the compiler's (compiler/dse/summary.py); the charts draw a front per metric panel
with `pareto_front` (the same rule: lower energy and better accuracy, one of them strictly).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import urllib.parse
from pathlib import Path
from typing import Any

from reports.fmt import csv_row
from reports.schema import SchemaError, SweepJson, SweepRun, final_accuracy, pareto_front

# figures of a point in sweep.csv, in this order: (field of SweepRun, CSV column, unit)
FIGURES = (("model", "model", ""), ("tiles", "tiles", ""), ("chips", "chips", ""),
           ("energy_J", "energy_per_inference_J", "J"), ("latency_s", "latency_s", "s"),
           ("tops_per_w", "tops_per_w", "TOPS/W"), ("area_mm2", "area_mm2", "mm2"),
           ("energy_low_J", "energy_per_inference_J.low", "J"), ("energy_high_J", "energy_per_inference_J.high", "J"),
           ("latency_low_s", "latency_s.low", "s"), ("latency_high_s", "latency_s.high", "s"),
           ("area_low_mm2", "area_mm2.low", "mm2"), ("area_high_mm2", "area_mm2.high", "mm2"))
# a causal LM's serving figures: columns of sweep.csv and sweep.html where any point has them
DECODE_FIGURES = (("ttft_s", "ttft_s", "s"), ("tokens_per_s", "tokens_per_s", "/s"),
                  ("energy_per_token_J", "energy_per_token_J", "J"),
                  ("ttft_low_s", "ttft_s.low", "s"), ("ttft_high_s", "ttft_s.high", "s"),
                  ("tokens_per_s_low", "tokens_per_s.low", "/s"), ("tokens_per_s_high", "tokens_per_s.high", "/s"),
                  ("energy_per_token_low_J", "energy_per_token_J.low", "J"),
                  ("energy_per_token_high_J", "energy_per_token_J.high", "J"))


# --- the Pareto front ---------------------------------------------------------------------------------------

def front_of(rows: list[tuple[SweepRun, float, float]], lower_y_is_better: bool) -> set[int]:
    """Indices of the (point, cost x, accuracy y) rows on the front: with per-seed accuracy (`better_than` in
    sweep.json, compiler/dse/paired.py), a point is dominated only by a point of no more cost whose accuracy is
    resolved better; without it (one seed, no --simulate), by the means (pareto_front)."""
    if not rows or not all(p.seeds and any(a.per_seed for a in p.accuracy) for p, _, _ in rows):
        return set(pareto_front([(x, y) for _, x, y in rows], lower_y_is_better))
    return {i for i, (p, x, _) in enumerate(rows)
            if not any(j != i and x2 <= x and p.name in q.better_than for j, (q, x2, _) in enumerate(rows))}


def last_interval(point: SweepRun) -> tuple[float, float] | None:
    """(low, high) of the headline metric at the longest drift time (inside its range), or None."""
    simulated = [a for a in point.accuracy if a.mean is not None]
    if not simulated:
        return None
    last = max(simulated, key=lambda a: a.seconds)
    if last.low is not None and last.high is not None:
        return last.low, last.high
    return (last.mean - last.ci95, last.mean + last.ci95) if last.ci95 is not None else None


# --- sweep.csv and sweep.html ---------------------------------------------------------------------------

def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SchemaError(f"{path}: cannot read it ({exc})") from None


def read_sweep(folder: Path) -> SweepJson:
    path = Path(folder) / "sweep.json"
    return SweepJson.from_json(_read(path), str(path))


def drift_labels(sweep: SweepJson) -> list[tuple[str, float]]:
    seen: dict[str, float] = {}
    for point in sweep.points:
        for a in point.accuracy:
            seen.setdefault(a.label, a.seconds)
    return sorted(seen.items(), key=lambda item: item[1])


def sweep_csv(sweep: SweepJson) -> str:
    """One row per point: the grid values, status, figures (SI units), the accuracy metric's mean, std, 95 %
    confidence half-width and interval (low, high) per drift time, the paired difference to the reference point
    and the energy and area ratios to it, Pareto membership, the point's report and command."""
    axes = [a.name for a in sweep.axes]
    drifts = [label for label, _ in drift_labels(sweep)]
    shown = FIGURES + decode_figures(sweep)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(csv_row(["point", "status", "error", *axes, *(c for _, c, _ in shown), "metric",
                     *(f"{d}.{s}" for d in drifts for s in ("mean", "std", "ci95", "low", "high")),
                     "vs_reference.mean", "vs_reference.low", "vs_reference.high", "vs_reference.resolved",
                     "energy_vs_reference", "area_vs_reference", "pareto", "report", "command"]))
    for p in sweep.points:
        by_label = {a.label: a for a in p.accuracy}
        cells = [p.name, p.status, p.error or "", *(p.values.get(a, "") for a in axes),
                 *(_cell(getattr(p, f)) for f, _, _ in shown), p.metric or ""]
        for d in drifts:
            a = by_label.get(d)
            cells += [_cell(a.mean), _cell(a.std), _cell(a.ci95), _cell(a.low), _cell(a.high)] if a else [""] * 5
        versus = p.versus
        diff = versus.accuracy if versus else None
        cells += [_cell(diff.mean), _cell(diff.low), _cell(diff.high), "yes" if diff.resolved else "no"] if diff \
            else ["reference" if p.name == sweep.reference else ""] + [""] * 3
        cells += [_cell(versus.energy_ratio), _cell(versus.area_ratio)] if versus else ["", ""]
        writer.writerow(csv_row(cells + ["yes" if p.pareto else "", p.report or "", p.command]))  # labels: user text
    return buffer.getvalue()


def decode_figures(sweep: SweepJson) -> tuple:
    """DECODE_FIGURES when a point of the sweep is a causal LM, else none."""
    return DECODE_FIGURES if any(p.tokens_per_s is not None for p in sweep.points) else ()


def _cell(value: Any) -> Any:
    """A figure as the CSV writes it: numbers stay numbers (csv_row leaves them alone), None empty."""
    return "" if value is None else value if isinstance(value, (int, float)) else str(value)


def write_sweep_files(folder: Path) -> tuple[Path, Path]:
    """sweep.csv and sweep.html beside `folder`/sweep.json; their paths."""
    from reports.render import write_file
    folder = Path(folder)
    sweep = read_sweep(folder)
    write_file(folder / "sweep.csv", sweep_csv(sweep), "the sweep table")
    write_file(folder / "sweep.html", render_sweep(sweep), "the sweep page")
    return folder / "sweep.csv", folder / "sweep.html"


def _range(low: float | None, high: float | None, unit: str) -> str | None:
    """The estimator's range of a figure as the page shows it under the figure; None without one."""
    from reports.fmt import si
    if low is None or high is None:
        return None
    (a, _, unit_a), (b, _, unit_b) = si(low, unit).partition(" "), si(high, unit).partition(" ")
    return f"{a}–{b} {unit_a}" if unit_a == unit_b else f"{a} {unit_a} – {b} {unit_b}"


def render_sweep(sweep: SweepJson) -> str:
    from reports import sweep_charts
    from reports.fmt import si
    from reports.render import environment
    drifts = drift_labels(sweep)
    ok = [p for p in sweep.points if p.status != "failed"]
    metric = next((p.metric for p in ok if p.metric), None)
    rows = []
    for p in sweep.points:
        by_label = {a.label: a for a in p.accuracy}
        rows.append({"p": p, "link": urllib.parse.quote(p.report) if p.report else None,
                     "accuracy": [by_label.get(label) for label, _ in drifts],
                     "energy": si(p.energy_J, "J"), "latency": si(p.latency_s, "s"),
                     "area": si(p.area_mm2, "mm²") if p.area_mm2 is not None else "–",
                     "ranges": {name: _range(low, high, unit) for name, low, high, unit in (
                         ("energy", p.energy_low_J, p.energy_high_J, "J"),
                         ("latency", p.latency_low_s, p.latency_high_s, "s"),
                         ("area", p.area_low_mm2, p.area_high_mm2, "mm²"))},
                     "decode": [f"{si(getattr(p, name), unit)} {what}" for (name, _, unit), what in
                                zip(decode_figures(sweep)[:3], ("TTFT", "", "/ token"))],  # the figures, not ends
                     "decode_ranges": {"ttft": _range(p.ttft_low_s, p.ttft_high_s, "s"),
                                       "tokens_per_s": _range(p.tokens_per_s_low, p.tokens_per_s_high, "/s"),
                                       "energy_per_token": _range(p.energy_per_token_low_J,
                                                                  p.energy_per_token_high_J, "J")}})
    return environment().get_template("sweep.html.j2").render(
        sweep=sweep, rows=rows, drifts=drifts, metric=metric, failed=[p for p in sweep.points if p.status == "failed"],
        pareto_chart=sweep_charts.pareto(sweep, metric), area_chart=sweep_charts.pareto_area(sweep, metric),
        axis_charts=[(axis, sweep_charts.axis_effect(sweep, axis, metric)) for axis in sweep.axes],
        counts={s: sum(1 for p in sweep.points if p.status == s) for s in ("computed", "cached", "failed")},
        decode=bool(decode_figures(sweep)),
        has_versus=any(p.versus is not None and p.versus.accuracy is not None for p in sweep.points),
        isfinite=math.isfinite, basename=os.path.basename)
