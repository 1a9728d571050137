"""The report's accuracy axis (every series beside its drift time's tick, one drift time included) and its power
figures (per component beside energy; the peak of one chip and of all the chips a model spans)."""
from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path

import pytest

from reports import charts, write_report
from reports.fmt import si
from reports.power import build_power_section, peak_figures
from reports.schema import AccuracyJson, CostJson

from test_report import accuracy_fixture, tiny_placed  # noqa: F401  (the shared tiny model and accuracy data)
from compiler.writers import component_power_W, cost_json, mapping_json


def _one_drift_time(accuracy: dict, label: str = "1h") -> dict:
    accuracy = copy.deepcopy(accuracy)
    for key in ("results", "results_without_pt_opt"):
        accuracy[key] = [r for r in accuracy[key] if r["label"] == label]
    accuracy["drift_times"] = [t for t in accuracy["drift_times"] if t["label"] == label]
    return accuracy


def _axis_fraction(ax, x: float) -> float:
    lo, hi = ax.get_xlim()
    return (math.log(x) - math.log(lo)) / (math.log(hi) - math.log(lo))


def _plotted_x(ax) -> list[float]:
    """Every x drawn on the axes: lines, markers, and the error bars' vertical segments."""
    xs = [float(x) for line in ax.get_lines() for x in line.get_xdata()]
    for collection in ax.collections:
        for segment in collection.get_segments():
            xs += [float(point[0]) for point in segment]
    return xs


@pytest.mark.parametrize("labels", [["1h"], ["1s", "1h", "1d", "1y"]])
def test_every_series_sits_beside_its_drift_time_tick(tiny_placed, labels) -> None:
    """With a single drift time, matplotlib fitted the axis to the few percent between the two series and
    drew "PT optimization off" at the far right edge, away from the 1 h tick."""
    data = accuracy_fixture(tiny_placed) if len(labels) > 1 else _one_drift_time(accuracy_fixture(tiny_placed))
    fig = charts.accuracy_figure(AccuracyJson.from_json(data))
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == len(data["metrics"])
    for ax in panels:
        ticks = [_axis_fraction(ax, t) for t in ax.get_xticks()]
        assert [t.get_text() for t in ax.get_xticklabels()] == labels
        assert all(0.05 < t < 0.95 for t in ticks), ticks  # no tick at an edge of the axis
        xs = _plotted_x(ax)
        assert len(xs) >= 2 * len(labels)                   # both series drawn
        for x in xs:
            nearest = min(abs(_axis_fraction(ax, x) - t) for t in ticks)
            assert nearest < 0.04, (labels, x, ax.get_xlim())
    assert charts.accuracy_vs_drift(AccuracyJson.from_json(data)).startswith("<svg")


def test_drift_time_zero_sits_a_decade_below_the_first() -> None:
    assert charts.drift_positions([0.0, 3600.0, 86400.0]) == [360.0, 3600.0, 86400.0]
    assert charts.drift_positions([0.0]) == [0.1]


def _cost(tiny_placed) -> dict:
    """cost.json as the compiler writes it (compiler/writers.py: the estimate, the power per component)."""
    return cost_json(tiny_placed.estimate(batch=2, seq_len=8))


def test_power_per_component_is_energy_over_the_period_and_static_is_the_leakage(tiny_placed) -> None:
    cost = _cost(tiny_placed)
    energy, period = cost["energy_by_component_J"], cost["totals"]["period_s"]
    power = component_power_W(energy, period)
    assert list(power) == list(energy)
    assert math.isclose(sum(power.values()), cost["totals"]["energy_J"] / period, rel_tol=1e-9)
    leakage = component_power_W(energy, period, static_power_W=0.125)
    assert leakage["static"] == 0.125 and all(leakage[k] == power[k] for k in energy if k != "static")
    assert component_power_W(energy, 0.0) == {}


def test_peak_of_the_chips_a_model_spans(tiny_placed) -> None:
    cost = CostJson.from_json(_cost(tiny_placed))
    chip, system = peak_figures(cost.peak, 1), peak_figures(cost.peak, 5)
    assert chip.tops == pytest.approx(cost.peak.tops) and chip.tiles == cost.peak.tiles
    # one chip's peak power: every tile does one MVM per mvm_time at mvm_energy
    assert chip.power_W == pytest.approx(cost.peak.tiles * cost.peak.mvm_energy_J / cost.peak.mvm_time_s)
    assert chip.tops / chip.power_W / 1 == pytest.approx(cost.peak.tops_per_w, rel=1e-9)
    assert system.tops == pytest.approx(5 * chip.tops) and system.power_W == pytest.approx(5 * chip.power_W)
    assert system.tops_per_w == chip.tops_per_w and system.tiles == 5 * chip.tiles
    assert peak_figures(None, 3) is None
    section = build_power_section(cost, chips_used=1)
    assert section.system is None and section.chip is not None
    assert [row.name for row in section.rows][0] == max(cost.energy_by_component_J, key=cost.energy_by_component_J.get)


def test_report_shows_power_beside_energy_and_the_system_peak(tmp_path: Path, tiny_placed) -> None:
    mapping = mapping_json(tiny_placed)
    mapping["chips_used"] = 3  # as if the model spanned three chips
    cost = _cost(tiny_placed)
    (tmp_path / "mapping.json").write_text(json.dumps(mapping))
    (tmp_path / "cost.json").write_text(json.dumps(cost))
    html = write_report(tmp_path).read_text()
    table = re.search(r'<table id="power-table">(.*?)</table>', html, re.S).group(1)
    rows = dict(re.findall(r'<tr data-component="([^"]+)">(.*?)</tr>', table, re.S))
    assert list(rows) == sorted(cost["energy_by_component_J"], key=lambda k: -cost["energy_by_component_J"][k])
    power = component_power_W(cost["energy_by_component_J"], cost["totals"]["period_s"],
                              cost["totals"].get("static_power_W"))
    for name, energy in cost["energy_by_component_J"].items():
        assert si(energy, "J") in rows[name] and si(power[name], "W") in rows[name]
    chip = peak_figures(CostJson.from_json(cost).peak, 1)
    assert 'id="card-peak-chip"' in html and 'id="card-peak-system"' in html and "Peak, 3 chips" in html
    assert si(3 * chip.power_W, "W") in html and si(chip.power_W, "W") in html
    mapping["chips_used"] = 1
    (tmp_path / "mapping.json").write_text(json.dumps(mapping))
    html = write_report(tmp_path).read_text()
    assert 'id="card-peak-chip"' in html and 'id="card-peak-system"' not in html
