"""The cost section's sensitivity figure (a tornado chart), built from cost.json (read through reports/schema.py).

Hand-built SVG rather than matplotlib: a dozen bars and labels need no plotting library, and the page renders in
the time of its other figures (docs/benchmarks.md).
"""
from __future__ import annotations

from html import escape

from reports.fmt import si
from reports.schema import CostJson

LOW_COLOR, HIGH_COLOR, INK, MUTED, GRID = "#8db8e3", "#2f5f98", "#1d2433", "#5f6b7a", "#e6eaf0"
# Components the charts of reports/charts.py do not name or color yet: the estimator's periphery split and area.
EXTRA_COMPONENT_COLORS = {"local_digital": "#d9a441", "control": "#7f8c9b", "digital_units": "#6b8e23",
                          "attention_units": "#8061a9"}
EXTRA_COMPONENT_LABELS = {"local_digital": "local digital unit", "control": "control & clock",
                          "digital_units": "digital lanes", "attention_units": "attention MACs"}
METRIC_UNITS = {"energy_J": ("J", "energy per batch"), "latency_s": ("s", "latency"), "area_mm2": ("mm²", "area")}
LABEL_W, BAR_W, ROW_H, TOP, BOTTOM = 300, 340, 20, 30, 26


def value_text(value: float, unit: str, digits: int = 3) -> str:
    return f"{value:.{digits}g} mm²" if unit == "mm²" else si(value, unit, digits)


def tornado(cost: CostJson, metric: str = "energy_J", top: int = 10) -> str | None:
    """One bar per cost number: the metric with that number alone at x(1 - u) (light) and x(1 + u) (dark),
    around the estimate (the vertical line); the numbers that decide the answer on top."""
    sens = cost.sensitivity
    if sens is None or metric not in sens.ranges or not sens.fields:
        return None
    lo_all, base, hi_all = sens.ranges[metric]
    # a field written without this metric's ends (a hand-edited file) has no bar
    rows = [f for f in sens.fields if getattr(f, metric) and getattr(f, metric)[0] != getattr(f, metric)[1]]
    rows = sorted(rows, key=lambda f: -abs(getattr(f, metric)[1] - getattr(f, metric)[0]))[:top]
    if not rows or not base:
        return None
    unit, name = METRIC_UNITS[metric]
    ends = [v for f in rows for v in getattr(f, metric)] + [base]
    left, right = min(ends), max(ends)
    span = (right - left) or abs(base) or 1.0

    def x(v: float) -> float:
        return LABEL_W + (v - left) / span * BAR_W

    height = TOP + len(rows) * ROW_H + BOTTOM
    parts = [f'<text x="0" y="14" font-weight="bold" fill="{INK}">What decides the {escape(name)}: '
             f'{escape(value_text(lo_all, unit))} … {escape(value_text(hi_all, unit))}</text>']
    for i, f in enumerate(rows):
        y = TOP + i * ROW_H
        lo, hi = getattr(f, metric)
        label = f.field if f.relative_uncertainty is None else f"{f.field}  ±{100 * f.relative_uncertainty:.0f} %"
        parts.append(f'<text x="{LABEL_W - 8}" y="{y + 13}" text-anchor="end" fill="{MUTED}">{escape(label)}</text>')
        for end, color in ((lo, LOW_COLOR), (hi, HIGH_COLOR)):
            a, b = sorted((x(base), x(end)))
            parts.append(f'<rect x="{a:.1f}" y="{y + 3}" width="{max(b - a, 0.5):.1f}" height="{ROW_H - 6}" '
                         f'fill="{color}"><title>{escape(f.field)}: {escape(value_text(end, unit))}</title></rect>')
    bx = x(base)
    parts.append(f'<line x1="{bx:.1f}" x2="{bx:.1f}" y1="{TOP - 4}" y2="{TOP + len(rows) * ROW_H}" '
                 f'stroke="{INK}" stroke-width="1"/>')
    axis_y = TOP + len(rows) * ROW_H + 16
    for v, anchor in ((left, "start"), (base, "middle"), (right, "end")):
        parts.append(f'<text x="{x(v):.1f}" y="{axis_y}" text-anchor="{anchor}" fill="{MUTED}">'
                     f'{escape(value_text(v, unit))}</text>')
    return (f'<svg class="tornado" role="img" aria-label="sensitivity of the {escape(name)}" '
            f'viewBox="0 0 {LABEL_W + BAR_W + 10} {height}" style="width:100%;max-width:{LABEL_W + BAR_W + 10}px" '
            f'font-size="11" font-family="DejaVu Sans, Arial, sans-serif">{"".join(parts)}</svg>')
