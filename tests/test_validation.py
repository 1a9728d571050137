"""The cost model against published silicon (hw_specs/validation.yaml): every figure predicted leave-one-out within
the bound recorded beside it, no chip's figure an input to its own prediction, the shipped specs holding the
calibrated values, the projection differing from pcm_1M only in its converter, and docs/estimator.md showing the
table `aimc-compile validate` prints."""
import json
from pathlib import Path

import pytest
import yaml

from compiler import load_hw_spec
from compiler.backends.estimator import peak_throughput
from compiler.backends.estimator import calibration
from compiler.backends.estimator.calibration import (calibrated_value, fitted_factor, loo_error, validation_rows,
                                                     validation_set)
from compiler.backends.estimator.validate import main, table_markdown
from compiler.hw_spec import SPEC_DIR, load_baseline_spec

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_every_error_is_within_its_recorded_bound():
    rows = validation_rows()
    assert len(rows) == len(validation_set().figures) >= 8
    outside = [(r.chip, r.metric, round(r.error, 3), r.bound) for r in rows if abs(r.error) > r.bound]
    assert not outside, f"beyond the bound recorded in hw_specs/validation.yaml: {outside}"


def test_no_figure_is_an_input_to_its_own_prediction():
    vs = validation_set()
    for row in validation_rows():
        for name, fit in row.fitted.items():
            assert row.group not in fit["fitted_on"], (row.chip, name)
            assert fit["fitted_on"], (row.chip, name)
    # and the fit really moves when the left-out group changes: it is not one number fitted on everything
    (aimc,) = [p.name for p in vs.parameters if p.kind == "aimc"]
    assert fitted_factor(aimc, "hermes")[0] != fitted_factor(aimc, "ambrogio2023")[0]


def test_a_fit_uses_only_the_figures_of_the_other_chips(monkeypatch):
    """Change a left-out chip's published figure: its own prediction must not move."""
    rows = {(r.chip, r.metric): r.predicted for r in validation_rows()}
    vs = validation_set()
    moved = tuple(f if f.chip != "Ambrogio 2023" else type(f)(**{**f.__dict__, "published": f.published * 0.5})
                  for f in vs.figures)
    monkeypatch.setattr(calibration, "validation_set", lambda: type(vs)(vs.parameters, moved))
    calibration.fitted_factor.cache_clear()
    calibration.validation_rows.cache_clear()
    try:
        again = {(r.chip, r.metric): r.predicted for r in calibration.validation_rows()}
    finally:
        calibration.fitted_factor.cache_clear()
        calibration.validation_rows.cache_clear()
    assert again[("Ambrogio 2023", "tops_per_w")] == pytest.approx(rows[("Ambrogio 2023", "tops_per_w")], rel=1e-12)
    assert again[("HERMES", "tops_per_w")] != pytest.approx(rows[("HERMES", "tops_per_w")], rel=1e-3)


AREA_METRICS = ("core_tops_per_mm2", "tops_per_mm2")


def test_no_area_figure_is_fitted_on_its_own_chip(monkeypatch):
    """Only HERMES publishes an area, so no area number may be fitted (it would be fitted on the chip it predicts):
    every area row lists no fitted parameter, and halving all of HERMES' published figures leaves its area
    predictions where they are."""
    area_rows = [r for r in validation_rows() if r.metric in AREA_METRICS]
    assert {r.group for r in area_rows} == {"hermes"} and len(area_rows) >= 3
    assert all(not r.fitted for r in area_rows)
    vs = validation_set()
    assert not any(set(p.fitted_to) & set(AREA_METRICS) for p in vs.parameters)
    halved = tuple(type(f)(**{**f.__dict__, "published": f.published * 0.5}) if f.group == "hermes" else f
                   for f in vs.figures)
    monkeypatch.setattr(calibration, "validation_set", lambda: type(vs)(vs.parameters, halved))
    calibration.fitted_factor.cache_clear()
    calibration.validation_rows.cache_clear()
    try:
        again = {(r.chip, r.label): r.predicted for r in calibration.validation_rows() if r.metric in AREA_METRICS}
    finally:
        calibration.fitted_factor.cache_clear()
        calibration.validation_rows.cache_clear()
    assert again == pytest.approx({(r.chip, r.label): r.predicted for r in area_rows}, rel=1e-12)


