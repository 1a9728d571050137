"""Price a workload on the AIMC chip: energy per component and service times of every stage.

Component model: energy = sum over actions of count x energy per action (compiler.backends.estimator.prices).
Analog block, per input vector and per tile segment (rows x cols of one tile): one MVM = the array conducting
for the input window (cells, and the bit lines of the read columns), the input drivers of its rows, one
conversion per read column, the local digital unit's affine scaling per column, the tile's clock, and the
transfers of inputs and outputs over the on-chip network; then partial-sum additions where the block is split
over tile rows, the bias, and the SRAM read of the input and write of the output. The array's conduction goes
by the input pulses' mean length: full length unless calibration statistics give a segment's mean input
(compiler.backends.estimator.pulses). Segments that share a tile are time-multiplexed: their MVMs serialize.
"""
from __future__ import annotations

import itertools
import math
import operator
from dataclasses import dataclass, field
from typing import Mapping

from compiler.hw_spec import HardwareSpec
from compiler.backends.estimator.fields import NS
from compiler.backends.estimator.options import option_stage
from compiler.backends.estimator.components import COMPONENT_OF_CLASS, TILE_COMPONENTS
from compiler.backends.estimator.prices import (DigitalPrices, DigitalThroughput, TilePrices, digital_prices,
                                                digital_throughput, segment_time, tile_mvm_energy, tile_prices)
from compiler.backends.estimator.schedule import (ATTENTION_UNITS, DIGITAL_UNITS, Busy, Resource, Stage,
                                                  tile as tile_resource)
from compiler.backends.estimator.workload import RECIPES, AnalogWork, DigitalWork, Workload

def price_on_chip(workload: Workload, hw: HardwareSpec, fill: Mapping[int, float] | None = None) -> list[Stage]:
    """Stages of the workload; `fill`: a segment's mean input pulse length / full length (absent: 1)."""
    digital = digital_prices(hw, "energy", hw.digital.other_precision)
    tile = tile_prices(hw, digital)
    throughput = digital_throughput(hw)
    fill = fill or {}
    fixed = fixed_latencies(hw)
    stages = [_analog_stage(w, tile, digital, fill) if w.option is None  # a block's option: options.py
              else option_stage(w, w.option, hw, digital, throughput, fill, _analog_stage) for w in workload.analog]
    for stage, work in zip(stages, workload.analog):
        if work.option is not None and work.option.kind == "digital":  # on the integer units, as attention
            stage.delay_s = fixed.digital_op_s
            continue
        row_pieces = math.ceil(work.in_features / hw.tile.rows)
        stage.delay_s = 2 * fixed.transfer_s + math.ceil(math.log2(row_pieces)) * fixed.reduction_level_s
    stages += [_digital_stage(w, hw, digital, throughput) for w in workload.digital]
    for stage in stages[len(workload.analog):]:
        stage.delay_s = fixed.digital_op_s
    return stages


@dataclass(frozen=True)
class FixedLatencies:
    """What a pipeline does not hide, per stage (before its first vector): a digital op's pipeline depth; for a
    weight block, its input's trip over the mesh to the tiles and its output's back (mean hop count of a square
    mesh of the chip's tiles, 2 (k^2 - 1) / 3k for k x k) and the adder tree over its row tiles' partial sums."""
    digital_op_s: float
    transfer_s: float
    reduction_level_s: float
    hops: float


def fixed_latencies(hw: HardwareSpec) -> FixedLatencies:
    lat = hw.latency
    k = math.sqrt(hw.tile.count)
    hops = 2 * (k * k - 1) / (3 * k) if k > 1 else 0.0
    return FixedLatencies(digital_op_s=(getattr(lat, "digital_op_ns", None) or 0.0) * NS,
                          transfer_s=hops * (getattr(lat, "network_hop_ns", None) or 0.0) * NS,
                          reduction_level_s=(getattr(lat, "reduction_ns_per_level", None) or 0.0) * NS, hops=hops)


