"""Issue 25, the output folder: nothing of the user's lost, no link followed, a killed swap recovered.

Each test is a case of the issue (numbered as there) or of the class it belongs to, on compiler/outputs.py
directly (fast). Reports and compare: test_hostile_reports.py; models, the API and the terminal:
test_hostile_inputs.py; the CLI end to end (case 1, SIGHUP): test_reliability.py.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from compiler.errors import UserError
from compiler.outputs import LOCK, MANIFEST, STAGING_PREFIX, OutputDir, read_manifest, safe_name
from test_reliability import default_signals

REPO = Path(__file__).resolve().parent.parent
CHECKPOINT = {"config.json": "{}", "model.safetensors": "weights", "tokenizer.json": "{}"}


def _publish(out: Path, files: dict[str, str], inputs=()) -> None:
    with OutputDir(out, "aimc-compile test", inputs=inputs) as output:
        for name, text in files.items():
            (output.staging / name).parent.mkdir(parents=True, exist_ok=True)
            (output.staging / name).write_text(text)
        output.publish()


def _snapshot(folder: Path) -> dict[str, str | None]:
    """Every path under folder -> its text (None: a folder; "-> target": a link)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        key = str(p.relative_to(folder))
        out[key] = f"-> {os.readlink(p)}" if p.is_symlink() else None if p.is_dir() else p.read_text()
    return out


def _hwa_run(out: Path) -> None:
    """An earlier run with --hwa-finetune: a checkpoint folder among the outputs."""
    _publish(out, {"mapping.json": "1", "hwa.json": "{}", **{f"hwa_model/{k}": v for k, v in CHECKPOINT.items()}})


# --- case 1: a run never removes its own input, and records files, not folder names -----------------------

def test_the_manifest_lists_files_at_any_depth(tmp_path):
    _hwa_run(tmp_path / "proj")
    assert read_manifest(tmp_path / "proj") == sorted(["hwa.json", "mapping.json"]
                                                       + [f"hwa_model/{k}" for k in CHECKPOINT])


def test_a_run_never_removes_the_checkpoint_it_compiles(tmp_path):
    out = tmp_path / "proj"
    _hwa_run(out)
    (out / "hwa_model" / "my_notes.txt").write_text("mine")
    _publish(out, {"mapping.json": "2"}, inputs=[out / "hwa_model", "not-a-path-but-a-model-name"])
    assert {k: (out / "hwa_model" / k).read_text() for k in CHECKPOINT} == CHECKPOINT
    assert (out / "hwa_model" / "my_notes.txt").read_text() == "mine"
    assert not (out / "hwa.json").exists()                       # stale and no input: removed
    # still listed (ours), so a third run that reads it again keeps it again
    assert "hwa_model/config.json" in read_manifest(out) and "hwa.json" not in read_manifest(out)


def test_a_users_file_inside_an_output_folder_survives_its_removal(tmp_path):
    out = tmp_path / "proj"
    _hwa_run(out)
    (out / "hwa_model" / "sub").mkdir()
    (out / "hwa_model" / "sub" / "deep.txt").write_text("mine, deep")
    _publish(out, {"mapping.json": "2"})                          # no input protected: the checkpoint is stale
    assert sorted(p.name for p in (out / "hwa_model").rglob("*")) == ["deep.txt", "sub"]
    assert read_manifest(out) == ["mapping.json"]
    with pytest.raises(UserError, match="hwa_model.*may be yours"):  # now only the user's: a later run stops
        _publish(out, {"mapping.json": "3"})


def test_a_run_never_replaces_a_file_it_reads(tmp_path):
    out = tmp_path / "proj"
    _hwa_run(out)
    before = _snapshot(out)
    with pytest.raises(UserError, match="reads it"):
        _publish(out, {"hwa_model/config.json": "new", "mapping.json": "2"}, inputs=[out / "hwa_model"])
    assert _snapshot(out) == before


def test_a_new_file_never_replaces_one_no_manifest_lists(tmp_path):
    out = tmp_path / "proj"
    _hwa_run(out)
    (out / "hwa_model" / "vocab.txt").write_text("the user's vocabulary")
    with pytest.raises(UserError, match="vocab.txt: no .* lists it"):
        _publish(out, {"hwa_model/vocab.txt": "ours", "mapping.json": "2"})
    assert (out / "hwa_model" / "vocab.txt").read_text() == "the user's vocabulary"


