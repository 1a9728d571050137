"""A 50-point cost-only sweep of roberta-base over hardware keys (adc.bits 6..10 x dac.bits 4..8 x tiles 256/512),
serial, in one process, against one whole `aimc-compile` run of one of its points.

    PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python bench/sweep_cost.py [--skip-reports]

Rows: the whole run (a fresh process: imports, model, export, placement search, estimate, outputs, report); the
sweep's first point (it loads the model and exports it for the sweep) and the points after it (from sweep.json's
`seconds`: each point's own `compiler.run`, folder published), with and without each point's report.html. Every
sweep writes a fresh folder under bench/out/sweep-cost/ (no cache hits).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODEL = "roberta-base"
GRID = {"tile.rows+tile.cols": [256, 512], "adc.bits": [6, 7, 8, 9, 10], "dac.bits": [4, 5, 6, 7, 8]}


def whole_run(out: Path) -> float:
    """One point as a user runs it today: `aimc-compile MODEL --hw pcm_1M --set ...` in a fresh process."""
    if out.exists():
        shutil.rmtree(out)
    argv = [sys.executable, "-m", "compiler.cli", MODEL, "--hw", "pcm_1M", "--set", "tile.rows=512",
            "--set", "tile.cols=512", "--set", "adc.bits=8", "--set", "dac.bits=8", "--out", str(out), "-q"]
    started = time.perf_counter()
    subprocess.run(argv, check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return time.perf_counter() - started


def swept(out: Path, point_reports: bool) -> dict:
    from compiler import sweep
    if out.exists():
        shutil.rmtree(out)
    started = time.perf_counter()
    result = sweep(MODEL, "pcm_1M", GRID, out=out, executor="serial", point_reports=point_reports)
    wall = time.perf_counter() - started
    assert result.failed == 0 and result.computed == 50, (result.computed, result.failed)
    seconds = [p["seconds"] for p in json.loads((out / "sweep.json").read_text())["points"]]
    rest = seconds[1:]
    return {"wall_s": wall, "first_s": seconds[0], "rest_median_s": statistics.median(rest),
            "rest_mean_s": statistics.fmean(rest), "rest_max_s": max(rest), "points": len(seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-reports", action="store_true", help="only the sweep without point reports")
    args = parser.parse_args()
    out = ROOT / "bench" / "out" / "sweep-cost"
    print(f"load average {os.getloadavg()[0]:.1f}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
          f"{os.cpu_count()} CPUs", flush=True)
    whole = whole_run(out / "whole-run")
    print(f"whole run, fresh process: {whole:.1f} s", flush=True)
    rows = {"no point reports": swept(out / "no-reports", point_reports=False)}
    print(rows, flush=True)
    if not args.skip_reports:
        rows["with point reports"] = swept(out / "reports", point_reports=True)
    print("| sweep (50 points, serial) | wall (s) | first point (s) | after the first: median / mean / max (s) |\n"
          "| --- | ---: | ---: | ---: |")
    for name, r in rows.items():
        print(f"| {name} | {r['wall_s']:.1f} | {r['first_s']:.2f} | {r['rest_median_s']:.2f} / "
              f"{r['rest_mean_s']:.2f} / {r['rest_max_s']:.2f} |")
    print(f"| one whole `aimc-compile` run (fresh process) | {whole:.1f} | | |")
    (out / "bench.json").write_text(json.dumps({"whole_run_s": whole, "sweeps": rows}, indent=1))


if __name__ == "__main__":
    main()
