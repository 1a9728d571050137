"""Issue 25, `report` and `compare`: nothing of the user's replaced, no link followed, untrusted text
neutralized (CSV, terminal), small files that cannot demand gigabytes, one schema_version check.

Runs are minimal hand-made mapping.json files (no torch): each test takes a fraction of a second.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from pathlib import Path

import pytest

from compiler.cli import main
from compiler.progress import printable
from reports import write_report
from reports.compare import compare_runs
from reports.fmt import csv_cell, csv_row
from reports.render import MAX_SEGMENTS_READ, MAX_TILES_READ

LAYERS = [{"name": "fc", "node": "linear", "kind": "analog", "in_features": 8, "out_features": 4,
           "tiles": [{"tile": 0, "rows": [0, 8], "cols": [0, 4], "in_features": [0, 8], "out_features": [0, 4]}]}]


def _run(folder: Path, **fields) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    mapping = {"schema_version": 1, "model": "m", "hw": "h", "tile_shape": [8, 8], "tiles_used": 1,
               "layers": LAYERS, **fields}
    (folder / "mapping.json").write_text(json.dumps(mapping))
    return folder


def _cli(*argv) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main([str(a) for a in argv])
    return code, err.getvalue()


def _one_line(code: int, err: str, needle: str) -> None:
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert needle in err, err


# --- case 3: compare and report replace only files they wrote ------------------------------------------------

def test_compare_never_replaces_the_users_csv_beside_the_page(tmp_path):
    a, b = _run(tmp_path / "a"), _run(tmp_path / "b")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "notes.csv").write_text("my,own,notes\n")
    code, err = _cli("compare", a, b, "--out", tmp_path / "dir" / "notes.html")
    _one_line(code, err, "notes.csv: not a comparison table written by aimc-compile")
    assert (tmp_path / "dir" / "notes.csv").read_text() == "my,own,notes\n"
    assert not (tmp_path / "dir" / "notes.html").exists()           # nothing half written


def test_compare_never_replaces_a_runs_report(tmp_path):
    a, b = _run(tmp_path / "a"), _run(tmp_path / "b")
    write_report(a)
    report = (a / "report.html").read_text()
    code, err = _cli("compare", a, b, "--out", a / "report.html")
    _one_line(code, err, "report.html: not a comparison page written by aimc-compile")
    assert (a / "report.html").read_text() == report and not (a / "report.csv").exists()


def test_compare_replaces_its_own_files(tmp_path):
    a, b = _run(tmp_path / "a"), _run(tmp_path / "b")
    html, table = compare_runs([a, b], tmp_path / "out" / "x.html")
    first = html.read_text()
    html2, table2 = compare_runs([b, a], tmp_path / "out" / "x.html")   # again: its own files, replaced
    assert (html2, table2) == (html, table) and html.read_text() != first
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def test_report_never_replaces_a_report_html_it_did_not_write(tmp_path):
    a = _run(tmp_path / "a")
    (a / "report.html").write_text("<html>my own page</html>")
    code, err = _cli("report", a)
    _one_line(code, err, "not a report written by aimc-compile")
    assert (a / "report.html").read_text() == "<html>my own page</html>"
    (a / "report.html").unlink()
    assert _cli("report", a)[0] == 0 and _cli("report", a)[0] == 0    # its own: re-rendered


@pytest.mark.parametrize("dangling", [False, True])
def test_report_and_compare_write_through_no_link(tmp_path, dangling):
    victim = tmp_path / "victim.html"
    if not dangling:
        victim.write_text("precious")
    a, b = _run(tmp_path / "a"), _run(tmp_path / "b")
    (a / "report.html").symlink_to(victim)
    _one_line(*_cli("report", a), "a link or not a plain file")
    out = tmp_path / "cmp"
    out.mkdir()
    (out / "compare.csv").symlink_to(victim)
    _one_line(*_cli("compare", a, b, "--out", out), "a link or not a plain file")
    assert (victim.read_text() == "precious") if not dangling else not victim.exists()


# --- case 14: one schema_version check --------------------------------------------------------------------

@pytest.mark.parametrize("name", ["mapping.json", "cost.json"])
def test_report_refuses_a_schema_version_it_does_not_know_as_compare_does(tmp_path, name):
    a, b = _run(tmp_path / "a"), _run(tmp_path / "b")
    if name == "mapping.json":
        _run(a, schema_version=2)
    else:
        (a / "cost.json").write_text(json.dumps({"schema_version": 2}))
    for argv in (("report", a), ("compare", a, b, "--out", tmp_path / "c")):
        _one_line(*_cli(*argv), f"{name}: schema_version 2, but this aimc-compile reads version 1")
    assert not (a / "report.html").exists()


# --- counts read back from JSON files are bounded ---------------------------------------------------------

@pytest.mark.parametrize("fields", [
    {"segment_runs": [{"segment": 0, "tile": 0, "count": 10 ** 15, "across": 1, "rows": [0, 8], "cols": [0, 4],
                       "block": "b", "block_rows": [0, 8], "block_cols": [0, 4]}]},
    {"layers": [{**LAYERS[0], "tiles": [{**LAYERS[0]["tiles"][0], "tile": 2 ** 50}]}]},
    {"tiles_used": 2 ** 52, "tiles_per_chip": 1},
    {"tile_utilization": {str(2 ** 40): 0.5}, "tiles_per_chip": 1},
])
def test_a_small_file_cannot_demand_gigabytes(tmp_path, fields):
    a = _run(tmp_path / "a", **fields)
    assert (a / "mapping.json").stat().st_size < 2000
    code, err = _cli("report", a)
    _one_line(code, err, "beyond what the report draws")
    assert MAX_TILES_READ < 2 ** 40 and MAX_SEGMENTS_READ < 10 ** 15


def test_json_nested_deeper_than_the_parser_is_one_line(tmp_path):
    a = _run(tmp_path / "a")
    (a / "cost.json").write_text("[" * 200_000 + "]" * 200_000)
    _one_line(*_cli("report", a), "nested too deeply")


def test_a_fifo_or_device_for_mapping_json_does_not_hang(tmp_path):
    a = tmp_path / "a"
    a.mkdir()
    os.mkfifo(a / "mapping.json")
    _one_line(*_cli("report", a), "mapping.json")


# --- untrusted text in CSV cells and on the terminal -------------------------------------------------------

@pytest.mark.parametrize("text", ["=HYPERLINK(\"http://x\")", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"])
def test_csv_cells_a_spreadsheet_would_run_are_text(text):
    assert csv_cell(text) == "'" + text and csv_cell(-2.5) == -2.5 and csv_cell("ok=1") == "ok=1"


def test_compare_csv_neutralizes_folder_names_and_spec_values(tmp_path):
    a = _run(tmp_path / "=cmd()", hw="@evil", hw_spec={"tile": {"rows": "-1+1"}})
    b = _run(tmp_path / "b")
    _, table = compare_runs([a, b], tmp_path / "out")
    rows = list(csv.reader(table.open()))
    assert rows[0][4] == "'=cmd()"
    cells = [cell for row in rows for cell in row]
    assert "'@evil" in cells and "'-1+1" in cells
    assert not [c for c in cells if c[:1] in ("=", "+", "@", "\t", "\r") or (c[:1] == "-" and not _number(c))]
    assert csv_row(["=a", 1]) == ["'=a", 1]


def _number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def test_printable_escapes_every_control_character():
    forged = "pcm\x1b[2J\x1b]0;owned\x07\nfake: line\r\x9b31m\u202eevil\u2028x"
    shown = printable(forged)
    assert all(ord(c) >= 32 and not 0x7f <= ord(c) <= 0x9f for c in shown) and "\u202e" not in shown
    assert shown == "pcm\\x1b[2J\\x1b]0;owned\\x07\\nfake: line\\r\\x9b31m\\u202eevil\\u2028x"
    assert printable("héllo 中文 tab") == "héllo 中文 tab"
