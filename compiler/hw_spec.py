"""Hardware specifications: typed, frozen, validated on load.

A spec is a YAML file (see `hw_specs/`). Each section maps onto one frozen dataclass below; the
dataclass fields carry their allowed range in `metadata`, so validation is one generic walk and a
bad file yields one error naming the file, each bad field and what was expected: all of a file's problems
in one line. Cross-field rules (device.t0_s >= device.t_read_s) are checked once every field is valid.
"""
from __future__ import annotations

import copy
import dataclasses
import importlib.resources
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from compiler.errors import UserError
from compiler.spec_check import (BAD, MAX_SPEC_BYTES, SpecYamlError, collect, field_hint as _hint, forget_type_hints,
                                 load_yaml,
                                 public_fields, raise_problems, show, unwrap_optional as _unwrap_optional)


def _spec_dir() -> Path:
    """The built-in specs: package data `compiler/hw_specs/` in an installed wheel (pyproject.toml maps the
    repository's top-level hw_specs/ there), else that top-level folder itself (source tree, editable install)."""
    shipped = importlib.resources.files("compiler") / "hw_specs"
    if shipped.is_dir():
        return Path(str(shipped))  # a wheel installs unpacked: the package data is a real directory
    return Path(__file__).resolve().parent.parent / "hw_specs"


SPEC_DIR = _spec_dir()


def _f(lo: float | None = None, hi: float | None = None, choices: tuple | None = None, design: bool = False,
       **kw) -> Any:
    """A dataclass field with its validation range; `design`: a cost number the architect chooses (lanes, buffer
    sizes), not an estimate of a physical quantity, so it takes no default uncertainty."""
    return field(metadata={"min": lo, "max": hi, "choices": choices, "design": design}, **kw)


@dataclass(frozen=True)
class TileSpec:
    rows: int = _f(1, 1 << 16)              # weight rows per tile = inputs (word lines)
    cols: int = _f(1, 1 << 16)              # weight columns per tile = outputs (bit lines)
    devices_per_weight: int = _f(1, 8)      # 2 = differential pair G+ - G-
    count: int = _f(1, 1 << 20)             # tiles on one chip
    max_chips: int = _f(1, 1 << 10, default=1)  # a model may span this many chips


@dataclass(frozen=True)
class ClippedLinear:
    """clip(slope * ln(g) + intercept, lo, hi): drift-coefficient statistics of the PCM model (docs/analog_mvm.md)."""
    slope: float = _f()
    intercept: float = _f()
    lo: float = _f()
    hi: float = _f()


@dataclass(frozen=True)
class ReadNoiseSpec:
    """Qs = min(coeff / g**exponent, max): 1/f read noise amplitude."""
    coeff: float = _f(0.0)
    exponent: float = _f(0.0)
    max: float = _f(0.0)


# the device technologies a spec may name: PCM built in; the estimator's device models register more
# (compiler/backends/estimator/devices.py, register_device), which updates the choices of DeviceSpec.type
DEVICE_TYPES: list[str] = ["PCM"]


@dataclass(frozen=True)
class DeviceSpec:
    type: str = _f(choices=("PCM",))
    g_max_uS: float = _f(1e-3, 1e4)
    programming_noise: bool = _f()
    drift: bool = _f()
    read_noise: bool = _f()
    drift_compensation: bool = _f()
    t0_s: float = _f(1e-9, 1e6)
    t_read_s: float = _f(1e-12, 1.0)
    # sigma_prog = c0 + c1 g + c2 g^2 (uS, fitted at g_max_fit_uS; scaled by g_max/g_max_fit)
    programming_noise_poly_uS: tuple[float, float, float] = _f()
    programming_noise_fit_g_max_uS: float = _f(1e-3, 1e4)
    drift_nu_mean: ClippedLinear = _f()
    drift_nu_std: ClippedLinear = _f()
    read_noise_qs: ReadNoiseSpec = _f()


@dataclass(frozen=True)
class DacSpec:
    bits: int | None = _f(2, 16)            # null = ideal (no input quantization); 1 bit has no level
    encoding: str = _f(choices=("PWM", "amplitude", "bit-serial"))


COST_MAX = 1e9  # the largest value a cost number may take in its unit: every product of prices stays finite


