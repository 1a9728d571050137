"""compile_model: export the model, then run the pass pipeline over the PlacedGraph."""
from __future__ import annotations

from typing import Any

import torch

from compiler.errors import UserError
from compiler.frontend import export_model
from compiler.hw_spec import HardwareSpec, load_hw_spec
from compiler.ir import PlacedGraph
from compiler.models import inference_seq_len, model_info


def compile_model(model: torch.nn.Module, example: Any, hw: HardwareSpec | str, allocation: str = "auto",
                  calibration: Any = None, pt_column_range: bool = True,
                  pt_input_range: bool = True, objective: str | None = None, max_tiles: int | None = None,
                  max_latency_s: float | None = None, seq_len: int | None = None,
                  exported: Any = None) -> PlacedGraph:
    """Map `model` onto the chip `hw`; returns the PlacedGraph (mapping, and the backends behind it).

    `example` is a tensor, a tuple of positional inputs or a dict of keyword inputs.
    `calibration` (an int N of built-in sentences or random samples, a list of texts, a dict/tuple of
    tensors, or None to skip) sets each tile segment's DAC/ADC ranges (passes.ranges); then the
    post-training optimizations of Lammie et al. 2024 run, each unless turned off: per-column
    conductance range (`pt_column_range`) and per-tile input range search (`pt_input_range`).
    `allocation`: "auto" (default) searches the strategies for `objective` ("balanced": the fewest tiles within
    2 % of the best latency; "tiles", "latency", "throughput") under `max_tiles` / `max_latency_s`, pricing one
    inference of `seq_len` tokens (compiler/placement.py; default compiler.config.DEFAULT_SEQ_LEN, fewer if the
    model's positions end sooner; a length below 1 or beyond the positions is refused as estimate() refuses it);
    "naive", "fused", "packed", "layered", "slack" pick one.
    `exported`: this model's torch.export program for `example` when the caller has it already (a sweep exports
    a model once per shape); the passes read it and never change it.
    """
    from compiler.placement import place
    from passes import calibrate_ranges, partition
    from passes.tile_allocation import replicate

    seq_len = inference_seq_len(model, seq_len)  # before any work: the check estimate() makes too
    if not isinstance(hw, HardwareSpec):
        hw = load_hw_spec(hw)
    if exported is None:
        exported = export_model(model, example)
    placed = PlacedGraph(exported=exported, model=model, hw=hw, model_info=model_info(model), example=example)
    partition(placed)
    _check_finite_weights(placed)
    copies = place(placed, allocation, objective, max_tiles=max_tiles, max_latency_s=max_latency_s, seq_len=seq_len)
    placed.calibration_stats = calibrate_ranges(placed, calibration, column_range=pt_column_range,
                                                input_range=pt_input_range)
    if copies:  # copies hold the same weights: they take copy 0's ranges, set above
        replicate(placed, copies)
    return placed


def _check_finite_weights(placed: PlacedGraph) -> None:
    """A NaN or inf weight poisons the ranges, the conductances and every output: one line naming it."""
    for p in placed.analog_layers():
        weight = placed.weight_of(p)
        if weight.is_meta:  # shapes only (load_model(materialize=False)): nothing to check, nothing to calibrate
            continue
        if not torch.isfinite(weight).all():
            raise UserError(f"{placed.model_info.name}: the weight {p.weight} of {p.module or p.node} holds NaN or "
                            f"inf values; fix or retrain the checkpoint")
