"""The same workload priced on a digital INT8 accelerator (hw_specs/digital_int8.yaml), for comparison.

Only what differs comes from the baseline spec: its systolic MAC arrays (weight-stationary, 8-bit multiply,
32-bit accumulate; a MAC at `mac_overhead` x the bare multiply and add, calibrated on published digital chips), its
on-chip weight memory and its DRAM. What both chips have is priced with the AIMC chip's
own numbers, so that the comparison isolates the weight products: the node and supply, the digital primitives
(MACs from the int8 multiply and int32 add), the vector lanes and their clock (softmax, LayerNorm, GELU,
residuals with the same recipes), the activation SRAM per byte and per tile, the standard cells and the leakage.
Weights that fit the weight memory are read from it once per batch (each loaded weight tile serves every vector
of the batch); larger models stream them from DRAM once per batch. A layer takes the longer of its compute
(ceil(in/R) x ceil(out/C) weight tiles spread over the arrays, each streaming the vectors plus R cycles of fill)
and its weight fetch; layers run one after another.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from compiler.config import parse_baseline_scale as parse_scale
from compiler.errors import UserError

from compiler.hw_spec import DigitalBaselineSpec, HardwareSpec
from compiler.backends.estimator.area import PRECISION_BITS, chip_area, logic_cells
from compiler.backends.estimator.components import BASELINE_COMPONENTS, COMPONENT_OF_CLASS
from compiler.backends.estimator.fields import PJ, UM2_PER_MM2
from compiler.backends.estimator.prices import DigitalPrices, DigitalThroughput, digital_prices, digital_throughput
from compiler.backends.estimator.workload import RECIPES, AnalogWork, DigitalWork, Workload



@dataclass(frozen=True)
class BaselineCost:
    name: str
    hw_file: str
    batch: int
    energy_J: float
    latency_s: float
    ops: float
    energy_by_component_J: dict[str, float]
    weights_in_dram: bool
    weight_bytes: int
    area_mm2: float
    static_power_W: float
    assumptions: tuple[str, ...]
    compute_s: float = 0.0           # time of layers bound by the MAC arrays (and the vector lanes)
    memory_s: float = 0.0            # time of layers bound by the weight fetch

    @property
    def bound(self) -> str:
        """What limits it: the MAC arrays or the memory bandwidth (the larger share of its time)."""
        return "memory bandwidth" if self.memory_s > self.compute_s else "compute"

    @property
    def throughput_inferences_per_s(self) -> float:
        return self.batch / self.latency_s if self.latency_s else 0.0

    @property
    def tops(self) -> float:
        return self.ops / self.latency_s / 1e12 if self.latency_s else 0.0

    @property
    def tops_per_w(self) -> float:
        return self.ops / self.energy_J / 1e12 if self.energy_J else 0.0


@dataclass(frozen=True)
class _Machine:
    spec: DigitalBaselineSpec
    digital: DigitalPrices
    lanes: DigitalThroughput
    clock_hz: float
    mac_J: float
    fetch_J: float
    in_dram: bool

    def array_time_s(self, macs: float) -> float:
        s = self.spec
        return macs / (s.arrays * s.array_rows * s.array_cols * self.clock_hz)


def price_on_baseline(workload: Workload, spec: DigitalBaselineSpec, hw: HardwareSpec) -> BaselineCost:
    digital = digital_prices(hw, "energy", hw.digital.other_precision)
    weight_bytes = sum(w.in_features * w.out_features for w in workload.analog)  # one byte per INT8 weight
    in_dram = weight_bytes > spec.weight_buffer_MiB * 2 ** 20
    fetch_J = spec.dram_pJ_per_byte * PJ if in_dram else spec.weight_buffer_pJ_per_byte * PJ * digital.scale
    machine = _Machine(spec, digital, digital_throughput(hw), spec.clock_GHz * 1e9,
                       (digital.int8_mult_J + digital.int32_add_J) * spec.mac_overhead, fetch_J, in_dram)
    energy = dict.fromkeys(BASELINE_COMPONENTS, 0.0)
    split = {"compute": 0.0, "memory": 0.0}
    latency = math.fsum([_layer(w, machine, energy, split) for w in workload.analog]
                        + [_digital(w, machine, energy) for w in workload.digital])
    split["compute"] = latency - split["memory"]
    area_mm2, static_W = _area_and_leakage(spec, hw)
    energy["static"] = static_W * latency
    ops = 2.0 * (workload.analog_macs + workload.attention_macs + workload.digital_matmul_macs)
    return BaselineCost(name=spec.name, hw_file=spec.source_file, batch=workload.batch,
                        energy_J=math.fsum(energy.values()), latency_s=latency, ops=ops, energy_by_component_J=energy,
                        weights_in_dram=in_dram, weight_bytes=weight_bytes, area_mm2=area_mm2,
                        static_power_W=static_W, assumptions=_assumptions(spec, hw, machine, weight_bytes),
                        compute_s=split["compute"], memory_s=split["memory"])


def _layer(w: AnalogWork, m: _Machine, energy: dict, split: dict) -> float:
    s, d, n = m.spec, m.digital, w.vectors
    if not n:  # an expert no token is routed to (mixture of experts): its weights are neither read nor used
        return 0.0
    passes = math.ceil(w.out_features / s.array_cols)
    weight_tiles = math.ceil(w.in_features / s.array_rows) * passes
    energy["mac"] += w.macs * m.mac_J
    energy["weight_fetch"] += w.in_features * w.out_features * m.fetch_J
    energy["accumulation"] += n * (w.out_features * (d.mult_J + d.add_J) + w.bias_features * d.add_J)
    energy["sram"] += n * d.bytes_per_element * (w.in_features * passes * d.sram_read_J_per_byte
                                                 + w.out_features * d.sram_write_J_per_byte)
    compute = math.ceil(weight_tiles / s.arrays) * (n + s.array_rows) / m.clock_hz
    fetch = w.in_features * w.out_features / (s.dram_GBps * 1e9) if m.in_dram else 0.0
    if fetch > compute:
        split["memory"] += fetch
    return max(compute, fetch)


def _digital(w: DigitalWork, m: _Machine, energy: dict) -> float:
    d = m.digital
    reads = w.input_elements + (w.elements if w.op_class == "embedding" else 0)
    energy["sram"] += d.bytes_per_element * (reads * d.sram_read_J_per_byte + w.elements * d.sram_write_J_per_byte)
    if w.op_class == "attention":
        energy["attention_int8"] += w.macs * m.mac_J + (w.input_elements + w.elements) * d.mult_J
        return m.array_time_s(w.macs)
    if w.op_class == "matmul":  # a weight product the AIMC chip runs digitally: the arrays run it here
        energy["mac"] += w.macs * m.mac_J
        return m.array_time_s(w.macs)
    mults, adds = RECIPES[w.op_class]
    energy[COMPONENT_OF_CLASS[w.op_class]] += w.elements * d.recipe_J(mults, adds)
    return m.lanes.lane_time_s(w.elements * (mults + adds))


def _area_and_leakage(spec: DigitalBaselineSpec, hw: HardwareSpec) -> tuple[float, float]:
    """The MAC arrays (int8 multiplier + int32 adder each), the AIMC chip's lanes and activation SRAM, and the
    weight memory, all with the AIMC chip's cells and leakage."""
    logic, aimc = logic_cells(hw), chip_area(hw)
    macs_um2 = spec.arrays * spec.array_rows * spec.array_cols * (logic.multiplier(8) + logic.adder(32))
    lanes_um2 = aimc.shared_um2["digital_units"]
    activation_bits = hw.area.sram_KiB_per_tile * 8192 * hw.tile.count
    weight_bits = spec.weight_buffer_MiB * 2 ** 20 * 8
    sram_um2 = (activation_bits + weight_bits) * hw.area.sram_bitcell_um2 / hw.area.sram_array_efficiency
    logic_mm2 = (macs_um2 + lanes_um2) / UM2_PER_MM2
    static_W = hw.static.logic_mW_per_mm2 * 1e-3 * logic_mm2 \
        + hw.static.sram_pW_per_bit * 1e-12 * (activation_bits + weight_bits)
    return logic_mm2 + sram_um2 / UM2_PER_MM2, static_W


