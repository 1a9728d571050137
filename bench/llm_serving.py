"""LLM serving on the AIMC chip against scaled digital baselines (issue 24, items 2 and 5): the docs/decoders.md
table, and the GPU-class baseline's predicted throughput against published measurements.

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python bench/llm_serving.py [--models 8b,70b] [--skip-check]

Shapes only (meta device), pcm_1M, packed allocation; per model and prompt (128, 4096; 128 tokens generated):
the AIMC chip, the TPU-v4i-class baseline at iso-area, the GPU-class baseline at chips=1 and at iso-area; batch
1, 8, 32 (the decode record's batch table). Prints markdown rows and one JSON line per estimate.
Check: LLaMA-2-7B's shapes (hidden 4096, 32 layers, 32 heads, MHA, SwiGLU 11008, vocabulary 32000) on gpu_h100
chips=1, output tokens/s = batch x generated / (TTFT + decode) as TensorRT-LLM's static-batching benchmark counts
them, against its published H100 FP8 TP1 figures (docs/decoders.md cites them).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, ".")
from compiler import compile_model, load_hw_spec, load_model  # noqa: E402

MODELS = {"8b": ("meta-llama/Llama-3.1-8B", 64), "70b": ("meta-llama/Llama-3.1-70B", 600)}
SIDES = (("digital_int8", "iso-area"), ("gpu_h100", "chips=1"), ("gpu_h100", "iso-area"))
LLAMA2_7B = dict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=32000, hidden_size=4096,
                 intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                 max_position_embeddings=4096, rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2,
                 tie_word_embeddings=False)
# TensorRT-LLM release 0.5.0, docs/source/performance.md, "H100 GPUs (FP8)", TP 1, out tok/s (static batching)
PUBLISHED = ((64, 128, 128, 9193), (32, 2048, 2048, 2230))


def _place(name: str, max_chips: int, seq_len: int):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, example = load_model(name, seq_len=min(seq_len, 128), materialize=False)
    return compile_model(model, example, load_hw_spec("pcm_1M", {"tile.max_chips": max_chips}), allocation="packed")


def _out_tokens_per_s(gen, baseline: bool) -> float:
    """batch x gen_len over the prefill and every decode step (what a static-batching benchmark measures)."""
    pre = gen.prefill.baseline_latency_s if baseline else gen.prefill.latency_s
    steps = gen._sum("baseline_latency_s" if baseline else "latency_s")
    return gen.tokens / (pre + steps)


def table(models: list[str]) -> None:
    print("| model | prompt | batch | side | chips | TTFT | tokens/s (aggregate) | tokens/s per sequence | mJ/token | "
          "bound |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for key in models:
        name, max_chips = MODELS[key]
        t0 = time.perf_counter()
        placed = _place(name, max_chips, 128)
        print(json.dumps({"model": name, "map_s": time.perf_counter() - t0, "chips": placed.chips_used}),
              file=sys.stderr)
        for prompt in (128, 4096):
            aimc_done = False
            for spec, scale in SIDES:
                t0 = time.perf_counter()
                cost = placed.estimate(batch=1, seq_len=prompt, gen_len=128, sensitivity=False, baseline=spec,
                                       baseline_scale=scale)
                chips = cost.baseline_scaling.chips
                print(json.dumps({"model": name, "prompt": prompt, "baseline": spec, "scale": scale,
                                  "estimate_s": time.perf_counter() - t0, "decode": cost.to_json()["decode"]["by_batch"]}),
                      file=sys.stderr)
                for g in cost.decode.by_batch:
                    last = g.steps[-1]
                    if not aimc_done:
                        print(f"| {key} | {prompt} | {g.batch} | pcm_1M | {cost.chips} | {g.prefill.latency_s * 1e3:.3g} ms"
                              f" | {g.tokens_per_s:,.0f} | {g.tokens_per_s / g.batch:,.0f} | "
                              f"{g.energy_per_token_J * 1e3:.3g} | {last.bound} |")
                    print(f"| {key} | {prompt} | {g.batch} | {spec} {scale} | {chips} | "
                          f"{g.prefill.baseline_latency_s * 1e3:.3g} ms | {g.baseline_tokens_per_s:,.0f} | "
                          f"{g.baseline_tokens_per_s / g.batch:,.0f} | {g.baseline_energy_per_token_J * 1e3:.3g} | "
                          f"{last.baseline_bound} |")
                aimc_done = True
                sys.stdout.flush()


def check() -> None:
    """gpu_h100 chips=1 on LLaMA-2-7B's shapes against TensorRT-LLM's published H100 figures."""
    folder = Path(tempfile.mkdtemp())
    (folder / "config.json").write_text(json.dumps(LLAMA2_7B))
    placed = _place(str(folder), 64, 128)
    for batch, isl, osl, published in PUBLISHED:
        cost = placed.estimate(batch=batch, seq_len=isl, gen_len=osl, sensitivity=False, baseline="gpu_h100",
                               baseline_scale="chips=1")
        predicted = _out_tokens_per_s(cost.decode.run, baseline=True)
        print(f"check: LLaMA-2-7B shapes, H100 FP8 TP1, batch {batch}, {isl}/{osl}: predicted {predicted:,.0f} out "
              f"tok/s, published {published:,} ({predicted / published - 1:+.0%}); bound: "
              f"{cost.decode.run.steps[-1].baseline_bound}")
        sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="8b,70b")
    parser.add_argument("--skip-check", action="store_true")
    args = parser.parse_args()
    if not args.skip_check:
        check()
    table([m for m in args.models.split(",") if m])


if __name__ == "__main__":
    main()
