"""estimate(placed, batch, seq_len) -> CostReport: workload -> prices -> schedule -> area, leakage -> report."""
from __future__ import annotations

import math
from typing import Any, Mapping

from compiler.config import DEFAULT_SEQ_LEN
from compiler.errors import UserError
from compiler.hw_spec import DigitalBaselineSpec, HardwareSpec, load_baseline_spec
from compiler.ir import PlacedGraph
from compiler.backends.estimator.baseline import BaselineCost, parse_scale, price_on_baseline, scale_baseline
from compiler.backends.estimator.calibration import validation_summary
from compiler.backends.estimator.components import COMPONENTS
from compiler.backends.estimator.decode import decode_cost
from compiler.backends.estimator.peak import peak_throughput
from compiler.backends.estimator.prices import check_prices, digital_prices, tile_mvm_energy, tile_prices
from compiler.backends.estimator.pricing import Chip, Evaluation, evaluate
from compiler.backends.estimator.pulses import pulse_pricing
from compiler.backends.estimator.report import STATIC_LAYER, CostReport, LayerCost, StageCost, SeriesPoint
from compiler.backends.estimator.schedule import TILE, Schedule, Stage
from compiler.backends.estimator.sensitivity import sensitivity as one_at_a_time
from compiler.backends.estimator.workload import Workload, WorkloadTemplate

SEQ_LEN_SERIES = (16, 32, 64, 128, 256, 512, 1024, 2048)
SWEEP_BATCHES = (1, 2, 4, 8, 16, 32, 64)


def estimate(placed: PlacedGraph, batch: int = 1, seq_len: int = DEFAULT_SEQ_LEN,
             baseline: str | DigitalBaselineSpec = "digital_int8", calibration: Any = None,
             input_fill: Mapping[int, float] | None = None, sensitivity: bool = True,
             gen_len: int | None = None, baseline_scale: str = "as-spec",
             decode_range_batches: tuple[int, ...] | None = None) -> CostReport:
    """Energy (J), latency (s), throughput, area and their breakdowns for `batch` sequences of `seq_len` tokens.

    calibration: the range pass's statistics (passes.ranges.CalibrationStats) to price PWM pulses by each
    segment's mean input, or input_fill: segment id -> mean pulse length / full length; neither: full length.
    sensitivity: propagate the spec's uncertainties one at a time into ranges (docs/estimator.md, 8).
    gen_len: for a causal LM, also prefill of the seq_len prompt and gen_len decode steps (decode.py), with
    uncertainty ranges for the generations at decode_range_batches (None: the run's batch, with `sensitivity`).
    baseline: a digital baseline spec (a file or a built-in name: digital_int8, gpu_h100); baseline_scale: as-spec,
    iso-area, iso-power or chips=N (baseline.scale_baseline)."""
    for name, value in (("batch", batch), ("seq_len", seq_len)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"{name} must be a positive integer, got {value!r}")
    parse_scale(baseline_scale)  # a bad value: one line before any work
    base = baseline if isinstance(baseline, DigitalBaselineSpec) else load_baseline_spec(baseline)
    hw = placed.hw
    check_prices(hw)  # every field present, every derived price finite: one UserError before any work
    pulses = pulse_pricing(placed, calibration, input_fill)
    chip = Chip.of(placed, pulses.fill)
    template = WorkloadTemplate(placed)
    main = evaluate(_inference(template, batch, seq_len), chip)
    scaled = scale_baseline(base, hw, baseline_scale, chip.chips * chip.area.chip_mm2,
                            main.energy_J / main.schedule.latency_s if main.schedule.latency_s else 0.0)
    base = scaled.spec
    main_baseline = price_on_baseline(main.workload, base, hw)
    layers, by_component = _breakdowns(main)
    axis, points = _sweep(template, chip, base, batch, seq_len, main, main_baseline)
    tile_busy = {r.index: s for r, s in main.schedule.resource_busy_s.items() if r.kind == TILE}
    names = {s.id: s.name for s in main.stages}
    period = main.schedule.period_s
    return CostReport(
        model=placed.model_info.name, hw=hw.name, hw_file=hw.source_file, batch=batch,
        seq_len=seq_len, has_sequence_dim=template.has_sequence_dim,
        energy_J=math.fsum(layer.energy_J for layer in layers), latency_s=main.schedule.latency_s, period_s=period,
        ops=math.fsum(s.ops for s in main.stages), energy_by_component_J=by_component, layers=tuple(layers),
        stages=tuple(StageCost(s.name, s.layer, math.fsum(s.energy_J.values()), max(s.busy_s.values(), default=0.0))
                     for s in main.stages),
        counts=_counts(main.stages), action_energies_J=_action_energies(hw),
        critical_path=tuple(names[i] for i in main.schedule.critical_path), bottleneck=main.schedule.bottleneck,
        tile_utilization={t: busy / period for t, busy in sorted(tile_busy.items())} if period else {},
        peak=peak_throughput(hw), baseline=main_baseline, sweep_axis=axis, sweep=tuple(points),
        area=chip.area, chips=chip.chips, tiles_used=chip.tiles_used, leakage=main.leakage, pulses=pulses,
        sensitivity=one_at_a_time(hw, lambda h: _metrics(main, chip.with_hw(h), placed.replicas))
        if sensitivity else None,
        links=main.links, decode=decode_cost(
            template, chip, base, batch, seq_len, gen_len, baseline_chips=scaled.chips,
            range_batches=tuple(decode_range_batches) if decode_range_batches is not None
            else (batch,) if sensitivity else ()) if gen_len is not None and template.causal_lm else None,
        replicas=placed.replicas, validation=validation_summary(hw), baseline_scaling=scaled)


