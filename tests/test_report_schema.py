"""reports/schema.py: one typed definition of each JSON output, checked by the writer and the reader.

The report renders from the JSON files alone (no torch, no compiler), tampered files give one clear line,
and what the compiler writes passes the definitions it is read with.
"""
from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from compiler.cli import main
from compiler.evaluation.accuracy import evaluate_accuracy
from compiler.training.finetune import HwaSummary
from compiler.training.hardware import HwaNoiseConfig
from compiler.writers import cost_json, mapping_json, write_json as _write_json
from reports import write_report
from reports.schema import FILES, AccuracyJson, CostJson, HwaJson, MappingJson, SchemaError, SpecOverride, check_output
from test_report import accuracy_fixture, tiny_placed  # noqa: F401  (the shared tiny model and accuracy data)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture()
def out_dir(tmp_path: Path, tiny_placed) -> Path:
    """An output directory as a run with --simulate leaves it (the accuracy data written by hand)."""
    (tmp_path / "mapping.json").write_text(json.dumps(mapping_json(tiny_placed)))
    (tmp_path / "cost.json").write_text(json.dumps(cost_json(tiny_placed.estimate(batch=1, seq_len=8))))
    (tmp_path / "accuracy.json").write_text(json.dumps(accuracy_fixture(tiny_placed)))
    return tmp_path


# --- (a) the report imports neither torch nor the compiler -----------------------------------------------

