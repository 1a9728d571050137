"""What one phase (a forward, a prefill, a decode step) asks of the chip, read from the placed graph.

The analog weight blocks (with their tile segments) and the digital ops of the exported graph, each
with its sizes evaluated at a batch size and sequence length, and the dependencies between them.
torch.export leaves batch and sequence dimensions symbolic (SymInt); they are substituted here, so
one compiled graph is costed at any batch size and sequence length the model accepts.

A workload is one Phase of the graph: a forward, a prefill or a decode step. Each shape's sequence axes get a
role (docs/estimator.md, "Decoder inference"): in a shape where the sequence symbol appears twice (attention
scores, masks) the last such axis is the key axis and the others are query axes; a shape where it appears once is
a query axis, except for the second operand of an attention matmul (K^T, V), whose sequence axis is the key axis.
A forward or a prefill of s tokens has queries = keys = s; a prefill skips the masked upper triangle (query i
visits keys 0..i: every op on a score-shaped tensor does s(s+1)/2 of its s^2 rows x columns) and runs the LM head
(a block no other block depends on) and the ops after it on the last position only; a decode step at context c has
one query per sequence against c keys.

Mixture of experts: a layer of stacked experts is one block per expert; its node's rows are the routed
(token, expert) pairs, tokens x top_k, and under uniform routing (an assumption: a trained router's load is
not known from shapes) they spread evenly over the experts (`expert_vectors`), so only the routed top-k per
token is priced.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import sympy
import torch

from compiler.errors import UserError
from compiler.ir import SHAPE_OPS, Kind, PlacedGraph, TileSegment, layer_group
from compiler.backends.estimator.schedule import ANALOG, DIGITAL, StageId

# Digital op classes and their cost recipe: (multiplies, adds) per output element, in the precision of the
# digital units. Derivations in docs/estimator.md ("Digital recipes").
SOFTMAX_OPS = {"aten.softmax.int", "aten._softmax.default", "aten._safe_softmax.default"}
LAYERNORM_OPS = {"aten.layer_norm.default", "aten.native_layer_norm.default"}
GELU_OPS = {"aten.gelu.default"}
EMBEDDING_OPS = {"aten.embedding.default"}
# Products with a weight that partition left digital (a weight used through matmul rather than linear):
# priced per MAC on the digital units. The index is the operand whose last dimension is contracted.
DIGITAL_MATMUL_OPS = {"aten.matmul.default": 0, "aten.bmm.default": 0, "aten.mm.default": 0,
                      "aten.linear.default": 0, "aten.addmm.default": 1, "aten.baddbmm.default": 1}
# Ops that create or select data without arithmetic: costed as free, like the shape ops.
FREE_OPS = SHAPE_OPS | {
    "aten.arange.default", "aten.arange.start", "aten.arange.start_step", "aten.zeros.default",
    "aten.ones.default", "aten.full.default", "aten.new_ones.default", "aten.new_zeros.default",
    "aten.new_full.default", "aten.scalar_tensor.default", "aten.empty.memory_format",
    "aten.lift_fresh_copy.default", "aten.zeros_like.default", "aten.ones_like.default",
    "aten.full_like.default", "aten.index.Tensor", "aten.gather.default",
}
RECIPES: dict[str, tuple[int, int]] = {
    "softmax": (5, 7),      # max, subtract, exp (4 mult + 4 add), sum, scale by 1/sum
    "layernorm": (3, 4),    # mean, centre, square, variance sum, normalize, gamma, beta
    "gelu": (12, 7),        # tanh form: x^3 polynomial (4 mult, 1 add), tanh (6 mult, 5 add), 0.5 x (1 + .)
    "tanh": (6, 5),         # exp (4 mult + 4 add), reciprocal (2 mult), 1 add
    "mul": (1, 0),
    "div": (2, 0),          # reciprocal (Newton step) and multiply
    "embedding": (0, 0),    # a table lookup: SRAM reads only
    "elementwise": (0, 1),  # add, sub, compare, select, logical: one adder operation
}


@dataclass(frozen=True)
class AnalogWork:
    """One weight block: `vectors` input vectors, each one MVM on every segment of the block."""
    name: str
    layer: str
    vectors: int
    in_features: int
    out_features: int
    bias_features: int              # outputs that get a bias added
    segments: tuple[TileSegment, ...]
    deps: tuple[StageId, ...]       # the works it waits for
    order: int                      # position of its first layer in the graph
    option: Any = None              # its compiler.block_options.BlockOption (--accuracy-budget); None: the reference

    @property
    def id(self) -> StageId:
        return analog_id(self.name)

    @property
    def macs(self) -> int:
        return self.vectors * self.in_features * self.out_features


@dataclass(frozen=True)
class DigitalWork:
    """One digital op: `elements` output elements in `vectors` rows (the last dimension is a row)."""
    name: str
    layer: str
    op: str
    op_class: str                   # a key of RECIPES, "attention" (INT6 matmuls) or "matmul" (digital, weights)
    vectors: int
    elements: int
    input_elements: int             # activation elements read (parameters excluded)
    macs: int                       # attention and digital matmuls only
    deps: tuple[StageId, ...]       # the works it waits for
    barrier_deps: tuple[StageId, ...]  # deps whose every vector it needs first: K for QK^T, V for AV
    order: int                      # position in the graph

    @property
    def id(self) -> StageId:
        return digital_id(self.name)


@dataclass(frozen=True)
class Workload:
    batch: int
    seq_len: int
    has_sequence_dim: bool          # False for inputs without a sequence axis (a bare nn.Linear)
    analog: tuple[AnalogWork, ...]
    digital: tuple[DigitalWork, ...]

    @property
    def analog_macs(self) -> int:
        return sum(w.macs for w in self.analog)

    @property
    def attention_macs(self) -> int:
        return sum(w.macs for w in self.digital if w.op_class == "attention")

    @property
    def digital_matmul_macs(self) -> int:
        return sum(w.macs for w in self.digital if w.op_class == "matmul")


@dataclass
class _NodeTemplate:
    name: str
    kind: str                       # "analog" (a layer of a block) | "digital"
    op: str
    op_class: str
    layer: str
    out_shape: tuple
    input_shapes: tuple[tuple, ...]
    contracted_shape: tuple         # matmuls: the operand whose last dimension is summed over
    deps: frozenset[StageId]
    barrier_deps: frozenset[StageId]
    order: int


class WorkloadTemplate:
    """The graph analysed once; `instantiate(phase)` evaluates the sizes."""

    def __init__(self, placed: PlacedGraph):
        self.placed = placed
        self._batch_syms, self._seq_syms, self._hints, self._seq_max = _input_symbols(placed)
        if self._seq_syms and self._seq_max is None:  # export put no bound on it: the model config does
            self._seq_max = placed.max_positions
        self.has_sequence_dim = bool(self._seq_syms)
        self._nodes: list[_NodeTemplate] = []
        self._block_of: dict[str, str] = {}
        self._blocks_of: dict[str, list[str]] = {}   # a layer of stacked experts: one block per expert
        self._roles: dict = {}                       # the sequence axes' roles per shape (_Roles)
        self._heads: frozenset[StageId] | None = None
        self._segments_of: tuple[list, dict] | None = None
        self._analyse()

    def evaluator(self, batch: int, seq_len: int) -> "_DimEvaluator":
        """Evaluates dimensions with the batch and sequence symbols set (a fresh cache per call)."""
        return _DimEvaluator({s: batch for s in self._batch_syms} | {s: seq_len for s in self._seq_syms},
                             self._hints)

    def is_seq_dim(self, d) -> bool:
        """Whether a dimension of a node's shape depends on the sequence length."""
        return isinstance(d, torch.SymInt) and bool(d.node.expr.free_symbols & self._seq_syms)

    @property
    def max_seq_len(self) -> int | None:
        """The longest sequence the exported graph accepts (its position embeddings), if bounded."""
        return self._seq_max

    # --- analysis (once) -----------------------------------------------------------------------
    def _analyse(self) -> None:
        placed = self.placed
        params = set(placed.exported.graph_signature.inputs_to_parameters) | \
            set(placed.exported.graph_signature.inputs_to_buffers) | \
            set(getattr(placed.exported.graph_signature, "inputs_to_lifted_tensor_constants", {}) or {})
        for block in placed.blocks.values():
            for layer in block.layers:
                self._block_of.setdefault(layer, block.name)
                self._blocks_of.setdefault(layer, []).append(block.name)
        producers: dict[str, frozenset[StageId]] = {}
        for node in placed.graph.nodes:
            if node.op != "call_function":
                producers[node.name] = frozenset()
                continue
            inputs = _flat_nodes(node.args) + _flat_nodes(list(node.kwargs.values()))
            upstream = frozenset().union(*(producers[a.name] for a in inputs))
            placement = placed.placements.get(node.name)
            op = str(node.target)
            work_names = self._work_names(node.name, placement, op)
            if not work_names:
                producers[node.name] = upstream
                continue
            producers[node.name] = work_names
            kind = "analog" if placement.kind is Kind.ANALOG else "digital"
            op_class = "analog" if kind == "analog" else _op_class(op, placement.kind)
            activation_inputs = tuple(_shape(a) for a in inputs
                                      if a.name not in params and isinstance(a.meta.get("val"), torch.Tensor))
            contracted = _shape(inputs[DIGITAL_MATMUL_OPS.get(op, 0)]) if op_class in ("attention", "matmul") else ()
            # A matmul streams the rows of its first operand; every row needs all of the second (K^T, V).
            barrier = frozenset().union(*(producers[a.name] for a in inputs[1:])) if op_class == "attention" \
                else frozenset()
            self._nodes.append(_NodeTemplate(
                name=node.name, kind=kind, op=op, op_class=op_class,
                layer=layer_group(self._block_of.get(node.name) or placement.module or ""),
                out_shape=_shape(node), input_shapes=activation_inputs, contracted_shape=contracted,
                deps=upstream - work_names,
                barrier_deps=barrier - work_names, order=len(self._nodes)))

    def _work_names(self, node: str, placement, op: str) -> frozenset[StageId]:
        if placement is None:
            return frozenset()
        if placement.kind is Kind.ANALOG:
            return frozenset(analog_id(b) for b in self._blocks_of[node])
        if op in FREE_OPS:
            return frozenset()
        return frozenset({digital_id(node)})

    # --- evaluation (per phase) ------------------------------------------------------------------
    @property
    def causal_lm(self) -> bool:
        return self.placed.model_info.task == "causal-lm" and self.has_sequence_dim

    def inference(self, batch: int, seq_len: int) -> "Phase":
        """One inference of `seq_len` tokens: a causal LM's is its prefill, any other model's the plain forward."""
        return Phase(PREFILL if self.causal_lm else FORWARD, batch, seq_len)

    def heads(self) -> frozenset[StageId]:
        """Work ids of the LM head and what follows it: blocks no other block depends on, and their descendants
        (a prefill runs them on the last position only)."""
        if self._heads is None:
            users: dict[StageId, set[StageId]] = {}
            ids = []
            for t in self._nodes:
                for wid in ([analog_id(b) for b in self._blocks_of[t.name]] if t.kind == "analog"
                            else [digital_id(t.name)]):
                    ids.append(wid)
                    for d in t.deps:
                        users.setdefault(d, set()).add(wid)

            def downstream(w: StageId, seen: set[StageId]) -> set[StageId]:
                stack = [w]
                while stack:
                    for u in users.get(stack.pop(), ()):
                        if u not in seen:
                            seen.add(u)
                            stack.append(u)
                return seen

            tails = {w for w in ids if w.kind == ANALOG and not any(d.kind == ANALOG for d in downstream(w, set()))}
            out: set[StageId] = set(tails)
            for w in tails:
                out |= downstream(w, set())
            self._heads = frozenset(out)
        return self._heads

    def _segments(self) -> dict[str, tuple[TileSegment, ...]]:
        """The blocks' segments, one tuple per block and the same object in every workload while the placement's
        segment list is the same (chip.py caches layouts by it; a placement search assigns a new list)."""
        if self._segments_of is None or self._segments_of[0] is not self.placed.segments:
            lists: dict[str, list] = {}
            for seg in self.placed.segments:
                lists.setdefault(seg.block, []).append(seg)
            self._segments_of = (self.placed.segments, {b: tuple(segs) for b, segs in lists.items()})
        return self._segments_of[1]

    def instantiate(self, phase: "Phase") -> Workload:
        """The graph's work in `phase` (module docstring: the sequence axes' roles); in a decode step the attention
        matmuls' key-side operands come from the KV cache (priced by pricing.evaluate), not the activation SRAM."""
        batch, tokens = phase.batch, phase.tokens
        if batch < 1 or tokens < 1:
            raise UserError(f"batch and seq_len must be >= 1 (got batch={batch}, seq_len={tokens})")
        if self._seq_max is not None and tokens > self._seq_max:
            raise UserError(f"{'context' if phase.kind == DECODE else 'seq_len'} {tokens} exceeds the "
                            f"{self._seq_max} positions this model accepts")
        query = 1 if phase.kind == DECODE else tokens
        last_only = self.heads() if phase.kind == PREFILL else frozenset()
        full, last = _Roles(self, batch, query, tokens), _Roles(self, batch, 1, tokens)
        fraction = (query + 1) / (2 * query) if phase.kind == PREFILL else 1.0

        def scale(scores: bool) -> float:
            return fraction if scores else 1.0

        segments = self._segments()
        placed = self.placed
        analog: dict[str, dict] = {}
        digital: list[DigitalWork] = []
        for t in self._nodes:
            if t.kind == "analog":
                placement = placed.placements[t.name]
                for block in self._blocks_of[t.name]:  # one per expert of stacked experts: its routed share
                    roles = last if analog_id(block) in last_only else full
                    out, _ = roles.shape(t.out_shape)
                    entry = analog.setdefault(block, {"vectors": expert_vectors(_rows(out), placement.experts,
                                                                                placed.blocks[block].expert),
                                                      "bias": 0, "deps": set(), "layer": t.layer, "order": t.order})
                    entry["bias"] += placement.out_features if placement.bias else 0
                    entry["deps"] |= t.deps
                continue
            roles = last if digital_id(t.name) in last_only else full
            out, out_scores = roles.shape(t.out_shape)
            attention = t.op_class == "attention"
            inputs = [roles.shape(s, key_operand=attention and i > 0) for i, s in enumerate(t.input_shapes)]
            if attention and phase.kind == DECODE:
                inputs = inputs[:1]
            elements = math.prod(out) * scale(out_scores)
            macs = 0.0
            if t.contracted_shape:
                contracted, c_scores = roles.shape(t.contracted_shape)
                macs = math.prod(out) * contracted[-1] * scale(out_scores or c_scores)
            digital.append(DigitalWork(
                name=t.name, layer=t.layer, op=t.op, op_class=t.op_class, vectors=_rows(out), elements=round(elements),
                input_elements=round(sum(math.prod(s) * scale(sc) for s, sc in inputs)), macs=round(macs),
                deps=tuple(sorted(t.deps)), barrier_deps=tuple(sorted(t.barrier_deps)), order=t.order))
        works = tuple(AnalogWork(
            name=name, layer=e["layer"], vectors=e["vectors"], in_features=placed.blocks[name].in_features,
            out_features=placed.blocks[name].out_features, bias_features=e["bias"],
            segments=segments.get(name, ()), deps=tuple(sorted(e["deps"] - {analog_id(name)})), order=e["order"],
            option=placed.block_options.get(name))
            for name, e in analog.items())
        return Workload(batch=batch, seq_len=query, has_sequence_dim=self.has_sequence_dim, analog=works,
                        digital=tuple(digital))


