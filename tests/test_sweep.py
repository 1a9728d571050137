"""`aimc-compile sweep` on a real local Ray (no mocks): a tiny BERT config, 4 points x 2 seeds simulated, each
point's chip instances as Ray tasks of their own. Every point's figures equal those of the single-run CLI for
the same settings; a second run computes nothing; a point that raises is recorded while the others finish;
invalid points are refused before anything runs; sweep.html in a headless browser. One Ray session for the
module (ray.init costs seconds)."""
from __future__ import annotations

import csv
import json
import os
import shlex
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from compiler import UserError, sweep
from compiler.cli import main
from compiler.outputs import MANIFEST

ray = pytest.importorskip("ray", reason="ray is not installed (pip install -e .)")

GRID = {"tile.rows+tile.cols": [32, 64], "adc.bits": [6, 8]}
OPTIONS = dict(simulate=True, seeds=2, drift_times="1s,1d", seq_len=8, calibration=8)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> str:
    """A config-only BERT checkpoint directory: random weights, the same on every load (seed 0)."""
    import transformers
    folder = tmp_path_factory.mktemp("tiny-bert")
    config = transformers.BertConfig(vocab_size=96, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=32)
    (folder / "config.json").write_text(config.to_json_string())
    return str(folder)


@pytest.fixture(scope="module")
def ray_session():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def swept(ray_session, tiny_bert, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "sw"
    result = sweep(tiny_bert, "pcm_1M", GRID, out=out, **OPTIONS)
    return result, out


def _point_argv(command: str, out: Path) -> list[str]:
    argv = shlex.split(command)[1:]   # without "aimc-compile"
    at = argv.index("--out")
    return argv[:at] + ["--out", str(out)] + argv[at + 2:]


def test_every_point_equals_the_single_run(swept, tmp_path, capsys) -> None:
    result, out = swept
    assert (result.computed, result.cached, result.failed) == (4, 0, 0)
    data = json.loads((out / "sweep.json").read_text())
    assert [p["values"] for p in data["points"]] == [
        {"tile.rows+tile.cols": r, "adc.bits": b} for r in ("32", "64") for b in ("6", "8")]
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    assert len(rows) == 4
    for point, row in zip(data["points"], rows):
        folder = out / point["dir"]
        cost = json.loads((folder / "cost.json").read_text())["totals"]
        accuracy = json.loads((folder / "accuracy.json").read_text())
        assert accuracy["seeds"] == [0, 1] and len(accuracy["results_without_pt_opt"]) == 2
        # sweep.json and sweep.csv say what the point's own files say
        assert point["energy_J"] == cost["energy_per_inference_J"] and point["tops_per_w"] == cost["tops_per_w"]
        ranges = json.loads((folder / "cost.json").read_text())["sensitivity"]["ranges"]   # per batch of 1
        assert (point["energy_low_J"], point["energy_high_J"]) == (ranges["energy_J"][0], ranges["energy_J"][2])
        assert point["energy_low_J"] < point["energy_J"] < point["energy_high_J"]
        assert (point["area_low_mm2"], point["latency_high_s"]) == (ranges["area_mm2"][0], ranges["latency_s"][2])
        assert float(row["energy_per_inference_J.high"]) == ranges["energy_J"][2]
        assert point["tokens_per_s"] is None   # an encoder: no decode figures
        assert float(row["energy_per_inference_J"]) == cost["energy_per_inference_J"]
        assert int(row["tiles"]) == json.loads((folder / "mapping.json").read_text())["tiles_used"]
        assert [a["mean"] for a in point["accuracy"]] == [r["mean"][point["metric"]] for r in accuracy["results"]]
        assert float(row["1d.mean"]) == accuracy["results"][1]["mean"][point["metric"]]
    # more ADC bits cost ADC energy: the axis reaches the estimator
    energy = {tuple(p["values"].values()): p["energy_J"] for p in data["points"]}
    assert energy[("32", "8")] > energy[("32", "6")] and energy[("64", "8")] > energy[("64", "6")]
    # each point against the first, seed by seed at the longest drift time (the accuracy.json per-seed values)
    reference = data["points"][0]
    assert data["reference"] == reference["name"] and reference["versus"] is None
    assert data["summary"][0].startswith("reference: ")
    ref_seeds = json.loads((out / reference["dir"] / "accuracy.json").read_text())["results"][-1]["per_seed"]
    for point in data["points"][1:]:
        own = json.loads((out / point["dir"] / "accuracy.json").read_text())["results"][-1]["per_seed"]
        diffs = [a - b for a, b in zip(own[point["metric"]], ref_seeds[point["metric"]])]
        assert point["versus"]["accuracy"]["n"] == 2
        assert point["versus"]["accuracy"]["mean"] == pytest.approx(sum(diffs) / 2, abs=1e-12)
        assert point["versus"]["energy_ratio"] == pytest.approx(point["energy_J"] / reference["energy_J"])
    # two points again through the single-run CLI (seeds in one process, not Ray tasks): the same numbers
    for point in (data["points"][0], data["points"][3]):
        single = tmp_path / point["name"]
        assert main(_point_argv(point["command"], single)) == 0, capsys.readouterr().err
        swept_dir = out / point["dir"]
        mapping_a, mapping_b = (json.loads((d / "mapping.json").read_text()) for d in (swept_dir, single))
        mapping_a.pop("command"), mapping_b.pop("command")
        assert mapping_a == mapping_b
        assert json.loads((swept_dir / "cost.json").read_text()) == json.loads((single / "cost.json").read_text())
        acc_a, acc_b = (json.loads((d / "accuracy.json").read_text()) for d in (swept_dir, single))
        for key in ("results", "results_without_pt_opt"):
            for a, b in zip(acc_a[key], acc_b[key]):
                assert a["per_seed"] == b["per_seed"]
                for stat in ("mean", "std", "ci95"):
                    assert a[stat] == pytest.approx(b[stat], rel=1e-12, abs=1e-15)


def test_chip_instances_as_ray_tasks_equal_one_process(swept, tiny_bert) -> None:
    """A point's seeds as Ray tasks (the placement through the object store once, as torch.export bytes), merged:
    what evaluate_accuracy returns over all the seeds in this process."""
    from compiler import compile_model, load_hw_spec, load_model
    from compiler.dse.run import evaluate_on_ray
    from compiler.evaluation.accuracy import evaluate_accuracy
    model, example = load_model(tiny_bert, seq_len=8)
    placed = compile_model(model, example, load_hw_spec("pcm_1M", {"tile.rows": 32, "tile.cols": 32}),
                           calibration=8)
    options = dict(compare_without_pt=True, progress=False)
    here = evaluate_accuracy(placed, "1d", seeds=2, **options)
    spread = evaluate_on_ray(placed, "1d", seeds=2, **options)
    assert spread["seeds"] == [0, 1]
    for key in ("results", "results_without_pt_opt"):
        assert [r["per_seed"] for r in spread[key]] == [r["per_seed"] for r in here[key]]
        for a, b in zip(spread[key], here[key]):
            assert a["mean"] == pytest.approx(b["mean"], rel=1e-12) and a["std"] == pytest.approx(b["std"], rel=1e-12)


def test_second_run_hits_the_cache(swept, tiny_bert) -> None:
    result, out = swept
    before = {p: ((p / "mapping.json").stat().st_mtime_ns, json.loads((p / MANIFEST).read_text())["run_id"])
              for p in (out / "points").iterdir()}
    again = sweep(tiny_bert, "pcm_1M", GRID, out=out, **OPTIONS)
    assert (again.computed, again.cached, again.failed) == (0, 4, 0)
    after = {p: ((p / "mapping.json").stat().st_mtime_ns, json.loads((p / MANIFEST).read_text())["run_id"])
             for p in (out / "points").iterdir()}
    assert after == before and len(after) == 4
    data = json.loads((out / "sweep.json").read_text())
    assert {p["status"] for p in data["points"]} == {"cached"}
    assert [p["energy_J"] for p in data["points"]] == [p["energy_J"] for p in result.points]
    # one more ADC value: only its two new points run
    grown = sweep(tiny_bert, "pcm_1M", {**GRID, "adc.bits": [6, 8, 7]}, out=out, **OPTIONS)
    assert (grown.computed, grown.cached, grown.failed) == (2, 4, 0)


def _descendants_running(title: str) -> list[int]:
    """Processes of this test's own tree (Ray's raylet and its workers descend from it) whose title is `title`."""
    parents, titles = {}, {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                titles[int(entry.name)] = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            except (OSError, IndexError, ValueError):
                continue
    mine = []
    for pid, name in titles.items():
        ancestor = parents.get(pid)
        while ancestor and ancestor != os.getpid():
            ancestor = parents.get(ancestor)
        if ancestor == os.getpid() and name.startswith(title):
            mine.append(pid)
    return mine


def test_a_failing_point_is_recorded_and_a_killed_worker_is_retried(ray_session, tiny_bert, tmp_path) -> None:
    """A tile budget of 1 cannot hold the model: that point raises while it compiles, the other finishes. And
    SIGKILL to the worker process running a point, mid-sweep: Ray runs that point again, the sweep completes."""
    killed: list[int] = []

    def kill_one() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            running = _descendants_running("ray::run_point")
            if running:
                os.kill(running[0], signal.SIGKILL)
                killed.append(running[0])
            time.sleep(0.05)

    out = tmp_path / "fails"
    grid, overrides = {"max-tiles": [1, 1000]}, {"tile.rows": 32, "tile.cols": 32}
    killer = threading.Thread(target=kill_one)
    killer.start()
    result = sweep(tiny_bert, "pcm_1M", grid, out=out, seq_len=8, overrides=overrides)
    killer.join()
    assert killed, "no worker was found running a point"
    assert (result.computed, result.failed) == (1, 1)
    failed, ok = result.points
    assert failed["status"] == "failed" and "fits --max-tiles 1" in failed["error"] and failed["report"] is None
    assert failed["values"] == {"max-tiles": "1"} and not (out / failed["dir"]).exists()
    assert ok["status"] == "computed" and (out / ok["report"]).is_file() and ok["tiles"] > 1
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    assert rows[0]["status"] == "failed" and rows[0]["error"] == failed["error"]
    assert "1 point failed" in (out / "sweep.html").read_text()
    # the failed point is tried again by the next run; the finished one is not
    again = sweep(tiny_bert, "pcm_1M", grid, out=out, seq_len=8, overrides=overrides)
    assert (again.computed, again.cached, again.failed) == (0, 1, 1)


def test_invalid_points_are_refused_before_anything_runs(tiny_bert, tmp_path, capsys) -> None:
    out = tmp_path / "never"
    with pytest.raises(UserError) as info:
        sweep(tiny_bert, "pcm_1M", {"tile.rows": [32, 100_000], "adc.bits": [6, 99]}, out=out)
    lines = str(info.value).splitlines()
    assert lines[0] == "3 of 4 points invalid; nothing ran:" and len(lines) == 4
    assert "point 2 (tile.rows=32, adc.bits=99)" in lines[1] and "adc.bits" in lines[1]
    assert "tile.rows=100000" in lines[2] and not out.exists()
    code = main(["sweep", tiny_bert, "--hw", "pcm_1M", "--grid", "allocation=fused,greedy", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "1 of 2 points invalid" in err and "unknown allocation 'greedy'" in err
    assert not out.exists()
    assert main(["sweep", tiny_bert, "--hw", "pcm_1M", "--grid", "adc.bits", "--out", str(out)]) == 2
    assert "expected KEY=V1,V2" in capsys.readouterr().err


CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


def test_sweep_page_in_a_browser(swept) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if CHROMIUM is None:
        pytest.skip("no Chromium browser: install Debian's `chromium` package")
    from test_report_browser import CHROMIUM_ARGS
    _, out = swept
    data = json.loads((out / "sweep.json").read_text())
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        errors: list[str] = []
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto((out / "sweep.html").as_uri(), wait_until="load")
        assert errors == []
        assert page.locator("#fig-pareto svg").count() == 1
        assert page.locator("#axes figure svg").count() == 2  # one chart per axis
        links = page.locator("#sweep-table a").evaluate_all("els => els.map(e => e.href)")
        assert len(links) == len(data["points"]) and all(Path(link.removeprefix("file://")).is_file() for link in links)
        assert sorted(Path(link).parent.name for link in links) == sorted(p["name"] for p in data["points"])
        front = [p["name"] for p in data["points"] if p["pareto"]]
        assert front and page.locator("tr.front").count() == len(front)
        # sorting by energy puts the cheapest point first
        page.locator("#sweep-table th", has_text="Energy").click()
        first = page.locator("#sweep-table tbody tr").first.get_attribute("data-point")
        assert first == min(data["points"], key=lambda p: p["energy_J"])["name"]
        page.screenshot(path=str(out / "sweep.png"), full_page=True)
        browser.close()


def test_sweep_help_imports_neither_torch_nor_ray() -> None:
    import subprocess
    import sys
    script = ("import sys\nfrom compiler.cli import main\ntry:\n    main(['sweep', '--help'])\n"
              "except SystemExit as exc:\n    assert exc.code == 0\n"
              "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'ray'})\n"
              "assert not heavy, heavy\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parent.parent)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "--grid KEY=V1,V2,..." in run.stdout and "--address" in run.stdout


# --- points are configurations: compiler.run per point, the CLI's files, one point per configuration ----------

def test_a_serial_point_writes_what_the_cli_writes_and_equal_configurations_are_one_point(tiny_bert, tmp_path,
                                                                                           capsys) -> None:
    out = tmp_path / "serial"
    grid = {"adc.bits": [6, 8], "device.t0_s": [20, "20.0"]}   # 20 and 20.0: one configuration, two labels
    options = dict(executor="serial", seq_len=16, overrides={"tile.rows": 32, "tile.cols": 32})
    result = sweep(tiny_bert, "pcm_1M", grid, out=out, **options)
    assert (result.computed, result.cached, result.failed) == (2, 0, 0)
    data = json.loads((out / "sweep.json").read_text())
    assert [p["labels"] for p in data["points"]] == [
        [{"adc.bits": b, "device.t0_s": "20"}, {"adc.bits": b, "device.t0_s": "20.0"}] for b in ("6", "8")]
    assert len(list((out / "points").iterdir())) == 2
    for point in data["points"]:  # the point's command line through the CLI: the same files
        single = tmp_path / point["name"]
        assert main(_point_argv(point["command"], single)) == 0, capsys.readouterr().err
        for name in ("mapping.json", "cost.json"):
            a, b = (json.loads((d / name).read_text()) for d in (out / point["dir"], single))
            a.pop("command", None), b.pop("command", None)
            assert a == b, name
        assert point["energy_J"] == json.loads((single / "cost.json").read_text())["totals"]["energy_per_inference_J"]
    again = sweep(tiny_bert, "pcm_1M", grid, out=out, **options)
    assert (again.computed, again.cached, again.failed) == (0, 2, 0)


def test_two_models_a_causal_lm_among_them(tiny_bert, tmp_path) -> None:
    """Two models: an axis of their own (not coupled) in sweep.json; the causal LM's point carries its decode
    figures (TTFT, tokens/s, J/token) and energy range as its cost.json has them, at batch 2 per inference."""
    llama = str(Path(__file__).parent / "fixtures" / "tiny_llama")
    out = tmp_path / "models"
    result = sweep([tiny_bert, llama], "pcm_1M", {"adc.bits": [8]}, out=out, executor="serial",
                   point_reports=False, seq_len=8, batch=2)
    assert (result.computed, result.failed) == (2, 0)
    data = json.loads((out / "sweep.json").read_text())
    assert data["axes"][0] == {"name": "model", "kind": "option", "keys": ["model"], "values": sorted([tiny_bert, llama]),
                               "coupled": False}
    by_model = {p["model"]: p for p in data["points"]}
    bert, lm = by_model[tiny_bert], by_model[llama]
    cost = json.loads((out / lm["dir"] / "cost.json").read_text())
    assert (lm["ttft_s"], lm["tokens_per_s"], lm["energy_per_token_J"]) == tuple(
        cost["decode"][k] for k in ("ttft_s", "tokens_per_s", "energy_per_token_J"))
    assert lm["energy_low_J"] == cost["sensitivity"]["ranges"]["energy_J"][0] / 2   # per inference, batch 2
    ranges = cost["decode"]["ranges"]
    assert (lm["tokens_per_s_low"], lm["tokens_per_s_high"]) == (ranges["tokens_per_s"][0], ranges["tokens_per_s"][2])
    assert (lm["ttft_low_s"], lm["energy_per_token_high_J"]) == (ranges["ttft_s"][0], ranges["energy_per_token_J"][2])
    assert bert["tokens_per_s"] is None
    table = list(csv.DictReader((out / "sweep.csv").open()))
    assert {r["model"]: r["tokens_per_s"] for r in table} == {tiny_bert: "", llama: repr(lm["tokens_per_s"])}
    assert ">Decode<" in (out / "sweep.html").read_text()


def test_points_are_checked_with_the_shared_work_done_once(tiny_bert, monkeypatch) -> None:
    """The baseline spec is read once per sweep, the spec once per distinct set of overrides (case 17)."""
    import compiler.hw_spec
    from compiler.config import from_options
    from compiler.dse.grid import expand, make_axis, validate
    calls = {"baseline": 0, "spec": 0}
    real_baseline, real_spec = compiler.hw_spec.load_baseline_spec, compiler.hw_spec.load_hw_spec

    def baseline(*args, **kwargs):
        calls["baseline"] += 1
        return real_baseline(*args, **kwargs)

    def spec(*args, **kwargs):
        calls["spec"] += 1
        return real_spec(*args, **kwargs)

    monkeypatch.setattr(compiler.hw_spec, "load_baseline_spec", baseline)
    monkeypatch.setattr(compiler.hw_spec, "load_hw_spec", spec)
    axes = [make_axis("adc.bits", [6, 7, 8], "test"), make_axis("allocation", ["fused", "packed"], "test")]
    points = validate(expand([tiny_bert], from_options("", "pcm_1M"), axes))
    assert len(points) == 6 and calls == {"baseline": 1, "spec": 3}

