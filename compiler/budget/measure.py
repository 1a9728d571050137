"""What the budget search measures: the metric's drop of an assignment (by simulation, per seed) and its price (by the
estimator). An assignment is a dict block name -> BlockOption; absent blocks run as the reference."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from compiler.block_options import BlockOption
from compiler.errors import UserError
from compiler.evaluation.accuracy import DriftTime, evaluate_accuracy
from compiler.evaluation.intervals import ci_half_width, finite_mean
from reports.schema import BUDGET_FIGURES, HEADLINE_METRICS

# the value of a fidelity metric for the FP model itself (task metrics: the FP model's own score, measured)
_IDEAL = {"output_rel_l2": 0.0, "embedding_rel_l2": 0.0, "top1_agreement": 1.0, "embedding_cosine_mean": 1.0,
          "embedding_cosine_min": 1.0, "retrieval_agreement": 1.0}


@dataclass(frozen=True)
class Drops:
    """Per-seed drops of one assignment, seeds in order."""
    seeds: tuple[int, ...]
    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return finite_mean(self.values)

    @property
    def ci95(self) -> float:
        half = ci_half_width(self.values)
        return math.inf if half is None else half

    def minus(self, other: "Drops") -> "Drops":
        """Paired differences, seed by seed (the same chips programmed both ways)."""
        if self.seeds != other.seeds:
            raise ValueError("paired differences need the same seeds")
        return Drops(self.seeds, tuple(a - b for a, b in zip(self.values, other.values)))


@dataclass
class Measurer:
    """Simulates assignments of one placement at one drift time and returns the chosen metric's drop from the FP
    model: fp - chip for a metric where higher is better, chip - fp otherwise. `metric` None: the run's headline
    metric (reports.schema.HEADLINE_METRICS, the first the run measures)."""
    placed: Any
    at: DriftTime
    metric: str | None
    eval_data: Any = None
    device: str = "cpu"
    eval_sentences: int | None = None
    reference_model: Any = None
    simulations: int = 0
    higher_is_better: bool = True
    fp_value: float | None = None
    metrics_measured: list[str] = field(default_factory=list)

    def drops(self, options: dict[str, BlockOption], seeds: list[int]) -> Drops:
        saved = self.placed.block_options
        self.placed.block_options = dict(options)
        try:
            result = evaluate_accuracy(self.placed, [self.at], seeds=seeds, eval_data=self.eval_data,
                                       device=self.device, progress=False, eval_sentences=self.eval_sentences,
                                       reference_model=self.reference_model)
        finally:
            self.placed.block_options = saved
        self.simulations += len(seeds)
        if self.fp_value is None:
            self._resolve_metric(result)
        values = result["results"][0]["per_seed"][self.metric]
        if any(v is None for v in values):
            raise UserError(f"--budget-metric {self.metric}: not finite on some simulated chips; choose another metric")
        sign = 1.0 if self.higher_is_better else -1.0
        return Drops(tuple(seeds), tuple(sign * (self.fp_value - v) for v in values))

    def _resolve_metric(self, result: dict) -> None:
        measured = list(result["metrics"])
        self.metrics_measured = measured
        if self.metric is None:
            self.metric = next((m for m in HEADLINE_METRICS if m in measured), measured[0])
        if self.metric not in measured:
            raise UserError(f"--budget-metric {self.metric}: this run measures {', '.join(measured)}")
        self.higher_is_better = bool(result["metrics"][self.metric]["higher_is_better"])
        if self.metric in _IDEAL:
            self.fp_value = _IDEAL[self.metric]
        else:
            fp = (result.get("fp_reference") or {}).get("task") or {}
            value = fp.get(self.metric[len("task_"):]) if self.metric.startswith("task_") else None
            if value is None:
                raise UserError(f"--budget-metric {self.metric}: no FP reference value to measure a drop from")
            self.fp_value = float(value)


@dataclass
class Pricer:
    """The objective of an assignment, priced by the estimator as the run's cost is (same batch, sequence length,
    calibrated pulse lengths)."""
    placed: Any
    objective: str
    batch: int = 1
    seq_len: int = 128
    calibration: Any = None
    calls: int = 0

    def __call__(self, options: dict[str, BlockOption]) -> float:
        return self.figures(options)[BUDGET_FIGURES[self.objective]]

    def figures(self, options: dict[str, BlockOption]) -> dict[str, float]:
        """energy_J, latency_s, tiles of the assignment."""
        from compiler.backends.estimator import inference_cost
        from compiler.backends.estimator.options import tiles_powered
        saved = self.placed.block_options
        self.placed.block_options = dict(options)
        try:
            self.calls += 1
            energy, latency = inference_cost(self.placed, self.batch, self.seq_len, self.calibration)
            return {"energy_J": energy, "latency_s": latency, "tiles": float(tiles_powered(self.placed))}
        finally:
            self.placed.block_options = saved