def _c(lo: float | None = 0.0, hi: float | None = COST_MAX, **kw) -> Any:
    """An optional cost number (absent when the spec loads; the estimator asks for it by name), bounded so that no
    derived price overflows (docs/specs.md)."""
    return _f(lo, hi, default=None, **kw)


# --- converters: one spec section per registered converter model (adc.<architecture>) ---------------------------
# The estimator's converter models (compiler/backends/estimator/converters.py) price these sections; a model
# defined elsewhere registers its own section with `register_converter_section` (AdcSpec is rebuilt with it).

@dataclass(frozen=True)
class CcoAdcSpec:
    """A current-controlled oscillator converter (HERMES): each column's oscillator runs and its counter counts for
    the whole input window, so energy = oscillator power x window + counter readout per bit."""
    oscillator_uW: float | None = _c()        # mean power of one column's oscillator and counter while counting
    readout_fJ_per_bit: float | None = _c()   # latching and reading out one counter bit, per conversion
    ps_per_lsb: float | None = _c()           # fastest count: a full-scale count takes 2^bits x this
    area_um2: float | None = _c()             # one converter at area_ref_bits (+ a counter flip-flop per bit)
    area_ref_bits: int | None = _f(2, 16, default=None)
    columns_per_adc: int = _f(1, 1 << 16, default=1)        # columns time-sharing one converter
    node_nm: float | None = _f(1, 1000, default=None)       # node of the published figures (warned when it differs)


@dataclass(frozen=True)
class RampAdcSpec:
    """A single-slope (ramp) converter: after the integration each column's charge is turned into a duration of up
    to 2^bits steps, during which its comparator is on: energy = comparator power x duration + readout per bit."""
    comparator_uW: float | None = _c()        # one column's comparator and ramp share while its duration runs
    readout_fJ_per_bit: float | None = _c()   # latching or counting out one bit, per conversion
    ps_per_lsb: float | None = _c()           # one duration step; a conversion takes 2^bits x this, after the input
    area_um2: float | None = _c()             # one converter at area_ref_bits (+ a latch per bit)
    area_ref_bits: int | None = _f(2, 16, default=None)
    columns_per_adc: int = _f(1, 1 << 16, default=1)
    node_nm: float | None = _f(1, 1000, default=None)


@dataclass(frozen=True)
class SarAdcSpec:
    """A successive-approximation converter: one comparison per bit, after the column has integrated."""
    fom_fJ_per_step: float | None = _c()      # Walden FOM: technology-limited term, x 2^bits
    schreier_fom_dB: float | None = _f(100.0, 250.0, default=None)  # thermal: 10^((6.02b+1.76-FOM)/10)/2, ~4^b
    ps_per_bit: float | None = _c()           # conversion time = (bits + 1) x this (sampling + bits)
    area_um2: float | None = _c()             # one converter at area_ref_bits; x 2^(bits - ref) (C-DAC)
    area_ref_bits: int | None = _f(2, 16, default=None)
    columns_per_adc: int = _f(1, 1 << 16, default=1)        # columns time-sharing one converter
    node_nm: float | None = _f(1, 1000, default=None)


# architecture name -> its section's dataclass; the built-in models' sections, in the order docs/specs.md lists them
CONVERTER_SECTIONS: dict[str, type] = {"cco": CcoAdcSpec, "ramp": RampAdcSpec, "sar": SarAdcSpec}


def _adc_spec_class() -> type:
    """AdcSpec: the resolution, the model's name (one of the registered ones) and one optional section per model."""
    fields: list[tuple] = [
        ("bits", int | None, _f(2, 16)),  # null = ideal (no output quantization); 1 bit has no level
        # the converter's cost model (estimator only; docs/specs.md): which registered model prices it
        ("architecture", str | None, _f(choices=tuple(CONVERTER_SECTIONS), default=None)),
    ]
    fields += [(name, cls | None, _f(default=None)) for name, cls in CONVERTER_SECTIONS.items()]
    cls = dataclasses.make_dataclass("AdcSpec", fields, frozen=True)
    cls.__module__ = __name__
    return cls


AdcSpec = _adc_spec_class()


