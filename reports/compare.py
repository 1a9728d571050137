"""Finished runs side by side: `aimc-compile compare DIR [DIR ...]`, or

    from reports.compare import compare_runs
    compare_runs([Path("aimc-out/rb-pcm"), Path("aimc-out/rb-hermes")], Path("aimc-out/compare"))

writes compare.html (one column per run: every headline figure, the spec values that differ highlighted,
energy by component and accuracy against drift time overlaid) and compare.csv (the same rows as plain numbers
in SI units). Like the report, it reads the JSON files of each run through reports/schema.py and nothing else:
no torch, no compiler, no spec file; the page needs no network.
"""
from __future__ import annotations

import csv
import io
import json
import os
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from reports import compare_charts
from reports.charts import accuracy_series, component_label, metric_label, ratio_words
from reports.fmt import csv_row, integer, pct, si, _sig
from reports.power import cost_power_W, peak_figures
from reports.render import (check_replaceable, environment, flatten_spec, overridden_rows, read_outputs, spec_value,
                            write_file)
from reports.schema import AccuracyJson, CostJson, MappingJson, SchemaError
from reports.sections import HEADLINE_METRICS

__all__ = ["compare_runs", "load_runs", "comparison_rows"]
_MISSING = object()  # a spec key one run's spec does not have


@dataclass(frozen=True)
class Run:
    path: Path
    label: str
    mapping: MappingJson
    cost: CostJson | None
    accuracy: AccuracyJson | None
    report: Path | None  # the run's own report.html, when there is one


@dataclass
class Row:
    group: str
    key: str                 # the CSV's field name
    label: str
    unit: str
    values: list[Any]        # per run, as the CSV writes them (None: not in that run)
    shown: list[str]         # per run, as the page shows them
    differs: bool = False    # settings only: highlighted on the page
    overridden: list[bool] = field(default_factory=list)  # spec rows: set with --set in that run


def load_runs(dirs: list[Path]) -> list[Run]:
    """Each directory's outputs through their definitions (reports/render.py's read_outputs, which also refuses
    another schema_version); SchemaError (one line) for a missing, unreadable, invalid or newer-schema file,
    or a directory given twice."""
    if not dirs:
        raise SchemaError("compare: give at least one output directory of aimc-compile")
    seen: dict[Path, Path] = {}
    for folder in map(Path, dirs):
        if folder.resolve() in seen:
            raise SchemaError(f"{folder}: given twice (as {seen[folder.resolve()]}); give each run once")
        seen[folder.resolve()] = folder
    names = [Path(d).resolve().name or str(d) for d in dirs]
    labels = names if len(set(names)) == len(names) else [str(d) for d in dirs]
    runs = []
    for folder, label in zip(map(Path, dirs), labels):
        mapping, cost, accuracy = read_outputs(folder)
        report = folder / "report.html"
        runs.append(Run(folder, label, mapping, cost, accuracy, report if report.is_file() else None))
    return runs


# --- the rows ------------------------------------------------------------------------------------------

def _row(group: str, key: str, label: str, unit: str, runs: list[Run], get: Callable[[Run], Any],
         show: Callable[[Any], str] = str, setting: bool = False) -> Row:
    values = [get(run) for run in runs]
    shown = ["—" if v is None else show(v) for v in values]
    return Row(group, key, label, unit, values, shown, differs=setting and len({repr(v) for v in values}) > 1)


def _cost(get: Callable[[CostJson], Any]) -> Callable[[Run], Any]:
    return lambda run: get(run.cost) if run.cost is not None else None


def _totals(name: str) -> Callable[[Run], Any]:
    return _cost(lambda c: getattr(c.totals, name) if c.totals else None)


def _field(*names: str) -> Callable[[Run], Any]:
    """cost.json's value at a dotted path (`area.chip_mm2`); None where this file has none (older files)."""
    def get(run: Run) -> Any:
        value: Any = run.cost
        for name in names:
            value = getattr(value, name, None)
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    return get


def _peak(run: Run, chips: bool) -> Any:
    if run.cost is None:
        return None
    return peak_figures(run.cost.peak, run.mapping.chips_used if chips else 1)


