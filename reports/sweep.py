"""A sweep's summary (compiler/dse/): each point's headline figures read from its run folder, the Pareto front,
and sweep.csv and sweep.html from sweep.json alone (no torch, nothing of `compiler`).

The front: a point is on it when no other point has lower (or equal) energy per inference and better (or equal)
accuracy, one of them strictly; accuracy is the headline metric's mean at the longest drift time simulated
(the chip's accuracy after the most drift the sweep looked at). Without accuracy (no --simulate) the front is
energy against latency.
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

from reports.schema import AccuracyJson, CostJson, MappingJson, SchemaError, SweepJson, SweepRun
from reports.sections import HEADLINE_METRICS

# figures of a point in sweep.csv, in this order: (field of SweepRun, CSV column, unit)
FIGURES = (("model", "model", ""), ("tiles", "tiles", ""), ("chips", "chips", ""),
           ("energy_J", "energy_per_inference_J", "J"), ("latency_s", "latency_s", "s"),
           ("tops_per_w", "tops_per_w", "TOPS/W"), ("area_mm2", "area_mm2", "mm2"))


# --- figures of one point (called by the writer, compiler/dse/run.py) -------------------------------------

def point_figures(folder: Path) -> dict[str, Any]:
    """The headline figures of one finished run folder, read through reports/schema.py."""
    folder = Path(folder)
    mapping = MappingJson.from_json(_read(folder / "mapping.json"), str(folder / "mapping.json"))
    figures: dict[str, Any] = {"tiles": mapping.tiles_used, "chips": mapping.chips_used, "model": mapping.model,
                               "energy_J": None, "latency_s": None, "tops_per_w": None, "area_mm2": None,
                               "metric": None, "higher_is_better": True, "accuracy": []}
    if (folder / "cost.json").is_file():
        cost = CostJson.from_json(_read(folder / "cost.json"), str(folder / "cost.json"))
        if cost.totals is not None:
            figures.update(energy_J=cost.totals.energy_per_inference_J, latency_s=cost.totals.latency_s,
                           tops_per_w=cost.totals.tops_per_w, area_mm2=cost.totals.area_mm2)
    if (folder / "accuracy.json").is_file():
        accuracy = AccuracyJson.from_json(_read(folder / "accuracy.json"), str(folder / "accuracy.json"))
        metric = headline_metric(list(accuracy.metrics))
        if metric is not None:
            figures.update(metric=metric, higher_is_better=accuracy.metrics[metric].higher_is_better, accuracy=[
                {"label": r.label, "seconds": r.seconds, "mean": r.mean.get(metric), "std": r.std.get(metric),
                 "ci95": r.ci95.get(metric)} for r in accuracy.results])
    return figures


def headline_metric(names: list[str]) -> str | None:
    """The metric a sweep compares points by: the report's headline one (reports/sections.py)."""
    return next((m for m in HEADLINE_METRICS if m in names), names[0] if names else None)


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SchemaError(f"{path}: cannot read it ({exc})") from None


# --- the Pareto front ---------------------------------------------------------------------------------------

def final_accuracy(row: dict | SweepRun) -> float | None:
    """The headline metric's mean at the longest drift time, or None."""
    accuracy = row["accuracy"] if isinstance(row, dict) else [vars(a) for a in row.accuracy]
    simulated = [a for a in accuracy if a["mean"] is not None]
    return max(simulated, key=lambda a: a["seconds"])["mean"] if simulated else None


def pareto_front(points: list[tuple[float, float]], lower_y_is_better: bool = False) -> list[int]:
    """Indices of the points (x to minimize, y to maximize, or minimize with `lower_y_is_better`) that no
    other point dominates."""
    sign = -1.0 if lower_y_is_better else 1.0
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any(x2 <= x and sign * y2 >= sign * y and (x2 < x or sign * y2 > sign * y)
                        for j, (x2, y2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return front


def _front_axes(row: dict) -> tuple[float, float, bool] | None:
    """(energy, accuracy or latency, whether lower y is better) of a point, when it has them."""
    if row.get("status") == "failed" or row.get("energy_J") is None:
        return None
    accuracy = final_accuracy(row)
    if accuracy is not None:
        return row["energy_J"], accuracy, not row.get("higher_is_better", True)
    return (row["energy_J"], row["latency_s"], True) if row.get("latency_s") is not None else None


def mark_pareto(rows: list[dict]) -> list[dict]:
    """The rows with `pareto` set: on the front of energy vs accuracy (vs latency without accuracy)."""
    usable = [(i, _front_axes(row)) for i, row in enumerate(rows)]
    usable = [(i, axes) for i, axes in usable if axes is not None]
    with_accuracy = [(i, a) for i, a in usable if final_accuracy(rows[i]) is not None]
    usable = with_accuracy or usable  # compare like with like: accuracy when any point has it
    lower = bool(usable) and usable[0][1][2]
    front = {usable[k][0] for k in pareto_front([(a[0], a[1]) for _, a in usable], lower)}
    return [{**row, "pareto": i in front} for i, row in enumerate(rows)]


# --- sweep.csv and sweep.html ---------------------------------------------------------------------------

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
    """One row per point: the grid values, status, figures (SI units), the accuracy metric's mean, std and 95 %
    confidence half-width per drift time, Pareto membership, the point's report and command."""
    axes = [a.name for a in sweep.axes]
    drifts = [label for label, _ in drift_labels(sweep)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["point", "status", "error", *axes, *(c for _, c, _ in FIGURES), "metric",
                     *(f"{d}.{s}" for d in drifts for s in ("mean", "std", "ci95")), "pareto", "report", "command"])
    for p in sweep.points:
        by_label = {a.label: a for a in p.accuracy}
        cells = [p.name, p.status, p.error or "", *(p.values.get(a, "") for a in axes),
                 *(_cell(getattr(p, f)) for f, _, _ in FIGURES), p.metric or ""]
        for d in drifts:
            a = by_label.get(d)
            cells += [_cell(a.mean), _cell(a.std), _cell(a.ci95)] if a else ["", "", ""]
        writer.writerow(cells + ["yes" if p.pareto else "", p.report or "", p.command])
    return buffer.getvalue()


def _cell(value: Any) -> str:
    return "" if value is None else repr(value) if isinstance(value, float) else str(value)


def write_sweep_files(folder: Path) -> tuple[Path, Path]:
    """sweep.csv and sweep.html beside `folder`/sweep.json; their paths."""
    from reports.render import write_file
    folder = Path(folder)
    sweep = read_sweep(folder)
    write_file(folder / "sweep.csv", sweep_csv(sweep), "the sweep table")
    write_file(folder / "sweep.html", render_sweep(sweep), "the sweep page")
    return folder / "sweep.csv", folder / "sweep.html"


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
                     "area": si(p.area_mm2, "mm²") if p.area_mm2 is not None else "–"})
    return environment().get_template("sweep.html.j2").render(
        sweep=sweep, rows=rows, drifts=drifts, metric=metric, failed=[p for p in sweep.points if p.status == "failed"],
        pareto_chart=sweep_charts.pareto(sweep, metric), area_chart=sweep_charts.pareto_area(sweep, metric),
        axis_charts=[(axis, sweep_charts.axis_effect(sweep, axis, metric)) for axis in sweep.axes],
        counts={s: sum(1 for p in sweep.points if p.status == s) for s in ("computed", "cached", "failed")},
        isfinite=math.isfinite, basename=os.path.basename)
