"""Placement for an objective: try the allocation strategies with the estimator's schedule in the loop.

A pass imports no backend, so the search lives here: it runs passes.tile_allocation's strategies, prices each
with the estimator's pipeline schedule (one inference of `seq_len` tokens), and keeps the best one under the
budget. Candidates:
- naive, fused, packed, layered: as the pass defines them (layered: each transformer layer on one chip where it
  fits, so activations cross chip links between layers only);
- slack: packing limited to the pipeline's slack (each tile's busy time within fused's period);
- between slack and packed, when a --max-tiles budget falls between them: slack with the k least busy blocks
  packed freely (their pieces count no busy time, so they fill the room other tiles leave), for a few k from
  1 to all blocks: fewer tiles as k grows, latency paid only where the packed blocks share tiles with busy
  ones (named "slack, k least busy packed");
- replicated: slack plus copies of the blocks that stretch the schedule most, greedily, while tiles remain
  (the budget, else the chips the mapping already uses); tokens alternate copies;
- replicas (throughput only): whole copies of the fastest mapping, each on chips of its own, each serving whole
  inferences (data parallel), while the tile budget (--max-tiles) and the spec's chips allow. This is what raises
  throughput when the period is set by a chip's digital or attention units, which copies of blocks on the same
  chip share.
Objectives: "tiles" (fewest, then latency), "latency" (lowest, then fewest tiles), "throughput" (highest,
then latency), and the default "balanced": the fewest tiles whose latency stays within 2 % of the best
unreplicated latency (replication spends tiles for speed, which only the latency and throughput objectives ask).
The programming energy of copies is not priced (the estimator has no programming cost).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from compiler.config import DEFAULT_SEQ_LEN, OBJECTIVES
from compiler.errors import UserError
from compiler.ir import PlacedGraph
from compiler.backends.estimator.schedule import ANALOG, TILE, Resource
from passes.tile_allocation import STRATEGIES, allocate_tiles, replicate

ALLOCATIONS = ("auto",) + STRATEGIES
BALANCED_SLACK = 0.02          # the default objective: fewest tiles within 2 % of the best latency
GREEDY_TRIES = 3               # blocks tried per replication step (the ones that stretch the schedule most)
BETWEEN_STEPS = 6              # mappings tried between slack and packed when the budget falls between them


@dataclass
class Candidate:
    name: str
    strategy: str
    tiles: int
    latency_s: float | None = None
    period_s: float | None = None
    copies: dict[str, int] = field(default_factory=dict)
    bottleneck: Resource | None = None  # the resource that sets the period (the schedule's)
    replicas: int = 1               # whole copies of the mapping, each on its own chips (tiles counts them all)
    packed_blocks: tuple[str, ...] = ()  # slack only: blocks packed freely (no busy time counted)
    chips: int | None = None        # chips the mapping spans (all replicas')

    @property
    def throughput_per_s(self) -> float | None:
        return self.replicas / self.period_s if self.period_s else None

    def row(self, chosen: bool) -> dict:
        return {"name": self.name, "tiles": self.tiles, "latency_s": self.latency_s, "period_s": self.period_s,
                "throughput_per_s": self.throughput_per_s, "copies": sum(k - 1 for k in self.copies.values()),
                "replicas": self.replicas, "bottleneck": str(self.bottleneck) if self.bottleneck else None,
                "bottleneck_tile": self.bottleneck.index if self.bottleneck and self.bottleneck.kind == TILE else None,
                "chosen": chosen,
                **({"chips": self.chips} if self.chips is not None else {})}


class _Schedules:
    """The estimator's schedule of the placement as it stands; one workload template per block structure."""

    def __init__(self, placed: PlacedGraph, seq_len: int):
        from compiler.backends.estimator.prices import check_prices
        check_prices(placed.hw)
        self.placed, self.seq_len, self.templates = placed, seq_len, {}

    def __call__(self):
        from compiler.backends.estimator.estimate import inference_schedule
        from compiler.backends.estimator.workload import WorkloadTemplate
        key = tuple(self.placed.blocks)
        if key not in self.templates:
            self.templates[key] = WorkloadTemplate(self.placed)
        return inference_schedule(self.placed, self.seq_len, self.templates[key])


