"""Design-space exploration: `aimc-compile sweep` and `compiler.sweep(...)` run a grid of points (chips x models
x options), each one `compiler.run(config)` (compiler/runner.py), on Ray (embedded on this machine or a
cluster), cached by content hash, and summarized in sweep.json, sweep.csv and sweep.html (docs/sweep.md).

grid.py: axes, points and their checks; run.py: the executors, the cache; summary.py: sweep.json. Ray and torch are
imported only when a sweep runs (`aimc-compile --help` imports this module's parser part, nothing else).
(The package is not called `compiler.sweep`: that name is the function `compiler.sweep`, and a subpackage of
the same name would replace it as an attribute of `compiler` once imported.)
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Mapping, Sequence

from compiler.errors import UserError

DEFAULT_OUT = Path("aimc-out") / "sweep"


def sweep(models: str | Sequence[str], hw: str, grid: Mapping[str, Sequence[Any]] | None = None, *,
          out: str | Path = DEFAULT_OUT, grid_file: str | Path | None = None,
          overrides: Mapping[str, Any] | None = None, address: str | None = None, num_cpus: int | None = None,
          executor: str = "ray", seed_tasks: str = "auto", point_reports: bool = True,
          reference: Mapping[str, Any] | None = None, iso_capacity: bool = False, **options):
    """Run a sweep and return its compiler.dse.run.SweepResult (folder, records of sweep.json, counts).

    `grid`: axis -> values, e.g. {"adc.bits": [6, 7, 8], "tile.rows+tile.cols": [256, 512],
    "allocation": ["fused", "packed"]}. `overrides`: spec values for every point (`--set`). `options`: the run's
    options by keyword (compiler/config.py, OPTIONS: simulate=True, seeds=3, drift_times="1s,1d", seq_len=64,
    ...). `address`: a Ray cluster ("auto", "ray://host:10001"); default Ray embedded on this machine.
    `executor` "serial": a plain in-process loop, no Ray. `seed_tasks`: a point's chip instances as Ray tasks of
    their own: "auto" (when the cluster has more CPUs than points to run), "always" or "never".
    `point_reports`: each point's report.html (False: sweep.html links no point report; a cost-only point then
    costs little more than its placement search and estimate).
    `reference`: axis -> value of the point the others are compared with, seed by seed (default: the grid's
    first point), e.g. {"adc.bits": 8}. `iso_capacity`: a point that changes tile.rows or tile.cols but not
    tile.count gets the tile count that keeps the chip's capacity (rows x cols x count) that of the base spec.
    Keys that move together: "tile.rows+tile.cols+tile.count": [[256, 256, 2048], [512, 512, 512]].
    """
    from compiler.config import from_options
    from compiler.dse.grid import load_grid_file, make_axis
    from compiler.dse.run import run_sweep
    models = [models] if isinstance(models, str) else list(models)
    axes = [make_axis(str(key), list(values) if isinstance(values, (list, tuple)) else [values], "grid")
            for key, values in (grid or {}).items()]
    if grid_file is not None:
        file_models, file_axes = load_grid_file(grid_file)
        models, axes = models + file_models, axes + file_axes
    base = from_options("", hw, overrides or {}, **options)
    return run_sweep(models, base, axes, Path(out), address=address, num_cpus=num_cpus, executor=executor,
                     seed_tasks=seed_tasks, point_reports=point_reports, reference=dict(reference or {}),
                     iso_capacity=iso_capacity,
                     command=f"compiler.sweep({models!r}, {hw!r}, grid={dict(grid or {})!r})")


# --- the command line -------------------------------------------------------------------------------------

SWEEP_USAGE = "aimc-compile sweep MODEL [MODEL ...] --hw SPEC --grid KEY=V1,V2 [--grid ...] [options]"


def add_parser(commands) -> argparse.ArgumentParser:
    """The `sweep` subcommand's parser (compiler/cli.py adds it)."""
    p = commands.add_parser(
        "sweep", prog="aimc-compile sweep", usage=SWEEP_USAGE,
        description="Run a grid of aimc-compile runs (chips x models x options) on Ray, embedded on this machine "
                    "or on a cluster (--address), and summarize them: sweep.json, sweep.csv and sweep.html (the "
                    "energy-accuracy Pareto front, each axis's effect, a table linking every point's report). "
                    "Every point is checked before any runs; labels that resolve to the same configuration are "
                    "one point; finished points are cached in the output folder and not computed again. "
                    "docs/sweep.md.")
    p.add_argument("models", metavar="MODEL", nargs="*", help="one or more models (several: a model axis)")
    p.add_argument("--hw", required=True, help="hardware spec: a YAML path or a built-in name (pcm_1M, hermes)")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="an axis: a spec key as --set takes it (adc.bits=6,7,8, energy.vdd_V=0.7,0.8), spec keys "
                        "set together (tile.rows+tile.cols=256,512), keys that move together "
                        "(tile.rows+tile.cols+tile.count=256,256,2048;512,512,512), model, or an option by its "
                        "flag name "
                        "(allocation=fused,packed, seq-len=64,128, batch, objective, max-tiles, calibration, "
                        "pt-opt=on,off, ...); "
                        "repeatable: the points are every combination")
    p.add_argument("--grid-file", metavar="YAML", help="axes from a YAML file: {KEY: [values]}, or models: [...] "
                                                       "and grid: {KEY: [values]}")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a spec value for every point (repeatable)")
    p.add_argument("--out", help=f"the sweep folder (default {DEFAULT_OUT}): sweep.json, sweep.csv, sweep.html "
                                 f"and points/, one run folder per point (the cache)")
    p.add_argument("--address", help="run on an existing Ray cluster: auto (a cluster started on this machine "
                                     "with `ray start`) or ray://HOST:PORT (Ray Client); default: Ray embedded "
                                     "here with the local cores")
    p.add_argument("--num-cpus", type=int, help="CPUs of the embedded Ray (default: all of this machine's)")
    p.add_argument("--executor", choices=("ray", "serial"), default="ray",
                   help="ray (default) or serial: a plain in-process loop, one point after another")
    p.add_argument("--seed-tasks", choices=("auto", "always", "never"), default="auto",
                   help="simulate a point's chip instances (--seeds) as Ray tasks of their own: auto (default: "
                        "when the cluster has more CPUs than points to run), always or never")
    p.add_argument("--no-point-reports", action="store_true",
                   help="write no report.html per point (sweep.html, sweep.csv and the points' JSON files still): "
                        "a cost-only point then costs its placement search and estimate")
    from compiler.config import FLAG_OPTIONS, OPTIONS  # standard library only
    for key, option in OPTIONS.items():
        if key == "pt_opt":
            p.add_argument(option.flag, dest="no_pt_opt", action="store_true", default=None,
                           help=f"as for compile ({option.flag})")
        elif key in FLAG_OPTIONS:
            p.add_argument(option.flag, dest=key, action="store_true", default=None,
                           help=f"as for compile ({option.flag})")
        else:
            p.add_argument(option.flag, dest=key, default=None, metavar="VALUE", help=f"as for compile ({option.flag})")
    p.add_argument("--reference", action="append", default=[], metavar="AXIS=VALUE",
                   help="the point every other is compared with, seed by seed (repeatable: one per axis; default: "
                        "the grid's first point), e.g. --reference adc.bits=8")
    p.add_argument("--iso-capacity", action="store_true",
                   help="a point that changes tile.rows or tile.cols (not tile.count) gets the tile count that keeps "
                        "the chip's capacity (rows x cols x count) that of --hw with --set: chips that hold the "
                        "same weights")
    talk = p.add_mutually_exclusive_group()
    talk.add_argument("-q", "--quiet", action="store_true", help="print only warnings, errors and the final line")
    talk.add_argument("-v", "--verbose", action="store_true", help="also a line per finished point off a terminal")
    return p


