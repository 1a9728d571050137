"""The placement frontier of the report: the mappings `--allocation auto` tried (compiler/placement.py), tiles
against one inference's latency and against the steady-stream throughput, the chosen one marked."""
from __future__ import annotations

from reports.charts import AIMC_COLOR, INK, MUTED
from reports.schema import Strategy
from reports.svgfig import legend_outside, new_figure, to_svg

CHOSEN_COLOR, FRONT_COLOR = "#e07b39", AIMC_COLOR
LABELLED = ("naive", "packed", "layered", "slack")  # the strategies named on the chart besides the chosen one


def _front(points: list[tuple[float, float]], higher_is_better: bool) -> list[int]:
    """Indices of the points no other beats on both: fewer (or equal) tiles and a better (or equal) figure."""
    sign = 1.0 if higher_is_better else -1.0
    return [i for i, (x, y) in enumerate(points)
            if not any(x2 <= x and sign * y2 >= sign * y and (x2 < x or sign * y2 > sign * y)
                       for j, (x2, y2) in enumerate(points) if j != i)]


def _short(name: str) -> str:
    return name.replace(" least busy packed", " packed").replace("slack, ", "slack+")


def frontier(strategies: list[Strategy]) -> str | None:
    """Two panels over the tile count: latency per inference, and inferences per second; each mapping a dot,
    the ones no other beats on tiles and that figure joined, the chosen one ringed. None with fewer than two
    timed mappings."""
    timed = [s for s in strategies if s.latency_s is not None and s.throughput_per_s is not None]
    if len(timed) < 2:
        return None
    fig, axes = new_figure(9.6, 3.4, ncols=2)
    panels = ((axes[0], "Latency", "latency per inference (µs)", lambda s: s.latency_s * 1e6, False),
              (axes[1], "Throughput", "inferences per second", lambda s: s.throughput_per_s, True))
    for ax, title, label, y_of, higher in panels:
        points = [(float(s.tiles), y_of(s)) for s in timed]
        front = sorted(_front(points, higher), key=lambda i: points[i][0])
        if len(front) > 1:
            ax.plot([points[i][0] for i in front], [points[i][1] for i in front], color=FRONT_COLOR, linewidth=1.2,
                    drawstyle="steps-post", zorder=2, label="front")
        for k, (s, (x, y)) in enumerate(zip(timed, points)):
            ax.scatter([x], [y], s=64 if s.chosen else 26, zorder=4 if s.chosen else 3,
                       color=CHOSEN_COLOR if s.chosen else (FRONT_COLOR if k in front else MUTED),
                       edgecolor="white", linewidth=0.6)
            if s.chosen or s.name in LABELLED:  # the rest are in the strategies table; labels would collide
                ax.annotate(_short(s.name), (x, y), xytext=(4, 4), textcoords="offset points", fontsize=7.5,
                            color=INK if s.chosen else MUTED)
        ax.set_xlabel("tiles")
        ax.set_ylabel(label)
        ax.set_title(title)
    axes[1].scatter([], [], s=64, color=CHOSEN_COLOR, label="chosen")
    legend_outside(axes[1])
    return to_svg(fig, "The mappings the placement search tried: tiles against latency and throughput, the chosen "
                       "one marked")
