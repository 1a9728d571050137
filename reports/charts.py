"""The report's figures, drawn with matplotlib from cost.json and accuracy.json (read through reports/schema.py)."""
from __future__ import annotations

import bisect
import math
from typing import Any

import numpy as np
from matplotlib.ticker import LogLocator

from reports.fmt import si
from reports.mapping_view import split_group
from reports.schema import COMPONENT_STYLES, AccuracyJson, CostJson, DriftResult
from reports.svgfig import legend_outside, new_figure, style, to_svg

# One color and label per cost component, shared by every chart: reports/schema.py COMPONENT_STYLES ("other": the
# charts' remainder bar)
COMPONENT_COLORS = {name: color for name, (_, color) in COMPONENT_STYLES.items()} | {"other": "#cfd6df"}
COMPONENT_LABELS = {name: label for name, (label, _) in COMPONENT_STYLES.items()} | {"other": "other"}
AIMC_COLOR, BASELINE_COLOR = "#2f5f98", "#c44e52"
INK, MUTED = "#1d2433", "#5f6b7a"


def component_label(name: str) -> str:
    return COMPONENT_LABELS.get(name) or name.replace("_", " ")


def component_color(name: str) -> str:
    return COMPONENT_COLORS.get(name) or "#9aa5b1"


_color = component_color


def energy_by_component(cost: CostJson) -> str:
    """Horizontal bars: the inference's energy per component, largest first, with shares."""
    parts = sorted(((k, v) for k, v in cost.energy_by_component_J.items() if v > 0), key=lambda kv: kv[1])
    total = sum(v for _, v in parts) or 1.0
    fig, ax = new_figure(5.6, 0.32 * len(parts) + 0.9)
    with style():
        y = np.arange(len(parts))
        ax.barh(y, [v for _, v in parts], color=[_color(k) for k, _ in parts], height=0.66)
        ax.set_yticks(y, [component_label(k) for k, _ in parts])
        ax.set_xscale("log")
        ax.grid(axis="y", visible=False)
        lo = min(v for _, v in parts)
        ax.set_xlim(lo / 3, max(v for _, v in parts) * 12)
        for yi, (_, v) in zip(y, parts):
            ax.text(v * 1.15, yi, f"{si(v, 'J')}  ({100 * v / total:.1f} %)", va="center", fontsize=8.5, color=MUTED)
        ax.xaxis.set_major_formatter(lambda v, _: si(v, "J", 1))   # plain labels: no mathtext to typeset
        ax.set_xlabel("energy per batch (log scale)")
        ax.set_title(f"Energy by component · total {si(total, 'J')}")
    return to_svg(fig, "energy by component")


def stacked_energy_bars(ax, rows: list[tuple[str, dict[str, float]]], order: list[str] | None = None,
                        height: float = 0.6, headroom: float = 1.15) -> dict[str, object]:
    """One horizontal bar per (label, energy by component) row, stacked by component (largest first, or in
    `order`), its total written at its end; returns the first bar drawn of each component, for a legend."""
    seen: dict[str, object] = {}
    for y, (_, parts) in enumerate(rows):
        left = 0.0
        names = order if order is not None else sorted(parts, key=lambda name: -parts[name])
        for name in names:
            value = parts.get(name, 0.0)
            if value <= 0:
                continue
            bar = ax.barh(y, value, left=left, color=_color(name), height=height, edgecolor="white", linewidth=0.5)
            seen.setdefault(name, bar)
            left += value
        ax.text(left * 1.01, y, si(left, "J"), va="center", fontsize=9, color=INK, fontweight="bold")
    ax.set_yticks(range(len(rows)), [label for label, _ in rows])
    ax.invert_yaxis()
    ax.grid(axis="y", visible=False)
    ax.set_xlim(0, max(sum(parts.values()) for _, parts in rows) * headroom)
    ax.xaxis.set_major_formatter(lambda v, _: si(v, "J", 2) if v else "0")
    return seen


