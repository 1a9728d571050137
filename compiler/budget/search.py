"""`choose_options`: the cheapest per-block options of a placement whose verified accuracy drop stays within a budget
(docs/accuracy_budget.md).

1. Sensitivity: the reference chip (every block analog at adc.bits) and, for each block and each other option, the
   chip with only that block changed, on the same SENSITIVITY_SEEDS at the budget's drift time: the paired
   per-seed difference of drops, its mean and 95 % interval. Each option of each block is priced by the estimator
   the same way (the objective with only that block changed, minus the reference's).
2. Choice: predicted drop of an assignment = the reference's drop + the sum of its blocks' differences (additivity:
   an approximation, checked by step 3); choose.solve finds the assignment of least summed cost within the limit
   and the free SRAM, exactly.
3. Verification: the chosen assignment simulated whole on VERIFY_SEEDS (disjoint from the sensitivity's); it meets
   the budget when the upper end of the 95 % interval of its mean drop is within it. Otherwise the limit on the
   predicted drop is tightened by the miss and the choice repeated, at most MAX_TIGHTENINGS times.
The uniform mappings (every block analog at each resolution, every block digital) are simulated on the same
verification seeds and priced exactly, for the report's comparison.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

from compiler import progress
from compiler.block_options import BlockOption, available_options, check_choices, reference_option
from compiler.budget.choose import Choice, solve
from compiler.budget.measure import Drops, Measurer, Pricer
from compiler.errors import UserError
from reports.schema import BUDGET_FIGURES

SENSITIVITY_SEEDS = (0, 1, 2)
VERIFY_SEEDS = (1000, 1001, 1002, 1003, 1004)
MAX_TIGHTENINGS = 3
FRONT_POINTS = 60            # the frontier written to accuracy.json, thinned evenly along cost


@dataclass
class BudgetResult:
    options: dict[str, BlockOption]          # the chosen option of every block
    record: dict                             # accuracy.json's "budget"


def choose_options(placed, measurer: Measurer, pricer: Pricer, delta: float) -> BudgetResult:
    """The cheapest verified assignment of `placed`'s blocks within `delta` (the metric's drop from FP at the
    measurer's drift time); a UserError in one line when no assignment is predicted to meet it."""
    started = time.perf_counter()
    hw = placed.hw
    check_choices(hw)
    placed.refuse_stacked_experts("--accuracy-budget")
    from compiler.backends.estimator.options import free_macros, sram_problem, sram_use
    reference = reference_option(hw)
    options = available_options(hw)
    others = [o for o in options if o != reference]
    blocks = list(placed.blocks)
    seeds = list(SENSITIVITY_SEEDS)

    progress.say(f"accuracy budget: {len(blocks)} blocks x {len(others)} options ({', '.join(o.label for o in others)}) "
                 f"on {len(seeds)} chips at t={measurer.at.label}, then verification on {len(VERIFY_SEEDS)}")
    ref_drops = measurer.drops({}, seeds)
    base_cost = pricer({})
    table: list[dict] = []
    choices: list[list[Choice]] = []
    bar = progress.bar(total=len(blocks) * len(others), desc="sensitivity", unit="option")
    with bar:
        for name in blocks:
            row = [Choice(0.0, 0.0, 0.0)]
            for option in others:
                diff = measurer.drops({name: option}, seeds).minus(ref_drops)
                cost = pricer({name: option}) - base_cost
                use = sram_use(placed, name, option)
                row.append(Choice(cost, diff.mean, use))
                table.append({"block": name, "option": option.label, "delta_drop": diff.mean,
                              "delta_drop_ci95": _finite(diff.ci95), "delta_cost": cost, "sram_macros": use,
                              "per_seed": list(diff.values)})
                bar.update(1)
            choices.append(row)
    sensitivity_sims = measurer.simulations
    sensitivity_s = time.perf_counter() - started
    free = free_macros(placed)
    solution = solve(choices, free)
    ref_mean = ref_drops.mean
    if ref_mean + solution.min_drop > delta:
        raise UserError(f"--accuracy-budget {delta:g}: no mapping is predicted to meet it; the closest achievable "
                        f"drop of {measurer.metric} at {measurer.at.label} is {ref_mean + solution.min_drop:.4g} "
                        f"(predicted from the per-block sensitivities; reference mapping {ref_mean:.4g})")

    def assignment_of(picks: tuple[int, ...]) -> dict[str, BlockOption]:
        return {name: ([reference] + others)[i] for name, i in zip(blocks, picks) if i}

    def ci_of(picks: tuple[int, ...]) -> float:
        """95 % half-width of the predicted drop: the reference's and each changed block's, added in quadrature."""
        parts = [ref_drops.ci95] + [_row(table, name, others[i - 1]).get("delta_drop_ci95") or 0.0
                                    for name, i in zip(blocks, picks) if i]
        return math.sqrt(sum(p * p for p in parts)) if all(math.isfinite(p) for p in parts) else math.inf

    tries: list[dict] = []
    limit = delta - ref_mean
    chosen = None
    for attempt in range(1 + MAX_TIGHTENINGS):
        best = solution.best(limit)
        if best is None:
            break
        assignment = assignment_of(best.picks)
        if any(t["picks"] == list(best.picks) for t in tries):  # the same assignment again: tighten further
            limit = best.drop - 1e-9
            continue
        measured = measurer.drops(assignment, list(VERIFY_SEEDS))
        upper = measured.mean + measured.ci95
        placed_figures = pricer.figures(assignment)
        entry = {"attempt": attempt, "limit": ref_mean + limit, "predicted_drop": ref_mean + best.drop,
                 "predicted_ci95": _finite(ci_of(best.picks)), "predicted_cost": base_cost + best.cost,
                 "measured_drop": measured.mean, "measured_ci95": _finite(measured.ci95), "measured_upper": upper,
                 "per_seed": list(measured.values), **placed_figures, "met": upper <= delta,
                 "picks": list(best.picks), "options": {n: o.label for n, o in assignment.items()}}
        tries.append(entry)
        progress.say(f"accuracy budget: try {attempt + 1}: predicted drop {entry['predicted_drop']:.4g}, measured "
                     f"{measured.mean:.4g} +- {_text(entry['measured_ci95'])} (95 %), "
                     f"{pricer.objective} {placed_figures[BUDGET_FIGURES[pricer.objective]]:.4g}"
                     + ("" if entry["met"] else ": misses, tightening"))
        if entry["met"]:
            chosen = entry
            break
        limit -= max(upper - delta, 1e-9)
    uniform = _uniform(placed, measurer, pricer, options, ref_drops, table, delta, sram_problem)
    final = chosen or (min(tries, key=lambda t: t["measured_upper"]) if tries else None)
    chosen_options = {name: reference for name in blocks}
    if final is not None:
        chosen_options.update({name: o for name, o in assignment_of(tuple(final["picks"])).items()})
    if chosen is None:
        progress.say(f"accuracy budget: NOT MET after {len(tries)} tries; keeping the try with the lowest measured "
                     f"drop" if tries else "accuracy budget: NOT MET: no assignment within the tightened limit")
    record = {
        "metric": measurer.metric, "higher_is_better": measurer.higher_is_better, "fp_value": measurer.fp_value,
        "at": {"label": measurer.at.label, "seconds": measurer.at.seconds}, "delta": delta,
        "objective": pricer.objective, "options": [o.label for o in options], "reference_option": reference.label,
        "sensitivity_seeds": seeds, "verify_seeds": list(VERIFY_SEEDS),
        "reference_drop": ref_drops.mean, "reference_drop_ci95": _finite(ref_drops.ci95),
        "reference_cost": base_cost, "sram_macros_free": None if math.isinf(free) else free,
        "sensitivity": table, "tries": tries, "chosen": None if chosen is None else tries.index(chosen),
        "met": chosen is not None, "uniform": uniform,
        "frontier": _thin([{"cost": base_cost + a.cost, "predicted_drop": ref_mean + a.drop}
                           for a in solution.front()]),
        "exact": solution.exact, "simulations": measurer.simulations, "sensitivity_simulations": sensitivity_sims,
        "pricings": pricer.calls, "sensitivity_seconds": sensitivity_s, "seconds": time.perf_counter() - started,
        "block_options": {name: o.label for name, o in chosen_options.items()},
    }
    return BudgetResult(chosen_options, record)


