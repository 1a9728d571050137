"""Property-based tests (Hypothesis): whatever spec file, `--set` string or tampered JSON output it is given,
the tool either succeeds or gives its one-line user error (UserError, SchemaError; the CLI: exit status 2 and
one stderr line), never anything else, and never writes outside the folder it was given.

Derandomized, without an example database and with a fixed number of examples: the same inputs on every run
(CI included), well under a minute in all. Cheap paths: load_hw_spec and parse_override directly, the CLI on
a one-layer BERT checkpoint, `aimc-compile report` on copies of its outputs.
"""
from __future__ import annotations

import contextlib
import io
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler import UserError, load_hw_spec
from compiler.cli import main
from compiler.hw_spec import SPEC_DIR, HardwareSpec, parse_override

PCM_TEXT = (SPEC_DIR / "pcm_1M.yaml").read_text()
PCM = yaml.safe_load(PCM_TEXT)
MAX_MESSAGE = 4000  # ten problems of a few hundred characters at most


def _settings(examples: int):
    return settings(max_examples=examples, derandomize=True, database=None, deadline=None, print_blob=False,
                    suppress_health_check=list(HealthCheck))


def _paths(tree: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path of a nested dict/list (sections and leaves)."""
    found = []
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else []
    for key, value in items:
        found.append(prefix + (key,))
        found.extend(_paths(value, prefix + (key,)))
    return found


SPEC_PATHS = _paths(PCM)
DOTTED = sorted({".".join(map(str, p)) for p in SPEC_PATHS if all(isinstance(k, str) for k in p)})

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.integers(), st.floats(),
                    st.text(max_size=12), st.sampled_from(["PWM", "per_head", "fp16", "1e-9", "", "x" * 300]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.one_of(st.text(max_size=8), st.integers(), st.booleans()), inner, max_size=4), max_leaves=8)


def _alias_bomb(levels: int) -> str:
    text = 'b0: &b0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for i in range(1, levels):
        text += f"b{i}: &b{i} [" + ",".join([f"*b{i - 1}"] * 9) + "]\n"
    return text


@st.composite
def spec_texts(draw) -> str | bytes:
    """pcm_1M.yaml with fields dropped, renamed, retyped or nested deep, or its text cut, extended, aliased."""
    data = json.loads(json.dumps(PCM))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(SPEC_PATHS))
        parent = data
        for key in path[:-1]:
            parent = parent[key] if isinstance(parent, dict) and key in parent else None
            if not isinstance(parent, dict):
                break
        if not isinstance(parent, dict) or path[-1] not in parent:
            continue
        action = draw(st.sampled_from(["drop", "rename", "retype", "nest"]))
        if action == "drop":
            del parent[path[-1]]
        elif action == "rename":
            parent[draw(st.one_of(st.text(max_size=10), st.integers(), st.booleans()))] = parent.pop(path[-1])
        elif action == "retype":
            parent[path[-1]] = draw(values)
        else:
            nested: Any = 1
            for _ in range(draw(st.sampled_from([5, 31, 40, 300]))):
                nested = [nested]
            parent[path[-1]] = nested
    text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    tail = draw(st.sampled_from(["none", "bomb", "duplicate", "cut", "insert", "bytes"]))
    if tail == "bomb":
        return text + _alias_bomb(draw(st.integers(2, 9)))
    if tail == "duplicate":
        lines = text.splitlines(keepends=True)
        return text + draw(st.sampled_from([line for line in lines if not line.startswith(" ")]))
    if tail == "cut":
        return text[:draw(st.integers(0, len(text)))]
    if tail == "insert":
        at = draw(st.integers(0, len(text)))
        return text[:at] + draw(st.text(max_size=20)) + text[at:]
    if tail == "bytes":
        return text.encode() + draw(st.binary(min_size=1, max_size=20))
    return text


def _assert_user_error(message: str) -> None:
    assert "\n" not in message and 0 < len(message) < MAX_MESSAGE, message[:500]


@_settings(300)
@given(text=spec_texts())
def test_any_spec_file_loads_or_is_one_user_error(text):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "spec.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        try:
            assert isinstance(load_hw_spec(path), HardwareSpec)
        except UserError as exc:
            _assert_user_error(str(exc))


set_keys = st.one_of(st.sampled_from(DOTTED + ["", "nosuch", "tile.rows.x", "energy.nope", "overrides",
                                               "source_file", "a..b"]), st.text(max_size=15))
set_values = st.one_of(st.sampled_from(["1", "0", "-1", "1e-9", "2.5E7", "1e400", ".inf", "-.inf", ".nan", "null",
                                        "true", "yes", "on", "[1, 2, 3]", "{a: 1}", "{bits: 6}", "&a [*a]", "*a",
                                        "[" * 60, "x" * 1000, "0x10", "PWM", "'8'", "{vdd_V: 0.8}", ": :"]),
                       st.text(max_size=30))
set_strings = st.one_of(st.builds(lambda k, v: f"{k}={v}", set_keys, set_values), st.text(max_size=30))


@_settings(300)
@given(texts=st.lists(set_strings, min_size=1, max_size=3))
def test_any_set_strings_apply_or_are_one_user_error(texts):
    try:
        overrides = dict(parse_override(text) for text in texts)
        assert isinstance(load_hw_spec("pcm_1M", overrides), HardwareSpec)
    except UserError as exc:
        _assert_user_error(str(exc))


# --- the CLI and the report on a tiny model -------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """A one-layer BERT checkpoint and the outputs of one run with --simulate (mapping, cost, accuracy)."""
    from transformers import BertConfig, BertForSequenceClassification
    root = tmp_path_factory.mktemp("fuzz")
    torch.manual_seed(0)
    BertForSequenceClassification(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1,
                                             num_attention_heads=2, intermediate_size=64,
                                             max_position_embeddings=64)).save_pretrained(root / "ckpt")
    code, err = _cli(root / "ckpt", "--hw", "pcm_1M", "--seq-len", "8", "--out", root / "out", "--simulate",
                     "--seeds", "1", "--drift-times", "1h", "--calibration", "2")
    assert code == 0, err
    return {"ckpt": root / "ckpt", "out": root / "out"}


def _cli(*argv) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse's own errors
            code = exc.code
    return code, err.getvalue()


def _tree(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (None if p.is_dir() else p.read_bytes()) for p in sorted(folder.rglob("*"))}


def _assert_cli_outcome(code: int, err: str) -> None:
    assert "Traceback" not in err, err[-2000:]
    assert code in (0, 2), (code, err[-2000:])
    if code == 2:
        last = err.strip().splitlines()[-1]
        assert last.startswith("aimc-compile: error: ") and len(last) < MAX_MESSAGE, err[-2000:]


cli_sets = st.builds(lambda k, v: f"{k}={v}", st.sampled_from(["output_noise", "adc.bits", "dac.bits", "tile.rows",
                                                               "tile.cols", "device.t0_s", "energy.vdd_V",
                                                               "latency.pwm_step_ns", "digital.attention_bits",
                                                               "nosuch", "tile"]),
                     st.sampled_from(["0", "1", "2", "0.5", "1e-9", "null", ".inf", "x", "[1]", "64", "1e300"]))


@_settings(8)
@given(sets=st.lists(cli_sets, min_size=1, max_size=2))
def test_the_cli_with_any_set_succeeds_or_exits_2_and_writes_only_into_out(tiny, sets):
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "neighbour.txt").write_text("untouched")
        out = root / "out"
        code, err = _cli(tiny["ckpt"], "--hw", "pcm_1M", "--seq-len", "8", "--out", out,
                         *[f"--set={s}" for s in sets])
        _assert_cli_outcome(code, err)
        assert {p.name for p in root.iterdir()} <= {"neighbour.txt", "out"}
        assert (root / "neighbour.txt").read_text() == "untouched"
        if code == 0:
            assert {p.name for p in out.iterdir()} <= {"mapping.json", "cost.json", "report.html",
                                                       ".aimc-manifest.json"}
        else:
            assert not out.exists()


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10),
              st.sampled_from(["x" * 100_000, "</script><!--", -1, 0, 10**30, 2**50, 2**53, "=cmd|' /C calc'!A0",
                               "\x1b[2J\r\nfake"])),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)


@st.composite
def tampered(draw) -> tuple[str, str | bytes]:
    """(file name, what to do): one value of a JSON output replaced, deleted or renamed, or the file mangled."""
    name = draw(st.sampled_from(["mapping.json", "cost.json", "accuracy.json"]))
    return name, draw(st.sampled_from(["value", "value", "value", "delete", "rename", "wrap", "whole", "bytes"]))


@_settings(30)  # each example renders a report (~0.4 s): 30 keep the fuzz suite under 30 s
@pytest.mark.filterwarnings("ignore:Glyph .* missing from font")
@given(change=tampered(), data=st.data())
def test_report_on_tampered_json_renders_or_is_one_line(tiny, change, data):
    name, action = change
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        out = root / "out"
        shutil.copytree(tiny["out"], out)
        (root / "neighbour.txt").write_text("untouched")
        document = json.loads((out / name).read_text())
        if action in ("value", "delete", "rename"):
            paths = _paths(document)
            path = paths[data.draw(st.integers(0, len(paths) - 1))]
            parent = document
            for key in path[:-1]:
                parent = parent[key]
            if action == "delete" and isinstance(parent, dict):
                del parent[path[-1]]
            elif action == "rename" and isinstance(parent, dict):
                parent[data.draw(st.text(max_size=12))] = parent.pop(path[-1])
            else:
                parent[path[-1]] = data.draw(json_values)
            content: str | bytes = json.dumps(document)
        elif action == "wrap":
            content = json.dumps([document])
        elif action == "whole":
            content = json.dumps(data.draw(json_values))
        else:
            text = json.dumps(document).encode()
            content = text[:data.draw(st.integers(0, len(text)))] + data.draw(st.binary(max_size=8))
        (out / name).write_bytes(content if isinstance(content, bytes) else content.encode())
        before = {k: v for k, v in _tree(out).items() if k != "report.html"}
        code, err = _cli("report", out)
        _assert_cli_outcome(code, err)
        assert {p.name for p in root.iterdir()} == {"neighbour.txt", "out"}
        assert {k: v for k, v in _tree(out).items() if k != "report.html"} == before
        if code == 0:
            html = (out / "report.html").read_text()
            assert "<!--" not in html.split('<script type="application/json"', 1)[-1].split("</script>", 1)[0]



def test_report_renders_sensitivity_fields_missing_their_numbers(tiny, tmp_path):
    """Found by the fuzz above: a sensitivity field without its ends or its uncertainty crashed the tornado."""
    out = tmp_path / "out"
    shutil.copytree(tiny["out"], out)
    cost = json.loads((out / "cost.json").read_text())
    fields = cost["sensitivity"]["fields"]
    assert fields, "the tiny run priced no sensitivity: this test would check nothing"
    del fields[0]["energy_J"]
    for f in fields[1:]:
        del f["relative_uncertainty"]
    (out / "cost.json").write_text(json.dumps(cost))
    code, err = _cli("report", out)
    assert code == 0, err[-2000:]
    assert fields[1]["field"] in (out / "report.html").read_text()
