"""compile_model: export the model, then run the pass pipeline over the PlacedGraph."""
from __future__ import annotations

from typing import Any

import torch

from compiler.errors import UserError
from compiler.frontend import export_model
from compiler.hw_spec import HardwareSpec, load_hw_spec
from compiler.ir import PlacedGraph
from compiler.models import model_info


def compile_model(model: torch.nn.Module, example: Any, hw: HardwareSpec | str, allocation: str = "packed",
                  calibration: Any = None, pt_column_range: bool = True,
                  pt_input_range: bool = True) -> PlacedGraph:
    """Map `model` onto the chip `hw`; returns the PlacedGraph (mapping, and the backends behind it).

    `example` is a tensor, a tuple of positional inputs or a dict of keyword inputs.
    `calibration` (an int N of built-in sentences or random samples, a list of texts, a dict/tuple of
    tensors, or None to skip) sets each tile segment's DAC/ADC ranges (passes.ranges); then the
    post-training optimizations of Lammie et al. 2024 run, each unless turned off: per-column
    conductance range (`pt_column_range`) and per-tile input range search (`pt_input_range`).
    """
    from passes import allocate_tiles, calibrate_ranges, partition

    if not isinstance(hw, HardwareSpec):
        hw = load_hw_spec(hw)
    exported = export_model(model, example)
    placed = PlacedGraph(exported=exported, model=model, hw=hw, model_info=model_info(model), example=example)
    partition(placed)
    _check_finite_weights(placed)
    allocate_tiles(placed, allocation)
    calibrate_ranges(placed, calibration, column_range=pt_column_range, input_range=pt_input_range)
    return placed


def _check_finite_weights(placed: PlacedGraph) -> None:
    """A NaN or inf weight poisons the ranges, the conductances and every output: one line naming it."""
    for p in placed.analog_layers():
        if not torch.isfinite(placed.weight_of(p)).all():
            raise UserError(f"{placed.model_info.name}: the weight {p.weight} of {p.module or p.node} holds NaN or "
                            f"inf values; fix or retrain the checkpoint")
