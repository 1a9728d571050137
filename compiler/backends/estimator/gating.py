"""Leakage over one schedule, with power gating of idle tiles and shared units.

Without `static.power_gating` every tile of the chips used and every chip's shared units leak for the whole
inference (static.py gives the power). With it, a power domain (`static.gating_tiles` consecutive tiles of a chip, or
one chip's digital or attention units) is switched off whenever it idles longer than the break-even time t_be
(`static.gate_break_even_ns`): while off it still leaks the fraction f (`static.gated_leakage_fraction`) of its
power P, and each off/on cycle costs the leakage it saves over the break-even time, (1 - f) x P x t_be: that is what
the break-even time means (Hu et al., "Microarchitectural techniques for power gating of execution units",
ISLPED 2004). A domain with no work in the inference stays off (f x P). The wake-up latency is not on the critical
path: the schedule is static, so a domain is woken ahead of its first input. The time after a domain's last stage
and before its first is one gap: inferences (decode steps) follow each other in a stream.

Idle gaps come from the schedule: before, between and after the spans of the stages that use the domain, and
inside a stage's span the gaps between its vectors, taken as evenly spread (the stage's idle time over its vectors
less one). The shared units are one resource in the schedule: every chip's units are taken as busy whenever any
chip's are (an upper bound on their leakage when a model spans chips).
"""
from __future__ import annotations

import collections
import math
import operator
from dataclasses import dataclass

from compiler.hw_spec import HardwareSpec
from compiler.backends.estimator.area import ChipArea
from compiler.backends.estimator.fields import NS, require
from compiler.backends.estimator.schedule import (ATTENTION_UNITS, DIGITAL_UNITS, TILE, Busy, Resource, Schedule,
                                                  Stage)
from compiler.backends.estimator.static import SRAM, node_warnings, shared_leakage_W, static_power, tile_leakage_W

GATING_FIELDS = ("power_gating", "gating_tiles", "gate_break_even_ns", "gated_leakage_fraction")  # static.*

SHARED_RESOURCE = {"digital_units": DIGITAL_UNITS, "attention_units": ATTENTION_UNITS}  # area component -> resource


@dataclass(frozen=True)
class Leakage:
    """The leakage of one evaluation (one inference, one prefill or one decode step)."""
    energy_by_component_J: dict[str, float]
    all_on_W: dict[str, float]       # every tile of the chips used and every shared unit powered throughout
    latency_s: float
    gating: bool
    wakeups: float = 0.0             # off/on cycles of all domains
    off_fraction: float = 0.0        # share of the domains' time (tile domains weighted by tiles) spent off
    node_note: str | None = None     # the leakage figure is from another node (used unscaled)

    @property
    def energy_J(self) -> float:
        return math.fsum(self.energy_by_component_J.values())

    @property
    def mean_W(self) -> dict[str, float]:
        """The mean leakage power over the evaluation, by component."""
        return {c: j / self.latency_s for c, j in self.energy_by_component_J.items()} if self.latency_s else \
            dict.fromkeys(self.energy_by_component_J, 0.0)

    def to_json(self) -> dict:
        all_on = math.fsum(self.all_on_W.values())
        return {"power_gating": self.gating, "all_on_power_W": all_on, "wakeups": self.wakeups,
                "off_fraction": self.off_fraction, "node_note": self.node_note,
                "gated_vs_all_on": self.energy_J / (all_on * self.latency_s) if all_on and self.latency_s else None}


@dataclass(frozen=True)
class _Gate:
    break_even_s: float
    off_fraction: float              # f: what an off domain still leaks


