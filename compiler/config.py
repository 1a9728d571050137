"""RunConfig: every option of one run, grouped, each default defined here once; `validate()` checks them all
before any work (every error of a config in one message).

The command line (compiler/cli.py) maps its flags onto a RunConfig, the sweep (compiler/dse/) varies one by
`dataclasses.replace`-ing field paths, and `compiler.run(config)` (compiler/runner.py) runs it. OPTIONS is the
one list of the run's options by their keyword name (`compiler.sweep(seq_len=64)`, the sweep's axes and
flags): where each lives in the config, how a text value reads, and its flag.

No torch here, nothing heavier than the standard library at import: `aimc-compile --help` reads the defaults.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from compiler.errors import UserError
from compiler.sentences import DEFAULT_EVAL_SENTENCES  # standard library only

DEFAULT_SEQ_LEN = 128      # tokens per sequence: the one default of the project (models, estimator, passes)
DEFAULT_GEN_LEN = 128      # decode steps priced for a causal LM when gen_len is not given
DEFAULT_DRIFT_TIMES = "1h,1y"  # an hour after programming and a year of drift; more with --drift-times
DEFAULT_CALIBRATION_SIMULATED = 32  # calibration sequences when simulating and calibration is not given
HWA_STEPS = 40             # all-MiniLM-L6-v2: under a minute on a 2-core CPU, most of the gain (docs/hwa.md)
OBJECTIVES = ("balanced", "tiles", "latency", "throughput")  # of --allocation auto (compiler/placement.py)
DEVICES = ("cpu", "cuda")
# upper bounds of the numeric options: far above any real run, low enough that no figure overflows a float
# or an integer field of the JSON outputs (issue 25: --batch 99999999999999999999 reached the writer)
MAX_TOKENS = 1 << 20       # seq_len, gen_len, gen_tokens
MAX_BATCH = 1 << 20        # batch, HWA batch
MAX_SEEDS = 10_000         # chip instances per drift time
MAX_STEPS = 1_000_000      # HWA steps
MAX_TILES = 1 << 31


@dataclass(frozen=True)
class Shapes:
    seq_len: int = DEFAULT_SEQ_LEN
    batch: int = 1                       # sequences per inference, for the cost estimate
    gen_len: int | None = None           # causal LMs: decode steps priced (None: DEFAULT_GEN_LEN, fewer if the
                                         # model's positions end sooner)


@dataclass(frozen=True)
class PlacementOptions:
    allocation: str = "auto"             # auto searches the strategies (compiler/placement.py)
    objective: str | None = None         # None: balanced
    max_tiles: int | None = None
    max_latency_s: float | None = None
    calibration: int | None = None       # sequences for DAC/ADC ranges; None: 32 when simulating, else 0
    pt_opt: bool = True                  # the post-training range optimizations


@dataclass(frozen=True)
class Simulation:
    drift_times: str = DEFAULT_DRIFT_TIMES
    seeds: int = 3                       # programmed chip instances per drift time
    eval_data: str | None = None         # a GLUE-format task directory
    eval_sentences: int = DEFAULT_EVAL_SENTENCES
    gen_tokens: int = 16                 # causal LMs: tokens generated greedily per prompt


@dataclass(frozen=True)
class Hwa:
    data: str | None = None              # GLUE directory or text file; None: built-in sentences
    steps: int = HWA_STEPS
    lr: float = 1e-4
    batch: int = 16
    on_eval_data: bool = False           # allow training on the very examples --eval scores


BUDGET_OBJECTIVES = ("energy", "latency", "tiles")  # what --accuracy-budget minimizes (reports.schema.BUDGET_FIGURES)


@dataclass(frozen=True)
class Budget:
    """--accuracy-budget: choose per block analog bits, redundancy or digital (docs/accuracy_budget.md)."""
    delta: float | None = None           # the largest allowed drop of `metric` from the FP model
    metric: str | None = None            # None: the run's headline metric
    at: str | None = None                # a drift time; None: the last of --drift-times
    objective: str = "energy"


@dataclass(frozen=True)
class Outputs:
    full_mapping: bool = False           # every tile segment in mapping.json (default: up to 10,000)


DEFAULT_BASELINE = "digital_int8"   # the digital baseline spec (hw_specs/): digital_int8 (TPU v4i class), gpu_h100
BASELINE_SCALES = ("as-spec", "iso-area", "iso-power")  # and chips=N


def parse_baseline_scale(text: str) -> tuple[str, int | None]:
    """--baseline-scale: as-spec | iso-area | iso-power | chips=N -> (mode, N or None); one UserError otherwise."""
    value = str(text).strip()
    if value in BASELINE_SCALES:
        return value, None
    if value.startswith("chips="):
        n = value[len("chips="):]
        if n.isdigit() and 1 <= int(n) <= 1 << 16:
            return "chips", int(n)
    raise UserError(f"--baseline-scale {value[:40]!r}: expected one of {', '.join(BASELINE_SCALES)} or chips=N "
                    f"(1 to 65536)")


@dataclass(frozen=True)
class RunConfig:
    """One run: `compiler.run(RunConfig("roberta-base", "pcm_1M"))`. `overrides`: spec values (`--set`), a
    mapping or (key, value) pairs, kept as sorted pairs; `simulation` / `hwa`: None for none."""
    model: str
    hw: str
    overrides: tuple[tuple[str, Any], ...] = ()
    task: str | None = None
    device: str = "cpu"
    shapes: Shapes = field(default_factory=Shapes)
    placement: PlacementOptions = field(default_factory=PlacementOptions)
    simulation: Simulation | None = None
    hwa: Hwa | None = None
    outputs: Outputs = field(default_factory=Outputs)
    baseline: str = DEFAULT_BASELINE     # a digital baseline spec file or built-in name (the cost comparison)
    baseline_scale: str = "as-spec"      # as-spec, iso-area, iso-power or chips=N
    budget: Budget | None = None         # --accuracy-budget (needs simulation)

    def __post_init__(self):
        pairs = self.overrides.items() if isinstance(self.overrides, Mapping) else self.overrides
        object.__setattr__(self, "overrides", tuple((str(k), v) for k, v in pairs))
        object.__setattr__(self, "hw", str(self.hw))
        object.__setattr__(self, "model", str(self.model))

    @property
    def calibration(self) -> int:
        """Calibration sequences this run uses."""
        if self.placement.calibration is not None:
            return self.placement.calibration
        return DEFAULT_CALIBRATION_SIMULATED if self.simulation is not None else 0

    def replace(self, **paths: Any) -> "RunConfig":
        """A copy with fields set by path: `config.replace(**{"shapes.seq_len": 64, "task": None})`."""
        config = self
        for path, value in paths.items():
            config = _replace_path(config, path.split("."), value)
        return config

    def to_dict(self) -> dict:
        return dataclasses.asdict(self) | {"overrides": dict(self.overrides)}

    def validate(self) -> None:
        """Every check that needs neither the spec file nor the model nor torch: all the problems in one
        UserError. (`compiler.run` also checks the task and allocation names, which live with the model loader
        and the allocator: compiler.runner.problems.)"""
        errors = config_errors(self)
        if errors:
            raise UserError("; ".join(errors) if len(errors) > 1 else errors[0])


def _replace_path(obj: Any, path: list[str], value: Any) -> Any:
    name = path[0]
    if not dataclasses.is_dataclass(obj) or name not in {f.name for f in dataclasses.fields(obj)}:
        raise UserError(f"RunConfig has no field {'.'.join(path)!r}")
    if len(path) == 1:
        return dataclasses.replace(obj, **{name: value})
    inner = getattr(obj, name)
    if inner is None:  # simulation or hwa off: set a field of its defaults
        inner = {"simulation": Simulation, "hwa": Hwa, "budget": Budget}[name]()
    return dataclasses.replace(obj, **{name: _replace_path(inner, path[1:], value)})


# --- the options by keyword ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Option:
    path: str                            # field path in RunConfig ("" for simulate: the group itself)
    read: Callable[[str], Any]           # a text value (sweep flags and axes) -> the field's value
    flag: str                            # as `aimc-compile compile` spells it


def _int(text: str) -> int:
    return int(str(text).strip())


def _float(text: str) -> float:
    return float(str(text).strip())


def _text(text: str) -> str:
    return str(text).strip()


def _switch(text: str) -> bool:
    value = str(text).strip().lower()
    if value not in ("on", "off", "true", "false"):
        raise ValueError(text)
    return value in ("on", "true")


OPTIONS: dict[str, Option] = {
    "task": Option("task", _text, "--task"),
    "seq_len": Option("shapes.seq_len", _int, "--seq-len"),
    "batch": Option("shapes.batch", _int, "--batch"),
    "gen_len": Option("shapes.gen_len", _int, "--gen-len"),
    "allocation": Option("placement.allocation", _text, "--allocation"),
    "objective": Option("placement.objective", _text, "--objective"),
    "max_tiles": Option("placement.max_tiles", _int, "--max-tiles"),
    "max_latency": Option("placement.max_latency_s", _float, "--max-latency"),
    "calibration": Option("placement.calibration", _int, "--calibration"),
    "pt_opt": Option("placement.pt_opt", _switch, "--no-pt-opt"),   # the flag turns it off
    "simulate": Option("simulation", _switch, "--simulate"),
    "drift_times": Option("simulation.drift_times", _text, "--drift-times"),
    "seeds": Option("simulation.seeds", _int, "--seeds"),
    "eval_data": Option("simulation.eval_data", _text, "--eval"),
    "eval_sentences": Option("simulation.eval_sentences", _int, "--eval-sentences"),
    "gen_tokens": Option("simulation.gen_tokens", _int, "--gen-tokens"),
    "device": Option("device", _text, "--device"),
    "full_mapping": Option("outputs.full_mapping", _switch, "--full-mapping"),
    "baseline": Option("baseline", _text, "--baseline"),
    "baseline_scale": Option("baseline_scale", _text, "--baseline-scale"),
    "accuracy_budget": Option("budget.delta", _float, "--accuracy-budget"),
    "budget_metric": Option("budget.metric", _text, "--budget-metric"),
    "budget_at": Option("budget.at", _text, "--budget-at"),
    "budget_objective": Option("budget.objective", _text, "--budget-objective"),
}
FLAG_OPTIONS = ("simulate", "full_mapping")  # options without a value on the command line (pt_opt: --no-pt-opt)


def read_option(name: str, value: Any) -> Any:
    """A text value (a sweep flag or axis value) as the option's type; other values as they are."""
    if not isinstance(value, str):
        return value
    if value.strip().lower() in ("null", "none") and name not in ("pt_opt", "simulate", "full_mapping"):
        return None
    try:
        return OPTIONS[name].read(value)
    except ValueError:
        raise UserError(f"{OPTIONS[name].flag}: {value[:60]!r} is not a valid value") from None


