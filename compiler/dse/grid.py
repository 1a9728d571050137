"""The grid of a sweep: axes, points, and the checks every point passes before anything runs.

A point is one `aimc-compile compile` command line: the sweep's models, spec and options, with the point's
value of each axis added (a spec key as `--set KEY=VALUE`, an option as its flag). Running that command line
through `compiler.cli.run_compile` is what a point does, so a point's figures are those of the single run.

Axes: `--grid KEY=V1,V2,...` where KEY is a dotted spec key (`adc.bits`), several spec keys that take the same
value joined by `+` (`tile.rows+tile.cols=256,512`), or an option of OPTION_AXES (`allocation=fused,packed`).
A YAML grid file maps the same keys to lists (`adc.bits: [6, 7, 8]`), optionally under a `grid:` key beside
`models:`. The points are the Cartesian product of the axes, the models first.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compiler.errors import UserError

# option axes: name in --grid -> the compile flag ("model" is the positional MODEL; "pt-opt" is on/off)
OPTION_AXES = {"model": None, "allocation": "--allocation", "objective": "--objective", "seq-len": "--seq-len",
               "batch": "--batch", "task": "--task", "max-tiles": "--max-tiles", "max-latency": "--max-latency",
               "calibration": "--calibration", "pt-opt": "--no-pt-opt", "eval-sentences": "--eval-sentences",
               "gen-len": "--gen-len"}
MAX_POINTS = 10_000  # a grid this large is a typo more often than a plan
_KEY = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)+$")


@dataclass(frozen=True)
class Axis:
    name: str                  # as written: "adc.bits", "tile.rows+tile.cols", "allocation"
    kind: str                  # "spec" or "option"
    values: tuple[str, ...]    # as the command line takes them

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.name.split("+")) if self.kind == "spec" else (self.name,)


@dataclass
class Point:
    values: dict[str, str]             # axis name -> value ("model" first when several models)
    argv: list[str]                    # the compile command line, without --out
    key: str = ""                      # content hash: model, resolved spec, options, code version
    name: str = ""                     # its folder under points/: a readable slug and the key
    options: dict[str, Any] = field(default_factory=dict)
    folder: Path | None = None         # its run folder, once the sweep folder is known

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.values.items()) or "the one point"

    def command(self) -> str:
        """The single run this point is: `aimc-compile compile ...` with its folder as --out."""
        import shlex
        out = ["--out", str(self.folder)] if self.folder is not None else []
        return "aimc-compile compile " + shlex.join(self.argv + out)


def parse_axis(text: str) -> Axis:
    """`KEY=V1,V2,...` -> an Axis; a UserError naming what is wrong."""
    key, sep, values = str(text).partition("=")
    key = key.strip().replace("_", "-") if key.strip().replace("_", "-") in OPTION_AXES else key.strip()
    items = [v.strip() for v in values.split(",")] if sep else []
    if not sep or not key or not items or not all(items):
        raise UserError(f"--grid {text[:80]!r}: expected KEY=V1,V2,... (e.g. --grid adc.bits=6,7,8)")
    return make_axis(key, items, f"--grid {text[:60]!r}")


def make_axis(key: str, values: list, where: str) -> Axis:
    if key in OPTION_AXES:
        kind = "option"
    elif all(_KEY.match(part) for part in key.split("+")):
        kind = "spec"
    else:
        raise UserError(f"{where}: {key[:60]!r} is neither a dotted spec key (adc.bits, tile.rows+tile.cols) nor "
                        f"an option ({', '.join(OPTION_AXES)})")
    if not values:
        raise UserError(f"{where}: axis {key} has no values")
    shown = tuple(_cli_value(v) for v in values)
    if len(set(shown)) != len(shown):
        raise UserError(f"{where}: axis {key} repeats a value ({', '.join(shown)})")
    if key == "pt-opt" and not set(shown) <= {"on", "off"}:
        raise UserError(f"{where}: pt-opt takes on and off (got {', '.join(shown)})")
    return Axis(key, kind, shown)


def _cli_value(value: Any) -> str:
    """A YAML value as --set or a flag takes it: null, true/false, numbers as written."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip()


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


