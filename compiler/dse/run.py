"""Running a sweep: each point a Ray task (or one step of a plain loop), the chip instances of a point's Monte
Carlo Ray tasks too, each point's results cached in the sweep folder under its content hash.

    SWEEP/sweep.json, sweep.csv, sweep.html      one row per point (compiler/dse/__init__.py, reports/sweep.py)
    SWEEP/points/<values>-<key>/                 one run folder per point: mapping.json, cost.json,
                                                 accuracy.json, report.html, as `aimc-compile compile` writes

A point runs `compiler.run(config)` (compiler/runner.py). In the serial loop it writes its folder directly
(compiler/outputs.py: manifest, atomic swap); on Ray it writes into a temporary folder of the worker and sends
the files back, and the driver publishes them the same way, so a point's folder is complete or absent, and the
workers need no shared filesystem. What does not depend on the point (imports, the model, its export for a
shape) is done once per process and reused (runner.Session). A point whose folder is complete is not computed
again (the key covers model, resolved spec, options and code version).
A point that raises is recorded with its error; Ray retries a task whose worker died (MAX_RETRIES); Ctrl-C
stops the sweep and leaves the finished points' folders.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from compiler import progress
from compiler.config import RunConfig
from compiler.dse.grid import Axis, GridPoint, cpu_count, expand, validate
from compiler.dse.summary import NO_FIGURES, figures, folder_figures, sweep_json, write_sweep_json
from compiler.errors import UserError

POINTS = "points"
MAX_RETRIES = 2  # a point whose worker process died (killed, out of memory) runs again, twice at most
EXECUTORS = ("ray", "serial")
SEED_TASKS = ("auto", "always", "never")  # a point's chip instances as tasks of their own: auto = when CPUs are spare


@dataclass
class SweepResult:
    path: Path                 # the sweep folder
    points: list[dict]         # the records of sweep.json
    computed: int
    cached: int
    failed: int
    elapsed_s: float

    @property
    def html(self) -> Path:
        return self.path / "sweep.html"


def run_sweep(models: list[str], base: RunConfig, axes: list[Axis], out: Path, *,
              address: str | None = None, num_cpus: int | None = None, executor: str = "ray",
              seed_tasks: str = "auto", command: str = "aimc-compile sweep",
              point_reports: bool = True, reference: dict[str, str] | None = None,
              iso_capacity: bool = False) -> SweepResult:
    """Validate every point, run the missing ones, write sweep.json, sweep.csv and sweep.html into `out`.
    `point_reports`: each point's report.html too (rendering one costs more than a cost-only point's compile).
    `reference`: axis -> value of the point every other is compared with (default: the grid's first point).
    `iso_capacity`: points that change the tile size get the tile count that keeps the chip's capacity."""
    from compiler.outputs import OutputDir
    if executor not in EXECUTORS:
        raise UserError(f"unknown executor {executor!r}; expected one of {', '.join(EXECUTORS)}")
    if num_cpus is not None and num_cpus < 1:
        raise UserError(f"--num-cpus must be >= 1 (got {num_cpus})")
    if seed_tasks not in SEED_TASKS:
        raise UserError(f"unknown seed_tasks {seed_tasks!r}; expected one of {', '.join(SEED_TASKS)}")
    if address is not None and executor != "ray":
        raise UserError("--address runs the sweep on a Ray cluster; it needs the ray executor")
    started = time.perf_counter()
    labelled = expand(models, base, axes, iso_capacity)
    points = validate(labelled)  # one line per invalid point, before anything runs; one per configuration
    reference = check_reference(reference, points, axes)
    out = Path(out)
    records: dict[str, dict] = {}
    with OutputDir(out, command) as output:
        folder = out / POINTS
        folder.mkdir(exist_ok=True)
        for point in points:
            point.folder, point.report = folder / point.name, point_reports
        todo = [p for p in points if not _complete(p.folder, p)]
        for point in points:
            if point not in todo:
                records[point.key] = {"status": "cached", "error": None, "seconds": None, "files": None}
        simulated = sum(1 for p in todo if p.simulated)
        same = len(labelled) - len(points)
        progress.say(f"sweep: {len(points)} points, {len(points) - len(todo)} cached, {len(todo)} to run"
                     + (f" ({simulated} simulated)" if simulated else "")
                     + (f"; {same} label{'s' if same != 1 else ''} resolved to a configuration listed already"
                        if same else "") + f"; outputs go to {out}")

        def finished(point: GridPoint, result: dict) -> None:
            records[point.key] = _publish(point, result)
            if records[point.key]["error"]:
                progress.say(f"point failed ({point.label}): {records[point.key]['error']}", progress.QUIET)

        where = "serial (in-process loop)"
        if todo:
            if executor == "serial":
                _run_serial(todo, finished)
            else:
                where = _run_ray(todo, finished, address, num_cpus, seed_tasks)
        rows = [_row(point, records[point.key]) for point in points]
        data = sweep_json(points, axes, rows, where, time.perf_counter() - started, reference, iso_capacity)
        write_sweep_json(output.staging / "sweep.json", data)
        from compiler.runner import render_sweep
        render_sweep(output.staging)  # sweep.csv and sweep.html from sweep.json
        output.publish()
    computed = sum(1 for r in records.values() if r["status"] == "computed")
    failed = sum(1 for r in records.values() if r["status"] == "failed")
    result = SweepResult(out, data["points"], computed, len(records) - computed - failed, failed,
                         time.perf_counter() - started)
    for line in data["summary"]:  # what the sweep says (also at the top of sweep.html)
        progress.say(f"sweep: {line}", progress.QUIET)
    progress.say(f"sweep done in {result.elapsed_s:.1f} s: {computed} computed, {result.cached} cached, "
                 f"{failed} failed; {out / 'sweep.html'}", progress.QUIET)
    return result


def check_reference(reference: dict[str, str] | None, points: list[GridPoint], axes: list[Axis]) -> dict | None:
    """`reference` (axis -> value) with values written as the axes write them; a UserError unless a point of
    the grid has them all (checked before anything runs)."""
    if not reference:
        return None
    from compiler.config import text_value
    names = {a.name for a in axes} | {"model"}
    unknown = sorted(k for k in reference if k not in names)
    if unknown:
        raise UserError(f"--reference {', '.join(unknown)}: not an axis of the grid ({', '.join(sorted(names))})")
    wanted = {k: text_value(v) for k, v in reference.items()}
    if not any(all(label.get(k) == v for k, v in wanted.items()) for p in points for label in p.labels):
        raise UserError("--reference " + ", ".join(f"{k}={v}" for k, v in wanted.items())
                        + ": no point of the grid has these values")
    return wanted


# --- the work of one point (on a worker) ------------------------------------------------------------------

_SESSION = None  # this process's runner.Session: models and exports shared by the points it runs


def run_point(config: RunConfig, command: str, fan_out: bool, folder: Path | None = None,
              report: bool = True, checked=None) -> dict:
    """Run one point: into `folder` (published there), or into a temporary folder whose files come back as
    bytes (a Ray worker). {"files": {name: bytes} or None, "json": {name: content}, "error": None, "seconds":
    s}, or the error as one line. Seeds go out as Ray tasks of their own when `fan_out`. `checked`: the point's
    checks as the sweep made them (runner.check), not made again."""
    from compiler.runner import Session, run
    global _SESSION
    _SESSION = _SESSION or Session()
    level = progress.level()
    progress.set_level(progress.QUIET)  # the driver shows the sweep's progress; a point's lines would mix
    scratch = None if folder is not None else Path(tempfile.mkdtemp(prefix="aimc-sweep-"))
    started = time.perf_counter()
    log = io.StringIO()  # the run's own lines (warnings, its final line): the sweep says what matters
    try:
        with contextlib.redirect_stderr(log):
            result = run(config, folder or scratch / "run", command=command, session=_SESSION,
                         evaluate=evaluate_on_ray if fan_out else None, report=report, checked=checked)
        files = None if scratch is None else {
            path.name: path.read_bytes() for path in sorted((scratch / "run").iterdir())
            if path.is_file() and not path.name.startswith(".")}
        return {"files": files, "json": result.files, "error": None, "seconds": time.perf_counter() - started}
    except UserError as exc:
        return {"files": None, "json": {}, "error": str(exc).splitlines()[0], "seconds": time.perf_counter() - started}
    except Exception as exc:  # noqa: BLE001  (any failure of a point is recorded; the sweep goes on)
        where = traceback.extract_tb(exc.__traceback__)[-1]
        return {"files": None, "json": {}, "seconds": time.perf_counter() - started,
                "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
                         f"({Path(where.filename).name}:{where.lineno})"}
    finally:
        progress.set_level(level)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def evaluate_on_ray(placed, drift_times, seeds, **options) -> dict:
    """evaluate_accuracy with one Ray task per chip instance (seed), merged into what one call over all the
    seeds returns (compiler.evaluation.accuracy.merge_accuracy). The placement goes into Ray's object store once
    (PortablePlacement); every seed task reads it from there."""
    import ray

    from compiler.evaluation.accuracy import _seed_list, evaluate_accuracy, merge_accuracy
    seed_list = _seed_list(seeds)
    if len(seed_list) == 1:
        return evaluate_accuracy(placed, drift_times, seeds=seed_list, **options)
    shared = ray.put(PortablePlacement(placed))
    settings = ray.put(options)  # a reference model or evaluation data: also once
    task = ray.remote(num_cpus=1, max_retries=MAX_RETRIES)(_seed_task)
    parts = ray.get([task.remote(shared, drift_times, [seed], settings) for seed in seed_list])
    return merge_accuracy(parts)


def _seed_task(placed, drift_times, seeds: list[int], options: dict) -> dict:
    from compiler.evaluation.accuracy import evaluate_accuracy
    progress.set_level(progress.QUIET)
    return evaluate_accuracy(placed, drift_times, seeds=seeds, **options)


class PortablePlacement:
    """A PlacedGraph that crosses process boundaries. A torch.export ExportedProgram pickles but does not unpickle
    (torch.fx rebuilds its GraphModules with a tracer that needs arguments pickle does not give), so the
    exported program travels as torch.export.save bytes; the rest of the placement pickles as it is.
    Unpickling gives the PlacedGraph itself."""

    def __init__(self, placed):
        self.placed = placed

    def __reduce__(self):
        import copy
        import io

        import torch
        buffer = io.BytesIO()
        torch.export.save(self.placed.exported, buffer)
        rest = copy.copy(self.placed)
        rest.exported = None
        return _restore_placement, (rest, buffer.getvalue())


def _restore_placement(rest, exported: bytes):
    import io

    import torch
    rest.exported = torch.export.load(io.BytesIO(exported))
    return rest


# --- executors --------------------------------------------------------------------------------------------

def _run_serial(todo: list[GridPoint], finished: Callable[[GridPoint, dict], None]) -> None:
    """The plain in-process loop: each point as `aimc-compile compile` runs it, into its folder, one after
    another."""
    with progress.bar(total=len(todo), desc="sweep", unit="point") as bar:
        for point in todo:
            finished(point, run_point(point.config, point.command(), False, point.folder, point.report, point.checked))
            bar.update(1)


def _run_ray(todo: list[GridPoint], finished: Callable[[GridPoint, dict], None], address: str | None,
             num_cpus: int | None, seed_tasks: str = "auto") -> str:
    """Every point a Ray task, as many at once as the cluster has CPUs; returns where it ran, in words.
    The chip instances (seeds) of a simulated point become tasks of their own with seed_tasks "always", and
    with "auto" when the cluster has more CPUs than there are points to run: otherwise the points alone keep
    every CPU busy, and splitting the seeds would only add work (each seed task computes the FP reference
    again and loads the placement from the object store)."""
    import ray
    own = not ray.is_initialized()
    where = _init_ray(address, num_cpus) if own else "ray (a session already started in this process)"
    pending: dict = {}
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        fan_out = seed_tasks == "always" or (seed_tasks == "auto" and len(todo) < cpus)
        task = ray.remote(num_cpus=1, max_retries=MAX_RETRIES)(run_point)
        pending = {task.remote(p.config, p.command(), fan_out, None, p.report, p.checked): p for p in todo}
        with progress.bar(total=len(todo), desc="sweep", unit="point") as bar:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    point = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayError as exc:  # the worker died MAX_RETRIES + 1 times, ...
                        result = {"files": None, "json": {}, "seconds": None,
                                  "error": f"{type(exc).__name__}: {_first_line(exc)}"}
                    finished(point, result)
                    bar.update(1)
    except KeyboardInterrupt:
        for ref in pending:  # on a cluster the tasks would run on: stop them
            ray.cancel(ref, force=True, recursive=True)
        raise
    finally:
        if own:
            ray.shutdown()
    return where


def _init_ray(address: str | None, num_cpus: int | None) -> str:
    """Ray embedded on this machine (the local cores, no dashboard, quiet), or the cluster at `address`."""
    try:
        import ray
    except ImportError:
        raise UserError("the sweep runs on Ray, which is not installed: pip install 'ray>=2.50'") from None
    quiet = dict(logging_level=logging.ERROR, log_to_driver=False)  # the sweep reports failures itself
    if address is None:
        cpus = num_cpus or cpu_count()
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, **quiet)  # never a cluster found here
        return f"ray, embedded on this machine ({cpus} CPU{'s' if cpus != 1 else ''})"
    if address.startswith("ray://"):
        import importlib.util
        if importlib.util.find_spec("grpc") is None:  # Ray Client, what ray:// addresses need
            raise UserError(f"--address {address}: ray:// addresses need Ray Client: pip install 'ray[client]'; "
                            f"or run the sweep on a node of the cluster with --address auto")
    try:
        ray.init(address=address, **quiet)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise UserError(f"--address {address}: cannot connect to a Ray cluster ({_first_line(exc)})") from None
    cpus = int(ray.cluster_resources().get("CPU", 0))
    return f"ray cluster at {address} ({len(ray.nodes())} node(s), {cpus} CPUs)"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