def register_device_type(name: str, add: bool = True) -> None:
    """Allow (or, add False, no longer allow) `device.type: name`."""
    if add and name not in DEVICE_TYPES:
        DEVICE_TYPES.append(name)
    elif not add and name in DEVICE_TYPES and name != "PCM":
        DEVICE_TYPES.remove(name)
    type_field = {f.name: f for f in dataclasses.fields(DeviceSpec)}["type"]
    type_field.metadata = types.MappingProxyType({**type_field.metadata, "choices": tuple(DEVICE_TYPES)})


def register_converter_section(name: str, cls: type) -> None:
    """Add (or, with cls None, remove) the spec section adc.`name` of a converter model: the loader, the overrides,
    the uncertainties and docs/specs.md's check all walk AdcSpec, rebuilt here (HardwareSpec's `adc` hint names
    AdcSpec, resolved when read). Called by compiler.backends.estimator.converters.register_converter."""
    global AdcSpec
    if cls is None:
        CONVERTER_SECTIONS.pop(name, None)
    else:
        if not name.isidentifier() or name in ("bits", "architecture"):
            raise ValueError(f"converter name {name!r}: expected an identifier other than bits, architecture")
        CONVERTER_SECTIONS[name] = cls
    AdcSpec = _adc_spec_class()
    forget_type_hints()  # HardwareSpec's hints resolved the old AdcSpec


@dataclass(frozen=True)
class DigitalSpec:
    # The integer attention unit (QK^T, P·V; compiler/analog/integer.py, docs/simulator.md). Q, K, V are
    # signed with dynamic scales (max|x| at run time); P is unsigned over the fixed range [0, 1].
    attention_bits: int | None = _f(2, 16)  # null = FP attention
    # per_tensor: one scale per sequence and operand; per_head: per sequence, head and operand
    attention_scale: str = _f(choices=("per_tensor", "per_head"))
    other_precision: str = _f(choices=("fp32", "fp16", "bf16", "int8"))


@dataclass(frozen=True)
class BlockOptionsSpec:
    """What `--accuracy-budget` may choose per weight block (compiler/block_options.py, docs/accuracy_budget.md).
    The reference option is always analog at adc.bits without redundancy."""
    adc_bits: tuple[int, ...] | None = _f(2, 16, default=None)    # ADC resolutions a block may take (adc.bits added)
    redundancy: tuple[int, ...] | None = _f(2, 8, default=None)   # k: the block on k tile sets, outputs averaged
    digital_bits: int | None = _f(2, 16, default=None)            # the block on the digital units in INT<bits>


# --- cost sections (read by compiler.backends.estimator; see docs/estimator.md) -----------------
# Every cost field may be absent when the spec loads (mapping and simulation do not need it); the
# estimator raises a UserError naming the field when it needs one that is missing.

@dataclass(frozen=True)
class DigitalReferenceSpec:
    """Digital primitives as published at a reference node; the estimator scales them to the chip's node."""
    node_nm: float | None = _f(1, 1000, default=None)
    vdd_V: float | None = _f(0.1, 5.0, default=None)
    int8_add_pJ: float | None = _c()
    int8_mult_pJ: float | None = _c()
    int32_add_pJ: float | None = _c()   # accumulator of integer MACs
    fp16_add_pJ: float | None = _c()
    fp16_mult_pJ: float | None = _c()
    fp32_add_pJ: float | None = _c()
    fp32_mult_pJ: float | None = _c()
    sram_read_pJ_per_byte: float | None = _c()
    sram_write_pJ_per_byte: float | None = _c()


@dataclass(frozen=True)
class EnergySpec:
    """Energy of the analog tiles' physics; their logic is priced from `digital` (shared with the digital units)."""
    read_voltage_V: float | None = _f(0.0, 5.0, default=None)             # bias across a conducting cell
    mean_conductance_fraction: float | None = _f(0.0, 2.0, default=None)  # mean (G+ + G-) of a weight / g_max
    bitline_fF_per_cell: float | None = _c()   # bit-line capacitance per cell it passes
    wordline_fF_per_cell: float | None = _c()  # input-line capacitance per cell it drives
    clock_fF_per_lane: float | None = _c()     # clock load per row driver / column periphery
    network_pJ_per_bit_mm: float | None = _c()  # on-chip wire, per bit and mm
    # wires toggled per value sent between tiles; null: a digital word of ceil(bits / 8) bytes
    network_bits_per_value: float | None = _f(0.0, 64.0, design=True, default=None)
    vdd_V: float | None = _f(0.1, 5.0, default=None)            # logic supply at technology_nm
    local_digital_unit: bool | None = _f(default=None)          # a per-tile unit scales each column output
    digital: DigitalReferenceSpec | None = _f(default=None)