def comparison_rows(runs: list[Run]) -> list[Row]:
    """Every row of the comparison, in page order: run settings, mapping, cost, power, accuracy, spec."""
    per_inference = _cost(lambda c: c.totals.energy_per_inference_J if c.totals else None)
    m = lambda name: (lambda run: getattr(run.mapping, name))  # noqa: E731
    rows = [
        _row("run", "model", "model", "", runs, m("model"), setting=True),
        _row("run", "task", "task", "", runs, m("task"), setting=True),
        _row("run", "weights", "weights", "", runs, m("weights"), setting=True),
        _row("run", "hw", "spec", "", runs, m("hw"), setting=True),
        _row("run", "hw_file", "spec file", "", runs, m("hw_file"), setting=True),
        _row("run", "allocation", "allocation", "", runs, m("allocation"), setting=True),
        _row("run", "batch", "batch", "", runs, _cost(lambda c: c.batch), setting=True),
        _row("run", "seq_len", "sequence length", "tokens", runs, _cost(lambda c: c.seq_len), setting=True),
        _row("mapping", "tile_shape", "tile shape", "rows x cols", runs,
             lambda r: "x".join(map(str, r.mapping.tile_shape)), lambda v: v.replace("x", "×"), setting=True),
        _row("mapping", "tiles_used", "tiles used", "", runs, m("tiles_used"), integer),
        _row("mapping", "tiles_available", "tiles available", "", runs, m("tiles_available"), integer),
        _row("mapping", "chips_used", "chips", "", runs, m("chips_used"), integer),
        _row("mapping", "mean_utilization", "mean utilization (cells)", "fraction", runs, m("mean_utilization"), pct),
        _row("mapping", "analog_weights", "analog weights", "", runs, m("analog_weights"), integer),
        _row("cost", "energy_per_inference_J", "energy / inference", "J", runs, per_inference, lambda v: si(v, "J")),
        _row("cost", "energy_J", "energy / batch", "J", runs, _totals("energy_J"), lambda v: si(v, "J")),
        _row("cost", "latency_s", "latency", "s", runs, _totals("latency_s"), lambda v: si(v, "s")),
        _row("cost", "period_s", "period between batches", "s", runs, _totals("period_s"), lambda v: si(v, "s")),
        _row("cost", "throughput_inferences_per_s", "throughput", "1/s", runs, _totals("throughput_inferences_per_s"),
             lambda v: si(v, "/s")),
        _row("cost", "tops", "TOPS (sustained)", "TOPS", runs, _totals("tops"), lambda v: _sig(v, 3)),
        _row("cost", "tops_per_w", "TOPS/W", "TOPS/W", runs, _totals("tops_per_w"), lambda v: _sig(v, 3)),
        _row("cost", "power_W", "average power", "W", runs, _totals("power_W"), lambda v: si(v, "W")),
        _row("cost", "peak_tops_chip", "peak TOPS, one chip", "TOPS", runs,
             lambda r: (p := _peak(r, False)) and p.tops, lambda v: _sig(v, 3)),
        _row("cost", "peak_power_chip_W", "peak power, one chip", "W", runs,
             lambda r: (p := _peak(r, False)) and p.power_W, lambda v: si(v, "W")),
        _row("cost", "peak_tops_system", "peak TOPS, all chips used", "TOPS", runs,
             lambda r: (p := _peak(r, True)) and p.tops, lambda v: _sig(v, 3)),
        _row("cost", "peak_power_system_W", "peak power, all chips used", "W", runs,
             lambda r: (p := _peak(r, True)) and p.power_W, lambda v: si(v, "W")),
        _row("cost", "baseline_energy_ratio", "energy vs digital INT8 (baseline / AIMC)", "ratio", runs,
             _cost(lambda c: c.baseline.energy_ratio if c.baseline else None),
             lambda v: ratio_words(v, "less", "more") if v > 0 else "—"),
    ]
    rows += _range_rows(runs) + _decode_rows(runs)
    mm2 = lambda v: f"{_sig(v, 3)} mm²"  # noqa: E731
    for key, label, unit, get, show in (  # where the estimate has them (cost.json of issue 16 on)
            ("static_power_W", "static power", "W", _field("totals", "static_power_W"), lambda v: si(v, "W")),
            ("chip_area_mm2", "area, one chip", "mm2", _field("area", "chip_mm2"), mm2),
            ("area_mm2", "area, all chips used", "mm2", _field("totals", "area_mm2"), mm2),
            ("tops_per_mm2", "TOPS/mm² (sustained)", "TOPS/mm2", _field("totals", "tops_per_mm2"),
             lambda v: _sig(v, 3))):
        if any(get(run) is not None for run in runs):
            rows.append(_row("cost", key, label, unit, runs, get, show))
    rows += _component_rows(runs) + _accuracy_rows(runs) + _spec_rows(runs)
    return rows


