"""The cost components and their roles: which model prices each, per tile or per chip, which leak, which digital op
classes fall under which. Their labels and colors are reports/schema.py's COMPONENT_STYLES (cost.json's vocabulary,
shared with the report; tests/test_components.py checks that every name here has one); every list of component
names the estimator uses is derived here."""
from __future__ import annotations

from dataclasses import dataclass



@dataclass(frozen=True)
class Component:
    name: str
    chip: bool = False              # an energy component of the AIMC chip
    tile: bool = False              # priced per MVM of a tile segment (chip.tile_mvm_energy)
    baseline: bool = False          # an energy component of the digital baseline
    area: str | None = None         # "tile": silicon of every tile; "chip": the chip's shared units
    leaks: bool = False             # its logic leaks while powered (static.py)
    op_classes: tuple[str, ...] = ()  # digital op classes priced under it (workload.py's classes)


REGISTRY: tuple[Component, ...] = (
    Component("tile_array", chip=True, tile=True, area="tile"),
    Component("dac", chip=True, tile=True, area="tile", leaks=True),
    Component("adc", chip=True, tile=True, area="tile"),
    Component("local_digital", chip=True, tile=True, area="tile", leaks=True),
    Component("control", chip=True, tile=True, area="tile", leaks=True),
    Component("programming", area="tile"),   # weight-programming drivers: idle (power-gated) during inference
    Component("mac", baseline=True),
    Component("weight_fetch", baseline=True),
    Component("accumulation", chip=True),
    Component("attention_int6", chip=True, op_classes=("attention",)),
    Component("attention_int8", baseline=True),
    Component("softmax", chip=True, op_classes=("softmax",)),
    Component("layernorm", chip=True, op_classes=("layernorm",)),
    Component("gelu", chip=True, op_classes=("gelu",)),
    Component("elementwise", chip=True,
              op_classes=("tanh", "mul", "div", "elementwise", "embedding")),
    Component("digital_matmul", chip=True, op_classes=("matmul",)),
    Component("sram", chip=True, area="tile"),
    Component("network", chip=True, tile=True, area="tile", leaks=True),
    Component("chip_link", chip=True),
    Component("static", chip=True),
    Component("uncore", baseline=True),  # the digital chip's power beyond its MACs, fitted per die area (baseline.py)
    Component("digital_units", area="chip", leaks=True),
    Component("attention_units", area="chip", leaks=True),
)

COMPONENTS = tuple(c.name for c in REGISTRY if c.chip)               # the AIMC chip's energy, cost.json's order
TILE_COMPONENTS = tuple(c.name for c in REGISTRY if c.tile)          # one MVM of a tile segment
BASELINE_COMPONENTS = tuple(c.name for c in REGISTRY if c.baseline)  # the digital baseline's energy
CHIP_COMPONENTS = tuple(c.name for c in REGISTRY if c.area)          # a chip's area: tiles and shared units
LEAKING_LOGIC = tuple(c.name for c in REGISTRY if c.leaks)
COMPONENT_OF_CLASS = {op: c.name for c in REGISTRY for op in c.op_classes}
