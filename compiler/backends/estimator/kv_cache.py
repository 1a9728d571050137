"""Where a decoder's KV cache lives, and what reading and writing it costs (issue 24, item 6).

Each attention layer's K and V stay with the chip that runs the layer's attention (its home chip, links.py), in
that chip's activation SRAM (area.sram_KiB_per_tile x tile.count). A chip whose layers need more than its SRAM
splits what it has evenly between them; what does not fit goes, in this order, to
1. the free SRAM of the other chips of the same package (package.chips_per_package): read over the chip link,
   prefetched (the earlier tokens' K and V do not depend on the step, so the link's latency is hidden; its
   bandwidth is not), staged in the home chip's SRAM (one write and one read per byte);
2. the package's DRAM: memory.dram_channels_per_package x memory.dram_GBps_per_channel, shared by the package's
   chips, at memory.dram_pJ_per_byte; its capacity memory.dram_GB_per_package is checked, not priced.
Tokens are appended in order: a layer's first bytes fill its own SRAM, then the package's, then DRAM, so at a
shorter context more of the cache is local. The placement is made once, for the generation's final context.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from compiler.hw_spec import HardwareSpec
from compiler.backends.estimator.fields import PJ, require
from compiler.backends.estimator.links import LINK_COMPONENT
from compiler.backends.estimator.prices import DigitalPrices
from compiler.backends.estimator.schedule import CHIP_LINK, DRAM_PACKAGE, Resource, Stage, StageId

LOCAL, PACKAGE, DRAM = "sram", "package sram", "dram"
TIERS = (LOCAL, PACKAGE, DRAM)
KV_COMPONENT = "kv_cache"


@dataclass(frozen=True)
class LayerCache:
    """One attention layer's cache: capacities in fill order (own SRAM, other chips' SRAM, DRAM)."""
    chip: int
    package: int
    local_bytes: float
    remote: tuple[tuple[int, float], ...]   # (chip of the same package, bytes there)

    def split(self, nbytes: float) -> tuple[float, tuple[tuple[int, float], ...], float]:
        """(own SRAM, [(chip, bytes)] in the package's SRAM, DRAM) of the layer's first `nbytes` bytes."""
        local = min(nbytes, self.local_bytes)
        left = nbytes - local
        remote = []
        for chip, cap in self.remote:
            take = min(left, cap)
            if take > 0:
                remote.append((chip, take))
            left -= take
        return local, tuple(remote), max(left, 0.0)


@dataclass(frozen=True)
class KvPlacement:
    layers: tuple[LayerCache, ...]
    layer_bytes: float               # one layer's cache at the final context (all sequences of the batch)
    sram_per_chip_bytes: float
    chips_per_package: int | None
    bytes_by_tier: dict[str, float] = field(default_factory=dict)   # at the final context
    dram_by_package: dict[int, float] = field(default_factory=dict)
    dram_capacity_bytes: float | None = None                        # per package

    @property
    def location(self) -> str:
        """sram (every layer on its own chip), package sram (some on another chip of the package, none in DRAM),
        sram+dram (a partial spill) or dram (all of it)."""
        t = self.bytes_by_tier
        if t.get(DRAM, 0.0) <= 0:
            return PACKAGE if t.get(PACKAGE, 0.0) > 0 else LOCAL
        return DRAM if t.get(LOCAL, 0.0) + t.get(PACKAGE, 0.0) <= 0 else "sram+dram"

    @property
    def dram_fits(self) -> bool:
        cap = self.dram_capacity_bytes
        return cap is None or max(self.dram_by_package.values(), default=0.0) <= cap

    def to_json(self) -> dict:
        return {"bytes_by_tier": dict(self.bytes_by_tier), "layers": len(self.layers),
                "sram_per_chip_bytes": self.sram_per_chip_bytes,
                "dram_bytes_by_package": {str(p): b for p, b in sorted(self.dram_by_package.items())},
                "dram_capacity_bytes_per_package": self.dram_capacity_bytes, "dram_fits": self.dram_fits}


def package_of(chip: int, chips_per_package: int | None) -> int:
    return 0 if chips_per_package is None else chip // chips_per_package


def place(layer_chips: list[int], layer_bytes: float, sram_per_chip: float, chips_per_package: int | None,
          dram_capacity: float | None = None) -> KvPlacement:
    """Every layer's cache of `layer_bytes` near its home chip (module docstring)."""
    on_chip: dict[int, int] = {}
    for c in layer_chips:
        on_chip[c] = on_chip.get(c, 0) + 1
    local = {c: min(layer_bytes, sram_per_chip / n) for c, n in on_chip.items()}  # split evenly on a full chip
    free = {c: sram_per_chip - local[c] * n for c, n in on_chip.items()}
    overflow = [layer_bytes - local[c] for c in layer_chips]
    # the package's other chips: chips holding no attention layer offer all their SRAM
    packages: dict[int, list[int]] = {}
    all_chips = set(layer_chips)
    if chips_per_package is not None:
        for c in set(layer_chips):
            p = package_of(c, chips_per_package)
            all_chips |= set(range(p * chips_per_package, (p + 1) * chips_per_package))
    for c in sorted(all_chips):
        free.setdefault(c, sram_per_chip)
        packages.setdefault(package_of(c, chips_per_package), []).append(c)
    layers = []
    need_by_package: dict[int, float] = {}
    for c, over in zip(layer_chips, overflow):
        need_by_package[package_of(c, chips_per_package)] = need_by_package.get(
            package_of(c, chips_per_package), 0.0) + over
    for c, over in zip(layer_chips, overflow):
        p = package_of(c, chips_per_package)
        donors = [(d, free[d]) for d in packages[p] if d != c and free[d] > 0]
        pool = sum(f for _, f in donors)
        need = need_by_package[p]
        granted = over * min(1.0, pool / need) if need > 0 and pool > 0 else 0.0
        remote = tuple((d, granted * f / pool) for d, f in donors if granted > 0)
        layers.append(LayerCache(c, p, local[c], remote))
    # donors give proportionally to what they had free: consistent whatever the order of the layers
    tiers = {LOCAL: 0.0, PACKAGE: 0.0, DRAM: 0.0}
    dram: dict[int, float] = {}
    for layer in layers:
        own, remote, spill = layer.split(layer_bytes)
        tiers[LOCAL] += own
        tiers[PACKAGE] += sum(b for _, b in remote)
        tiers[DRAM] += spill
        if spill > 0:
            dram[layer.package] = dram.get(layer.package, 0.0) + spill
    return KvPlacement(tuple(layers), layer_bytes, sram_per_chip, chips_per_package, tiers, dram, dram_capacity)


@dataclass(frozen=True)
class KvPrices:
    """Per byte on the AIMC chips: SRAM read and write (J), the chip link (J, s), DRAM (J) and its bandwidth per
    package (bytes/s)."""
    sram_read_J: float
    sram_write_J: float
    link_J: float
    link_s: float
    dram_J: float
    dram_Bps_per_package: float | None

    @staticmethod
    def of(hw: HardwareSpec, sram_read_J: float, sram_write_J: float, remote: bool, dram: bool) -> "KvPrices":
        """The spec's prices; link and DRAM fields are required only when the placement uses them."""
        link_J = link_s = dram_J = 0.0
        dram_Bps = None
        if remote:
            link_J = require(hw, "chip_link.pJ_per_bit", "energy of KV cache reads from another chip's SRAM") * 8 * PJ
            link_s = 1.0 / (require(hw, "chip_link.GBps", "bandwidth of KV cache reads from another chip") * 1e9)
        if dram:
            why = "the KV cache spills to DRAM"
            dram_J = require(hw, "memory.dram_pJ_per_byte", f"DRAM energy ({why})") * PJ
            dram_Bps = (require(hw, "memory.dram_channels_per_package", f"DRAM channels ({why})")
                        * require(hw, "memory.dram_GBps_per_channel", f"DRAM bandwidth ({why})") * 1e9)
        return KvPrices(sram_read_J, sram_write_J, link_J, link_s, dram_J, dram_Bps)


@dataclass
class LayerTraffic:
    """A layer's cache traffic in one workload: energy by component, and seconds by resource."""
    energy_J: dict[str, float]
    busy_s: dict[Resource, float]
    bytes_by_tier: dict[str, float]


def traffic(layer: LayerCache, read_bytes: float, write_bytes: float, held_bytes: float, prices: KvPrices,
            link_component: str) -> LayerTraffic:
    """Reading the layer's first `read_bytes` of cache and appending `write_bytes` after `held_bytes`."""
    def tiers(lo: float, hi: float) -> tuple[float, dict[int, float], float]:
        a_own, a_remote, a_dram = layer.split(lo)
        b_own, b_remote, b_dram = layer.split(hi)
        remote = dict(b_remote)
        for chip, nbytes in a_remote:
            remote[chip] = remote.get(chip, 0.0) - nbytes
        return b_own - a_own, {c: b for c, b in remote.items() if b > 0}, b_dram - a_dram

    r_own, r_remote, r_dram = tiers(0.0, read_bytes)
    w_own, w_remote, w_dram = tiers(held_bytes, held_bytes + write_bytes)
    p = prices
    remote_r, remote_w = math.fsum(r_remote.values()), math.fsum(w_remote.values())
    # a byte read from another chip's SRAM: read there, crosses the link, staged in the home chip's SRAM (written,
    # read); a new token's byte crosses from the home chip and is written there
    energy = {KV_COMPONENT: r_own * p.sram_read_J + w_own * p.sram_write_J
              + remote_r * (2 * p.sram_read_J + p.sram_write_J) + remote_w * p.sram_write_J
              + (r_dram + w_dram) * p.dram_J}
    busy: dict[Resource, float] = {}
    if remote_r or remote_w:
        energy[link_component] = (remote_r + remote_w) * p.link_J
        for chip, nbytes in r_remote.items():  # each sending chip's link (links.py's resource)
            link = Resource(CHIP_LINK, chip)
            busy[link] = busy.get(link, 0.0) + nbytes * p.link_s
        if remote_w:
            link = Resource(CHIP_LINK, layer.chip)
            busy[link] = busy.get(link, 0.0) + remote_w * p.link_s
    if r_dram or w_dram:
        busy[Resource(DRAM_PACKAGE, layer.package)] = (r_dram + w_dram) / p.dram_Bps_per_package
    return LayerTraffic(energy, busy, {LOCAL: r_own + w_own, PACKAGE: remote_r + remote_w, DRAM: r_dram + w_dram})


def load_stages(stages: list[Stage], layers: tuple[tuple[StageId, ...], ...], placement: KvPlacement,
                hw: HardwareSpec, digital: DigitalPrices, layer_bytes: float, held: int, read: int, write: int
                ) -> dict[str, float]:
    """Each attention layer's cache traffic (`layer_bytes` per token position: `read` positions read, `write`
    appended after `held`) added to its stages in `stages` (shared equally by QK^T and PV); the bytes moved by
    tier."""
    prices = KvPrices.of(hw, digital.sram_read_J_per_byte, digital.sram_write_J_per_byte,
                         remote=any(layer.remote for layer in placement.layers),
                         dram=placement.bytes_by_tier.get(DRAM, 0.0) > 0)
    by_id = {s.id: s for s in stages}
    tiers: dict[str, float] = {}
    for ids, cache in zip(layers, placement.layers):
        t = traffic(cache, read * layer_bytes, write * layer_bytes, held * layer_bytes, prices, LINK_COMPONENT)
        for tier, nbytes in t.bytes_by_tier.items():
            tiers[tier] = tiers.get(tier, 0.0) + nbytes
        for i in ids:
            s = by_id[i]
            for component, joules in t.energy_J.items():
                s.energy_J[component] = s.energy_J.get(component, 0.0) + joules / len(ids)
            for resource, seconds in t.busy_s.items():
                s.busy_s[resource] = s.busy_s.get(resource, 0.0) + seconds / len(ids)
                s.vector_time_s = max(s.vector_time_s, seconds / len(ids) / max(s.vectors, 1))
    return tiers


__all__ = ["DRAM", "KV_COMPONENT", "KvPlacement", "KvPrices", "LOCAL", "LayerCache", "PACKAGE", "TIERS",
           "load_stages", "place", "traffic"]
