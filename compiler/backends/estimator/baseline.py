"""The same workload priced on a digital INT8 accelerator (hw_specs/digital_int8.yaml), for comparison.

A weight-stationary R x C systolic array runs the weight layers and the attention matmuls (8-bit
multiply, 32-bit accumulate); vector lanes run softmax, LayerNorm, GELU and the elementwise ops with
the same recipes as the AIMC chip's digital units. Weights that do not fit the on-chip weight buffer
stream from DRAM once per batch (each loaded weight tile serves every vector of the batch). A layer
takes the longer of its compute time (ceil(in/R) x ceil(out/C) weight tiles, each streaming the
vectors plus R cycles of fill) and its weight fetch; layers run one after another.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from compiler.hw_spec import DigitalBaselineSpec
from compiler.backends.estimator.prices import PJ, digital_prices
from compiler.backends.estimator.workload import RECIPES, AnalogWork, DigitalWork, Workload

BASELINE_COMPONENTS = ("mac", "weight_fetch", "accumulation", "attention_int8", "softmax", "layernorm", "gelu",
                       "elementwise", "sram", "static")
_COMPONENT_OF_CLASS = {"softmax": "softmax", "layernorm": "layernorm", "gelu": "gelu", "tanh": "elementwise",
                       "mul": "elementwise", "div": "elementwise", "elementwise": "elementwise",
                       "embedding": "elementwise"}


@dataclass(frozen=True)
class BaselineCost:
    name: str
    hw_file: str
    batch: int
    energy_J: float
    latency_s: float
    ops: float
    energy_by_component_J: dict[str, float]
    weights_in_dram: bool

    @property
    def throughput_inferences_per_s(self) -> float:
        return self.batch / self.latency_s if self.latency_s else 0.0

    @property
    def tops(self) -> float:
        return self.ops / self.latency_s / 1e12 if self.latency_s else 0.0

    @property
    def tops_per_w(self) -> float:
        return self.ops / self.energy_J / 1e12 if self.energy_J else 0.0


def price_on_baseline(workload: Workload, spec: DigitalBaselineSpec) -> BaselineCost:
    digital = digital_prices(spec, "energy", spec.other_precision)
    clock = spec.clock_GHz * 1e9
    mac_J = digital.int8_mult_J + digital.int32_add_J
    weight_bytes = sum(w.in_features * w.out_features for w in workload.analog)  # one byte per INT8 weight
    in_dram = weight_bytes > spec.weight_buffer_MiB * 2 ** 20
    fetch_J = spec.energy.dram_pJ_per_byte * PJ if in_dram else digital.sram_read_J_per_byte
    act = digital.bytes_per_element
    energy = dict.fromkeys(BASELINE_COMPONENTS, 0.0)
    latency = 0.0
    for w in workload.analog:
        latency += _layer(w, spec, energy, mac_J, fetch_J, in_dram, clock, digital, act)
    for w in workload.digital:
        latency += _digital(w, spec, energy, mac_J, clock, digital, act)
    energy["static"] = spec.static_power_W * latency
    ops = 2.0 * (workload.analog_macs + workload.attention_macs + workload.digital_matmul_macs)
    return BaselineCost(name=spec.name, hw_file=spec.source_file, batch=workload.batch, energy_J=math.fsum(energy.values()),
                        latency_s=latency, ops=ops, energy_by_component_J=energy, weights_in_dram=in_dram)


def _layer(w: AnalogWork, spec: DigitalBaselineSpec, energy: dict, mac_J: float, fetch_J: float, in_dram: bool,
           clock: float, digital, act: int) -> float:
    n, passes = w.vectors, math.ceil(w.out_features / spec.array_cols)
    energy["mac"] += w.macs * mac_J
    energy["weight_fetch"] += w.in_features * w.out_features * fetch_J
    energy["accumulation"] += n * (w.out_features * (digital.mult_J + digital.add_J) + w.bias_features * digital.add_J)
    energy["sram"] += n * act * (w.in_features * passes * digital.sram_read_J_per_byte
                                 + w.out_features * digital.sram_write_J_per_byte)
    compute = math.ceil(w.in_features / spec.array_rows) * passes * (n + spec.array_rows) / clock
    fetch = w.in_features * w.out_features / (spec.dram_GBps * 1e9) if in_dram else 0.0
    return max(compute, fetch)


def _digital(w: DigitalWork, spec: DigitalBaselineSpec, energy: dict, mac_J: float, clock: float, digital,
             act: int) -> float:
    reads = w.input_elements + (w.elements if w.op_class == "embedding" else 0)
    energy["sram"] += act * (reads * digital.sram_read_J_per_byte + w.elements * digital.sram_write_J_per_byte)
    if w.op_class == "attention":
        energy["attention_int8"] += w.macs * mac_J + (w.input_elements + w.elements) * digital.mult_J
        return w.macs / (spec.array_rows * spec.array_cols * clock)
    if w.op_class == "matmul":  # a weight product the AIMC chip runs digitally: the array runs it here
        energy["mac"] += w.macs * mac_J
        return w.macs / (spec.array_rows * spec.array_cols * clock)
    mults, adds = RECIPES[w.op_class]
    energy[_COMPONENT_OF_CLASS[w.op_class]] += w.elements * digital.recipe_J(mults, adds)
    return w.elements * (mults + adds) / (spec.vector_lanes * clock)