def inference_schedule(placed: PlacedGraph, seq_len: int,
                       template: WorkloadTemplate | None = None) -> tuple[list[Stage], Schedule]:
    """The stages and schedule of one inference of `seq_len` tokens at batch 1, as `estimate` prices it (a causal
    LM's prefill, chip links, full-length pulses): what compiler/placement.py compares strategies by, so the
    placement's latency is the cost's. `template` may be reused across calls while the blocks stay the same (the
    segments are read again each call)."""
    template = template or WorkloadTemplate(placed)
    ev = evaluate(_inference(template, 1, min(seq_len, template.max_seq_len or seq_len)), Chip.of(placed, {}),
                  gate=False)
    return ev.stages, ev.schedule


def inference_cost(placed: PlacedGraph, batch: int = 1, seq_len: int = DEFAULT_SEQ_LEN,
                   calibration: Any = None) -> tuple[float, float]:
    """(energy J with static, latency s) of one inference as `estimate` prices it, without its series, baseline
    and ranges: what --accuracy-budget compares block options by (compiler/budget)."""
    pulses = pulse_pricing(placed, calibration, None)
    ev = evaluate(_inference(WorkloadTemplate(placed), batch, seq_len), Chip.of(placed, pulses.fill))
    return ev.energy_J, ev.schedule.latency_s


def _inference(template: WorkloadTemplate, batch: int, seq_len: int) -> Workload:
    """One inference's workload: a causal LM's prefill, any other model's forward (WorkloadTemplate.inference)."""
    return template.instantiate(template.inference(batch, seq_len))


def _metrics(reference: Evaluation, chip: Chip, replicas: int) -> dict[str, float]:
    """Energy, latency and area of the reported evaluation's workload on `chip` (the sensitivity's measure): the
    area of every chip of every replica, as CostReport.area_mm2 counts it, so the range brackets the figure the report
    shows; the leakage the reported evaluation's rescaled where the variant's schedule keeps the same activity
    (pricing.evaluate), else gated anew."""
    ev = evaluate(reference.workload, chip, reference=reference)
    return {"energy_J": ev.energy_J, "latency_s": ev.schedule.latency_s,
            "area_mm2": replicas * chip.chips * chip.area.chip_mm2}


def _breakdowns(ev: Evaluation) -> tuple[list[LayerCost], dict[str, float]]:
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
        at = order.get(stage.id, math.inf)  # a chip link stage sorts with its producer's layer
        first[stage.layer] = min(first.get(stage.layer, at), at)
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


def _action_energies(hw: HardwareSpec) -> dict[str, float]:
    """The price of each action as used (J), for the reader who wants to check a product."""
    digital = digital_prices(hw, "energy", hw.digital.other_precision)
    tile = tile_prices(hw, digital)
    one_mvm = tile_mvm_energy(tile, hw.tile.rows, hw.tile.cols)
    bits = hw.digital.attention_bits
    return {
        "array_cell_per_mvm": tile.cell_J,
        "bitline_per_column_mvm": tile.bitline_J_per_col,
        "dac_row_per_mvm": tile.row_J,
        "adc_conversion": tile.converter.energy_J,
        "local_digital_per_column": tile.local_digital_J_per_col,
        "control_per_mvm": tile.control_J,
        "full_tile_mvm": math.fsum(one_mvm.values()),
        "digital_add": digital.add_J,
        "digital_mult": digital.mult_J,
        "attention_mac_inner_64": digital.integer_mac_J(bits, 64) if bits else digital.add_J + digital.mult_J,
        "sram_read_per_byte": digital.sram_read_J_per_byte,
        "sram_write_per_byte": digital.sram_write_J_per_byte,
        "network_per_bit": tile.network_J_per_bit,
    }


def _sweep(template: WorkloadTemplate, chip: Chip, base: DigitalBaselineSpec, batch: int, seq_len: int,
           main: Evaluation, main_baseline: BaselineCost) -> tuple[str, list[SeriesPoint]]:
    """Energy and latency of the chip and of the digital baseline along sequence length (or batch)."""
    if template.has_sequence_dim:
        limit = template.max_seq_len or max(SEQ_LEN_SERIES)
        values = sorted({s for s in SEQ_LEN_SERIES if s <= limit} | {seq_len})
        axis, settings = "seq_len", [(batch, s) for s in values]
    else:
        axis, settings = "batch", [(b, seq_len) for b in sorted(set(SWEEP_BATCHES) | {batch})]
    points = []
    for b, s in settings:
        ev = main if (b, s) == (batch, seq_len) else evaluate(_inference(template, b, s), chip)
        cost = main_baseline if ev is main else price_on_baseline(ev.workload, base, chip.hw)
        points.append(SeriesPoint(batch=b, seq_len=s, energy_J=ev.energy_J, latency_s=ev.schedule.latency_s,
                                 baseline_energy_J=cost.energy_J, baseline_latency_s=cost.latency_s))
    return axis, points
