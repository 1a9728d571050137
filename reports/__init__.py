"""The HTML report: one self-contained page built from the JSON outputs of a run.

    from reports import write_report
    write_report(Path("aimc-out/roberta-base"))          # reads mapping.json (+ cost.json, accuracy.json)

Everything the page shows comes from those files, so `aimc-compile report DIR` re-renders it without
recompiling. The page needs no network: CSS, script and figures are inline.
"""
from __future__ import annotations

from pathlib import Path

from reports.render import render_report, write_report

__all__ = ["write_report", "render_report"]
