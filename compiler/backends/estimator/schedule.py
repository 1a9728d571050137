"""Latency and throughput from a weight-stationary pipeline schedule.

Every stage (an analog weight block, a digital op) processes a stream of `vectors` (tokens, or rows
of attention scores) at `vector_time_s` each. A stage starts as soon as the first vector of each
streamed input is out and cannot finish before its inputs' last vectors plus one vector time; from a
barrier input it needs every vector first (QK^T needs all keys, AV all values, while the queries and
the softmax rows stream). The vectors of a batch of independent sequences (`groups`) stream sequence after
sequence, and a barrier binds within a sequence: one sequence's attention waits for its own keys only, so the
sequences flow through the weight-stationary pipeline one behind the other instead of in lock-step. Layers and tokens thus pipeline where dependencies allow; the critical path through the dependency graph (networkx) is the
latency. Throughput is set by the busiest resource (a tile, the digital lanes, the attention units):
with inferences streamed back to back, one inference leaves every `period_s` seconds. Stages that share
a resource (segments packed on one tile) contend for it; the dependency recurrence does not see that,
so the latency is bounded below by the period: all of an inference's work on that resource serializes.
"""
from __future__ import annotations

import functools
import math
import operator
from dataclasses import dataclass, field
from typing import NamedTuple

import networkx as nx

# kinds of resource numbered by index: a tile; the link a chip sends on (inside its package, or to another
# package); a package's DRAM
TILE, CHIP_LINK, BOARD_LINK, DRAM_PACKAGE = "tile", "chip link", "board link", "dram package"


class Resource(NamedTuple):
    """A resource of the schedule: its kind and, for tiles, links and DRAM, which one (tile, sending chip or
    package index). A tuple: hashed in C, as a 70B decoder's 265,000 tile keys per evaluation need. Its text
    ("tile 12", "digital units") is what cost.json and the reports show."""
    kind: str
    index: int | None = None

    def __str__(self) -> str:
        return self.kind if self.index is None else f"{self.kind} {self.index}"


DIGITAL_UNITS, ATTENTION_UNITS = Resource("digital units"), Resource("attention units")  # shared by a chip
_TILES: list[Resource] = []


def tile(index: int) -> Resource:
    """Tile `index`'s resource, made once per index (a decoder's steps name tens of thousands of tiles)."""
    if index >= len(_TILES):
        _TILES.extend(Resource(TILE, t) for t in range(len(_TILES), index + 1))
    return _TILES[index]


ANALOG, DIGITAL, LINK = "analog", "digital", "link"


class StageId(NamedTuple):
    """A stage of the schedule: a weight block's (ANALOG, its block), a digital op's (DIGITAL, its node), a chip
    link's (LINK, what it carries where). Its text is "analog:<block>", ..."""
    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


class Busy(dict):
    """A stage's resource -> seconds of work where each resource takes one of a few values: resources[i] is busy
    values[which[i]] seconds (a weight block's tiles: one value per segment shape, chip.py). `serial` names the
    (resources, which) pair; `key` = (serial, values) is equal for equal contents. The sensitivity's variants and
    the decode phases reprice the same blocks, mostly with the same times: the schedule and the gating recognise a
    block's tiles by the key, or by the serial and the few values, instead of reading tens of thousands of entries
    again."""
    __slots__ = ("key", "resources", "which")

    def __init__(self, resources: tuple[Resource, ...], which: tuple[int, ...], values: tuple[float, ...],
                 serial: int):
        super().__init__(zip(resources, [values[i] for i in which]))
        self.key, self.resources, self.which = (serial, values), resources, which


@dataclass
class Stage:
    id: StageId
    name: str
    layer: str
    vectors: int
    vector_time_s: float
    deps: tuple[StageId, ...]
    energy_J: dict[str, float]                                  # component -> joules
    busy_s: dict[Resource, float] = field(default_factory=dict)  # resource -> seconds of work
    ops: float = 0.0                                            # 2 x MACs
    counts: dict[str, float] = field(default_factory=dict)      # action -> how many times it happens
    barrier_deps: tuple[StageId, ...] = ()                      # deps whose every vector it needs first
    delay_s: float = 0.0                                        # before its first vector (a chip link's latency)
    groups: int = 1                                             # independent sequences its vectors stream, in order