def expand(models: list[str], hw: str, base: list[str], axes: list[Axis]) -> list[Point]:
    """Every point of the grid, in order (the last axis varies fastest): its values and compile argv."""
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
    points = []
    for combination in itertools.product(*(a.values for a in axes)):
        values = dict(zip((a.name for a in axes), combination))
        model = values.get("model", models[0] if models else "")
        argv = [model, "--hw", hw, *base]
        for axis, value in zip(axes, combination):
            if axis.kind == "spec":
                argv += [arg for key in axis.keys for arg in ("--set", f"{key}={value}")]
            elif axis.name == "pt-opt":
                argv += ["--no-pt-opt"] if value == "off" else []
            elif axis.name != "model":
                argv += [OPTION_AXES[axis.name], value]
        points.append(Point(values, argv))
    return points


def parse_compile_argv(argv: list[str]):
    """The compile namespace of a point's argv, as `aimc-compile compile` parses it; a UserError (not an exit)
    for what argparse refuses."""
    from compiler.cli import _parse
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return _parse(["compile", *argv])
    except SystemExit:
        message = err.getvalue().strip().splitlines()[-1:] or ["invalid arguments"]
        raise UserError(message[0].removeprefix("aimc-compile: error: ").split(" (see ")[0]) from None


def check_point(point: Point) -> None:
    """Every check `aimc-compile compile` makes before it loads the model, plus that the model resolves; fills
    point.options with what the result depends on (the content of the cache key but the code version)."""
    from compiler import cli
    from compiler.hw_spec import load_hw_spec, parse_override
    args = parse_compile_argv(point.argv)
    if args.hwa_finetune is not None:
        raise UserError("--hwa-finetune is not swept: fine-tune once, then sweep the checkpoint directory")
    cli._check_arguments(args)
    simulation = cli._simulation_inputs(args)
    overrides = dict(parse_override(text) for text in args.overrides)
    hw = load_hw_spec(args.hw, overrides)
    cli._check_cost_fields(hw)
    model = _model_identity(args.model)
    drift = [t.seconds for t in simulation[0]] if simulation else None
    point.options = {
        "model": model, "spec": hw.to_dict(), "task": args.task, "seq_len": args.seq_len, "batch": args.batch,
        "allocation": args.allocation, "objective": args.objective, "max_tiles": args.max_tiles,
        "max_latency": args.max_latency, "calibration": args.calibration, "pt_opt": not args.no_pt_opt,
        "simulate": args.simulate, "drift_times": drift, "seeds": args.seeds if args.simulate else None,
        "eval": _file_identity(args.eval_data) if args.eval_data else None, "device": args.device,
        # the options of compile the sweep does not name: whatever else changes the run's outputs
        **{k: v for k, v in sorted(vars(args).items()) if k not in _NOT_IN_KEY and k not in _NAMED}}


# what does not change a run's outputs, or is in the key already under another name
_NOT_IN_KEY = {"out", "quiet", "verbose", "subcommand", "overrides", "hw", "model", "eval_data", "no_pt_opt",
               "drift_times", "seeds"}
_NAMED = {"task", "seq_len", "batch", "allocation", "objective", "max_tiles", "max_latency", "calibration",
          "simulate", "device"}


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


def cache_key(point: Point) -> str:
    """sha256 of (model, resolved spec, options, code version) as canonical JSON."""
    text = json.dumps({**point.options, "code": code_version()}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def folder_name(point: Point) -> str:
    slug = "_".join(f"{k.split('/')[-1]}-{v}" for k, v in point.values.items())
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", slug)[:80].strip("-.") or "point"
    return f"{slug}-{point.key[:12]}"


def validate(points: list[Point]) -> None:
    """Check every point before any runs: one line per invalid point, all of them in one UserError."""
    bad = []
    for index, point in enumerate(points):
        try:
            check_point(point)
        except UserError as exc:
            bad.append(f"  point {index + 1} ({point.label}): {str(exc).splitlines()[0]}")
            continue
        point.key = cache_key(point)
        point.name = folder_name(point)
    if bad:
        raise UserError(f"{len(bad)} of {len(points)} point{'s' if len(points) != 1 else ''} invalid; nothing "
                        f"ran:\n" + "\n".join(bad))


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
