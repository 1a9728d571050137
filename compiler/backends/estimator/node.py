"""What a change of `technology_nm` does not move: one warning per cost component whose price uses spec numbers as
given at any node.

The node scales the digital primitives (energy.digital, x node and supply squared: prices.py) and the standard
cells (area.logic, x node squared: area.py), nothing else. The other numbers of a spec are the figures of its own
node: device conduction, line and clock capacitances, wire energy, driver, control and SRAM bit-cell areas,
leakage densities, link and DRAM energies, the converter's published figures, the clocks. When `--set
technology_nm=` moves the node away from the spec file's, each component priced by such numbers is named on a
line of its own with the numbers it keeps (docs/specs.md, "scales with").
"""
from __future__ import annotations

from typing import Any

from compiler.hw_spec import HardwareSpec

# component (cost.json's names; "latency" for the clocks) -> (what keeps its price, the spec fields that set it)
FIXED_AT_NODE: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("tile_array", "array conduction, bit-line charge and cell area",
     ("energy.mean_conductance_fraction", "device.g_max_uS", "energy.read_voltage_V", "energy.bitline_fF_per_cell",
      "area.weight_cell_um2")),
    ("dac", "input-line charge and line-driver area (its PWM registers and compares scale)",
     ("energy.wordline_fF_per_cell", "area.wordline_driver_um2")),
    ("control", "clock load and tile control area", ("energy.clock_fF_per_lane", "area.tile_control_um2")),
    ("programming", "programming-driver and row-select area",
     ("area.program_driver_um2", "area.row_select_um2")),
    ("network", "wire energy per bit and mm (its router buffers scale)", ("energy.network_pJ_per_bit_mm",)),
    ("sram", "bit-cell area (its read and write energies scale)", ("area.sram_bitcell_um2",)),
    ("static", "leakage per mm² of logic and per SRAM bit", ("static.logic_mW_per_mm2", "static.sram_pW_per_bit")),
    ("chip_link", "energy per bit between chips and packages", ("chip_link.pJ_per_bit", "package.board_link_pJ_per_bit")),
    ("kv_cache", "DRAM energy per byte where the cache outgrows the SRAM", ("memory.dram_pJ_per_byte",)),
    ("latency", "tile clock, digital clock and fixed delays",
     ("latency.pwm_step_ns", "latency.mvm_overhead_ns", "latency.digital_clock_GHz", "latency.digital_op_ns",
      "latency.network_hop_ns", "latency.reduction_ns_per_level", "chip_link.latency_ns")),
    ("supply", "the logic supply (scaled digital energies and line charges go with its square)", ("energy.vdd_V",)),
)


def _value(hw: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        hw = getattr(hw, part, None) if hw is not None else None
    return hw


def node_change_warnings(hw: HardwareSpec) -> list[str]:
    """One line per component whose price does not follow `technology_nm` when an override moved it from the
    spec file's node; [] when the node is the file's. The converter's line names its published node, or says
    its figures are the file's node's where the spec gives none."""
    given = (hw.overrides or {}).get("technology_nm")
    if given is None or given["file"] is None or float(given["file"]) == hw.technology_nm:
        return []
    head = f"technology_nm moved from {float(given['file']):g} to {hw.technology_nm:g} nm"
    lines = []
    for component, what, fields in FIXED_AT_NODE:
        kept = [f"{f}={_value(hw, f):g}" for f in fields if isinstance(_value(hw, f), (int, float))
                and not isinstance(_value(hw, f), bool)]
        if kept:
            lines.append(f"{head}: {component} not scaled: {what} as the spec gives them ({', '.join(kept)})")
    arch = _value(hw, "adc.architecture")
    converter = _value(hw, f"adc.{arch}") if isinstance(arch, str) else None
    if converter is not None and getattr(converter, "node_nm", None) is None:  # with a node: converters.node_warnings
        lines.append(f"{head}: adc not scaled: the {arch} converter's figures are used as the spec gives them "
                     f"(no published node-scaling rule for a converter)")
    return lines