def leakage(hw: HardwareSpec, area: ChipArea, chips: int, stages: list[Stage], timing: Schedule,
            tiles_working: int = 0, retained_sram_bits: float = 0.0) -> Leakage:
    """The leakage energy of `stages` scheduled as `timing` on `chips` chips. tiles_working: tiles with work, when
    more than the stages name (the extra copies of a block with copies: priced at the mean on-time of the tiles
    the stages name); retained_sram_bits: SRAM that keeps data through the idle gaps (digital blocks' weights, a
    decoder's KV cache), powered throughout."""
    latency = timing.latency_s
    all_on = static_power(hw, area, tiles=chips * area.tiles, chips=chips)
    note = next(iter(node_warnings(hw)), None)
    if not require(hw, "static.power_gating", "whether idle tiles and units are power-gated"):  # all SRAM counted
        return Leakage({c: w * latency for c, w in all_on.items()}, all_on, latency, False, node_note=note)
    gate = _Gate(require(hw, "static.gate_break_even_ns", "power gating's break-even idle time") * NS,
                 require(hw, "static.gated_leakage_fraction", "what a power-gated domain still leaks"))
    per_domain = require(hw, "static.gating_tiles", "tiles per power-gating domain")
    groups, shared_activity = _activity(stages, timing, area.tiles, per_domain)
    per_tile = tile_leakage_W(hw, area)
    # tile domains: effective powered seconds x their tiles (idle domains: off throughout)
    tile_seconds = off_tile_seconds = wakeups = 0.0
    active_tiles = 0
    seen: dict[tuple, tuple[float, float, float]] = {}
    for spans, domains, tiles in groups:
        if spans not in seen:
            seen[spans] = _powered(spans, latency, gate.break_even_s)
        on_s, off_s, wakes = seen[spans]
        tile_seconds += tiles * _effective_s(on_s, off_s, wakes, gate)
        off_tile_seconds += tiles * off_s
        wakeups += domains * wakes
        active_tiles += tiles
    shadow = min(max(tiles_working - active_tiles, 0), chips * area.tiles - active_tiles)
    if shadow and active_tiles:
        tile_seconds, off_tile_seconds, wakeups = ((1 + shadow / active_tiles) * x
                                                   for x in (tile_seconds, off_tile_seconds, wakeups))
    idle_tiles = chips * area.tiles - active_tiles - shadow
    tile_seconds += idle_tiles * gate.off_fraction * latency
    off_tile_seconds += idle_tiles * latency
    energy = {c: w * tile_seconds for c, w in per_tile.items()}
    # retained SRAM bits sit in tiles counted above at their own on/off time: the rest of the time they stay on
    sram_W_per_bit = require(hw, "static.sram_pW_per_bit", "SRAM leakage per bit") * 1e-12
    energy[SRAM] = energy.get(SRAM, 0.0) + (1.0 - gate.off_fraction) * retained_sram_bits * sram_W_per_bit * latency
    off_seconds, weights = off_tile_seconds, chips * area.tiles * latency
    for component, w in shared_leakage_W(hw, area).items():
        spans = shared_activity.get(SHARED_RESOURCE.get(component, component), [])
        on_s, off_s, wakes = _powered(spans, latency, gate.break_even_s) if spans else (0.0, latency, 0)
        energy[component] = energy.get(component, 0.0) + chips * w * _effective_s(on_s, off_s, wakes, gate)
        wakeups += chips * wakes
        off_seconds += off_s
        weights += latency
    return Leakage(energy, all_on, latency, True, wakeups, off_seconds / weights if weights else 0.0, note)


def rescaled(reference: Leakage, ref_hw: HardwareSpec, ref_area: ChipArea, hw: HardwareSpec, area: ChipArea,
             latency_s: float) -> float | None:
    """A spec variant's leakage energy (J) from a reference evaluation's, without gating anew (the gating pass is
    about half of a Llama-3.1-8B prefill evaluation's time: 0.06 of 0.12 s, profiled): each component's energy
    x the variant's leakage power over the reference's (per tile, per shared unit; SRAM per bit) x its latency over
    the reference's. The reference's gating (which domains are off when) is kept: exact when the variant's stages
    and schedule are the reference's (same_activity); an approximation when only its latency moved. None where the
    variant changes the gating itself (static.power_gating, gating_tiles, gate_break_even_ns,
    gated_leakage_fraction) or the SRAM per tile: gate it anew."""
    if any(getattr(hw.static, f, None) != getattr(ref_hw.static, f, None) for f in GATING_FIELDS) \
            or hw.area.sram_KiB_per_tile != ref_hw.area.sram_KiB_per_tile:  # SRAM (tiles', retained): one ratio
        return None
    ratio_t = latency_s / reference.latency_s if reference.latency_s else 1.0
    ref_W = {**tile_leakage_W(ref_hw, ref_area), **shared_leakage_W(ref_hw, ref_area)}
    new_W = {**tile_leakage_W(hw, area), **shared_leakage_W(hw, area)}
    return math.fsum(j * (new_W[c] / ref_W[c] if ref_W.get(c) else 1.0) * ratio_t
                     for c, j in reference.energy_by_component_J.items())


