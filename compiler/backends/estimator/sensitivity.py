"""How sure the estimate is: each cost number's relative uncertainty, propagated one at a time.

Every numeric cost field that the spec sets carries a relative uncertainty u: its entry in the spec's
`uncertainty` section, else `uncertainty.default` (estimates only: an architect's choices such as lanes or
buffer sizes take none unless listed). Each field is moved to x (1 - u) and x (1 + u) alone, the evaluation is
redone, and the deviations of energy, latency and area are kept: the tornado chart of the report. The range of
a result combines them as independent errors, root-sum-square of the downward and of the upward deviations.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable

from compiler.hw_spec import HardwareSpec, cost_number_fields

MEASURES = ("energy_J", "latency_s", "area_mm2")
Evaluation = Callable[[HardwareSpec], dict[str, float]]


@dataclass(frozen=True)
class FieldSensitivity:
    field: str
    value: float
    relative_uncertainty: float
    low: dict[str, float]           # each metric with the field at x (1 - u)
    high: dict[str, float]          # ... at x (1 + u)

    def swing(self, metric: str) -> float:
        return abs(self.high[metric] - self.low[metric])


@dataclass(frozen=True)
class Sensitivity:
    base: dict[str, float]
    fields: tuple[FieldSensitivity, ...]

    def range(self, metric: str) -> tuple[float, float, float]:
        """(low, base, high) of a metric: root-sum-square of the one-at-a-time deviations each way."""
        base = self.base[metric]
        down = up = 0.0
        for f in self.fields:
            lo, hi = min(f.low[metric], f.high[metric]) - base, max(f.low[metric], f.high[metric]) - base
            down += min(lo, 0.0) ** 2
            up += max(hi, 0.0) ** 2
        return base - math.sqrt(down), base, base + math.sqrt(up)

    def to_json(self, top: int = 12) -> dict:
        ranked = sorted(self.fields, key=lambda f: -f.swing("energy_J"))
        return {
            "method": "one at a time: each number at x(1 - u) and x(1 + u); ranges are the root-sum-square of the "
                      "deviations (independent errors)",
            "ranges": {m: list(self.range(m)) for m in MEASURES},
            "fields": [{"field": f.field, "value": f.value, "relative_uncertainty": f.relative_uncertainty,
                        **{m: [f.low[m], f.high[m]] for m in MEASURES}} for f in ranked[:top]],
            "fields_total": len(self.fields),
        }


def uncertainties(hw: HardwareSpec) -> dict[str, float]:
    """Field -> relative uncertainty, for the numeric cost fields the spec sets."""
    given = dict(hw.uncertainty or {})
    default = given.pop("default", 0.0)
    estimates = set(cost_number_fields(design=False))
    out = {}
    for name in cost_number_fields():
        if _get(hw, name) is None:
            continue
        u = given.get(name, default if name in estimates else 0.0)
        if u > 0:
            out[name] = u
    return out


def sensitivity(hw: HardwareSpec, evaluate: Evaluation) -> Sensitivity:
    base = evaluate(hw)
    fields = []
    for name, u in uncertainties(hw).items():
        value = _get(hw, name)
        low, high = evaluate(with_value(hw, name, value * (1 - u))), evaluate(with_value(hw, name, value * (1 + u)))
        fields.append(FieldSensitivity(name, value, u, low, high))
    return Sensitivity(base, tuple(fields))


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part, None) if obj is not None else None
    return obj


def with_value(obj: Any, dotted: str, value: Any) -> Any:
    """A copy of the frozen spec `obj` with the dotted field set to `value`."""
    head, _, rest = dotted.partition(".")
    if not rest:
        return dataclasses.replace(obj, **{head: value})
    return dataclasses.replace(obj, **{head: with_value(getattr(obj, head), rest, value)})
