"""compile_model: export the model, then run the pass pipeline over the PlacedGraph."""
from __future__ import annotations

from typing import Any

import torch

from compiler.frontend import export_model
from compiler.hw_spec import HardwareSpec, load_hw_spec
from compiler.ir import PlacedGraph
from compiler.models import model_info


def compile_model(model: torch.nn.Module, example: Any, hw: HardwareSpec | str, allocation: str = "packed",
                  **options: Any) -> PlacedGraph:
    """Map `model` onto the chip `hw`; returns the PlacedGraph (mapping, and the backends behind it).

    `example` is a tensor, a tuple of positional inputs or a dict of keyword inputs.
    """
    from passes import allocate_tiles, partition

    if not isinstance(hw, HardwareSpec):
        hw = load_hw_spec(hw)
    exported = export_model(model, example)
    placed = PlacedGraph(exported=exported, model=model, hw=hw, model_info=model_info(model), example=example)
    partition(placed)
    allocate_tiles(placed, allocation)
    return placed
