"""Issue 27: what `--accuracy-budget` costs in run time and simulations, and how its sensitivity pass scales with blocks.

Two parts (each optional):
- `--scaling 1,2,4`: a tiny BERT (hidden 64, as tests/test_budget.py) with that many layers (4 blocks per layer + the
  pooler), the budget search at a loose budget (one verification): its sensitivity pass's simulations and seconds,
  against a baseline timed in the same run, one plain simulation of the reference chip (seconds per simulation);
- `--minilm 0.2,0.35`: whole `aimc-compile` runs of all-MiniLM-L6-v2 on pcm_1M at 1 y with each budget (real weights,
  the built-in sentences), their wall time and what accuracy.json's budget record says (simulations, tries,
  predicted and verified drops, energies, the uniform mappings).

    PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python bench/accuracy_budget.py --scaling 1,2,4 --minilm 0.2 \\
        --out docs/accuracy_budget.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
TINY_DIR = Path("/tmp/aimc-bench-budget")


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _tiny(layers: int):
    from transformers import BertConfig, BertModel
    config = BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=layers, num_attention_heads=4,
                        intermediate_size=128, max_position_embeddings=64, initializer_range=0.2)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = BertModel(config).eval()
    ids = torch.randint(5, 100, (4, 32), generator=torch.Generator().manual_seed(0))
    return model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def scaling(layers_list: list[int]) -> list[dict]:
    from compiler import compile_model, load_hw_spec
    from compiler.budget import choose_options
    from compiler.budget.measure import Measurer, Pricer
    from compiler.evaluation.accuracy import DriftTime, evaluate_accuracy
    rows = []
    for layers in layers_list:
        model, example = _tiny(layers)
        placed = compile_model(model, example, load_hw_spec("pcm_1M"), calibration=4)
        at = DriftTime("1y", 365 * 86400.0)
        # the baseline: one plain simulation of the reference chip on 3 seeds; CPU seconds beside wall seconds, since
        # the shared machine's load moves the wall time
        started, cpu = time.perf_counter(), time.process_time()
        evaluate_accuracy(placed, [at], seeds=[0, 1, 2], progress=False)
        per_sim = (time.perf_counter() - started) / 3
        cpu_per_sim = (time.process_time() - cpu) / 3
        measurer = Measurer(placed, at, None)
        cpu = time.process_time()
        record = choose_options(placed, measurer, Pricer(placed, "energy", seq_len=32), 1.0).record
        cpu = time.process_time() - cpu
        rows.append({"layers": layers, "blocks": len(placed.blocks), "baseline_s_per_simulation": per_sim,
                     "baseline_cpu_s_per_simulation": cpu_per_sim, "total_cpu_s": cpu,
                     "total_cpu_s_per_simulation": cpu / record["simulations"],
                     "sensitivity_simulations": record["sensitivity_simulations"],
                     "sensitivity_s": record["sensitivity_seconds"], "simulations": record["simulations"],
                     "total_s": record["seconds"],
                     "sensitivity_s_per_simulation": record["sensitivity_seconds"] / record["sensitivity_simulations"]})
        _say(f"scaling: {layers} layers, {len(placed.blocks)} blocks: {record['sensitivity_simulations']} simulations "
             f"in {record['sensitivity_seconds']:.1f} s (baseline {per_sim:.2f} s per simulation); whole search "
             f"{record['simulations']} simulations, {cpu:.1f} CPU s ({cpu / record['simulations']:.2f} per simulation, "
             f"baseline {cpu_per_sim:.2f})")
    return rows


def minilm(delta: float, out_root: Path) -> dict:
    out = out_root / f"minilm_budget_{delta:g}"
    command = [sys.executable, "-m", "compiler.cli", MODEL, "--hw", "pcm_1M", "--simulate", "--drift-times", "1y",
               "--accuracy-budget", str(delta), "--out", str(out)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        return {"delta": delta, "command": " ".join(command[2:]), "wall_s": wall, "error": done.stderr.strip()[-400:]}
    accuracy = json.loads((out / "accuracy.json").read_text())
    budget = accuracy["budget"]
    keep = ("metric", "delta", "reference_drop", "reference_drop_ci95", "met", "chosen", "simulations",
            "sensitivity_simulations", "sensitivity_seconds", "seconds", "exact", "block_options", "sram_macros_free")
    return {"command": "aimc-compile " + " ".join(command[3:]), "wall_s": wall, **{k: budget[k] for k in keep},
            "tries": [{k: t[k] for k in ("predicted_drop", "predicted_ci95", "measured_drop", "measured_ci95",
                                         "measured_upper", "energy_J", "latency_s", "tiles", "met")}
                      for t in budget["tries"]],
            "uniform": [{k: u[k] for k in ("name", "predicted_drop", "measured_drop", "measured_ci95", "measured_upper",
                                           "energy_J", "latency_s", "tiles", "meets_budget", "fits_sram")}
                        for u in budget["uniform"]],
            "final_results": accuracy["results"][0]["mean"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scaling", default="", help="tiny BERT layer counts, e.g. 1,2,4")
    parser.add_argument("--minilm", default="", help="budgets of whole MiniLM runs, e.g. 0.2,0.35")
    parser.add_argument("--runs", default="aimc-out/bench_budget", help="where the MiniLM runs write")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores (shared), {platform.python_version()}, "
                         f"torch {torch.__version__}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}",
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if args.scaling:
        result["scaling"] = scaling([int(x) for x in args.scaling.split(",")])
    if args.minilm:
        result["minilm"] = [minilm(float(d), Path(args.runs)) for d in args.minilm.split(",")]
        for run in result["minilm"]:
            _say(json.dumps({k: v for k, v in run.items() if k not in ("block_options",)}, indent=1))
    text = json.dumps(result, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
