"""CostReport: the estimator's answer, and its JSON form (cost.json: typed definition `CostJson` in
reports/schema.py, fields in docs/outputs.md)."""
from __future__ import annotations

from typing import Any

from dataclasses import dataclass

from compiler.backends.estimator.area import ChipArea
from compiler.backends.estimator.baseline import BaselineCost
from compiler.backends.estimator.decode import DecodeCost
from compiler.backends.estimator.gating import Leakage
from compiler.backends.estimator.links import NO_TRAFFIC, LinkTraffic
from compiler.backends.estimator.peak import PeakThroughput
from compiler.backends.estimator.pulses import PulsePricing
from compiler.backends.estimator.schedule import TILE, Resource
from compiler.backends.estimator.sensitivity import Sensitivity
from reports.schema import SCHEMA_VERSION

STATIC_LAYER = "(static power)"


@dataclass(frozen=True)
class LayerCost:
    name: str
    energy_J: float
    energy_by_component_J: dict[str, float]
    ops: float


@dataclass(frozen=True)
class StageCost:
    """One schedulable stage: a weight block on its tiles, or one digital node."""
    name: str                                    # weight block or FX node name (as in mapping.json)
    layer: str                                   # the transformer block it belongs to
    energy_J: float
    busy_s: float                                # time its busiest resource works on it


@dataclass(frozen=True)
class SeriesPoint:
    batch: int
    seq_len: int
    energy_J: float
    latency_s: float
    baseline_energy_J: float
    baseline_latency_s: float