def _analog_stage(work: AnalogWork, tile: TilePrices, digital: DigitalPrices, fill: Mapping[int, float]) -> Stage:
    n = work.vectors
    energy = dict.fromkeys(TILE_COMPONENTS + ("accumulation", "sram"), 0.0)
    layout = _layout(work.segments) if not fill else None
    # replicated blocks: copy c takes tokens c, c + k, ... (n_c of them), each on its own tiles
    k = 1 + (max((seg.copy for seg in work.segments), default=0) if layout is None else
             max((c for c, _, _ in layout.shapes), default=0))
    share = {c: n // k + (c < n % k) for c in range(k)}
    per_tile: dict[int, float] = {}
    per_copy: dict[int, dict[int, float]] = {}
    mvms = read_rows = read_cols = cells = 0.0
    # segments of one shape price alike: energy per (copy, shape, fill) once (an 8B decoder: 28,628 segments,
    # a handful of shapes), occupancy per tile per segment
    shapes: dict[tuple, int] = {}
    times: dict[tuple[int, int], float] = {}
    if layout is not None:  # one segment per tile, no calibrated fill: the tile occupancy from the shapes alone
        shapes = {(*key, 1.0): count for key, count in layout.shapes.items()}
        times = {(r, c): segment_time(tile, r, c) for _, r, c in layout.shapes}
        per_shape = [share[c] * times[r, cl] for c, r, cl in layout.shapes]
        busy = _busy(layout, tuple(per_shape))
        stream = max((share[c] * times[r, cl] for c, r, cl in layout.shapes), default=0.0)
    for seg in work.segments if layout is None else ():
        rows, cols = seg.rows[1] - seg.rows[0], seg.cols[1] - seg.cols[0]
        key = (seg.copy, rows, cols, fill.get(seg.id, 1.0))
        shapes[key] = shapes.get(key, 0) + 1
        t = times.get((rows, cols))
        if t is None:
            t = times[rows, cols] = segment_time(tile, rows, cols)
        per_tile[seg.tile] = per_tile.get(seg.tile, 0.0) + share[seg.copy] * t
        copy_tiles = per_copy.setdefault(seg.copy, {})
        copy_tiles[seg.tile] = copy_tiles.get(seg.tile, 0.0) + t
    for (copy, rows, cols, f), count in shapes.items():
        m = share[copy] * count
        for component, joules in tile_mvm_energy(tile, rows, cols, f).items():
            energy[component] += m * joules
        mvms, read_rows, read_cols, cells = mvms + m, read_rows + m * rows, read_cols + m * cols, cells + m * rows * cols
    partial_sums = read_cols - n * work.out_features  # outputs split over several row pieces add up digitally
    energy["accumulation"] += (partial_sums + n * work.bias_features) * digital.add_J
    act = digital.bytes_per_element
    energy["sram"] = n * act * (work.in_features * digital.sram_read_J_per_byte
                                + work.out_features * digital.sram_write_J_per_byte)
    scaled = read_cols * tile.phases if tile.local_digital_J_per_col else 0
    counts = {"tile_mvms": mvms, "array_cell_reads": cells,
              "dac_conversions": read_rows * tile.phases, "adc_conversions": read_cols * tile.phases,
              "local_digital_scalings": scaled, "accumulation_adds": partial_sums + n * work.bias_features,
              "analog_macs": work.macs,
              "sram_read_bytes": n * act * work.in_features, "sram_write_bytes": n * act * work.out_features,
              "network_bytes": (read_rows * tile.input_bits + read_cols * tile.output_bits) / 8}
    if layout is None:
        # the stream ends when the slowest copy has done its share: an effective time per vector
        stream = max((share[c] * max(tiles.values()) for c, tiles in per_copy.items()), default=0.0)
        busy = {tile_resource(t): s for t, s in per_tile.items()}
    return Stage(id=work.id, name=work.name, layer=work.layer, vectors=n,
                 vector_time_s=stream / n if n else 0.0, deps=work.deps,
                 energy_J=energy, busy_s=busy, ops=2.0 * work.macs,
                 counts=counts)


@dataclass(frozen=True)
class _Layout:
    """What pricing a block needs of its segments when each holds a tile of its own: the segments per
    (copy, rows, cols), and per segment (in order) its tile's resource and the index of its shape."""
    shapes: dict[tuple[int, int, int], int]
    names: tuple[Resource, ...]
    shape_of: tuple[int, ...]
    serial: int = field(default_factory=itertools.count().__next__)  # one per layout made: its blocks' Busy keys
    kept: dict = field(default_factory=dict, compare=False)  # seconds per shape -> [its Busy, times asked for]


BUSY_KEPT = 3  # Busy dicts kept per layout: the most asked-for (a prefill's and a decode step's, most variants')


def _busy(layout: _Layout, per_shape: tuple[float, ...]) -> Busy:
    """The block's tiles' busy seconds, `per_shape` on each segment of that shape: the same object for the same
    seconds while kept (the sensitivity's variants mostly leave the tiles' times alone)."""
    hit = layout.kept.get(per_shape)
    if hit is not None:
        hit[1] += 1
        return hit[0]
    busy = Busy(layout.names, layout.shape_of, per_shape, layout.serial)
    if len(layout.kept) >= BUSY_KEPT:  # the least asked-for goes (of those, the oldest)
        del layout.kept[min(layout.kept.items(), key=lambda item: item[1][1])[0]]
    layout.kept[per_shape] = [busy, 1]
    return busy


# (id of the first segment, count) -> (segments, layout): every workload instantiated from one placement (the
# sweep's, the decode's) holds the same segment objects in new tuples; one layout serves them all
_LAYOUTS: dict[tuple[int, int], tuple[tuple, _Layout | None]] = {}
_LAYOUTS_KEPT = 8192


def _layout(segments: tuple) -> _Layout | None:
    """The block's layout, computed once per block of a placement (the sensitivity prices one workload ~70
    times, the decode ~40 workloads); None when two of its segments share a tile (their times add up: priced
    segment by segment)."""
    key = (id(segments[0]) if segments else 0, len(segments))
    hit = _LAYOUTS.get(key)
    if hit is not None and (hit[0] is segments or all(map(operator.is_, hit[0], segments))):  # the same segments
        return hit[1]
    index: dict[tuple[int, int, int], int] = {}
    shape_of = []
    for seg in segments:
        shape = (seg.copy, seg.rows[1] - seg.rows[0], seg.cols[1] - seg.cols[0])
        shape_of.append(index.setdefault(shape, len(index)))
    tiles = [seg.tile for seg in segments]
    layout = None
    if len(set(tiles)) == len(tiles):
        counts = dict.fromkeys(index, 0)
        keys = list(index)
        for i in shape_of:
            counts[keys[i]] += 1
        layout = _Layout(counts, tuple(map(tile_resource, tiles)), tuple(shape_of))
    if len(_LAYOUTS) >= _LAYOUTS_KEPT:
        _LAYOUTS.clear()
    _LAYOUTS[key] = (tuple(segments), layout)
    return layout


def _digital_stage(work: DigitalWork, hw: HardwareSpec, digital: DigitalPrices,
                   throughput: DigitalThroughput) -> Stage:
    act = digital.bytes_per_element
    reads = work.input_elements + (work.elements if work.op_class == "embedding" else 0)  # + table rows
    energy = {"sram": act * (reads * digital.sram_read_J_per_byte + work.elements * digital.sram_write_J_per_byte)}
    component = COMPONENT_OF_CLASS[work.op_class]
    counts = {"sram_read_bytes": act * reads, "sram_write_bytes": act * work.elements}
    if work.op_class == "attention":
        inner = work.macs // max(work.elements, 1)
        bits = hw.digital.attention_bits
        mac_J = digital.integer_mac_J(bits, inner) if bits else digital.mult_J + digital.add_J
        # quantize both operands and dequantize the result: one multiply per element
        energy[component] = work.macs * mac_J + (work.input_elements + work.elements) * digital.mult_J
        total_time = throughput.attention_time_s(work.macs)
        busy = {ATTENTION_UNITS: total_time}
        ops = 2.0 * work.macs
        counts["attention_macs"] = work.macs
    elif work.op_class == "matmul":  # a weight product left digital: one mult + one add per MAC on the lanes
        energy[component] = work.macs * (digital.mult_J + digital.add_J)
        total_time = throughput.lane_time_s(2 * work.macs)
        busy = {DIGITAL_UNITS: total_time}
        ops = 2.0 * work.macs
        counts["digital_matmul_macs"] = work.macs
    else:
        mults, adds = RECIPES[work.op_class]
        energy[component] = work.elements * digital.recipe_J(mults, adds)
        total_time = throughput.lane_time_s(work.elements * (mults + adds))
        busy = {DIGITAL_UNITS: total_time}
        ops = 0.0
        counts[f"{work.op_class}_elements"] = work.elements
    return Stage(id=work.id, name=work.name, layer=work.layer, vectors=work.vectors,
                 vector_time_s=total_time / max(work.vectors, 1), deps=work.deps, barrier_deps=work.barrier_deps,
                 energy_J=energy, busy_s=busy, ops=ops, counts=counts)
