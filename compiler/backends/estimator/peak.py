"""Peak MVM throughput of a chip: every tile busy with full-size MVMs, back to back.

This is the figure chips are quoted with (HERMES: 63.1 TOPS at 9.76 TOPS/W in 1-phase mode, Le Gallo
et al., Nature Electronics 2023). It is built from the same per-action prices as the workload
estimate (compiler.backends.estimator.chip.tile_mvm_energy): ops = 2 x rows x cols per MVM, one
8-bit input vector in and one output vector out over the on-chip network per MVM, static power shared
by the tiles. The derivation for HERMES is in docs/estimator.md.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from compiler.hw_spec import HardwareSpec
from compiler.backends.estimator.chip import segment_time, tile_mvm_energy
from compiler.backends.estimator.prices import digital_prices, tile_prices


@dataclass(frozen=True)
class PeakThroughput:
    tiles: int
    ops_per_mvm: int
    mvm_time_s: float
    mvm_energy_J: float
    energy_by_component_J: dict[str, float]
    tops: float
    tops_per_w: float

    def to_json(self) -> dict:
        return asdict(self)


def peak_throughput(hw: HardwareSpec) -> PeakThroughput:
    """All `hw.tile.count` tiles of one chip doing full rows x cols MVMs."""
    tile = tile_prices(hw)
    digital = digital_prices(hw, "energy", hw.digital.other_precision)
    rows, cols = hw.tile.rows, hw.tile.cols
    energy = tile_mvm_energy(tile, digital, rows, cols)
    mvm_time = segment_time(tile, rows, cols)
    energy["static"] = (hw.static_power_W or 0.0) * mvm_time / hw.tile.count
    mvm_energy = math.fsum(energy.values())
    ops = 2 * rows * cols
    return PeakThroughput(tiles=hw.tile.count, ops_per_mvm=ops, mvm_time_s=mvm_time, mvm_energy_J=mvm_energy,
                          energy_by_component_J=energy, tops=hw.tile.count * ops / mvm_time / 1e12,
                          tops_per_w=ops / mvm_energy / 1e12)