@dataclass(frozen=True)
class CostReport:
    """Energy, time and throughput of one inference of `batch` sequences of `seq_len` tokens."""
    model: str
    hw: str
    hw_file: str
    batch: int
    seq_len: int
    has_sequence_dim: bool
    energy_J: float                              # the whole batch
    latency_s: float                             # first input in to last output out
    period_s: float                              # one replica's: between its batches (slowest resource)
    ops: float                                   # 2 x MACs (analog, attention, digital matmuls)
    energy_by_component_J: dict[str, float]
    layers: tuple[LayerCost, ...]
    stages: tuple[StageCost, ...]
    counts: dict[str, float]
    action_energies_J: dict[str, float]
    critical_path: tuple[str, ...]               # stage names
    bottleneck: Resource | None
    tile_utilization: dict[int, float]           # time busy: fraction of the period each tile works
    peak: PeakThroughput
    baseline: BaselineCost
    sweep_axis: str
    sweep: tuple[SeriesPoint, ...]
    area: ChipArea                               # one chip
    chips: int                                   # chips the model spans
    tiles_used: int
    leakage: Leakage                             # one inference's, idle tiles and units gated (gating.py)
    pulses: PulsePricing
    sensitivity: Sensitivity | None
    # whole copies of the mapping on chips of their own, each serving whole inferences: energy and latency are
    # one inference's (one replica's); throughput, power, leakage and area count every replica
    replicas: int = 1
    links: LinkTraffic = NO_TRAFFIC              # activations crossing chips in this inference
    decode: DecodeCost | None = None             # causal LMs: prefill and decode (decode.py)
    validation: dict | None = None               # calibration.validation_summary: chips, errors, warnings
    baseline_scaling: Any = None                 # baseline.ScaledBaseline: how many baseline chips, and why

    @property
    def area_mm2(self) -> float:
        """Silicon of every chip the model spans, every replica."""
        return self.replicas * self.chips * self.area.chip_mm2

    @property
    def static_by_component_W(self) -> dict[str, float]:
        """One replica's mean leakage power over an inference, by component (gated where the spec gates)."""
        return self.leakage.mean_W

    @property
    def static_power_W(self) -> float:
        """Mean leakage of every replica (gated where the spec gates)."""
        return self.replicas * sum(self.static_by_component_W.values())

    @property
    def static_energy_J(self) -> float:
        """One inference's leakage energy (energy_by_component_J's `static`)."""
        return self.leakage.energy_J

    def decode_step_static_share(self) -> float | None:
        """The leakage's share of a decode step's energy (the last step of a causal LM's generation)."""
        if self.decode is None:
            return None
        step = self.decode.run.steps[-1]
        return step.energy_by_component_J.get("static", 0.0) / step.energy_J if step.energy_J else None

    @property
    def stream_period_s(self) -> float:
        """Seconds between finished batches in a steady stream: one replica's period, shared by the replicas."""
        return self.period_s / self.replicas

    @property
    def energy_per_inference_J(self) -> float:
        return self.energy_J / self.batch

    @property
    def throughput_inferences_per_s(self) -> float:
        return self.batch / self.stream_period_s if self.period_s else 0.0

    @property
    def tops(self) -> float:
        return self.ops / self.stream_period_s / 1e12 if self.period_s else 0.0

    @property
    def tops_per_w(self) -> float:
        return self.ops / self.energy_J / 1e12 if self.energy_J else 0.0

    @property
    def power_W(self) -> float:
        """Average power while streaming batches back to back: the dynamic energy of a batch every period,
        plus the leakage once (energy_J counts the leakage over one batch's latency, which is longer than
        the period when batches overlap in the pipeline)."""
        if not self.period_s:
            return 0.0
        dynamic_J = self.energy_J - self.static_power_W / self.replicas * self.latency_s  # one replica's leakage
        return dynamic_J / self.stream_period_s + self.static_power_W

    @property
    def tops_per_mm2(self) -> float:
        return self.tops / self.area_mm2 if self.area_mm2 else 0.0

    @property
    def mean_tile_utilization(self) -> float:
        util = self.tile_utilization
        return sum(util.values()) / len(util) if util else 0.0

    def to_json(self) -> dict:
        """The content of cost.json (compiler/cli.py checks it against reports/schema.py before writing)."""
        base = self.baseline
        return {
            "schema_version": SCHEMA_VERSION,
            "model": self.model,
            "hw": self.hw,
            "hw_file": self.hw_file,
            "batch": self.batch,
            "seq_len": self.seq_len,
            "has_sequence_dim": self.has_sequence_dim,
            "totals": {
                "energy_J": self.energy_J,
                "energy_per_inference_J": self.energy_per_inference_J,
                "latency_s": self.latency_s,
                "period_s": self.stream_period_s,
                "throughput_inferences_per_s": self.throughput_inferences_per_s,
                "ops": self.ops,
                "tops": self.tops,
                "tops_per_w": self.tops_per_w,
                "power_W": self.power_W,
                "static_power_W": self.static_power_W,
                "area_mm2": self.area_mm2,
                "tops_per_mm2": self.tops_per_mm2,
                **({"replicas": self.replicas} if self.replicas > 1 else {}),
            },
            "energy_by_component_J": dict(self.energy_by_component_J),
            "layers": [{"name": layer.name, "energy_J": layer.energy_J, "ops": layer.ops,
                        "energy_by_component_J": dict(layer.energy_by_component_J)} for layer in self.layers],
            "stages": [{"name": st.name, "layer": st.layer, "energy_J": st.energy_J, "busy_s": st.busy_s}
                       for st in self.stages],
            "counts": dict(self.counts),
            "action_energies_J": dict(self.action_energies_J),
            "schedule": {
                "critical_path": list(self.critical_path),
                "bottleneck": str(self.bottleneck or ""),
                "bottleneck_tile": self.bottleneck.index if self.bottleneck and self.bottleneck.kind == TILE else None,
                "mean_tile_utilization": self.mean_tile_utilization,
                "tile_utilization": {str(t): u for t, u in sorted(self.tile_utilization.items())},
            },
            "peak": self.peak.to_json(),
            "area": {
                "chips": self.replicas * self.chips,
                "chip_mm2": self.area.chip_mm2,
                "tile_mm2": self.area.tile_mm2,
                "total_mm2": self.area_mm2,
                "by_component_mm2": {c: self.replicas * self.chips * a
                                     for c, a in self.area.by_component_mm2().items()},
                "tops_per_mm2": self.tops_per_mm2,
            },
            "static": {
                "power_W": self.static_power_W,
                "energy_J": self.static_energy_J,
                "share_of_energy": self.static_energy_J / self.energy_J if self.energy_J else None,
                "decode_step_share": self.decode_step_static_share(),
                "by_component_W": {c: self.replicas * w for c, w in self.static_by_component_W.items()},
                "tiles_used": self.replicas * self.tiles_used,
                "tiles": self.replicas * self.chips * self.area.tiles,
                **self.leakage.to_json(),
                "all_on_power_W": self.replicas * sum(self.leakage.all_on_W.values()),
            },
            "pulses": self.pulses.to_json(),
            "sensitivity": self.sensitivity.to_json() if self.sensitivity else None,
            "baseline": {
                "name": base.name,
                "hw_file": base.hw_file,
                "energy_J": base.energy_J,
                "energy_per_inference_J": base.energy_J / base.batch,
                "latency_s": base.latency_s,
                "throughput_inferences_per_s": base.throughput_inferences_per_s,
                "tops": base.tops,
                "tops_per_w": base.tops_per_w,
                "weights_in_dram": base.weights_in_dram,
                "weight_bytes": base.weight_bytes,
                "area_mm2": base.area_mm2,
                "static_power_W": base.static_power_W,
                "assumptions": list(base.assumptions)
                + ([self.baseline_scaling.note] if self.baseline_scaling is not None else []),
                "chips": self.baseline_scaling.chips if self.baseline_scaling is not None else 1,
                "scale": self.baseline_scaling.mode if self.baseline_scaling is not None else "as-spec",
                "bound": base.bound,
                "energy_by_component_J": dict(base.energy_by_component_J),
                "energy_ratio": base.energy_J / self.energy_J if self.energy_J else None,
                "latency_ratio": base.latency_s / self.latency_s if self.latency_s else None,
                "throughput_ratio": (self.throughput_inferences_per_s / base.throughput_inferences_per_s
                                     if base.throughput_inferences_per_s else None),
            },
            "sweep": {
                "axis": self.sweep_axis,
                "points": [{"batch": p.batch, "seq_len": p.seq_len, "energy_J": p.energy_J, "latency_s": p.latency_s,
                            "baseline_energy_J": p.baseline_energy_J, "baseline_latency_s": p.baseline_latency_s}
                           for p in self.sweep],
            },
            "links": self.links.to_json(),
            **({"decode": self.decode.to_json()} if self.decode is not None else {}),
            **({"validation": self.validation} if self.validation is not None else {}),
        }