def same_activity(stages: list[Stage], timing: Schedule, ref_stages: list[Stage], ref_timing: Schedule) -> bool:
    """Whether two evaluations keep every tile and unit busy at the same times (the input of gating): then a
    variant's gating is the reference's and `rescaled` is exact."""
    if timing.latency_s != ref_timing.latency_s or len(stages) != len(ref_stages):
        return False
    return all(a.id == b.id and a.vectors == b.vectors and timing.start_s.get(a.id) == ref_timing.start_s.get(b.id)
               and timing.finish_s.get(a.id) == ref_timing.finish_s.get(b.id) and _same_busy(a.busy_s, b.busy_s)
               for a, b in zip(stages, ref_stages))


def _same_busy(a: dict, b: dict) -> bool:
    """a == b, without reading every entry of two Busy dicts (equal keys: equal contents)."""
    if a is b:
        return True
    if type(a) is Busy and type(b) is Busy and a.key == b.key:
        return True
    return a == b


def _effective_s(on_s: float, off_s: float, wakes: float, gate: _Gate) -> float:
    """Seconds at full leakage equivalent to a domain's on time, off time and off/on cycles."""
    return on_s + gate.off_fraction * off_s + wakes * (1.0 - gate.off_fraction) * gate.break_even_s


Span = tuple[float, float, float, int]  # start, finish, busy seconds, vectors


Group = tuple[tuple[Span, ...], int, int]  # the spans some tile domains share, how many domains, their tiles


def _activity(stages: list[Stage], timing: Schedule, tiles_per_chip: int, per_domain: int
              ) -> tuple[list[Group], dict[Resource, list[Span]]]:
    """The tile domains in groups that share their spans, and per shared resource its spans. A stage's busy time on
    a domain is its busiest tile's there (the tiles of a block work in parallel). A domain only one stage uses has
    that stage's span: such domains are grouped by their busy time (a decoder's 28,628 tiles are a few hundred
    groups); a domain several stages use has the list of their spans."""
    shared: dict[Resource, list[Span]] = {}
    used: list[tuple[float, float, int, _StageDomains]] = []
    for stage in stages:
        start, finish = timing.start_s.get(stage.id), timing.finish_s.get(stage.id)
        if start is None or finish is None:
            continue
        for resource in (DIGITAL_UNITS, ATTENTION_UNITS):
            if resource in stage.busy_s:
                shared.setdefault(resource, []).append((start, finish, stage.busy_s[resource], stage.vectors))
        domains = _stage_domains(stage.busy_s, tiles_per_chip, per_domain)
        if domains.keys:
            used.append((start, finish, stage.vectors, domains))
    several = _several([domains.keys for *_, domains in used])
    groups: list[Group] = []
    spans_of: dict[tuple[int, int], list[Span]] = {}
    for start, finish, vectors, domains in used:
        overlap = domains.keys & several if several else frozenset()
        by_busy = domains.by_busy if not overlap else _by_busy(
            {d: busy for d, busy in domains.busiest.items() if d not in overlap}, tiles_per_chip, per_domain)
        groups += [(((start, finish, busy, vectors),), n, tiles) for busy, (n, tiles) in by_busy.items()]
        for d in overlap:
            spans_of.setdefault(d, []).append((start, finish, domains.busiest[d], vectors))
    groups += [(tuple(spans), 1, _tiles_in(d, tiles_per_chip, per_domain)) for d, spans in spans_of.items()]
    return groups, shared


