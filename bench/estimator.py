"""Benchmark: the whole cost estimate for roberta-base, against compile time and the FP forward pass.

    PYTHONPATH=. .venv/bin/python bench/estimator.py [--model roberta-base] [--hw pcm_1M] [--repeats 7]

Measures, in one run on one machine: compile_model (export + partition + tile allocation), one FP32
forward pass of the model at the same batch and sequence length, and placed.estimate(...) (workload,
pricing, schedule, digital baseline and the sequence-length sweep of cost.json). Reports medians and
the ratios; the target is an estimate under 0.5 s.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import torch
from timing import median_time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="roberta-base")
    parser.add_argument("--hw", default="pcm_1M")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    from compiler import compile_model, load_hw_spec, load_model

    hw = load_hw_spec(args.hw)
    model, example = load_model(args.model, seq_len=args.seq_len, batch=args.batch)
    start = time.perf_counter()
    placed = compile_model(model, example, hw)
    compile_s = time.perf_counter() - start
    with torch.no_grad():
        model(**example)  # warm-up
        forward_s = median_time(lambda: model(**example), args.repeats)
    placed.estimate(batch=args.batch, seq_len=args.seq_len)  # warm-up (imports, spec parsing)
    estimate_s = median_time(lambda: placed.estimate(batch=args.batch, seq_len=args.seq_len), args.repeats)
    cost = placed.estimate(batch=args.batch, seq_len=args.seq_len)

    print(f"machine: {platform.machine()} {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}")
    print(f"model {args.model} on {hw.name}: {placed.tiles_used} tiles, batch {args.batch}, seq_len {args.seq_len}")
    print(f"compile_model:        {compile_s:8.3f} s (once)")
    print(f"FP32 forward:         {forward_s:8.3f} s (median of {args.repeats})")
    print(f"estimate (all):       {estimate_s:8.3f} s (median of {args.repeats}; {len(cost.sweep)} sweep points)")
    print(f"estimate / compile:   {estimate_s / compile_s:8.3f}")
    print(f"estimate / forward:   {estimate_s / forward_s:8.3f}")
    print(f"target < 0.5 s:        {'met' if estimate_s < 0.5 else 'MISSED'}")
    totals = cost.to_json()["totals"]
    print(f"result: {totals['energy_J'] * 1e3:.3f} mJ, latency {totals['latency_s'] * 1e6:.1f} us, "
          f"{totals['throughput_inferences_per_s']:.0f} inf/s, {totals['tops']:.1f} TOPS, "
          f"{totals['tops_per_w']:.2f} TOPS/W; baseline {cost.baseline.name}: "
          f"{cost.baseline.energy_J * 1e3:.3f} mJ, {cost.baseline.latency_s * 1e6:.1f} us")


if __name__ == "__main__":
    main()