def _uniform(placed, measurer: Measurer, pricer: Pricer, options: list[BlockOption], ref_drops: Drops,
             table: list[dict], delta: float, sram_problem) -> list[dict]:
    """Every block analog at each resolution, and every block digital: predicted, measured on the verification
    seeds, priced exactly."""
    blocks = list(placed.blocks)
    rows = []
    for option in options:
        if option.copies > 1:
            continue
        assignment = {name: option for name in blocks}
        predicted = ref_drops.mean + sum(_row(table, name, option).get("delta_drop", 0.0) for name in blocks)
        measured = measurer.drops(assignment, list(VERIFY_SEEDS))
        saved = placed.block_options
        placed.block_options = assignment
        try:
            too_big = sram_problem(placed)
        finally:
            placed.block_options = saved
        upper = measured.mean + measured.ci95
        rows.append({"name": f"all {option.label}", "option": option.label, "predicted_drop": predicted,
                     "measured_drop": measured.mean, "measured_ci95": _finite(measured.ci95), "measured_upper": upper,
                     "per_seed": list(measured.values), **pricer.figures(assignment), "meets_budget": upper <= delta,
                     "fits_sram": too_big is None, "sram_note": too_big})
    return rows


def _row(table: list[dict], block: str, option: BlockOption) -> dict:
    for row in table:
        if row["block"] == block and row["option"] == option.label:
            return row
    return {}


def _text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2g}"


def _finite(value: float) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _thin(points: list[dict]) -> list[dict]:
    if len(points) <= FRONT_POINTS:
        return points
    step = (len(points) - 1) / (FRONT_POINTS - 1)
    return [points[round(i * step)] for i in range(FRONT_POINTS)]


__all__ = ["choose_options", "BudgetResult", "SENSITIVITY_SEEDS", "VERIFY_SEEDS", "MAX_TIGHTENINGS"]