@dataclass(frozen=True)
class LatencySpec:
    """Duration per action; digital units and links as throughputs, per tile so that the chip's size scales them."""
    pwm_step_ns: float | None = _c(1e-6, design=True)        # tile clock period: one PWM input level
    mvm_overhead_ns: float | None = _c(design=True)    # per MVM, not hidden by pipelining
    digital_clock_GHz: float | None = _f(1e-6, 1e3, design=True, default=None)
    digital_lanes_per_tile: float | None = _f(1e-6, 1 << 20, design=True, default=None)  # add/mult per cycle
    attention_macs_per_cycle_per_tile: float | None = _f(1e-6, 1 << 20, design=True, default=None)
    link_bits_per_column: float | None = _f(1e-6, 1e3, design=True, default=None)  # link width, per tile clock
    # fixed latencies a pipeline does not hide (absent: 0, not modelled): a digital op before its first output (the
    # vector unit's operand read, ALU stages, write-back), one level of the adder tree that sums a block's partial
    # sums across row tiles, one router + wire hop of the on-chip mesh
    digital_op_ns: float | None = _c()
    reduction_ns_per_level: float | None = _c()
    network_hop_ns: float | None = _c()


@dataclass(frozen=True)
class LogicAreaSpec:
    """Standard-cell areas published at a reference node; the estimator scales them by (node / node_nm)^2."""
    node_nm: float | None = _f(1, 1000, default=None)
    add32_um2: float | None = _c()             # 32-bit integer adder
    mult32_um2: float | None = _c()            # 32-bit integer multiplier (area ~ width^2)
    register_um2_per_bit: float | None = _c()
    comparator32_um2: float | None = _c()


@dataclass(frozen=True)
class AreaSpec:
    """Silicon area per component; the converters' in adc.cco / adc.sar."""
    weight_cell_um2: float | None = _c()       # one weight: all its devices and access devices
    wordline_driver_um2: float | None = _c()   # per row: the input-line driver (analog)
    tile_control_um2: float | None = _c()      # per tile: sequencer, clock buffers
    program_driver_um2: float | None = _c()    # one programming driver (~3 V, 100-700 uA pulses)
    columns_per_program_driver: float | None = _c(1.0, design=True)  # columns one programming driver serves
    row_select_um2: float | None = _c()        # per row: its select-line drivers (programming voltages)
    columns_per_ldpu_lane: float | None = _c(1.0, design=True)  # local digital unit: lanes
    router_flits_per_port: float | None = _c(design=True)  # 5-port mesh router buffers
    sram_KiB_per_tile: float | None = _c(design=True)      # local activation buffer
    sram_bitcell_um2: float | None = _c()
    sram_array_efficiency: float | None = _f(0.01, 1.0, default=None)  # bit cells / macro area
    logic: LogicAreaSpec | None = _f(default=None)


@dataclass(frozen=True)
class StaticSpec:
    """Leakage while the chip runs: logic per area, SRAM per bit (converters: inside their figure of merit), and the
    power gating of idle tiles and shared units (compiler/backends/estimator/gating.py)."""
    logic_mW_per_mm2: float | None = _c()
    node_nm: float | None = _f(1, 1000, default=None)    # node of the published leakage figure (warned when it differs)
    sram_pW_per_bit: float | None = _c()
    power_gating: bool | None = _f(default=None)         # idle tiles and units switched off (PCM keeps its weights)
    gating_tiles: int | None = _f(1, 1 << 20, design=True, default=None)  # tiles per power domain
    gate_break_even_ns: float | None = _c()              # idle time beyond which switching off saves energy
    gated_leakage_fraction: float | None = _f(0.0, 1.0, default=None)  # what a switched-off domain still leaks


