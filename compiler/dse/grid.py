"""The grid of a sweep: axes, points, and the checks every point passes before anything runs.

A point is one RunConfig (compiler/config.py): the sweep's base config with the point's value of each axis
set (a spec key as an override, an option at its field path). `compiler.run(config)` is what a point does, so
a point's figures are those of the single run; `aimc-compile compile` with the point's command line (its
config as flags, `to_argv`) writes the same files.

Points are identified by their resolved configuration (model content, resolved spec, options, code version):
two labels that resolve to the same configuration (`device.t0_s=20,20.0`) are one point, computed once, listed
once with every label.

Axes: `--grid KEY=V1,V2,...` where KEY is a dotted spec key (`adc.bits`), several spec keys that take the same
value joined by `+` (`tile.rows+tile.cols=256,512`), `model`, or an option of compiler/config.py's OPTIONS by
its flag name (`allocation=fused,packed`, `seq-len=64,128`, `pt-opt=on,off`).
A YAML grid file maps the same keys to lists (`adc.bits: [6, 7, 8]`), optionally under a `grid:` key beside
`models:`. The points are the Cartesian product of the axes, the models first.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compiler.config import OPTIONS, RunConfig, canonical_json, text_value, to_argv, with_options
from compiler.errors import UserError

# option axes: name in --grid -> the option of compiler/config.py ("model" is the config's model)
OPTION_AXES = {"model": "model", **{"pt-opt" if name == "pt_opt" else option.flag.removeprefix("--"): name
                                    for name, option in OPTIONS.items()}}

MAX_POINTS = 10_000  # a grid this large is a typo more often than a plan
CAPACITY_KEYS = ("tile.rows", "tile.cols", "tile.count")  # the weights a chip holds: rows x cols x count


@dataclass(frozen=True)
class Axis:
    name: str                  # as written: "adc.bits", "tile.rows+tile.cols", "allocation"
    kind: str                  # "spec" or "option"
    values: tuple[str, ...]    # as the command line takes them; a coupled axis: one value per key, joined by ","
    coupled: bool = False      # `a+b=1,2;3,4`: each value sets each key its own value (else all keys one value)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.name.split("+")) if self.kind == "spec" else (self.name,)

    def settings(self, value: str) -> dict[str, str]:
        """key -> value (as written) that one of this axis's values sets."""
        if self.coupled:
            return dict(zip(self.keys, value.split(",")))
        return {key: value for key in self.keys}


@dataclass
class GridPoint:
    """One configuration of the sweep: the labels (axis values) that produced it, its RunConfig, and its
    identity (the cache key, the folder)."""
    values: dict[str, str]             # axis name -> value of the first label ("model" first when several)
    config: RunConfig                  # with the axis options applied once checked (check_point)
    options: dict[str, str] = field(default_factory=dict)       # the point's option values, as written
    labels: list[dict[str, str]] = field(default_factory=list)  # every label that resolved to this configuration
    key: str = ""                      # content hash: model, resolved spec, options, code version
    name: str = ""                     # its folder under points/: a readable slug and the key
    identity: dict[str, Any] = field(default_factory=dict)      # what the key hashes, but the code version
    folder: Path | None = None         # its run folder, once the sweep folder is known
    report: bool = True                # whether its run writes report.html
    checked: Any = None                # runner.check's result (the resolved spec, ...): the run does not check again
    derived: dict[str, str] = field(default_factory=dict)        # spec keys the sweep derived (iso-capacity)

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.values.items()) or "the one point"

    @property
    def simulated(self) -> bool:
        return self.config.simulation is not None

    def command(self) -> str:
        """The single run this point is: `aimc-compile compile ...` with its folder as --out."""
        import shlex
        out = ["--out", str(self.folder)] if self.folder is not None else []
        return "aimc-compile compile " + shlex.join(to_argv(self.config) + out)


