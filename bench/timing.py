"""Timing helpers shared by the bench/ scripts (run as `python bench/NAME.py`, so bench/ is on sys.path)."""
from __future__ import annotations

import statistics
import time


def median_time(fn, repeats: int) -> float:
    """Median wall time of `repeats` calls of fn(), in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def export_tree(repo, rev: str, into):
    """The source tree of git revision `rev` of `repo`, extracted under `into` (a baseline run from it)."""
    import subprocess
    import tarfile
    archive = into / "tree.tar"
    subprocess.run(["git", "-C", str(repo), "archive", "-o", str(archive), rev], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / "tree", filter="data")
    return into / "tree"
