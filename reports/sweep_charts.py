"""The figures of sweep.html, drawn with matplotlib from sweep.json (read through reports/schema.py)."""
from __future__ import annotations

from reports.charts import AIMC_COLOR, INK, MUTED, metric_label
from reports.schema import SweepAxis, SweepJson, SweepRun
from reports.svgfig import legend_outside, new_figure, to_svg
from reports.schema import final_accuracy, pareto_front
from reports.sweep import front_of, last_interval

FRONT_COLOR, OTHER_COLOR = "#e07b39", "#9fb6d6"


def _short(point: SweepRun, sweep: SweepJson) -> str:
    """The point's values, compact: only the axes with more than one value."""
    return " ".join(f"{point.values.get(a.name, '')}" for a in sweep.axes if len(a.values) > 1)


def _scatter(ax, sweep: SweepJson, rows: list[tuple[SweepRun, float, float]], lower_y: bool) -> None:
    """The points with their 95 % intervals (error bars); orange: not dominated by a resolved difference; the
    line joins the front of the means; hollow orange: on the resolved front, off the means' front (what
    beats it is not resolved)."""
    means = set(pareto_front([(x, y) for _, x, y in rows], lower_y))
    front = front_of(rows, lower_y)
    for k, (point, x, y) in enumerate(rows):
        on = k in front
        interval = last_interval(point) if sweep.simulate else None
        color = FRONT_COLOR if on else OTHER_COLOR
        if interval is not None:
            ax.errorbar([x], [y], yerr=[[max(y - interval[0], 0.0)], [max(interval[1] - y, 0.0)]], fmt="none",
                        ecolor=color, elinewidth=1.0, capsize=2.5, zorder=2)
        ax.scatter([x], [y], s=46 if on else 30, color=color if (on and k in means) or not on else "white",
                   zorder=3, edgecolor=color if on and k not in means else "white", linewidth=1.2 if on else 0.6)
        ax.annotate(_short(point, sweep), (x, y), xytext=(4, 3), textcoords="offset points", fontsize=7.5,
                    color=INK if on else MUTED)
    ordered = sorted((rows[k][1], rows[k][2]) for k in means)
    if len(ordered) > 1:
        ax.plot([x for x, _ in ordered], [y for _, y in ordered], color=FRONT_COLOR, linewidth=1.2, zorder=2,
                drawstyle="steps-post" if not lower_y else "default", alpha=0.7)
    xs = [x for _, x, _ in rows]
    if min(xs) > 0 and max(xs) / min(xs) > 20:
        ax.set_xscale("log")
    ax.margins(x=0.2)  # room right of the last point for its label, inside the axes (the legend is beside them)
    ax.scatter([], [], color=FRONT_COLOR, label="front (means)")
    if front - means:
        ax.scatter([], [], color="white", edgecolor=FRONT_COLOR, linewidth=1.2, label="not resolved as dominated")
    ax.scatter([], [], color=OTHER_COLOR, label="dominated (resolved)" if front != means or sweep.simulate
               else "dominated")
    if sweep.simulate and any(last_interval(p) for p, _, _ in rows):
        ax.plot([], [], color=MUTED, marker="|", markersize=9, linestyle="none", label="95 % interval over seeds")
    legend_outside(ax)


def pareto(sweep: SweepJson, metric: str | None) -> str | None:
    """Energy per inference against accuracy at the longest drift time (against latency without accuracy)."""
    rows, lower_y, ylabel = _front_rows(sweep, metric, lambda p: p.energy_J)
    if not rows:
        return None
    fig, ax = new_figure(7.2, 4.2)
    _scatter(ax, sweep, [(p, x * 1e6, y) for p, x, y in rows], lower_y)
    ax.set_xlabel("energy per inference (µJ)")
    ax.set_ylabel(ylabel)
    ax.set_title("Energy against " + ("accuracy" if metric else "latency"))
    return to_svg(fig, "Pareto front of energy against " + ("accuracy" if metric else "latency"))


def pareto_area(sweep: SweepJson, metric: str | None) -> str | None:
    """Silicon area against accuracy (against latency without accuracy), when the spec prices area."""
    rows, lower_y, ylabel = _front_rows(sweep, metric, lambda p: p.area_mm2)
    if not rows:
        return None
    fig, ax = new_figure(7.2, 4.2)
    _scatter(ax, sweep, rows, lower_y)
    ax.set_xlabel("area of the chips the model spans (mm²)")
    ax.set_ylabel(ylabel)
    ax.set_title("Area against " + ("accuracy" if metric else "latency"))
    return to_svg(fig, "Pareto front of area against " + ("accuracy" if metric else "latency"))


def _front_rows(sweep: SweepJson, metric: str | None, x_of):
    """(point, x, y) of the points with both figures; whether lower y is better; the y label."""
    rows = []
    lower_y = False
    for p in sweep.points:
        x = x_of(p)
        if p.status == "failed" or x is None:
            continue
        if metric:
            y = final_accuracy(p) if p.metric == metric else None
            lower_y = not p.higher_is_better
        else:
            y = p.latency_s * 1e6 if p.latency_s is not None else None
            lower_y = True
        if y is not None:
            rows.append((p, x, y))
    if metric:
        longest = max((a for p, _, _ in rows for a in p.accuracy), key=lambda a: a.seconds, default=None)
        ylabel = metric_label(metric) + (f" at t={longest.label}" if longest else "")
    else:
        ylabel = "latency per inference (µs)"
    return rows, lower_y, ylabel


def axis_effect(sweep: SweepJson, axis: SweepAxis, metric: str | None) -> str | None:
    """One axis's effect: energy (and accuracy) of every point against the axis's value, the mean over the
    other axes' values joined by a line."""
    points = [p for p in sweep.points if p.status != "failed" and axis.name in p.values]
    if not points or len(axis.values) < 2:
        return None
    panels = [("energy per inference (µJ)", lambda p: p.energy_J * 1e6 if p.energy_J is not None else None)]
    if metric:
        longest = max((a for p in points for a in p.accuracy), key=lambda a: a.seconds, default=None)
        label = f"{metric_label(metric)}" + (f" at t={longest.label}" if longest else "")
        panels.append((label, lambda p: final_accuracy(p) if p.metric == metric else None))
    fig, axes = new_figure(3.6 * len(panels), 2.8, ncols=len(panels), squeeze=False)
    drawn = False
    for ax, (ylabel, y_of) in zip(axes[0], panels):
        positions = {value: k for k, value in enumerate(axis.values)}
        xs, ys = [], []
        for p in points:
            y = y_of(p)
            if y is not None:
                xs.append(positions[p.values[axis.name]])
                ys.append(y)
        if not ys:
            ax.set_visible(False)
            continue
        drawn = True
        ax.scatter(xs, ys, s=22, color=OTHER_COLOR, zorder=3, edgecolor="white", linewidth=0.5)
        means = [(k, sum(y for x, y in zip(xs, ys) if x == k) / xs.count(k)) for k in range(len(axis.values))
                 if k in xs]
        ax.plot([k for k, _ in means], [m for _, m in means], color=AIMC_COLOR, marker="o", markersize=4,
                linewidth=1.4, zorder=4, label="mean over the other axes")
        ax.set_xticks(range(len(axis.values)), axis.values)
        ax.set_xlabel(axis.name)
        ax.set_ylabel(ylabel)
    if not drawn:
        return None
    axes[0][0].set_title(f"Effect of {axis.name}")
    return to_svg(fig, f"Effect of {axis.name} on energy" + (" and accuracy" if metric else ""))