_SEVERAL: list = [(), frozenset()]  # the last stages' domain sets (the very objects) and the domains they share


def _several(keys: list[frozenset]) -> frozenset:
    """The domains more than one of these sets holds. The stages of an evaluation bring the same sets (their
    blocks' structures) as the evaluation before mostly: then the last answer."""
    if len(keys) == len(_SEVERAL[0]) and all(map(operator.is_, keys, _SEVERAL[0])):
        return _SEVERAL[1]
    touched: collections.Counter = collections.Counter()
    for k in keys:
        touched.update(k)
    several = frozenset(d for d, uses in touched.items() if uses > 1)
    _SEVERAL[:] = [tuple(keys), several]
    return several


class _StageDomains:
    """The tile domains one stage keeps busy: their keys (chip, domain), busy time -> (domains, tiles) with it, and
    per domain its longest busy time among its tiles (`busiest`, worked out when first read: only where domains
    are shared between stages)."""
    __slots__ = ("keys", "by_busy", "_busiest", "_make")

    def __init__(self, keys: frozenset, by_busy: dict[float, tuple[int, int]],
                 busiest: dict[tuple[int, int], float] | None = None, make=None):
        self.keys, self.by_busy, self._busiest, self._make = keys, by_busy, busiest, make

    @property
    def busiest(self) -> dict[tuple[int, int], float]:
        if self._busiest is None:
            self._busiest = self._make()
        return self._busiest


@dataclass(frozen=True)
class _Structure:
    """Where a Busy's resources fall in power domains, whatever their seconds: the domains (in the order of their
    first tile), each one's value indices (Busy.which of its tiles), and the distinct index tuples with how many
    domains and tiles have each (in the order of their first domain)."""
    keys: frozenset
    domains: dict[tuple[int, int], tuple[int, ...]]
    groups: tuple[tuple[tuple[int, ...], int, int], ...]


_NO_DOMAINS = _StageDomains(frozenset(), {}, {})
# (id(busy_s), tiles per chip, tiles per domain) -> (busy_s, size, its domains)
_DOMAINS: dict[tuple, tuple[dict, int, _StageDomains]] = {}
_STRUCTURES: dict[tuple, _Structure] = {}  # (Busy serial, tiles per chip, tiles per domain) -> its structure


def _stage_domains(busy_s: dict[Resource, float], tiles_per_chip: int, per_domain: int) -> _StageDomains:
    """The tile domains one stage keeps busy. A Busy (a weight block's tiles) from its structure and its few values;
    another dict worked out once per dict (a decoder's steps reuse their weight blocks' stages)."""
    if type(busy_s) is Busy:
        return _busy_domains(busy_s, tiles_per_chip, per_domain)
    if len(busy_s) <= 2 and all(r.kind != TILE for r in busy_s):
        return _NO_DOMAINS  # a digital op's, a link's: no tile
    key = (id(busy_s), tiles_per_chip, per_domain)
    hit = _DOMAINS.get(key)
    if hit is not None and hit[0] is busy_s and hit[1] == len(busy_s):
        return hit[2]
    busiest: dict[tuple[int, int], float] = {}
    for (kind, tile), seconds in busy_s.items():
        if kind != TILE:
            continue
        domain = _domain(tile, tiles_per_chip, per_domain)
        if seconds > busiest.get(domain, -1.0):
            busiest[domain] = seconds
    result = _StageDomains(frozenset(busiest), _by_busy(busiest, tiles_per_chip, per_domain), busiest)
    if len(busy_s) > 64:  # only the big ones are worth keeping (a weight block's tiles)
        if len(_DOMAINS) > 4096:
            _DOMAINS.clear()
        _DOMAINS[key] = (busy_s, len(busy_s), result)
    return result