def from_options(model: str, hw: str, overrides: Mapping[str, Any] | None = None, **options: Any) -> RunConfig:
    """A RunConfig from the run's options by keyword (OPTIONS; None = the default); `simulate` switches the
    simulation group on. Unknown keywords: a UserError naming them."""
    unknown = sorted(set(options) - set(OPTIONS) - {"no_pt_opt"})
    if unknown:
        raise UserError(f"unknown option(s) {', '.join(unknown)}; expected {', '.join(OPTIONS)}")
    if options.pop("no_pt_opt", None):
        options["pt_opt"] = False
    config = RunConfig(model, hw, overrides or {})
    return with_options(config, **options)


def with_options(config: RunConfig, **options: Any) -> RunConfig:
    """`config` with options set by keyword (None leaves the default)."""
    options = {name: read_option(name, value) for name, value in options.items() if value is not None}
    simulate = options.pop("simulate", None)
    if simulate is not None:
        config = dataclasses.replace(config, simulation=(config.simulation or Simulation()) if simulate else None)
    paths = {OPTIONS[name].path: value for name, value in options.items()}
    if config.simulation is None:
        if paths.get("simulation.eval_data"):
            raise UserError("--eval scores the simulated chip; add --simulate")
        paths = {p: v for p, v in paths.items() if not p.startswith("simulation.")}  # unused without it
    return config.replace(**paths)


