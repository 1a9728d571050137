"""The same workload priced on a digital INT8 accelerator (hw_specs/digital_int8.yaml), for comparison.

A digital chip is priced as the AIMC chips are, from numbers calibrated on published silicon (hw_specs/validation.yaml,
leave-one-out): its MACs at `mac_overhead` x a bare INT8 multiply and INT32 add (Horowitz 2014, at the node and
supply), plus everything else it powers (control, clock, vector units, SRAM traffic, interconnect, leakage) as
`uncore_W_per_mm2` x its die area x (45 nm / node) x (vdd / 0.9 V)^2 x clock / 1 GHz for as long as it runs, plus its
weight reads: from its on-chip weight memory once per batch, or from DRAM when the weights do not fit. The node and
supply are the AIMC chip's (an iso-node comparison); the die area is the spec's published one, else this model's own
(MAC arrays, the AIMC chip's vector lanes and activation SRAM, the weight memory: no I/O or PHYs, which the dies the
uncore was fitted on include, so its uncore power is then an underestimate). Time: a layer takes the longer of its
compute (ceil(in/R) x ceil(out/C) weight tiles spread over the arrays, each streaming the vectors plus R cycles of
fill) and its weight fetch; layers run one after another; the vector ops run on the AIMC chip's lanes at its clock.
The uncore is drawn at its fitted (TDP-scope) level for the whole latency, busy or waiting for memory: an upper bound
where a real chip would clock-gate idle units.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from compiler.config import parse_baseline_scale as parse_scale
from compiler.errors import UserError

from compiler.hw_spec import DigitalBaselineSpec, HardwareSpec
from compiler.backends.estimator.area import chip_area, logic_cells
from compiler.backends.estimator.components import BASELINE_COMPONENTS
from compiler.backends.estimator.fields import PJ, UM2_PER_MM2, require
from compiler.backends.estimator.prices import DigitalThroughput, digital_prices, digital_throughput
from compiler.backends.estimator.workload import RECIPES, AnalogWork, DigitalWork, Workload

# the reference of `uncore_W_per_mm2`: the node and supply of the bare digital primitives (Horowitz 2014), 1 GHz
UNCORE_REF_NM, UNCORE_REF_V, UNCORE_REF_GHZ = 45.0, 0.9, 1.0


def uncore_W(per_mm2_ref: float, area_mm2: float, node_nm: float, vdd_V: float, clock_GHz: float) -> float:
    """A digital chip's power beyond its MACs: switched capacitance per mm^2 goes as 1 / node (gate capacitance as
    the node, gates per mm^2 as 1 / node^2), power as that x vdd^2 x clock (first-order CMOS scaling, as the
    digital primitives' energies in prices.py)."""
    return per_mm2_ref * area_mm2 * (UNCORE_REF_NM / node_nm) * (vdd_V / UNCORE_REF_V) ** 2 \
        * (clock_GHz / UNCORE_REF_GHZ)



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
    uncore_power_W: float            # drawn for the whole latency
    assumptions: tuple[str, ...]
    compute_s: float = 0.0           # time of layers bound by the MAC arrays (and the vector lanes)
    memory_s: float = 0.0            # time of layers bound by the weight fetch

    @property
    def static_power_W(self) -> float:
        """The power drawn whatever the chip does (its uncore): what a longer wait (for memory) costs per second."""
        return self.uncore_power_W

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
    machine = _Machine(spec, digital_throughput(hw), spec.clock_GHz * 1e9,
                       (digital.int8_mult_J + digital.int32_add_J) * spec.mac_overhead, fetch_J, in_dram)
    energy = dict.fromkeys(BASELINE_COMPONENTS, 0.0)
    split = {"compute": 0.0, "memory": 0.0}
    latency = math.fsum([_layer(w, machine, energy, split) for w in workload.analog]
                        + [_digital(w, machine, energy) for w in workload.digital])
    split["compute"] = latency - split["memory"]
    area_mm2 = die_area_mm2(spec, hw)
    uncore = uncore_W(require(spec, "uncore_W_per_mm2", "the chip's power beyond its MACs per die area"), area_mm2,
                      hw.technology_nm, require(hw, "energy.vdd_V", "logic supply at the chip's node"), spec.clock_GHz)
    energy["uncore"] = uncore * latency
    ops = 2.0 * (workload.analog_macs + workload.attention_macs + workload.digital_matmul_macs)
    return BaselineCost(name=spec.name, hw_file=spec.source_file, batch=workload.batch,
                        energy_J=math.fsum(energy.values()), latency_s=latency, ops=ops, energy_by_component_J=energy,
                        weights_in_dram=in_dram, weight_bytes=weight_bytes, area_mm2=area_mm2,
                        uncore_power_W=uncore, assumptions=_assumptions(spec, hw, machine, weight_bytes, uncore),
                        compute_s=split["compute"], memory_s=split["memory"])


def _layer(w: AnalogWork, m: _Machine, energy: dict, split: dict) -> float:
    s, n = m.spec, w.vectors
    if not n:  # an expert no token is routed to (mixture of experts): its weights are neither read nor used
        return 0.0
    passes = math.ceil(w.out_features / s.array_cols)
    weight_tiles = math.ceil(w.in_features / s.array_rows) * passes
    energy["mac"] += w.macs * m.mac_J
    energy["weight_fetch"] += w.in_features * w.out_features * m.fetch_J
    compute = math.ceil(weight_tiles / s.arrays) * (n + s.array_rows) / m.clock_hz
    fetch = w.in_features * w.out_features / (s.dram_GBps * 1e9) if m.in_dram else 0.0
    if fetch > compute:
        split["memory"] += fetch
    return max(compute, fetch)


def _digital(w: DigitalWork, m: _Machine, energy: dict) -> float:
    """A digital op's time (on the MAC arrays or the vector lanes); its energy beyond MACs is in the uncore."""
    if w.op_class == "attention":
        energy["attention_int8"] += w.macs * m.mac_J
        return m.array_time_s(w.macs)
    if w.op_class == "matmul":  # a weight product the AIMC chip runs digitally: the arrays run it here
        energy["mac"] += w.macs * m.mac_J
        return m.array_time_s(w.macs)
    mults, adds = RECIPES[w.op_class]
    return m.lanes.lane_time_s(w.elements * (mults + adds))


def model_area_mm2(spec: DigitalBaselineSpec, hw: HardwareSpec) -> float:
    """This model's own die: the MAC arrays (int8 multiplier + int32 adder each), the AIMC chip's lanes and
    activation SRAM, and the weight memory, with the AIMC chip's cells."""
    logic, aimc = logic_cells(hw), chip_area(hw)
    macs_um2 = spec.arrays * spec.array_rows * spec.array_cols * (logic.multiplier(8) + logic.adder(32))
    lanes_um2 = aimc.shared_um2["digital_units"]
    sram_bits = hw.area.sram_KiB_per_tile * 8192 * hw.tile.count + spec.weight_buffer_MiB * 2 ** 20 * 8
    sram_um2 = sram_bits * hw.area.sram_bitcell_um2 / hw.area.sram_array_efficiency
    return (macs_um2 + lanes_um2 + sram_um2) / UM2_PER_MM2


def die_area_mm2(spec: DigitalBaselineSpec, hw: HardwareSpec) -> float:
    """The published die where the spec gives one, else this model's own."""
    return spec.area_mm2 or model_area_mm2(spec, hw)


def _assumptions(spec: DigitalBaselineSpec, hw: HardwareSpec, m: _Machine, weight_bytes: int,
                 uncore: float) -> tuple[str, ...]:
    where = "DRAM" if m.in_dram else f"the {spec.weight_buffer_MiB:g} MiB on-chip weight memory"
    area = "published die" if spec.area_mm2 else "this model's die (arrays, lanes, SRAM; no I/O or PHYs)"
    return (
        f"{spec.arrays} x {spec.array_rows}x{spec.array_cols} INT8 systolic arrays at {spec.clock_GHz:g} GHz "
        f"({spec.description})",
        f"{weight_bytes / 2 ** 20:.1f} MiB of INT8 weights read once per batch from {where} "
        f"({m.fetch_J / PJ:.2f} pJ/byte)",
        f"a MAC costs {spec.mac_overhead:g} x a bare INT8 multiply + INT32 add; everything else the chip powers, "
        f"{uncore:.3g} W ({spec.uncore_W_per_mm2:g} W/mm^2 at 45 nm, 0.9 V, 1 GHz over the {area}, at "
        f"{hw.technology_nm:g} nm and {hw.energy.vdd_V:g} V), drawn for the whole latency: both calibrated "
        f"leave-one-out on published digital chips (hw_specs/validation.yaml)",
        f"at the AIMC chip's ({hw.name}) node and supply, its vector lanes' throughput for the vector ops",
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
    area = die_area_mm2(spec, hw)
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