def test_an_area_parameter_would_be_fitted_leave_one_out(monkeypatch):
    """The machinery an area fit needs once a second chip publishes an area: a column-periphery factor on the
    converters' area, with a made-up Ambrogio core density beside HERMES' real ones. Each chip's area is predicted
    with the factor fitted on the other, solved exactly, and moving a chip's own published area moves only the
    other chip's prediction."""
    vs = validation_set()
    param = calibration.Parameter("column_periphery", "aimc", ("core_tops_per_mm2",),
                                  {"hermes": ("adc.cco.area_um2", 400.0), "ambrogio2023": ("adc.ramp.area_um2", 400.0)})
    made_up = calibration.Figure(chip="Ambrogio 2023", group="ambrogio2023", kind="aimc", spec="ambrogio2023",
                                 metric="core_tops_per_mm2", label="made-up core density", published=0.8,
                                 unit="TOPS/mm2",
                                 citation="none: a test value", scope="all", verified=False, bound=10.0)

    def rows(figures):
        monkeypatch.setattr(calibration, "validation_set", lambda: type(vs)(vs.parameters + (param,), figures))
        calibration.fitted_factor.cache_clear()
        calibration.validation_rows.cache_clear()
        try:
            table = {(r.chip, r.label): r for r in calibration.validation_rows()}
            factor_without_hermes = calibration.fitted_factor("column_periphery", "hermes")
        finally:
            calibration.fitted_factor.cache_clear()
            calibration.validation_rows.cache_clear()
        return table, factor_without_hermes

    table, (factor, groups) = rows(vs.figures + (made_up,))
    core_label = next(f.label for f in vs.figures if f.chip == "HERMES core" and f.metric == "core_tops_per_mm2")
    ambrogio, hermes_core = table[("Ambrogio 2023", made_up.label)], table[("HERMES core", core_label)]
    assert groups == ("ambrogio2023",) and hermes_core.fitted["column_periphery"]["fitted_on"] == ["ambrogio2023"]
    assert ambrogio.fitted["column_periphery"]["fitted_on"] == ["hermes"]
    monkeypatch.setattr(calibration, "validation_set",
                        lambda: type(vs)(vs.parameters + (param,), vs.figures + (made_up,)))
    factors = {**{p.name: 1.0 for p in vs.parameters}, "column_periphery": factor}
    solved = calibration.aimc_metric(made_up, calibration._aimc_peak("ambrogio2023", factors,
                                                                     calibration.validation_set()))
    assert solved == pytest.approx(made_up.published, rel=1e-9)      # the factor meets the figure it was solved on
    moved = tuple(type(f)(**{**f.__dict__, "published": f.published * 0.5}) if f.group == "hermes" else f
                  for f in vs.figures) + (made_up,)
    again, _ = rows(moved)
    assert again[("HERMES core", hermes_core.label)].predicted == pytest.approx(hermes_core.predicted, rel=1e-12)
    assert again[("Ambrogio 2023", made_up.label)].predicted != pytest.approx(ambrogio.predicted, rel=1e-3)


@pytest.mark.parametrize("param, spec", [("converter_in_array", "hermes"), ("converter_in_array", "ambrogio2023"),
                                         ("converter_in_array", "pcm_1M")])
def test_shipped_chip_specs_hold_the_calibrated_values(param, spec):
    value, _, _ = calibrated_value(param, spec)
    field, _ = dict((p.name, p) for p in validation_set().parameters)[param].fields[spec]
    hw = load_hw_spec(spec)
    section, name = field.rsplit(".", 1)
    obj = hw
    for part in section.split("."):
        obj = getattr(obj, part)
    assert getattr(obj, name) == pytest.approx(value, rel=2e-4), (spec, field)
    assert hw.uncertainty[field] >= loo_error(param) - 1e-9      # its uncertainty: the leave-one-out error