def aimc_vs_baseline(cost: CostJson) -> str:
    """Two stacked bars: the AIMC chip and the digital INT8 baseline, each split by component."""
    base = cost.baseline
    rows = [("AIMC\n" + cost.hw, cost.energy_by_component_J), ("digital INT8\n" + base.name,
                                                               base.energy_by_component_J)]
    fig, ax = new_figure(5.6, 3.2)
    with style():
        seen = stacked_energy_bars(ax, rows, height=0.56, headroom=1.18)
        legend_outside(ax, list(seen.values()), [component_label(k) for k in seen], ncol=3, loc="upper center",
                       bbox_to_anchor=(0.45, -0.16), fontsize=7.8, handlelength=1.0, columnspacing=1.0)
        ratio = base.energy_ratio
        ax.set_title("Energy per batch vs the digital baseline" + (f" · {ratio_words(ratio, 'less', 'more')}"
                                                                     if ratio else ""))
    return to_svg(fig, "energy compared with the digital baseline")


def _short_layer(name: str) -> str:
    group, label, _ = split_group(name)
    if group == name and label.startswith("layer "):
        return label.replace("layer ", "L")
    return name.rsplit(".", 1)[-1] if "." in name else name


def energy_per_layer(cost: CostJson, top: int = 6) -> str:
    """Stacked bars, one per layer of cost.json, split into the largest components and 'other'."""
    layers = [layer for layer in cost.layers if layer.energy_J > 0]
    totals: dict[str, float] = {}
    for layer in layers:
        for k, v in layer.energy_by_component_J.items():
            totals[k] = totals.get(k, 0.0) + v
    shown = [k for k, v in sorted(totals.items(), key=lambda kv: -kv[1]) if v > 0][:top]
    fig, ax = new_figure(11.4, 2.9)
    with style():
        x = np.arange(len(layers))
        bottom = np.zeros(len(layers))
        for name in shown + ["other"]:
            if name == "other":
                values = np.array([sum(v for k, v in layer.energy_by_component_J.items() if k not in shown)
                                   for layer in layers])
                if not values.any():
                    continue
            else:
                values = np.array([layer.energy_by_component_J.get(name, 0.0) for layer in layers])
            ax.bar(x, values, bottom=bottom, color=_color(name), width=0.72, label=component_label(name),
                   edgecolor="white", linewidth=0.4)
            bottom += values
        labels = [_short_layer(layer.name) for layer in layers]
        slanted = len(layers) > 24 or max(map(len, labels)) > 4
        ax.set_xticks(x, labels, fontsize=8.5, rotation=35 if slanted else 0, ha="right" if slanted else "center",
                      rotation_mode="anchor")
        ax.grid(axis="x", visible=False)
        ax.yaxis.set_major_formatter(lambda v, _: si(v, "J", 2) if v else "0")
        ax.set_xlim(-0.6, len(layers) - 0.4)
        legend_outside(ax)
        ax.set_title("Energy per layer, by component")
    return to_svg(fig, "energy per layer")


def sweep(cost: CostJson) -> str:
    """Energy and latency against the sweep axis (sequence length), AIMC against the digital baseline."""
    points = cost.sweep.points
    axis = cost.sweep.axis                      # "seq_len" or "batch": a field of SeriesPoint and of CostJson
    xs = [getattr(p, axis) for p in points]
    current = getattr(cost, axis)
    fig, axes = new_figure(11.4, 2.8, ncols=2)
    with style():
        for ax, key, unit, title in ((axes[0], "energy_J", "J", "Energy per batch"),
                                     (axes[1], "latency_s", "s", "Latency per batch")):
            ax.plot(xs, [getattr(p, key) for p in points], "o-", color=AIMC_COLOR, label=f"AIMC ({cost.hw})", ms=4)
            baseline = [getattr(p, "baseline_" + key) for p in points]
            if all(v is not None for v in baseline):
                name = cost.baseline.name if cost.baseline else "baseline"
                ax.plot(xs, baseline, "s--", color=BASELINE_COLOR, ms=4, label=f"digital INT8 ({name})")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xticks(xs, [str(x) for x in xs])
            ax.minorticks_off()
            ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(lambda v, _: si(v, unit, 2))
            if current in xs:
                ax.axvline(current, color="#b9c2ce", lw=1, ls=":", zorder=0)
            ax.set_xlabel("sequence length (tokens)" if axis == "seq_len" else "batch size")
            ax.set_title(f"{title} vs {'sequence length' if axis == 'seq_len' else 'batch size'}")
        legend_outside(axes[1])
    return to_svg(fig, "energy and latency sweep")


