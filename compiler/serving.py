"""The GPU-class baseline against published LLM serving measurements (issue 24, item 2).

The data: hw_specs/serving_validation.yaml.

Each published point names a model's shapes, a batch, input and output lengths and what was measured (output
tokens/s of the whole batch, or the time to first token). The tool prices the shapes on the baseline (gpu_h100,
chips=1) as the decode record does (decode.DecodeModel.baseline_point: the prefill, then a decode step per output
token at 5 sampled contexts, linear in between) and counts output tokens/s as TensorRT-LLM's static-batching
benchmark does: batch x output tokens / (first token + every decode step).

Two serving terms no datasheet gives are fitted on the throughput points: the share of the DRAM bandwidth a real
kernel reaches (`dram_efficiency`) and a fixed time per transformer layer per forward (`layer_overhead_us`:
kernel launches, synchronization), by least squares of ln(predicted / published) on a grid. Each point is predicted
by the terms fitted on the OTHER points (leave-one-out); time-to-first-token points, never fitted on, by the terms
fitted on every throughput point. The spec's values (hw_specs/gpu_h100.yaml) are that fit on every point.

Pricing is exact and fast on shallow copies: the baseline's time and energy are sums over layers, so a model is
priced at 2 and 3 layers and extrapolated linearly to its depth (where the KV cache and the weights live is decided
for the full depth).
"""
from __future__ import annotations

import json
import math
import tempfile
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from compiler.errors import UserError
from compiler.hw_spec import SPEC_DIR, DigitalBaselineSpec, _read_yaml_mapping, load_baseline_spec, load_hw_spec
from compiler.backends.estimator.decode import DecodeModel

SERVING_VALIDATION_FILE = SPEC_DIR / "serving_validation.yaml"
DEPTHS = (2, 3)
THROUGHPUT, TTFT = "out_tokens_per_s", "ttft_s"


@dataclass(frozen=True)
class Point:
    model: str
    metric: str
    batch: int
    input: int
    output: int
    published: float
    source: str
    note: str = ""


def load_validation(path: Path = SERVING_VALIDATION_FILE) -> dict:
    data = _read_yaml_mapping(path)
    data["points"] = [Point(**p) for p in data["points"]]
    return data


def _layers(config: dict) -> int:
    return int(config.get("num_hidden_layers") or config["n_layer"])


class ServingModel:
    """One published model's shapes, mapped (shapes only) at DEPTHS layers for the baseline's pricing."""

    def __init__(self, architecture: str, config: dict):
        import transformers as tf

        from compiler import compile_model, load_model
        from compiler.backends.estimator.pricing import Chip
        from compiler.backends.estimator.workload import WorkloadTemplate
        classes = {"llama": tf.LlamaConfig, "gptj": tf.GPTJConfig}
        if architecture not in classes:
            raise UserError(f"serving validation: architecture {architecture!r}: expected one of {sorted(classes)}")
        self.layers = _layers(config)
        hw = load_hw_spec("pcm_1M", {"tile.max_chips": 1024})
        self.models: dict[int, DecodeModel] = {}
        for depth in DEPTHS:
            shallow = {**config, ("num_hidden_layers" if "num_hidden_layers" in config else "n_layer"): depth}
            with tempfile.TemporaryDirectory(prefix="serving_") as folder, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                (Path(folder) / "config.json").write_text(classes[architecture](**shallow).to_json_string())
                model, example = load_model(folder, seq_len=8, materialize=False)
                placed = compile_model(model, example, hw, allocation="naive")
            self.models[depth] = DecodeModel(WorkloadTemplate(placed), Chip.of(placed, {}), None)

    def _full(self, values: dict[int, float]) -> float:
        """A sum over layers, linear in the depth: from 2 and 3 layers to the model's."""
        a, b = values[DEPTHS[0]], values[DEPTHS[1]]
        return a + (self.layers - DEPTHS[0]) * (b - a)

    def times(self, spec: DigitalBaselineSpec, batch: int, input_len: int, output_len: int) -> tuple[float, float]:
        """(time to first token, first token + every decode step) in seconds on `spec`."""
        weights = self._full({d: m.weight_bytes() for d, m in self.models.items()})
        runs = {d: m.baseline_generation(spec, batch, input_len, output_len, weights, self.layers / d)
                for d, m in self.models.items()}
        return (self._full({d: r["ttft_s"] for d, r in runs.items()}),
                self._full({d: r["total_s"] for d, r in runs.items()}))


