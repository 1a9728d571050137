"""One 512x512 tile on pcm_1M: relative MVM error of the simulated chip against x @ W.T over drift time.

The figure outside checks compare with aihwkit's PCM tile: a bare nn.Linear(512, 512) compiled with
compile_model (no calibration: per-vector DAC range, default ADC range), simulated at each drift time over
several programmed instances. Run it in two checkouts to compare versions:

    PYTHONPATH=. .venv/bin/python bench/one_tile.py --seeds 20 --out /tmp/one_tile_new.json
    (cd OLD_CHECKOUT && PYTHONPATH=. /work/main/.venv/bin/python /work/main/bench/one_tile.py --seeds 20 --out /tmp/one_tile_old.json)
    PYTHONPATH=. .venv/bin/python bench/one_tile.py --compare /tmp/one_tile_old.json /tmp/one_tile_new.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

TIMES = {"0 s": 0.0, "1 h": 3600.0, "1 d": 86400.0, "1 y": 365.0 * 86400.0}


def measure(seeds: int) -> dict:
    from compiler import compile_model, load_hw_spec
    torch.manual_seed(0)
    layer = torch.nn.Linear(512, 512, bias=False)
    x = torch.randn(256, 512)
    reference = layer(x).detach()
    placed = compile_model(layer, (torch.randn(4, 512),), load_hw_spec("pcm_1M"))
    rows = {}
    for label, t in TIMES.items():
        errors = []
        for seed in range(seeds):
            with torch.no_grad():
                y = placed.simulator(t_inference=t, seed=seed)(x)
            errors.append(float((y - reference).norm() / reference.norm()))
        rows[label] = {"mean": statistics.mean(errors), "std": statistics.stdev(errors) if seeds > 1 else 0.0}
        print(f"t = {label}: relative error {rows[label]['mean']:.4f} +- {rows[label]['std']:.4f}", file=sys.stderr)
    return rows


def compare(old_path: str, new_path: str) -> None:
    old, new = json.loads(Path(old_path).read_text()), json.loads(Path(new_path).read_text())
    print("| drift time | previous version | this version | ratio |\n|---|---|---|---|")
    for label in TIMES:
        a, b = old[label]["mean"], new[label]["mean"]
        print(f"| {label} | {a:.4f} +- {old[label]['std']:.4f} | {b:.4f} +- {new[label]['std']:.4f} | {b / a:.4f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--out")
    parser.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"))
    args = parser.parse_args()
    if args.compare:
        compare(*args.compare)
        return
    rows = measure(args.seeds)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