# the estimator's uncertainty ranges (cost.json sensitivity.ranges: low, estimate, high; energy per batch)
RANGE_ROWS = (("energy_J", "energy / batch", "J"), ("latency_s", "latency", "s"), ("area_mm2", "area", "mm2"))


def _range_rows(runs: list[Run]) -> list[Row]:
    """Low and high ends of energy, latency and area, where the runs' estimates carry ranges."""
    def end(metric: str, index: int) -> Callable[[Run], Any]:
        def get(run: Run) -> Any:
            ranges = run.cost.sensitivity.ranges if run.cost and run.cost.sensitivity else {}
            return ranges[metric][index] if metric in ranges else None
        return get
    rows = []
    for metric, label, unit in RANGE_ROWS:
        show = (lambda v: f"{_sig(v, 3)} mm²") if unit == "mm2" else (lambda v, unit=unit: si(v, unit))
        for index, side in ((0, "low"), (2, "high")):
            row = _row("cost range", f"{metric}.{side}", f"{label}, {side} end", unit, runs, end(metric, index), show)
            if any(v is not None for v in row.values):
                rows.append(row)
    return rows


# a causal LM's serving figures (cost.json decode): what an architect compares decoders by
DECODE_ROWS = (("ttft_s", "time to first token", "s", lambda v: si(v, "s")),
               ("tokens_per_s", "tokens/s (decode)", "1/s", lambda v: si(v, "/s")),
               ("energy_per_token_J", "energy / token (decode)", "J", lambda v: si(v, "J")),
               ("baseline_ttft_s", "baseline: time to first token", "s", lambda v: si(v, "s")),
               ("baseline_tokens_per_s", "baseline: tokens/s", "1/s", lambda v: si(v, "/s")),
               ("baseline_energy_per_token_J", "baseline: energy / token", "J", lambda v: si(v, "J")))


def _decode_rows(runs: list[Run]) -> list[Row]:
    """Decode figures where any run is a causal LM (the others show —), then the low and high ends of the chip's
    (cost.json decode.ranges: the spec's cost numbers one at a time, at the run's batch)."""
    rows = []
    for key, label, unit, show in DECODE_ROWS:
        row = _row("decode", key, label, unit, runs,
                   _cost(lambda c, key=key: getattr(c.decode, key) if c.decode else None), show)
        if any(v is not None for v in row.values):
            rows.append(row)
    for key, label, unit, show in DECODE_ROWS[:3]:  # the chip's figures (the baselines carry no range)
        for index, side in ((0, "low"), (2, "high")):
            row = _row("decode range", f"{key}.{side}", f"{label}, {side} end", unit, runs, _cost(
                lambda c, key=key, index=index: getattr(c.decode.ranges, key)[index]
                if c.decode and c.decode.ranges else None), show)
            if any(v is not None for v in row.values):
                rows.append(row)
    return rows


def _component_rows(runs: list[Run]) -> list[Row]:
    """Energy per inference and average power, per component (components in the first run's order)."""
    names: list[str] = []
    for run in runs:
        names += [n for n in (run.cost.energy_by_component_J if run.cost else {}) if n not in names]

    def energy(run: Run, name: str) -> float | None:
        if run.cost is None or name not in run.cost.energy_by_component_J:
            return None
        return run.cost.energy_by_component_J[name] / run.cost.batch

    def power(run: Run, name: str) -> float | None:
        return cost_power_W(run.cost).get(name) if run.cost is not None else None

    rows = [_row("energy by component", n, component_label(n), "J per inference", runs,
                 lambda r, n=n: energy(r, n), lambda v: si(v, "J")) for n in names]
    rows += [_row("power by component", n, component_label(n), "W", runs,
                  lambda r, n=n: power(r, n), lambda v: si(v, "W")) for n in names]
    return rows


