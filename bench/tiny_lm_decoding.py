"""Noisy decoding on a trained small causal LM (issue 24, item 9): how far the chip's next token strays from the FP
model's at drift times 1 s and 1 y, against the same architecture with random weights, and what HWA recovers.

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python bench/tiny_lm_decoding.py [--seeds 10] [--hw pcm_1M]
        [--drift-times 1s,1y] [--hwa-steps 40] [--hwa-lr 1e-4] [--hwa-sentences 512] [--json FILE]

The model: tests/fixtures/tiny_llama (compiler/training/tiny_lm.py). Per drift time and seed (one programmed chip
each), compiler.evaluation.decoding.evaluate_decoding (next-token top-1 agreement with FP and KL(FP || chip),
teacher-forced over compiler.sentences.EVALUATION, never trained on; greedy generation of 16 tokens from 4
prompts with the chip's KV cache), and the chip's own perplexity on the held-out reference sentences
(compiler.training.tiny_lm.heldout_texts). Four models, each compiled the same way (the CLI's defaults: allocation
"auto", 32 calibration sentences, post-training range optimizations):
- trained: the checkpoint;
- random: the same config with random weights (transformers' initialization, seed 0) and the same tokenizer;
- HWA: the checkpoint fine-tuned through the chip (compiler.training.finetune.hwa_finetune, distillation from the
  FP model, the CLI's defaults unless given) on `--hwa-sentences` training sentences; scored against the
  checkpoint's FP model, as the CLI does. (The same fine-tuning without noise changes nothing: the student
  starts equal to its teacher, so the distillation loss and its gradient are 0.)
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, ".")
from compiler import compile_model, load_hw_spec, load_model, sentences  # noqa: E402
from compiler.evaluation.accuracy import _drift_times, summarize_per_seed  # noqa: E402
from compiler.evaluation.decoding import evaluate_decoding  # noqa: E402
from compiler.models import ModelInfo  # noqa: E402
from compiler.training import tiny_lm  # noqa: E402

CHECKPOINT = Path("tests/fixtures/tiny_llama")
SEQ_LEN = 64


def random_twin(model):
    """The same config and tokenizer with random weights (transformers' initialization, seed 0)."""
    import transformers as tf
    torch.manual_seed(0)
    twin = tf.AutoModelForCausalLM.from_config(model.config, attn_implementation="eager").eval()
    twin.config.use_cache = False
    info = model.aimc_info
    twin.aimc_info = ModelInfo(f"{info.name} (random weights)", info.task, "random", info.source, info.tokenizer)
    return twin


def measure(name: str, model, example, hw, args, reference=None) -> dict:
    start = time.perf_counter()
    placed = compile_model(model, example, hw, calibration=32)
    compile_s = time.perf_counter() - start
    record = evaluate_decoding(placed, args.drift_times, args.seeds, progress=False, reference_model=reference)
    tokenizer, held = model.aimc_info.tokenizer, tiny_lm.heldout_texts()
    fp = tiny_lm.perplexity(reference if reference is not None else model, tokenizer, held)
    own = tiny_lm.perplexity(model, tokenizer, held) if reference is not None else None
    chip_ppl = []
    for drift in _drift_times(args.drift_times):
        rows = [tiny_lm.perplexity(placed.simulator(t_inference=drift.seconds, seed=seed), tokenizer, held)
                for seed in range(args.seeds)]
        chip_ppl.append(summarize_per_seed(drift.label, drift.seconds, {
            "heldout_perplexity": [r["perplexity"] for r in rows], "heldout_top1": [r["top1"] for r in rows]}))
    out = {"name": name, "tiles": placed.tiles_used, "allocation": placed.allocation, "compile_s": compile_s,
           "fp_heldout": fp, "own_fp_heldout": own, "decoding": record, "chip_heldout": chip_ppl,
           "seconds": time.perf_counter() - start}
    _print(out)
    return out


def _ci(row: dict, metric: str, digits: int) -> str:
    mean, ci = row["mean"][metric], row["ci95"][metric]
    return f"{mean:.{digits}f} +- {ci:.{digits}f}" if ci is not None else f"{mean:.{digits}f}"


def _print(out: dict) -> None:
    fp = out["fp_heldout"]
    print(f"\n{out['name']}: {out['tiles']} tiles ({out['allocation']}), FP held-out perplexity {fp['perplexity']:.1f} "
          f"(uniform {fp['uniform_perplexity']}), top-1 {fp['top1']:.3f}"
          + (f"; its own FP: {out['own_fp_heldout']['perplexity']:.1f}, top-1 {out['own_fp_heldout']['top1']:.3f}"
             if out["own_fp_heldout"] else "") + f"; {out['seconds']:.0f} s")
    for dec, ppl in zip(out["decoding"]["results"], out["chip_heldout"]):
        print(f"  t={dec['label']:>3}: next-token top-1 agreement {_ci(dec, 'next_token_top1_agreement', 3)}, "
              f"KL {_ci(dec, 'next_token_kl_nats', 4)} nats, greedy token agreement "
              f"{_ci(dec, 'gen_token_agreement', 3)}, prefix {_ci(dec, 'gen_prefix_match_tokens', 1)}; chip held-out "
              f"perplexity {_ci(ppl, 'heldout_perplexity', 1)}, top-1 {_ci(ppl, 'heldout_top1', 3)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=str(CHECKPOINT))
    parser.add_argument("--hw", default="pcm_1M")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--drift-times", default="1s,1y")
    parser.add_argument("--hwa-steps", type=int, default=40)
    parser.add_argument("--hwa-lr", type=float, default=1e-4)
    parser.add_argument("--hwa-sentences", type=int, default=512, help="training sentences HWA distills on")
    parser.add_argument("--skip", default="", help="comma-separated: random, hwa")
    parser.add_argument("--json", help="write every record here")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, example = load_model(args.model, seq_len=SEQ_LEN)
    hw = load_hw_spec(args.hw)
    print(f"{args.model} on {hw.name}: {sum(p.numel() for p in model.parameters()):,} parameters, vocabulary "
          f"{model.config.vocab_size}; {args.seeds} seeds x {args.drift_times}; {platform.machine()}, "
          f"{torch.get_num_threads()} torch thread(s), torch {torch.__version__}")
    results = [measure("trained", model, example, hw, args)]
    if "random" not in skip:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            results.append(measure("random weights", random_twin(model), example, hw, args))
    from compiler.training.finetune import hwa_finetune
    texts = tiny_lm.training_texts()
    data = [texts[i * len(texts) // args.hwa_sentences] for i in range(args.hwa_sentences)]
    if "hwa" not in skip:
        tuned = hwa_finetune(model, hw, data, steps=args.hwa_steps, lr=args.hwa_lr, seq_len=SEQ_LEN, progress=False)
        summary = tuned.aimc_hwa
        print(f"\nHWA: {summary.steps} steps on {summary.data}, loss {summary.losses[0]:.4g} -> "
              f"{summary.losses[-1]:.4g} in {summary.seconds:.0f} s")
        results.append(measure(f"HWA fine-tuned ({args.hwa_steps} steps, lr {args.hwa_lr:g})", tuned, example, hw,
                               args, reference=model))
    print(f"\nwhole run {time.perf_counter() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=1, default=str))


if __name__ == "__main__":
    main()
