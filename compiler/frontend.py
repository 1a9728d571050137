"""Frontend: a torch.nn.Module plus example inputs -> torch.export ExportedProgram (ATen-level FX graph).

Export is non-strict (RoBERTa and friends don't survive strict tracing) and dynamic in every
dimension the model allows, so the lowered simulator later runs any batch size and sequence length.
"""
from __future__ import annotations

import inspect
from typing import Any

import torch
from torch.export import Dim

from compiler.errors import UserError


def normalize_example(example: Any) -> tuple[tuple, dict]:
    """Accept a tensor, a tuple/list of positional args, or a dict of keyword args."""
    if isinstance(example, torch.Tensor):
        return (example,), {}
    if isinstance(example, dict):
        return (), dict(example)
    if isinstance(example, (tuple, list)):
        return tuple(example), {}
    raise UserError(f"example inputs must be a tensor, a tuple of tensors or a dict of tensors, got {type(example).__name__}")


def export_model(model: torch.nn.Module, example: Any) -> torch.export.ExportedProgram:
    args, kwargs = normalize_example(example)
    args, kwargs = _avoid_size_one_batch(args), {k: _avoid_size_one_batch((v,))[0] for k, v in kwargs.items()}
    model.eval()
    with torch.no_grad():
        try:
            return torch.export.export(model, args, kwargs, dynamic_shapes=_dynamic_shapes(model, args, kwargs), strict=False)
        except Exception as exc:  # torch raises many types here; give one actionable line
            raise UserError(f"cannot export {type(model).__name__} with torch.export "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from exc


def _avoid_size_one_batch(values: tuple) -> tuple:
    """torch.export specializes dimensions of size 1; repeat a batch of one so the batch stays dynamic."""
    return tuple(torch.cat([v, v]) if isinstance(v, torch.Tensor) and v.dim() >= 2 and v.shape[0] == 1 else v
                 for v in values)


def _auto_dims(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return {i: Dim.AUTO for i in range(value.dim())}
    return None


def _dynamic_shapes(model: torch.nn.Module, args: tuple, kwargs: dict) -> dict:
    """Every tensor dimension Dim.AUTO, keyed by the names of forward()'s parameters."""
    bound = inspect.signature(model.forward).bind(*args, **kwargs)
    return {name: _auto_dims(value) for name, value in bound.arguments.items()}
