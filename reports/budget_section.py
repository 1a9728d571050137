"""The report's accuracy-budget section, from accuracy.json's `budget` record (`--accuracy-budget`, compiler/budget):
per-block sensitivity, the energy-accuracy frontier of the assignments tried, the chosen mapping against the uniform
ones."""
from __future__ import annotations

from dataclasses import dataclass

from reports import fmt
from reports.charts import AIMC_COLOR, INK, MUTED
from reports.schema import BUDGET_FIGURES, AccuracyJson, BudgetPoint, BudgetRecord
from reports.svgfig import legend_outside, new_figure, to_svg

CHOSEN_COLOR, TRY_COLOR, UNIFORM_COLOR = "#e07b39", "#8061a9", "#2a9d8f"
_UNIT = {"energy": ("µJ", 1e6), "latency": ("µs", 1e6), "tiles": ("tiles", 1.0)}


@dataclass
class SensitivityRow:
    block: str
    cells: list[str]          # per option: "Δdrop ± ci · Δcost"
    chosen: str               # the block's chosen option


@dataclass
class PointRow:
    name: str
    predicted: str
    measured: str
    upper: str
    energy: str
    latency: str
    tiles: str
    verdict: str
    chosen: bool


@dataclass
class BudgetSection:
    data: BudgetRecord
    options: list[str]        # the non-reference options, the table's columns
    sensitivity: list[SensitivityRow]
    points: list[PointRow]
    chart: str | None
    summary: str


def build_budget_section(accuracy: AccuracyJson | None) -> BudgetSection | None:
    record = accuracy.budget if accuracy is not None else None
    if record is None:
        return None
    unit, scale = _UNIT[record.objective]
    options = [o for o in record.options if o != record.reference_option]
    by_cell = {(r.block, r.option): r for r in record.sensitivity}
    blocks = list(dict.fromkeys(r.block for r in record.sensitivity))
    rows = []
    for block in blocks:
        cells = []
        for option in options:
            r = by_cell.get((block, option))
            cells.append("—" if r is None else f"{_signed(r.delta_drop)} ± {_num(r.delta_drop_ci95)} · "
                                               f"{_signed(r.delta_cost * scale)} {unit}")
        rows.append(SensitivityRow(block, cells, record.block_options.get(block, record.reference_option)))
    points = [_point(f"try {t.attempt + 1}" if t.attempt is not None else "try", t, record.chosen == i)
              for i, t in enumerate(record.tries)]
    points += [_point(u.name or "uniform", u, False) for u in record.uniform]
    chosen = record.tries[record.chosen] if record.chosen is not None and 0 <= record.chosen < len(record.tries) \
        else None  # an index a hand-made file may get wrong: no chosen point rather than a traceback
    summary = (f"Budget: drop of {record.metric} at {record.at.label} within {_num(record.delta)} "
               f"(FP value {_num(record.fp_value)}), minimizing {record.objective}. ")
    if chosen is not None:
        summary += (f"Chosen mapping: measured drop {_num(chosen.measured_drop)} ± {_num(chosen.measured_ci95)} "
                    f"(95 %, {len(record.verify_seeds)} chips), predicted {_num(chosen.predicted_drop)}; "
                    f"{fmt.si(chosen.energy_J, 'J')} per inference.")
    else:
        summary += "NOT MET: no assignment tried was verified within the budget; the one kept is marked in the table."
    summary += (f" {record.simulations} chip simulations ({record.sensitivity_simulations} in the sensitivity pass), "
                f"{record.seconds:.0f} s.")
    return BudgetSection(record, options, rows, points, _chart(record), summary)


def _point(name: str, p: BudgetPoint, chosen: bool) -> PointRow:
    if p.met is not None:
        verdict = "meets" if p.met else "misses"
    else:
        verdict = ("meets" if p.meets_budget else "misses") + ("" if p.fits_sram in (None, True) else
                                                               "; exceeds SRAM")
    return PointRow(name, _num(p.predicted_drop), f"{_num(p.measured_drop)} ± {_num(p.measured_ci95)}",
                    _num(p.measured_upper), fmt.si(p.energy_J, "J"), fmt.si(p.latency_s, "s"), f"{p.tiles:g}",
                    verdict, chosen)


def _chart(record: BudgetRecord) -> str | None:
    """Cost against drop: the predicted frontier of every assignment (line), the verified tries and uniform
    mappings (measured drop with its 95 % interval), the budget as a vertical line."""
    if not record.frontier and not record.tries:
        return None
    unit, scale = _UNIT[record.objective]
    key = BUDGET_FIGURES[record.objective]
    fig, ax = new_figure(7.2, 3.6)
    front = sorted(record.frontier, key=lambda p: p.predicted_drop)
    if front:
        ax.plot([p.predicted_drop for p in front], [p.cost * scale for p in front], color=AIMC_COLOR, linewidth=1.2,
                drawstyle="steps-post", label="predicted frontier")
    for points, color in ((record.tries, TRY_COLOR), (record.uniform, UNIFORM_COLOR)):
        for i, p in enumerate(points):
            is_chosen = points is record.tries and record.chosen == i
            ax.errorbar([p.measured_drop], [getattr(p, key) * scale], xerr=[[p.measured_ci95 or 0], [p.measured_ci95 or 0]],
                        fmt="o", color=CHOSEN_COLOR if is_chosen else color, markersize=7 if is_chosen else 5, zorder=4)
            if points is record.uniform:  # labels staggered: uniform analog mappings sit close together
                ax.annotate(p.option or p.name or "", (p.measured_drop, getattr(p, key) * scale),
                            xytext=(4, 4 + 9 * (i % 3)), textcoords="offset points", fontsize=7.5, color=MUTED)
    ax.axvline(record.delta, color=INK, linewidth=0.9, linestyle="--", label="budget")
    for color, label in ((TRY_COLOR, "tries, measured ± 95 %"), (UNIFORM_COLOR, "uniform, measured ± 95 %"),
                         (CHOSEN_COLOR, "chosen")):
        ax.scatter([], [], s=30, color=color, label=label)
    ax.set_xlabel(f"drop of {record.metric} at {record.at.label}")
    ax.set_ylabel(f"{record.objective} ({unit})")
    ax.set_title("Assignments: predicted frontier, verified points")
    legend_outside(ax)
    return to_svg(fig, f"The accuracy-budget frontier: {record.objective} against the predicted and measured drop")


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}"


def _signed(value: float) -> str:
    return f"{value:+.3g}"
