"""Partition: decide where each node of the exported graph runs.

- aten.linear (and GPT-2's Conv1D, exported as aten.addmm with a (in, out) weight) -> ANALOG tiles;
- matmuls of two activations (attention's QK^T and AV) -> ATTENTION_MATMUL units; one whose first operand
  is a softmax output (P of P·V) is marked `operand_is_probability`: the integer unit quantizes P
  unsigned over [0, 1] (compiler/analog/integer.py);
- everything else -> DIGITAL.

Decoders map the same way: grouped-query attention (K/V projections narrower than Q), fused projections
(Phi-3's `qkv_proj`, `gate_up_proj`), biases on some projections (Qwen2), tied LM heads (one weight, one
layer), SwiGLU, RMSNorm and rotary embeddings need nothing special (docs/decoders.md). Mixture of experts
(transformers' Mixtral): the experts' weights are stacked in one 3-D parameter (E, out, in) and run through a
grouped matmul (`transformers.grouped_mm_fallback`, `aten._grouped_mm`) over the routed tokens: one ANALOG
layer with `experts` = E, which the allocator splits into one block per expert; the router is a plain linear
(analog), its top-k and the combine digital. Any other op computing with a 3-D+ parameter is refused with one
line: running it on the digital unit unsaid would misprice it.
"""
from __future__ import annotations

import torch

from compiler.errors import UserError
from compiler.frontend import attention_layers
from compiler.ir import SHAPE_OPS, Kind, PlacedGraph, Placement

_ANALOG_OPS = {"aten.linear.default", "aten.addmm.default"}
_MATMUL_OPS = {"aten.matmul.default", "aten.bmm.default"}
# grouped matmuls of the routed tokens (E groups, by offsets) with experts stacked in a (E, in, out) operand
_EXPERT_OPS = {"transformers.grouped_mm_fallback.default", "aten._grouped_mm.default"}
_SOFTMAX_OPS = {"aten.softmax.int", "aten._softmax.default", "aten._safe_softmax.default"}
# Ops between a softmax and the matmul that leave P's values in [0, 1]: shape ops, dropout (a rescaled P
# in training, P itself in eval), type conversions, and taking one output of a tuple-valued op.
_PROBABILITY_PRESERVING = SHAPE_OPS | {"aten.native_dropout.default", "aten._to_copy.default",
                                       "aten.feature_dropout.default", "<built-in function getitem>"}


def partition(placed: PlacedGraph) -> PlacedGraph:
    """Fill `placed.placements` with one Placement per call_function node and `placed.attention` with the attention
    layers' KV geometry (in place; returns placed)."""
    params = placed.exported.graph_signature.inputs_to_parameters
    placed.placements = {}
    for node in placed.graph.nodes:
        if node.op != "call_function":
            continue
        op = str(node.target)
        module = _module_path(node)
        if op in _ANALOG_OPS and _analog_weight(node, params) is not None:
            placed.placements[node.name] = _analog_placement(node, op, module, params)
        elif op in _EXPERT_OPS and _stacked_weight(node, params) is not None:
            placed.placements[node.name] = _expert_placement(node, op, module, params)
        elif op in _MATMUL_OPS and not any(_param_name(a, params) for a in node.args):
            placed.placements[node.name] = Placement(node.name, Kind.ATTENTION_MATMUL, op, module,
                                                     in_features=_static(_shape(node.args[0])[-1]),
                                                     out_features=_static(_shape(node)[-1]),
                                                     operand_is_probability=is_softmax_output(node.args[0]))
        else:
            if op not in SHAPE_OPS:
                _refuse_stacked_weights(placed, node, module, params)
            features = _features(node) if op not in SHAPE_OPS else (None, None)
            placed.placements[node.name] = Placement(node.name, Kind.DIGITAL, op, module,
                                                     in_features=features[0], out_features=features[1])
    placed.attention = attention_layers(placed)
    return placed


