"""Reading and checking spec data, so that every odd or hostile input is one short error.

YAML: `yaml.safe_load` alone keeps the last of duplicate keys silently, reads `1e-9` as a string (YAML 1.1
floats need a dot and a signed exponent), recurses once per nesting level (RecursionError at a few thousand)
and shares aliased nodes, so a 5 KB file of nested aliases is billions of values to whoever walks or prints
the result. `load_yaml` refuses duplicate keys, nesting deeper than MAX_DEPTH and documents that expand beyond
MAX_NODES while composing, before anything is constructed; `show` quotes a value in at most 60 characters.

Checking: `collect` walks a spec dataclass (fields with their range in `metadata`, compiler/hw_spec.py) over
the data and notes every problem, so a file's errors are reported together (`raise_problems`).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import re
import reprlib
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from compiler.errors import UserError

MAX_DEPTH = 32          # nesting levels, aliases expanded; a spec has 3
MAX_NODES = 10_000      # values after alias expansion; pcm_1M.yaml has about 200
MAX_SPEC_BYTES = 1 << 20  # a spec file is a few KB
SHOWN = 60              # characters of a value quoted in an error message
_MERGE = "tag:yaml.org,2002:merge"


class SpecYamlError(ValueError):
    """The YAML cannot be read as a spec; the message says why, without the file's name."""


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 2, SHOWN, SHOWN
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 4


def show(value: Any, limit: int = SHOWN) -> str:
    """repr(value) in at most `limit` characters, whatever its size or depth."""
    try:
        text = _REPR.repr(value)
    except Exception:  # e.g. an int beyond Python's 4300-digit str limit
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit - 1] + "…"


class _Loader(yaml.SafeLoader):
    _depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise SpecYamlError(f"nested deeper than {MAX_DEPTH} levels (line {mark.line + 1}); a spec has "
                                    f"sections of fields, 3 levels at most")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_mapping_node(self, anchor):
        node = super().compose_mapping_node(anchor)
        seen: set[tuple[str, str]] = set()
        for key, _ in node.value:
            if isinstance(key, ScalarNode) and key.tag != _MERGE:
                if (key.tag, key.value) in seen:
                    raise SpecYamlError(f"duplicate key {show(key.value)} (line {key.start_mark.line + 1}); "
                                        f"give each field once")
                seen.add((key.tag, key.value))
        return node


# YAML 1.1 floats as people write them: 1e-9, 2.5e7, 1E+3 (PyYAML's resolver wants a dot and a signed exponent)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def load_yaml(text: str) -> Any:
    """One YAML document as Python values; SpecYamlError for anything that is not a sane spec document."""
    loader = None
    try:
        loader = _Loader(text)  # already reads: non-printable characters fail here
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, {}, 1)
        return loader.construct_document(node)
    except SpecYamlError:
        raise
    except yaml.YAMLError as exc:
        raise SpecYamlError(f"not valid YAML: {_yaml_problem(exc)}; fix the syntax") from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:  # e.g. an int of 5,000 digits
        raise SpecYamlError(f"cannot read a value ({show(str(exc).splitlines()[0] if str(exc) else exc, 120)})") \
            from None
    finally:
        if loader is not None:
            loader.dispose()


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """What the parser found and where: 'line L, column C: <problem> (<context>)', lines and columns from 1."""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    mark, started = getattr(exc, "problem_mark", None), getattr(exc, "context_mark", None)
    if context and started is not None and (mark is None or started.line != mark.line):
        context += f" that starts at line {started.line + 1}, column {started.column + 1}"  # e.g. an unclosed [
    what = _clip(problem, 80) + (f" ({_clip(context, 100)})" if context else "")
    mark = mark or started
    return f"line {mark.line + 1}, column {mark.column + 1}: {what}" if mark is not None else what


def _clip(text: str, limit: int) -> str:
    """The parser's own words, printable and at most `limit` characters."""
    text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in str(text))
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _check_expansion(node: Any, memo: dict[int, tuple[int, int]], level: int) -> tuple[int, int]:
    """(values, depth) of `node` with every alias expanded; refuses a document beyond the budgets.
    Memoized per node, and never deeper than MAX_DEPTH frames, so a bomb costs as much as its text."""
    known = memo.get(id(node))
    if level > MAX_DEPTH or (known is not None and level + known[1] - 1 > MAX_DEPTH):
        raise SpecYamlError(f"nested deeper than {MAX_DEPTH} levels once aliases are expanded (or a recursive "
                            f"alias); a spec has sections of fields, 3 levels at most")
    if known is not None:
        return known
    if isinstance(node, SequenceNode):
        children = list(node.value)
    elif isinstance(node, MappingNode):
        children = [part for pair in node.value for part in pair]
    else:
        children = []
    size, depth = 1, 1
    for child in children:
        child_size, child_depth = _check_expansion(child, memo, level + 1)
        size, depth = size + child_size, max(depth, child_depth + 1)
        if size > MAX_NODES:
            raise SpecYamlError(f"expands to more than {MAX_NODES:,} values (aliases repeat what they point to); "
                                f"a spec has a few hundred")
    memo[id(node)] = (size, depth)
    return size, depth


# --- the generic check of spec data against the spec dataclasses ----------------------------------------

BAD = object()  # what collect and _convert return for a value with problems (noted in `problems`)
MAX_LISTED = 10  # problems named in one error; the count says how many more


def raise_problems(problems: list[str], path: Path) -> None:
    """One UserError line naming the file and every problem (the first MAX_LISTED of them)."""
    if not problems:
        return
    if len(problems) == 1:
        raise UserError(f"{path}: {problems[0]}")
    listed = "; ".join(problems[:MAX_LISTED])
    more = f"; and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    raise UserError(f"{path}: {len(problems)} errors: {listed}{more}")


