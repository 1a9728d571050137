"""The typed definition of each JSON output: mapping.json, cost.json, accuracy.json, hwa.json.

One definition per file, shared by writer and reader: `compiler/cli.py` checks every file against it before
writing (`check_output`), and the report reads every file through it (`MappingJson.from_json(data, path)`,
...), so a file that does not match gives one SchemaError naming the file, the dotted field and what was
expected. What the fields mean: docs/outputs.md. Standard library only (the checker is reports/typed_json.py):
the compiler imports it, and reading a report must import neither torch nor the compiler.

A field's presence is one of
- required: in every file; the reader refuses a file without it;
- written: the writer always writes it, the reader takes a missing one as its default (older or hand-made
  files): None, "", [] or {};
- optional: only some runs write it (e.g. `results_without_pt_opt`).
Fields a file has beyond these are allowed and ignored.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reports.typed_json import Record, SchemaError, check, optional, required, written

# The schema_version every JSON output carries; a reader refuses files of another version.
SCHEMA_VERSION = 1

# The cost components: the keys of cost.json's energy_by_component_J (chip and baseline) and area by_component_mm2,
# each with its label and color in the report. The one list of them: the estimator prices these names
# (compiler/backends/estimator/components.py gives each its role) and reports/charts.py draws them.
COMPONENT_STYLES: dict[str, tuple[str, str]] = {
    "tile_array": ("tile arrays", "#2f5f98"),
    "dac": ("DACs", "#8db8e3"),
    "adc": ("ADCs", "#e07b39"),
    "local_digital": ("local digital unit", "#d9a441"),
    "control": ("control & clock", "#7f8c9b"),
    "programming": ("programming drivers", "#a0522d"),
    "accumulation": ("partial-sum accumulation", "#e9b63d"),
    "attention_int6": ("INT6 attention", "#8061a9"),
    "attention_int8": ("INT8 attention", "#8061a9"),
    "softmax": ("softmax", "#b07aa1"),
    "layernorm": ("layer norm", "#2a9d8f"),
    "gelu": ("GELU", "#6b8e23"),
    "elementwise": ("element-wise", "#9aa5b1"),
    "digital_matmul": ("digital matmul", "#c44e52"),
    "sram": ("SRAM", "#17becf"),
    "network": ("on-chip network", "#5f6b7a"),
    "chip_link": ("chip-to-chip links", "#4b6584"),
    "static": ("static power", "#3b3b3b"),
    "mac": ("INT8 MACs", "#c44e52"),
    "weight_fetch": ("weight reads", "#7a1f2b"),
    "uncore": ("uncore (all but MACs)", "#6d4c41"),
    "digital_units": ("digital lanes", "#6b8e23"),
    "attention_units": ("attention MACs", "#8061a9"),
}

__all__ = ["SchemaError", "FILES", "check_output", "MappingJson", "CostJson", "AccuracyJson", "HwaJson",
           "SweepJson"]


# --- mapping.json (compiler/writers.py, mapping_json) -------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class TileSlice(Record):
    """The rectangle of one tile holding part of one analog layer; ranges are half-open [start, stop)."""
    tile: int = required(min=0)
    chip: int = written(min=0)
    segment: int = written(min=0)
    rows: tuple[int, int] = required(min=0)
    cols: tuple[int, int] = required(min=0)
    in_features: tuple[int, int] = required(min=0)
    out_features: tuple[int, int] = required(min=0)
    dac_range: float | None = written()
    adc_range: float | None = written()
    copy: int = optional(0, min=0)                   # replication: which copy of the block (absent: 0)
    expert: int | None = optional(min=0)             # stacked experts (mixture of experts): which expert


@dataclass(frozen=True, kw_only=True)
class MappingLayer(Record):
    name: str = required()
    node: str = written("")
    kind: str = required()
    op: str = written("")
    in_features: int | None = written()
    out_features: int | None = written()
    block: str | None = optional()
    experts: int = optional(0, min=0)                # stacked experts: one block per expert (`block`: expert 0's)
    tiles: list[TileSlice] = optional([])


@dataclass(frozen=True, kw_only=True)
class WeightBlock(Record):
    name: str = required()
    layers: list[str] = written([])
    in_features: int = written(min=0)
    out_features: int = written(min=0)
    expert: int | None = optional(min=0)             # stacked experts: the expert whose weight slice it holds


@dataclass(frozen=True, kw_only=True)
class Segment(Record):
    id: int = required()
    tile: int = required(min=0)
    rows: tuple[int, int] = written(min=0)
    cols: tuple[int, int] = written(min=0)
    block: str = written("")
    block_rows: tuple[int, int] = written(min=0)
    block_cols: tuple[int, int] = written(min=0)
    dac_range: float | None = written()
    adc_range: float | None = written()
    col_w_max_range: tuple[float, float] | None = optional()
    copy: int = written(0, min=0)                    # replication: which copy of the block


@dataclass(frozen=True, kw_only=True)
class SegmentRun(Record):
    """`count` segments (ids from `segment`) on consecutive tiles (from `tile`), each on the same rectangle
    `rows` x `cols` of its tile, of one block copy, with the same ranges; piece k holds the block's rows
    block_rows + (k // across) x height and columns block_cols + (k % across) x width (`block_rows`,
    `block_cols`: the first piece's). The compact form of `segments` (reports/mapping_view.py expands it)."""
    segment: int = required(min=0)
    tile: int = required(min=0)
    count: int = required(min=1)
    across: int = required(min=1)
    rows: tuple[int, int] = required(min=0)
    cols: tuple[int, int] = required(min=0)
    block: str = required()
    block_rows: tuple[int, int] = required(min=0)
    block_cols: tuple[int, int] = required(min=0)
    copy: int = written(0, min=0)
    dac_range: float | None = written()
    adc_range: float | None = written()
    col_w_max_range: tuple[float, float] | None = optional()


@dataclass(frozen=True, kw_only=True)
class Strategy(Record):
    """One allocation `--allocation auto` tried (compiler/placement.py): one inference's latency and the
    steady-stream throughput from the estimator's schedule (null without a priced spec)."""
    name: str = required()
    tiles: int = required(min=0)
    latency_s: float | None = written(min=0)
    period_s: float | None = written(min=0)
    throughput_per_s: float | None = written(min=0)
    copies: int = written(0, min=0)                  # block copies added by replication
    replicas: int = optional(1, min=1)               # whole copies of the mapping, each on chips of its own
    bottleneck: str | None = optional()              # the resource that sets the period ("tile 12", "digital units")
    bottleneck_tile: int | None = optional(min=0)    # its tile index, when it is a tile
    chips: int | None = optional(min=1)              # chips the mapping spans (every replica's)
    chosen: bool = written(False)


@dataclass(frozen=True, kw_only=True)
class SpecOverride(Record):
    """One `--set KEY=VALUE`: the value given, and the key's value in the spec file (its default there)."""
    value: Any = required()
    file: Any = written()


@dataclass(frozen=True, kw_only=True)
class BlockOptionRecord(Record):
    """--accuracy-budget: how one weight block runs (compiler/block_options.py)."""
    kind: str = required(choices=("analog", "digital"))
    bits: int = required(min=1)
    copies: int = written(1, min=1)
    label: str = written("")


@dataclass(frozen=True, kw_only=True)
class MappingJson(Record):
    schema_version: int = written()
    model: str = required()
    task: str = written("")
    weights: str = written("unknown")
    weights_source: str = written("")
    head: str | None = optional(choices=("real", "random"))  # checkpoints: "random" = created at load time
    values_loaded: bool = optional(True)             # false: a checkpoint's shapes only (its weights not read)
    hw: str = required()
    hw_file: str = written("")
    hw_spec: dict[str, Any] = written({})
    hw_overrides: dict[str, SpecOverride] = written({})
    allocation: str = written("")
    tile_shape: tuple[int, int] = required(min=1)
    tiles_used: int = required(min=0)
    tiles_available: int = written(min=0)
    tiles_per_chip: int = written(min=0)
    chips_used: int = written(min=0)
    replicas: int = optional(1, min=1)               # whole copies of the mapping on chips of their own
    analog_weights: int = written(min=0)
    mean_utilization: float = written(min=0)
    tile_utilization: dict[int, float] = written({}, min=0)
    blocks: list[WeightBlock] = written([])
    segments: list[Segment] = written([])          # empty in the compact form: segment_runs instead
    segment_runs: list[SegmentRun] = optional([])   # the compact form (models beyond 10,000 segments)
    layers: list[MappingLayer] = required()
    command: str | None = optional()
    objective: str | None = optional()               # --allocation auto only, with the strategies it tried
    strategies: list[Strategy] = optional([])
    block_options: dict[str, BlockOptionRecord] = optional({})  # --accuracy-budget: every block's option


# --- cost.json (compiler/writers.py, cost_json: CostReport.to_json and power) -------------------------------

@dataclass(frozen=True, kw_only=True)
class Totals(Record):
    energy_J: float = written()
    energy_per_inference_J: float = written()
    latency_s: float = written()
    period_s: float = written()
    throughput_inferences_per_s: float = written()
    ops: float = written()
    tops: float = written()
    tops_per_w: float = written()
    power_W: float = written()
    static_power_W: float | None = written()     # leakage of what is powered while the model runs
    area_mm2: float | None = written()           # silicon of every chip the model spans
    tops_per_mm2: float | None = written()
    replicas: int = optional(1, min=1)               # throughput, power and area count every replica


@dataclass(frozen=True, kw_only=True)
class CostLayer(Record):
    name: str = required()
    energy_J: float = required()
    ops: float = written()
    energy_by_component_J: dict[str, float] = written({})


@dataclass(frozen=True, kw_only=True)
class Stage(Record):
    name: str = required()
    layer: str = written("")
    energy_J: float = written()
    busy_s: float = written()


# cost.json lists every tile's busy fraction up to this many tiles; beyond, it holds them as TILE_STEPS steps of
# consecutive tiles (`tile_utilization_steps`): the 70B decoder's 265,128 entries made 9.9 MB
FULL_COST_TILES = 10_000
TILE_STEPS = 2000


@dataclass(frozen=True, kw_only=True)
class TileSteps(Record):
    """Consecutive used tiles in steps of `per_step` (the last one may hold fewer): step i starts at tile
    `first_tile[i]`; `max` and `mean` are the busy fractions of its tiles. What the tile-busy chart draws."""
    tiles: int = required(min=0)                 # used tiles summarized
    per_step: int = required(min=1)
    first_tile: list[int] = required()
    max: list[float] = required()
    mean: list[float] = required()


def tile_steps(util: dict[int, float], steps: int = TILE_STEPS) -> TileSteps:
    """Per-tile busy fractions (tile index -> fraction) as at most `steps` steps of consecutive used tiles."""
    tiles = sorted(util)
    per_step = max(1, -(-len(tiles) // steps))
    chunks = [tiles[i:i + per_step] for i in range(0, len(tiles), per_step)]
    return TileSteps(tiles=len(tiles), per_step=per_step, first_tile=[c[0] for c in chunks],
                     max=[max(util[t] for t in c) for c in chunks],
                     mean=[sum(util[t] for t in c) / len(c) for c in chunks])


@dataclass(frozen=True, kw_only=True)
class Schedule(Record):
    critical_path: list[str] = written([])
    bottleneck: str = written("")
    bottleneck_tile: int | None = optional(min=0)               # the bottleneck's tile index, when it is a tile
    mean_tile_utilization: float = written()
    tile_utilization: dict[int, float] = written({})            # {} in the compact form (above FULL_COST_TILES)
    tile_utilization_steps: TileSteps | None = optional()       # the compact form only

    def busy_steps(self) -> TileSteps | None:
        """The tiles' busy fractions in steps, from either form (None without any)."""
        if self.tile_utilization_steps is not None:
            return self.tile_utilization_steps
        return tile_steps(self.tile_utilization) if self.tile_utilization else None


@dataclass(frozen=True, kw_only=True)
class Peak(Record):
    tiles: int = written()
    ops_per_mvm: float = written()
    mvm_time_s: float = written()
    mvm_energy_J: float = written()
    energy_by_component_J: dict[str, float] = written({})
    tops: float = written()
    tops_per_w: float = written()
    chip_area_mm2: float | None = written()
    tile_area_mm2: float | None = written()
    tops_per_mm2: float | None = written()
    static_power_W: float | None = written()


@dataclass(frozen=True, kw_only=True)
class ValidationFigure(Record):
    chip: str = written("")
    metric: str = written("")
    published: float = written()
    predicted: float = written()
    error: float = written()                      # predicted / published - 1, leave-one-out


@dataclass(frozen=True, kw_only=True)
class Validation(Record):
    """How far off the cost model was on published silicon (hw_specs/validation.yaml; `aimc-compile validate`)."""
    method: str = written("")
    chips: list[str] = written([])                # AIMC chips the chip model was validated on
    figures: list[ValidationFigure] = written([])
    max_abs_error_tops_per_w: float | None = written()
    baseline_chips: list[str] = written([])       # digital chips the baseline was calibrated and validated on
    baseline_figures: list[ValidationFigure] = written([])
    baseline_max_abs_error_tops_per_w: float | None = written()
    warnings: list[str] = written([])             # where this chip lies outside what the validation covers


@dataclass(frozen=True, kw_only=True)
class Baseline(Record):
    name: str = written("")
    hw_file: str = written("")
    energy_J: float = written()
    energy_per_inference_J: float = written()
    latency_s: float = written()
    throughput_inferences_per_s: float = written()
    tops: float = written()
    tops_per_w: float = written()
    weights_in_dram: bool = written()
    weight_bytes: int | None = written()
    area_mm2: float | None = written()
    static_power_W: float | None = written()
    assumptions: list[str] = written([])          # what the comparison assumes, in words
    chips: int = written(1)                       # baseline chips (--baseline-scale)
    scale: str = written("as-spec")               # as-spec, iso-area, iso-power, chips
    bound: str = written("")                      # what limits it: compute or memory bandwidth
    energy_by_component_J: dict[str, float] = written({})
    energy_ratio: float | None = written()
    latency_ratio: float | None = written()
    throughput_ratio: float | None = written()


@dataclass(frozen=True, kw_only=True)
class SeriesPoint(Record):
    batch: int = required()
    seq_len: int = required()
    energy_J: float = required()
    latency_s: float = required()
    baseline_energy_J: float | None = written()
    baseline_latency_s: float | None = written()


@dataclass(frozen=True, kw_only=True)
class Sweep(Record):
    axis: str = required(choices=("seq_len", "batch"))  # a field name of SeriesPoint: the reader looks it up
    points: list[SeriesPoint] = written([])


@dataclass(frozen=True, kw_only=True)
class Area(Record):
    chips: int = written(min=1)
    chip_mm2: float = written()
    tile_mm2: float = written()
    total_mm2: float = written()
    by_component_mm2: dict[str, float] = written({})   # every chip the model spans
    tops_per_mm2: float | None = written()


@dataclass(frozen=True, kw_only=True)
class Static(Record):
    power_W: float = written()                   # mean leakage over an inference (gated where the spec gates)
    energy_J: float | None = written()           # one inference's leakage (energy_by_component_J's `static`)
    share_of_energy: float | None = written()
    decode_step_share: float | None = written()  # causal LMs: the leakage's share of a decode step's energy
    by_component_W: dict[str, float] = written({})
    tiles_used: int = written(min=0)
    tiles: int = written(min=0)                  # of the chips the model spans
    power_gating: bool = written()
    all_on_power_W: float | None = written()     # every tile and unit powered throughout
    wakeups: float | None = written()
    off_fraction: float | None = written()       # share of the domains' time spent switched off
    gated_vs_all_on: float | None = written()
    node_note: str | None = written()            # the leakage figure is from another node, used unscaled


@dataclass(frozen=True, kw_only=True)
class Pulses(Record):
    pricing: str = required(choices=("full_length", "calibrated_mean"))
    mean_fill: float = written(min=0)
    segments_calibrated: int = written(min=0)
    note: str = written("")


@dataclass(frozen=True, kw_only=True)
class SensitivityField(Record):
    """One cost number moved alone to x(1 - u) and x(1 + u): each metric at the two ends."""
    field: str = required()
    value: float = written()
    relative_uncertainty: float = written(min=0)
    energy_J: tuple[float, float] = written()
    latency_s: tuple[float, float] = written()
    area_mm2: tuple[float, float] = written()


@dataclass(frozen=True, kw_only=True)
class Sensitivity(Record):
    method: str = written("")
    ranges: dict[str, tuple[float, float, float]] = written({})  # metric -> (low, estimate, high)
    fields: list[SensitivityField] = written([])                 # largest energy swing first
    fields_total: int = written(min=0)


@dataclass(frozen=True, kw_only=True)
class Links(Record):
    """Activations that crossed between chips in the inference (zero on one chip)."""
    bytes: float = written(min=0)
    energy_J: float = written(min=0)
    busy_s: float = written(min=0)               # link time of every crossing, summed over the sending chips
    crossings: int = written(min=0)
    chip_pairs: dict[str, float] = written({})   # "a->b" -> bytes


@dataclass(frozen=True, kw_only=True)
class DecodeRanges(Record):
    """The AIMC side's uncertainty: the spec's cost numbers moved one at a time (decode.generation_ranges)."""
    ttft_s: tuple[float, float, float] = required()              # (low, value, high)
    tokens_per_s: tuple[float, float, float] = required()
    energy_per_token_J: tuple[float, float, float] = required()
    widest: dict[str, list[str]] = written({})                   # metric -> the fields that swing it most
    fields_varied: int = written(min=0)


@dataclass(frozen=True, kw_only=True)
class DecodeBatch(Record):
    """A whole generation (prefill + gen_len steps) at one batch size."""
    batch: int = required(min=1)
    ttft_s: float = written(min=0)
    prefill_energy_J: float = written(min=0)
    tokens_per_s: float = written(min=0)
    energy_per_token_J: float = written(min=0)
    baseline_ttft_s: float | None = written()
    baseline_prefill_energy_J: float | None = written()
    baseline_tokens_per_s: float | None = written()
    baseline_energy_per_token_J: float | None = written()
    kv_cache_bytes: float = written(min=0)
    kv_location: str = written("")
    kv_placement: KvPlacement | None = optional()
    ranges: DecodeRanges | None = optional()     # the run's batch by default (estimate's decode_range_batches)
    baseline_kv_location: str = written("")
    bound: str = written("")                     # what limits the chip's decode step
    baseline_bound: str = written("")            # what limits the baseline's
    decode_step_latency_s: float | None = optional(min=0)        # the final context's step
    decode_step_bound_s: dict[str, float] = optional({})         # its critical path: compute, memory, links


@dataclass(frozen=True, kw_only=True)
class DecodeContext(Record):
    """One decode step at a context length (the run's batch)."""
    context: int = required(min=1)
    energy_per_token_J: float = required(min=0)
    tokens_per_s: float | None = written()
    baseline_energy_per_token_J: float | None = written()
    baseline_tokens_per_s: float | None = written()
    kv_location: str = written("")
    kv_bytes_by_tier: dict[str, float] = optional({})  # KV bytes the step moves in own SRAM / package SRAM / DRAM
    attention_macs: int = written(min=0)
    link_bytes: float = written(min=0)
    latency_s: float | None = optional(min=0)    # the step, for the whole batch
    bound_s: dict[str, float] = optional({})     # its critical path's seconds: compute, memory (DRAM), links


@dataclass(frozen=True, kw_only=True)
class KvPlacement(Record):
    """Where the KV cache lives at the final context (compiler/backends/estimator/kv_cache.py)."""
    bytes_by_tier: dict[str, float] = written({})   # "sram" (own chip), "package sram", "dram" -> bytes
    layers: int = written(min=0)
    sram_per_chip_bytes: float = written(min=0)
    dram_bytes_by_package: dict[str, float] = written({})
    dram_capacity_bytes_per_package: float | None = written()
    dram_fits: bool = written(True)


@dataclass(frozen=True, kw_only=True)
class KvCache(Record):
    bytes: float = required(min=0)               # at the generation's final context, the run's batch
    context: int = written(min=0)
    bytes_per_token: float = written(min=0)      # one sequence, every layer, K and V
    layers: int = written(min=0)
    kv_heads: int = written(min=0)
    head_dim: int = written(min=0)
    bits: int = written(min=0)
    bits_source: str = written("")
    # sram: every layer's on its own chip; package sram: some on another chip of the package; sram+dram: a partial
    # spill to the packages' DRAM; dram: all of it there
    location: str = required(choices=("sram", "package sram", "sram+dram", "dram"))
    sram_bytes: float = written(min=0)           # activation SRAM of the chips the model spans
    baseline_location: str = written("")
    placement: KvPlacement | None = optional()


@dataclass(frozen=True, kw_only=True)
class Decode(Record):
    """A causal LM: prefill of the seq_len prompt, then gen_len tokens decoded one at a time (docs/estimator.md)."""
    batch: int = required(min=1)
    seq_len: int = required(min=1)
    gen_len: int = required(min=1)
    ttft_s: float = required(min=0)
    prefill_energy_J: float = written(min=0)
    prefill_attention_macs: int = written(min=0)
    prefill_link_bytes: float = written(min=0)
    prefill_link_energy_J: float = written(min=0)
    tokens_per_s: float = required(min=0)
    energy_per_token_J: float = required(min=0)
    ranges: DecodeRanges | None = optional()     # null without the sensitivity
    decode_step_link_bytes: float = written(min=0)
    decode_step_link_energy_J: float = written(min=0)
    decode_step_energy_by_component_J: dict[str, float] = written({})  # the last step; sums to its energy
    decode_step_energy_J: float = written(min=0)
    decode_step_latency_s: float = written(min=0)
    decode_step_layer_latency_s: dict[str, float] = written({})   # layer -> its span within the step
    decode_step_bound_s: dict[str, float] = optional({})          # its critical path: compute, memory, links
    bound: str = written("")
    baseline_bound: str = written("")
    baseline_chips: int = written(1)
    baseline_ttft_s: float | None = written()
    baseline_prefill_energy_J: float | None = written()
    baseline_tokens_per_s: float | None = written()
    baseline_energy_per_token_J: float | None = written()
    baseline_weights: str = written("")
    baseline_weight_bytes: int = written(min=0)
    lm_head_last_position_only: list[str] = written([])
    kv_cache: KvCache | None = written()
    by_batch: list[DecodeBatch] = written([])
    contexts: list[DecodeContext] = written([])
    assumptions: list[str] = written([])


@dataclass(frozen=True, kw_only=True)
class CostJson(Record):
    schema_version: int = written()
    model: str = required()
    hw: str = required()
    hw_file: str = written("")
    batch: int = required(min=1)
    seq_len: int = required(min=1)
    has_sequence_dim: bool = written()
    totals: Totals | None = written()
    energy_by_component_J: dict[str, float] = written({})
    layers: list[CostLayer] = written([])
    stages: list[Stage] = written([])
    counts: dict[str, float] = written({})
    action_energies_J: dict[str, float] = written({})
    schedule: Schedule | None = written()
    peak: Peak | None = written()
    baseline: Baseline | None = written()
    sweep: Sweep | None = written()
    area: Area | None = written()
    static: Static | None = written()
    pulses: Pulses | None = written()
    sensitivity: Sensitivity | None = written()   # null when the estimate ran without it
    # added by compiler/cli.py (reports/power.py): energy_by_component_J over totals.period_s
    power_by_component_W: dict[str, float] = optional({})
    # added by compiler/cli.py with --allocation auto: the strategies tried, as in mapping.json
    strategies: list[Strategy] = optional([])
    links: Links | None = optional()              # chip-to-chip traffic of the inference
    decode: Decode | None = optional()            # causal LMs: prefill and decode
    validation: Validation | None = optional()    # the cost model against published silicon


# --- accuracy.json (compiler/writers.py, accuracy_json, from compiler/evaluation/accuracy.py) ---------------

@dataclass(frozen=True, kw_only=True)
class DriftTime(Record):
    label: str = required()
    seconds: float = required(min=0)


@dataclass(frozen=True, kw_only=True)
class EvalInfo(Record):
    source: str = written("")
    glue_task: str | None = written()
    examples: int = written()
    batches: int = written()
    batch_size: int = written()
    max_seq_len: int | None = written()  # null for the compile example inputs (no truncation)


@dataclass(frozen=True, kw_only=True)
class Metric(Record):
    description: str = written("")
    higher_is_better: bool = written(True)


@dataclass(frozen=True, kw_only=True)
class FpReference(Record):
    task: dict[str, float | None] | None = written()
    model: str | None = optional()


@dataclass(frozen=True, kw_only=True)
class DriftResult(Record):
    """One drift time: metric name -> mean, std (null with one seed), ci95 (half-width of the 95 % confidence
    interval of the mean over seeds, Student's t; null with one seed) and per-seed values over the seeds."""
    label: str = required()
    seconds: float = required(min=0)
    mean: dict[str, float | None] = written({})
    std: dict[str, float | None] = written({})
    ci95: dict[str, float | None] = written({})  # {} in files from before it was recorded
    per_seed: dict[str, list[float | None]] = written({})
    # the 95 % interval of the mean inside the metric's range (a bounded metric's interval on a transformed
    # scale, compiler/evaluation/accuracy.py bounded_interval); {} in files from before it was recorded
    low: dict[str, float | None] = written({})
    high: dict[str, float | None] = written({})


@dataclass(frozen=True, kw_only=True)
class DecodingRecord(Record):
    """Noisy decoding of a causal LM (compiler/evaluation/decoding.py): next-token fidelity, teacher-forced, and
    greedy generation with the chip's KV cache, against the FP model; metrics per drift time over the seeds."""
    kv_cache: str = written("")                  # how the cache is simulated
    source: str = written("")                    # the evaluation sequences
    sequences: int = written(min=0)
    tokens: int = written(min=0)                 # positions scored for next-token fidelity
    max_context: int = written(min=1)
    prompts: int = written(min=0)
    prompt_tokens: int = written(min=0)
    gen_tokens: int = written(min=1)
    metrics: dict[str, Metric] = written({})
    results: list[DriftResult] = required()
    fp_generation: list[list[int]] = written([])  # the FP model's greedy tokens per prompt
    timing_s: dict[str, float] = written({})
    weights_note: str | None = optional()
    elapsed_s: float = written()


@dataclass(frozen=True, kw_only=True)
class SimulatorInfo(Record):
    """Which implementation simulated the chips: the same model and distributions either way, but only runs
    with the same random_stream draw the same numbers for the same seeds (docs/simulator.md)."""
    backend: str = required(choices=("native", "torch"))
    random_stream: str = written("")
    native_unavailable: str | None = optional()  # why a CPU run fell back to torch ops


@dataclass(frozen=True, kw_only=True)
class BudgetSensitivity(Record):
    """One block with one option, the others at the reference: paired difference of the drop over the seeds."""
    block: str = required()
    option: str = required()
    delta_drop: float = required()
    delta_drop_ci95: float | None = written()
    delta_cost: float = required()
    sram_macros: float = written(0.0, min=0)
    per_seed: list[float] = written([])


@dataclass(frozen=True, kw_only=True)
class BudgetPoint(Record):
    """A verified assignment (a try of the search, or a uniform mapping): predicted and measured drop, its price."""
    predicted_drop: float = required()
    measured_drop: float = required()
    measured_ci95: float | None = written()
    measured_upper: float = required()
    per_seed: list[float] = written([])
    energy_J: float = required(min=0)
    latency_s: float = required(min=0)
    tiles: float = required(min=0)
    attempt: int | None = optional(min=0)
    limit: float | None = optional()
    predicted_ci95: float | None = optional()
    predicted_cost: float | None = optional()
    met: bool | None = optional()
    picks: list[int] = optional([])
    options: dict[str, str] = optional({})
    name: str | None = optional()
    option: str | None = optional()
    meets_budget: bool | None = optional()
    fits_sram: bool | None = optional()
    sram_note: str | None = optional()


@dataclass(frozen=True, kw_only=True)
class FrontierPoint(Record):
    cost: float = required()
    predicted_drop: float = required()


# --accuracy-budget's objective -> the figure of a verified point (BudgetPoint) that it minimizes
BUDGET_FIGURES = {"energy": "energy_J", "latency": "latency_s", "tiles": "tiles"}


@dataclass(frozen=True, kw_only=True)
class BudgetRecord(Record):
    """--accuracy-budget (compiler/budget/search.py; docs/accuracy_budget.md)."""
    metric: str = required()
    higher_is_better: bool = written(True)
    fp_value: float | None = written()
    at: DriftTime = required()
    delta: float = required(min=0)
    objective: str = required(choices=tuple(BUDGET_FIGURES))
    options: list[str] = written([])
    reference_option: str = written("")
    sensitivity_seeds: list[int] = written([])
    verify_seeds: list[int] = written([])
    reference_drop: float = required()
    reference_drop_ci95: float | None = written()
    reference_cost: float = required()
    sram_macros_free: float | None = written()
    sensitivity: list[BudgetSensitivity] = required()
    tries: list[BudgetPoint] = required()
    chosen: int | None = written(min=0)             # index into tries; null when no try met the budget
    met: bool = required()
    uniform: list[BudgetPoint] = written([])
    frontier: list[FrontierPoint] = written([])
    exact: bool = written(True)
    simulations: int = written(0, min=0)
    sensitivity_simulations: int = written(0, min=0)
    pricings: int = written(0, min=0)
    sensitivity_seconds: float = written(0.0, min=0)
    seconds: float = written(0.0, min=0)
    block_options: dict[str, str] = written({})


@dataclass(frozen=True, kw_only=True)
class AccuracyJson(Record):
    schema_version: int = written()
    model: str = written("")
    task: str = written("")
    weights: str = written("")
    weights_note: str | None = optional()
    hw: str = written("")
    hw_file: str = written("")
    device: str = written("")
    simulator: SimulatorInfo | None = written()  # null in files from before it was recorded
    seeds: list[int] = written([])
    drift_times: list[DriftTime] = written([])
    eval: EvalInfo | None = written()
    output: str = written("")
    metrics: dict[str, Metric] = written({})
    fp_reference: FpReference | None = written()
    results: list[DriftResult] = required()
    pt_optimization: bool | None = optional()
    results_without_pt_opt: list[DriftResult] | None = optional()
    hwa_finetune: bool = optional(False)
    results_without_hwa: list[DriftResult] | None = optional()
    decoding: DecodingRecord | None = optional()  # causal LMs: compiler/evaluation/decoding.py
    budget: BudgetRecord | None = optional()      # --accuracy-budget: compiler/budget
    notes: list[str] = written([])
    elapsed_s: float = written()


# --- hwa.json (compiler/writers.py, hwa_json, from compiler.training.finetune.HwaSummary) -------------------

@dataclass(frozen=True, kw_only=True)
class HwaJson(Record):
    model: str = written("")
    checkpoint: str = written("")
    objective: str = written("")
    hardware_aware: bool = written()
    data: str = written("")
    samples: int = written()
    steps: int = written()
    lr: float = written()
    batch_size: int = written()
    seq_len: int = written()
    seed: int = written()
    device: str = written("")
    noise: dict[str, Any] | None = written()
    losses: list[float] = written([])
    seconds: float = written()
    placement: dict[str, Any] | None = optional()  # the placement it trained through


# --- sweep.json (compiler/dse/summary.py: the points' figures and the Pareto front) -------------------------

@dataclass(frozen=True, kw_only=True)
class SweepAxis(Record):
    name: str = required()                           # as given: "adc.bits", "tile.rows+tile.cols", "allocation"
    kind: str = required(choices=("spec", "option"))
    keys: list[str] = written([])                    # the spec keys it sets (several joined by +)
    coupled: bool = written(False)                   # each value sets each key its own item ("256,256,2048")
    values: list[str] = required()


@dataclass(frozen=True, kw_only=True)
class SweepAccuracy(Record):
    """The point's headline accuracy metric at one drift time, over its seeds (as in accuracy.json)."""
    label: str = required()
    seconds: float = required(min=0)
    mean: float | None = written()
    std: float | None = written()
    ci95: float | None = written()
    low: float | None = written()                    # the interval inside the metric's range (accuracy.json)
    high: float | None = written()
    per_seed: list[float | None] = written([])       # in the order of the point's `seeds`


@dataclass(frozen=True, kw_only=True)
class PairedDifference(Record):
    """The point's headline metric minus the reference's, per shared seed, at the longest drift time: mean and
    Student's t 95 % interval over the seeds (compiler/dse/paired.py); resolved: the interval excludes 0."""
    n: int = required(min=1)
    mean: float = required()
    ci95: float | None = written()
    low: float | None = written()
    high: float | None = written()
    resolved: bool = written(False)


@dataclass(frozen=True, kw_only=True)
class Versus(Record):
    """A point against the sweep's reference point."""
    accuracy: PairedDifference | None = written()
    energy_ratio: float | None = written()
    latency_ratio: float | None = written()
    area_ratio: float | None = written()


@dataclass(frozen=True, kw_only=True)
class SweepRun(Record):
    """One point: its axis values, whether it was computed, taken from the cache or failed, and its figures."""
    name: str = required()                           # its folder under points/
    key: str = required()                            # sha256 of model, resolved spec, options, code version
    values: dict[str, str] = required()              # axis name -> value
    labels: list[dict[str, str]] = written([])       # every label (axis values) that resolved to this configuration
    status: str = required(choices=("computed", "cached", "failed"))
    error: str | None = written()
    seconds: float | None = written()                # compute time (null when cached)
    command: str = written("")                       # the single run this point is
    dir: str = written("")
    report: str | None = written()                   # relative to sweep.json
    model: str = written("")
    tiles: int | None = written()
    chips: int | None = written()
    energy_J: float | None = written()               # per inference
    latency_s: float | None = written()
    tops_per_w: float | None = written()
    area_mm2: float | None = written()
    # the estimator's range of each (cost.json sensitivity.ranges; energy per inference): null without one
    energy_low_J: float | None = written()
    energy_high_J: float | None = written()
    latency_low_s: float | None = written()
    latency_high_s: float | None = written()
    area_low_mm2: float | None = written()
    area_high_mm2: float | None = written()
    # a causal LM's serving figures (cost.json decode): null for an encoder
    ttft_s: float | None = written()
    tokens_per_s: float | None = written()
    energy_per_token_J: float | None = written()
    # their ranges (cost.json decode.ranges, the AIMC side at the run's batch): null without them
    ttft_low_s: float | None = written()
    ttft_high_s: float | None = written()
    tokens_per_s_low: float | None = written()
    tokens_per_s_high: float | None = written()
    energy_per_token_low_J: float | None = written()
    energy_per_token_high_J: float | None = written()
    metric: str | None = written()                   # the accuracy metric of `accuracy`
    higher_is_better: bool = written(True)
    accuracy: list[SweepAccuracy] = written([])
    seeds: list[int] = written([])                   # the chip instances simulated (shared by every point)
    pareto: bool = written(False)                    # not dominated by a resolved difference (docs/sweep.md)
    pareto_means: bool = written(False)              # on the front of energy vs the accuracy means
    better_than: list[str] = written([])             # the points (names) whose accuracy this one beats, resolved
    versus: Versus | None = written()                # against the reference point (null: it is the reference)
    derived: dict[str, str] = written({})            # spec keys the sweep derived for it (iso-capacity: tile.count)


@dataclass(frozen=True, kw_only=True)
class SweepJson(Record):
    schema_version: int = written()
    hw: str = required()
    models: list[str] = written([])
    axes: list[SweepAxis] = required()
    simulate: bool = written(False)
    seeds: int | None = written()
    executor: str = written("")                      # where the points ran, in words
    points: list[SweepRun] = required()
    elapsed_s: float = written()
    reference: str | None = written()                # the reference point's name (its folder)
    iso_capacity: bool = written(False)              # tile.count derived so every chip holds the same weights
    summary: list[str] = written([])                 # what the sweep says, in lines (sweep.html, the terminal)


FILES: dict[str, type[Record]] = {"mapping.json": MappingJson, "cost.json": CostJson,
                                  "accuracy.json": AccuracyJson, "hwa.json": HwaJson}
# sweep.json is a sweep folder's, not a run's (the files of a run are FILES): checked by compiler/dse/run.py


def check_output(name: str, data: Any) -> None:
    """Check what a writer is about to write as `name` (a key of FILES): every required and written field
    present, every value of its type. Give it the data as JSON reads it back. Raises SchemaError."""
    check(FILES[name], data, name, writing=True)


# --- rules the sweep's writer (compiler/dse/summary.py) and its renderer (reports/sweep.py) share ----------

# the metric a run is ranked by: the first of these it has (the report's headline, the sweep's accuracy axis)
HEADLINE_METRICS = ("task_accuracy", "task_f1", "task_matthews_corr", "task_pearson", "task_spearman",
                    "top1_agreement", "embedding_cosine_mean", "retrieval_agreement", "output_rel_l2")


def final_accuracy(row: "dict | SweepRun") -> float | None:
    """The headline metric's mean at the longest drift time of a sweep point (a sweep.json row or its record),
    or None."""
    accuracy = row["accuracy"] if isinstance(row, dict) else [vars(a) for a in row.accuracy]
    simulated = [a for a in accuracy if a["mean"] is not None]
    return max(simulated, key=lambda a: a["seconds"])["mean"] if simulated else None


def pareto_front(points: list[tuple[float, float]], lower_y_is_better: bool = False) -> list[int]:
    """Indices of the points (x to minimize, y to maximize, or minimize with `lower_y_is_better`) that no
    other point dominates."""
    sign = -1.0 if lower_y_is_better else 1.0
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any(x2 <= x and sign * y2 >= sign * y and (x2 < x or sign * y2 > sign * y)
                        for j, (x2, y2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return front