def _refuse_stacked_weights(placed: PlacedGraph, node: torch.fx.Node, module: str, params: dict[str, str]) -> None:
    """A UserError when `node` computes with a parameter of 3 or more dimensions (reached through shape ops and
    conversions): mixture-of-experts weights stacked per expert, which no pass places on tiles yet."""
    for arg in node.args:
        while isinstance(arg, torch.fx.Node) and arg.op == "call_function" and arg.args and \
                str(arg.target) in _PROBABILITY_PRESERVING:
            arg = arg.args[0]
        name = _param_name(arg, params)
        if name is not None and len(_shape(arg)) >= 3:
            raise UserError(f"{placed.model_info.name}: {module or node.name} computes with {name}, a weight of shape "
                            f"{tuple(_shape(arg))} stacked per expert (mixture of experts); mapping stacked expert "
                            f"weights onto tiles is not supported yet")


def _stacked_weight(node: torch.fx.Node, params: dict[str, str]) -> tuple[str, bool] | None:
    """(parameter name, whether it is stored (E, out, in), i.e. transposed on the way) of a grouped matmul's 3-D
    weight operand, reached through shape ops and conversions; None when it is not a 3-D parameter."""
    arg, transposes = node.args[1] if len(node.args) > 1 else None, 0
    while isinstance(arg, torch.fx.Node) and arg.op == "call_function" and arg.args and \
            str(arg.target) in _PROBABILITY_PRESERVING:
        transposes += str(arg.target) in ("aten.transpose.int", "aten.t.default")
        arg = arg.args[0]
    name = _param_name(arg, params)
    return (name, transposes % 2 == 1) if name is not None and len(_shape(arg)) == 3 else None


def _expert_placement(node: torch.fx.Node, op: str, module: str, params: dict[str, str]) -> Placement:
    weight, out_in = _stacked_weight(node, params)
    experts, in_f, out_f = _shape(node.args[1])  # the operand as multiplied: (E, in, out)
    return Placement(node.name, Kind.ANALOG, op, module or weight.rsplit(".", 1)[0], in_features=int(in_f),
                     out_features=int(out_f), weight=weight, weight_transposed=not out_in,
                     experts=int(experts))


def is_softmax_output(arg) -> bool:
    """Whether `arg` is a softmax output, possibly reshaped, dropped out or converted on the way."""
    while isinstance(arg, torch.fx.Node) and arg.op == "call_function":
        op = str(arg.target)
        if op in _SOFTMAX_OPS:
            return True
        if op not in _PROBABILITY_PRESERVING or not arg.args:
            return False
        arg = arg.args[0]
    return False


def _analog_weight(node: torch.fx.Node, params: dict[str, str]) -> str | None:
    weight_arg = node.args[1] if str(node.target) == "aten.linear.default" else node.args[2]
    return _param_name(weight_arg, params)


def _analog_placement(node: torch.fx.Node, op: str, module: str, params: dict[str, str]) -> Placement:
    if op == "aten.linear.default":
        weight = _param_name(node.args[1], params)
        bias = _param_name(node.args[2], params) if len(node.args) > 2 else None
        out_f, in_f = _shape(node.args[1])
        transposed = False
    else:  # addmm(bias, x, weight): Conv1D stores its weight as (in, out)
        weight, bias = _param_name(node.args[2], params), _param_name(node.args[0], params)
        in_f, out_f = _shape(node.args[2])
        transposed = True
    return Placement(node.name, Kind.ANALOG, op, module or weight.rsplit(".", 1)[0], in_features=int(in_f),
                     out_features=int(out_f), weight=weight, bias=bias, weight_transposed=transposed)


def _param_name(arg, params: dict[str, str]) -> str | None:
    return params.get(arg.name) if isinstance(arg, torch.fx.Node) and arg.op == "placeholder" else None


def _shape(node) -> tuple:
    val = node.meta.get("val") if isinstance(node, torch.fx.Node) else None
    return tuple(val.shape) if isinstance(val, torch.Tensor) else ()


def _features(node: torch.fx.Node) -> tuple[int | None, int | None]:
    """Last dimension of the first tensor input and of the output, when they are concrete ints."""
    first = next((a for a in node.args if isinstance(a, torch.fx.Node) and _shape(a)), None)
    dims = (_shape(first)[-1] if first is not None else None, _shape(node)[-1] if _shape(node) else None)
    return _static(dims[0]), _static(dims[1])


def _static(dim) -> int | None:
    """A dimension as int, or None where it is symbolic (batch, sequence length)."""
    return dim if isinstance(dim, int) else None


def _module_path(node: torch.fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    return list(stack.values())[-1][0] if stack else ""