def tile_busy(cost: CostJson, bottleneck_tile: int | None) -> str | None:
    """Busy fraction of each tile over the pipeline period: the latency picture of the schedule."""
    steps = cost.schedule.busy_steps() if cost.schedule else None
    if steps is None or not steps.first_tile:
        return None
    fig, ax = new_figure(11.4, 2.3)
    with style():
        # One filled step path rather than hundreds of bars: same picture, a fraction of the SVG. Beyond
        # reports.schema.TILE_STEPS tiles (28,628 for an 8B decoder) a step is the busiest of consecutive tiles:
        # the envelope, at most a few thousand points whatever the model (cost.json holds it so when compact)
        n = len(steps.first_tile)
        ax.stairs(np.array(steps.max), np.arange(n + 1) - 0.5, fill=True, color=AIMC_COLOR, linewidth=0)
        if bottleneck_tile is not None and steps.first_tile[0] <= bottleneck_tile:
            i = bisect.bisect_right(steps.first_tile, bottleneck_tile) - 1
            ax.bar(i, steps.max[i], width=1.0, color="#c44e52", linewidth=0)
        mean = cost.schedule.mean_tile_utilization
        if mean is None:
            mean = sum(m * steps.per_step for m in steps.mean) / max(steps.tiles, 1)
        ax.axhline(mean, color=MUTED, lw=1, ls="--")
        ax.text(n * 1.005, mean, f"mean {100 * mean:.0f} %", va="center", fontsize=8.5, color=MUTED)
        ax.set_ylim(0, 1.05)
        ax.set_xlim(-0.5, n - 0.5)
        ax.yaxis.set_major_formatter(lambda v, _: f"{100 * v:.0f} %")
        step = max(1, 10 ** math.floor(math.log10(max(steps.tiles, 1))) // 2)
        ticks = list(range(0, n, max(1, step // steps.per_step)))
        ax.set_xticks(ticks, [str(steps.first_tile[i]) for i in ticks], fontsize=8)
        ax.set_xlabel("tile")
        ax.grid(axis="x", visible=False)
        bottleneck = cost.schedule.bottleneck
        ax.set_title("Tile busy time per pipeline period" + (f" · bottleneck: {bottleneck}" if bottleneck else ""))
    return to_svg(fig, "tile busy fraction")


def accuracy_series(accuracy: AccuracyJson | dict[str, Any]) -> list[tuple[str, list[DriftResult]]]:
    """(label, results) per simulated variant: the run itself and, when present, its run without the
    post-training range optimizations (`results_without_pt_opt`, same shape as `results`) and, after HWA
    fine-tuning (`hwa_finetune`), the model as loaded (`results_without_hwa`, same compile options).
    `accuracy`: accuracy.json as read through its definition, or as json.load returns it."""
    if not isinstance(accuracy, AccuracyJson):
        accuracy = AccuracyJson.from_json(accuracy, "accuracy.json")
    pt = accuracy.pt_optimization
    main_label = {True: "PT optimization on", False: "PT optimization off"}.get(pt, "analog chip")
    hwa = "HWA fine-tuned, " if accuracy.hwa_finetune else ""
    series = [(hwa + main_label if hwa else main_label, accuracy.results)]
    if accuracy.results_without_pt_opt:
        series.append((hwa + "PT optimization off", accuracy.results_without_pt_opt))
    if accuracy.results_without_hwa:
        label = "not fine-tuned" + (f", {main_label}" if pt is not None else "")
        series.append((label, accuracy.results_without_hwa))
    return series


def metric_label(name: str) -> str:
    return {"output_rel_l2": "output relative L2 error", "top1_agreement": "top-1 agreement",
            "embedding_cosine_mean": "embedding cosine (mean)", "embedding_cosine_min": "embedding cosine (min)",
            "embedding_rel_l2": "embedding relative L2 error", "retrieval_agreement": "retrieval agreement",
            }.get(name, name.replace("task_", "task ").replace("_", " "))


DRIFT_AXIS_PAD = 3.0       # the time axis reaches this factor beyond the first and last drift time
SERIES_SHIFT = 0.06        # series k is drawn at time x (1 + k * SERIES_SHIFT): its error bars clear the others'


def drift_positions(seconds: list[float]) -> list[float]:
    """Where each drift time sits on the log axis: itself, or for 0 s (right after programming) a decade
    below the smallest positive time (log axes have no 0)."""
    positive = [s for s in seconds if s > 0]
    zero_at = min(positive) / 10 if positive else 0.1
    return [s if s > 0 else zero_at for s in seconds]


def drift_axis(ax, seconds: list[float], labels: list[str]) -> None:
    """A log time axis with one tick per drift time, its limits set from the drift times themselves, padded by
    DRIFT_AXIS_PAD. Fitting it to the plotted points instead would, with a single drift time, span only the
    few percent between the series and put the tick at one edge and the shifted series at the other."""
    positions = drift_positions(seconds)
    ax.set_xscale("log")
    ax.set_xlim(min(positions) / DRIFT_AXIS_PAD, max(positions) * DRIFT_AXIS_PAD)
    ax.set_xticks(positions, labels)
    ax.minorticks_off()
    ax.set_xlabel("time after programming")


def accuracy_vs_drift(accuracy: AccuracyJson, per_row: int = 3) -> str | None:
    """One panel per metric: mean ± std over seeds against drift time (log axis), seeds as dots."""
    fig = accuracy_figure(accuracy, per_row)
    return None if fig is None else to_svg(fig, "accuracy against drift time")


def accuracy_figure(accuracy: AccuracyJson, per_row: int = 3):
    """The figure of accuracy_vs_drift (a matplotlib Figure; None without metrics or results)."""
    series = accuracy_series(accuracy)
    metrics = list(accuracy.metrics)
    if not metrics or not series[0][1]:
        return None
    per_row = len(metrics) if len(metrics) <= 4 else per_row
    rows = math.ceil(len(metrics) / per_row)
    cols = min(per_row, len(metrics))
    fig, axes = new_figure(min(11.4, 3.8 * cols), 2.7 * rows, nrows=rows, ncols=cols, squeeze=False)
    colors = [AIMC_COLOR, "#e07b39", "#2a9d8f"]
    fp_task = (accuracy.fp_reference.task if accuracy.fp_reference else None) or {}
    with style():
        for i, ax in enumerate(axes.flat):
            if i >= len(metrics):
                ax.set_visible(False)
                continue
            metric = metrics[i]
            for s, (label, results) in enumerate(series):
                xs = drift_positions([r.seconds for r in results])
                mean = [r.mean.get(metric) for r in results]
                std = [r.std.get(metric) or 0.0 for r in results]
                keep = [j for j, m in enumerate(mean) if m is not None]
                offset = 1.0 + SERIES_SHIFT * s
                ax.errorbar([xs[j] * offset for j in keep], [mean[j] for j in keep], yerr=[std[j] for j in keep],
                            fmt="o-", color=colors[s % len(colors)], ms=4.5, lw=1.4, capsize=3, label=label)
                for j in keep:
                    seeds = [v for v in results[j].per_seed.get(metric) or [] if v is not None]
                    ax.plot([xs[j] * offset] * len(seeds), seeds, ".", color=colors[s % len(colors)], alpha=0.35,
                            ms=4, zorder=1)
            reference = fp_task.get(metric.removeprefix("task_")) if metric.startswith("task_") else None
            if reference is not None:
                ax.axhline(reference, color=MUTED, ls="--", lw=1)
                ax.text(0.99, reference, " FP model", transform=ax.get_yaxis_transform(), ha="right",
                        va="bottom", fontsize=8, color=MUTED)
            results = series[0][1]
            drift_axis(ax, [r.seconds for r in results], [r.label for r in results])
            ax.set_title(metric_label(metric), fontsize=9.5)
        if len(series) > 1:
            legend_outside(axes.flat[0])
    return fig


def ratio_words(ratio: float, better: str, worse: str) -> str:
    """'1.76× less' for a ratio above 1, '1.80× more' (its inverse) below: never '0.557× less'."""
    return f"{ratio:.2f}× {better}" if ratio >= 1 else f"{1 / ratio:.2f}× {worse}"