def test_an_older_manifest_naming_a_folder_removes_no_file_in_it(tmp_path):
    out = tmp_path / "proj"
    (out / "hwa_model" / "empty").mkdir(parents=True)
    (out / "old").mkdir()
    (out / MANIFEST).write_text(json.dumps({"files": ["hwa_model", "accuracy.json"]}))  # manifest_version 1
    _publish(out, {"mapping.json": "1"})
    assert not (out / "hwa_model").exists()                      # empty: removed
    (out / "hwa_model").mkdir()
    (out / "hwa_model" / "config.json").write_text("who knows whose")
    (out / MANIFEST).write_text(json.dumps({"files": ["hwa_model", "mapping.json"]}))
    _publish(out, {"mapping.json": "2"})
    assert (out / "hwa_model" / "config.json").read_text() == "who knows whose"


@pytest.mark.parametrize("entry", ["../outside.txt", "/etc/hostname", "hwa_model/../../outside.txt", "notes.txt",
                                   "hwa_model//x", "hwa_model/./x", 7, None])
def test_manifest_entries_that_lead_elsewhere_are_not_followed(tmp_path, entry):
    (tmp_path / "outside.txt").write_text("keep")
    out = tmp_path / "proj"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    (out / MANIFEST).write_text(json.dumps({"files": [entry, "mapping.json"]}))
    (out / "mapping.json").write_text("old")
    _publish(out, {"cost.json": "{}"})
    assert (tmp_path / "outside.txt").read_text() == "keep" and (out / "notes.txt").read_text() == "keep"


# --- case 2: a killed swap is rolled back by the next run; SIGHUP is deferred ------------------------------

_KILLER = """
import os, signal, sys
from pathlib import Path
import compiler.outputs as outputs
out, kill_at = Path(sys.argv[1]), int(sys.argv[2])
real, calls = outputs._move, []
def move(source, target):
    calls.append(1)
    if len(calls) == kill_at:
        os.kill(os.getpid(), getattr(signal, sys.argv[3]))
    return real(source, target)
outputs._move = move
with outputs.OutputDir(out, "killed") as output:
    for name in ("mapping.json", "report.html", "hwa_model/config.json"):
        (output.staging / name).parent.mkdir(parents=True, exist_ok=True)
        (output.staging / name).write_text("new " + name)
    output.publish()
"""


@pytest.mark.parametrize("kill_at", [1, 2, 3, 4, 5, 6])  # moves: 3 aside (2 replaced, 1 stale), then 3 in
def test_sigkill_during_the_swap_is_rolled_back_by_the_next_run(tmp_path, kill_at):
    out = tmp_path / "out"
    _publish(out, {"mapping.json": "old", "report.html": "old report", "accuracy.json": "old accuracy"})
    (out / "notes.txt").write_text("mine")
    before = _snapshot(out)
    proc = subprocess.run([sys.executable, "-c", _KILLER, str(out), str(kill_at), "SIGKILL"], cwd=REPO,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert [p for p in out.iterdir() if p.name.startswith(STAGING_PREFIX)]   # the killed swap's journal
    with OutputDir(out, "next"):                                  # the next run: recovery under the lock
        pass
    assert _snapshot(out) == before


def test_sighup_during_the_swap_is_deferred_until_it_is_done(tmp_path):
    out = tmp_path / "out"
    _publish(out, {"mapping.json": "old", "report.html": "old report", "accuracy.json": "old accuracy"})
    proc = subprocess.run([sys.executable, "-c", _KILLER, str(out), "2", "SIGHUP"], cwd=REPO,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
                          preexec_fn=default_signals)
    assert proc.returncode == 128 + signal.SIGHUP and "Traceback" not in proc.stderr, proc.stderr
    assert (out / "mapping.json").read_text() == "new mapping.json" and not (out / "accuracy.json").exists()
    assert read_manifest(out) == ["hwa_model/config.json", "mapping.json", "report.html"]
    assert not [p for p in out.iterdir() if p.name.startswith(STAGING_PREFIX)]


def test_a_finished_swap_killed_before_its_cleanup_is_not_undone(tmp_path):
    out = tmp_path / "out"
    _publish(out, {"mapping.json": "old"})
    staging = out / f"{STAGING_PREFIX}left"
    (staging / ".previous").mkdir(parents=True)
    (staging / ".previous" / "mapping.json").write_text("older")
    run_id = json.loads((out / MANIFEST).read_text())["run_id"]
    (staging / ".aimc-publish.json").write_text(json.dumps({"run_id": run_id, "new": ["mapping.json"],
                                                            "replaced": ["mapping.json"], "stale": [], "created": []}))
    with OutputDir(out, "next"):
        pass
    assert (out / "mapping.json").read_text() == "old" and not staging.exists()


# --- case 4: no link followed --------------------------------------------------------------------------------

@pytest.mark.parametrize("dangling", [False, True])
def test_a_lock_file_that_is_a_link_is_refused_and_not_followed(tmp_path, dangling):
    victim = tmp_path / "victim.txt"
    if not dangling:
        victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK).symlink_to(victim)
    with pytest.raises(UserError, match="link"):
        with OutputDir(out, "test"):
            pass
    assert (victim.read_text() == "precious") if not dangling else not victim.exists()
    assert (out / LOCK).is_symlink()


