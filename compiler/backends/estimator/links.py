"""Chip-to-chip links: the activations that cross between chips, priced in energy and time.

A tile's chip is its index // tiles per chip (the allocator fills chips in order, so consecutive layers share a
chip where they fit). A weight block's home chip holds most of its cells: its outputs are gathered there (partial
outputs of segments on other chips cross to it, each chip's row pieces added up locally first). A digital op runs on the home chip of its latest input (the
freshest data stays put; an older input, e.g. the residual stream, crosses to it); ops that read only the token
ids (embedding, positions, masks) have no home: every chip can compute them. A producer's output crosses once to
every other chip that consumes it (a block split over chips receives its input on each of its chips). Links come
in two tiers: between chips of one package (`chip_link`) and between packages on the board (`package.board_link_*`,
`package.chips_per_package` chips to a package, filled in chip order). Each
crossing is a link stage in the schedule: the link's latency, then the bytes at the link's bandwidth, streamed
vector by vector like any stage; the sending chip's link is a shared resource. Energy: bytes x 8 x pJ/bit.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from compiler.hw_spec import HardwareSpec
from compiler.backends.estimator.fields import NS, PJ, require
from compiler.backends.estimator.schedule import BOARD_LINK, CHIP_LINK, LINK, Resource, Stage, StageId
from compiler.backends.estimator.workload import AnalogWork, Workload

LINK_COMPONENT = "chip_link"


@dataclass(frozen=True)
class LinkTraffic:
    """What crossed between chips in one evaluation."""
    bytes: float
    energy_J: float
    busy_s: float                    # link time of every crossing, summed over the sending chips' links
    crossings: int                   # transfers: (producer, destination chip), partial outputs included
    chip_pairs: dict[str, float]     # "a->b" -> bytes

    def to_json(self) -> dict:
        return {"bytes": self.bytes, "energy_J": self.energy_J, "busy_s": self.busy_s, "crossings": self.crossings,
                "chip_pairs": dict(self.chip_pairs)}


NO_TRAFFIC = LinkTraffic(0.0, 0.0, 0.0, 0, {})


@dataclass(frozen=True)
class Move:
    producer: StageId
    src: int
    dst: int
    bytes: float
    vectors: int
    partial: bool                    # a block's partial outputs going home (else: a finished output)

    @property
    def id(self) -> StageId:
        return StageId(LINK, f"{self.producer}>{self.dst}" + ("/partial" if self.partial else ""))


def block_chips(work: AnalogWork, tiles_per_chip: int) -> tuple[int, frozenset[int]]:
    """(home chip, every chip holding a segment) of one weight block."""
    cells: dict[int, int] = {}
    for seg in work.segments:
        chip = seg.tile // tiles_per_chip
        cells[chip] = cells.get(chip, 0) + (seg.rows[1] - seg.rows[0]) * (seg.cols[1] - seg.cols[0])
    if not cells:
        return 0, frozenset({0})
    return min(cells, key=lambda c: (-cells[c], c)), frozenset(cells)


def _block_layout(work: AnalogWork, tiles_per_chip: int) -> tuple[int, frozenset[int], dict, int]:
    """(home chip, chips, output columns per (chip away from home, copy), copies). A chip adds up the partial
    sums of its own row pieces first: it sends each block column it holds once."""
    home, chips = block_chips(work, tiles_per_chip)
    spans: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for seg in work.segments:
        chip = seg.tile // tiles_per_chip
        if chip != home:
            spans.setdefault((chip, seg.copy), []).append(tuple(seg.block_cols))
    away = {key: _covered(intervals) for key, intervals in spans.items()}
    return home, chips, away, 1 + max((seg.copy for seg in work.segments), default=0)


def _covered(intervals: list[tuple[int, int]]) -> int:
    """Length of the union of half-open intervals."""
    total, end = 0, None
    for lo, hi in sorted(intervals):
        if end is None or lo > end:
            total, end = total + hi - lo, hi
        elif hi > end:
            total, end = total + hi - end, hi
    return total


def crossings(workload: Workload, tiles_per_chip: int, act_bytes: int,
              cache: dict | None = None) -> tuple[list[Move], dict[StageId, frozenset]]:
    """Every transfer in graph order, and each work's destination chips (where its inputs must be).
    cache: a dict kept between calls on workloads of one placement (the blocks' layouts do not change; a
    workload's crossings neither: the sensitivity reprices one workload under ~100 spec variants)."""
    cache = {} if cache is None else cache
    key = ("crossings", id(workload), tiles_per_chip, act_bytes)
    hit = cache.get(key)
    if hit is not None and hit[0] is workload:
        return hit[1]
    result = _crossings(workload, tiles_per_chip, act_bytes, cache)
    cache[key] = (workload, result)  # the workload kept: its id is not reused while the entry lives
    return result


def _crossings(workload: Workload, tiles_per_chip: int, act_bytes: int, cache: dict
               ) -> tuple[list[Move], dict[StageId, frozenset]]:
    works = sorted(workload.analog + workload.digital, key=lambda w: w.order)
    order = {w.id: w.order for w in works}
    home: dict[StageId, int | None] = {}
    where: dict[StageId, frozenset[int]] = {}
    out_bytes: dict[StageId, float] = {}
    vectors: dict[StageId, int] = {}
    moves: dict[tuple[str, int, bool], Move] = {}
    for w in works:
        vectors[w.id] = w.vectors
        if isinstance(w, AnalogWork):
            layout = cache.get((w.name, tiles_per_chip))
            if layout is None:
                layout = cache[(w.name, tiles_per_chip)] = _block_layout(w, tiles_per_chip)
            h, chips, away, k = layout
            home[w.id], where[w.id] = h, chips
            out_bytes[w.id] = w.vectors * w.out_features * act_bytes
            for (chip, copy), cols in away.items():  # partial outputs of segments away from home go home
                share = w.vectors // k + (copy < w.vectors % k)
                old = moves.get((w.id, chip, True))
                moves[(w.id, chip, True)] = Move(w.id, chip, h, (old.bytes if old else 0.0) + share * cols * act_bytes,
                                                 w.vectors, True)
        else:
            homed = [d for d in w.deps if home.get(d) is not None]
            home[w.id] = home[max(homed, key=order.__getitem__)] if homed else None
            where[w.id] = frozenset() if home[w.id] is None else frozenset({home[w.id]})
            out_bytes[w.id] = w.elements * act_bytes
        for d in w.deps:
            src = home.get(d)
            if src is None:
                continue
            for chip in where[w.id] - {src}:
                moves.setdefault((d, chip, False), Move(d, src, chip, out_bytes[d], vectors[d], False))
    return list(moves.values()), where


@dataclass(frozen=True)
class LinkTier:
    name: str                        # CHIP_LINK (inside a package) or BOARD_LINK (between packages)
    GBps: float
    pJ_per_bit: float
    latency_s: float


@dataclass(frozen=True)
class LinkTiers:
    package: LinkTier
    board: LinkTier | None
    chips_per_package: int | None

    def of(self, src: int, dst: int) -> LinkTier:
        cpp = self.chips_per_package
        return self.package if cpp is None or src // cpp == dst // cpp else self.board


def link_tiers(hw: HardwareSpec, moves: list[Move] = ()) -> LinkTiers:
    """The spec's link tiers: `chip_link` between chips of one package; `package.board_link_*` between packages
    (`package.chips_per_package`; absent: every chip in one package). Board fields are required only when a
    crossing leaves a package."""
    why = "the model spans chips"
    package = LinkTier(CHIP_LINK, require(hw, "chip_link.GBps", f"bandwidth of the chip-to-chip link ({why})"),
                       require(hw, "chip_link.pJ_per_bit", f"energy of the chip-to-chip link ({why})"),
                       require(hw, "chip_link.latency_ns", f"latency of the chip-to-chip link ({why})") * NS)
    cpp = getattr(hw.package, "chips_per_package", None) if hw.package is not None else None
    board = None
    if cpp is not None and any(m.src // cpp != m.dst // cpp for m in moves):
        why = "the model spans packages"
        board = LinkTier(BOARD_LINK,
                         require(hw, "package.board_link_GBps", f"bandwidth of the board-level link ({why})"),
                         require(hw, "package.board_link_pJ_per_bit", f"energy of the board-level link ({why})"),
                         require(hw, "package.board_link_latency_ns", f"latency of the board-level link ({why})")
                         * NS)
    return LinkTiers(package, board, cpp)


def add_links(stages: list[Stage], workload: Workload, hw: HardwareSpec, act_bytes: int,
              tiles_per_chip: int | None = None, cache: dict | None = None) -> tuple[list[Stage], LinkTraffic]:
    """The stages with a link stage for every crossing (its consumers wait for it), and the traffic."""
    tiles_per_chip = tiles_per_chip or hw.tile.count
    cache = {} if cache is None else cache
    moves, where = crossings(workload, tiles_per_chip, act_bytes, cache)
    if not moves:
        return stages, NO_TRAFFIC
    wiring = _wiring(workload, moves, where, tiles_per_chip, act_bytes, cache)
    tiers = link_tiers(hw, moves)
    by_id = {s.id: s for s in stages}
    links, pairs = [], {}
    for m, deps, sid, pair in zip(moves, wiring.link_deps, wiring.link_ids, wiring.pairs):
        tier = tiers.of(m.src, m.dst)
        seconds, joules = m.bytes / (tier.GBps * 1e9), m.bytes * 8 * tier.pJ_per_bit * PJ
        parent = by_id[m.producer]
        links.append(Stage(id=sid, name=f"chip {pair}: {parent.name}", layer=parent.layer,
                           vectors=m.vectors, vector_time_s=seconds / max(m.vectors, 1), deps=deps,
                           energy_J={LINK_COMPONENT: joules}, busy_s={wiring.sender(tier.name, m.src): seconds},
                           counts={wiring.count_name(tier.name): m.bytes}, delay_s=tier.latency_s))
        pairs[pair] = pairs.get(pair, 0.0) + m.bytes
    rewired = []
    for s in stages:
        known = wiring.rewired.get(s.id)
        if known is None or known[0] != s.deps or known[1] != s.barrier_deps:
            known = wiring.rewired[s.id] = (s.deps, s.barrier_deps, wiring.rewire(s.id, s.deps, s.barrier_deps))
        rewired.append(s if known[2] is None else _with_deps(s, *known[2]))
    traffic = LinkTraffic(sum(m.bytes for m in moves), sum(next(iter(s.energy_J.values())) for s in links),
                          sum(next(iter(s.busy_s.values())) for s in links), len(moves), pairs)
    return rewired + links, traffic


@dataclass
class _Wiring:
    """How a workload's crossings rewire its stages, whatever the prices: the link stages' deps (one per move, in
    order), and per stage id its (deps, barrier deps) and what they become (None: unchanged), filled as stages are
    seen (the sensitivity prices one workload ~100 times, each time with stages of the same ids and deps)."""
    partials: dict[StageId, list[StageId]]
    outputs: dict[tuple[StageId, int], StageId]
    where: dict[StageId, frozenset]
    link_deps: list[tuple[StageId, ...]]
    link_ids: list[StageId]          # each move's stage id
    pairs: list[str]                 # each move's "src->dst"
    rewired: dict[StageId, tuple] = field(default_factory=dict)
    _senders: dict[tuple[str, int], Resource] = field(default_factory=dict)
    _count_names: dict[str, str] = field(default_factory=dict)

    def sender(self, tier: str, chip: int) -> Resource:
        """The link `chip` sends on in `tier` (one Resource per pair, not one per move and evaluation)."""
        link = self._senders.get((tier, chip))
        if link is None:
            link = self._senders[(tier, chip)] = Resource(tier, chip)
        return link

    def count_name(self, tier: str) -> str:
        name = self._count_names.get(tier)
        if name is None:
            name = self._count_names[tier] = f"{tier.replace(' ', '_')}_bytes"
        return name

    def rewire(self, sid: StageId, deps: tuple[StageId, ...], barrier_deps: tuple[StageId, ...]
               ) -> tuple[tuple[StageId, ...], tuple[StageId, ...]] | None:
        """A stage's deps and barrier deps with the links its inputs cross on (None: no input crosses)."""
        new, barriers = list(deps), set(barrier_deps)
        for d in deps:
            extra = list(self.partials.get(d, ())) + [self.outputs[(d, c)] for c in sorted(self.where.get(sid, ()))
                                                       if (d, c) in self.outputs]
            new += extra
            if d in barriers:
                barriers.update(extra)
        return (tuple(new), tuple(sorted(barriers))) if len(new) > len(deps) else None


def _wiring(workload: Workload, moves: list[Move], where: dict[StageId, frozenset], tiles_per_chip: int,
            act_bytes: int, cache: dict) -> _Wiring:
    key = ("wiring", id(workload), tiles_per_chip, act_bytes)
    hit = cache.get(key)
    if hit is not None and hit[0] is workload:
        return hit[1]
    partials: dict[StageId, list[StageId]] = {}
    outputs: dict[tuple[StageId, int], StageId] = {}
    ids = [m.id for m in moves]
    for m, sid in zip(moves, ids):
        if m.partial:
            partials.setdefault(m.producer, []).append(sid)
        else:
            outputs[(m.producer, m.dst)] = sid
    # a finished output leaves home once the block's remote parts have arrived there
    link_deps = [(m.producer,) + (() if m.partial else tuple(partials.get(m.producer, ()))) for m in moves]
    wiring = _Wiring(partials, outputs, where, link_deps, ids, [f"{m.src}->{m.dst}" for m in moves])
    cache[key] = (workload, wiring)  # the workload kept: its id is not reused while the entry lives
    return wiring


def _with_deps(stage: Stage, deps: tuple[StageId, ...], barrier_deps: tuple[StageId, ...]) -> Stage:
    """dataclasses.replace(stage, deps=..., barrier_deps=...) without its per-call walk over the fields (Stage
    has no __post_init__): a shallow copy, the same dicts."""
    new = object.__new__(Stage)
    new.__dict__.update(stage.__dict__)
    new.deps, new.barrier_deps = deps, barrier_deps
    return new
