"""The arrows of docs/architecture.md: which room may import which, read off every import in the source."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# room -> the rooms it may import (its own room always); the order of ROOMS decides which prefix matches first
ROOMS = {
    "compiler.errors": set(),
    "compiler.sentences": set(),
    "compiler.progress": set(),
    "compiler.spec_check": {"compiler.errors"},
    "compiler.outputs": {"compiler.errors"},
    "compiler.hw_spec": {"compiler.errors", "compiler.spec_check"},
    "compiler.models": {"compiler.errors", "compiler.hw_spec", "compiler.sentences", "compiler.progress"},
    "compiler.frontend": {"compiler.errors", "compiler.hw_spec", "compiler.sentences"},
    "compiler.ir": {"compiler.errors", "compiler.hw_spec", "compiler.models", "reports.schema"},
    "compiler.analog": {"compiler.errors", "compiler.hw_spec"},
    "passes": {"compiler.errors", "compiler.hw_spec", "compiler.models", "compiler.frontend", "compiler.ir",
               "compiler.sentences", "compiler.analog", "compiler.progress"},
    "compiler.placement": {"compiler.errors", "compiler.ir", "passes", "compiler.backends.estimator"},
    "compiler.pipeline": {"compiler.errors", "compiler.hw_spec", "compiler.models", "compiler.frontend",
                          "compiler.ir", "passes", "compiler.placement"},
    "compiler.backends.simulator": {"compiler.errors", "compiler.hw_spec", "compiler.ir", "compiler.analog",
                                    "compiler.progress"},
    "compiler.backends.estimator": {"compiler.errors", "compiler.hw_spec", "compiler.ir", "reports.schema"},
    "compiler.evaluation": {"compiler.errors", "compiler.hw_spec", "compiler.models", "compiler.frontend",
                            "compiler.ir", "compiler.sentences", "compiler.backends.simulator",
                            "compiler.backends.estimator", "compiler.progress", "reports.schema"},
    "compiler.training": {"compiler.errors", "compiler.hw_spec", "compiler.models", "compiler.frontend",
                          "compiler.ir", "compiler.sentences", "compiler.analog", "passes", "compiler.pipeline",
                          "compiler.backends.simulator", "compiler.evaluation", "compiler.progress",
                          "reports.schema"},
    # the sweep (aimc-compile sweep): drives the single run of compiler/cli.py per point; nothing imports it
    # but the entry points
    "compiler.dse": {"compiler.errors", "compiler.progress", "compiler.spec_check", "compiler.outputs",
                     "compiler.hw_spec", "compiler.models", "compiler.evaluation", "reports", "reports.schema"},
    # the typed definitions of the JSON outputs: a leaf (standard library only) that writers and readers share
    "reports.schema": {"reports"},
    "reports": {"reports.schema"},
}
# PlacedGraph.simulator / .estimate: the public convenience API, importing the backends lazily
ALLOWED_LAZY = {("compiler.ir", "compiler.backends.simulator"), ("compiler.ir", "compiler.backends.estimator")}
PACKAGE_ENTRY_POINTS = {"compiler", "compiler.cli", "compiler.backends"}  # may import anything


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _room(module: str) -> str | None:
    for room in sorted(ROOMS, key=len, reverse=True):
        if module == room or module.startswith(room + "."):
            return room
    return None


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, at top level) for every import in the file."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            found += [(name if _room(name) else node.module, id(node) in top) for name in names]
    return found


SOURCES = sorted(p for folder in ("compiler", "passes", "reports") for p in (ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_arrows(path):
    module = _module_name(path)
    if module in PACKAGE_ENTRY_POINTS:
        return
    room = _room(module)
    assert room is not None, f"{module}: in no room of docs/architecture.md; add it there and here"
    for imported, at_top in _imports(path):
        target = _room(imported)
        if imported.split(".")[0] in ("compiler", "passes", "reports") and imported not in ROOMS:
            assert target is not None or imported in PACKAGE_ENTRY_POINTS, f"{module} imports {imported}"
        if target is None or target == room:
            continue
        if not at_top and (room, target) in ALLOWED_LAZY:
            continue
        assert target in ROOMS[room], f"{module} ({room}) imports {imported} ({target}): not an arrow of docs/architecture.md"


def test_reports_import_no_torch():
    for path in (ROOT / "reports").rglob("*.py"):
        for imported, _ in _imports(path):
            assert imported.split(".")[0] not in ("torch", "transformers", "compiler", "passes"), (path, imported)