def _assumptions(spec: DigitalBaselineSpec, hw: HardwareSpec, m: _Machine, weight_bytes: int) -> tuple[str, ...]:
    where = "DRAM" if m.in_dram else f"the {spec.weight_buffer_MiB:g} MiB on-chip weight memory"
    bits = PRECISION_BITS[hw.digital.other_precision]
    return (
        f"{spec.arrays} x {spec.array_rows}x{spec.array_cols} INT8 systolic arrays at {spec.clock_GHz:g} GHz "
        f"({spec.description})",
        f"{weight_bytes / 2 ** 20:.1f} MiB of INT8 weights read once per batch from {where} "
        f"({m.fetch_J / PJ:.2f} pJ/byte)",
        f"shared with the AIMC chip ({hw.name}): {hw.technology_nm:g} nm node, digital primitives, "
        f"{m.lanes.lanes:g} {bits}-bit vector lanes, activation SRAM at {m.digital.sram_read_J_per_byte / PJ:.3f} "
        f"pJ/byte, standard cells and leakage",
        f"a MAC costs {spec.mac_overhead:g} x a bare INT8 multiply + INT32 add: the energy per op of published digital "
        f"chips at their power and peak (calibrated, hw_specs/validation.yaml); every weight tile fully used but for "
        f"its fill",
    )


