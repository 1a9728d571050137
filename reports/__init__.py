"""The HTML report: one self-contained page built from the JSON outputs of a run.

    from reports import write_report
    write_report(Path("aimc-out/roberta-base"))          # reads mapping.json (+ cost.json, accuracy.json)

Everything the page shows comes from those files, read through their typed definitions (reports/schema.py),
so `aimc-compile report DIR` re-renders it without recompiling, and without importing torch or the
compiler. The page needs no network: CSS, script and figures are inline.
"""
from __future__ import annotations

__all__ = ["write_report", "render_report"]


def __getattr__(name: str):
    # Imported on first use: the compiler imports reports.schema to check what it writes, and should not
    # pay for jinja2 and matplotlib then.
    if name in __all__:
        from reports import render
        return getattr(render, name)
    raise AttributeError(f"module 'reports' has no attribute {name!r}")
