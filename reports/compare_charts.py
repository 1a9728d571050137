"""The comparison's figures: energy by component, one bar per run, and accuracy against drift time with every
run's curve on the same axes (reports/compare.py)."""
from __future__ import annotations

import math

import numpy as np

from reports.charts import INK, SERIES_SHIFT, accuracy_series, component_label, drift_axis, drift_positions, \
    metric_label, stacked_energy_bars
from reports.sections import HEADLINE_METRICS
from reports.svgfig import legend_outside, new_figure, style, to_svg

# One color per run, in the page's column order (the column headers carry the same swatch).
RUN_COLORS = ["#2f5f98", "#e07b39", "#2a9d8f", "#c44e52", "#8061a9", "#6b8e23", "#b07aa1", "#5f6b7a"]
MAX_PANELS = 4  # accuracy panels: the headline metrics first


def run_color(index: int) -> str:
    return RUN_COLORS[index % len(RUN_COLORS)]


def energy_by_run(runs) -> str | None:
    """Stacked horizontal bars, one per run with a cost.json: energy per inference split by component."""
    rows = [(run.label, {k: v / run.cost.batch for k, v in run.cost.energy_by_component_J.items() if v > 0})
            for run in runs if run.cost is not None and any(v > 0 for v in run.cost.energy_by_component_J.values())]
    if not rows:
        return None
    totals: dict[str, float] = {}
    for _, parts in rows:
        for name, value in parts.items():
            totals[name] = totals.get(name, 0.0) + value
    order = sorted(totals, key=lambda name: -totals[name])  # the same stacking order in every bar
    fig, ax = new_figure(11.4, 0.55 * len(rows) + 1.6)
    with style():
        seen = stacked_energy_bars(ax, rows, order)
        ax.set_xlabel("energy per inference")
        legend_outside(ax, list(seen.values()), [component_label(k) for k in seen], fontsize=8)
        ax.set_title("Energy per inference by component")
    return to_svg(fig, "energy by component, per run")


def _panel_metrics(runs) -> list[str]:
    names: list[str] = []
    for run in runs:
        names += [n for n in (run.accuracy.metrics if run.accuracy else {}) if n not in names]
    order = {name: i for i, name in enumerate(HEADLINE_METRICS)}
    return sorted(names, key=lambda n: order.get(n, len(order)))[:MAX_PANELS]


def accuracy_by_run(runs) -> str | None:
    """One panel per metric (the headline ones, at most MAX_PANELS): each run's mean ± std over seeds against
    drift time in its color; dashed, the same run with the PT optimizations off (when simulated)."""
    simulated = [(i, run) for i, run in enumerate(runs) if run.accuracy and run.accuracy.results]
    metrics = _panel_metrics([run for _, run in simulated])
    if not metrics:
        return None
    times = sorted({r.seconds: r.label for _, run in simulated for r in run.accuracy.results}.items())
    cols = min(len(metrics), 2)
    rows = math.ceil(len(metrics) / cols)
    fig, axes = new_figure(min(11.4, 5.2 * cols), 2.9 * rows, nrows=rows, ncols=cols, squeeze=False)
    with style():
        for panel, ax in enumerate(axes.flat):
            if panel >= len(metrics):
                ax.set_visible(False)
                continue
            metric = metrics[panel]
            shift = 0
            for index, run in simulated:
                series = accuracy_series(run.accuracy)[:2]
                for variant, (label, results) in enumerate(series):
                    points = [(x, r.mean.get(metric), r.std.get(metric)) for x, r in
                              zip(drift_positions([r.seconds for r in results]), results)
                              if r.mean.get(metric) is not None]
                    if not points:
                        continue
                    offset = 1.0 + SERIES_SHIFT * shift
                    shift += 1
                    xs, means, stds = zip(*points)
                    ax.errorbar(np.array(xs) * offset, means, yerr=[s or 0.0 for s in stds],
                                fmt="o-" if variant == 0 else "s--", color=run_color(index), ms=4.5, lw=1.4,
                                capsize=3, alpha=1.0 if variant == 0 else 0.6,
                                label=run.label + (f", {label}" if len(series) > 1 else ""))
            drift_axis(ax, [s for s, _ in times], [label for _, label in times])
            ax.set_title(metric_label(metric), fontsize=9.5)
            legend_outside(ax, fontsize=7.8)
        fig.suptitle("Accuracy against drift time, every run", x=0.01, ha="left", fontsize=10.5,
                     fontweight="bold", color=INK)
    return to_svg(fig, "accuracy against drift time, per run")
