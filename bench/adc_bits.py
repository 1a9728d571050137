"""Does simulated accuracy tell 6-, 7- and 8-bit ADCs apart? all-MiniLM-L6-v2 (real weights) on pcm_1M.

Four parts, one run (docs/accuracy.md):
1. The grid: ADC 6/7/8 bits x tiles 256/512, post-training range optimizations (PT) on and off, at one drift
   time, `--seeds` chips each, on the built-in evaluation sentences (compiler.sentences.evaluation_texts):
   embedding cosine and retrieval agreement to FP, mean, std and 95 % confidence interval over seeds, and the
   8-bit minus 6-bit difference paired by seed (the same seed programs the same devices) with its CI.
2. Why PT off gets *better* with fewer ADC bits: the same PT-off chips with output noise off, and with the
   ADC step of only the noise-dominated segments (RMS output below the output noise) swapped between 6 and 8
   bits; and 6 vs 8 bits without PCM device noise, and without any noise.
3. Per-MVM error budget of every tile segment (reference MVM, compiler/analog/tile.py) with one
   non-ideality at a time: ADC quantization at 6/7/8 bits, output noise, PCM device noise at the drift time,
   DAC quantization, and all together; PT on and off, 512 tiles, on the calibration sample of input vectors.
4. The evaluation set's size: the confidence intervals on 32, 100 and `--eval-sentences` sentences (PT on,
   512 tiles), and the cost: 32 sentences against `--eval-sentences`, same placement, same run.

    PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python bench/adc_bits.py --seeds 5 --out docs/adc_bits.json
    PYTHONPATH=. .venv/bin/python bench/adc_bits.py --tables docs/adc_bits.json     # the tables of docs/accuracy.md
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from compiler import compile_model, load_hw_spec, load_model
from compiler.analog.periphery import dac
from compiler.analog.programming import program_segment
from compiler.analog.tile import analog_mvm
from compiler.evaluation.accuracy import ci_half_width, evaluate_accuracy, parse_drift_times
from compiler.ir import SegmentRanges
from passes.ranges import calibration_inputs, collect_statistics, segment_weight

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
TABLE_METRICS = ("embedding_cosine_mean", "retrieval_agreement", "output_rel_l2")
NO_DEVICE = {"device.programming_noise": False, "device.drift": False, "device.read_noise": False}
IDEAL = {**NO_DEVICE, "dac.bits": None, "adc.bits": None, "output_noise": 0.0}


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _spec(tile: int, **overrides):
    return load_hw_spec("pcm_1M", {"tile.rows": tile, "tile.cols": tile, **overrides})


def _rows(result: dict, key: str) -> dict:
    """metric -> {mean, std, ci95, per_seed} of the first drift time of result[key]."""
    row = result[key][0]
    return {m: {"mean": row["mean"][m], "std": row["std"][m], "ci95": row["ci95"][m], "per_seed": row["per_seed"][m]}
            for m in TABLE_METRICS}


def _paired(a: list[float], b: list[float]) -> dict:
    diff = [x - y for x, y in zip(a, b)]
    return {"mean": float(np.mean(diff)), "ci95": ci_half_width(diff), "per_seed": diff}


def grid(model, example, args, drift) -> dict:
    out = {}
    for tile in args.tiles:
        for bits in args.bits:
            started = time.perf_counter()
            placed = compile_model(model, example, _spec(tile, **{"adc.bits": bits}), calibration=args.calibration)
            result = evaluate_accuracy(placed, [drift], seeds=args.seeds, progress=False, compare_without_pt=True,
                                       eval_sentences=args.eval_sentences)
            key = f"tile {tile}, ADC {bits} bit"
            out[key] = {"tile": tile, "adc_bits": bits, "tiles_used": placed.tiles_used, "eval": result["eval"],
                        "pt_on": _rows(result, "results"), "pt_off": _rows(result, "results_without_pt_opt"),
                        "seconds": time.perf_counter() - started}
            cos = {k: out[key][k]["embedding_cosine_mean"] for k in ("pt_on", "pt_off")}
            _say(f"{key}: cosine PT on {cos['pt_on']['mean']:.4f} +- {cos['pt_on']['ci95'] or 0:.4f}, "
                 f"PT off {cos['pt_off']['mean']:.4f} +- {cos['pt_off']['ci95'] or 0:.4f} "
                 f"({out[key]['seconds']:.0f} s)")
    separation = {}
    for tile in args.tiles:
        lo, hi = out[f"tile {tile}, ADC {min(args.bits)} bit"], out[f"tile {tile}, ADC {max(args.bits)} bit"]
        for pt in ("pt_on", "pt_off"):
            separation[f"tile {tile}, {pt}"] = {m: _paired(hi[pt][m]["per_seed"], lo[pt][m]["per_seed"])
                                                for m in TABLE_METRICS}
    return {"points": out, f"{max(args.bits)} bit minus {min(args.bits)} bit, paired by seed": separation}


def _quiet_segments(placed, stats, ranges: dict[int, SegmentRanges], noise: float) -> dict[int, float]:
    """Segment id -> RMS of its ideal normalized output (DAC at its range, per-tile weight normalization) on the
    calibration sample, for the segments where it is below the output noise."""
    quiet = {}
    for s in placed.segments:
        w = segment_weight(placed, s).float()
        x_n = dac(stats.segment_sample(s), torch.tensor(ranges[s.id].dac_range), 8)
        rms = float((x_n @ (w / w.abs().max()).T).pow(2).mean().sqrt())
        if rms < noise:
            quiet[s.id] = rms
    return quiet


def anomaly(model, example, args, drift, noise_sources: bool = False) -> dict:
    """PT off, 512 tiles: 6 vs 8 bits as is, without output noise, and with the quiet segments' ADC step swapped;
    with `noise_sources`, instead 6 vs 8 bits without PCM device noise, and without any noise."""
    placed = compile_model(model, example, _spec(512), calibration=args.calibration, pt_column_range=False,
                           pt_input_range=False)
    stats = collect_statistics(placed, calibration_inputs(placed, args.calibration))
    base = placed.segment_ranges()
    noise = placed.hw.output_noise
    quiet = _quiet_segments(placed, stats, base, noise)
    step = 2 ** (max(args.bits) - 1) - 1, 2 ** (min(args.bits) - 1) - 1  # quantizer levels per side

    def scaled(factor: float) -> dict[int, SegmentRanges]:
        return {i: SegmentRanges(r.dac_range, r.adc_range * (factor if i in quiet else 1.0), r.col_w_max)
                for i, r in base.items()}

    cases = {  # name -> (ADC bits, spec overrides, ranges)
        f"{max(args.bits)} bit": (max(args.bits), {}, None),
        f"{min(args.bits)} bit": (min(args.bits), {}, None),
        f"{max(args.bits)} bit, no output noise": (max(args.bits), {"output_noise": 0.0}, None),
        f"{min(args.bits)} bit, no output noise": (min(args.bits), {"output_noise": 0.0}, None),
        f"{max(args.bits)} bit, quiet segments' ADC step as at {min(args.bits)} bit":
            (max(args.bits), {}, scaled(step[0] / step[1])),
        f"{min(args.bits)} bit, quiet segments' ADC step as at {max(args.bits)} bit":
            (min(args.bits), {}, scaled(step[1] / step[0])),
    }
    if noise_sources:
        hi, lo = max(args.bits), min(args.bits)
        cases = {f"{hi} bit, no device noise": (hi, NO_DEVICE, None), f"{lo} bit, no device noise": (lo, NO_DEVICE, None),
                 f"{hi} bit, no noise at all": (hi, {**NO_DEVICE, "output_noise": 0.0}, None),
                 f"{lo} bit, no noise at all": (lo, {**NO_DEVICE, "output_noise": 0.0}, None)}
    out = {"quiet_segments": [{"id": s.id, "block": s.block, "rows": list(s.block_rows), "adc_range": s.adc_range,
                               "rms_output": quiet[s.id]} for s in placed.segments if s.id in quiet], "cases": {}}
    for name, (bits, overrides, ranges) in cases.items():
        options = {"hw": _spec(512, **{"adc.bits": bits, **overrides})}
        if ranges is not None:
            options["ranges"] = ranges
        result = evaluate_accuracy(placed, [drift], seeds=args.seeds, progress=False, simulator_options=options,
                                   eval_sentences=args.eval_sentences)
        out["cases"][name] = _rows(result, "results")
        cos = out["cases"][name]["embedding_cosine_mean"]
        _say(f"PT off, {name}: cosine {cos['mean']:.4f} +- {cos['ci95'] or 0:.4f}")
    return out


def error_budget(model, example, args, drift) -> dict:
    """Relative MVM error of every segment with one non-ideality at a time (reference MVM, seed 0)."""
    placed = compile_model(model, example, _spec(512), calibration=args.calibration)
    stats = collect_statistics(placed, calibration_inputs(placed, args.calibration))
    sources = {f"ADC {b} bit": {**IDEAL, "adc.bits": b} for b in args.bits}
    sources.update({"output noise": {**IDEAL, "output_noise": placed.hw.output_noise},
                    "PCM device noise (programming, drift, read)": {**IDEAL, **{k: True for k in NO_DEVICE}},
                    "DAC 8 bit": {**IDEAL, "dac.bits": 8}})
    sources.update({f"all, ADC {b} bit": {"adc.bits": b} for b in args.bits})
    out = {}
    for label, ranges in (("PT on", placed.segment_ranges()), ("PT off", placed.ranges_before_pt)):
        rows = {}
        for name, overrides in sources.items():
            hw = _spec(512, **overrides)
            per_segment, err2, ref2 = [], 0.0, 0.0
            for s in placed.segments:
                r = ranges[s.id]
                w = segment_weight(placed, s).float()
                x = stats.segment_sample(s)
                generator = torch.Generator().manual_seed(1000 + s.id)
                programmed = program_segment(w, hw, generator, drift.seconds, r.col_w_max)
                y = analog_mvm(x, programmed, r.dac_range, r.adc_range, hw, generator)
                reference = x @ w.T
                e2, f2 = float((y - reference).pow(2).sum()), float(reference.pow(2).sum())
                per_segment.append(math.sqrt(e2 / f2))
                err2, ref2 = err2 + e2, ref2 + f2
            rows[name] = {"median_over_segments": float(np.median(per_segment)),
                          "max_over_segments": float(np.max(per_segment)), "all_segments": math.sqrt(err2 / ref2)}
            _say(f"MVM error, {label}, {name}: median {rows[name]['median_over_segments']:.4f}, "
                 f"all {rows[name]['all_segments']:.4f}")
        out[label] = rows
    return out


def cost(model, example, args, drift) -> dict:
    """Wall time of evaluate_accuracy, 1 seed x 1 drift time with the PT-off comparison (1 FP pass + 2 chip
    passes), on 32 sentences (the earlier built-in set) against `--eval-sentences` (512 tiles, 8 bit)."""
    placed = compile_model(model, example, _spec(512), calibration=args.calibration)
    out = {}
    for count in (32, args.eval_sentences):
        evaluate_accuracy(placed, [drift], seeds=[0], progress=False, eval_sentences=count)  # warm-up
        started = time.perf_counter()
        result = evaluate_accuracy(placed, [drift], seeds=[0], progress=False, compare_without_pt=True,
                                   eval_sentences=count)
        out[str(count)] = {"seconds": time.perf_counter() - started, "tokens_max": result["eval"]["max_seq_len"],
                           "examples": result["eval"]["examples"]}
        _say(f"evaluation of {count} sentences, 3 passes: {out[str(count)]['seconds']:.1f} s")
    out["ratio"] = out[str(args.eval_sentences)]["seconds"] / out["32"]["seconds"]
    return out


def sentence_counts(model, example, args, drift) -> dict:
    """PT on, 512 tiles, lowest and highest ADC bits: mean, std and ci95 over the seeds on 32, 100 and
    `--eval-sentences` sentences (does the interval come from the chips or from the sentences?)."""
    out = {}
    for bits in (min(args.bits), max(args.bits)):
        placed = compile_model(model, example, _spec(512, **{"adc.bits": bits}), calibration=args.calibration)
        for count in (32, 100, args.eval_sentences):
            result = evaluate_accuracy(placed, [drift], seeds=args.seeds, progress=False, eval_sentences=count)
            out[f"{bits} bit, {count} sentences"] = _rows(result, "results")
            cos = out[f"{bits} bit, {count} sentences"]["embedding_cosine_mean"]
            _say(f"PT on, 512 tiles, {bits} bit, {count} sentences: cosine {cos['mean']:.4f} +- {cos['ci95']:.4f}")
    return out


def _cell(stat: dict, digits: int = 3) -> str:
    ci = f" [{stat['mean'] - stat['ci95']:.{digits}f}, {stat['mean'] + stat['ci95']:.{digits}f}]" if stat["ci95"] is not None else ""
    return f"{stat['mean']:.{digits}f}{ci}"


def tables(result: dict) -> str:
    """The markdown tables of docs/accuracy.md from this script's JSON output."""
    lines = []
    if "grid" in result:
        lines += ["| tile | ADC | PT | embedding cosine [95 % CI] | retrieval agreement [95 % CI] | output rel. L2 [95 % CI] |",
                  "|---|---|---|---|---|---|"]
        for point in result["grid"]["points"].values():
            for pt, label in (("pt_on", "on"), ("pt_off", "off")):
                row = point[pt]
                lines.append(f"| {point['tile']} | {point['adc_bits']} bit | {label} | "
                             + " | ".join(_cell(row[m]) for m in TABLE_METRICS) + " |")
        key = next(k for k in result["grid"] if k != "points")
        lines += ["", f"{key}:", "", "| tile, PT | embedding cosine | retrieval agreement | output rel. L2 |",
                  "|---|---|---|---|"]
        for name, diff in result["grid"][key].items():
            lines.append(f"| {name.replace('pt_on', 'PT on').replace('pt_off', 'PT off')} | "
                         + " | ".join(f"{d['mean']:+.4f} ± {d['ci95']:.4f}" for d in (diff[m] for m in TABLE_METRICS)) + " |")
    if "anomaly" in result:
        lines += ["", "| PT off, 512 tiles | embedding cosine [95 % CI] | output rel. L2 [95 % CI] |", "|---|---|---|"]
        for name, row in result["anomaly"]["cases"].items():
            lines.append(f"| {name} | {_cell(row['embedding_cosine_mean'])} | {_cell(row['output_rel_l2'])} |")
    if "sentence_counts" in result:
        lines += ["", "| PT on, 512 tiles | embedding cosine ± ci95 (std) | retrieval agreement ± ci95 | output rel. L2 ± ci95 |",
                  "|---|---|---|---|"]
        for name, row in result["sentence_counts"].items():
            lines.append(f"| {name} | " + " | ".join(f"{row[m]['mean']:.4f} ± {row[m]['ci95']:.4f}"
                                                     + (f" ({row[m]['std']:.4f})" if m == TABLE_METRICS[0] else "")
                                                     for m in TABLE_METRICS) + " |")
    if "error_budget" in result:
        budget = result["error_budget"]
        names = list(next(iter(budget.values())))
        lines += ["", "| one non-ideality at a time | " + " | ".join(f"{k}: median segment / all" for k in budget) + " |",
                  "|---|" + "---|" * len(budget)]
        for name in names:
            lines.append(f"| {name} | " + " | ".join(f"{budget[k][name]['median_over_segments']:.3f} / "
                                                     f"{budget[k][name]['all_segments']:.3f}" for k in budget) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--bits", default="6,7,8")
    parser.add_argument("--tiles", default="256,512")
    parser.add_argument("--drift-time", default="1h")
    parser.add_argument("--eval-sentences", type=int, default=1000)
    parser.add_argument("--calibration", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--parts", default="grid,anomaly,noise,budget,sentences,cost")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--tables", type=Path, metavar="JSON", help="print the markdown tables of an earlier --out")
    args = parser.parse_args()
    if args.tables:
        print(tables(json.loads(args.tables.read_text())))
        return
    args.bits = [int(b) for b in args.bits.split(",")]
    args.tiles = [int(t) for t in args.tiles.split(",")]
    drift = parse_drift_times(args.drift_time)[0]
    started = time.time()
    model, example = load_model(MINILM, seq_len=args.seq_len)
    parts = args.parts.split(",")
    result = {"command": " ".join(sys.argv), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
              "torch": torch.__version__, "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
              "load_average_at_start": os.getloadavg(), "seeds": list(range(args.seeds)), "drift_time": drift.label,
              "eval_sentences": args.eval_sentences, "calibration": args.calibration, "seq_len": args.seq_len}
    if "grid" in parts:
        result["grid"] = grid(model, example, args, drift)
    if "anomaly" in parts:
        result["anomaly"] = anomaly(model, example, args, drift)
    if "noise" in parts:
        extra = anomaly(model, example, args, drift, noise_sources=True)
        result.setdefault("anomaly", extra)["cases"].update(extra["cases"] if "anomaly" in parts else {})
    if "budget" in parts:
        result["error_budget"] = error_budget(model, example, args, drift)
    if "sentences" in parts:
        result["sentence_counts"] = sentence_counts(model, example, args, drift)
    if "cost" in parts:
        result["cost"] = cost(model, example, args, drift)
    result["load_average_at_end"] = os.getloadavg()
    result["elapsed_s"] = time.time() - started
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