FORWARD, PREFILL, DECODE = "forward", "prefill", "decode"


@dataclass(frozen=True)
class Phase:
    """What one workload runs (WorkloadTemplate.instantiate): FORWARD, an inference of `tokens` per sequence;
    PREFILL, a causal LM's prompt of `tokens`; DECODE, one decode step at context `tokens` (the new token's
    included)."""
    kind: str
    batch: int
    tokens: int


class _Roles:
    """Shapes of the template's nodes with the sequence axes given query and key lengths."""

    def __init__(self, template: WorkloadTemplate, batch: int, query: int, key: int):
        self.template, self.plan = template, template._roles
        self.q = template.evaluator(batch, query)
        self.k = template.evaluator(batch, key)

    def shape(self, shape: tuple, key_operand: bool = False) -> tuple[tuple[int, ...], bool]:
        """(evaluated shape, whether it has both a query and a key axis)."""
        roles = self.plan.get((id(shape), key_operand))
        if roles is None:  # which axes are key axes: decided once per shape of the template
            seq = [i for i, d in enumerate(shape) if self.template.is_seq_dim(d)]
            keys = set(seq) if key_operand else ({seq[-1]} if len(seq) > 1 else set())
            roles = self.plan[(id(shape), key_operand)] = (keys, bool(keys) and len(keys) < len(seq))
        keys, scores = roles
        return tuple(self.k.dim(d) if i in keys else self.q.dim(d) for i, d in enumerate(shape)), scores


