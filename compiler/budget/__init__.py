"""Mixed mapping under an accuracy budget (`--accuracy-budget`; docs/accuracy_budget.md): per weight block, analog at
an ADC resolution, analog with redundancy, or digital (compiler/block_options.py), chosen to minimize energy (or
latency, or tiles) subject to a verified accuracy drop.

- `measure.py`: an assignment's drop by simulation (per seed) and its price by the estimator;
- `choose.py`: the exact choice over priced sensitivities (Pareto dynamic programming; no torch);
- `search.py`: `choose_options`: sensitivity pass, choice, verification, tighten and retry.
"""
from compiler.budget.search import BudgetResult, choose_options

__all__ = ["choose_options", "BudgetResult"]