@dataclass(frozen=True)
class MemorySpec:
    """Off-chip memory and the KV cache of decoders (estimator only; docs/estimator.md, "Decoder inference")."""
    kv_cache_bits: int | None = _f(2, 32, default=None)     # bits per cached K or V element
    # the DRAM of one package, where the KV cache goes when its package's SRAM cannot hold it (kv_cache.py)
    dram_channels_per_package: int | None = _f(1, 1 << 16, design=True, default=None)
    dram_GBps_per_channel: float | None = _c(1e-6)
    dram_pJ_per_byte: float | None = _c()  # off-chip traffic (interface energy, not node-scaled)
    dram_GB_per_package: float | None = _c(design=True)   # capacity: checked (cost.json dram_fits), not priced


@dataclass(frozen=True)
class ChipLinkSpec:
    """The link between chips: activations of consecutive layers placed on different chips cross it."""
    GBps: float | None = _c(1e-6)             # per chip, each direction
    pJ_per_bit: float | None = _c()
    latency_ns: float | None = _c()        # one crossing, before the first byte arrives


@dataclass(frozen=True)
class PackageSpec:
    """Chips share a package in groups; chip_link prices links inside a package, these the board between them."""
    chips_per_package: int | None = _f(1, 1 << 16, design=True, default=None)
    board_link_GBps: float | None = _c(1e-6)      # per chip, each direction
    board_link_pJ_per_bit: float | None = _c()
    board_link_latency_ns: float | None = _c()    # one crossing between packages, before its first byte


@dataclass(frozen=True)
class HardwareSpec:
    name: str = _f()
    description: str = _f()
    technology_nm: float = _f(1, 1000)
    tile: TileSpec = _f()
    device: DeviceSpec = _f()
    dac: DacSpec = _f()
    adc: AdcSpec = _f()
    # std of the additive output noise per MVM output, in normalized output units (a full input through
    # one g_max device reads 1), not relative to the ADC range (docs/analog_mvm.md, step 4)
    output_noise: float = _f(0.0, 1.0)
    digital: DigitalSpec = _f()
    # bit-line wire resistance between adjacent cells (ohm) of the first-order IR-drop model
    # (docs/analog_mvm.md, "IR drop"); 0 = no IR drop
    ir_drop_wire_ohm: float = _f(0.0, 1e3, default=0.0)
    energy: EnergySpec | None = _f(default=None)
    latency: LatencySpec | None = _f(default=None)
    area: AreaSpec | None = _f(default=None)
    static: StaticSpec | None = _f(default=None)
    memory: MemorySpec | None = _f(default=None)
    chip_link: ChipLinkSpec | None = _f(default=None)
    package: PackageSpec | None = _f(default=None)
    block_options: BlockOptionsSpec | None = _f(default=None)  # choices of --accuracy-budget
    # relative uncertainty (1 sigma-like, 0.3 = +-30 %) of cost numbers: "default" for every unlisted one, or a
    # dotted field (energy.read_voltage_V); the estimator propagates them one at a time (docs/estimator.md)
    uncertainty: dict[str, float] | None = _f(0.0, 0.95, default=None, hash=False)
    source_file: str = field(default="", metadata={"internal": True})
    # the overrides load_hw_spec applied (None: none): dotted key -> {"value": as given, "file": the spec
    # file's value or the field's default}; mapping.json records them, so the report needs no spec file
    overrides: Mapping[str, Any] | None = field(default=None, compare=False, metadata={"internal": True})

    @property
    def weights_per_tile(self) -> int:
        return self.tile.rows * self.tile.cols

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        for name in ("source_file", "overrides"):  # internal fields, not the spec's values
            data.pop(name)
        return data


BASELINE_KIND = "digital_baseline"


