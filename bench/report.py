"""Benchmark of the HTML report: size and render time for roberta-base, against the compile it follows.

    PYTHONPATH=. .venv/bin/python bench/report.py [--repeats 5]

For each allocation (packed: 327 tiles; naive: 486 tiles, the largest tile map), renders report.html
from mapping.json + cost.json (as `aimc-compile report DIR` does) and from mapping.json alone, and
times compile_model on the same model in the same run as the baseline the render is compared with.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from compiler import compile_model, load_hw_spec, load_model
from compiler.writers import mapping_json
from reports import render_report
from timing import median_time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(2)
    hw = load_hw_spec("pcm_1M")
    model, example = load_model("roberta-base", task="sequence-classification", seq_len=128)
    render_report({"model": "warm-up", "hw": "-", "tile_shape": [1, 1], "tiles_used": 0, "layers": []})  # imports
    print("| allocation | tiles | mapping.json | cost.json | report.html | compile_model | render, mapping only | "
          "render, mapping + cost | render / compile |")
    print("|---|---|---|---|---|---|---|---|---|")
    for allocation in ("packed", "naive"):
        compile_s = median_time(lambda: compile_model(model, example, hw, allocation=allocation), 3)
        placed = compile_model(model, example, hw, allocation=allocation)
        mapping = json.loads(json.dumps(mapping_json(placed)))
        cost = json.loads(json.dumps(placed.estimate(batch=1, seq_len=128).to_json()))
        map_only_s = median_time(lambda: render_report(mapping), args.repeats)
        full_s = median_time(lambda: render_report(mapping, cost), args.repeats)
        html = render_report(mapping, cost, command="aimc-compile roberta-base --hw hw_specs/pcm_1M.yaml")
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "m.json").write_text(json.dumps(mapping, indent=1))
            (Path(tmp) / "c.json").write_text(json.dumps(cost, indent=1))
            map_kb = (Path(tmp) / "m.json").stat().st_size / 1024
            cost_kb = (Path(tmp) / "c.json").stat().st_size / 1024
        print(f"| {allocation} | {placed.tiles_used} | {map_kb:.0f} KiB | {cost_kb:.0f} KiB | "
              f"{len(html.encode()) / 1024:.0f} KiB | {compile_s:.2f} s | {map_only_s:.2f} s | {full_s:.2f} s | "
              f"{full_s / compile_s:.2f} |")


if __name__ == "__main__":
    main()