def drift_times(runs: list[Run]) -> list[tuple[str, float]]:
    """(label, seconds) of every drift time any run simulated, by time; the first run's label names it."""
    found: dict[float, str] = {}
    for run in runs:
        for result in run.accuracy.results if run.accuracy else []:
            found.setdefault(result.seconds, result.label)
    return [(label, seconds) for seconds, label in sorted(found.items())]


def metrics(runs: list[Run]) -> list[str]:
    """Every metric of the runs, the headline ones (reports/sections.py) first."""
    names: list[str] = []
    for run in runs:
        names += [n for n in (run.accuracy.metrics if run.accuracy else {}) if n not in names]
    order = {name: i for i, name in enumerate(HEADLINE_METRICS)}
    return sorted(names, key=lambda n: order.get(n, len(order)))


def _accuracy_rows(runs: list[Run]) -> list[Row]:
    """Per metric and drift time, mean ± std over seeds and the 95 % interval [low, high]; the variants (PT optimization off, not fine-tuned)
    for each run's headline metric."""
    if not any(run.accuracy for run in runs):
        return []
    rows = [_row("accuracy", "seeds", "programmed chips (seeds)", "", runs,
                 lambda r: len(r.accuracy.seeds) if r.accuracy else None, setting=True),
            _row("accuracy", "eval", "evaluation data", "", runs,
                 lambda r: r.accuracy.eval.source if r.accuracy and r.accuracy.eval else None, setting=True),
            _row("accuracy", "simulator", "simulator", "", runs,
                 lambda r: (f"{r.accuracy.simulator.backend} ({r.accuracy.simulator.random_stream})"
                            if r.accuracy and r.accuracy.simulator else None), setting=True)]
    times = drift_times(runs)
    for variant in range(3):  # 0: the run itself; 1, 2: accuracy_series' further series, if any
        for metric in metrics(runs) if variant == 0 else _headlines(runs):
            for label, seconds in times:
                cells = [_cell(run, variant, metric, seconds) for run in runs]
                if variant and all(c is None for c in cells):
                    continue
                names = [c[0] for c in cells if c is not None]
                what = f"{metric_label(metric)} at {label}" + (f" ({names[0]})" if variant else "")
                key = f"{metric}.{label}" + (f".variant{variant}" if variant else "")
                parts = [Row("accuracy", f"{key}.{part}", what, part, [c and c[index] for c in cells], [])
                         for index, part in enumerate(ACCURACY_PARTS, start=1)]
                shown = ["—" if mean is None else _sig(mean, 4) + ("" if std is None else f" ± {_sig(std, 2)}")
                         + ("" if low is None or high is None else f" [{_sig(low, 4)}, {_sig(high, 4)}]")
                         for mean, std, low, high in zip(*(part.values for part in parts))]
                for part in parts:
                    part.shown = shown
                rows += parts
    return rows


def _headlines(runs: list[Run]) -> list[str]:
    found = []
    for run in runs:
        names = list(run.accuracy.metrics) if run.accuracy else []
        headline = next((m for m in HEADLINE_METRICS if m in names), names[0] if names else None)
        if headline and headline not in found:
            found.append(headline)
    return found


# per metric and drift time: the mean over seeds, its std, and the 95 % interval of the mean inside the metric's
# range (accuracy.json low/high: docs/accuracy.md); the page shows them in one cell, the CSV a row each
ACCURACY_PARTS = ("mean", "std", "low", "high")


def _cell(run: Run, variant: int, metric: str, seconds: float) -> tuple | None:
    """(series label, mean, std, low, high) of one run's variant at one drift time; None where it has none."""
    series = accuracy_series(run.accuracy) if run.accuracy else []
    if variant >= len(series):
        return None
    label, results = series[variant]
    result = next((r for r in results if r.seconds == seconds), None)
    if result is None or metric not in result.mean:
        return None
    return label, *(getattr(result, part).get(metric) for part in ACCURACY_PARTS)


