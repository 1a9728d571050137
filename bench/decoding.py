"""Noisy decoding (issue 14, item 5): the cost of greedy generation through the simulated chip against FP decoding,
measured in the same run, and what the chip's KV cache changes.

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python bench/decoding.py [--model gpt2] [--prompts 2] [--prompt-tokens 8]
                                                                      [--gen-tokens 16] [--seeds 2]

gpt2 here has RANDOM weights (bundled config, nothing offline): the timings are real, the agreement figures test
the machinery only. Per generated token, wall clock:
- FP, transformers' own KV cache (the baseline every ratio is against);
- FP, the whole prefix run again at each step (no cache);
- chip, simulator-level KV cache (compiler/evaluation/decoding.py: each analog MVM once per token);
- chip, the whole prefix run again at each step (output noise drawn again for the past tokens);
and once per chip: programming it (placed.simulator), and the teacher-forced next-token pass over the evaluation
sequences. Generation agreement with FP (prefix match, token agreement) for both chip variants, per seed.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
import warnings

import torch

sys.path.insert(0, ".")
from compiler import compile_model, load_hw_spec, load_model  # noqa: E402
from compiler.evaluation.decoding import (_input_names, _prompts, _sequences, evaluate_decoding,  # noqa: E402
                                          fp_greedy, generate, generation_agreement, greedy)


def _timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="gpt2")
    parser.add_argument("--hw", default="pcm_1M")
    parser.add_argument("--prompts", type=int, default=2)
    parser.add_argument("--prompt-tokens", type=int, default=8)
    parser.add_argument("--gen-tokens", type=int, default=16)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--drift", type=float, default=3600.0, help="drift time of the chips, seconds")
    parser.add_argument("--full", action="store_true", help="also time evaluate_decoding (seeds x 1 drift time)")
    args = parser.parse_args()
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, example = load_model(args.model, seq_len=32)
    hw = load_hw_spec(args.hw)
    placed, compile_s = _timed(lambda: compile_model(model, example, hw, allocation="naive", calibration=8))
    names = _input_names(placed)
    prompts = _prompts(_sequences(placed, 8, 32), args.prompts, args.prompt_tokens)
    n = args.gen_tokens * len(prompts)
    print(f"{args.model} ({model.aimc_info.weights} weights) on {hw.name}: {placed.tiles_used} tiles; compiled in "
          f"{compile_s:.1f} s; {len(prompts)} prompts x {args.prompt_tokens} tokens, {args.gen_tokens} generated each")
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}")
    with torch.no_grad():
        fp, fp_s = _timed(lambda: [fp_greedy(model, p, args.gen_tokens) for p in prompts])
        fp_whole, fp_whole_s = _timed(lambda: [greedy(model, p, args.gen_tokens, names) for p in prompts])
        assert fp == fp_whole, "FP generation with and without transformers' cache differ"
        rows = []
        for seed in range(args.seeds):
            start = time.perf_counter()
            chip = placed.simulator(t_inference=args.drift, seed=seed)
            program_s = time.perf_counter() - start
            start = time.perf_counter()
            cached = [generate(chip, placed, p, args.gen_tokens) for p in prompts]
            cached_s = time.perf_counter() - start
            start = time.perf_counter()
            whole = [generate(chip, placed, p, args.gen_tokens, cache=False) for p in prompts]
            whole_s = time.perf_counter() - start
            agree = [[generation_agreement(f, c) for f, c in zip(fp, out)] for out in (cached, whole)]
            rows.append((seed, program_s, cached_s, whole_s, agree))
    fp_tok = fp_s / n
    print(f"\nper generated token (wall clock, mean over {n} tokens{', and ' + str(args.seeds) + ' chips' if args.seeds else ''}):")
    print(f"  FP, transformers KV cache        {fp_tok * 1e3:8.1f} ms   1.00x  (baseline)")
    print(f"  FP, whole prefix each step       {fp_whole_s / n * 1e3:8.1f} ms   {fp_whole_s / n / fp_tok:.2f}x")
    cached_tok = sum(r[2] for r in rows) / (n * len(rows))
    whole_tok = sum(r[3] for r in rows) / (n * len(rows))
    print(f"  chip, simulator-level KV cache   {cached_tok * 1e3:8.1f} ms   {cached_tok / fp_tok:.2f}x")
    print(f"  chip, whole prefix each step     {whole_tok * 1e3:8.1f} ms   {whole_tok / fp_tok:.2f}x")
    print(f"  programming one chip             {sum(r[1] for r in rows) / len(rows):8.2f} s  "
          f"(= {sum(r[1] for r in rows) / len(rows) / fp_tok:.0f} FP tokens)")
    print("\nagreement with FP generation (prefix match in tokens / token agreement), per prompt:")
    for seed, _, _, _, (cached_agree, whole_agree) in rows:
        show = lambda pairs: ", ".join(f"{p}/{a:.2f}" for p, a in pairs)  # noqa: E731
        print(f"  seed {seed}: cached {show(cached_agree)};  whole prefix {show(whole_agree)}")
    if args.full:
        record, full_s = _timed(lambda: evaluate_decoding(placed, [args.drift], seeds=args.seeds,
                                                          gen_tokens=args.gen_tokens, prompts=args.prompts,
                                                          prompt_tokens=args.prompt_tokens, progress=False))
        row = record["results"][0]["mean"]
        print(f"\nevaluate_decoding, {args.seeds} chips x 1 drift time: {full_s:.1f} s "
              f"({record['tokens']} teacher-forced positions per chip); timing_s {record['timing_s']}")
        print("  " + ", ".join(f"{k} {v:.4g}" for k, v in row.items() if v is not None))


if __name__ == "__main__":
    main()
