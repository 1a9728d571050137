"""Load the JSON outputs through their typed definitions, build the page's context, render the template."""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import jinja2

from reports import charts, fmt
from reports.mapping_view import build_mapping_view
from reports.power import build_power_section
from reports.schema import AccuracyJson, CostJson, MappingJson, SchemaError
from reports.decoding_section import build_decoding_section
from reports.sections import build_accuracy_section, build_cost_section
from reports.tilemap import render_chip_map, render_tile_map

TEMPLATES = Path(__file__).resolve().parent / "templates"
REPORT_NAME = "report.html"
# The command is embedded in the page so that a re-render (`aimc-compile report DIR`) can keep it.
_COMMAND_RE = re.compile(r'<script type="application/json" id="report-command">(.*?)</script>', re.S)
_REWRITE = "re-run aimc-compile to rewrite it"


def _load(cls: type, path: Path, required: bool = False):
    """The file at `path` read through its definition in reports/schema.py; None for a missing optional one."""
    data = _read_json(path, required)
    if data is None and path.is_file():  # the file holds JSON null
        raise SchemaError(f"{path}: expected a JSON object at the top level, got null; {_REWRITE}")
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


def _complete_mapping(m: MappingJson) -> MappingJson:
    """mapping.json with the fields an older or hand-made file lacks derived from the required ones."""
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
        dec=build_decoding_section(accuracy),
        overrides=overridden_rows(mapping))


def read_outputs(out_dir: Path) -> tuple[MappingJson, CostJson | None, AccuracyJson | None]:
    """out_dir's mapping.json (required), cost.json and accuracy.json (None when missing), read through their
    definitions; mapping.json's derivable fields completed. SchemaError naming the file otherwise."""
    out_dir = Path(out_dir)
    mapping = _load(MappingJson, out_dir / "mapping.json", required=True)
    return (_complete_mapping(mapping), _load(CostJson, out_dir / "cost.json"),
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
    if command is None:
        command = mapping.command or _previous_command(target)
    write_file(target, _render(mapping, cost, accuracy, command), "the report")
    return target


def write_file(target: Path, text: str, what: str) -> None:
    """Write `text` to `target` whole or not at all (a hidden partial file, then a rename); a folder or disk
    that refuses is one SchemaError line, like an unreadable input."""
    partial = target.with_name(f".{target.name}.partial")
    try:
        partial.write_text(text, encoding="utf-8")
        partial.replace(target)
    except OSError as exc:  # a read-only folder or disk, a full disk
        try:
            partial.unlink(missing_ok=True)
        except OSError:
            pass
        raise SchemaError(f"{target}: cannot write {what} ({exc.strerror or exc}); give a writable "
                          f"directory") from None