@pytest.mark.parametrize("kind", ["link", "fifo", "folder"])
def test_a_manifest_or_lock_that_is_no_plain_file_is_refused(tmp_path, kind):
    for name in (MANIFEST, LOCK):
        out = tmp_path / f"{kind}-{name}"
        out.mkdir()
        special = out / name
        {"link": lambda: special.symlink_to(tmp_path / "elsewhere.json"), "fifo": lambda: os.mkfifo(special),
         "folder": special.mkdir}[kind]()
        with pytest.raises(UserError, match="not a plain file|link"):
            with OutputDir(out, "test"):
                pass
        assert os.path.lexists(special) and not (tmp_path / "elsewhere.json").exists()


def test_no_file_is_moved_through_a_folder_that_became_a_link(tmp_path):
    out = tmp_path / "proj"
    _hwa_run(out)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "config.json").write_text("not ours")
    for name in CHECKPOINT:
        (out / "hwa_model" / name).unlink()
    (out / "hwa_model").rmdir()
    (out / "hwa_model").symlink_to(elsewhere, target_is_directory=True)
    _publish(out, {"mapping.json": "2"})                          # the stale checkpoint's files: not via the link
    assert (elsewhere / "config.json").read_text() == "not ours"
    (out / MANIFEST).write_text(json.dumps({"files": ["hwa_model/config.json", "mapping.json"]}))
    with pytest.raises(UserError, match="link"):                  # nor written through it
        _publish(out, {"hwa_model/config.json": "new"})
    assert (elsewhere / "config.json").read_text() == "not ours"


def test_safe_name_makes_a_name_of_any_text():
    assert safe_name("..") == "run" and safe_name("../../etc") == "_.._etc"
    assert safe_name("a/b\x1b[2Jc\n") == "a_b__2Jc_" and safe_name(".hidden") == "hidden"
    assert len(safe_name("x" * 1000)) == 100 and safe_name("Llama-3.1-8B") == "Llama-3.1-8B"


_KILLED_RECOVERY = """
import os, signal, sys
from pathlib import Path
import compiler.outputs as outputs
def move(source, target):
    os.kill(os.getpid(), signal.SIGKILL)
outputs._move = move
with outputs.OutputDir(Path(sys.argv[1]), "killed again"):
    pass
"""


def test_a_roll_back_killed_halfway_is_finished_by_the_run_after(tmp_path):
    out = tmp_path / "out"
    _publish(out, {"mapping.json": "old", "report.html": "old report", "accuracy.json": "old accuracy"})
    before = _snapshot(out)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    first = subprocess.run([sys.executable, "-c", _KILLER, str(out), "5", "SIGKILL"], cwd=REPO, env=env)
    second = subprocess.run([sys.executable, "-c", _KILLED_RECOVERY, str(out)], cwd=REPO, env=env,
                            capture_output=True, text=True)
    assert first.returncode == second.returncode == -signal.SIGKILL
    with OutputDir(out, "third"):
        pass
    assert _snapshot(out) == before