def _busy_domains(busy: Busy, tiles_per_chip: int, per_domain: int) -> _StageDomains:
    """_stage_domains of a Busy, as the loop over its resources would have it (a domain's busy time the max of its
    tiles'; by_busy in the order of each time's first domain), from its structure: O(distinct index tuples)."""
    serial, values = busy.key
    structure = _STRUCTURES.get((serial, tiles_per_chip, per_domain))
    if structure is None:
        if len(_STRUCTURES) >= 8192:  # a layout's structures live as long as chip.py keeps the layout, at most
            _STRUCTURES.clear()
        structure = _STRUCTURES[(serial, tiles_per_chip, per_domain)] = _structure(busy, tiles_per_chip, per_domain)
    by_busy: dict[float, tuple[int, int]] = {}
    for which, n, tiles in structure.groups:
        seconds = max([values[i] for i in which])
        old = by_busy.get(seconds)
        by_busy[seconds] = (n, tiles) if old is None else (old[0] + n, old[1] + tiles)
    return _StageDomains(structure.keys, by_busy, make=lambda: {
        d: max([values[i] for i in which]) for d, which in structure.domains.items()})


def _domain(tile: int, tiles_per_chip: int, per_domain: int) -> tuple[int, int]:
    """(chip, power domain) of a tile."""
    return tile // tiles_per_chip, (tile % tiles_per_chip) // per_domain


def _structure(busy: Busy, tiles_per_chip: int, per_domain: int) -> _Structure:
    indices: dict[tuple[int, int], set[int]] = {}
    for (kind, tile), i in zip(busy.resources, busy.which):
        if kind == TILE:
            indices.setdefault(_domain(tile, tiles_per_chip, per_domain), set()).add(i)
    shared: dict[tuple[int, ...], tuple[int, ...]] = {}  # one tuple object per distinct index tuple
    domains = {d: shared.setdefault(t, t) for d, t in ((d, tuple(sorted(i))) for d, i in indices.items())}
    groups: dict[tuple[int, ...], list[int]] = {}
    for d, which in domains.items():
        group = groups.setdefault(which, [0, 0])
        group[0] += 1
        group[1] += _tiles_in(d, tiles_per_chip, per_domain)
    return _Structure(frozenset(domains), domains, tuple((w, n, t) for w, (n, t) in groups.items()))


def _by_busy(busiest: dict[tuple[int, int], float], tiles_per_chip: int, per_domain: int
             ) -> dict[float, tuple[int, int]]:
    counts: dict[float, tuple[int, int]] = {}
    for d, busy in busiest.items():
        n, tiles = counts.get(busy, (0, 0))
        counts[busy] = (n + 1, tiles + _tiles_in(d, tiles_per_chip, per_domain))
    return counts


def _tiles_in(domain: tuple[int, int], tiles_per_chip: int, per_domain: int) -> int:
    return min(per_domain, tiles_per_chip - domain[1] * per_domain)


def _powered(spans: list[Span], latency: float, break_even: float) -> tuple[float, float, float]:
    """(seconds on, seconds off, off/on cycles) of one domain over [0, latency]: its stages' spans merged; a gap
    longer than the break-even time is spent off."""
    merged: list[list[float]] = []
    for start, finish, _, _ in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], finish)
        else:
            merged.append([start, finish])
    edges = [0.0] + [x for lo, hi in merged for x in (lo, hi)] + [max(latency, merged[-1][1] if merged else 0.0)]
    outer = [edges[i + 1] - edges[i] for i in range(0, len(edges), 2)]  # before, between and after the spans
    outer = outer[1:-1] + [outer[0] + outer[-1]] if len(outer) > 1 else outer  # after + before: one gap, the
    # inferences (decode steps) of a stream following each other
    inside = math.fsum(hi - lo for lo, hi in merged)
    busy = min(math.fsum(s[2] for s in spans), inside)
    idle_inside = inside - busy
    gaps_inside = max(sum(max(s[3] - 1, 0) for s in spans), 1 if idle_inside > 0 else 0)
    on = busy
    off = wakes = 0.0
    if gaps_inside and idle_inside / gaps_inside > break_even:
        off, wakes = idle_inside, float(gaps_inside)
    else:
        on += idle_inside
    for gap in outer:
        if gap > break_even:
            off, wakes = off + gap, wakes + 1
        else:
            on += gap
    return on, off, wakes
