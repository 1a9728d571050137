"""Benchmark of the noisy simulator (issue 3) against the FP model, measured in the same run.

    PYTHONPATH=. .venv/bin/python bench/simulator.py [--model roberta-base] [--batch 8] [--seq-len 128]
                                                    [--repeats 5] [--device cpu] [--threads N]

1. Programming + drifting one chip instance (`placed.simulator(t_inference=3600, seed)`), all segments of
   all blocks: median over seeds.
2. Forward of the model on that instance (8-bit DAC/ADC, output noise, programming noise, drift, read
   noise, INT6 attention: the spec as shipped) vs the FP model's own forward on the same inputs;
   timings interleaved (FP, simulator, FP, ...) so load on the machine hits both alike; medians and
   their ratio. Two range settings: calibrated ranges (a fixed dac_range/adc_range per segment, what
   passes.ranges assigns) and none (abs_max per input vector, the fallback).
aihwkit 1.2.0's figures (2.46x the FP time with its torch tile, 8.9x with its C++ tile, 14-29 s to convert
and program) come from the issue, measured on this CPU; aihwkit is not installed here.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time

import torch

sys.path.insert(0, ".")
from compiler import compile_model, load_hw_spec, load_model  # noqa: E402
from compiler.analog import native  # noqa: E402


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="roberta-base")
    parser.add_argument("--hw", default="pcm_1M")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's; 1 is fairer on a shared machine)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}, "
          f"native kernels: {native.available()} {native.unavailable_reason() or ''}", flush=True)
    model, inputs = load_model(args.model, task="sequence-classification", seq_len=args.seq_len, batch=args.batch)
    hw = load_hw_spec(args.hw)
    compile_s = _timed(lambda: compile_model(model, inputs, hw))
    placed = compile_model(model, inputs, hw)
    weights = sum(s.weights for s in placed.segments)
    print(f"{args.model}: {len(placed.segments)} segments on {placed.tiles_used} tiles, {weights / 1e6:.1f}M weights "
          f"({2 * weights / 1e6:.0f}M devices); compile_model {compile_s:.2f} s", flush=True)

    program_times = []
    for seed in range(args.seeds):
        sim = None
        program_times.append(_timed(lambda: placed.simulator(t_inference=3600.0, seed=seed, device=device)))
    print(f"program + drift one instance: median {statistics.median(program_times):.2f} s "
          f"(runs: {', '.join(f'{t:.2f}' for t in program_times)})", flush=True)

    model = model.to(device)
    dev_inputs = {k: v.to(device) for k, v in inputs.items()}
    results = {}
    for label, calibrated in (("calibrated ranges", True), ("no ranges (abs_max)", False)):
        for seg in placed.segments:
            seg.dac_range, seg.adc_range = (1.0, 10.0) if calibrated else (None, None)
        sim = placed.simulator(t_inference=3600.0, seed=0, device=device)
        with torch.no_grad():
            model(**dev_inputs)
            sim(**dev_inputs)
            fp, noisy = [], []
            for _ in range(args.repeats):
                fp.append(_timed(lambda: _sync(model(**dev_inputs), device)))
                noisy.append(_timed(lambda: _sync(sim(**dev_inputs), device)))
        fp_s, noisy_s = statistics.median(fp), statistics.median(noisy)
        results[label] = (fp_s, noisy_s)
        print(f"forward B={args.batch} L={args.seq_len}, {label}: FP {fp_s:.3f} s, simulator {noisy_s:.3f} s, "
              f"ratio {noisy_s / fp_s:.2f}x (FP runs {', '.join(f'{t:.2f}' for t in fp)}; "
              f"simulator runs {', '.join(f'{t:.2f}' for t in noisy)})", flush=True)
        del sim
    for seg in placed.segments:
        seg.dac_range, seg.adc_range = None, None


def _sync(out, device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out


if __name__ == "__main__":
    main()