# --- the checks -------------------------------------------------------------------------------------------

def _bounded(flag: str, value: Any, least: int, most: int, unit: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        return f"{flag} must be a whole number (got {str(value)[:40]})"
    if value < least:
        return f"{flag} must be >= {least} (got {value}; at least {least} {unit})"
    if value > most:
        return f"{flag} must be <= {most:,} (got {str(value)[:40]}; at most {most:,} {unit})"
    return None


def _positive(flag: str, value: Any, what: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        return f"{flag} must be a positive {what} (got {str(value)[:40]})"
    return None


def _choice(flag: str, what: str, value: Any, choices: tuple[str, ...]) -> str | None:
    if value is None or value in choices:
        return None
    return f"unknown {what} {str(value)[:60]!r}; expected one of {', '.join(choices)}"


def _scale_error(value: Any) -> str | None:
    try:
        parse_baseline_scale(value)
    except UserError as exc:
        return str(exc)
    return None


def _budget_delta(delta: Any) -> str | None:
    if delta is None:
        return "--budget-metric, --budget-at and --budget-objective need --accuracy-budget"
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not 0 <= delta < math.inf:
        return f"--accuracy-budget must be a drop >= 0 in the metric's units (got {str(delta)[:40]})"
    return None


def max_builtin_calibration() -> int:
    """The most calibration sequences the built-in sentences give (passes.ranges pairs them, never a repeat)."""
    from compiler.sentences import CALIBRATION
    return len(CALIBRATION) * (len(CALIBRATION) - 1)


def config_errors(config: RunConfig, tasks: tuple[str, ...] = (), allocations: tuple[str, ...] = ()) -> list[str]:
    """Every problem of `config` that needs neither the spec file nor the model, one line each; the task and
    allocation names against `tasks` and `allocations` when given."""
    s, p, sim, hwa = config.shapes, config.placement, config.simulation, config.hwa
    checks = [
        _bounded("--seq-len", s.seq_len, 2, MAX_TOKENS, "tokens"),
        _bounded("--batch", s.batch, 1, MAX_BATCH, "sequence"),
        _bounded("--gen-len", s.gen_len, 1, MAX_TOKENS, "token"),
        _bounded("--calibration", p.calibration, 0, max_builtin_calibration(), "sequences; more need your own "
                 "texts, compile_model(calibration=[...])"),
        _bounded("--max-tiles", p.max_tiles, 1, MAX_TILES, "tile"),
        _positive("--max-latency", p.max_latency_s, "number of seconds"),
        _choice("--allocation", "allocation", p.allocation, allocations) if allocations else None,
        _choice("--objective", "objective", p.objective, OBJECTIVES),
        _choice("--task", "task", config.task, tasks) if tasks else None,
        _choice("--device", "device", config.device, DEVICES),
        _scale_error(config.baseline_scale),
    ]
    if sim is not None:
        checks += [_bounded("--seeds", sim.seeds, 1, MAX_SEEDS, "chip"),
                   _bounded("--gen-tokens", sim.gen_tokens, 1, MAX_TOKENS, "token"),
                   _bounded("--eval-sentences", sim.eval_sentences, 1, MAX_TOKENS, "sentence")]
    if hwa is not None:
        checks += [_bounded("--hwa-steps", hwa.steps, 1, MAX_STEPS, "step"),
                   _bounded("--hwa-batch", hwa.batch, 1, MAX_BATCH, "sequence"),
                   _positive("--hwa-lr", hwa.lr, "number")]
    budget = config.budget
    if budget is not None:
        checks += [_budget_delta(budget.delta),
                   _choice("--budget-objective", "budget objective", budget.objective, BUDGET_OBJECTIVES),
                   None if sim is not None else "--accuracy-budget measures accuracy by simulation; add --simulate"]
    model = config.model
    if not model or "\0" in model or any(len(part.encode()) > 255 for part in Path(model).parts):
        checks.append(f"model {model[:60]!r}: not a usable name or path (empty, a NUL byte, or a part longer than "
                      f"255 bytes); give a checkpoint directory or a known model name")
    return [c for c in checks if c is not None]


def canonical_json(data: Any) -> str:
    """The one canonical text of a config's identity (sorted keys, no spaces): the sweep's cache key hashes it."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def text_value(value: Any) -> str:
    """A value as `--set` or a flag takes it (YAML): null, true/false, numbers as written."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip()


def to_argv(config: RunConfig) -> list[str]:
    """The `aimc-compile compile` arguments (without --out) that give `config`: its model, spec, overrides and
    every option that differs from its default."""
    argv = [config.model, "--hw", config.hw]
    argv += [arg for key, value in config.overrides for arg in ("--set", f"{key}={text_value(value)}")]
    default = RunConfig(config.model, config.hw)
    if config.simulation is not None:
        default = dataclasses.replace(default, simulation=Simulation())
        argv.append("--simulate")
    for name, option in OPTIONS.items():
        if name == "simulate":
            continue
        value, base = _get(config, option.path), _get(default, option.path)
        if value == base:
            continue
        if name == "pt_opt":
            argv.append("--no-pt-opt")
        elif name in FLAG_OPTIONS:
            argv.append(option.flag)
        else:
            argv += [option.flag, text_value(value)]
    if config.hwa is not None:
        argv.append(f"--hwa-finetune={config.hwa.data or ''}")
        for attribute, flag in (("steps", "--hwa-steps"), ("lr", "--hwa-lr"), ("batch", "--hwa-batch")):
            if getattr(config.hwa, attribute) != getattr(Hwa(), attribute):
                argv += [flag, text_value(getattr(config.hwa, attribute))]
        if config.hwa.on_eval_data:
            argv.append("--hwa-on-eval-data")
    return argv


def _get(config: RunConfig, path: str) -> Any:
    value: Any = config
    for part in path.split("."):
        value = getattr(value, part) if value is not None else None
    return value
