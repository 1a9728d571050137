"""aimc-compile: map transformers onto analog in-memory-computing (PCM) chips, simulate, estimate cost.

The public names are imported on first use (PEP 562): `import compiler` and `aimc-compile --help` or
`aimc-compile report DIR` then load neither torch nor transformers.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from compiler.errors import UserError

__version__ = "0.1.0"  # pyproject.toml reads it from here

# public name -> the module that defines it
_LAZY = {
    "compile_model": "compiler.pipeline",
    "hwa_finetune": "compiler.training.finetune",
    "save_finetuned": "compiler.training.finetune",
    "load_hw_spec": "compiler.hw_spec",
    "HardwareSpec": "compiler.hw_spec",
    "load_model": "compiler.models",
    "PlacedGraph": "compiler.ir",
    "Kind": "compiler.ir",
    "sweep": "compiler.dse",
    "RunConfig": "compiler.config",
    "run": "compiler.runner",
    "RunResult": "compiler.runner",
}

# The backends behind PlacedGraph.simulator / .estimate: compiler/ir.py imports no backend, it asks this
# package for the function by name (`backend`), and the package imports it on first use. The one place that
# ties the IR to its backends, so the import graph has no circle between them (docs/architecture.md).
BACKENDS = {
    "simulator": ("compiler.backends.simulator", "build_simulator"),
    "estimate": ("compiler.backends.estimator", "estimate"),
}

__all__ = ["compile_model", "hwa_finetune", "save_finetuned", "load_hw_spec", "load_model", "HardwareSpec",
           "PlacedGraph", "Kind", "UserError", "sweep", "RunConfig", "run", "RunResult"]

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ imports these on first use
    from compiler.config import RunConfig
    from compiler.dse import sweep
    from compiler.hw_spec import HardwareSpec, load_hw_spec
    from compiler.ir import Kind, PlacedGraph
    from compiler.models import load_model
    from compiler.pipeline import compile_model
    from compiler.runner import RunResult, run
    from compiler.training.finetune import hwa_finetune, save_finetuned


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:  # also how `from compiler import sentences` falls through to the submodule import
        raise AttributeError(f"module 'compiler' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once imported, a plain attribute
    return value


def backend(name: str):
    """The backend function `name` of BACKENDS (imported on first use)."""
    module, attribute = BACKENDS[name]
    return getattr(importlib.import_module(module), attribute)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
