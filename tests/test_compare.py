"""`aimc-compile compare`: runs side by side from their JSON files alone (no torch), as HTML and CSV; an
unreadable or incompatible run is one line and exit 2. The page in a real browser: tests/test_report_browser.py."""
from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from compiler import compile_model, load_hw_spec
from compiler.cli import main
from compiler.writers import cost_json, mapping_json
from reports import write_report
from reports.compare import compare_runs
from reports.fmt import si

from test_report import TinyEncoder, accuracy_fixture

ROOT = Path(__file__).resolve().parent.parent


def _write_run(folder: Path, spec: str, overrides: dict, accuracy: bool) -> Path:
    torch.manual_seed(0)
    placed = compile_model(TinyEncoder().eval(), (torch.randn(1, 8, 48),), load_hw_spec(spec, overrides))
    folder.mkdir(parents=True)
    (folder / "mapping.json").write_text(json.dumps(mapping_json(placed)))
    (folder / "cost.json").write_text(json.dumps(cost_json(placed.estimate(batch=2, seq_len=8))))
    if accuracy:
        (folder / "accuracy.json").write_text(json.dumps(accuracy_fixture(placed)))
    write_report(folder)
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[Path]:
    """Three runs of the tiny encoder: 32x32 tiles with accuracy, 64x64 tiles with a 6-bit ADC, and hermes."""
    root = tmp_path_factory.mktemp("runs")
    return [_write_run(root / "small-tiles", "pcm_1M", {"tile.rows": 32, "tile.cols": 32}, accuracy=True),
            _write_run(root / "adc6", "pcm_1M", {"tile.rows": 64, "tile.cols": 64, "adc.bits": 6}, accuracy=False),
            _write_run(root / "hermes", "hermes", {"tile.rows": 32, "tile.cols": 32}, accuracy=False)]