@dataclass(frozen=True)
class Prediction:
    point: Point
    predicted: float
    dram_efficiency: float
    layer_overhead_us: float         # the terms it was predicted with (fitted without it, for a throughput point)

    @property
    def error(self) -> float:
        return self.predicted / self.point.published - 1


class Validation:
    """The published points, their models, and the fit of the serving terms."""

    def __init__(self, path: Path = SERVING_VALIDATION_FILE, baseline: DigitalBaselineSpec | None = None):
        self.data = load_validation(path)
        self.base = baseline or load_baseline_spec(self.data["baseline"])
        self.models = {name: ServingModel(m["architecture"], m["config"]) for name, m in self.data["models"].items()}
        self._peak: dict[tuple, tuple[float, float]] = {}   # (point, efficiency) -> times without the overhead

    def _times(self, p: Point, efficiency: float) -> tuple[float, float]:
        key = (p, round(efficiency, 9))
        if key not in self._peak:
            spec = replace(self.base, dram_efficiency=efficiency, layer_overhead_us=0.0)
            self._peak[key] = self.models[p.model].times(spec, p.batch, p.input, p.output)
        return self._peak[key]

    def predict(self, p: Point, efficiency: float, overhead_us: float) -> float:
        ttft, total = self._times(p, efficiency)
        layers = self.models[p.model].layers
        if p.metric == TTFT:
            return ttft + layers * overhead_us * 1e-6
        # the prefill and every decode step pay the per-layer overhead
        return p.batch * p.output / (total + (1 + p.output) * layers * overhead_us * 1e-6)

    def fit(self, points: list[Point]) -> tuple[float, float]:
        """(dram_efficiency, layer_overhead_us) minimizing the squared log errors on `points`, on the data file's
        grid: the efficiency coarse (4 grid steps) then fine around the coarse best; the overhead on its grid."""
        g = self.data["fit"]
        e_lo, e_hi, e_step = (g["dram_efficiency"][k] for k in ("lo", "hi", "step"))
        o_lo, o_hi, o_step = (g["layer_overhead_us"][k] for k in ("lo", "hi", "step"))
        overheads = [o_lo + i * o_step for i in range(int(round((o_hi - o_lo) / o_step)) + 1)]

        def best_at(e: float) -> tuple[float, float]:
            return min((math.fsum(math.log(self.predict(p, e, o) / p.published) ** 2 for p in points), o)
                       for o in overheads)

        def grid(lo: float, hi: float, step: float) -> list[float]:
            return [round(lo + i * step, 9) for i in range(int(round((hi - lo) / step)) + 1)]

        coarse = min(grid(e_lo, e_hi, 4 * e_step), key=lambda e: best_at(e)[0])
        fine = [e for e in grid(e_lo, e_hi, e_step) if abs(e - coarse) <= 4 * e_step + 1e-12]
        e = min(fine, key=lambda e: best_at(e)[0])
        return e, best_at(e)[1]

    def run(self) -> tuple[tuple[float, float], list[Prediction]]:
        """The terms fitted on every throughput point, and every point's prediction: throughput points held out
        (fitted on the others), time-to-first-token points with the terms of every throughput point."""
        fitted = [p for p in self.data["points"] if p.metric == THROUGHPUT]
        every = self.fit(fitted)
        out = []
        for p in self.data["points"]:
            if p.metric == THROUGHPUT:
                e, o = self.fit([q for q in fitted if q is not p])
                out.append(Prediction(p, self.predict(p, e, o), e, o))
            else:
                out.append(Prediction(p, self.predict(p, *every), *every))
        return every, out


def summary(every: tuple[float, float], predictions: list[Prediction]) -> dict[str, Any]:
    """Errors by metric: range and root mean square."""
    out: dict[str, Any] = {"dram_efficiency": every[0], "layer_overhead_us": every[1]}
    for metric in (THROUGHPUT, TTFT):
        errors = [p.error for p in predictions if p.point.metric == metric]
        if errors:
            out[metric] = {"min": min(errors), "max": max(errors),
                           "rms": math.sqrt(math.fsum(e * e for e in errors) / len(errors)), "points": len(errors)}
    return out


if __name__ == "__main__":  # python -m compiler.serving: the table of docs/decoders.md
    terms, preds = Validation().run()
    for pr in preds:
        p = pr.point
        print(f"| {p.model} | {p.metric} | {p.batch} | {p.input} / {p.output} | {p.published:,.4g} | "
              f"{pr.predicted:,.4g} | {pr.error:+.1%} | {pr.dram_efficiency:.4g} | {pr.layer_overhead_us:.4g} |")
    print(json.dumps(summary(terms, preds)))