def _spec_rows(runs: list[Run]) -> list[Row]:
    """Every spec value as used (`--set` applied), by dotted key; `differs` where the runs disagree."""
    specs = [dict(flatten_spec(run.mapping.hw_spec)) for run in runs]
    overrides = [overridden_rows(run.mapping) for run in runs]
    keys: list[str] = []
    for spec in specs:
        keys += [k for k in spec if k not in keys and k not in ("name", "description")]
    rows = []
    for key in keys:
        values = [spec.get(key, _MISSING) for spec in specs]
        shown = ["not in this spec" if v is _MISSING else spec_value(v) for v in values]
        differs = any(v is _MISSING or v != values[0] for v in values)
        rows.append(Row("spec", key, key, "", [None if v is _MISSING else v for v in values], shown,
                        differs=differs, overridden=[key in o for o in overrides]))
    return rows


# --- writing -------------------------------------------------------------------------------------------

def _targets(out: Path) -> tuple[Path, Path]:
    """(compare.html, compare.csv): `out` itself when it names an .html file (the CSV beside it), else inside
    the directory `out`."""
    out = Path(out)
    html, table = ((out, out.with_suffix(".csv")) if out.suffix.lower() in (".html", ".htm")
                   else (out / "compare.html", out / "compare.csv"))
    try:
        html.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SchemaError(f"{html.parent}: cannot create it ({exc.strerror or exc}); give a writable --out") from None
    return html, table


_CSV_HEADER = ("group", "field", "unit", "differs")


def is_comparison(head: str) -> bool:
    """Whether a page (its first 64 kB) is a compare.html of aimc-compile (its title says so)."""
    return head.startswith("<!DOCTYPE html>") and "runs compared · aimc-compile</title>" in head


def is_comparison_table(head: str) -> bool:
    """Whether a CSV file (its first 64 kB) is a compare.csv of aimc-compile (its header says so)."""
    return head.startswith(",".join(_CSV_HEADER) + ",")


def comparison_csv(runs: list[Run], rows: list[Row]) -> str:
    """group, field, unit, differs, then one column per run; numbers in SI units, full precision."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(csv_row([*_CSV_HEADER, *(run.label for run in runs)]))
    for row in rows:  # labels, keys and spec values come from folder names and files: neutralized (csv_row)
        writer.writerow(csv_row([row.group, row.key, row.unit, "yes" if row.differs else ""]
                                + ["" if v is None else json.dumps(v) if isinstance(v, (list, dict, bool)) else v
                                   for v in row.values]))
    return buffer.getvalue()


def render_comparison(runs: list[Run], rows: list[Row], html_path: Path | None = None) -> str:
    """The page as a string; links to each run's report are relative to `html_path`'s folder."""
    links = []
    for run in runs:
        if run.report is None or html_path is None:
            links.append(None)
            continue
        relative = os.path.relpath(run.report.resolve(), html_path.resolve().parent)
        links.append(urllib.parse.quote(Path(relative).as_posix()))
    groups: dict[str, list[Row]] = {}
    for row in rows:
        if not (row.group == "accuracy" and row.unit in ACCURACY_PARTS[1:]):  # shown with its mean
            groups.setdefault(row.group, []).append(row)
    spec = groups.pop("spec", [])
    return environment().get_template("compare.html.j2").render(
        runs=runs, links=links, groups=groups, spec_differs=[r for r in spec if r.differs],
        spec_same=[r for r in spec if not r.differs],
        energy_chart=compare_charts.energy_by_run(runs), accuracy_chart=compare_charts.accuracy_by_run(runs),
        colors=compare_charts.RUN_COLORS)


def compare_runs(dirs: list[Path], out: Path) -> tuple[Path, Path]:
    """Write the comparison of the runs in `dirs` as compare.html and compare.csv (see _targets for `out`);
    returns their paths. SchemaError (one line) for unreadable or incompatible runs, or an unwritable `out`."""
    runs = load_runs([Path(d) for d in dirs])
    rows = comparison_rows(runs)
    html, table = _targets(Path(out))
    # both checked before either is written: a file of the user's (notes.csv beside --out notes.html, a run's
    # report.html) is never replaced, and never half the comparison written
    check_replaceable(table, "a comparison table", is_comparison_table)
    check_replaceable(html, "a comparison page", is_comparison)
    write_file(table, comparison_csv(runs, rows), "a comparison table", is_comparison_table)
    write_file(html, render_comparison(runs, rows, html), "a comparison page", is_comparison)
    return html, table