def place(placed: PlacedGraph, allocation: str = "auto", objective: str | None = None,
          max_tiles: int | None = None, max_latency_s: float | None = None,
          seq_len: int = DEFAULT_SEQ_LEN) -> dict[str, int]:
    """Allocate `placed`'s tiles (in place) for `objective` under the budget; returns the copies to add once the
    ranges are set (block -> copies; empty without replication: apply with passes.tile_allocation.replicate)."""
    objective = objective or "balanced"
    if allocation not in ALLOCATIONS:
        raise UserError(f"unknown allocation {allocation!r}; expected one of {', '.join(ALLOCATIONS)}")
    if objective not in OBJECTIVES:
        raise UserError(f"unknown objective {objective!r}; expected one of {', '.join(OBJECTIVES)}")
    for name, value in (("max_tiles", max_tiles), ("max_latency_s", max_latency_s)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value) or value <= 0):
            raise UserError(f"{name} must be a positive number, got {str(value)[:40]}")
    if allocation in ("naive", "fused", "packed", "layered") and max_latency_s is None:
        allocate_tiles(placed, allocation)
        _check_budget([Candidate(allocation, allocation, placed.tiles_used, chips=placed.chips_used)], max_tiles,
                      None, placed)
        return {}
    try:
        schedules = _Schedules(placed, seq_len)
        candidates = _candidates(placed, schedules, allocation, objective, max_tiles)
    except UserError:
        if allocation == "slack" or max_latency_s is not None:
            raise  # these need the schedule; without one the spec's or the model's own error says why
        # no schedule (an unpriced spec, a static batch dimension): tiles are all that can be compared
        allocate_tiles(placed, "packed")
        candidates = [Candidate("packed", "packed", placed.tiles_used, chips=placed.chips_used)]
        objective = "tiles"
    fitting = _check_budget(candidates, max_tiles, max_latency_s, placed)
    chosen = _choose(fitting, objective)
    _apply(placed, schedules if chosen.latency_s is not None else None, chosen)
    placed.allocation = chosen.name if allocation == "auto" else allocation
    placed.objective = objective
    placed.strategies = [c.row(c is chosen) for c in candidates] if allocation == "auto" else []
    return chosen.copies


def _candidates(placed: PlacedGraph, schedules: _Schedules, allocation: str, objective: str,
                max_tiles: int | None) -> list[Candidate]:
    out = []

    def measure(name: str, strategy: str, copies: dict[str, int] | None = None) -> Candidate:
        _, timing = schedules()
        c = Candidate(name, strategy, placed.tiles_used, timing.latency_s, timing.period_s, dict(copies or {}),
                      timing.bottleneck, chips=placed.chips_used)
        out.append(c)
        return c

    strategies = ("naive", "fused", "packed", "layered") if allocation == "auto" else ()
    for strategy in strategies:
        try:
            allocate_tiles(placed, strategy)
        except UserError:  # more tiles than the chips hold (naive's, or layered's without cross-layer sharing)
            if strategy == "packed":
                raise
            continue
        measure(strategy, strategy)
    allocate_tiles(placed, "fused")
    stages, timing = schedules()
    busy, period = _piece_busy(placed, stages), timing.period_s
    allocate_tiles(placed, "slack", busy=busy, period=period)
    slack = measure("slack", "slack")
    packed = next((c for c in out if c.name == "packed"), None)
    if allocation == "auto" and max_tiles is not None and packed is not None \
            and packed.tiles <= max_tiles < slack.tiles:
        _between(placed, busy, period, measure)
    if allocation == "auto" and objective in ("latency", "throughput"):
        _replicate_greedy(placed, schedules, slack, objective, max_tiles, measure)
    if allocation == "auto" and objective == "throughput":
        out.extend(_whole_replicas(placed, out, max_tiles))
    return out


def _between(placed: PlacedGraph, busy: dict[str, float], period: float, measure) -> None:
    """Mappings between slack and packed: slack with the k least busy blocks packed freely, for up to
    BETWEEN_STEPS values of k spread over 1 .. all blocks (the budget then picks the one that fits)."""
    order = sorted(busy, key=lambda b: (busy[b], b))
    steps = sorted({max(1, round(len(order) * i / BETWEEN_STEPS)) for i in range(1, BETWEEN_STEPS + 1)})
    seen = set()
    for k in steps:
        relaxed = tuple(order[:k])
        allocate_tiles(placed, "slack", busy={b: 0.0 if b in relaxed else t for b, t in busy.items()}, period=period)
        if placed.tiles_used in seen:
            continue
        seen.add(placed.tiles_used)
        c = measure(f"slack, {k} least busy packed", "slack")
        c.packed_blocks = relaxed
    allocate_tiles(placed, "slack", busy=busy, period=period)  # slack again: replication starts from it