# --- results ----------------------------------------------------------------------------------------------

def _complete(folder: Path, point: GridPoint) -> bool:
    """Whether `folder` holds a finished run of this point: its manifest (read without following a link, and
    only ever published complete) names what the run writes."""
    from compiler.outputs import read_manifest
    files = set(read_manifest(folder))
    needed = {"mapping.json"} | ({"report.html"} if point.report else set()) | \
        ({"accuracy.json"} if point.simulated else set())
    return needed <= files and all((folder / n).is_file() and not (folder / n).is_symlink() for n in needed)


def _publish(point: GridPoint, result: dict) -> dict:
    """A finished point's files into its folder when a worker sent them (manifest, atomic swap); its record."""
    from compiler.outputs import OutputDir
    if result["error"] is None and result["files"] is not None:
        try:
            with OutputDir(point.folder, point.command()) as output:
                for name, content in result["files"].items():
                    (output.staging / name).write_bytes(content)
                output.publish()
        except (UserError, OSError) as exc:
            result = {**result, "error": str(exc).splitlines()[0]}
    status = "failed" if result["error"] else "computed"
    return {"status": status, "error": result["error"], "seconds": result.get("seconds"),
            "files": result.get("json") if status == "computed" else None}


def _row(point: GridPoint, record: dict) -> dict:
    """One point of sweep.json: its values and every label that resolved to it, status, headline figures (from
    the run's results, or read back from its folder when cached)."""
    row = {"name": point.name, "key": point.key, "values": dict(point.values), "labels": point.labels,
           "status": record["status"], "error": record["error"], "seconds": record["seconds"],
           "command": point.command(), "dir": f"{POINTS}/{point.name}", "model": point.config.model,
           "derived": dict(point.derived)}
    if record["status"] == "failed":
        row.update(report=None, **NO_FIGURES)
    else:
        row.update(figures(record["files"]) if record["files"] else folder_figures(point.folder),
                   report=f"{POINTS}/{point.name}/report.html" if (point.folder / "report.html").is_file() else None)
    return row
