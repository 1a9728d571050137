"""Decoders at scale (issue 14, item 7): whole `aimc-compile` runs in a new process, as a user runs them, timed
by /usr/bin/time -v (wall time, peak RSS), with the size of what each writes and the time of each stage (the
CLI's --verbose lines).

    PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python bench/scale.py                  # roberta-base, 8B, 70B
    PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python bench/scale.py --models roberta-base,8b --baseline none
    PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python bench/scale.py --models 8b,70b --baseline REV \
        --compare 8b,70b --repeats-large 2      # before/after a change, interleaved, outputs compared

Runs (all from bundled configs, offline, on the meta device: no --simulate, no calibration):
- roberta-base --hw pcm_1M, this version and `--baseline` (a git revision exported with `git archive`: the
  version before the meta path in the CLI, which built roberta-base with random weights), interleaved;
- meta-llama/Llama-3.1-8B --hw pcm_1M (56 chips: pcm_1M allows 64);
- meta-llama/Llama-3.1-70B --hw pcm_1M --set tile.max_chips=600 (518 chips).
With --compare, those models run in both versions too (interleaved), and their cost.json and mapping.json are
compared field by field (numbers to 1e-12 relative; strings naming the source tree are left out).
Targets (issue 14): roberta-base <= 6 s; 8B <= 30 s at <= 3 GiB; 70B <= 120 s at <= 6 GiB; at 70B mapping.json
< 50 MB and report.html < 5 MB. The machine may be shared: the load average is printed with the results.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from timing import export_tree

REPO = Path(__file__).resolve().parent.parent
ENTRY = "import sys; from compiler.cli import main; sys.exit(main())"
MODELS = {
    "roberta-base": ["roberta-base", "--hw", "pcm_1M"],
    "8b": ["meta-llama/Llama-3.1-8B", "--hw", "pcm_1M"],
    "70b": ["meta-llama/Llama-3.1-70B", "--hw", "pcm_1M", "--set", "tile.max_chips=600"],
}
TARGETS = {"roberta-base": (6.0, None), "8b": (30.0, 3.0), "70b": (120.0, 6.0)}  # seconds, GiB
STAGES = ("model loaded", "exported, mapped and calibrated", "cost estimated", "report written")


def _env(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}


def run(argv: list[str], tree: Path, out: Path) -> dict:
    """One whole run in a new process: wall seconds, peak RSS (GiB), stage seconds, output sizes (MB)."""
    load = os.getloadavg()[0]
    command = ["/usr/bin/time", "-v", sys.executable, "-c", ENTRY, *argv, "--out", str(out), "--verbose"]
    done = subprocess.run(command, cwd=tree, env=_env(tree), capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", done.stderr)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    cpu = sum(float(m) for m in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", done.stderr))
    seconds = int(wall[1] or 0) * 3600 + int(wall[2]) * 60 + float(wall[3])
    stages = {name: float(m[1]) for name in STAGES
              if (m := re.search(rf"^\s+{re.escape(name)} in ([\d.]+) s", done.stderr, re.M))}
    sizes = {f.name: f.stat().st_size / 1e6 for f in sorted(out.glob("*.json")) + [out / "report.html"]
             if f.is_file()}
    return {"wall_s": seconds, "cpu_s": cpu, "rss_gib": int(rss[1]) / 1024 ** 2, "stages": stages, "sizes": sizes,
            "load": (load, os.getloadavg()[0]), "out": out, "tree": tree}


def differences(a: dict, b: dict) -> list[str]:
    """Where the cost.json and mapping.json of two runs differ: numbers beyond 1e-12 relative, other values unequal
    (a string naming the run's own source tree or output folder is not a difference)."""
    def walk(x, y, path: str, ra: dict, rb: dict, out: list[str]) -> None:
        if isinstance(x, dict) and isinstance(y, dict):
            for k in sorted(set(x) | set(y), key=str):
                if k not in x or k not in y:
                    out.append(f"{path}/{k}: only in one")
                else:
                    walk(x[k], y[k], f"{path}/{k}", ra, rb, out)
        elif isinstance(x, list) and isinstance(y, list):
            if len(x) != len(y):
                out.append(f"{path}: {len(x)} vs {len(y)} items")
            for i, (u, v) in enumerate(zip(x, y)):
                walk(u, v, f"{path}[{i}]", ra, rb, out)
        elif isinstance(x, (int, float)) and isinstance(y, (int, float)) and not isinstance(x, bool):
            if x != y and abs(x - y) > 1e-12 * max(abs(x), abs(y)):
                out.append(f"{path}: {x!r} vs {y!r}")
        elif isinstance(x, str) and isinstance(y, str):
            for r in (ra, rb):
                x, y = x.replace(str(r["tree"]), "TREE").replace(str(r["out"]), "OUT"), \
                    y.replace(str(r["tree"]), "TREE").replace(str(r["out"]), "OUT")
            if x != y:
                out.append(f"{path}: {x[:60]!r} vs {y[:60]!r}")
        elif x != y:
            out.append(f"{path}: {str(x)[:60]!r} vs {str(y)[:60]!r}")
    found: list[str] = []
    for name in ("cost.json", "mapping.json"):
        fa, fb = a["out"] / name, b["out"] / name
        if fa.is_file() and fb.is_file():
            walk(json.loads(fa.read_text()), json.loads(fb.read_text()), name, a, b, found)
    return found


def _export(rev: str, into: Path) -> Path:
    return export_tree(REPO, rev, into)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="roberta-base,8b,70b", help=f"comma-separated, of {', '.join(MODELS)}")
    parser.add_argument("--repeats", type=int, default=3, help="runs of roberta-base per version (median)")
    parser.add_argument("--baseline", default="8152675", help="git revision to compare with, or none")
    parser.add_argument("--compare", default="roberta-base", help="models that run in the baseline too")
    parser.add_argument("--repeats-large", type=int, default=1, help="runs of the 8B and 70B per version")
    args = parser.parse_args()
    models = args.models.split(",")
    compared = set(args.compare.split(",")) if args.baseline != "none" else set()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"this version": REPO}
        if compared & set(models):
            trees[f"baseline {args.baseline}"] = _export(args.baseline, Path(tmp))
        # a first run of python itself, so neither version pays for a cold file cache
        subprocess.run([sys.executable, "-c", "import torch, transformers"], env=_env(REPO), check=True)
        for name in models:
            versions = trees if name in compared else {"this version": REPO}
            repeats = args.repeats if name == "roberta-base" else args.repeats_large
            results: dict[str, list[dict]] = {}
            for i in range(repeats):  # interleaved: load changes hit both versions alike
                for version, tree in versions.items():
                    out = Path(tmp) / f"{name}-{len(results.get(version, []))}-{version.split()[0]}"
                    results.setdefault(version, []).append(run(MODELS[name], tree, out))
            for version, sample in results.items():
                best = sorted(sample, key=lambda r: r["wall_s"])[len(sample) // 2]  # the median run
                rows.append((name, version, statistics.median(r["wall_s"] for r in sample), best))
                print(f"{name}, {version}: " + "; ".join(
                    f"{r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU, load {r['load'][0]:.1f}-{r['load'][1]:.1f}"
                    for r in sample), flush=True)
            if len(results) == 2:
                first, second = (sample[0] for sample in results.values())
                found = differences(first, second)
                print(f"{name}: cost.json and mapping.json of the two versions: "
                      + (f"{len(found)} differences: " + "; ".join(found[:10]) if found else "identical"), flush=True)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} after the runs, python "
          f"{sys.version.split()[0]}, OMP_NUM_THREADS={_env(REPO)['OMP_NUM_THREADS']}")
    print("| model | version | wall (s) | CPU, user + sys (s) | target | peak RSS (GiB) | target | "
          "load / map / cost / report (s) | mapping.json, cost.json, report.html (MB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, version, wall, r in rows:
        seconds, gib = TARGETS[name]
        stages = " / ".join(f"{r['stages'].get(s, float('nan')):.1f}" for s in STAGES)
        sizes = ", ".join(f"{r['sizes'].get(f, 0):.2f}" for f in ("mapping.json", "cost.json", "report.html"))
        print(f"| {name} | {version} | {wall:.1f} | {r['cpu_s']:.1f} | <= {seconds:g} | {r['rss_gib']:.2f} | "
              f"{'<= ' + format(gib, 'g') if gib else '—'} | {stages} | {sizes} |")


if __name__ == "__main__":
    main()
