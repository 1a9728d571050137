"""Frontend: a torch.nn.Module plus example inputs -> torch.export ExportedProgram (ATen-level FX graph).

Export is non-strict (RoBERTa and friends don't survive strict tracing) and dynamic in every
dimension the model allows, so the lowered simulator later runs any batch size and sequence length.
`attention_layers` reads what a decoder's KV cache holds from the traced graph's shapes.
"""
from __future__ import annotations

import inspect
from typing import Any

import sympy
import torch
from torch.export import Dim

from compiler.errors import UserError
from compiler.ir import SHAPE_OPS, AttentionLayer, Kind, PlacedGraph, layer_group


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
    # no node's stack_trace: nothing reads it, and capturing it was ~8 % of exporting a Llama-3.1-8B
    no_traces, torch.fx.config.do_not_emit_stack_traces = torch.fx.config.do_not_emit_stack_traces, True
    with torch.no_grad():
        try:
            return torch.export.export(model, args, kwargs, dynamic_shapes=_dynamic_shapes(model, args, kwargs), strict=False)
        except Exception as exc:  # torch raises many types here; give one actionable line
            raise UserError(f"cannot export {type(model).__name__} with torch.export "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from exc
        finally:
            torch.fx.config.do_not_emit_stack_traces = no_traces


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


def attention_layers(placed: PlacedGraph) -> tuple[AttentionLayer, ...]:
    """The attention matmuls of `placed` (partitioned) grouped by layer, each layer with its KV geometry read from
    the traced shapes: head_dim = the dimension QK^T contracts; the cached K (V) is the narrowest tensor per token on
    the key (value) operand's way back through shape ops, i.e. before grouped-query attention repeats the KV heads
    (repeat_kv's expand), so kv_heads = K's elements per token / head_dim. A layer without both a QK^T and a PV
    (no softmax output as first operand) caches nothing."""
    nodes = {n.name: n for n in placed.graph.nodes}
    by_layer: dict[str, list] = {}
    for p in placed.placements.values():
        if p.kind is Kind.ATTENTION_MATMUL:
            by_layer.setdefault(layer_group(p.module), []).append(p)
    layers = []
    for layer, matmuls in by_layer.items():
        scores = next((p for p in matmuls if not p.operand_is_probability), None)
        mixes = next((p for p in matmuls if p.operand_is_probability), None)
        if scores is None or mixes is None:
            continue
        key, value = nodes[scores.node].args[1], nodes[mixes.node].args[1]
        head_dim = key.meta["val"].shape[-2]  # K^T: (..., head_dim, keys)
        k_width, v_width = _cached_width(key), _cached_width(value)
        if not isinstance(head_dim, int) or not k_width or not v_width:
            continue
        layers.append(AttentionLayer(layer, tuple(p.node for p in matmuls), k_width // head_dim, head_dim,
                                     k_width + v_width))
    return tuple(layers)


def _cached_width(operand: torch.fx.Node) -> int | None:
    """Elements per token of the narrowest tensor from `operand` back through shape ops to the op computing it."""
    widths, node = [], operand
    while True:
        width = _per_token(node)
        if width:
            widths.append(width)
        if node.op != "call_function" or str(node.target) not in SHAPE_OPS or not node.args:
            return min(widths, default=None)
        node = node.args[0]


def _per_token(node) -> int | None:
    """A tensor's elements over its symbolic (batch, sequence) dimensions' product, when that is a constant."""
    val = node.meta.get("val") if isinstance(node, torch.fx.Node) else None
    if not isinstance(val, torch.Tensor):
        return None
    numel = sympy.Mul(*(d.node.expr if isinstance(d, torch.SymInt) else sympy.Integer(d) for d in val.shape))
    per = sympy.simplify(numel / sympy.Mul(*numel.free_symbols))
    return int(per) if per.is_Integer else None