@dataclass
class Schedule:
    latency_s: float                # max(critical path, period): one inference cannot beat its busiest resource
    critical_path_s: float          # the dependency bound alone
    critical_path: list[StageId]    # first to last
    period_s: float                 # seconds between inferences in a steady stream
    bottleneck: Resource | None     # the resource that sets the period (None: no stage keeps one busy)
    resource_busy_s: dict[Resource, float]
    start_s: dict[StageId, float] = field(default_factory=dict)    # when its first vector starts
    finish_s: dict[StageId, float] = field(default_factory=dict)   # when its last vector is out


def independent_sequences(stages: list[Stage], batch: int) -> list[Stage]:
    """Marks every stage's vectors as `batch` independent sequences (a batch of prompts or of decode streams)."""
    for stage in stages:
        stage.groups = max(int(batch), 1)
    return stages


@functools.lru_cache(maxsize=64)
def _walk(structure: tuple[tuple[StageId, tuple[StageId, ...]], ...]
          ) -> tuple[tuple[StageId, tuple[StageId, ...]], ...]:
    """(stage id, its predecessors) in topological order, for stages given as (id, deps). The dependency graph
    depends only on this structure, which the sensitivity's and the series' dozens of evaluations share: built
    once per structure instead of once per evaluation (it was most of a sweep point's estimate)."""
    known = {sid for sid, _ in structure}
    graph = nx.DiGraph()
    graph.add_nodes_from(known)
    graph.add_edges_from((d, sid) for sid, deps in structure for d in deps if d in known)
    return tuple((sid, tuple(graph.predecessors(sid))) for sid in nx.topological_sort(graph))


# stages' timing (as _timing_key reads it) -> [the schedule, times asked for]: the sensitivity's variants that move no
# time, and each phase's evaluations under them, ask for the same schedule again; the most asked-for are kept
_SCHEDULES: dict[tuple, list] = {}
_SCHEDULES_KEPT = 8
_BIG = 64  # a busy dict longer than this without a key: that schedule is not kept (its key would be as long)


_TIMING = operator.attrgetter("id", "vectors", "vector_time_s", "delay_s", "groups", "deps", "barrier_deps")


def _timing_key(stages: list[Stage]) -> tuple | None:
    """Everything of `stages` that `schedule` reads, or None where a long busy dict has no Busy key."""
    busy = [s.busy_s for s in stages]
    if any(type(b) is not Busy and len(b) > _BIG for b in busy):
        return None
    return tuple(map(_TIMING, stages)), tuple([b.key if type(b) is Busy else tuple(b.items()) for b in busy])


def schedule(stages: list[Stage]) -> Schedule:
    """The stages' schedule. The same for stages of the same timing: then the very same Schedule object, which no
    caller changes."""
    key = _timing_key(stages)
    hit = _SCHEDULES.get(key) if key is not None else None
    if hit is not None:
        hit[1] += 1
        return hit[0]
    timing = _schedule(stages)
    if key is not None:
        if len(_SCHEDULES) >= _SCHEDULES_KEPT:  # the least asked-for goes (of those, the oldest)
            del _SCHEDULES[min(_SCHEDULES.items(), key=lambda item: item[1][1])[0]]
        _SCHEDULES[key] = [timing, 1]
    return timing


