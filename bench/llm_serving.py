"""LLM serving on the AIMC chip against scaled digital baselines (issue 24): the docs/decoders.md table, and the
GPU-class baseline's serving terms checked against published measurements.

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python bench/llm_serving.py [--models 8b,70b] [--skip-check]
        [--ranges 8b:1,8,32 --ranges 70b:1,8,32]

Shapes only (meta device), pcm_1M, packed allocation; per model and prompt (128, 4096; 128 tokens generated): the
AIMC chip (with uncertainty ranges at the batches --ranges names: cost.json decode.by_batch[].ranges), the
TPU-v4i-class baseline at iso-area, the GPU-class baseline at chips=1 and at iso-area; batch 1, 8, 32. One AIMC
estimate per model and prompt; the baselines are priced on the same workloads alone
(decode.DecodeModel.baseline_generation). Prints markdown rows, and one JSON line per model and prompt to stderr.
Check: compiler/serving.py (hw_specs/serving_validation.yaml) with its held-out errors.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings

sys.path.insert(0, ".")
from compiler import compile_model, load_hw_spec, load_model  # noqa: E402
from compiler.backends.estimator.baseline import scale_baseline  # noqa: E402
from compiler.backends.estimator.decode import DECODE_BATCHES, DecodeModel  # noqa: E402
from compiler.backends.estimator.pricing import Chip  # noqa: E402
from compiler.backends.estimator.workload import WorkloadTemplate  # noqa: E402
from compiler.hw_spec import load_baseline_spec  # noqa: E402

MODELS = {"8b": ("meta-llama/Llama-3.1-8B", 64), "70b": ("meta-llama/Llama-3.1-70B", 600)}
AIMC_SIDE = ("digital_int8", "iso-area")   # priced inside the AIMC estimate
OTHER_SIDES = (("gpu_h100", "chips=1"), ("gpu_h100", "iso-area"))
PROMPTS = (128, 4096)
GEN_LEN = 128


def _place(name: str, max_chips: int):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, example = load_model(name, seq_len=128, materialize=False)
    return compile_model(model, example, load_hw_spec("pcm_1M", {"tile.max_chips": max_chips}), allocation="packed")


def _range(r: dict | None, metric: str, scale: float, fmt: str) -> str:
    if not r:
        return ""
    low, _, high = r[metric]
    return f" ({format(low * scale, fmt)}-{format(high * scale, fmt)})"


def _row(key, prompt, batch, side, chips, ttft_s, tokens_per_s, mj, bound, ranges=None) -> str:
    return (f"| {key} | {prompt} | {batch} | {side} | {chips} | "
            f"{ttft_s * 1e3:.3g} ms{_range(ranges, 'ttft_s', 1e3, '.3g')} | "
            f"{tokens_per_s:,.0f}{_range(ranges, 'tokens_per_s', 1, ',.0f')} | {tokens_per_s / batch:,.0f} | "
            f"{mj:.3g}{_range(ranges, 'energy_per_token_J', 1e3, '.3g')} | {bound} |")


def table(models: list[str], range_batches: dict[str, tuple[int, ...]]) -> None:
    print("| model | prompt | batch | side | chips | TTFT (range) | tokens/s, aggregate (range) | "
          "tokens/s per sequence | mJ/token (range) | bound |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for key in models:
        name, max_chips = MODELS[key]
        t0 = time.perf_counter()
        placed = _place(name, max_chips)
        print(json.dumps({"model": name, "map_s": round(time.perf_counter() - t0, 1), "chips": placed.chips_used}),
              file=sys.stderr)
        hw = placed.hw
        alone = DecodeModel(WorkloadTemplate(placed), Chip.of(placed, {}), None)  # the baselines' workloads
        for prompt in PROMPTS:
            t0 = time.perf_counter()
            cost = placed.estimate(batch=1, seq_len=prompt, gen_len=GEN_LEN, sensitivity=False,
                                   baseline=AIMC_SIDE[0], baseline_scale=AIMC_SIDE[1],
                                   decode_range_batches=range_batches.get(key, ()))
            aimc_s = time.perf_counter() - t0
            aimc_W = cost.energy_J / cost.latency_s
            rows = []
            for g in cost.decode.by_batch:
                last = g.steps[-1]
                rows.append(_row(key, prompt, g.batch, "pcm_1M", cost.chips, g.prefill.latency_s, g.tokens_per_s,
                                 g.energy_per_token_J * 1e3, last.bound, g.ranges))
                rows.append(_row(key, prompt, g.batch, " ".join(AIMC_SIDE), cost.baseline_scaling.chips,
                                 g.prefill.baseline_latency_s, g.baseline_tokens_per_s,
                                 g.baseline_energy_per_token_J * 1e3, g.baseline_bound))
            t0 = time.perf_counter()
            for spec_name, scale in OTHER_SIDES:
                scaled = scale_baseline(load_baseline_spec(spec_name), hw, scale, cost.chips * cost.area.chip_mm2,
                                        aimc_W)
                for batch in DECODE_BATCHES:
                    r = alone.baseline_generation(scaled.spec, batch, prompt, GEN_LEN)
                    rows.append(_row(key, prompt, batch, f"{spec_name} {scale}", scaled.chips, r["ttft_s"],
                                     r["tokens_per_s"], r["energy_per_token_J"] * 1e3, r["bound"]))
            print(json.dumps({"model": name, "prompt": prompt, "aimc_estimate_s": round(aimc_s, 1),
                              "baselines_s": round(time.perf_counter() - t0, 1),
                              "by_batch": cost.to_json()["decode"]["by_batch"]}), file=sys.stderr)
            print("\n".join(sorted(rows, key=lambda r: (int(r.split("|")[3]), "pcm_1M" not in r))))
            sys.stdout.flush()


def check() -> None:
    from compiler.serving import Validation, summary
    terms, predictions = Validation().run()
    for pr in predictions:
        p = pr.point
        print(f"check: {p.model} {p.metric} batch {p.batch}, {p.input}/{p.output}: published {p.published:,.4g}, "
              f"held out {pr.predicted:,.4g} ({pr.error:+.1%})")
    print("check: " + json.dumps(summary(terms, predictions)))
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="8b,70b")
    parser.add_argument("--skip-check", action="store_true")
    parser.add_argument("--ranges", action="append", default=None,
                        help="MODEL:B1,B2 (default: every batch of both): the batches whose AIMC figures get ranges")
    args = parser.parse_args()
    ranges = {}
    for item in args.ranges or ["8b:1,8,32", "70b:1,8,32"]:
        key, _, batches = item.partition(":")
        ranges[key] = tuple(int(b) for b in batches.split(",") if b)
    if not args.skip_check:
        check()
    table([m for m in args.models.split(",") if m], ranges)


if __name__ == "__main__":
    main()
