"""Load the JSON outputs through their typed definitions, build the page's context, render the template."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import stat
import uuid
from pathlib import Path
from typing import Callable

import jinja2

from reports import charts, fmt
from reports.mapping_view import build_mapping_view
from reports.power import build_power_section
from reports.schema import SCHEMA_VERSION, AccuracyJson, CostJson, MappingJson, SchemaError
from reports.budget_section import build_budget_section
from reports.decoding_section import build_decoding_section
from reports.sections import build_accuracy_section, build_cost_section
from reports.tilemap import render_chip_map, render_tile_map

TEMPLATES = Path(__file__).resolve().parent / "templates"
REPORT_NAME = "report.html"
# The command is embedded in the page so that a re-render (`aimc-compile report DIR`) can keep it.
_COMMAND_RE = re.compile(r'<script type="application/json" id="report-command">(.*?)</script>', re.S)
_REWRITE = "re-run aimc-compile to rewrite it"
# What a mapping.json may ask the report to draw or expand: 16x the tiles of Llama-3.1-70B (265,128, packed),
# so that a small hand-made file cannot demand gigabytes (a run of 10^15 segments, a tile index of 2^50)
MAX_TILES_READ = 2 ** 22
MAX_SEGMENTS_READ = 2 ** 23


def _load(cls: type, path: Path, required: bool = False):
    """The file at `path` read through its definition in reports/schema.py; None for a missing optional one."""
    data = _read_json(path, required)
    if data is None and path.is_file():  # the file holds JSON null
        raise SchemaError(f"{path}: expected a JSON object at the top level, got null; {_REWRITE}")
    check_version(data, path)
    return _typed(cls, data, path)


def _read_json(path: Path, required: bool) -> object | None:
    if not path.is_file():
        if required:
            raise SchemaError(f"{path}: not found; give a directory written by aimc-compile")
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SchemaError(f"{path}: cannot read it as JSON ({_first_line(exc)}); {_REWRITE}") from None
    except RecursionError:  # [[[[...]]]] nested deeper than Python's parser goes
        raise SchemaError(f"{path}: cannot read it as JSON (nested too deeply); {_REWRITE}") from None


def check_version(data: object, path: Path | str) -> None:
    """The one check of a file's schema_version (`data` as json.load returns it), for every reader (report,
    compare), before its fields: a file of another version than this aimc-compile writes is refused (none: an
    older or hand-made file, read as version 1)."""
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version is not None and version != SCHEMA_VERSION:
        raise SchemaError(f"{path}: schema_version {version}, but this aimc-compile reads version {SCHEMA_VERSION}; "
                          f"re-run that compile with this version")


def _first_line(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= 120 else text[:119] + "…"


def _typed(cls: type, data: object, path: Path | str):
    """`data` (a file's content as json.load returns it) as an instance of cls; None stays None."""
    if data is None:
        return None
    try:
        return cls.from_json(data, str(path))
    except SchemaError as exc:
        raise SchemaError(f"{exc}; {_REWRITE}") from None


def _previous_command(report: Path) -> str | None:
    if not report.is_file():
        return None
    match = _COMMAND_RE.search(report.read_text(errors="replace"))
    if not match:
        return None
    try:
        value = json.loads(match.group(1))  # `\u003c` and older pages' `<\/` are JSON escapes
    except ValueError:
        return None
    return value if isinstance(value, str) else None


def flatten_spec(spec: dict, prefix: str = "") -> list[tuple[str, object]]:
    """Nested spec sections as (dotted key, value) rows, in the file's order."""
    rows: list[tuple[str, object]] = []
    for key, value in spec.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            rows.extend(flatten_spec(value, dotted + "."))
        else:
            rows.append((dotted, value))
    return rows


def spec_sections(spec: dict) -> list[tuple[str, list[tuple[str, object]]]]:
    """The spec as (section, rows) with keys relative to their section; top-level scalars come first."""
    general = [(key, value) for key, value in spec.items() if not isinstance(value, dict)]
    sections = [("general", general)] if general else []
    sections += [(key, flatten_spec(value)) for key, value in spec.items() if isinstance(value, dict)]
    return sections


def overridden_rows(m: MappingJson) -> dict[str, object]:
    """The spec rows (dotted keys, as flatten_spec gives them) that a `--set` changed -> the spec file's value
    there, from mapping.json's `hw_overrides`; a section set as a whole marks each of its rows."""
    rows: dict[str, object] = {}
    for key, override in m.hw_overrides.items():
        if isinstance(override.value, dict):
            on_file = dict(flatten_spec(override.file, key + ".")) if isinstance(override.file, dict) else {}
            rows.update({sub: on_file.get(sub) for sub, _ in flatten_spec(override.value, key + ".")})
        else:
            rows[key] = override.file
    return rows


def spec_value(value: object) -> str:
    if value is None:
        return "null (ideal)"
    if isinstance(value, bool):
        return "true" if value else "false (ideal)"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(spec_value(v) for v in value) + "]"
    return str(value)


def _json_script(value: object) -> str:
    """JSON to embed in a <script> block: every `<` escaped, so that neither `</script>` nor `<!--` in a
    string can end the block or change how the browser parses it; `>` and `&` for good measure."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def environment() -> jinja2.Environment:
    """The templates of reports/templates with the report's filters (also used by reports/compare.py)."""
    # Lenient undefined: an optional part missing from a JSON file reads as empty and its block is skipped.
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=jinja2.select_autoescape(
        enabled_extensions=("html", "j2")), undefined=jinja2.ChainableUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(si=fmt.si, pct=fmt.pct, integer=fmt.integer, span=fmt.span, sig=fmt._sig)
    env.filters.update(flatten_spec=flatten_spec, spec_sections=spec_sections, spec_value=spec_value)
    env.filters.update(json_script=_json_script, component_label=charts.component_label,
                       component_color=charts.component_color)
    return env


def _check_sizes(m: MappingJson, path: str) -> None:
    """Counts and indices the report expands or draws, within MAX_TILES_READ / MAX_SEGMENTS_READ."""
    tiles = [m.tiles_used, m.tiles_per_chip, m.tiles_available, m.chips_used, *m.tile_utilization,
             *(s.tile for s in m.segments), *(r.tile + r.count for r in m.segment_runs),
             *(t.tile for e in m.layers for t in e.tiles)]
    largest = max((t for t in tiles if t is not None), default=0)
    segments = len(m.segments) + sum(r.count for r in m.segment_runs)
    if largest > MAX_TILES_READ or segments > MAX_SEGMENTS_READ:
        what = f"{segments} segments" if segments > MAX_SEGMENTS_READ else f"a tile count or index of {largest}"
        raise SchemaError(f"{path}: {what}, beyond what the report draws ({MAX_TILES_READ} tiles, "
                          f"{MAX_SEGMENTS_READ} segments); {_REWRITE}")


def _complete_mapping(m: MappingJson, path: str = "mapping.json") -> MappingJson:
    """mapping.json with the fields an older or hand-made file lacks derived from the required ones."""
    _check_sizes(m, path)
    util = m.tile_utilization
    per_chip = m.tiles_per_chip if m.tiles_per_chip is not None else (m.tiles_available or m.tiles_used)
    tiles = list(util) or [0]
    return dataclasses.replace(
        m, tiles_per_chip=per_chip,
        tiles_available=m.tiles_available if m.tiles_available is not None else per_chip,
        mean_utilization=(m.mean_utilization if m.mean_utilization is not None
                          else sum(util.values()) / len(util) if util else None),
        chips_used=m.chips_used if m.chips_used is not None else max(tiles) // max(1, per_chip) + 1,
        analog_weights=(m.analog_weights if m.analog_weights is not None else
                        sum((e.in_features or 0) * (e.out_features or 0) for e in m.layers if e.kind == "analog")))


def render_report(mapping: dict, cost: dict | None = None, accuracy: dict | None = None,
                  command: str | None = None) -> str:
    """The report page as a string, from the content of mapping.json, cost.json and accuracy.json as
    json.load returns it; SchemaError when one does not match its definition (reports/schema.py)."""
    for name, data in (("mapping.json", mapping), ("cost.json", cost), ("accuracy.json", accuracy)):
        check_version(data, name)
    return _render(_typed(MappingJson, mapping, "mapping.json"), _typed(CostJson, cost, "cost.json"),
                   _typed(AccuracyJson, accuracy, "accuracy.json"), command)


def _render(mapping: MappingJson, cost: CostJson | None, accuracy: AccuracyJson | None, command: str | None) -> str:
    mapping = _complete_mapping(mapping)
    view = build_mapping_view(mapping)
    cost_section = build_cost_section(cost) if cost else None
    accuracy_section = build_accuracy_section(accuracy) if accuracy else None
    power = build_power_section(cost, mapping.chips_used) if cost else None
    return environment().get_template("report.html.j2").render(
        m=mapping, view=view, tile_map=render_tile_map(view), chip_maps=render_chip_map(view), cost=cost,
        accuracy=accuracy, command=command, cs=cost_section, acc=accuracy_section, power=power,
        dec=build_decoding_section(accuracy), bud=build_budget_section(accuracy),
        overrides=overridden_rows(mapping))


def read_outputs(out_dir: Path) -> tuple[MappingJson, CostJson | None, AccuracyJson | None]:
    """out_dir's mapping.json (required), cost.json and accuracy.json (None when missing), read through their
    definitions; mapping.json's derivable fields completed. SchemaError naming the file otherwise."""
    out_dir = Path(out_dir)
    mapping = _load(MappingJson, out_dir / "mapping.json", required=True)
    return (_complete_mapping(mapping, str(out_dir / "mapping.json")), _load(CostJson, out_dir / "cost.json"),
            _load(AccuracyJson, out_dir / "accuracy.json"))


def write_report(out_dir: Path, command: str | None = None) -> Path:
    """Render out_dir/report.html from out_dir's mapping.json, cost.json and accuracy.json (both optional).

    `command` is the command line that produced the outputs; without one, the command recorded in
    mapping.json or in an earlier report.html in out_dir is kept. SchemaError when a file is missing,
    unreadable or does not match its definition.
    """
    out_dir = Path(out_dir)
    mapping, cost, accuracy = read_outputs(out_dir)
    target = out_dir / REPORT_NAME
    check_replaceable(target, "a report", is_report)
    if command is None:
        command = mapping.command or _previous_command(target)
    write_file(target, _render(mapping, cost, accuracy, command), "the report", is_report)
    return target


def is_report(head: str) -> bool:
    """Whether a page (its first 64 kB) is a report.html of aimc-compile (its title says so)."""
    return head.startswith("<!DOCTYPE html>") and "· aimc-compile report</title>" in head


def check_replaceable(target: Path, what: str, ours: Callable[[str], bool] | None = None) -> None:
    """Refuse (SchemaError) to replace `target` if it is a link or not a plain file, or, with `ours`, a file
    whose beginning `ours` does not recognize as written by aimc-compile: the user's, whatever its name."""
    try:
        mode = os.lstat(target).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise SchemaError(f"{target}: cannot reach it ({exc.strerror or exc}); give another output path") from None
    if not stat.S_ISREG(mode):
        raise SchemaError(f"{target}: a link or not a plain file; aimc-compile writes through no link and replaces "
                          f"only files it wrote: move it away or give another output path")
    if ours is not None and not ours(_head(target)):
        raise SchemaError(f"{target}: not {what} written by aimc-compile, so it may be yours; move it away or give "
                          f"another output path")


def _head(path: Path, size: int = 65536) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return ""
    with os.fdopen(fd, "rb") as handle:
        return handle.read(size).decode("utf-8", errors="replace")


def write_file(target: Path, text: str, what: str, ours: Callable[[str], bool] | None = None) -> None:
    """Write `text` to `target` whole or not at all (a new hidden partial file, never one followed through a
    link, then a rename); refused if `target` is a link, not a plain file, or (with `ours`, see
    check_replaceable) a file aimc-compile did not write. A folder or disk that refuses is one SchemaError
    line, like an unreadable input."""
    target = Path(target)
    check_replaceable(target, what, ours)
    partial = target.with_name(f".{target.name[:200]}.{uuid.uuid4().hex[:8]}.partial")
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(partial, target)
    except OSError as exc:  # a read-only folder or disk, a full disk
        try:
            partial.unlink(missing_ok=True)
        except OSError:
            pass
        raise SchemaError(f"{target}: cannot write {what} ({exc.strerror or exc}); give a writable "
                          f"directory") from None