def parse_axis(text: str) -> Axis:
    """`KEY=V1,V2,...` or, keys that move together, `K1+K2=A1,A2;B1,B2` -> an Axis; a UserError naming what
    is wrong."""
    key, sep, values = str(text).partition("=")
    key = key.strip().replace("_", "-") if key.strip().replace("_", "-") in OPTION_AXES else key.strip()
    if ";" in values and "+" in key:  # coupled: one group per value, one item per key
        items = [[v.strip() for v in group.split(",")] for group in values.split(";")]
        ok = sep and key and items and all(all(group) for group in items)
    elif ";" in values:  # one key, values holding commas (a list: [0.3,2,-1];[0.26,1.9,-1.1])
        items = [v.strip() for v in values.split(";")]
        ok = sep and key and items and all(items)
    else:
        items = [v.strip() for v in values.split(",")] if sep else []
        ok = sep and key and items and all(items)
    if not ok:
        raise UserError(f"--grid {text[:80]!r}: expected KEY=V1,V2,... (e.g. --grid adc.bits=6,7,8), or keys that "
                        f"move together K1+K2=A1,A2;B1,B2 (e.g. "
                        f"tile.rows+tile.cols+tile.count=256,256,2048;512,512,512)")
    return make_axis(key, items, f"--grid {text[:60]!r}")


_SPEC_KEY = re.compile(r"^[^\s=+,;]+$")  # what the spec loader takes as a key is its business (load_hw_spec)


def make_axis(key: str, values: list, where: str) -> Axis:
    """An axis from its key and values. A key that is not an option is a spec key: whether the spec has that
    field is the spec loader's to say (the points are checked with it before anything runs), so every key
    `--set` accepts is an axis. Keys joined by + with values that are lists (or tuples) move together, one
    item per key: `{"tile.rows+tile.cols+tile.count": [[256, 256, 2048], [512, 512, 512]]}`."""
    key = key.replace("_", "-") if key.replace("_", "-") in OPTION_AXES else key  # seq_len from Python
    parts = key.split("+")
    coupled = len(parts) > 1 and bool(values) and all(isinstance(v, (list, tuple)) for v in values)
    if key in OPTION_AXES:
        kind = "option"
    elif all(_SPEC_KEY.match(part) and part not in OPTION_AXES for part in parts):
        kind = "spec"
    else:
        raise UserError(f"{where}: {key[:60]!r} is neither a spec key as --set takes it (adc.bits, energy.vdd_V; "
                        f"several joined by +: tile.rows+tile.cols) nor an option ({', '.join(OPTION_AXES)})")
    if not values:
        raise UserError(f"{where}: axis {key} has no values")
    if coupled:
        if any(len(v) != len(parts) for v in values):
            raise UserError(f"{where}: axis {key} couples {len(parts)} keys: each value needs {len(parts)} items "
                            f"(got {'; '.join(','.join(text_value(x) for x in v) for v in values)})")
        shown = tuple(",".join(text_value(x) for x in v) for v in values)
        if any("," in text_value(x) for v in values for x in v):
            raise UserError(f"{where}: axis {key}: a coupled value holds a comma")
    elif len(parts) > 1 and any(isinstance(v, (list, tuple)) for v in values):
        raise UserError(f"{where}: axis {key}: keys that move together take a list per value, one item per key "
                        f"([[a1, a2], [b1, b2]])")
    else:  # a list value of one key is that key's value (a YAML list)
        shown = tuple(text_value(v) for v in values)
    if len(set(shown)) != len(shown):
        raise UserError(f"{where}: axis {key} repeats a value ({'; '.join(shown)})")
    if key == "pt-opt" and not set(shown) <= {"on", "off"}:
        raise UserError(f"{where}: pt-opt takes on and off (got {', '.join(shown)})")
    return Axis(key, kind, shown, coupled)


def load_grid_file(path: str | Path) -> tuple[list[str], list[Axis]]:
    """(models, axes) of a YAML grid file: `{KEY: [values]}`, or `{models: [...], grid: {KEY: [values]}}`."""
    from compiler.spec_check import SpecYamlError, load_yaml
    path = Path(path)
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"--grid-file {path}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    except SpecYamlError as exc:
        raise UserError(f"--grid-file {path}: {exc}") from None
    if isinstance(data, dict) and "grid" in data:
        models, grid = data.get("models", []), data["grid"]
        extra = set(data) - {"models", "grid"}
    else:
        models, grid, extra = [], data, set()
    if extra or not isinstance(grid, dict) or not isinstance(models, list) or \
            not all(isinstance(m, str) for m in models):
        raise UserError(f"--grid-file {path}: expected {{KEY: [values]}}, or `models: [names]` and "
                        f"`grid: {{KEY: [values]}}`")
    axes = []
    for key, values in grid.items():
        values = values if isinstance(values, list) else [values]
        axes.append(make_axis(str(key), values, f"--grid-file {path}"))
    return models, axes


