"""Reading the spec's cost fields: a missing one is one UserError naming the spec file and the dotted field."""
from __future__ import annotations

from typing import Any

from compiler.errors import UserError

PJ, FJ, FF, NS, PS = 1e-12, 1e-15, 1e-15, 1e-9, 1e-12  # SI factors of the spec's units (fF: farads)
UM2_PER_MM2 = 1e6


def require(spec: Any, dotted: str, purpose: str) -> Any:
    """The value of `dotted` in `spec`; a UserError naming the field if it (or its section) is missing."""
    value: Any = spec
    for part in dotted.split("."):
        value = getattr(value, part, None) if value is not None else None
    if value is None:
        where = getattr(spec, "source_file", "") or getattr(spec, "name", "the hardware spec")
        raise UserError(f"{where}: the estimator needs {dotted} ({purpose}) but the spec leaves it unset (missing or "
                        f"null); add it with its source (see docs/specs.md)")
    return value
