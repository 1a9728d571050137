"""The JSON files of a run, each built from typed results, checked against its definition (reports/schema.py)
and written once, by one function here: mapping.json (`mapping_json`), cost.json (`cost_json`: the estimator's
CostReport plus the power per component and the placement's strategies), accuracy.json and hwa.json.

The numbers a file holds are computed here or in the compiler, never by reports/ (which only renders them);
this module imports reports.schema only. A write that fails for the environment (disk full, permission,
read-only folder) is one UserError naming the path.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from compiler.errors import UserError
from compiler.ir import Kind, PlacedGraph, TileSegment

# mapping.json lists every segment (and every layer's tile slices) up to this many segments; beyond, it holds
# them as runs (mapping_json): an 8B decoder's 28,628 segments listed one by one made 18 MB
FULL_MAPPING_SEGMENTS = 10_000


def write_json(path: Path, data: dict) -> Path:
    """Write one JSON output after checking it, as it will be read back, against its typed definition
    (reports/schema.py): what the report reads is what the writer wrote."""
    from reports.schema import SchemaError, check_output
    path = Path(path)
    try:
        text = json.dumps(data, indent=1, allow_nan=False)
    except ValueError:  # inf or nan: from extreme spec values (a cost that overflows) or a broken model's outputs
        raise UserError(f"{path.name}: a result is not a finite number (inf or nan); check the spec's energy and "
                        f"latency values and the model's weights") from None
    try:
        check_output(path.name, json.loads(text))
    except SchemaError as exc:  # the writer broke its own schema: a bug, not a user error
        raise RuntimeError(f"internal error, output does not match reports/schema.py: {exc}") from exc
    write_text(path, text)
    return path


def write_text(path: Path, text: str) -> None:
    """`path.write_text`, with an environment failure (disk full, permission, read-only) as one line."""
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{path}: cannot write it ({exc.strerror or type(exc).__name__})") from None


# --- mapping.json ---------------------------------------------------------------------------------------

def mapping_json(placed: PlacedGraph, full: bool | None = None, command: str | None = None) -> dict:
    """The content of mapping.json (typed definition: reports/schema.py, MappingJson; docs/outputs.md).

    `full`: every segment listed, and every layer's tile slices (True); the compact form (False): segments
    as runs of a regular split rule (`segment_runs`), no per-layer slices and no per-tile utilization (the
    report derives both from blocks and runs); None: full up to FULL_MAPPING_SEGMENTS segments. `command`: the
    command line that ran, recorded as `command`."""
    from reports.schema import SCHEMA_VERSION
    if full is None:
        full = len(placed.segments) <= FULL_MAPPING_SEGMENTS
    util = placed.tile_utilization() if full else {}
    segments = {s.id: s for s in placed.segments}
    layers = []
    for p in placed.placements.values():
        if p.kind is Kind.DIGITAL and p.in_features is None:
            continue  # shape-only ops (view, transpose, ...) carry no work worth listing
        entry = {"name": p.module or p.node, "node": p.node, "kind": p.kind.value, "op": p.op,
                 "in_features": p.in_features, "out_features": p.out_features}
        if p.kind is Kind.ANALOG:
            entry["block"] = p.block
            if p.experts:
                entry["experts"] = p.experts
        if p.kind is Kind.ANALOG and full:
            entry["tiles"] = [
                {"tile": sl.tile, "chip": sl.tile // placed.tiles_per_chip, "segment": sl.segment,
                 "rows": list(sl.rows), "cols": list(sl.cols), "in_features": list(sl.in_features),
                 "out_features": list(sl.out_features), "dac_range": segments[sl.segment].dac_range,
                 "adc_range": segments[sl.segment].adc_range, **({"copy": sl.copy} if sl.copy else {}),
                 **({"expert": sl.expert} if sl.expert is not None else {})}
                for sl in placed.layer_slices(p.node)]
        layers.append(entry)
    return {
        "schema_version": SCHEMA_VERSION,
        "model": placed.model_info.name,
        "task": placed.model_info.task,
        "weights": placed.model_info.weights,
        "weights_source": placed.model_info.source,
        **({"head": placed.model_info.head} if placed.model_info.head is not None else {}),
        **({} if placed.model_info.values_loaded else {"values_loaded": False}),
        "hw": placed.hw.name,
        "hw_file": placed.hw.source_file,
        "hw_spec": placed.hw.to_dict(),
        "hw_overrides": dict(placed.hw.overrides or {}),  # the report shows them without the spec file
        "allocation": placed.allocation,
        "tile_shape": [placed.hw.tile.rows, placed.hw.tile.cols],
        "tiles_used": placed.tiles_used,
        "tiles_available": placed.hw.tile.count * placed.hw.tile.max_chips,
        "tiles_per_chip": placed.hw.tile.count,
        "chips_used": placed.chips_used,
        **({"replicas": placed.replicas} if placed.replicas > 1 else {}),
        "analog_weights": placed.analog_weights,
        "mean_utilization": placed.mean_utilization,
        "tile_utilization": {str(t): u for t, u in util.items()},
        "blocks": [{k: v for k, v in asdict(b).items() if k != "expert" or v is not None}
                   for b in placed.blocks.values()],
        "segments": [_segment_json(s) for s in placed.segments] if full else [],
        **({} if full else {"segment_runs": segment_runs(placed.segments)}),
        "layers": layers,
        **({"objective": placed.objective, "strategies": placed.strategies} if placed.strategies else {}),
        **({"block_options": {name: o.to_dict() for name, o in placed.block_options.items()}}
           if placed.block_options else {}),
        **({"command": command} if command is not None else {}),
    }


def segment_runs(segments: list[TileSegment]) -> list[dict]:
    """Segments as runs (reports/schema.py, SegmentRun): consecutive ids on consecutive tiles, the same
    rectangle of each tile, the same block copy and ranges, holding the block's pieces in raster order (piece k
    at block rows + (k // across) x height, block cols + (k % across) x width). The allocator lays a block's
    full pieces out so: a 70B decoder's 265,128 segments make a few hundred runs."""
    runs: list[dict] = []
    for s in segments:
        if runs and _extends(runs[-1], s):
            runs[-1]["count"] += 1
            continue
        if runs and runs[-1]["across"] is None:
            runs[-1]["across"] = runs[-1]["count"]
        runs.append({"segment": s.id, "tile": s.tile, "count": 1, "across": None, "rows": list(s.rows),
                     "cols": list(s.cols), "block": s.block, "block_rows": list(s.block_rows),
                     "block_cols": list(s.block_cols), "copy": s.copy, "dac_range": s.dac_range,
                     "adc_range": s.adc_range})
        if s.col_w_max is not None:  # per-column values: summarized, as for a listed segment
            runs[-1]["col_w_max_range"] = [float(s.col_w_max.min()), float(s.col_w_max.max())]
    if runs and runs[-1]["across"] is None:
        runs[-1]["across"] = runs[-1]["count"]
    return runs


def _extends(run: dict, s: TileSegment) -> bool:
    """Whether `s` is the next segment of `run` by its rule (fixing the rule's `across` at the first wrap)."""
    k = run["count"]
    if (s.id != run["segment"] + k or s.tile != run["tile"] + k or s.block != run["block"] or s.copy != run["copy"]
            or list(s.rows) != run["rows"] or list(s.cols) != run["cols"] or "col_w_max_range" in run
            or s.col_w_max is not None or s.dac_range != run["dac_range"] or s.adc_range != run["adc_range"]):
        return False
    h, w = s.rows[1] - s.rows[0], s.cols[1] - s.cols[0]
    (r0, _), (c0, _) = run["block_rows"], run["block_cols"]
    if run["across"] is None:  # still on the first strip: continue it, or wrap to the next one
        if tuple(s.block_rows) == (r0, r0 + h) and tuple(s.block_cols) == (c0 + k * w, c0 + (k + 1) * w):
            return True
        if tuple(s.block_rows) == (r0 + h, r0 + 2 * h) and tuple(s.block_cols) == (c0, c0 + w):
            run["across"] = k
            return True
        return False
    i, j = divmod(k, run["across"])
    return (tuple(s.block_rows) == (r0 + i * h, r0 + (i + 1) * h)
            and tuple(s.block_cols) == (c0 + j * w, c0 + (j + 1) * w))


def _segment_json(segment: TileSegment) -> dict:
    data = {k: v for k, v in asdict(segment).items() if k != "col_w_max"}
    if segment.col_w_max is not None:  # per-column values are many; summarize them
        data["col_w_max_range"] = [float(segment.col_w_max.min()), float(segment.col_w_max.max())]
    return data


# --- cost.json ------------------------------------------------------------------------------------------

def component_power_W(energy_by_component_J: dict[str, float], period_s: float | None,
                      static_power_W: float | None = None) -> dict[str, float]:
    """Per component, the average power it draws while batches stream back to back: its energy per batch over
    the period between batches (`period_s`). Static power is leakage: where the estimate gives it
    (`totals.static_power_W`, the mean over an inference with idle tiles and units power-gated where the spec
    gates them), `static` is that power itself, since its energy in energy_by_component_J is counted over one
    inference's latency, not over the period. Empty without a positive period."""
    if not period_s or period_s <= 0:
        return {}
    power = {name: energy / period_s for name, energy in energy_by_component_J.items()}
    if static_power_W is not None and "static" in power:
        power["static"] = static_power_W
    return power


def cost_json(cost, strategies: list[dict] | None = None, full: bool | None = None) -> dict:
    """The content of cost.json: the estimator's CostReport (`to_json`), the power per component beside its
    energy, and the strategies the placement tried (--allocation auto).

    `full`: every tile's busy fraction listed (True); compact (False): `schedule.tile_utilization` empty and
    the fractions summarized in steps of consecutive tiles (`tile_utilization_steps`, reports/schema.py
    TileSteps: what the report's chart draws); None: full up to FULL_COST_TILES tiles."""
    from reports.schema import FULL_COST_TILES, tile_steps
    data = cost.to_json()
    schedule = data.get("schedule")
    if schedule and full is not True and (full is False or len(schedule["tile_utilization"]) > FULL_COST_TILES):
        util = {int(t): u for t, u in schedule["tile_utilization"].items()}
        schedule["tile_utilization"] = {}
        schedule["tile_utilization_steps"] = asdict(tile_steps(util))
    totals = data["totals"]
    data["power_by_component_W"] = component_power_W(data["energy_by_component_J"], totals["period_s"],
                                                      totals.get("static_power_W"))
    if strategies:
        data["strategies"] = strategies
    return data


# --- accuracy.json and hwa.json -----------------------------------------------------------------------------

def accuracy_json(accuracy: dict, *, pt_optimization_off: bool = False, decoding: dict | None = None,
                  without_hwa: list[dict] | None = None, budget: dict | None = None) -> dict:
    """The content of accuracy.json: evaluate_accuracy's result, with `pt_optimization: false` when the ranges
    were calibrated but the PT optimizations were off, the decoding figures of a causal LM, the results
    of the model before HWA fine-tuning (`results_without_hwa`) when it was fine-tuned, and --accuracy-budget's
    sensitivities, prediction and verification (`budget`, compiler/budget)."""
    data = dict(accuracy)
    if budget is not None:
        data["budget"] = budget
    if pt_optimization_off:
        data["pt_optimization"] = False
    if decoding is not None:
        data["decoding"] = decoding
    if without_hwa is not None:
        data.update(hwa_finetune=True, results_without_hwa=without_hwa)
    return data


def hwa_json(model: str, summary, checkpoint: str = "hwa_model") -> dict:
    """The content of hwa.json: the fine-tuning's HwaSummary and where its checkpoint went."""
    return {"model": model, "checkpoint": checkpoint, **summary.to_dict()}