def test_import_and_render_leave_torch_and_the_compiler_out(out_dir: Path) -> None:
    script = """if True:
        import sys
        from pathlib import Path
        def foreign():
            return sorted(m for m in sys.modules if m.split(".")[0] == "torch" or m.startswith("compiler"))
        import reports
        assert not foreign(), ("import reports", foreign())
        import reports.schema
        path = reports.write_report(Path(sys.argv[1]))
        assert path.is_file() and not foreign(), ("render", foreign())
    """
    run = subprocess.run([sys.executable, "-c", script, str(out_dir)], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    html = (out_dir / "report.html").read_text()
    assert 'id="cost"' in html and 'id="accuracy"' in html


# --- (b) tampered JSON: one line, exit 2, through `aimc-compile report DIR` --------------------------------

def _tamper_mapping(key, value):
    def edit(data):
        data[key] = value
        return data
    return "mapping.json", edit


TAMPERED = {
    "mapping is a list": ("mapping.json", lambda data: [data], "mapping.json: expected a JSON object at the top level"),
    "tiles_used a string": (*_tamper_mapping("tiles_used", "12"), "field 'tiles_used': expected an integer"),
    "layers null": (*_tamper_mapping("layers", None), "field 'layers': expected a list, got null"),
    "layers missing": ("mapping.json", lambda data: {k: v for k, v in data.items() if k != "layers"},
                       "missing field 'layers'"),
    "a slice's rows": ("mapping.json", lambda data: _first_slice(data, rows=[0]),
                       "field 'layers[0].tiles[0].rows': expected a list of 2 integers"),
    "a tile key": (*_tamper_mapping("tile_utilization", {"zero": 0.5}), "field 'tile_utilization'"),
    "overrides a list": (*_tamper_mapping("hw_overrides", ["tile.rows"]), "field 'hw_overrides'"),
    "cost is a list": ("cost.json", lambda data: [data], "cost.json: expected a JSON object at the top level"),
    "energy a string": ("cost.json", lambda data: {**data, "totals": {**data["totals"], "energy_J": "1 mJ"}},
                        "field 'totals.energy_J': expected a number, got the string '1 mJ'"),
    "sweep axis": ("cost.json", lambda data: {**data, "sweep": {**data["sweep"], "axis": "__class__"}},
                   "field 'sweep.axis': expected one of 'seq_len', 'batch'"),
    "metrics a string": ("accuracy.json", lambda data: {**data, "metrics": "top1"},
                         "field 'metrics': expected a JSON object, got the string 'top1'"),
    "a per-seed value": ("accuracy.json", lambda data: _first_result(data, per_seed={"top1_agreement": ["x"]}),
                         "field 'results[0].per_seed.top1_agreement[0]': expected a number or null"),
    "results missing": ("accuracy.json", lambda data: {k: v for k, v in data.items() if k != "results"},
                        "missing field 'results'"),
}


def _first_slice(data: dict, **change) -> dict:
    layer = next(layer for layer in data["layers"] if layer.get("tiles"))
    layer["tiles"][0].update(change)
    data["layers"] = [layer] + [entry for entry in data["layers"] if entry is not layer]
    return data


def _first_result(data: dict, **change) -> dict:
    data["results"][0].update(change)
    return data


def _report(capsys, directory: Path) -> tuple[int, str]:
    code = main(["report", str(directory)])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("case", list(TAMPERED))
def test_tampered_json_is_one_line_and_exit_2(out_dir: Path, capsys, case: str) -> None:
    name, edit, message = TAMPERED[case]
    path = out_dir / name
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    code, err = _report(capsys, out_dir)
    assert code == 2 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("aimc-compile: error: "), err
    assert str(path) in err and message in err, err


def test_unreadable_json_and_huge_values_stay_one_short_line(out_dir: Path, capsys) -> None:
    (out_dir / "cost.json").write_text("{not json")
    code, err = _report(capsys, out_dir)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "cost.json: cannot read it as JSON" in err
    (out_dir / "cost.json").unlink()
    data = json.loads((out_dir / "mapping.json").read_text())
    data["tiles_used"] = "x" * 100_000
    data["tile_utilization"] = {"y" * 100_000: 0.5}
    (out_dir / "mapping.json").write_text(json.dumps(data))
    code, err = _report(capsys, out_dir)
    assert code == 2 and len(err) < 300 + len(str(out_dir)), err
    data["tiles_used"] = 3
    (out_dir / "mapping.json").write_text(json.dumps(data))
    code, err = _report(capsys, out_dir)
    assert code == 2 and "tile_utilization" in err and len(err) < 300 + len(str(out_dir)), err


def test_write_report_raises_schema_error_which_is_a_value_error(out_dir: Path) -> None:
    (out_dir / "accuracy.json").write_text(json.dumps({"results": {"1h": 0.1}}))
    with pytest.raises(SchemaError, match=r"accuracy.json: field 'results': expected a list") as info:
        write_report(out_dir)
    assert isinstance(info.value, ValueError)


# --- (c) what the compiler writes passes the definitions ----------------------------------------------------

def test_the_writers_output_passes_the_schema(tmp_path: Path, tiny_placed) -> None:
    """mapping, cost, accuracy and hwa as compiler/writers.py writes them (through its write_json, which checks
    each file before writing), read back through the same definitions."""
    torch.manual_seed(0)
    _write_json(tmp_path / "mapping.json", {**mapping_json(tiny_placed), "command": "aimc-compile tiny"})
    _write_json(tmp_path / "cost.json", cost_json(tiny_placed.estimate(batch=2, seq_len=8)))
    accuracy = evaluate_accuracy(tiny_placed, "1s,1h", seeds=2, progress=False)
    _write_json(tmp_path / "accuracy.json", {**accuracy, "pt_optimization": False})
    summary = HwaSummary(objective="distillation", hardware_aware=True, data="3 sentences", samples=3, steps=2,
                         lr=1e-4, batch_size=2, seq_len=8, seed=0, device="cpu",
                         noise=dataclasses.asdict(HwaNoiseConfig()), losses=[0.5, 0.4], seconds=1.5)
    _write_json(tmp_path / "hwa.json", {"model": "tiny", "checkpoint": "hwa_model", **summary.to_dict()})
    read = {name: cls.from_json(json.loads((tmp_path / name).read_text()), name) for name, cls in FILES.items()}
    mapping, cost = read["mapping.json"], read["cost.json"]
    assert isinstance(mapping, MappingJson) and mapping.tiles_used == tiny_placed.tiles_used
    assert mapping.tile_utilization == tiny_placed.tile_utilization()       # keys read back as tile indices
    assert mapping.hw_overrides == {"tile.rows": SpecOverride(value=32, file=512),
                                    "tile.cols": SpecOverride(value=32, file=512)}
    assert mapping.layers[0].name and mapping.command == "aimc-compile tiny"
    assert isinstance(cost, CostJson) and cost.batch == 2 and cost.totals.energy_J > 0
    assert isinstance(read["accuracy.json"], AccuracyJson) and len(read["accuracy.json"].results) == 2
    assert isinstance(read["hwa.json"], HwaJson) and read["hwa.json"].losses == [0.5, 0.4]
    assert "report.html" in write_report(tmp_path).name


def test_a_transformer_compile_passes_the_schema(roberta_placed_naive) -> None:
    """roberta-base (conftest's shared compile): every op kind, no overrides, the estimator's full cost.json."""
    mapping = json.loads(json.dumps(mapping_json(roberta_placed_naive)))
    check_output("mapping.json", mapping)
    assert mapping["hw_overrides"] == {} and {"analog", "digital"} <= {entry["kind"] for entry in mapping["layers"]}
    check_output("cost.json", json.loads(json.dumps(roberta_placed_naive.estimate(batch=1, seq_len=128).to_json())))


def test_a_writer_that_breaks_the_schema_is_a_bug_not_a_user_error(tmp_path: Path, tiny_placed) -> None:
    cost = tiny_placed.estimate(batch=1, seq_len=8).to_json()
    del cost["totals"]["latency_s"]                          # a field the writer always writes
    with pytest.raises(RuntimeError, match="cost.json: missing field 'totals.latency_s'"):
        _write_json(tmp_path / "cost.json", cost)
    assert not (tmp_path / "cost.json").exists()
    with pytest.raises(SchemaError, match="missing field 'totals.latency_s'"):
        check_output("cost.json", cost)
    CostJson.from_json(cost, "cost.json")                     # the reader takes an older file without it


# --- the page ------------------------------------------------------------------------------------------------

def test_json_in_script_blocks_escapes_every_angle_bracket(out_dir: Path) -> None:
    command = "aimc-compile tiny --out '<!--x' --set a='</script><script>alert(1)</script>' && x > y"
    html = write_report(out_dir, command=command).read_text()
    embedded = re.search(r'<script type="application/json" id="report-command">(.*?)</script>', html, re.S)
    assert embedded and "<" not in embedded.group(1) and ">" not in embedded.group(1)
    assert json.loads(embedded.group(1)) == command
    assert "<!--" not in html.split('<script type="application/json"', 1)[1]
    assert command in write_report(out_dir).read_text().replace("&#39;", "'").replace("&lt;", "<") \
        .replace("&gt;", ">").replace("&amp;", "&")                # a re-render keeps the command


def test_overrides_come_from_the_mapping_not_the_spec_file(out_dir: Path) -> None:
    data = json.loads((out_dir / "mapping.json").read_text())
    data["hw_file"] = str(out_dir / "gone.yaml")                     # the spec file is not read
    data["hw_overrides"]["dac"] = {"value": {"bits": 4}, "file": {"bits": 8, "encoding": "PWM"}}  # a section
    data["hw_spec"]["dac"]["bits"] = 4
    (out_dir / "mapping.json").write_text(json.dumps(data))
    html = write_report(out_dir).read_text()
    marked = dict(re.findall(r'class="override" data-key="([^"]+)">.*?<span class="was">file: ([^<]+)</span>', html))
    assert marked == {"tile.rows": "512", "tile.cols": "512", "dac.bits": "8"}
    assert "3 spec values overridden" in html
