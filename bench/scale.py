"""Decoders at scale (issue 14, item 7): whole `aimc-compile` runs in a new process, as a user runs them, timed
by /usr/bin/time -v (wall time, peak RSS), with the size of what each writes and the time of each stage (the
CLI's --verbose lines).

    PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python bench/scale.py                  # roberta-base, 8B, 70B
    PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python bench/scale.py --models roberta-base,8b --baseline none

Runs (all from bundled configs, offline, on the meta device: no --simulate, no calibration):
- roberta-base --hw pcm_1M, this version and `--baseline` (a git revision exported with `git archive`: the
  version before the meta path in the CLI, which built roberta-base with random weights), interleaved;
- meta-llama/Llama-3.1-8B --hw pcm_1M (56 chips: pcm_1M allows 64);
- meta-llama/Llama-3.1-70B --hw pcm_1M --set tile.max_chips=600 (518 chips).
Targets (issue 14): roberta-base <= 6 s; 8B <= 30 s at <= 3 GiB; 70B <= 120 s at <= 6 GiB; at 70B mapping.json
< 50 MB and report.html < 5 MB. The machine may be shared: the load average is printed with the results.
"""
from __future__ import annotations

import argparse
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
    return {"wall_s": seconds, "cpu_s": cpu, "rss_gib": int(rss[1]) / 1024 ** 2, "stages": stages, "sizes": sizes}


def _export(rev: str, into: Path) -> Path:
    return export_tree(REPO, rev, into)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="roberta-base,8b,70b", help=f"comma-separated, of {', '.join(MODELS)}")
    parser.add_argument("--repeats", type=int, default=3, help="runs of roberta-base per version (median)")
    parser.add_argument("--baseline", default="8152675", help="git revision for roberta-base, or none")
    args = parser.parse_args()
    models = args.models.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"this version": REPO}
        if args.baseline != "none" and "roberta-base" in models:
            trees[f"baseline {args.baseline}"] = _export(args.baseline, Path(tmp))
        # a first run of python itself, so neither version pays for a cold file cache
        subprocess.run([sys.executable, "-c", "import torch, transformers"], env=_env(REPO), check=True)
        for name in models:
            versions = trees if name == "roberta-base" else {"this version": REPO}
            repeats = args.repeats if name == "roberta-base" else 1
            results: dict[str, list[dict]] = {}
            for i in range(repeats):  # interleaved: load changes hit both versions alike
                for version, tree in versions.items():
                    out = Path(tmp) / f"{name}-{len(results.get(version, []))}-{version.split()[0]}"
                    results.setdefault(version, []).append(run(MODELS[name], tree, out))
            for version, sample in results.items():
                best = sorted(sample, key=lambda r: r["wall_s"])[len(sample) // 2]  # the median run
                rows.append((name, version, statistics.median(r["wall_s"] for r in sample), best))
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
