"""A 12-point MiniLM sweep (adc.bits 6/7/8 x tiles 256/512 x allocation fused/packed, --simulate --seeds 3):
a plain in-process loop against Ray in the same run, then the same sweep on a 2-node local Ray cluster that
this script starts (`ray start --head` on 127.0.0.1 plus a worker node, one CPU each) through --address.

    PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python bench/sweep.py [--seeds 3] [--drift-times 1d] [--seq-len 64]

Every run writes its own sweep folder under bench/out/sweep/ (no cache hits between them: a cached point costs
nothing and would hide the work). Rows: wall time of the whole sweep; Ray at 1 CPU against the loop is Ray's
overhead (same parallelism: one point at a time); Ray at all CPUs is the speed-up; the cluster adds a second
raylet and the transfer of each point's files through the object store. The cluster is stopped by process
group (the `ray start --block` processes this script started), never with `ray stop`, which would stop every
Ray on the machine.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from compiler.config import from_options  # noqa: E402
from compiler.dse.grid import cpu_count, make_axis  # noqa: E402
from compiler.dse.run import run_sweep  # noqa: E402

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
GRID = {"adc.bits": [6, 7, 8], "tile.rows+tile.cols": [256, 512], "allocation": ["fused", "packed"]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sweep(out: Path, model: str, base, **kw) -> tuple[tuple[float, float], dict]:
    """(wall time, sum of the points' own compute times), and each point's figures."""
    import ray
    if out.exists():
        shutil.rmtree(out)
    print(f"  {out.name}: load average {os.getloadavg()[0]:.1f} at the start", flush=True)
    started = time.perf_counter()
    result = run_sweep([model], base, [make_axis(k, v, "bench") for k, v in GRID.items()], out, **kw)
    seconds = time.perf_counter() - started
    if ray.is_initialized():
        ray.shutdown()
    assert result.failed == 0, [p["error"] for p in result.points if p["error"]]
    return (seconds, sum(p["seconds"] for p in result.points)), {p["key"]: (p["energy_J"], [a["mean"] for a in p["accuracy"]]) for p in result.points}


def _start_cluster(env: dict) -> tuple[str, list[subprocess.Popen]]:
    """A head node and a worker node on 127.0.0.1, one CPU each; their `ray start --block` processes."""
    ray_bin = str(Path(sys.executable).with_name("ray"))
    port = _free_port()
    common = ["--num-cpus", "1", "--block", "--disable-usage-stats"]
    head = subprocess.Popen([ray_bin, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                             "--include-dashboard=false", *common], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"127.0.0.1:{port}"
    time.sleep(8)  # the head's GCS must listen before the worker node joins
    worker = subprocess.Popen([ray_bin, "start", "--address", address, "--node-ip-address", "127.0.0.1",
                               *common], env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import ray
    for _ in range(60):  # until both nodes are up
        time.sleep(2)
        try:
            ray.init(address=address, logging_level="ERROR", log_to_driver=False)
            alive = sum(1 for n in ray.nodes() if n["Alive"])
            ray.shutdown()
            if alive == 2:
                break
        except Exception:  # noqa: BLE001  (not up yet)
            pass
    else:
        raise RuntimeError("the local Ray cluster did not come up")
    return address, [head, worker]


def _stop_cluster(processes: list[subprocess.Popen], port: int) -> None:
    for process in reversed(processes):
        try:
            os.killpg(process.pid, signal.SIGTERM)  # the process group this script created, by its id
        except ProcessLookupError:
            continue
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
    # the head's address file, which a stopped head leaves behind (Ray's default temp dir)
    marker = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    if marker.is_file() and marker.read_text().strip().endswith(f":{port}"):
        marker.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--drift-times", default="1d")
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--no-pt-opt", action="store_true",
                        help="without the PT optimizations (and so without their PT-off comparison: half the "
                             "simulation), for a shorter run")
    parser.add_argument("--skip-cluster", action="store_true")
    parser.add_argument("--model", default=MODEL, help="another model (a quick try of this script)")
    args = parser.parse_args()
    base = from_options("", "pcm_1M", {}, simulate=True, seeds=args.seeds, drift_times=args.drift_times,
                        seq_len=args.seq_len, no_pt_opt=args.no_pt_opt)
    out = ROOT / "bench" / "out" / "sweep"
    cpus = cpu_count()
    # the sweep's own process imports torch and transformers and reads the model before the clocks start: the
    # loop then times only the points, and Ray's worker processes pay their own imports (a real cost of Ray)
    from compiler.models import load_model
    load_model(args.model, seq_len=args.seq_len)
    rows, figures = [], {}
    t, figures["loop"] = _sweep(out / "loop", args.model, base, executor="serial")
    rows.append(("plain in-process loop (executor serial)", t))
    print(rows[-1], flush=True)
    t, figures["ray1"] = _sweep(out / "ray-1cpu", args.model, base, num_cpus=1)
    rows.append(("Ray embedded, 1 CPU (one point at a time)", t))
    print(rows[-1], flush=True)
    t, figures["ray"] = _sweep(out / f"ray-{cpus}cpu", args.model, base, num_cpus=cpus)
    rows.append((f"Ray embedded, {cpus} CPUs", t))
    print(rows[-1], flush=True)
    if not args.skip_cluster:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        address, processes = _start_cluster(env)
        try:
            t, figures["cluster"] = _sweep(out / "cluster", args.model, base, address=address)
            rows.append((f"Ray cluster: head + worker node on 127.0.0.1 (--address {address})", t))
        finally:
            _stop_cluster(processes, int(address.rsplit(':', 1)[1]))
    same = all(f == figures["loop"] for f in figures.values())
    loop = rows[0][1]
    print(f"12 points: {args.model}, --simulate --seeds {args.seeds} --drift-times {args.drift_times} "
          f"--seq-len {args.seq_len}{' --no-pt-opt' if args.no_pt_opt else ''}; {cpus} CPUs, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    # wall / loop compares runs made at different moments of a shared machine; wall - sum(points) is each
    # run's own overhead (validation, Ray's start and worker imports, transfers, outputs), measured in the run
    # (sum / wall: the points computing at once, on average)
    print("| run | wall time (s) | / loop | sum of the points' compute times (s) | wall - sum | sum / wall |\n"
          "| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, (wall, busy) in rows:
        print(f"| {name} | {wall:.1f} | {wall / loop[0]:.2f} | {busy:.1f} | {wall - busy:.1f} | {busy / wall:.2f} |")
    print(f"every run's energy and accuracy figures identical to the loop's: {same}")
    (out / "bench.json").write_text(json.dumps({"rows": rows, "identical": same, "args": vars(args)}, indent=1))


if __name__ == "__main__":
    main()