def command(args: argparse.Namespace, command_line: str) -> int:
    """`aimc-compile sweep ...`: run it, print where its outputs are."""
    from compiler.dse.grid import load_grid_file, parse_axis
    from compiler.dse.run import run_sweep
    axes = [parse_axis(text) for text in args.grid]
    models = list(args.models)
    if args.grid_file:
        file_models, file_axes = load_grid_file(args.grid_file)
        models, axes = models + file_models, axes + file_axes
    if not axes and len(models) < 2:
        raise UserError("give at least one axis: --grid KEY=V1,V2,..., --grid-file YAML or several models")
    from compiler.config import OPTIONS, from_options
    from compiler.hw_spec import parse_override
    overrides = dict(parse_override(text) for text in args.overrides)
    options = {key: getattr(args, key) for key in OPTIONS if key != "pt_opt"}
    base = from_options("", args.hw, overrides, no_pt_opt=args.no_pt_opt, **options)
    reference = {}
    for text in args.reference:
        key, sep, value = text.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise UserError(f"--reference {text[:60]!r}: expected AXIS=VALUE (e.g. --reference adc.bits=8)")
        reference[key.strip()] = value.strip()
    result = run_sweep(models, base, axes, Path(args.out or DEFAULT_OUT), address=args.address,
                       num_cpus=args.num_cpus, executor=args.executor, seed_tasks=args.seed_tasks,
                       point_reports=not args.no_point_reports, command=command_line, reference=reference,
                       iso_capacity=args.iso_capacity)
    print(f"sweep: {result.path / 'sweep.html'}, sweep.json and sweep.csv")
    return 1 if result.failed else 0  # the other points finished; sweep.json names the failures