@pytest.mark.parametrize("param, field", [("digital_mac_overhead", "mac_overhead"),
                                          ("digital_uncore", "uncore_W_per_mm2")])
@pytest.mark.parametrize("spec", ["digital_int8", "gpu_h100"])
def test_the_baselines_hold_their_calibrated_values(param, field, spec):
    value, _, groups = calibrated_value(param, "digital_int8")
    assert getattr(load_baseline_spec(spec), field) == pytest.approx(value, rel=2e-4) and len(groups) >= 3


def test_the_digital_fit_is_joint_and_leaves_each_chip_out():
    rows = [r for r in validation_rows() if r.group in validation_set().groups("digital")]
    assert len(rows) >= 4
    for row in rows:
        assert set(row.fitted) == {"digital_mac_overhead", "digital_uncore"}
        fits = {tuple(f["fitted_on"]) for f in row.fitted.values()}
        assert fits == {tuple(sorted(set(validation_set().groups("digital")) - {row.group}))}  # both: the others
    assert len({round(r.fitted["digital_uncore"]["value"], 9) for r in rows}) == len(rows)   # a fit per chip


def test_the_projection_is_pcm_1M_but_for_its_converter():
    shipped = yaml.safe_load((SPEC_DIR / "pcm_1M.yaml").read_text())
    projected = yaml.safe_load((SPEC_DIR / "pcm_1M_projected.yaml").read_text())
    for doc in (shipped, projected):
        for key in ("name", "description"):
            doc.pop(key)
        doc["adc"]["cco"].pop("oscillator_uW")
        doc["uncertainty"].pop("adc.cco.oscillator_uW")
    assert shipped == projected
    assert load_hw_spec("pcm_1M_projected").adc.cco.oscillator_uW == \
        dict((p.name, p) for p in validation_set().parameters)["converter_in_array"].fields["pcm_1M"][1]


def test_hermes_from_the_shipped_spec_meets_the_issue_targets():
    peak = peak_throughput(load_hw_spec("hermes"))        # what cost.json `peak` carries for --hw hermes
    assert abs(peak.tops_per_w / 9.76 - 1) <= 0.25
    ambrogio = peak_throughput(load_hw_spec("ambrogio2023"))
    scope = ("tile_array", "dac", "adc", "control", "network", "static")
    assert abs(ambrogio.ops_per_mvm / sum(ambrogio.energy_by_component_J[c] for c in scope) / 1e12 / 12.4 - 1) <= 0.25


def test_validate_prints_the_table_and_writes_json(tmp_path, capsys):
    code = main(["--json", str(tmp_path / "v.json")])
    out = capsys.readouterr().out
    assert code == 0, out
    data = json.loads((tmp_path / "v.json").read_text())
    assert len(data["rows"]) == len(validation_rows()) and all(r["within_bound"] for r in data["rows"])
    for row in validation_rows():
        assert row.chip in out and f"{100 * row.error:+.1f} %" in out
    assert main(["--nope"]) == 2
    from compiler.cli import main as cli_main  # the subcommand runs the same table
    assert cli_main(["validate"]) == 0 and capsys.readouterr().out.startswith("chip ")


def test_the_docs_show_the_table():
    assert table_markdown() in (DOCS / "estimator.md").read_text(), "docs/estimator.md: paste `table_markdown()`"


def test_a_chip_outside_the_sets_node_is_warned_about():
    from compiler.backends.estimator.calibration import validation_summary
    assert validation_summary(load_hw_spec("pcm_1M"))["warnings"] == []  # the 7 nm leakage: cost.json static
    warnings = validation_summary(load_hw_spec("pcm_1M", {"technology_nm": 7}))["warnings"]
    assert any("14 nm" in w and "7 nm" in w for w in warnings) and any("adc.cco" in w for w in warnings)
