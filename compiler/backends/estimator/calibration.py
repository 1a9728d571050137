"""Leave-one-out calibration on published silicon (hw_specs/validation.yaml) and the predictions it validates.

A parameter no independent source pins (a converter's energy inside a crossbar; a digital chip's energy per op over
its bare multiplier and adder, and its power beyond its MACs per die area) is a factor on a projected value. For each
chip it predicts, the factor is fitted on the figures of the OTHER chips of its kind (`fitted_to` metrics; figures of
one design share a group and are left out together). AIMC: each such figure is solved for the factor exactly (the
energy in the figure's scope, or the tile's or chip's area for a TOPS/mm^2 figure, is affine in it), and the fit is
their geometric mean (least squares on log factor). No area parameter is shipped: only HERMES publishes an area.
Digital: the MAC overhead and the uncore power are fitted jointly (linear least squares on the relative errors of the
chips' powers at peak). A spec not in the set (pcm_1M, digital_int8) takes the factors fitted on every chip of its
kind. The shipped specs hold these calibrated values
(tests/test_validation.py checks that they are what this module fits).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import yaml

from compiler.errors import UserError
from compiler.hw_spec import SPEC_DIR, load_hw_spec
from compiler.backends.estimator.baseline import uncore_W
from compiler.backends.estimator.converters import node_warnings
from compiler.backends.estimator.node import node_change_warnings
from compiler.backends.estimator.peak import PeakThroughput, peak_throughput
from compiler.backends.estimator.fields import PJ

VALIDATION_FILE = SPEC_DIR / "validation.yaml"
REFERENCE_SPEC = "pcm_1M"  # where the bare digital primitives (Horowitz 2014) are read from, with their node


@dataclass(frozen=True)
class Figure:
    chip: str
    group: str
    kind: str                       # aimc or digital
    spec: Any                       # aimc: a spec name; digital: {node_nm, vdd_V}
    metric: str
    label: str
    published: float
    unit: str
    citation: str
    scope: tuple[str, ...] | str    # the model's components the figure counts, or "all" / "chip"
    verified: bool
    bound: float                    # |relative error| allowed (the honest current error, rounded up)


@dataclass(frozen=True)
class Parameter:
    name: str
    kind: str
    fitted_to: tuple[str, ...]
    fields: dict[str, tuple[str, float]]   # spec -> (field, projected value)


@dataclass(frozen=True)
class Row:
    """One published figure against its leave-one-out prediction."""
    chip: str
    group: str
    metric: str
    label: str
    published: float
    predicted: float
    unit: str
    bound: float
    verified: bool
    citation: str
    scope: str
    fitted: dict[str, dict[str, Any]]     # parameter -> {"value": factor, "fitted_on": [groups]}

    @property
    def error(self) -> float:
        return self.predicted / self.published - 1.0

    def to_json(self) -> dict:
        return {"chip": self.chip, "group": self.group, "metric": self.metric, "label": self.label,
                "published": self.published, "predicted": self.predicted, "unit": self.unit, "error": self.error,
                "bound": self.bound, "within_bound": abs(self.error) <= self.bound, "verified": self.verified,
                "citation": self.citation, "scope": self.scope, "fitted": self.fitted}


@dataclass(frozen=True)
class ValidationSet:
    parameters: tuple[Parameter, ...]
    figures: tuple[Figure, ...]

    def groups(self, kind: str) -> list[str]:
        return sorted({f.group for f in self.figures if f.kind == kind})

    def group_of_spec(self, spec: str) -> str | None:
        return next((f.group for f in self.figures if f.spec == spec), None)


@lru_cache(maxsize=1)
def validation_set() -> ValidationSet:
    try:
        raw = yaml.safe_load(VALIDATION_FILE.read_text())  # a shipped file, not user input
        params = tuple(Parameter(name, p["kind"], tuple(p["fitted_to"]),
                                 {spec: (v["field"], float(v["projected"])) for spec, v in p["fields"].items()})
                       for name, p in raw["parameters"].items())
        figures = tuple(Figure(chip=c["chip"], group=c["group"], kind=c["kind"], spec=c["spec"], metric=f["metric"],
                               label=f["label"], published=float(f["published"]), unit=f["unit"],
                               citation=" ".join(f["citation"].split()),
                               scope=tuple(f["scope"]) if isinstance(f["scope"], list) else f["scope"],
                               verified=bool(f["verified"]), bound=float(f["bound"]))
                        for c in raw["chips"] for f in c["figures"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{VALIDATION_FILE}: cannot read the validation set ({exc!r:.120})") from None
    return ValidationSet(params, figures)


# --- the models' predictions of one figure, given the factors ---------------------------------------------------

def _aimc_peak(spec: str, factors: dict[str, float], vs: ValidationSet) -> PeakThroughput:
    overrides = {}
    for p in vs.parameters:
        if p.kind == "aimc" and spec in p.fields:
            name, projected = p.fields[spec]
            overrides[name] = factors[p.name] * projected
    return peak_throughput(load_hw_spec(spec, overrides))


def _scoped_energy(peak: PeakThroughput, scope: tuple[str, ...] | str) -> float:
    parts = peak.energy_by_component_J
    return math.fsum(parts.values()) if isinstance(scope, str) else math.fsum(parts[c] for c in scope)


AREA_METRICS = ("core_tops_per_mm2", "tops_per_mm2")   # one tile's throughput over its area; the chip's over its


def _throughput_and_area(fig: Figure, peak: PeakThroughput) -> tuple[float, float]:
    """(TOPS, mm^2) of an area figure: one tile's (a core) or the whole chip's."""
    if fig.metric == "core_tops_per_mm2":
        return peak.ops_per_mvm / peak.mvm_time_s / 1e12, peak.tile_area_mm2
    return peak.tops, peak.chip_area_mm2


def aimc_metric(fig: Figure, peak: PeakThroughput) -> float:
    if fig.metric == "tops":
        return peak.tops
    if fig.metric == "tops_per_w":
        return peak.ops_per_mvm / _scoped_energy(peak, fig.scope) / 1e12
    if fig.metric in AREA_METRICS:
        tops, mm2 = _throughput_and_area(fig, peak)
        return tops / mm2
    if fig.metric == "mvm_time_ns":
        return peak.mvm_time_s * 1e9
    raise UserError(f"{VALIDATION_FILE}: unknown metric {fig.metric!r} of {fig.chip}")


def bare_mac_J(node_nm: float, vdd_V: float) -> float:
    """An INT8 multiply and an INT32 add (Horowitz 2014, from the reference spec) at another node and supply."""
    ref = load_hw_spec(REFERENCE_SPEC)
    d = ref.energy.digital
    return (d.int8_mult_pJ + d.int32_add_pJ) * PJ * (node_nm / d.node_nm) * (vdd_V / d.vdd_V) ** 2


def digital_terms(spec: dict) -> tuple[float, float]:
    """A published digital chip at its peak: (its MAC power per unit of mac_overhead, its uncore power per unit of
    uncore_W_per_mm2), W. Its clock is its peak over its MACs."""
    clock_GHz = spec["tops"] * 1e12 / (2 * spec["macs"]) / 1e9
    mac_W = spec["tops"] * 1e12 / 2 * bare_mac_J(spec["node_nm"], spec["vdd_V"])
    return mac_W, uncore_W(1.0, spec["area_mm2"], spec["node_nm"], spec["vdd_V"], clock_GHz)


def digital_tops_per_w(fig: Figure, overhead: float, uncore_per_mm2: float) -> float:
    mac_W, uncore_unit = digital_terms(fig.spec)
    return fig.spec["tops"] / (mac_W * overhead + uncore_unit * uncore_per_mm2)


def _digital_names(vs: ValidationSet) -> tuple[str, str]:
    """(the MAC overhead's parameter, the uncore's), by the baseline field each calibrates."""
    by_field = {field: p.name for p in vs.parameters if p.kind == "digital" for field, _ in p.fields.values()}
    return by_field["mac_overhead"], by_field["uncore_W_per_mm2"]


def _predict(fig: Figure, factors: dict[str, float], vs: ValidationSet) -> float:
    if fig.kind == "digital":
        overhead, uncore = _digital_names(vs)
        return digital_tops_per_w(fig, factors[overhead], factors[uncore])
    return aimc_metric(fig, _aimc_peak(fig.spec, factors, vs))


# --- fitting ------------------------------------------------------------------------------------------------------

def _solve(fig: Figure, param: Parameter, vs: ValidationSet) -> float:
    """The factor of `param` at which the model meets `fig` (its other parameters at 1). The quantity the figure
    divides by is affine in the factor (the scoped energy for TOPS/W; the tile's or chip's area, a sum of parts, for
    TOPS/mm^2), so two evaluations give it exactly."""
    others = {p.name: 1.0 for p in vs.parameters}
    peaks = [_aimc_peak(fig.spec, {**others, param.name: f}, vs) for f in (1.0, 2.0)]
    if fig.metric in AREA_METRICS:
        (tops, q1), (_, q2) = (_throughput_and_area(fig, peak) for peak in peaks)
        target, what = tops / fig.published, "area"
    else:
        q1, q2 = (_scoped_energy(peak, fig.scope) for peak in peaks)
        target, what = peaks[0].ops_per_mvm / (fig.published * 1e12), "energy"
    slope = q2 - q1
    if slope <= 0 or target <= q1 - slope:
        raise UserError(f"{VALIDATION_FILE}: {fig.chip} {fig.metric} cannot be met by {param.name} (the rest of "
                        f"its scope already exceeds the published {what})")
    return (target - (q1 - slope)) / slope


def _digital_fit(vs: ValidationSet, leave_out: str | None) -> tuple[dict[str, float], tuple[str, ...]]:
    """mac_overhead k >= 1 and uncore_W_per_mm2 u >= 0 fitted jointly on the digital chips outside `leave_out`: each
    chip's power at its peak is k x its MAC power + u x its uncore power per unit, and (k, u) minimize the sum of the
    squared relative errors of those powers (linear least squares; on the bound when the optimum is beyond it)."""
    overhead, uncore = _digital_names(vs)
    used = [f for f in vs.figures if f.kind == "digital" and f.metric == "tops_per_w" and f.group != leave_out]
    if len(used) < 2:
        raise UserError(f"{VALIDATION_FILE}: two digital chips are needed to fit {overhead} and {uncore} without "
                        f"{leave_out}")
    rows = []
    for f in used:
        mac_W, uncore_unit = digital_terms(f.spec)
        power = f.spec["tops"] / f.published
        rows.append((mac_W / power, uncore_unit / power))
    saa = math.fsum(a * a for a, _ in rows)
    sbb = math.fsum(b * b for _, b in rows)
    sab = math.fsum(a * b for a, b in rows)
    sa, sb = math.fsum(a for a, _ in rows), math.fsum(b for _, b in rows)
    det = saa * sbb - sab * sab
    k, u = ((sa * sbb - sb * sab) / det, (saa * sb - sab * sa) / det) if det > 0 else (0.0, -1.0)
    if k < 1.0 or u < 0.0:  # on a bound: the other parameter alone
        k = 1.0
        u = max(math.fsum(b * (1.0 - a) for a, b in rows) / sbb, 0.0)
    return {overhead: k, uncore: u}, tuple(sorted({f.group for f in used}))


@lru_cache(maxsize=64)
def fitted_factor(name: str, leave_out: str | None = None) -> tuple[float, tuple[str, ...]]:
    """(factor, groups fitted on): the geometric mean of the factors solved on every `fitted_to` figure of the
    parameter's kind outside the group `leave_out`."""
    vs = validation_set()
    (param,) = [p for p in vs.parameters if p.name == name]
    if param.kind == "digital":
        values, groups = _digital_fit(vs, leave_out)
        return values[name], groups
    used = [f for f in vs.figures if f.kind == param.kind and f.metric in param.fitted_to and f.group != leave_out]
    if not used:
        raise UserError(f"{VALIDATION_FILE}: no chip left to fit {name} on without {leave_out}")
    logs = [math.log(_solve(f, param, vs)) for f in used]
    return math.exp(math.fsum(logs) / len(logs)), tuple(sorted({f.group for f in used}))


