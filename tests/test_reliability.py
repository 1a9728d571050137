"""Issue 12, case by case: never lose a user's file, never crash on bad input.

Each test is one case of the issue: the output folder (ownership, atomic publishing across filesystems,
signals, the lock) and every argument checked before work starts. Specs, models and the API:
test_reliability_inputs.py. CLI runs use a one-layer BERT checkpoint (a few seconds each).
"""
from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from compiler import UserError, compile_model, load_hw_spec
from compiler.cli import main
from compiler.hw_spec import SPEC_DIR
from compiler.outputs import LOCK, MANIFEST, STAGING_PREFIX, OutputDir, read_manifest

REPO = Path(__file__).resolve().parent.parent
PCM = (SPEC_DIR / "pcm_1M.yaml").read_text()


# --- fixtures ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """A one-layer BERT saved as a classifier ("cls", head included) and without a head ("base")."""
    from transformers import BertConfig, BertForSequenceClassification, BertModel
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    root = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(root / "cls")
    BertModel(config).save_pretrained(root / "base")
    return {"cls": root / "cls", "base": root / "base"}


def _cli(*argv: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, err.getvalue()


def _tiny(checkpoints, out: Path, *extra: str) -> tuple[int, str]:
    return _cli(checkpoints["cls"], "--hw", "pcm_1M", "--seq-len", "8", "--out", out, *extra)


@pytest.fixture(scope="module")
def published(checkpoints, tmp_path_factory) -> Path:
    """The outputs of one successful run (copy it to play a folder an earlier run wrote)."""
    out = tmp_path_factory.mktemp("published") / "out"
    code, err = _tiny(checkpoints, out)
    assert code == 0, err
    return out


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under folder (hidden ones too) -> its bytes (None for a folder)."""
    return {str(p.relative_to(folder)): (None if p.is_dir() else p.read_bytes()) for p in sorted(folder.rglob("*"))}


def _one_line_error(code: int, err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2 and "Traceback" not in err, err
    assert lines[-1].startswith("aimc-compile: error: ") and len(lines[-1]) < 600, err
    for needle in needles:
        assert needle in lines[-1], err


@pytest.fixture()
def no_model(monkeypatch):
    """Fail the test if the CLI gets as far as loading the model: its checks must come first."""
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the arguments were checked")
    monkeypatch.setattr("compiler.models.load_model", refuse)


@contextlib.contextmanager
def _tmpfs(where: Path):
    """A fresh tmpfs mounted at `where` for the block (another filesystem than the test's); skips when not root."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(where)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], capture_output=True)


def _read_only(mount: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)


# --- data loss: a folder describes one run, and nothing of the user's is removed -----------------------------

def test_files_no_manifest_lists_are_the_users_and_stop_the_run(tmp_path, no_model):
    out = tmp_path / "out"
    (out / "hwa_model").mkdir(parents=True)
    (out / "hwa_model" / "config.json").write_text("{}")
    (out / "accuracy.json").write_text('{"mine": 1}')
    (out / "hwa.json").write_text("{}")
    (out / "notes.txt").write_text("notes")
    before = _snapshot(out)
    code, err = _cli("roberta-base", "--hw", "pcm_1M", "--out", out)
    _one_line_error(code, err, "holds", "may be yours")
    assert _snapshot(out) == before


def test_default_output_inside_a_folder_of_the_users(tmp_path, monkeypatch, no_model):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "aimc-out" / "roberta-base").mkdir(parents=True)
    (tmp_path / "aimc-out" / "roberta-base" / "mapping.json").write_text("my own")
    code, err = _cli("roberta-base", "--hw", "pcm_1M")
    _one_line_error(code, err, "mapping.json")
    assert (tmp_path / "aimc-out" / "roberta-base" / "mapping.json").read_text() == "my own"


@pytest.mark.parametrize("where", ["/", "home", "above home"])
def test_out_at_a_filesystem_root_or_home_is_refused(tmp_path, monkeypatch, no_model, where):
    home = tmp_path / "users" / "me"
    home.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    target = {"/": Path("/"), "home": home, "above home": home.parent}[where]
    code, err = _cli("roberta-base", "--hw", "pcm_1M", "--out", target)
    _one_line_error(code, err, "filesystem root or a home folder")


def test_a_later_run_removes_only_what_the_manifest_lists(published, tmp_path, checkpoints):
    out = tmp_path / "out"
    shutil.copytree(published, out)
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["complete"] and manifest["command"].startswith("aimc-compile ") and manifest["run_id"]
    # an earlier run with --simulate: accuracy.json is ours; notes.txt and a name of ours no manifest lists are not
    (out / "accuracy.json").write_text("{}")
    (out / MANIFEST).write_text(json.dumps({**manifest, "files": manifest["files"] + ["accuracy.json", "notes.txt"]}))
    (out / "notes.txt").write_text("mine")
    (out / f"{STAGING_PREFIX}killed").mkdir()             # left by a killed run: removed by the next one
    (out / f"{STAGING_PREFIX}killed" / "mapping.json").write_text("{}")
    code, err = _tiny(checkpoints, out)
    assert code == 0, err
    assert not (out / "accuracy.json").exists() and (out / "notes.txt").read_text() == "mine"
    assert not [p for p in out.iterdir() if p.name.startswith(STAGING_PREFIX) or p.name == LOCK]
    assert read_manifest(out) == ["cost.json", "mapping.json", "report.html"]


def test_a_failed_run_leaves_the_previous_outputs_exactly(published, tmp_path, checkpoints, monkeypatch):
    out = tmp_path / "out"
    shutil.copytree(published, out)
    before = _snapshot(out)

    def broken(*args, **kwargs):
        raise UserError("a failure halfway through the run")
    monkeypatch.setattr("compiler.pipeline.compile_model", broken)
    code, err = _tiny(checkpoints, out, "--batch", "2")
    _one_line_error(code, err, "halfway")
    assert _snapshot(out) == before


def test_a_publish_that_fails_halfway_is_rolled_back(published, tmp_path, checkpoints, monkeypatch):
    out = tmp_path / "out"
    shutil.copytree(published, out)
    (out / "accuracy.json").write_text("{}")                  # an earlier --simulate run's, to be removed
    manifest = json.loads((out / MANIFEST).read_text())
    (out / MANIFEST).write_text(json.dumps({**manifest, "files": manifest["files"] + ["accuracy.json"]}))
    before = _snapshot(out)
    real_replace, failed = os.replace, []

    def flaky(source, target):  # the new mapping.json fails to move in, after cost.json did
        if Path(target) == out / "mapping.json" and "previous" not in str(source) and not failed:
            failed.append(source)
            raise OSError(5, "Input/output error")
        return real_replace(source, target)
    monkeypatch.setattr(os, "replace", flaky)
    code, err = _tiny(checkpoints, out, "--batch", "2")
    _one_line_error(code, err, "cannot write there")
    assert failed and _snapshot(out) == before


def test_publishing_onto_another_filesystem(published, tmp_path, checkpoints):
    """--out on a tmpfs (another device than the checkpoint and the working directory): the run publishes, a
    failed one leaves the folder as it was, and a move that meets a device boundary copies then renames."""
    mount = tmp_path / "mnt"
    with _tmpfs(mount):
        assert os.stat(mount).st_dev != os.stat(tmp_path).st_dev
        out = mount / "out"
        code, err = _tiny(checkpoints, out)
        assert code == 0, err
        assert read_manifest(out) == ["cost.json", "mapping.json", "report.html"]
        before = _snapshot(out)
        code, err = _tiny(checkpoints, out, "--set", "tile.rows=1", "--set", "tile.cols=1",
                           "--set", "tile.max_chips=1")
        assert code == 2 and "needs at least" in err and _snapshot(out) == before
        code, err = _tiny(checkpoints, mount)                      # the mount point itself
        assert code == 0, err
        from compiler.outputs import _move
        (tmp_path / "across").mkdir()
        (tmp_path / "across" / "f.txt").write_text("x")
        _move(tmp_path / "across", mount / "across")               # EXDEV: copied, then renamed
        assert (mount / "across" / "f.txt").read_text() == "x" and not (tmp_path / "across").exists()


def default_signals() -> None:
    """A child's SIGINT, SIGTERM and SIGHUP at their defaults, whatever pytest was started under: a shell's
    background job inherits SIGINT ignored, nohup SIGHUP ignored, and the CLI rightly leaves an ignored one so."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGINT, 130),
                                            (signal.SIGHUP, 128 + signal.SIGHUP)])
def test_signals_clean_up_the_staging_folder(checkpoints, tmp_path, signum, status):
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "compiler.cli", str(checkpoints["cls"]), "--hw", "pcm_1M",
                             "--seq-len", "8", "--out", str(out)], cwd=REPO, env=env, stderr=subprocess.PIPE,
                            text=True, preexec_fn=default_signals)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (out.is_dir() and any(out.glob(f"{STAGING_PREFIX}*"))):
        time.sleep(0.02)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == status, err
    assert "Traceback" not in err and ("terminated" in err or "interrupted" in err), err
    assert not out.exists() or not [p for p in out.iterdir() if p.name.startswith(STAGING_PREFIX)]


def test_compiling_the_checkpoint_an_earlier_run_fine_tuned_into_the_same_folder_keeps_it(checkpoints, tmp_path):
    out = tmp_path / "proj"
    with OutputDir(out, "aimc-compile ... --hwa-finetune") as output:  # an earlier run's checkpoint, as it publishes it
        shutil.copytree(checkpoints["cls"], output.staging / "hwa_model")
        (output.staging / "hwa.json").write_text("{}")
        output.publish()
    (out / "hwa_model" / "mine.txt").write_text("mine")
    before = _snapshot(out / "hwa_model")
    code, err = _cli(out / "hwa_model", "--hw", "pcm_1M", "--seq-len", "8", "--out", out)
    assert code == 0, err
    assert _snapshot(out / "hwa_model") == before and not (out / "hwa.json").exists()


def test_a_second_run_on_the_same_folder_fails_at_once(tmp_path, no_model):
    out = tmp_path / "out"
    out.mkdir()
    fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, b"4242")
        code, err = _cli("roberta-base", "--hw", "pcm_1M", "--out", out)
        _one_line_error(code, err, "another aimc-compile run (pid 4242)")
    finally:
        os.close(fd)
    with OutputDir(out, "test") as output:                       # free again once the holder is gone
        assert output.staging.is_dir()
    assert not (out / LOCK).exists() and list(out.iterdir()) == []


def test_unwritable_out_fails_before_the_model_loads(tmp_path, no_model):
    mount = tmp_path / "ro"
    with _tmpfs(mount):
        _read_only(mount)
        code, err = _cli("roberta-base", "--hw", "pcm_1M", "--out", mount / "x")
        _one_line_error(code, err, "cannot write there")
        code, err = _cli("roberta-base", "--hw", "pcm_1M", "--out", mount)   # an existing read-only folder
        _one_line_error(code, err, "cannot write there")


def test_report_on_a_read_only_folder(published, tmp_path):
    mount = tmp_path / "ro"
    with _tmpfs(mount):
        for item in ("mapping.json", "cost.json"):
            (mount / item).write_bytes((published / item).read_bytes())
        _read_only(mount)
        code, err = _cli("report", mount)
        _one_line_error(code, err, "cannot write the report")


# --- every argument checked before work starts ------------------------------------------------------------

@pytest.mark.parametrize("argv, needle", [
    (["--batch", "0"], "--batch"),
    (["--batch", "0", "--set", "adc.bits=null"], "--batch"),
    (["--seq-len", "1"], "--seq-len"),
    (["--calibration", "-1"], "--calibration"),
    (["--simulate", "--seeds", "0"], "--seeds"),
    (["--hwa-steps", "0"], "--hwa-steps"),
    (["--hwa-lr", "nan"], "--hwa-lr"),
    (["--allocation", "bogus"], "unknown allocation"),
    (["--task", "translation"], "unknown task"),
    (["--set", "tile.rows=0", "--set", "adc.bits=1", "--set", "energy.vdd_V=.inf"], "3 errors"),
])
def test_bad_flags_fail_before_the_model_loads(tmp_path, no_model, argv, needle):
    code, err = _cli("roberta-base", "--hw", "pcm_1M", "--out", tmp_path / "out", *argv)
    _one_line_error(code, err, needle)
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_device_cuda_without_cuda(tmp_path, no_model):
    code, err = _cli("roberta-base", "--hw", "pcm_1M", "--out", tmp_path / "out", "--simulate", "--device", "cuda")
    _one_line_error(code, err, "--device cuda")


def test_spec_incomplete_for_the_cost_model(tmp_path, no_model):
    spec = tmp_path / "nocost.yaml"
    spec.write_text(PCM.replace("    ps_per_lsb: 300 ", "    # ps_per_lsb removed "))
    code, err = _cli("roberta-base", "--hw", spec, "--out", tmp_path / "out")
    _one_line_error(code, err, "adc.cco.ps_per_lsb")


def test_capacity_is_computed_from_shapes_before_any_piece(monkeypatch):
    from passes import tile_allocation

    def no_pieces(*args):
        raise AssertionError("pieces built before the capacity check")
    monkeypatch.setattr(tile_allocation, "_grid_pieces", no_pieces)
    hw = load_hw_spec("pcm_1M", {"tile.rows": 1, "tile.cols": 1, "tile.max_chips": 8})
    for allocation in ("naive", "packed"):
        with pytest.raises(UserError, match=r"needs at least 8,192 tiles of 1x1 \(\w+ allocation\) .* offers 4,096"):
            compile_model(torch.nn.Linear(128, 64), (torch.randn(2, 128),), hw, allocation=allocation)
    hw = load_hw_spec("pcm_1M", {"tile.rows": 1, "tile.cols": 1, "tile.count": 1 << 20, "tile.max_chips": 1 << 10})
    with pytest.raises(UserError, match="the allocator builds at most"):
        compile_model(torch.nn.Linear(2048, 1024), (torch.randn(2, 2048),), hw)
