"""Decoder inference cost (issue 14, items 2-3): prefill and decode on the AIMC chip against the digital INT8
baseline on the same workload (the ratio in the same run), and the time the estimate takes.

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python bench/decode_cost.py [--model gpt2] [--hw pcm_1M]
                                                [--max-chips 64] [--seq-len 128] [--gen-len 128] [--batch 1]

Shapes only (meta device): the bundled configs of gpt2, meta-llama/Llama-3.1-8B and -70B, or a config-only
directory. Prints one JSON line: TTFT, tokens/s, J/token and the baseline's, the KV cache and its location, chip
link traffic, the batch table, the seconds of mapping and of the estimate (docs/decoders.md).
"""
from __future__ import annotations

import argparse
import json
import sys
import time

sys.path.insert(0, ".")
from compiler import compile_model, load_hw_spec, load_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gpt2")
    parser.add_argument("--hw", default="pcm_1M")
    parser.add_argument("--max-chips", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--gen-len", type=int, default=128)
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    t0 = time.perf_counter()
    model, example = load_model(args.model, seq_len=args.seq_len, materialize=False)
    placed = compile_model(model, example, load_hw_spec(args.hw, {"tile.max_chips": args.max_chips}),
                           allocation="packed")
    t1 = time.perf_counter()
    cost = placed.estimate(batch=args.batch, seq_len=args.seq_len, gen_len=args.gen_len, sensitivity=False)
    t2 = time.perf_counter()
    data = cost.to_json()
    d = data["decode"]
    print(json.dumps({
        "model": args.model, "hw": args.hw, "tiles": placed.tiles_used, "chips": placed.chips_used,
        "map_s": t1 - t0, "estimate_s": t2 - t1, "static_power_W": cost.static_power_W,
        **{k: d[k] for k in ("ttft_s", "tokens_per_s", "energy_per_token_J", "baseline_ttft_s",
                             "baseline_tokens_per_s", "baseline_energy_per_token_J", "baseline_weights",
                             "prefill_link_bytes", "prefill_link_energy_J", "decode_step_link_bytes",
                             "decode_step_link_energy_J")},
        "energy_ratio": d["baseline_energy_per_token_J"] / d["energy_per_token_J"],
        "speed_ratio": d["tokens_per_s"] / d["baseline_tokens_per_s"],
        "kv_cache": {k: d["kv_cache"][k] for k in ("bytes", "location", "sram_bytes", "baseline_location")},
        "by_batch": [{k: r[k] for k in ("batch", "tokens_per_s", "energy_per_token_J", "baseline_tokens_per_s",
                                         "baseline_energy_per_token_J", "kv_location")} for r in d["by_batch"]],
    }))


if __name__ == "__main__":
    main()