@dataclass(frozen=True)
class DigitalBaselineSpec:
    """A digital INT8 accelerator that the estimator prices the same model on, for comparison. What it shares with
    the AIMC chip (node, supply, digital primitives, vector lanes, activation SRAM, leakage) is read from the chip's
    spec at estimate time; this spec holds only what differs: the MAC arrays, the weight memory and DRAM."""
    kind: str = _f(choices=(BASELINE_KIND,))
    name: str = _f()
    description: str = _f()
    arrays: int = _f(1, 1 << 10)                 # independent systolic MAC arrays, weight-stationary
    array_rows: int = _f(1, 1 << 16)
    array_cols: int = _f(1, 1 << 16)
    clock_GHz: float = _f(1e-6, 1e3)
    mac_precision: str = _f(choices=("int8",))
    weight_buffer_MiB: float = _f(0.0, COST_MAX)  # weights that fit here stay on chip; otherwise DRAM
    weight_buffer_pJ_per_byte: float = _f(0.0, COST_MAX)  # one weight read, at the chip's digital reference node
    dram_GBps: float = _f(1e-6, COST_MAX)
    dram_pJ_per_byte: float = _f(0.0, COST_MAX)  # off-chip weight traffic (interface energy, not node-scaled)
    # energy of one INT8 MAC at chip scope (operand delivery, control, clock, its share of the chip's power) over
    # the bare multiplier and adder: calibrated on published digital chips (hw_specs/validation.yaml); 1 = bare
    mac_overhead: float = _f(1.0, 1e4, default=1.0)
    # the chip's power beyond its MACs (control, clock, vector units, SRAM, interconnect, leakage) per mm^2 of die at
    # 45 nm, 0.9 V and 1 GHz (scaled as (45 nm / node) x (vdd / 0.9 V)^2 x clock / 1 GHz): calibrated with
    # mac_overhead on published digital chips (hw_specs/validation.yaml); absent: the estimator asks for it
    uncore_W_per_mm2: float | None = _f(0.0, COST_MAX, default=None)
    hbm_GB: float | None = _f(0.0, COST_MAX, default=None)     # DRAM capacity (absent: unbounded)
    area_mm2: float | None = _f(0.0, COST_MAX, default=None)   # the published die (absent: this model's own area)
    tdp_W: float | None = _f(0.0, COST_MAX, default=None)      # what --baseline-scale iso-power divides by
    # serving terms of the decode record (prefill and decode steps; compiler/serving.py): the
    # share of dram_GBps a real kernel reaches, and a fixed time per transformer layer per forward (kernel launches,
    # synchronization); fitted leave-one-out on published measurements (hw_specs/serving_validation.yaml)
    dram_efficiency: float = _f(0.01, 1.0, default=1.0)
    layer_overhead_us: float = _f(0.0, 1e6, default=0.0)
    source_file: str = field(default="", metadata={"internal": True})


def builtin_spec_names() -> list[str]:
    """The chip specs shipped in hw_specs/ (digital baseline specs and the validation set excluded: they have a
    `kind`)."""
    return sorted(p.stem for p in SPEC_DIR.glob("*.yaml") if _file_kind(p) is None)


def _file_kind(path: Path) -> str | None:
    try:
        raw = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, OSError):
        return None
    return raw.get("kind") if isinstance(raw, dict) else None


def load_baseline_spec(path_or_name: str | Path = "digital_int8") -> DigitalBaselineSpec:
    """Load a digital baseline spec (`kind: digital_baseline`) from a YAML path or a name in hw_specs/."""
    candidate = Path(path_or_name)
    path = candidate if candidate.suffix in (".yaml", ".yml") or "/" in str(path_or_name) \
        else SPEC_DIR / f"{path_or_name}.yaml"
    if not path.is_file():
        raise UserError(f"{path}: digital baseline spec not found; the shipped ones are digital_int8 (TPU v4i class) "
                        f"and gpu_h100 (H100 SXM class) ({SPEC_DIR})")
    raw = _read_yaml_mapping(path)
    raw["source_file"] = str(path)
    return _build(DigitalBaselineSpec, raw, "", path)


_PARSED: dict[tuple[str, str], dict] = {}  # (path, the file's text) -> its parse: specs are re-read often


def _read_yaml_mapping(path: Path) -> dict:
    """The spec file as a dict (a fresh copy); one UserError for an unreadable, oversized, non-UTF-8 or hostile
    file."""
    try:
        size = path.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise UserError(f"{path}: {size:,} bytes; a spec file is a few KB (at most {MAX_SPEC_BYTES:,} bytes)")
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise UserError(f"{path}: cannot read the spec file ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start} cannot be decoded); save the spec as UTF-8") \
            from None
    key = (str(path), text)
    if key not in _PARSED:
        if len(_PARSED) > 64:
            _PARSED.clear()
        _PARSED[key] = _parse_yaml_mapping(path, text)
    return copy.deepcopy(_PARSED[key])


