"""estimate(placed, batch, seq_len) -> CostReport: workload -> prices -> schedule -> report."""
from __future__ import annotations

import math
from dataclasses import dataclass

from compiler.errors import UserError
from compiler.hw_spec import DigitalBaselineSpec, load_baseline_spec
from compiler.ir import PlacedGraph
from compiler.backends.estimator.baseline import BaselineCost, price_on_baseline
from compiler.backends.estimator.chip import COMPONENTS, price_on_chip, tile_mvm_energy
from compiler.backends.estimator.peak import peak_throughput
from compiler.backends.estimator.prices import digital_prices, tile_prices
from compiler.backends.estimator.report import STATIC_LAYER, CostReport, LayerCost, StageCost, SweepPoint
from compiler.backends.estimator.schedule import Schedule, Stage, schedule
from compiler.backends.estimator.workload import Workload, WorkloadTemplate

SWEEP_SEQ_LENS = (16, 32, 64, 128, 256, 512, 1024, 2048)
SWEEP_BATCHES = (1, 2, 4, 8, 16, 32, 64)


@dataclass
class _Evaluation:
    workload: Workload
    stages: list[Stage]
    schedule: Schedule
    static_J: float
    baseline: BaselineCost

    @property
    def energy_J(self) -> float:
        return math.fsum(j for s in self.stages for j in s.energy_J.values()) + self.static_J


def estimate(placed: PlacedGraph, batch: int = 1, seq_len: int = 128,
             baseline: str | DigitalBaselineSpec = "digital_int8") -> CostReport:
    """Energy (J), latency (s), throughput and their breakdowns for `batch` sequences of `seq_len` tokens."""
    for name, value in (("batch", batch), ("seq_len", seq_len)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"{name} must be a positive integer, got {value!r}")
    base = baseline if isinstance(baseline, DigitalBaselineSpec) else load_baseline_spec(baseline)
    template = WorkloadTemplate(placed)
    main = _evaluate(template, placed, base, batch, seq_len)
    layers, by_component = _breakdowns(main)
    axis, points = _sweep(template, placed, base, batch, seq_len, main)
    tile_busy = {int(r.split()[1]): s for r, s in main.schedule.resource_busy_s.items() if r.startswith("tile ")}
    period = main.schedule.period_s
    return CostReport(
        model=placed.model_info.name, hw=placed.hw.name, hw_file=placed.hw.source_file, batch=batch,
        seq_len=seq_len, has_sequence_dim=template.has_sequence_dim,
        energy_J=math.fsum(layer.energy_J for layer in layers), latency_s=main.schedule.latency_s, period_s=period,
        ops=math.fsum(s.ops for s in main.stages), energy_by_component_J=by_component, layers=tuple(layers),
        stages=tuple(StageCost(s.name, s.layer, math.fsum(s.energy_J.values()), max(s.busy_s.values(), default=0.0))
                     for s in main.stages),
        counts=_counts(main.stages), action_energies_J=_action_energies(placed),
        critical_path=tuple(main.schedule.critical_path), bottleneck=main.schedule.bottleneck,
        tile_utilization={t: busy / period for t, busy in sorted(tile_busy.items())} if period else {},
        peak=peak_throughput(placed.hw), baseline=main.baseline, sweep_axis=axis, sweep=tuple(points))


def _evaluate(template: WorkloadTemplate, placed: PlacedGraph, base: DigitalBaselineSpec, batch: int,
              seq_len: int) -> _Evaluation:
    workload = template.instantiate(batch, seq_len)
    stages = price_on_chip(workload, placed.hw)
    timing = schedule(stages)
    static_J = (placed.hw.static_power_W or 0.0) * timing.latency_s
    return _Evaluation(workload, stages, timing, static_J, price_on_baseline(workload, base))


def _breakdowns(ev: _Evaluation) -> tuple[list[LayerCost], dict[str, float]]:
    """Per layer x component energies; both breakdowns are sums of the same cells."""
    order = {w.id: w.order for w in ev.workload.analog + ev.workload.digital}
    cells: dict[str, dict[str, list[float]]] = {}
    ops: dict[str, float] = {}
    first: dict[str, int] = {}
    for stage in ev.stages:
        row = cells.setdefault(stage.layer, {c: [] for c in COMPONENTS})
        for component, joules in stage.energy_J.items():
            row[component].append(joules)
        ops[stage.layer] = ops.get(stage.layer, 0.0) + stage.ops
        first[stage.layer] = min(first.get(stage.layer, order[stage.id]), order[stage.id])
    names = sorted(cells, key=first.__getitem__)
    if ev.static_J > 0:
        cells[STATIC_LAYER] = {c: [] for c in COMPONENTS}
        cells[STATIC_LAYER]["static"].append(ev.static_J)
        names.append(STATIC_LAYER)
    layers = []
    for name in names:
        components = {c: math.fsum(values) for c, values in cells[name].items()}
        layers.append(LayerCost(name=name, energy_J=math.fsum(components.values()),
                                energy_by_component_J=components, ops=ops.get(name, 0.0)))
    by_component = {c: math.fsum(layer.energy_by_component_J[c] for layer in layers) for c in COMPONENTS}
    return layers, by_component


def _counts(stages: list[Stage]) -> dict[str, float]:
    counts: dict[str, float] = {}
    for stage in stages:
        for action, n in stage.counts.items():
            counts[action] = counts.get(action, 0) + n
    return dict(sorted(counts.items()))


def _action_energies(placed: PlacedGraph) -> dict[str, float]:
    """The price of each action as used (J), for the reader who wants to check a product."""
    hw = placed.hw
    tile = tile_prices(hw)
    digital = digital_prices(hw, "energy", hw.digital.other_precision)
    one_mvm = tile_mvm_energy(tile, digital, hw.tile.rows, hw.tile.cols)
    bits = hw.digital.attention_bits
    return {
        "array_cell_per_mvm": tile.array_J_per_cell,
        "dac_conversion": tile.dac_J_per_row / tile.phases,
        "adc_conversion": tile.adc_J_per_col / tile.phases,
        "full_tile_mvm": math.fsum(one_mvm.values()),
        "digital_add": digital.add_J,
        "digital_mult": digital.mult_J,
        "attention_mac_inner_64": digital.integer_mac_J(bits, 64) if bits else digital.add_J + digital.mult_J,
        "sram_read_per_byte": digital.sram_read_J_per_byte,
        "sram_write_per_byte": digital.sram_write_J_per_byte,
        "network_per_byte": tile.network_J_per_byte,
    }


def _sweep(template: WorkloadTemplate, placed: PlacedGraph, base: DigitalBaselineSpec, batch: int, seq_len: int,
           main: _Evaluation) -> tuple[str, list[SweepPoint]]:
    """Energy and latency of the chip and of the digital baseline along sequence length (or batch)."""
    if template.has_sequence_dim:
        limit = template.max_seq_len or max(SWEEP_SEQ_LENS)
        values = sorted({s for s in SWEEP_SEQ_LENS if s <= limit} | {seq_len})
        axis, settings = "seq_len", [(batch, s) for s in values]
    else:
        axis, settings = "batch", [(b, seq_len) for b in sorted(set(SWEEP_BATCHES) | {batch})]
    points = []
    for b, s in settings:
        ev = main if (b, s) == (batch, seq_len) else _evaluate(template, placed, base, b, s)
        points.append(SweepPoint(batch=b, seq_len=s, energy_J=ev.energy_J, latency_s=ev.schedule.latency_s,
                                 baseline_energy_J=ev.baseline.energy_J, baseline_latency_s=ev.baseline.latency_s))
    return axis, points
