"""sweep.json: one row per point (its labels, status, headline figures) and the energy-accuracy Pareto front,
computed here from the points' typed results and written once, checked against reports/schema.py (SweepJson).
reports/sweep.py renders sweep.csv and sweep.html from the file alone.

The front: a point is on it when no other point has lower (or equal) energy per inference and better (or equal)
accuracy, one of them strictly; accuracy is the headline metric's mean at the longest drift time simulated
(the chip's accuracy after the most drift the sweep looked at). Without accuracy (no --simulate) the front is
energy against latency.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reports.schema import HEADLINE_METRICS, final_accuracy, pareto_front

# the estimator's ranges a point carries: (field of sweep.json, metric of cost.json's sensitivity.ranges)
RANGE_COLUMNS = (("energy_low_J", "energy_J", 0), ("energy_high_J", "energy_J", 2), ("latency_low_s", "latency_s", 0),
          ("latency_high_s", "latency_s", 2), ("area_low_mm2", "area_mm2", 0), ("area_high_mm2", "area_mm2", 2))
DECODE = ("ttft_s", "tokens_per_s", "energy_per_token_J")  # cost.json decode: a causal LM's serving figures
# their ranges: (field of sweep.json, figure of cost.json's decode.ranges, end)
DECODE_RANGES = (("ttft_low_s", "ttft_s", 0), ("ttft_high_s", "ttft_s", 2), ("tokens_per_s_low", "tokens_per_s", 0),
                 ("tokens_per_s_high", "tokens_per_s", 2), ("energy_per_token_low_J", "energy_per_token_J", 0),
                 ("energy_per_token_high_J", "energy_per_token_J", 2))
NO_FIGURES = dict(tiles=None, chips=None, energy_J=None, latency_s=None, tops_per_w=None, area_mm2=None,
                  **{name: None for name, _, _ in RANGE_COLUMNS + DECODE_RANGES}, **{name: None for name in DECODE},
                  metric=None, higher_is_better=True, accuracy=[], seeds=[])


def figures(files: dict[str, dict]) -> dict[str, Any]:
    """The headline figures of one run from its JSON contents (mapping.json, cost.json, accuracy.json), read
    through their definitions (reports/schema.py); mapping.json by its top-level counts only (the whole file
    was checked when it was written, and reading its segments back costs more than a cost-only point)."""
    from reports.schema import AccuracyJson, CostJson, SchemaError
    mapping = files["mapping.json"]
    counts = {key: mapping.get(key) for key in ("tiles_used", "chips_used", "model")}
    if not (isinstance(counts["tiles_used"], int) and isinstance(counts["chips_used"], int)
            and isinstance(counts["model"], str)):
        raise SchemaError("mapping.json: tiles_used, chips_used and model missing or not of their type")
    found: dict[str, Any] = {**NO_FIGURES, "tiles": counts["tiles_used"], "chips": counts["chips_used"],
                             "model": counts["model"]}
    if "cost.json" in files:
        cost = CostJson.from_json(files["cost.json"], "cost.json")
        if cost.totals is not None:
            found.update(energy_J=cost.totals.energy_per_inference_J, latency_s=cost.totals.latency_s,
                         tops_per_w=cost.totals.tops_per_w, area_mm2=cost.totals.area_mm2)
        ranges = cost.sensitivity.ranges if cost.sensitivity else {}
        for name, metric, end in RANGE_COLUMNS:  # the energy range is per batch in cost.json; a point's, per inference
            if metric in ranges:
                found[name] = ranges[metric][end] / (cost.batch if metric == "energy_J" else 1)
        if cost.decode is not None:
            found.update({name: getattr(cost.decode, name) for name in DECODE})
            if cost.decode.ranges is not None:
                found.update({name: getattr(cost.decode.ranges, figure)[end] for name, figure, end in DECODE_RANGES})
    if "accuracy.json" in files:
        accuracy = AccuracyJson.from_json(files["accuracy.json"], "accuracy.json")
        names = list(accuracy.metrics)
        metric = next((m for m in HEADLINE_METRICS if m in names), names[0] if names else None)
        if metric is not None:
            found.update(metric=metric, higher_is_better=accuracy.metrics[metric].higher_is_better,
                         seeds=list(accuracy.seeds), accuracy=[
                {"label": r.label, "seconds": r.seconds, "mean": r.mean.get(metric), "std": r.std.get(metric),
                 "ci95": r.ci95.get(metric), "low": r.low.get(metric), "high": r.high.get(metric),
                 "per_seed": list(r.per_seed.get(metric, []))} for r in accuracy.results])
    return found


def folder_figures(folder: Path) -> dict[str, Any]:
    """figures() of a finished run folder (a cached point)."""
    from reports.schema import SchemaError
    files = {}
    for name in ("mapping.json", "cost.json", "accuracy.json"):
        path = Path(folder) / name
        if name == "mapping.json" or path.is_file():
            try:
                files[name] = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise SchemaError(f"{path}: cannot read it ({exc})") from None
    return figures(files)


def _front_axes(row: dict) -> tuple[float, float, bool] | None:
    """(energy, accuracy or latency, whether lower y is better) of a point, when it has them."""
    if row.get("status") == "failed" or row.get("energy_J") is None:
        return None
    accuracy = final_accuracy(row)
    if accuracy is not None:
        return row["energy_J"], accuracy, not row.get("higher_is_better", True)
    return (row["energy_J"], row["latency_s"], True) if row.get("latency_s") is not None else None


def mark_pareto(rows: list[dict]) -> list[dict]:
    """The rows with `pareto_means` (on the front of energy vs the accuracy means; vs latency without accuracy)
    and `pareto`: with per-seed accuracy, a point is off the front only when a point of no more energy is
    resolved better (compiler/dse/paired.py); without it, `pareto` is `pareto_means`."""
    from compiler.dse.paired import better_than, resolved_front, seed_values
    usable = [(i, _front_axes(row)) for i, row in enumerate(rows)]
    usable = [(i, axes) for i, axes in usable if axes is not None]
    with_accuracy = [(i, a) for i, a in usable if final_accuracy(rows[i]) is not None]
    usable = with_accuracy or usable  # compare like with like: accuracy when any point has it
    lower = bool(usable) and usable[0][1][2]
    front = {usable[k][0] for k in pareto_front([(a[0], a[1]) for _, a in usable], lower)}
    paired = [i for i, _ in with_accuracy if seed_values(rows[i])]
    better = better_than(rows, paired)
    resolved = resolved_front({i: rows[i]["energy_J"] for i in paired}, better) \
        if paired and len(paired) == len(with_accuracy) else front
    return [{**row, "pareto": i in resolved, "pareto_means": i in front,
             "better_than": [rows[j]["name"] for j in better.get(i, [])]} for i, row in enumerate(rows)]


def sweep_json(points: list, axes: list, rows: list[dict], where: str, elapsed: float,
               reference: dict[str, str] | None = None, iso_capacity: bool = False) -> dict:
    """The content of sweep.json: the axes, one row per distinct configuration, the front marked, each point
    against the reference point (`reference`: axis -> value; default the grid's first point) and the summary."""
    from compiler.dse.paired import pick_reference, summary_lines, versus_reference
    from compiler.errors import UserError
    from reports.schema import SCHEMA_VERSION
    first = points[0].config
    models = sorted({p.config.model for p in points})
    shown_axes = [{"name": a.name, "kind": a.kind, "keys": list(a.keys), "values": list(a.values),
                   "coupled": bool(getattr(a, "coupled", False))} for a in axes]
    if len(models) > 1 and not any(a.name == "model" for a in axes):  # the models given: an axis of their own
        shown_axes.insert(0, {"name": "model", "kind": "option", "keys": ["model"], "values": models,
                              "coupled": False})
    index = pick_reference(rows, reference)
    if reference and index is None:
        raise UserError("--reference " + ", ".join(f"{k}={v}" for k, v in reference.items())
                        + ": no point of the grid has these values")
    rows = versus_reference(mark_pareto(rows), index)
    names = [a["name"] for a in shown_axes if len(a["values"]) > 1] or [a["name"] for a in shown_axes]
    return {"schema_version": SCHEMA_VERSION, "hw": first.hw, "models": models, "axes": shown_axes,
            "simulate": first.simulation is not None,
            "seeds": first.simulation.seeds if first.simulation is not None else None,
            "executor": where, "points": rows, "elapsed_s": elapsed, "iso_capacity": iso_capacity,
            "reference": rows[index]["name"] if index is not None else None,
            "summary": summary_lines(rows, index, names)}


def write_sweep_json(path: Path, data: dict) -> None:
    """sweep.json after checking it, as it will be read back, against its definition (reports/schema.py)."""
    from compiler.writers import write_text
    from reports.schema import SchemaError, SweepJson
    from reports.typed_json import check
    text = json.dumps(data, indent=1, allow_nan=False)
    try:
        check(SweepJson, json.loads(text), path.name, writing=True)
    except SchemaError as exc:  # the writer broke its own schema: a bug, not a user error
        raise RuntimeError(f"internal error, sweep.json does not match reports/schema.py: {exc}") from exc
    write_text(path, text)