def expand(models: list[str], base: RunConfig, axes: list[Axis], iso_capacity: bool = False) -> list[GridPoint]:
    """Every point of the grid, in order (the last axis varies fastest): its values and its config.
    `iso_capacity`: a point that sets tile.rows or tile.cols but not tile.count gets the tile count that keeps
    the weights a chip holds (rows x cols x count) those of the base spec (the spec with `--set` applied),
    rounded up (iso_capacity_count)."""
    import itertools
    axes = list(axes)
    names = [a.name for a in axes]
    if len(set(names)) != len(names):
        raise UserError(f"an axis is given twice: {', '.join(sorted({n for n in names if names.count(n) > 1}))}")
    if "model" in names and models:
        raise UserError("give the models either as MODEL arguments or as a model axis, not both")
    model_axis = next((a for a in axes if a.name == "model"), None)
    if model_axis is None and len(models) > 1:
        model_axis = Axis("model", "option", tuple(models))
        axes.insert(0, model_axis)
    if model_axis is None and not models:
        raise UserError("give a MODEL (or a model axis)")
    count = 1
    for axis in axes:
        count *= len(axis.values)
    if count > MAX_POINTS:
        raise UserError(f"the grid has {count:,} points; at most {MAX_POINTS:,} (split the sweep)")
    base = dataclasses.replace(base, model=models[0] if models else "")
    points = []
    for combination in itertools.product(*(a.values for a in axes)):
        values = dict(zip((a.name for a in axes), combination))
        overrides, options, config = dict(base.overrides), {}, base
        for axis, value in zip(axes, combination):
            if axis.kind == "spec":
                overrides.update({key: _yaml_value(text) for key, text in axis.settings(value).items()})
            elif axis.name == "model":
                config = dataclasses.replace(config, model=value)
            else:
                options[OPTION_AXES[axis.name]] = value
        points.append(GridPoint(values, dataclasses.replace(config, overrides=overrides), options))
    if iso_capacity:
        capacity = _base_capacity(base)
        for point in points:
            overrides = dict(point.config.overrides)
            if "tile.count" not in overrides and ("tile.rows" in overrides or "tile.cols" in overrides):
                rows = int(overrides.get("tile.rows", capacity[0]))
                cols = int(overrides.get("tile.cols", capacity[1]))
                count = iso_capacity_count(capacity, rows, cols)
                point.derived = {"tile.count": str(count)}
                point.config = dataclasses.replace(point.config, overrides={**overrides, "tile.count": count})
    return points