@dataclass(frozen=True)
class ScaledBaseline:
    spec: DigitalBaselineSpec        # the N chips as one machine
    chips: int
    mode: str
    chip_area_mm2: float             # one baseline chip
    note: str


def scale_baseline(spec: DigitalBaselineSpec, hw: HardwareSpec, scale: str, aimc_area_mm2: float,
                   aimc_power_W: float) -> ScaledBaseline:
    """N baseline chips as one machine: N x the MAC arrays, the weight memory, the DRAM bandwidth and capacity
    (each chip brings its own stacks). The all-reduce between the chips (tensor parallelism) is not priced."""
    mode, n = parse_scale(scale)
    area = spec.area_mm2 or _area_and_leakage(spec, hw)[0]
    if mode == "iso-area":
        n = max(1, round(aimc_area_mm2 / area))
        why = f"iso-area: {aimc_area_mm2:,.0f} mm^2 of AIMC silicon / {area:,.0f} mm^2 per baseline chip"
    elif mode == "iso-power":
        if not spec.tdp_W:
            raise UserError(f"{spec.source_file or spec.name}: --baseline-scale iso-power needs the baseline's tdp_W")
        n = max(1, round(aimc_power_W / spec.tdp_W))
        why = f"iso-power: {aimc_power_W:,.1f} W mean AIMC power / {spec.tdp_W:g} W per baseline chip"
    elif mode == "chips":
        why = f"chips={n}"
    else:
        n, why = 1, "as in its spec"
    scaled = spec if n == 1 else replace(
        spec, name=f"{spec.name} x{n}", arrays=spec.arrays * n, weight_buffer_MiB=spec.weight_buffer_MiB * n,
        dram_GBps=spec.dram_GBps * n, hbm_GB=spec.hbm_GB * n if spec.hbm_GB else None,
        area_mm2=area * n, tdp_W=spec.tdp_W * n if spec.tdp_W else None)
    return ScaledBaseline(scaled, n, mode, area, f"{n} {spec.name} chip(s) ({why}); arrays, weight memory, DRAM "
                                                f"bandwidth x {n}; the traffic between the chips is not priced")