def expert_vectors(rows: int, experts: int, expert: int | None) -> int:
    """Input vectors of one block: all `rows` of a plain layer; for expert `expert` of `experts` stacked ones,
    its share of the routed rows under uniform routing (the remainder to the first experts, so the shares
    add up to the rows exactly and average rows / experts)."""
    if not experts:
        return rows
    return rows // experts + (expert < rows % experts)


@functools.lru_cache(maxsize=1 << 16)
def analog_id(block: str) -> StageId:
    return StageId(ANALOG, block)


@functools.lru_cache(maxsize=1 << 16)
def digital_id(node: str) -> StageId:
    return StageId(DIGITAL, node)


def _op_class(op: str, kind: Kind) -> str:
    if kind is Kind.ATTENTION_MATMUL:
        return "attention"
    if op in DIGITAL_MATMUL_OPS:
        return "matmul"
    if op in SOFTMAX_OPS:
        return "softmax"
    if op in LAYERNORM_OPS:
        return "layernorm"
    if op in GELU_OPS:
        return "gelu"
    if op in EMBEDDING_OPS:
        return "embedding"
    if op.startswith("aten.tanh"):
        return "tanh"
    if op.startswith("aten.mul"):
        return "mul"
    if op.startswith("aten.div"):
        return "div"
    return "elementwise"