def _csv(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    with path.open() as handle:
        return {(row["group"], row["field"]): row for row in csv.DictReader(handle)}


def test_one_column_per_run_and_numbers_equal_to_the_json(runs, tmp_path) -> None:
    html, table = compare_runs(runs, tmp_path / "cmp")
    assert (html, table) == (tmp_path / "cmp" / "compare.html", tmp_path / "cmp" / "compare.csv")
    rows = _csv(table)
    header = next(csv.reader(table.open()))
    assert header == ["group", "field", "unit", "differs", "small-tiles", "adc6", "hermes"]
    for run in runs:
        mapping = json.loads((run / "mapping.json").read_text())
        cost = json.loads((run / "cost.json").read_text())
        assert rows["mapping", "tiles_used"][run.name] == str(mapping["tiles_used"])
        assert float(rows["cost", "energy_per_inference_J"][run.name]) == cost["totals"]["energy_per_inference_J"]
        assert float(rows["cost", "tops_per_w"][run.name]) == cost["totals"]["tops_per_w"]
        energy = cost["energy_by_component_J"]["adc"]
        assert float(rows["energy by component", "adc"][run.name]) == pytest.approx(energy / cost["batch"])
        assert float(rows["power by component", "adc"][run.name]) == pytest.approx(
            energy / cost["totals"]["period_s"])
    # accuracy: the one run that simulated, mean and std per drift time; empty cells for the others
    accuracy = json.loads((runs[0] / "accuracy.json").read_text())
    for result in accuracy["results"]:
        mean = rows["accuracy", f"top1_agreement.{result['label']}.mean"]
        assert float(mean["small-tiles"]) == result["mean"]["top1_agreement"] and mean["adc6"] == ""
        assert float(rows["accuracy", f"top1_agreement.{result['label']}.std"]["small-tiles"]) == 0.01
    assert ("accuracy", "top1_agreement.1y.variant1.mean") in rows  # PT optimization off, the headline metric
    page = html.read_text()
    assert re.findall(r'<th class="run num" data-run="([^"]+)"', page)[:3] == ["small-tiles", "adc6", "hermes"]
    assert si(json.loads((runs[1] / "cost.json").read_text())["totals"]["latency_s"], "s") in page
    assert 'id="fig-energy"' in page and 'id="fig-accuracy"' in page
    assert not re.search(r'(src|href)="https?:', page) and "<script src" not in page


def test_the_spec_values_that_differ_are_highlighted(runs, tmp_path) -> None:
    html, table = compare_runs(runs, tmp_path / "page.html")
    assert table == tmp_path / "page.csv"      # an .html --out: the CSV beside it, same name
    rows = _csv(table)
    differing = {field for (group, field), row in rows.items() if group == "spec" and row["differs"] == "yes"}
    assert {"tile.rows", "tile.cols", "adc.bits", "tile.count"} <= differing
    assert "dac.bits" not in differing
    assert [rows["spec", "tile.rows"][run.name] for run in runs] == ["32", "64", "32"]
    assert rows["mapping", "tile_shape"]["differs"] == "yes" and rows["run", "batch"]["differs"] == ""
    page = html.read_text()
    spec = re.search(r'<table class="compare" id="spec-differs">(.*?)</table>', page, re.S).group(1)
    row = re.search(r'<tr class="differs" data-key="adc.bits">(.*?)</tr>', spec, re.S).group(1)
    assert re.findall(r'<td class="val[^"]*"[^>]*>([^<]*)</td>', row) == ["8", "6", "8"]
    assert 'class="val override"' in row                      # adc.bits=6 came from --set
    same = re.search(r'<table class="compare" id="spec-same">(.*?)</table>', page, re.S).group(1)
    assert 'data-key="dac.bits"' in same and 'data-key="adc.bits"' not in same


def test_the_cli_subcommand_and_its_one_line_errors(runs, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["compare", *map(str, runs), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"compare: {out / 'compare.html'} and {out / 'compare.csv'}"

    def error(*argv: str) -> str:
        assert main(["compare", *argv, "--out", str(out)]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("aimc-compile: error: ") and "Traceback" not in lines[0]
        return lines[0]

    assert "no such directory" in error(str(runs[0]), str(tmp_path / "missing"))
    assert "given twice" in error(str(runs[0]), str(runs[0]) + "/")
    newer = tmp_path / "newer"
    newer.mkdir()
    mapping = json.loads((runs[0] / "mapping.json").read_text())
    (newer / "mapping.json").write_text(json.dumps({**mapping, "schema_version": 2}))
    assert "schema_version 2" in error(str(runs[0]), str(newer))
    older = tmp_path / "older"
    older.mkdir()
    (older / "mapping.json").write_text(json.dumps({k: v for k, v in mapping.items() if k != "tile_shape"}))
    message = error(str(runs[0]), str(older))
    assert "older/mapping.json" in message and "tile_shape" in message
    (older / "mapping.json").write_text(json.dumps(mapping))
    (older / "accuracy.json").write_text(json.dumps({"results": [{"label": "1h"}]}))  # no seconds
    assert "accuracy.json" in error(str(older))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["compare", str(runs[0]), "--out", str(blocker / "sub")]) == 2
    assert "cannot create" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:  # argparse's usage errors exit, with the house format
        main(["compare"])
    assert exit_.value.code == 2 and "DIR" in capsys.readouterr().err


def test_runs_without_cost_or_accuracy_and_a_minimal_mapping_still_compare(runs, tmp_path) -> None:
    layers = [{"name": "fc", "node": "linear", "kind": "analog", "in_features": 8, "out_features": 4,
               "tiles": [{"tile": 0, "rows": [0, 8], "cols": [0, 4], "in_features": [0, 8], "out_features": [0, 4]}]}]
    minimal = tmp_path / "minimal"
    minimal.mkdir()
    (minimal / "mapping.json").write_text(json.dumps({"model": "m", "hw": "h", "tile_shape": [8, 8], "tiles_used": 1,
                                                      "layers": layers}))
    html, table = compare_runs([runs[1], minimal], tmp_path / "out")
    rows = _csv(table)
    assert rows["mapping", "tiles_used"]["minimal"] == "1" and rows["cost", "energy_J"]["minimal"] == ""
    assert ("accuracy", "seeds") not in rows            # no run simulated: no accuracy rows, no accuracy chart
    page = html.read_text()
    assert 'id="fig-energy"' in page and 'id="fig-accuracy"' not in page
    assert rows["spec", "tile.rows"]["minimal"] == "" and rows["spec", "tile.rows"]["differs"] == "yes"


def test_compare_imports_neither_torch_nor_the_compiler(runs, tmp_path) -> None:
    script = ("import sys; from pathlib import Path; from reports.compare import compare_runs; "
              f"compare_runs([Path(p) for p in {[str(r) for r in runs]!r}], Path({str(tmp_path)!r})); "
              "loaded = [m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'compiler')]; "
              "print(loaded); sys.exit(1 if loaded else 0)")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "compare.html").is_file() and (tmp_path / "compare.csv").is_file()
    cli = ("import sys; from compiler.cli import main; "
           f"code = main(['compare', *{[str(r) for r in runs]!r}, '--out', {str(tmp_path / 'cli')!r}]); "
           "sys.exit(code or ('torch' in sys.modules) * 3)")
    done = subprocess.run([sys.executable, "-c", cli], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr          # 3: the CLI imported torch


def test_ranges_and_decode_figures_are_compared(runs, tmp_path) -> None:
    """compare.csv carries the estimator's low and high ends of energy, latency and area; a causal LM adds its
    decode figures (TTFT, tokens/s, J/token), empty for the encoders beside it."""
    import transformers
    from compiler import load_model
    decoder = tmp_path / "decoder"
    config = transformers.LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    (tmp_path / "llama").mkdir()
    (tmp_path / "llama" / "config.json").write_text(config.to_json_string())
    model, example = load_model(str(tmp_path / "llama"), seq_len=8, materialize=False)
    placed = compile_model(model, example, load_hw_spec("pcm_1M", {"tile.rows": 32, "tile.cols": 32}))
    decoder.mkdir()
    (decoder / "mapping.json").write_text(json.dumps(mapping_json(placed)))
    cost = cost_json(placed.estimate(batch=1, seq_len=8, gen_len=4))
    (decoder / "cost.json").write_text(json.dumps(cost))
    _, table = compare_runs([runs[0], decoder], tmp_path / "cmp")
    rows = _csv(table)
    for run, data in ((runs[0], json.loads((runs[0] / "cost.json").read_text())), (decoder, cost)):
        for metric in ("energy_J", "latency_s", "area_mm2"):
            low, estimate, high = data["sensitivity"]["ranges"][metric]
            assert float(rows["cost range", f"{metric}.low"][run.name]) == low <= estimate
            assert float(rows["cost range", f"{metric}.high"][run.name]) == high >= estimate
    for key in ("ttft_s", "tokens_per_s", "energy_per_token_J"):
        assert float(rows["decode", key]["decoder"]) == cost["decode"][key] > 0
        assert rows["decode", key][runs[0].name] == ""
        low, value, high = cost["decode"]["ranges"][key]
        assert float(rows["decode range", f"{key}.low"]["decoder"]) == low <= value
        assert float(rows["decode range", f"{key}.high"]["decoder"]) == high >= value
        assert rows["decode range", f"{key}.high"][runs[0].name] == ""
    ratio = rows["cost", "baseline_energy_ratio"]
    assert ratio["unit"] == "ratio" and float(ratio["decoder"]) == cost["baseline"]["energy_ratio"]


def test_accuracy_intervals_are_compared_and_reported(runs, tmp_path) -> None:
    """Each metric's 95 % interval inside its range (accuracy.json low/high): a low and a high row per drift time
    in compare.csv, "[low, high]" beside mean ± std on compare.html and in the report's accuracy table."""
    import shutil
    run = tmp_path / "with-intervals"
    shutil.copytree(runs[0], run)
    accuracy = json.loads((run / "accuracy.json").read_text())
    for result in accuracy["results"] + accuracy["results_without_pt_opt"]:
        result["low"] = {m: round(v - 0.0123, 6) for m, v in result["mean"].items()}
        result["high"] = {m: round(min(v + 0.0045, 1.0), 6) for m, v in result["mean"].items()}
    (run / "accuracy.json").write_text(json.dumps(accuracy))
    html, table = compare_runs([run, runs[1]], tmp_path / "cmp")
    rows, page = _csv(table), html.read_text()
    for result in accuracy["results"]:
        key = f"top1_agreement.{result['label']}"
        low, high = result["low"]["top1_agreement"], result["high"]["top1_agreement"]
        assert float(rows["accuracy", f"{key}.low"][run.name]) == low and rows["accuracy", f"{key}.low"]["adc6"] == ""
        assert float(rows["accuracy", f"{key}.high"][run.name]) == high
        assert rows["accuracy", f"{key}.high"]["unit"] == "high"
        assert f"[{low:.4g}, {high:.4g}]" in page
    assert ("accuracy", "top1_agreement.1y.variant1.low") in rows   # PT off: its interval too
    write_report(run)
    report = (run / "report.html").read_text()
    first = accuracy["results"][1]
    assert (f'[{first["low"]["top1_agreement"]:.4g}, {first["high"]["top1_agreement"]:.4g}]' in report)