def _whole_replicas(placed: PlacedGraph, tried: list[Candidate], max_tiles: int | None) -> list[Candidate]:
    """Copies of the fastest mapping tried, each on whole chips of its own (a copy sharing a chip would share that
    chip's digital and attention units), as many as the tile budget and the spec's chips allow. Without a tile
    budget none: the objective then keeps to the chips the mapping needs."""
    timed = [c for c in tried if c.period_s]
    if max_tiles is None or not timed:
        return []
    base = min(timed, key=lambda c: (c.period_s, c.tiles))
    per_chip = placed.hw.tile.count
    chips = -(-base.tiles // per_chip)  # a replica's chips (tiles are numbered from 0, chip by chip)
    most = min(max_tiles // base.tiles, placed.hw.tile.max_chips // chips)
    return [Candidate(f"{base.name} x{n}", base.strategy, n * base.tiles, base.latency_s, base.period_s,
                      dict(base.copies), base.bottleneck, replicas=n, packed_blocks=base.packed_blocks,
                      chips=n * chips)
            for n in range(2, most + 1)]


def _piece_busy(placed: PlacedGraph, stages) -> dict[str, float]:
    """Block -> the busy time per inference of its busiest piece (one piece per tile in the fused mapping)."""
    tile_block = {s.tile: s.block for s in placed.segments}
    busy: dict[str, float] = {}
    for stage in stages:
        for resource, seconds in stage.busy_s.items():
            if resource.kind == TILE:
                block = tile_block[resource.index]
                busy[block] = max(busy.get(block, 0.0), seconds)
    return busy


def _score(c: Candidate, objective: str) -> tuple:
    if objective == "throughput":
        return (c.period_s / c.replicas, c.latency_s, c.tiles)
    return (c.latency_s, c.period_s, c.tiles)


def _replicate_greedy(placed: PlacedGraph, schedules: _Schedules, base: Candidate, objective: str,
                      max_tiles: int | None, measure) -> None:
    """From `base` (slack, in place): add one copy at a time of the block whose copy improves the objective
    most, among the few analog stages that stream longest, while tiles remain."""
    hw = placed.hw.tile
    limit = min(max_tiles or hw.count * max(placed.chips_used, 1), hw.count * hw.max_chips)
    copies = {name: 1 for name in placed.blocks}
    pieces = {name: len(placed.block_segments(name)) for name in placed.blocks}
    best = base
    tiles = base.tiles
    while True:
        stages, _ = schedules()
        analog = sorted((s for s in stages if s.id.kind == ANALOG),
                        key=lambda s: -s.vectors * s.vector_time_s)
        tried = []
        for stage in analog:
            if len(tried) == GREEDY_TRIES:
                break
            if tiles + pieces[stage.name] > limit or stage.vectors <= copies[stage.name]:
                continue
            trial = dict(copies, **{stage.name: copies[stage.name] + 1})
            replicate(placed, {b: k for b, k in trial.items() if k > 1})
            _, timing = schedules()
            trial_c = Candidate("replicated", "slack", placed.tiles_used, timing.latency_s, timing.period_s,
                                {b: k for b, k in trial.items() if k > 1}, chips=placed.chips_used)
            tried.append((_score(trial_c, objective), stage.name, trial_c))
        if not tried:
            break
        score, name, trial_c = min(tried, key=lambda t: t[0])
        if score[:2] >= _score(best, objective)[:2]:
            break
        copies[name] += 1
        tiles += pieces[name]
        replicate(placed, trial_c.copies)
        best = trial_c
    replicate(placed, {})
    if best is not base:
        replicate(placed, best.copies)
        measure("replicated", "slack", best.copies)
        replicate(placed, {})


def _check_budget(candidates: list[Candidate], max_tiles: int | None, max_latency_s: float | None,
                  placed: PlacedGraph) -> list[Candidate]:
    fitting = [c for c in candidates if (max_tiles is None or c.tiles <= max_tiles)
               and (max_latency_s is None or (c.latency_s is not None and c.latency_s <= max_latency_s))]
    if fitting:
        return fitting
    budget = " and ".join(b for b in ((f"--max-tiles {max_tiles}" if max_tiles is not None else ""),
                                      (f"--max-latency {max_latency_s:g}" if max_latency_s is not None else "")) if b)
    tried = "; ".join(f"{c.name} {c.tiles} tiles" + (f", {c.latency_s * 1e6:.1f} us" if c.latency_s else "")
                      for c in candidates)
    raise UserError(f"no mapping of {placed.model_info.name} on {placed.hw.name} fits {budget} (tried: {tried}); "
                    f"raise the budget")


def _choose(candidates: list[Candidate], objective: str) -> Candidate:
    if objective == "tiles":
        return min(candidates, key=lambda c: (c.tiles, c.latency_s or 0.0))
    if objective == "balanced":
        plain = [c for c in candidates if not c.copies] or candidates
        best = min(c.latency_s for c in plain)
        return min((c for c in plain if c.latency_s <= best * (1 + BALANCED_SLACK)),
                   key=lambda c: (c.tiles, c.latency_s))
    return min(candidates, key=lambda c: _score(c, objective))


def _apply(placed: PlacedGraph, schedules: _Schedules | None, chosen: Candidate) -> None:
    """Allocate the chosen candidate again (the search left another in place); copies come after the ranges."""
    placed.replicas = chosen.replicas
    if chosen.strategy != "slack":
        allocate_tiles(placed, chosen.strategy)
        return
    allocate_tiles(placed, "fused")
    stages, timing = schedules()
    busy = {b: 0.0 if b in chosen.packed_blocks else t for b, t in _piece_busy(placed, stages).items()}
    allocate_tiles(placed, "slack", busy=busy, period=timing.period_s)
