"""Leakage, power gating and the AIMC/digital ratio (issues 22 and 24, item 5): roberta-base on pcm_1M against the
digital baseline at batch 1 and 8 (and with the baseline fitted without each digital chip), and a Llama-3.1-8B decode
step's leakage share, with and without power gating, in one run.

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python bench/leakage.py [--skip-llama] [--gen-len 16]

Shapes only (meta device): roberta-base at 128 tokens, `--allocation auto` (the CLI's default); Llama-3.1-8B packed
on up to 64 chips, prompt 128. Prints one JSON line per estimate.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import warnings

sys.path.insert(0, ".")
from compiler import compile_model, load_hw_spec, load_model  # noqa: E402


def _place(name: str, seq_len: int, allocation: str, **overrides):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, example = load_model(name, seq_len=seq_len, materialize=False)
    return compile_model(model, example, load_hw_spec("pcm_1M", overrides), allocation=allocation)


def _estimate(placed, hw, batch: int, **kw):
    return dataclasses.replace(placed, hw=hw).estimate(batch=batch, seq_len=128, sensitivity=False, **kw)


def _static(data: dict) -> dict:
    s = data["static"]
    return {f"static_{k}": s.get(k) for k in ("power_W", "energy_J", "share_of_energy", "decode_step_share",
                                              "all_on_power_W", "gated_vs_all_on")}


def roberta() -> None:
    placed = _place("roberta-base", 128, "auto")
    for batch in (1, 8):
        for gating in (True, False):
            hw = load_hw_spec("pcm_1M", {"static.power_gating": gating})
            t0 = time.perf_counter()
            cost = _estimate(placed, hw, batch)
            data = cost.to_json()
            b = data["baseline"]
            print(json.dumps({"model": "roberta-base", "tiles": placed.tiles_used, "batch": batch,
                              "power_gating": gating, "energy_J": cost.energy_J, "latency_s": cost.latency_s,
                              "baseline_energy_J": b["energy_J"], "baseline_latency_s": b["latency_s"],
                              "energy_ratio": b["energy_ratio"], "latency_ratio": b["latency_ratio"],
                              "baseline_by_component_J": b["energy_by_component_J"], **_static(data),
                              "estimate_s": time.perf_counter() - t0}), flush=True)


def baseline_fits() -> None:
    """roberta-base's ratio with the baseline's two numbers fitted on every digital chip, then without each one."""
    from compiler.backends.estimator.calibration import fitted_factor
    from compiler.hw_spec import load_baseline_spec
    placed = _place("roberta-base", 128, "auto")
    spec = load_baseline_spec("digital_int8")
    for group in (None, "tpu_v1", "tpu_v4i", "a100", "h100"):
        k, u = fitted_factor("digital_mac_overhead", group)[0], fitted_factor("digital_uncore", group)[0]
        for batch in (1, 8):
            cost = _estimate(placed, placed.hw, batch, baseline=dataclasses.replace(spec, mac_overhead=k,
                                                                                    uncore_W_per_mm2=u))
            print(json.dumps({"model": "roberta-base", "without": group, "mac_overhead": k, "uncore_W_per_mm2": u,
                              "batch": batch, "energy_J": cost.energy_J, "baseline_energy_J": cost.baseline.energy_J,
                              "energy_ratio": cost.baseline.energy_J / cost.energy_J}), flush=True)


def llama(gen_len: int) -> None:
    placed = _place("meta-llama/Llama-3.1-8B", 128, "packed", **{"tile.max_chips": 64})
    for gating in (True, False):
        hw = load_hw_spec("pcm_1M", {"tile.max_chips": 64, "static.power_gating": gating})
        t0 = time.perf_counter()
        cost = _estimate(placed, hw, 1, gen_len=gen_len)
        data = cost.to_json()
        d = data["decode"]
        print(json.dumps({"model": "Llama-3.1-8B", "chips": placed.chips_used, "power_gating": gating,
                          "energy_per_token_J": d["energy_per_token_J"], "tokens_per_s": d["tokens_per_s"],
                          "decode_step_energy_J": d["decode_step_energy_J"],
                          "decode_step_latency_s": d["decode_step_latency_s"],
                          "baseline_energy_per_token_J": d["baseline_energy_per_token_J"], **_static(data),
                          "estimate_s": time.perf_counter() - t0}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-llama", action="store_true")
    parser.add_argument("--gen-len", type=int, default=16)
    args = parser.parse_args()
    roberta()
    baseline_fits()
    if not args.skip_llama:
        llama(args.gen_len)


if __name__ == "__main__":
    main()