def _schedule(stages: list[Stage]) -> Schedule:
    by_id = {s.id: s for s in stages}
    order = _walk(tuple((s.id, tuple(s.deps)) for s in stages))
    first_out: dict[StageId, float] = {}
    started: dict[StageId, float] = {}
    finish: dict[StageId, float] = {}
    group_done: dict[StageId, float] = {}   # when its first sequence's vectors are all out (= finish if one sequence)
    binding: dict[StageId, StageId | None] = {}  # the predecessor whose timing set this stage's finish
    for sid, preds in order:
        stage = by_id[sid]
        barriers = set(stage.barrier_deps)
        g = stage.groups

        def done(p: StageId) -> float:  # a predecessor's vectors of the first sequence (all, across sequences)
            return group_done[p] if g > 1 and by_id[p].groups == g else finish[p]
        # when its first vector can start: after the first vector of a streamed input, the last of a barrier
        start = {p: done(p) if p in barriers else first_out[p] for p in preds}
        first_pred = max(preds, key=start.__getitem__, default=None)
        ready_first = start[first_pred] if first_pred else 0.0
        last_pred = max(preds, key=finish.__getitem__, default=None)
        ready_last = finish[last_pred] if last_pred else 0.0
        ready_first, ready_last = ready_first + stage.delay_s, ready_last + stage.delay_s
        vt, per_group = stage.vector_time_s, stage.vectors / g
        first_out[sid] = ready_first + vt
        started[sid] = ready_first
        tail, stream = ready_last + vt, ready_first + stage.vectors * vt
        if g > 1:  # the last sequence's vectors follow its own barrier inputs' last vectors
            tail = max([tail] + [finish[p] + stage.delay_s + per_group * vt for p in preds if p in barriers])
            group_done[sid] = max(max((done(p) for p in preds), default=0.0) + stage.delay_s + vt,
                                  ready_first + per_group * vt)
        finish[sid] = max(tail, stream)
        group_done.setdefault(sid, finish[sid])
        binding[sid] = last_pred if tail >= stream else first_pred
    end = max(finish, key=finish.__getitem__, default=None)
    path: list[StageId] = []
    while end is not None:
        path.append(end)
        end = binding[end]
    busy: dict[Resource, float] = {}
    for stage in stages:
        if busy.keys().isdisjoint(stage.busy_s):  # its own resources (the tiles of one block): taken whole
            busy.update(stage.busy_s)
            continue
        for resource, seconds in stage.busy_s.items():
            busy[resource] = busy.get(resource, 0.0) + seconds
    bottleneck = _busiest(busy)
    period = busy.get(bottleneck, 0.0) if bottleneck is not None else 0.0
    critical = max(finish.values(), default=0.0)
    return Schedule(latency_s=max(critical, period), critical_path_s=critical, critical_path=path[::-1],
                    period_s=period, bottleneck=bottleneck, resource_busy_s=busy, start_s=started, finish_s=finish)


def _busiest(busy: dict[Resource, float]) -> Resource | None:
    """The first resource of the most seconds: max(busy, key=busy.__getitem__), without a Python call per resource
    (max over the values keeps the first of equal ones; index finds that one)."""
    if not busy:
        return None
    key = busy.key if type(busy) is Busy else None
    if key in _BUSIEST:
        return _BUSIEST[key]
    seconds = list(busy.values())
    busiest = list(busy)[seconds.index(max(seconds))]
    if key is not None:
        if len(_BUSIEST) >= 4096:
            _BUSIEST.clear()
        _BUSIEST[key] = busiest
    return busiest


_BUSIEST: dict[tuple, Resource] = {}  # Busy key -> its busiest resource


def layer_spans(stages: list[Stage], timing: Schedule) -> dict[str, float]:
    """Layer -> from its first stage's start to its last stage's end (layers overlap where they pipeline)."""
    spans: dict[str, list[float]] = {}
    for s in stages:
        if s.id in timing.finish_s:
            lo_hi = spans.setdefault(s.layer, [math.inf, 0.0])
            lo_hi[0] = min(lo_hi[0], timing.start_s[s.id])
            lo_hi[1] = max(lo_hi[1], timing.finish_s[s.id])
    return {layer: hi - lo for layer, (lo, hi) in spans.items()}


BOUND_KINDS = ("compute", "memory", "links")


def resource_kind(resource: Resource) -> str:
    """What a resource is: `memory` (a DRAM), `links` (a chip or board link), else `compute` (tiles, digital and
    attention units)."""
    if resource.kind == DRAM_PACKAGE:
        return "memory"
    return "links" if resource.kind in (CHIP_LINK, BOARD_LINK) else "compute"


def critical_path_by_kind(stages: list[Stage], timing: Schedule) -> dict[str, float]:
    """The critical path's seconds split by what each stage on it works on: the kind of its busiest resource
    (resource_kind; a chip link's latency counts as links). Each stage on the path counts from its predecessor's
    finish to its own; the parts sum to `timing.critical_path_s`."""
    by_id = {s.id: s for s in stages}
    out = dict.fromkeys(BOUND_KINDS, 0.0)
    before = 0.0
    for sid in timing.critical_path:
        busy = by_id[sid].busy_s
        busiest = _busiest(busy)
        out[resource_kind(busiest) if busiest is not None else "compute"] += timing.finish_s[sid] - before
        before = timing.finish_s[sid]
    return out
