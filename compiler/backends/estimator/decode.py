"""Decoder inference: prefill of a prompt, then decode one token at a time against a KV cache.

Both phases are workloads of the one builder (workload.Phase, WorkloadTemplate.instantiate: a prefill of s tokens,
the masked half of attention skipped and the LM head on the last position; a decode step at context c, one query
against c keys) priced by the one loop (pricing.evaluate) with their KV cache traffic: K and V of the earlier tokens
read from the cache (priced per byte where it lives), the new tokens' written. The cache's geometry is the IR's
(PlacedGraph.attention, read off the traced graph by the frontend). Each layer's KV cache lives on the chip that runs the layer's attention, spilling to its package's other chips and
then to the package's DRAM (kv_cache.py), placed for the generation's final context. The digital baseline runs the
same workloads: at decode it reads every weight once per step, from DRAM when they do not fit its weight memory.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

from compiler.errors import UserError
from compiler.hw_spec import DigitalBaselineSpec, HardwareSpec
from compiler.ir import AttentionLayer
from compiler.backends.estimator.baseline import price_on_baseline
from compiler.backends.estimator.fields import PJ, require
from compiler.backends.estimator.kv_cache import KvPlacement, place
from compiler.backends.estimator.links import LinkTraffic, crossings
from compiler.backends.estimator.prices import digital_prices
from compiler.backends.estimator.pricing import Chip, KvTraffic, evaluate
from compiler.backends.estimator.schedule import ANALOG, LINK, Stage, StageId, critical_path_by_kind, layer_spans
from compiler.backends.estimator.sensitivity import sensitivity
from compiler.backends.estimator.workload import DECODE, PREFILL, Phase, Workload, WorkloadTemplate, digital_id

DECODE_BATCHES = (1, 8, 32)      # the batch table (with the run's batch)
GENERATION_SAMPLES = 5           # contexts priced along a generation; the rest interpolated linearly
RANGE_SAMPLES = 2                # contexts a generation of the sensitivity prices (its first and last step)
RANGE_METRICS = ("ttft_s", "tokens_per_s", "energy_per_token_J")
CURVE_MIN_CONTEXT = 16


@dataclass(frozen=True)
class KvGeometry:
    """The KV cache of one sequence: K and V of every attention layer per token (the IR's AttentionLayer records)."""
    layers: int
    kv_heads: int                    # the first layer's (the layers of the models mapped are alike)
    head_dim: int
    values_per_token: int            # every layer's K and V elements
    bits: int
    bits_source: str

    @property
    def bytes_per_token(self) -> float:
        return self.values_per_token * self.bits / 8

    def bytes(self, context: int, batch: int) -> float:
        return self.bytes_per_token * context * batch


def kv_geometry(attention: tuple[AttentionLayer, ...], hw: HardwareSpec) -> KvGeometry:
    """From the attention layers the frontend read off the traced graph and the spec's KV precision."""
    if not attention:
        raise UserError("no attention layer with QK^T and PV matmuls on the digital unit in the exported graph; the "
                        "KV cache of this decoder cannot be sized")
    bits = require(hw, "memory.kv_cache_bits", "precision of the decoder's KV cache")
    return KvGeometry(len(attention), attention[0].kv_heads, attention[0].head_dim,
                      sum(a.values_per_token for a in attention), int(bits),
                      f"memory.kv_cache_bits = {bits} ({hw.source_file or hw.name})")


@dataclass(frozen=True)
class PhasePoint:
    """One priced workload (a prefill, or one decode step of `batch` sequences)."""
    batch: int
    context: int                     # keys attended (prefill: the prompt length)
    energy_J: float
    latency_s: float
    kv_bytes_moved: float            # KV cache bytes read + written
    kv_location: str
    links: LinkTraffic
    attention_macs: int
    baseline_energy_J: float
    baseline_latency_s: float
    baseline_kv_location: str
    energy_by_component_J: dict = field(default_factory=dict)   # sums to energy_J (static included)
    bound: str = ""                  # what limits the chip: the busiest resource or the pipeline's depth
    baseline_bound: str = ""         # compute or memory bandwidth
    layer_latency_s: dict = field(default_factory=dict)         # layer -> its stages' span on the critical schedule
    kv_bytes_by_tier: dict = field(default_factory=dict)        # KV bytes moved in own SRAM / package SRAM / DRAM
    bound_s: dict = field(default_factory=dict)  # the critical path's seconds: compute, memory, links (schedule.py)

    def to_json(self) -> dict:
        """One decode step as a `decode.contexts` entry: per token of the batch."""
        return {"context": self.context, "energy_per_token_J": self.energy_J / self.batch,
                "tokens_per_s": _rate(self.batch, self.latency_s),
                "baseline_energy_per_token_J": self.baseline_energy_J / self.batch,
                "baseline_tokens_per_s": _rate(self.batch, self.baseline_latency_s),
                "kv_location": self.kv_location, "kv_bytes_by_tier": dict(self.kv_bytes_by_tier),
                "attention_macs": self.attention_macs, "link_bytes": self.links.bytes, "latency_s": self.latency_s,
                "bound_s": dict(self.bound_s)}


def _rate(tokens: float, seconds: float) -> float | None:
    return tokens / seconds if seconds else None


def step_contexts(seq_len: int, gen_len: int, samples: int = GENERATION_SAMPLES) -> list[int]:
    """The contexts a generation prices: `samples` evenly spread over seq_len + 1 .. seq_len + gen_len."""
    n = min(gen_len, samples)
    return sorted({seq_len + 1 + round(i * (gen_len - 1) / max(n - 1, 1)) for i in range(n)})


def interpolated_sum(points: list[tuple[int, float]], steps: int) -> float:
    """Sum of a per-step value over `steps` consecutive contexts from the first point's, linear between the
    (context, value) points."""
    pts = sorted(points)
    first = pts[0][0]
    total = 0.0
    for k in range(steps):
        c = first + k
        hi = next(i for i, (ctx, _) in enumerate(pts) if ctx >= c)
        if pts[hi][0] == c:
            total += pts[hi][1]
            continue
        (ca, va), (cb, vb) = pts[hi - 1], pts[hi]
        t = (c - ca) / (cb - ca)
        total += (1 - t) * va + t * vb
    return total


@dataclass(frozen=True)
class Generation:
    """Prefill of the prompt and gen_len decode steps, at one batch."""
    batch: int
    prefill: PhasePoint
    steps: tuple[PhasePoint, ...]         # sampled contexts s + 1 .. s + gen_len
    gen_len: int
    kv_bytes: float                  # at the final context
    kv_location: str
    baseline_kv_location: str
    kv_placement: KvPlacement | None = None
    ranges: dict | None = None       # metric -> [low, value, high] (generation_ranges)
    baseline_misfit: str = ""        # why the baseline cannot hold this generation's weights and cache, if it cannot

    @property
    def baseline_bound(self) -> str:
        return self.baseline_misfit or self.steps[-1].baseline_bound

    def _sum(self, attr: str) -> float:
        """Sum over the gen_len steps, linear between the sampled contexts."""
        return interpolated_sum([(p.context, getattr(p, attr)) for p in self.steps], self.gen_len)

    @property
    def tokens(self) -> int:
        return self.batch * self.gen_len

    @property
    def energy_per_token_J(self) -> float:
        return self._sum("energy_J") / self.tokens

    @property
    def tokens_per_s(self) -> float | None:
        return _rate(self.tokens, self._sum("latency_s"))

    @property
    def baseline_energy_per_token_J(self) -> float:
        return self._sum("baseline_energy_J") / self.tokens

    @property
    def baseline_tokens_per_s(self) -> float | None:
        return _rate(self.tokens, self._sum("baseline_latency_s"))

    def to_json(self) -> dict:
        return {"batch": self.batch, "ttft_s": self.prefill.latency_s, "prefill_energy_J": self.prefill.energy_J,
                "tokens_per_s": self.tokens_per_s, "energy_per_token_J": self.energy_per_token_J,
                "baseline_ttft_s": self.prefill.baseline_latency_s,
                "baseline_prefill_energy_J": self.prefill.baseline_energy_J,
                "baseline_tokens_per_s": self.baseline_tokens_per_s,
                "baseline_energy_per_token_J": self.baseline_energy_per_token_J,
                "kv_cache_bytes": self.kv_bytes, "kv_location": self.kv_location,
                "kv_placement": self.kv_placement.to_json() if self.kv_placement else None,
                "baseline_kv_location": self.baseline_kv_location, "ranges": self.ranges,
                "bound": self.steps[-1].bound, "decode_step_latency_s": self.steps[-1].latency_s,
                "decode_step_bound_s": dict(self.steps[-1].bound_s),
                "baseline_bound": self.baseline_bound}


@dataclass(frozen=True)
class DecodeCost:
    batch: int
    seq_len: int
    gen_len: int
    kv: KvGeometry
    sram_bytes: float                # activation SRAM of the chips the model spans
    run: Generation                  # at the run's batch
    by_batch: tuple[Generation, ...]
    curve: tuple[PhasePoint, ...]         # one decode step per context, at the run's batch
    lm_head: tuple[str, ...]         # blocks run on the last position only in prefill
    baseline_weights: str            # where the baseline's weights live
    baseline_weight_bytes: int
    assumptions: tuple[str, ...] = field(default=())
    baseline_chips: int = 1

    def to_json(self) -> dict:
        run = self.run
        return {
            "batch": self.batch, "seq_len": self.seq_len, "gen_len": self.gen_len,
            "ttft_s": run.prefill.latency_s, "prefill_energy_J": run.prefill.energy_J,
            "prefill_attention_macs": run.prefill.attention_macs,
            "prefill_link_bytes": run.prefill.links.bytes, "prefill_link_energy_J": run.prefill.links.energy_J,
            "tokens_per_s": run.tokens_per_s, "energy_per_token_J": run.energy_per_token_J,
            "ranges": run.ranges,
            "decode_step_link_bytes": run.steps[-1].links.bytes,
            "decode_step_link_energy_J": run.steps[-1].links.energy_J,
            "decode_step_energy_by_component_J": dict(run.steps[-1].energy_by_component_J),
            "decode_step_energy_J": run.steps[-1].energy_J, "decode_step_latency_s": run.steps[-1].latency_s,
            "decode_step_layer_latency_s": dict(run.steps[-1].layer_latency_s),
            "decode_step_bound_s": dict(run.steps[-1].bound_s),
            "bound": run.steps[-1].bound, "baseline_bound": run.baseline_bound,
            "baseline_chips": self.baseline_chips,
            "baseline_ttft_s": run.prefill.baseline_latency_s,
            "baseline_prefill_energy_J": run.prefill.baseline_energy_J,
            "baseline_tokens_per_s": run.baseline_tokens_per_s,
            "baseline_energy_per_token_J": run.baseline_energy_per_token_J,
            "baseline_weights": self.baseline_weights, "baseline_weight_bytes": self.baseline_weight_bytes,
            "lm_head_last_position_only": list(self.lm_head),
            "kv_cache": {"bytes": run.kv_bytes, "context": self.seq_len + self.gen_len,
                         "bytes_per_token": self.kv.bytes_per_token, "layers": self.kv.layers,
                         "kv_heads": self.kv.kv_heads, "head_dim": self.kv.head_dim, "bits": self.kv.bits,
                         "bits_source": self.kv.bits_source, "location": run.kv_location,
                         "sram_bytes": self.sram_bytes, "baseline_location": run.baseline_kv_location,
                         "placement": run.kv_placement.to_json() if run.kv_placement else None},
            "by_batch": [g.to_json() for g in self.by_batch],
            "contexts": [p.to_json() for p in self.curve],
            "assumptions": list(self.assumptions),
        }


class DecodeModel:
    """Prices prefill and decode steps of one placed decoder on the chip and on the digital baseline."""

    def __init__(self, template: WorkloadTemplate, chip: Chip, base: DigitalBaselineSpec | None,
                 shared: dict | None = None, variant: bool = False):
        """shared: a dict kept between models of one template (the sensitivity's, one per spec variant): the
        workloads and the attention layers' chips do not depend on the spec's cost numbers; the reference model's
        evaluations are kept there for the variants' leakage.
        variant: a spec variant of the sensitivity: its leakage is the reference model's (the one sharing `shared`
        without `variant`) rescaled (gating.rescaled), not gated anew (unless it moves the gating's own fields)."""
        self.template, self.chip, self.base = template, chip, base
        self._shared = {} if shared is None else shared
        self._variant = variant
        hw = chip.hw
        self.hw = hw
        self.kv = kv_geometry(template.placed.attention, hw)
        self.digital = digital_prices(hw, "energy", hw.digital.other_precision)
        kib = require(hw, "area.sram_KiB_per_tile", "activation SRAM that may hold the KV cache")
        self.sram_per_chip = kib * 1024 * hw.tile.count
        self.sram_bytes = self.sram_per_chip * chip.chips
        self._analog: dict[int, list[Stage]] = {}  # a decode step's blocks' stages per batch (pricing.evaluate)
        self._workloads: dict = self._shared.setdefault("workloads", {})
        self._links: dict = chip.layouts  # the blocks' chip layouts (links.crossings)
        self._placements: dict[float, KvPlacement] = {}

    def _workload(self, phase: Phase) -> Workload:
        if phase not in self._workloads:
            self._workloads[phase] = self.template.instantiate(phase)
        return self._workloads[phase]

    # --- where the cache lives -----------------------------------------------------------------
    def attention_layers(self) -> list[tuple[tuple[StageId, ...], int]]:
        """(the attention matmuls' work ids, the home chip) of each attention layer of the IR, in graph order."""
        if "layers" not in self._shared:
            where = (crossings(self._workload(Phase(DECODE, 1, 2)), self.hw.tile.count,
                               self.digital.bytes_per_element, self._links)[1] if self.chip.chips > 1 else {})
            ids = [tuple(digital_id(m) for m in layer.matmuls) for layer in self.template.placed.attention]
            self._shared["layers"] = [(i, min(set().union(*(where.get(w, frozenset()) for w in i)), default=0))
                                      for i in ids]
        return self._shared["layers"]

    def placement(self, kv_bytes: float) -> KvPlacement:
        """The cache of `kv_bytes` (every layer, the whole batch) over the layers' chips (kv_cache.place)."""
        if kv_bytes not in self._placements:
            layers = self.attention_layers()  # not empty: kv_geometry refuses a model without
            cpp = self.hw.package.chips_per_package if self.hw.package is not None else None
            capacity = self.hw.memory.dram_GB_per_package if self.hw.memory is not None else None
            self._placements[kv_bytes] = place([chip for _, chip in layers], kv_bytes / len(layers),
                                               self.sram_per_chip, cpp, capacity * 1e9 if capacity else None)
        return self._placements[kv_bytes]

    def baseline_kv_location(self, kv_bytes: float, weight_bytes: int) -> str:
        return baseline_kv_location(self.base, kv_bytes, weight_bytes)

    def baseline_point(self, workload: Workload, kv_read: float, kv_write: float, location: str,
                       base: DigitalBaselineSpec | None = None) -> tuple[float, float, str]:
        """(J, s, what bounds it) of one workload on the digital baseline (`base`, else the model's), its KV cache
        traffic included, with the spec's serving terms: DRAM at dram_efficiency x its bandwidth, and
        layer_overhead_us per transformer layer (serving.py)."""
        base = base or self.base
        peak = base
        if base.dram_efficiency != 1.0:
            base = replace(base, dram_GBps=base.dram_GBps * base.dram_efficiency)
        b = price_on_baseline(workload, base, self.hw)
        if location == "dram":
            per_J, per_s = base.dram_pJ_per_byte * PJ, 1.0 / (base.dram_GBps * 1e9)
        else:
            per_J, per_s = base.weight_buffer_pJ_per_byte * PJ * self.digital.scale, 0.0
        kv_s = (kv_read + kv_write) * per_s
        overhead_s = peak.layer_overhead_us * 1e-6 * self.kv.layers
        seconds = b.latency_s + kv_s + overhead_s
        joules = b.energy_J + (kv_read + kv_write) * per_J + b.static_power_W * (kv_s + overhead_s)
        memory = b.memory_s + kv_s
        bound = ("fixed overhead per layer" if overhead_s > max(memory, b.compute_s)
                 else "memory bandwidth" if memory > b.compute_s else "compute")
        return joules, seconds, bound

    # --- one workload --------------------------------------------------------------------------
    def price(self, phase: Phase, placement: KvPlacement, baseline_location: str) -> PhasePoint:
        """A prefill (its prompt's K and V written) or a decode step at context c (the earlier c - 1 tokens' K and
        V read, the new token's written), the cache as `placement` holds it, on the chip and on the baseline."""
        workload = self._workload(phase)
        decode = phase.kind == DECODE
        held = read = phase.tokens - 1 if decode else 0
        write = 1 if decode else phase.tokens
        layers = self.attention_layers()
        kv = KvTraffic(placement, tuple(ids for ids, _ in layers), self.kv.bytes(1, workload.batch) / len(layers),
                       held, read, write)
        key = ("leakage", workload.batch, workload.seq_len, read, write)
        ev = evaluate(workload, self.chip, kv, reference=self._shared.get(key) if self._variant else None,
                      exact=False, analog_cache=self._analog if decode else None)
        if not self._variant:
            self._shared[key] = ev
        timing = ev.schedule
        kv_read, kv_write = self.kv.bytes(read, workload.batch), self.kv.bytes(write, workload.batch)
        base_J = base_s = 0.0
        base_bound = ""
        if self.base is not None:
            base_J, base_s, base_bound = self.baseline_point(workload, kv_read, kv_write, baseline_location)
        links = sum(1 for sid in timing.critical_path if sid.kind == LINK)
        bound = (f"busiest resource ({timing.bottleneck})" if timing.period_s >= timing.critical_path_s
                 else "pipeline depth (critical path" + (f", {links} chip-link crossings on it)" if links else ")"))
        return PhasePoint(batch=workload.batch, context=phase.tokens, energy_J=ev.energy_J,
                          latency_s=timing.latency_s, kv_bytes_moved=kv_read + kv_write,
                          kv_location=placement.location, links=ev.links, attention_macs=workload.attention_macs,
                          baseline_energy_J=base_J, baseline_latency_s=base_s, baseline_kv_location=baseline_location,
                          energy_by_component_J=ev.energy_by_component_J, bound=bound, baseline_bound=base_bound,
                          # a range variant's steps give only their totals (generation_ranges): no breakdowns
                          layer_latency_s={} if self._variant else layer_spans(ev.stages, timing),
                          kv_bytes_by_tier=ev.kv_bytes_by_tier,
                          bound_s={} if self._variant else critical_path_by_kind(ev.stages, timing))

    def weight_bytes(self) -> int:
        return sum(b.in_features * b.out_features for b in self.template.placed.blocks.values())

    def generation(self, batch: int, seq_len: int, gen_len: int, samples: int = GENERATION_SAMPLES) -> Generation:
        final = seq_len + gen_len
        kv_bytes = self.kv.bytes(final, batch)
        where = self.placement(kv_bytes)
        base_loc = self.baseline_kv_location(kv_bytes, self.weight_bytes()) if self.base else ""
        contexts = step_contexts(seq_len, gen_len, samples)
        return Generation(batch=batch, prefill=self.price(Phase(PREFILL, batch, seq_len), where, base_loc),
                          steps=tuple(self.price(Phase(DECODE, batch, c), where, base_loc) for c in contexts),
                          gen_len=gen_len,
                          kv_bytes=kv_bytes, kv_location=where.location, baseline_kv_location=base_loc,
                          kv_placement=where,
                          baseline_misfit=baseline_misfit(self.base, kv_bytes, self.weight_bytes()) if self.base else "")

    def baseline_generation(self, base: DigitalBaselineSpec, batch: int, seq_len: int, gen_len: int,
                            weight_bytes: float | None = None, layers_scale: float = 1.0) -> dict[str, Any]:
        """The generation on the digital baseline `base` alone (no AIMC pricing): TTFT, tokens/s, J/token, the
        whole generation's seconds (first token + every step) and what bounds its last step. weight_bytes and
        layers_scale: the full model's weights and layers over this model's, when this one is a shallow copy
        (serving.py: where the cache and the weights live is decided for the full depth)."""
        weights = self.weight_bytes() if weight_bytes is None else weight_bytes
        where = baseline_kv_location(base, self.kv.bytes(seq_len + gen_len, batch) * layers_scale, weights)
        pre_J, pre_s, _ = self.baseline_point(self._workload(Phase(PREFILL, batch, seq_len)), 0.0,
                                              self.kv.bytes(seq_len, batch), where, base)
        joules, seconds, bound = [], [], ""
        for c in step_contexts(seq_len, gen_len):
            j, t, bound = self.baseline_point(self._workload(Phase(DECODE, batch, c)), self.kv.bytes(c - 1, batch),
                                              self.kv.bytes(1, batch), where, base)
            joules.append((c, j))
            seconds.append((c, t))
        step_J, step_s = interpolated_sum(joules, gen_len), interpolated_sum(seconds, gen_len)
        misfit = baseline_misfit(base, self.kv.bytes(seq_len + gen_len, batch) * layers_scale, weights)
        return {"ttft_s": pre_s, "prefill_energy_J": pre_J, "tokens_per_s": _rate(batch * gen_len, step_s),
                "energy_per_token_J": step_J / (batch * gen_len), "decode_s": step_s, "total_s": pre_s + step_s,
                "bound": misfit or bound, "kv_location": where}

    def curve(self, batch: int, contexts: list[int]) -> list[PhasePoint]:
        """One decode step per context, the cache placed for that context."""
        out = []
        for c in contexts:
            kv = self.kv.bytes(c, batch)
            base_loc = self.baseline_kv_location(kv, self.weight_bytes()) if self.base else ""
            out.append(self.price(Phase(DECODE, batch, c), self.placement(kv), base_loc))
        return out


def baseline_kv_location(base: DigitalBaselineSpec, kv_bytes: float, weight_bytes: float) -> str:
    """The baseline keeps the cache in its on-chip weight memory when it fits beside the weights there (or alone,
    when the weights stream from DRAM), else in DRAM."""
    cap = base.weight_buffer_MiB * 2 ** 20
    weights_on_chip = weight_bytes <= cap
    return "on-chip" if kv_bytes + (weight_bytes if weights_on_chip else 0) <= cap else "dram"


def baseline_misfit(base: DigitalBaselineSpec, kv_bytes: float, weight_bytes: float) -> str:
    """Why the baseline's DRAM (hbm_GB, scaled with its chips) cannot hold the weights that stream from it and the
    cache kept there; "" when it can or has no stated capacity. The generation is still priced: the flag says the
    real part could not run it."""
    if not base.hbm_GB:
        return ""
    streamed = weight_bytes if weight_bytes > base.weight_buffer_MiB * 2 ** 20 else 0.0
    need = streamed + (kv_bytes if baseline_kv_location(base, kv_bytes, weight_bytes) == "dram" else 0.0)
    return "" if need <= base.hbm_GB * 1e9 else \
        f"does not fit its memory ({need / 1e9:.3g} GB of weights and KV cache > {base.hbm_GB:.3g} GB)"


def generation_ranges(template: WorkloadTemplate, chip: Chip, shared: dict, gen: Generation, seq_len: int,
                      gen_len: int) -> dict:
    """How sure the AIMC side of a generation is: every cost number of the spec with an uncertainty moved to
    x (1 - u) and x (1 + u) alone (sensitivity.py), the generation repriced at its first and last step (linear in
    between; the leakage rescaled from the reported evaluation's, gating.rescaled), and the root-sum-square of the
    relative deviations applied to the reported value. Also the three fields that swing each metric most."""
    def metrics(hw: HardwareSpec) -> dict[str, float]:
        g = DecodeModel(template, chip.with_hw(hw), None, shared, variant=True).generation(
            gen.batch, seq_len, gen_len, samples=RANGE_SAMPLES)
        return {"ttft_s": g.prefill.latency_s, "tokens_per_s": g.tokens_per_s or 0.0,
                "energy_per_token_J": g.energy_per_token_J}

    sens = sensitivity(chip.hw, metrics)
    value = {"ttft_s": gen.prefill.latency_s, "tokens_per_s": gen.tokens_per_s or 0.0,
             "energy_per_token_J": gen.energy_per_token_J}
    out: dict[str, Any] = {}
    for metric in RANGE_METRICS:
        low, base, high = sens.range(metric)
        scale = value[metric] / base if base else 1.0
        out[metric] = [low * scale, value[metric], high * scale]
    out["widest"] = {m: [f.field for f in sorted(sens.fields, key=lambda f: -f.swing(m))[:3] if f.swing(m) > 0]
                     for m in RANGE_METRICS}
    out["fields_varied"] = len(sens.fields)
    return out


def decode_cost(template: WorkloadTemplate, chip: Chip, base: DigitalBaselineSpec | None, batch: int, seq_len: int,
                gen_len: int, progress: Callable[[str], None] | None = None, baseline_chips: int = 1,
                range_batches: tuple[int, ...] = ()) -> DecodeCost:
    """Prefill of `seq_len` tokens and `gen_len` decode steps, at `batch` and at the batch table's sizes;
    range_batches: the batches whose generation gets uncertainty ranges (generation_ranges)."""
    if isinstance(gen_len, bool) or not isinstance(gen_len, int) or gen_len < 1:
        raise UserError(f"gen_len must be a positive integer, got {gen_len!r}")
    limit = template.max_seq_len
    if limit is not None and seq_len + gen_len > limit:
        raise UserError(f"seq_len {seq_len} + gen_len {gen_len} = {seq_len + gen_len} exceeds the {limit} positions "
                        f"this model accepts; shorten the prompt or the generation")
    shared: dict = {}
    model = DecodeModel(template, chip, base, shared)
    by_batch = []
    for b in sorted(set(DECODE_BATCHES) | {batch}):
        g = model.generation(b, seq_len, gen_len)
        if b in range_batches:
            g = replace(g, ranges=generation_ranges(template, chip, shared, g, seq_len, gen_len))
        by_batch.append(g)
    run = next(g for g in by_batch if g.batch == batch)
    top = min(limit or 1 << 17, 1 << 17)
    contexts = sorted({c for c in (2 ** k for k in range(4, 18)) if CURVE_MIN_CONTEXT <= c <= top}
                      | {seq_len + gen_len})
    weight_bytes = model.weight_bytes()
    weights_where = ("DRAM" if base is not None and weight_bytes > base.weight_buffer_MiB * 2 ** 20
                     else "on-chip weight memory")
    kv = model.kv
    assumptions = (
        "causal prefill: the digital unit skips the masked upper triangle of QK^T, softmax and PV "
        "(query i visits keys 0..i: s(s+1)/2 score entries per head, not s^2)",
        "prefill: the LM head and the ops after it run on the last position only",
        f"decode: every linear on 1 token per sequence; QK^T and PV of 1 query against c keys read from the KV "
        f"cache ({kv.bits}-bit K and V, {kv.layers} layers x {kv.kv_heads} KV heads x head dim {kv.head_dim})",
        f"KV cache: each layer's on the chip running its attention ({model.sram_per_chip / 2 ** 20:.1f} MiB of "
        f"activation SRAM per chip, split evenly between the layers a chip holds), then the free SRAM of its "
        f"package's other chips (read over the chip link, prefetched: bandwidth, not latency, and staged in the home "
        f"chip's SRAM), then the package's DRAM (memory.dram_*: channels x bandwidth shared by the package's chips); "
        f"placed for the final context, a layer's first tokens nearest; SRAM holding it beyond the powered tiles' "
        f"leaks",
        f"digital baseline: weights ({weight_bytes / 2 ** 20:.0f} MiB INT8) in {weights_where}, read once per "
        f"decode step (once per batch of tokens)",
        "tokens/s: batch / latency of one step (a sequence's next token needs its previous one); the batch's "
        "sequences are independent: they pipeline through the chip one behind the other, a sequence's attention "
        "waiting for its own K and V only (the buffers a scheduler needs for this are not priced)",
        f"generation totals: {GENERATION_SAMPLES} contexts priced along the generation, linear in between",
    ) + ((f"ranges (batch {', '.join(map(str, sorted(range_batches)))}): the AIMC side only; each cost number of the "
          f"spec with an uncertainty moved alone to x(1 -+ u), the generation repriced at its first and last step "
          f"(its power gating not redone: the leakage scaled by the variant's leakage prices and latency; redone "
          f"for the gating's own fields), "
          f"root-sum-square of the relative deviations around the reported value; the baselines carry none",)
         if range_batches else ()) \
        + (("mixture of experts: uniform routing; a step's batch x top_k routed tokens spread evenly over each "
            "layer's experts, the baseline reads only the weights of experts that get a token",)
           if any(p.experts for p in template.placed.analog_layers()) else ())
    return DecodeCost(batch=batch, seq_len=seq_len, gen_len=gen_len, kv=kv, sram_bytes=model.sram_bytes,
                      run=run, by_batch=tuple(by_batch), curve=tuple(model.curve(batch, contexts)),
                      lm_head=tuple(sorted(w.name for w in template.heads() if w.kind == ANALOG)),
                      baseline_weights=weights_where, baseline_weight_bytes=weight_bytes,
                      assumptions=assumptions, baseline_chips=baseline_chips)


__all__ = ["DecodeCost", "DecodeModel", "KvGeometry", "decode_cost", "kv_geometry"]