def iso_capacity_count(base: tuple[int, int, int], rows: int, cols: int) -> int:
    """Tiles per chip of rows x cols that hold at least what `base` (rows, cols, count) holds: the ceiling of
    base rows x cols x count / (rows x cols)."""
    if rows < 1 or cols < 1:
        raise UserError(f"iso-capacity: tile.rows and tile.cols must be >= 1 (got {rows}, {cols})")
    return -(-base[0] * base[1] * base[2] // (rows * cols))


def _base_capacity(base: RunConfig) -> tuple[int, int, int]:
    """(tile.rows, tile.cols, tile.count) of the sweep's spec with its `--set` overrides."""
    from compiler.hw_spec import load_hw_spec
    hw = load_hw_spec(base.hw, dict(base.overrides))
    return hw.tile.rows, hw.tile.cols, hw.tile.count


def _yaml_value(text: str) -> Any:
    """An axis value of a spec key as `--set` reads it (YAML: 6, 0.02, 1e-9, null, false, PWM)."""
    from compiler.hw_spec import parse_override
    return parse_override(f"x={text}")[1]


def check_point(point: GridPoint, checks: "Checks") -> None:
    """Every check `aimc-compile compile` makes before it loads the model, plus that the model resolves; sets
    point.config (the options applied) and point.identity (what the result depends on, but the code version)."""
    config = point.config = with_options(point.config, **point.options)
    point.options = {}
    if config.hwa is not None:
        raise UserError("--hwa-finetune is not swept: fine-tune once, then sweep the checkpoint directory")
    checked = point.checked = checks.check(config)
    point.identity = {
        "model": checks.model_identity(config.model), "spec": checked.hw.to_dict(),
        "eval": _file_identity(config.simulation.eval_data) if config.simulation and config.simulation.eval_data
        else None,
        "config": {k: v for k, v in config.to_dict().items() if k not in ("model", "hw", "overrides")}}


class Checks:
    """The per-point checks of a sweep, with what does not change between points done once: the digital
    baseline's spec, each model's identity, the spec's load and checks per distinct spec and overrides (points
    that differ in options only share them)."""

    def __init__(self):
        self._models: dict[str, dict] = {}
        self._specs: dict[str, tuple] = {}
        self._baseline = None

    def baseline(self):
        from compiler.hw_spec import load_baseline_spec
        if self._baseline is None:
            self._baseline = load_baseline_spec()
        return self._baseline

    def check(self, config: RunConfig):
        from compiler.runner import check
        return check(config, spec=self.spec)

    def spec(self, config: RunConfig):
        from compiler.runner import load_spec
        key = canonical_json([config.hw, config.overrides])
        if key not in self._specs:
            self._specs[key] = load_spec(config, self.baseline)
        return self._specs[key]

    def model_identity(self, name: str) -> dict:
        if name not in self._models:
            self._models[name] = _model_identity(name)
        return self._models[name]


def _model_identity(name: str) -> dict:
    """What names a model's content: a local directory by its files (names, sizes, modification times);
    anything else by its name, which must resolve offline (a checkpoint, a packaged or a bundled model)."""
    from compiler.models import _bundled_config, _find_checkpoint
    checkpoint, source = _find_checkpoint(name)
    if checkpoint is None:
        _bundled_config(name)  # a UserError naming the known models
        return {"name": name, "source": "bundled config"}
    return {"name": name, "source": source, **(_file_identity(str(checkpoint)) if Path(name).exists() else {})}


def _file_identity(path: str) -> dict:
    target = Path(path)
    if not target.exists():
        return {"path": path}
    files = [target] if target.is_file() else sorted(p for p in target.rglob("*") if p.is_file())
    return {"path": str(target.resolve()),
            "files": [[str(p.relative_to(target)) if p != target else p.name, p.stat().st_size,
                       p.stat().st_mtime_ns] for p in files[:2000]]}


_CODE: str | None = None


def code_version() -> str:
    """compiler.__version__ and a hash of the package's source (Python, C, templates, built-in specs): an edit
    to the code makes every point compute again."""
    global _CODE
    if _CODE is None:
        import compiler
        root = Path(compiler.__file__).resolve().parent.parent
        digest = hashlib.sha256()
        for folder in ("compiler", "passes", "reports", "hw_specs"):
            for path in sorted((root / folder).rglob("*")):
                if path.suffix in (".py", ".c", ".j2", ".js", ".css", ".yaml", ".json") and path.is_file():
                    digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
        _CODE = f"{compiler.__version__}+{digest.hexdigest()[:16]}"
    return _CODE


def cache_key(point: GridPoint) -> str:
    """sha256 of the point's identity (model, resolved spec, options) and the code version, as canonical JSON."""
    return hashlib.sha256(canonical_json({**point.identity, "code": code_version()}).encode()).hexdigest()


def folder_name(point: GridPoint) -> str:
    slug = "_".join(f"{k.split('/')[-1]}-{v}" for k, v in point.values.items())
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", slug)[:80].strip("-.") or "point"
    return f"{slug}-{point.key[:12]}"


def validate(points: list[GridPoint]) -> list[GridPoint]:
    """Check every point before any runs (one line per invalid point, all of them in one UserError); the
    distinct configurations, each with every label that resolved to it, in the grid's order."""
    from compiler import progress
    bad, unique = [], {}
    checks = Checks()
    if len(points) > 50:  # a line before the wait, off a terminal too (a bar only on one)
        progress.say(f"sweep: checking {len(points):,} points before any runs")
    with progress.bar(total=len(points), desc="checking points", unit="point", enabled=len(points) > 50) as bar:
        for index, point in enumerate(points):
            try:
                check_point(point, checks)
            except UserError as exc:
                bad.append(f"  point {index + 1} ({point.label}): {str(exc).splitlines()[0]}")
                continue
            finally:
                bar.update(1)
            point.key = cache_key(point)
            first = unique.setdefault(point.key, point)
            first.labels.append(dict(point.values))
    if bad:
        raise UserError(f"{len(bad)} of {len(points)} point{'s' if len(points) != 1 else ''} invalid; nothing "
                        f"ran:\n" + "\n".join(bad))
    for point in unique.values():
        point.name = folder_name(point)
    return list(unique.values())


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