def _parse_yaml_mapping(path: Path, text: str) -> dict:
    try:
        raw = load_yaml(text)
    except SpecYamlError as exc:
        raise UserError(f"{path}: {exc}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping of spec sections at the top level, got {type(raw).__name__}")
    return raw


def load_hw_spec(path_or_name: str | Path, overrides: Mapping[str, Any] | None = None) -> HardwareSpec:
    """Load a spec from a YAML path or a built-in name (`pcm_1M`, `hermes`), apply dotted overrides.
    Every problem of the file and the overrides is reported at once, in one UserError."""
    path = _resolve_spec_path(path_or_name)
    raw = _read_yaml_mapping(path)
    if raw.get("kind") is not None:
        what = "digital baseline spec" if raw["kind"] == BASELINE_KIND else "validation set" \
            if raw["kind"] == "validation" else f"{show(raw['kind'])} file"
        raise UserError(f"{path}: is a {what} (kind: {show(raw['kind'])}), not an AIMC chip spec; "
                        f"give a chip spec: {', '.join(builtin_spec_names())}")
    if "overrides" in raw:  # internal: not the file's to set
        raise UserError(f"{path}: unknown field 'overrides'")
    overrides = dict(overrides or {})
    bad_keys = [key for key in overrides if not isinstance(key, str) or not key]
    if bad_keys:
        raise UserError(f"override key {show(bad_keys[0])}: expected a dotted field name such as 'adc.bits'")
    applied = {key: {"value": copy.deepcopy(value), "file": _file_value(raw, key)} for key, value in overrides.items()}
    problems = [problem for key, value in overrides.items() if (problem := _apply_override(raw, key, value))]
    raw["source_file"] = str(path)
    spec = collect(HardwareSpec, raw, "", problems)
    if spec is not BAD:
        problems += _cross_field_problems(spec)
    raise_problems(problems, path)
    return dataclasses.replace(spec, overrides=applied) if applied else spec


def _cross_field_problems(spec: HardwareSpec) -> list[str]:
    """Rules between fields, each in range alone."""
    device, problems = spec.device, []
    if device.t0_s < device.t_read_s:  # sqrt(ln((t + t0 + t_read) / (2 t_read))) needs t0 >= t_read at t = 0
        problems.append(f"field 'device.t0_s' = {device.t0_s:g} is below 'device.t_read_s' = {device.t_read_s:g}: "
                        f"the 1/f read-noise amplitude sqrt(ln((t + t0_s + t_read_s) / (2 t_read_s))) needs "
                        f"t0_s >= t_read_s")
    for name in ("drift_nu_mean", "drift_nu_std"):
        clip = getattr(device, name)
        if clip.lo > clip.hi:
            problems.append(f"field 'device.{name}': lo = {clip.lo:g} is above hi = {clip.hi:g}")
    known = set(cost_number_fields())
    for key in spec.uncertainty or {}:
        if key != "default" and key not in known:
            problems.append(f"field 'uncertainty': {show(key)} is not a cost number of the spec; give 'default' or "
                            f"a dotted field such as 'energy.read_voltage_V' (docs/specs.md)")
    return problems


# Sections whose numbers are component prices, each from a source with an uncertainty (docs/estimator.md).
COST_SECTIONS = ("energy", "latency", "area", "static", "memory", "chip_link", "package")  # and every converter section adc.<name>
_NOT_UNCERTAIN = {"node_nm"}  # where a published figure was measured: a definition, not an estimate


def cost_number_fields(design: bool = True) -> list[str]:
    """Dotted names of every numeric cost field (the ones a spec's `uncertainty` may name): the float fields of
    COST_SECTIONS and their subsections, less the reference nodes of published figures and the dB figures;
    without `design`, also less the architect's choices (they take no default uncertainty)."""
    names: list[str] = []

    def walk(cls: Any, prefix: str) -> None:
        for name, f in public_fields(cls).items():
            base = _unwrap_optional(_hint(cls, name))[1]
            if dataclasses.is_dataclass(base):
                walk(base, f"{prefix}{name}.")
            elif base is float and name not in _NOT_UNCERTAIN and not name.endswith("_dB") \
                    and not (prefix.endswith("digital.") and name == "vdd_V") \
                    and (design or not f.metadata.get("design")):
                names.append(prefix + name)

    for section in COST_SECTIONS + tuple(f"adc.{name}" for name in CONVERTER_SECTIONS):
        cls: Any = HardwareSpec
        for part in section.split("."):
            cls = _unwrap_optional(_hint(cls, part))[1]
        walk(cls, section + ".")
    return names


