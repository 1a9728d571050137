"""Typed JSON records: a dataclass per JSON object, checked field by field when read or written.

Each field's metadata says its presence (`required`, `written`, `optional`; see reports/schema.py), and
optionally its choices or minimum; the type hint says its JSON type: str, int, float, bool, `X | None`,
list[X], tuple[...] (a fixed-length list), dict[str, X] or dict[int, X] (an object keyed by decimal
integers), Any, or another Record. Standard library only.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

REQUIRED, WRITTEN, OPTIONAL = "required", "written", "optional"
_SHOWN = 40  # characters of a bad value or key an error message quotes


class SchemaError(ValueError):
    """A JSON output that does not match its definition (or cannot be read at all); also a report that cannot
    be written. The CLI prints it as one line and exits with status 2."""


def _field(presence: str, default: Any = None, choices: tuple | None = None, min: float | None = None) -> Any:
    meta = {"presence": presence, "choices": choices, "min": min}
    if isinstance(default, (list, dict)):
        assert not default, "only empty containers as defaults"
        return field(default_factory=type(default), metadata=meta)
    return field(default=default, metadata=meta)


def required(**kw: Any) -> Any:
    return _field(REQUIRED, **kw)


def written(default: Any = None, **kw: Any) -> Any:
    return _field(WRITTEN, default, **kw)


def optional(default: Any = None, **kw: Any) -> Any:
    return _field(OPTIONAL, default, **kw)


class Record:
    """Base of the typed definitions."""

    @classmethod
    def from_json(cls, data: Any, path: str = "<json>") -> typing.Self:
        """`data` (as json.load returns it) as an instance of cls; SchemaError if it does not match."""
        return check(cls, data, path)


def check(cls: type, data: Any, path: str, writing: bool = False) -> Any:
    """`data` as an instance of the Record cls; with `writing`, every `written` field must be there too."""
    return _record(cls, data, "", _Check(str(path), writing))


# --- the check ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Check:
    path: str
    writing: bool

    def error(self, where: str, expected: str, value: Any, got: str | None = None) -> SchemaError:
        got = got or _show(value)
        if not where:
            return SchemaError(f"{self.path}: expected {expected} at the top level, got {got}")
        return SchemaError(f"{self.path}: field {where!r}: expected {expected}, got {got}")


_HINTS: dict[type, dict[str, Any]] = {}


def _record(cls: type, value: Any, where: str, check: _Check) -> Any:
    if not isinstance(value, dict):
        raise check.error(where, "a JSON object", value)
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        dotted = f"{where}.{f.name}" if where else f.name
        if f.name not in value:
            presence = f.metadata["presence"]
            if presence == REQUIRED or (presence == WRITTEN and check.writing):
                raise SchemaError(f"{check.path}: missing field {dotted!r} (expected {_describe(hints[f.name], f)})")
            continue
        values[f.name] = _value(hints[f.name], f, value[f.name], dotted, check)
    return cls(**values)


def _value(hint: Any, f: dataclasses.Field, value: Any, where: str, check: _Check) -> Any:
    nullable, base = _unwrap_optional(hint)
    if value is None:
        if nullable or base is Any:
            return None
        raise check.error(where, _describe(hint, f), value)
    if base is Any:
        return value
    if isinstance(base, type) and issubclass(base, Record):
        return _record(base, value, where, check)
    origin, args = typing.get_origin(base), typing.get_args(base)
    if origin is list:  # tuples too: the writer's dicts before JSON (PlacedGraph.to_json() as it returns)
        if not isinstance(value, (list, tuple)):
            raise check.error(where, _describe(hint, f), value)
        return [_value(args[0], f, item, f"{where}[{i}]", check) for i, item in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise check.error(where, _describe(hint, f), value)
        return tuple(_value(a, f, item, f"{where}[{i}]", check) for i, (a, item) in enumerate(zip(args, value)))
    if origin is dict:
        if not isinstance(value, dict):
            raise check.error(where, _describe(hint, f), value)
        return {_key(args[0], key, where, check): _value(args[1], f, item, f"{where}.{_clip(str(key))}", check)
                for key, item in value.items()}
    return _scalar(base, hint, f, value, where, check)


def _key(kind: type, key: Any, where: str, check: _Check) -> Any:
    """JSON object keys are strings; a dict[int, ...] has decimal integers there (tile indices)."""
    if kind is not int or (isinstance(key, int) and not isinstance(key, bool)):
        return key
    if isinstance(key, str) and key.isascii() and key.isdecimal():
        return int(key)
    raise check.error(where, "an object keyed by integers", key, f"the key {_clip(repr(key))}")


_MAX_INT = 2 ** 53  # integers JSON readers agree on; beyond, plotting libraries overflow


def _finite(v: Any) -> bool:
    try:
        return math.isfinite(v)
    except OverflowError:  # an int beyond any float
        return False


_IS = {bool: lambda v: isinstance(v, bool),
       int: lambda v: isinstance(v, int) and not isinstance(v, bool) and -_MAX_INT <= v <= _MAX_INT,  # true is no number
       float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and _finite(v),  # no NaN, no infinity
       str: lambda v: isinstance(v, str)}


def _scalar(base: type, hint: Any, f: dataclasses.Field, value: Any, where: str, check: _Check) -> Any:
    choices, low = f.metadata.get("choices"), f.metadata.get("min")
    out_of_range = low is not None and base is not str and _IS[base](value) and value < low
    if not _IS[base](value) or (choices and value not in choices) or out_of_range:
        raise check.error(where, _describe(hint, f), value)
    return float(value) if base is float else value


def _unwrap_optional(hint: Any) -> tuple[bool, Any]:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return True, args[0]
    return False, hint


_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _describe(hint: Any, f: dataclasses.Field) -> str:
    nullable, base = _unwrap_optional(hint)
    origin = typing.get_origin(base)
    if base is Any:
        text = "any JSON value"
    elif isinstance(base, type) and issubclass(base, Record):
        text = "a JSON object"
    elif origin is list:
        text = "a list"
    elif origin is tuple:
        args = typing.get_args(base)
        text = f"a list of {len(args)} {'integers' if args[0] is int else 'numbers'}"
    elif origin is dict:
        text = "a JSON object"
    elif f.metadata.get("choices"):
        text = "one of " + ", ".join(repr(c) for c in f.metadata["choices"])
    else:
        text = _NAMES.get(base, str(base))
        if f.metadata.get("min") is not None and base in (int, float):
            text += f" >= {f.metadata['min']}"
    return text + (" or null" if nullable else "")


def _clip(text: str) -> str:
    return text if len(text) <= _SHOWN else text[:_SHOWN - 1] + "…"


def _show(value: Any) -> str:
    """A bad value, in a few words: never the whole of a large one."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return f"an object of {len(value)} field{'s' if len(value) != 1 else ''}"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)} item{'s' if len(value) != 1 else ''}"
    if isinstance(value, str):
        return f"the string {_clip(repr(value))}"
    return f"{_clip(repr(value))}"