def _flat_nodes(args) -> list[torch.fx.Node]:
    out: list[torch.fx.Node] = []
    for a in args:
        if isinstance(a, torch.fx.Node):
            out.append(a)
        elif isinstance(a, (list, tuple)):
            out.extend(_flat_nodes(a))
    return out


def _shape(node: torch.fx.Node) -> tuple:
    val = node.meta.get("val")
    if isinstance(val, torch.Tensor):
        return tuple(val.shape)
    if isinstance(val, (list, tuple)) and val and isinstance(val[0], torch.Tensor):
        return tuple(val[0].shape)  # multi-output ops (native_layer_norm): the main output
    return ()


def _rows(shape: tuple[int, ...]) -> int:
    return math.prod(shape[:-1]) if len(shape) > 1 else 1


def _input_symbols(placed: PlacedGraph) -> tuple[set, set, dict, int | None]:
    """Symbols of the batch (dim 0 of every user input) and sequence (dim 1) axes, hints, max sequence."""
    user_inputs = set(placed.exported.graph_signature.user_inputs)
    batch_syms, seq_syms, hints = set(), set(), {}
    seq_max = None
    for node in placed.graph.nodes:
        if node.op != "placeholder" or node.name not in user_inputs:
            continue
        val = node.meta.get("val")
        if not isinstance(val, torch.Tensor):
            continue
        for axis, dim in enumerate(val.shape[:2]):
            if not isinstance(dim, torch.SymInt) or not dim.node.expr.is_Symbol:
                continue
            (batch_syms if axis == 0 else seq_syms).add(dim.node.expr)
            if axis == 1:
                upper = dim.node.shape_env.var_to_range[dim.node.expr].upper
                if upper.is_Integer:  # unbounded ranges end in torch's int_oo, which is not
                    seq_max = min(int(upper), seq_max or int(upper))
    if not batch_syms and placed.graph.nodes:
        raise UserError("the exported graph has a static batch dimension; compile the model with example "
                        "inputs whose batch dimension is at least 2 so the estimator can vary it")
    return batch_syms, seq_syms, hints, seq_max  # other symbols take their example values, lazily


class _DimEvaluator:
    """Evaluates symbolic dimensions, caching each distinct expression."""

    def __init__(self, values: dict, hints: dict):
        self.values = values
        self.hints = hints
        self.cache: dict[Any, int] = {}

    def dim(self, d) -> int:
        if isinstance(d, int):
            return d
        expr = d.node.expr
        got = self.cache.get(expr)
        if got is None:
            subs = {s: self.values.get(s, self.hints.get(s)) for s in expr.free_symbols}
            missing = [s for s, v in subs.items() if v is None]
            if missing:
                subs.update({s: self._hint(d, s) for s in missing})
            got = int(expr.xreplace({s: sympy.Integer(v) for s, v in subs.items()}))
            self.cache[expr] = got
        return got

    def _hint(self, d, symbol) -> int:
        env = d.node.shape_env
        table = getattr(env, "backed_var_to_val", None) or env.var_to_val
        value = int(table[symbol])
        self.hints[symbol] = value
        return value

    def shape(self, shape: tuple) -> tuple[int, ...]:
        return tuple(self.dim(d) for d in shape)
