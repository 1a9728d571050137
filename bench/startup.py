"""Start-up time of the command line: `aimc-compile --help`, `--version` and `aimc-compile report DIR`, each in
a new process as a user runs them, against `python -c pass` (the floor) and the same commands in an earlier
version of the code (exported with `git archive`, read-only), interleaved, medians.

    PYTHONPATH=. .venv/bin/python bench/startup.py                    # against 5fdccc6, main before issue 13
    PYTHONPATH=. .venv/bin/python bench/startup.py --baseline none --repeats 21

Also says whether each command imported torch or transformers. `report` needs an output directory: --dir, or
one made here by `aimc-compile roberta-base --hw pcm_1M` (about 10 s, once).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from timing import export_tree

REPO = Path(__file__).resolve().parent.parent
# what the console script `aimc-compile` runs; the second form reports the heavy modules it imported at exit
ENTRY = "import sys; from compiler.cli import main; sys.exit(main())"
PROBE = ("import atexit, sys; atexit.register(lambda: print('HEAVY', sorted({m.split('.')[0] for m in sys.modules} "
         "& {'torch', 'transformers'}), file=sys.stderr)); from compiler.cli import main; sys.exit(main())")


def _env(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _time(argv: list[str], tree: Path) -> float:
    started = time.perf_counter()
    subprocess.run(argv, cwd=tree, env=_env(tree), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - started


def _heavy(args: list[str], tree: Path) -> str:
    run = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=tree, env=_env(tree), capture_output=True,
                         text=True)
    line = next((ln for ln in run.stderr.splitlines() if ln.startswith("HEAVY")), "HEAVY ?")
    return line.split(" ", 1)[1] + ("" if run.returncode in (0, None) else f" (exit {run.returncode})")


def _export(rev: str, into: Path) -> Path:
    return export_tree(REPO, rev, into)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--baseline", default="5fdccc6", help="git revision to compare with, or none")
    parser.add_argument("--dir", help="an output directory of aimc-compile for `report` (default: made here)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.dir) if args.dir else Path(tmp) / "roberta-base"
        if not args.dir:
            subprocess.run([sys.executable, "-c", ENTRY, "roberta-base", "--hw", "pcm_1M", "--out", str(out)],
                           cwd=REPO, env=_env(REPO), check=True, stderr=subprocess.DEVNULL)
        trees = {"this version": REPO}
        if args.baseline != "none":
            trees[f"baseline {args.baseline}"] = _export(args.baseline, Path(tmp))
        commands = {"python -c pass": ["-c", "pass"], "aimc-compile --help": ["-c", ENTRY, "--help"],
                    "aimc-compile --version": ["-c", ENTRY, "--version"],
                    "aimc-compile report DIR": ["-c", ENTRY, "report", str(out)]}
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.repeats):  # interleaved: load changes hit every command alike
            for version, tree in trees.items():
                for name, argv in commands.items():
                    times.setdefault((version, name), []).append(_time([sys.executable, *argv], tree))
        print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, python {sys.version.split()[0]}, "
              f"{args.repeats} repeats, medians (min)")
        print("| command | version | seconds | imports |")
        print("|---|---|---|---|")
        for name, argv in commands.items():
            for version, tree in trees.items():
                sample = times[(version, name)]
                heavy = "" if name == "python -c pass" else _heavy(argv[2:], tree)
                print(f"| `{name}` | {version} | {statistics.median(sample):.3f} ({min(sample):.3f}) | {heavy} |")


if __name__ == "__main__":
    main()