def calibrated_value(name: str, spec: str) -> tuple[float, float, tuple[str, ...]]:
    """(the calibrated field value for `spec`, its factor, the groups fitted on): left out when `spec` is a chip of
    the set, else fitted on all."""
    vs = validation_set()
    (param,) = [p for p in vs.parameters if p.name == name]
    factor, groups = fitted_factor(name, vs.group_of_spec(spec))
    return factor * param.fields[spec][1], factor, groups


@lru_cache(maxsize=1)
def validation_rows() -> tuple[Row, ...]:
    """Every published figure of the set against its leave-one-out prediction."""
    vs = validation_set()
    rows = []
    for fig in vs.figures:
        # the parameters fitted to this figure's metric: the others do not move it (a converter's power does not
        # change a throughput or an area), so its prediction takes their projected values
        fits = {p.name: fitted_factor(p.name, fig.group) for p in vs.parameters
                if p.kind == fig.kind and fig.metric in p.fitted_to}
        predicted = _predict(fig, {**{p.name: 1.0 for p in vs.parameters}, **{k: v for k, (v, _) in fits.items()}},
                             vs)
        rows.append(Row(chip=fig.chip, group=fig.group, metric=fig.metric, label=fig.label, published=fig.published,
                        predicted=predicted, unit=fig.unit, bound=fig.bound, verified=fig.verified,
                        citation=fig.citation, scope=fig.scope if isinstance(fig.scope, str) else
                        ", ".join(fig.scope),
                        fitted={k: {"value": v, "fitted_on": list(g)} for k, (v, g) in fits.items()}))
    return tuple(rows)


