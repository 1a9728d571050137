"""Power from cost.json: per component beside its energy (`power_by_component_W`, computed by the compiler,
compiler/writers.py, and read here as written), and the peak of one chip and of all the chips a model spans
(mapping.json's `chips_used`). Standard library only.
"""
from __future__ import annotations

from dataclasses import dataclass

from reports.schema import CostJson, Peak


def cost_power_W(cost: CostJson) -> dict[str, float]:
    """The power per component cost.json holds (`power_by_component_W`: energy per batch over the period, the
    leakage as itself); empty for a file written without it."""
    return dict(cost.power_by_component_W or {})


@dataclass(frozen=True)
class PeakFigures:
    """Every tile busy with full MVMs back to back, on `chips` chips (cost.json's `peak` is one chip)."""
    chips: int
    tiles: int
    tops: float
    tops_per_w: float | None
    power_W: float
    power_by_component_W: dict[str, float]


def peak_figures(peak: Peak | None, chips: int = 1) -> PeakFigures | None:
    """The chip's peak scaled to `chips` chips: chips run side by side, so throughput and power add and TOPS/W
    stays (links between chips are not priced). None without a usable `peak`."""
    if peak is None or not peak.tiles or not peak.mvm_time_s or peak.mvm_time_s <= 0:
        return None
    chips = max(1, chips or 1)
    per_tile_s = 1.0 / peak.mvm_time_s  # MVMs per second of one tile
    by_component = {name: chips * peak.tiles * energy * per_tile_s
                    for name, energy in peak.energy_by_component_J.items()}
    power = sum(by_component.values()) if by_component else chips * peak.tiles * (peak.mvm_energy_J or 0) * per_tile_s
    return PeakFigures(chips=chips, tiles=chips * peak.tiles, tops=chips * (peak.tops or 0.0),
                       tops_per_w=peak.tops_per_w, power_W=power, power_by_component_W=by_component)


@dataclass(frozen=True)
class PowerRow:
    name: str
    energy_J: float
    share: float
    power_W: float | None
    peak_chip_W: float | None      # None: the component does no work at peak (digital ops of the workload)
    peak_system_W: float | None


@dataclass(frozen=True)
class PowerSection:
    rows: list[PowerRow]          # largest energy first
    power_W: float | None         # the sum of the rows' power
    chip: PeakFigures | None
    system: PeakFigures | None    # None when the model fits on one chip


def build_power_section(cost: CostJson, chips_used: int | None) -> PowerSection | None:
    """The report's power table and peak cards; None when cost.json has no energy per component."""
    energy = cost.energy_by_component_J
    if not energy:
        return None
    power = cost_power_W(cost)
    chip = peak_figures(cost.peak, 1)
    system = peak_figures(cost.peak, chips_used) if chips_used and chips_used > 1 else None
    total = sum(energy.values()) or 1.0
    rows = [PowerRow(name, value, value / total, power.get(name),
                     chip.power_by_component_W.get(name) if chip else None,
                     system.power_by_component_W.get(name) if system else None)
            for name, value in sorted(energy.items(), key=lambda kv: -kv[1])]
    return PowerSection(rows=rows, power_W=sum(power.values()) if power else None, chip=chip, system=system)
