"""Compile time of roberta-base on pcm_1M, stage by stage, against one FP forward measured in the same run.

    PYTHONPATH=. .venv/bin/python bench/compile.py
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import torch

from compiler import compile_model, load_hw_spec, load_model
from passes import allocate_tiles


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main() -> None:
    hw = load_hw_spec("pcm_1M")
    (model, example), t_load = timed(lambda: load_model("roberta-base", seq_len=128))
    with torch.no_grad():
        model(**example)
        _, t_forward = timed(lambda: model(**example))
    placed, t_compile = timed(lambda: compile_model(model, example, hw, allocation="naive"))
    rows = [("load_model (bundled config, random init)", t_load), ("FP forward, B=1, L=128", t_forward),
            ("compile_model (export, partition, naive allocation)", t_compile)]
    for strategy in ("naive", "fused", "packed"):
        _, t = timed(lambda: allocate_tiles(placed, strategy))
        rows.append((f"allocate_tiles {strategy}: {placed.tiles_used} tiles", t))
    root = Path(__file__).resolve().parent.parent
    _, t_cli = timed(lambda: subprocess.run(
        [sys.executable, "-m", "compiler.cli", "roberta-base", "--hw", "hw_specs/pcm_1M.yaml", "--out",
         "bench/out/roberta-base"], cwd=root, check=True, capture_output=True))
    rows.append(("whole CLI run, new process (imports, mapping, cost, report)", t_cli))
    print(f"{'step':62s} {'seconds':>8s} {'x FP forward':>12s}")
    for name, seconds in rows:
        print(f"{name:62s} {seconds:8.3f} {seconds / t_forward:12.1f}")


if __name__ == "__main__":
    main()