def loo_error(name: str) -> float:
    """The largest |error| of the figures a parameter is fitted to, each predicted leave-one-out: its uncertainty."""
    (param,) = [p for p in validation_set().parameters if p.name == name]
    return max(abs(r.error) for r in _kind_rows(param.kind) if r.metric in param.fitted_to)


def _kind_rows(kind: str) -> list[Row]:
    groups = set(validation_set().groups(kind))
    return [r for r in validation_rows() if r.group in groups]


@lru_cache(maxsize=1)
def _aimc_nodes() -> tuple[float, ...]:
    return tuple(sorted({load_hw_spec(f.spec).technology_nm for f in validation_set().figures if f.kind == "aimc"}))


def validation_summary(hw: Any) -> dict[str, Any]:
    """What cost.json says about the validation: the chips each model was validated on, every figure's
    leave-one-out error, and where `hw` lies outside what the set covers (warnings, never silence)."""
    def figures(rows: list[Row]) -> list[dict]:
        return [{"chip": r.chip, "metric": r.metric, "published": r.published, "predicted": r.predicted,
                 "error": r.error} for r in rows]

    def worst(rows: list[Row]) -> float | None:
        return max((abs(r.error) for r in rows if r.metric == "tops_per_w"), default=None)

    aimc, digital = _kind_rows("aimc"), _kind_rows("digital")
    nodes = _aimc_nodes()
    warnings = node_warnings(hw) + node_change_warnings(hw)
    if hw.technology_nm not in nodes:
        warnings.append(f"the AIMC chips of the validation set are at {', '.join(f'{n:g}' for n in nodes)} nm; "
                        f"this chip is at {hw.technology_nm:g} nm: the calibrated converter power is used unscaled")
    return {"method": "leave-one-out: each chip predicted with parameters fitted on the other chips of "
                      "hw_specs/validation.yaml (aimc-compile validate)",
            "chips": sorted({r.chip for r in aimc}), "figures": figures(aimc), "max_abs_error_tops_per_w": worst(aimc),
            "baseline_chips": sorted({r.chip for r in digital}), "baseline_figures": figures(digital),
            "baseline_max_abs_error_tops_per_w": worst(digital), "warnings": warnings}