def public_fields(cls: Any) -> dict[str, dataclasses.Field]:
    """The fields a spec file may set (internal ones left out); none for a non-dataclass."""
    if not dataclasses.is_dataclass(cls):
        return {}
    return {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}


def field_hint(cls: type, name: str) -> Any:
    """The type hint of field `name` of the dataclass cls."""
    return _type_hints(cls)[name]


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """typing.get_type_hints resolves every annotation string anew on each call (most of the time of checking a
    spec); a spec class's hints never change, so once per class."""
    return typing.get_type_hints(cls)


def forget_type_hints() -> None:
    """After a spec class is rebuilt (a converter section registered), hints naming it resolve anew."""
    _type_hints.cache_clear()


def collect(cls: type, data: Any, prefix: str, problems: list[str]) -> Any:
    """cls(**data) with every field converted and checked; BAD after adding each problem to `problems`."""
    where = prefix.rstrip(".") or "top level"
    if not isinstance(data, dict):
        problems.append(f"field {where!r}: expected a mapping, got {show(data)}")
        return BAD
    before = len(problems)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    public = ", ".join(public_fields(cls))
    for key in data:
        if not isinstance(key, str):
            problems.append(f"key {show(key)} in {where}: keys are field names (YAML reads unquoted on, off, yes, "
                            f"no as booleans and digits as numbers); expected one of: {public}")
        elif key not in fields:
            problems.append(f"unknown field {show(prefix + key)}; expected one of: {public}")
    values = {}
    for name, f in fields.items():
        dotted = prefix + name
        if name not in data:
            if f.default is dataclasses.MISSING:
                problems.append(f"missing field {dotted!r} ({_describe(field_hint(cls, name), f)})")
            continue
        values[name] = _convert(field_hint(cls, name), f, data[name], dotted, problems)
    return cls(**values) if len(problems) == before else BAD


def _describe(hint: Any, f: dataclasses.Field) -> str:
    meta = f.metadata
    optional, base = unwrap_optional(hint)
    if dataclasses.is_dataclass(base):
        text = f"a mapping with fields {', '.join(public_fields(base))}"
    elif typing.get_origin(base) is dict:
        lo, hi = meta.get("min"), meta.get("max")
        text = f"a mapping of names to numbers in [{lo}, {hi}]"
    elif typing.get_origin(base) is tuple and typing.get_args(base)[1:] == (Ellipsis,):
        text = f"a list of 1 to 64 distinct whole numbers in [{meta.get('min')}, {meta.get('max')}]"
    elif meta.get("choices"):
        text = "one of " + ", ".join(meta["choices"])
    else:
        text = getattr(base, "__name__", str(base))
        text = "finite " + text if base is float else text
        lo, hi = meta.get("min"), meta.get("max")
        if lo is not None and hi is not None:
            text += f" in [{lo}, {hi}]"
        elif lo is not None:
            text += f" >= {lo}"
        elif hi is not None:
            text += f" <= {hi}"
    return "expected " + text + (" or null (ideal)" if optional else "")


def unwrap_optional(hint: Any) -> tuple[bool, Any]:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return True, args[0]
    return False, hint


def _convert(hint: Any, f: dataclasses.Field, value: Any, dotted: str, problems: list[str]) -> Any:
    """The value checked against its field (type, range, choices); BAD after noting a problem."""
    optional, base = unwrap_optional(hint)
    if value is None and optional:
        return None
    if dataclasses.is_dataclass(base):
        return collect(base, value, dotted + ".", problems)
    meta = f.metadata
    if typing.get_origin(base) is tuple and typing.get_args(base)[1:] == (Ellipsis,):  # a list of distinct values
        kind = typing.get_args(base)[0]
        ok = isinstance(value, (list, tuple)) and 0 < len(value) <= 64
        converted = tuple(_scalar(kind, v) for v in value) if ok else BAD
        ok = ok and BAD not in converted and len(set(converted)) == len(converted) \
            and all(_in_range(v, meta) for v in converted)
    elif typing.get_origin(base) is tuple:
        args = typing.get_args(base)
        ok = isinstance(value, (list, tuple)) and len(value) == len(args)
        converted = tuple(_scalar(a, v) for a, v in zip(args, value)) if ok else BAD
        ok = ok and BAD not in converted
    elif typing.get_origin(base) is dict:  # a mapping of names to scalars, each in the field's range
        kind = typing.get_args(base)[1]
        ok = isinstance(value, dict) and all(isinstance(k, str) for k in value)
        converted = {k: _scalar(kind, v) for k, v in value.items()} if ok else BAD
        ok = ok and all(v is not BAD and _in_range(v, meta) for v in converted.values())
    else:
        converted = _scalar(base, value)
        ok = converted is not BAD and _in_range(converted, meta)
    if not ok:
        problems.append(f"field {dotted!r} = {show(value)}: {_describe(hint, f)}")
        return BAD
    return converted


def _in_range(value: Any, meta: Any) -> bool:
    return not ((meta.get("choices") and value not in meta["choices"])
                or (meta.get("min") is not None and value < meta["min"])
                or (meta.get("max") is not None and value > meta["max"]))


def _scalar(base: Any, value: Any) -> Any:
    """value as the scalar type base, or BAD; bool is no int, and a float must be finite (no inf, no nan)."""
    if base is bool:
        return value if isinstance(value, bool) else BAD
    if base is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else BAD
    if base is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not is_finite(value):
            return BAD
        return float(value)
    if base is str:
        return value if isinstance(value, str) else BAD
    raise TypeError(f"unsupported spec field type {base}")


def is_finite(number: int | float) -> bool:
    """Neither inf nor nan, nor an int too large for a float."""
    try:
        return math.isfinite(number)
    except OverflowError:
        return False