def _file_value(raw: dict, dotted: str) -> Any:
    """What `dotted` is in the spec file before overrides: the file's value, else the field's default (None
    without one, or for a key that is no field: applying that override fails)."""
    node: Any = raw
    cls: Any = HardwareSpec
    for part in dotted.split("."):
        fields = {f.name: f for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else {}
        if not isinstance(node, dict) or part not in node:
            default = fields[part].default if part in fields else None
            return None if default is dataclasses.MISSING else default
        node = node[part]
        cls = _unwrap_optional(_hint(cls, part))[1] if part in fields else None
    return copy.deepcopy(node)


def parse_override(text: str) -> tuple[str, Any]:
    """Parse a CLI `--set key=value`; the value is read as YAML (6, 0.02, 1e-9, null, false, PWM)."""
    if "=" not in text:
        raise UserError(f"--set {show(text)}: expected KEY=VALUE, e.g. --set adc.bits=6")
    key, value = text.split("=", 1)
    key = key.strip()
    if not key:
        raise UserError(f"--set {show(text)}: the key before '=' is empty; e.g. --set adc.bits=6")
    try:
        parsed = load_yaml(value) if value.strip() else None
    except SpecYamlError as exc:
        raise UserError(f"--set {show(key)}: cannot read the value {show(value)} ({exc})") from None
    return key, parsed


def _resolve_spec_path(path_or_name: str | Path) -> Path:
    candidate = Path(path_or_name)
    try:
        if candidate.suffix in (".yaml", ".yml") or candidate.exists() or "/" in str(path_or_name):
            if not candidate.is_file():
                raise UserError(f"{show(str(candidate))}: spec file not found; built-in specs: "
                                f"{', '.join(builtin_spec_names())}")
            return candidate
        builtin = SPEC_DIR / f"{path_or_name}.yaml"
        if builtin.is_file():
            return builtin
    except OSError as exc:  # a name too long for the filesystem, a path through a file, ...
        raise UserError(f"--hw {show(str(path_or_name))}: cannot be read as a path ({exc.strerror})") from None
    raise UserError(f"unknown hardware spec {show(str(path_or_name))}: give a YAML path or one of "
                    f"{', '.join(builtin_spec_names())}")


def _apply_override(raw: dict, dotted: str, value: Any) -> str | None:
    """Set `dotted` in the raw spec, creating an optional section the file leaves out (`--set energy.vdd_V=0.8`
    on a spec without `energy:`); a problem message for a key that names no field, else None."""
    parts = dotted.split(".")
    node: Any = raw
    cls: Any = HardwareSpec
    for depth, part in enumerate(parts):
        fields = public_fields(cls)
        if part not in fields and not (isinstance(node, dict) and part in node):
            where = ".".join(parts[:depth]) or "the top level"
            return (f"override {show(dotted)}: unknown field {show(part)}; fields of {where}: "
                    f"{', '.join(fields) or '(none: not a section)'}")
        if depth == len(parts) - 1:
            node[part] = value
            return None
        child = _unwrap_optional(_hint(cls, part))[1] if part in fields else None
        if node.get(part) is None and dataclasses.is_dataclass(child):
            node[part] = {}  # a section the file leaves out (or null): the override starts it
        if not isinstance(node.get(part), dict):
            return f"override {show(dotted)}: {show('.'.join(parts[:depth + 1]))} is not a section of the spec"
        node, cls = node[part], child
    return None


def _build(cls: type, data: Any, prefix: str, path: Path) -> Any:
    """An instance of the spec dataclass cls from raw data; one UserError listing every problem."""
    problems: list[str] = []
    built = collect(cls, data, prefix, problems)
    raise_problems(problems, path)
    return built
