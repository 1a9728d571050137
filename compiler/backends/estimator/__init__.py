"""Energy / latency / area / throughput estimator: the second backend of the PlacedGraph.

    cost = estimate(placed, batch=1, seq_len=128)      # what PlacedGraph.estimate calls
    cost.to_json()                                      # cost.json (docs/outputs.md)
    peak_throughput(hw)                                 # all tiles busy: the figure chips are quoted with
    check_prices(hw)                                    # every priced spec field there, before any work

The component model and the validations (HERMES, Ambrogio et al. 2023) are in docs/estimator.md; every spec
field it reads in docs/specs.md.
"""
from __future__ import annotations

import importlib
import sys
import types
from typing import Any

# public name -> its module, imported on first use (PEP 562): `aimc-compile validate` (validate.py) prices chips
# without the workload machinery and torch
_PUBLIC = {"estimate": "estimate", "inference_cost": "estimate", "PeakThroughput": "peak", "peak_throughput": "peak", "check_prices": "prices",
           "CostReport": "report", "LayerCost": "report"}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
    globals()[name] = value
    return value


class _Package(types.ModuleType):
    """Importing the submodule estimate.py binds it as this package's attribute `estimate`; the public name is the
    function, so that binding is skipped (the submodule stays in sys.modules)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _PUBLIC and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
