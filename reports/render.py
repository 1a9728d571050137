"""Load the JSON outputs, build the page's context and render the Jinja2 template."""
from __future__ import annotations

import json
import re
from pathlib import Path

import jinja2

from compiler.errors import UserError
from reports import fmt
from reports.mapping_view import build_mapping_view
from reports.sections import build_accuracy_section, build_cost_section
from reports.tilemap import render_chip_map, render_tile_map

TEMPLATES = Path(__file__).resolve().parent / "templates"
REPORT_NAME = "report.html"
# The command is embedded in the page so that a re-render (`aimc-compile report DIR`) can keep it.
_COMMAND_RE = re.compile(r'<script type="application/json" id="report-command">(.*?)</script>', re.S)


def _read_json(path: Path, required: bool) -> dict | None:
    if not path.is_file():
        if required:
            raise UserError(f"{path}: not found; give a directory written by aimc-compile")
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read it as JSON ({exc}); re-run aimc-compile to rewrite it") from None


def _previous_command(report: Path) -> str | None:
    if not report.is_file():
        return None
    match = _COMMAND_RE.search(report.read_text(errors="replace"))
    if not match:
        return None
    try:
        value = json.loads(match.group(1).replace("<\\/", "</"))
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


def spec_differences(mapping: dict) -> dict[str, object]:
    """Dotted keys whose value as used differs from the spec file as it is now: the `--set` overrides.
    Empty when the file is gone or unreadable (the report must render from the JSON alone)."""
    from compiler.hw_spec import load_hw_spec
    path = mapping.get("hw_file")
    if not path or not Path(path).is_file():
        return {}
    try:
        on_file = dict(flatten_spec(load_hw_spec(path).to_dict()))
    except (UserError, OSError, ValueError, TypeError):
        return {}
    used = flatten_spec(mapping.get("hw_spec") or {})
    return {key: on_file.get(key) for key, value in used if _normal(on_file.get(key)) != _normal(value)}


def _normal(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def spec_sections(spec: dict) -> list[tuple[str, list[tuple[str, object]]]]:
    """The spec as (section, rows) with keys relative to their section; top-level scalars come first."""
    general = [(key, value) for key, value in spec.items() if not isinstance(value, dict)]
    sections = [("general", general)] if general else []
    sections += [(key, flatten_spec(value)) for key, value in spec.items() if isinstance(value, dict)]
    return sections


def spec_value(value: object) -> str:
    if value is None:
        return "null (ideal)"
    if isinstance(value, bool):
        return "true" if value else "false (ideal)"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(spec_value(v) for v in value) + "]"
    return str(value)


def _environment() -> jinja2.Environment:
    # Lenient undefined: an optional part missing from a JSON file reads as empty and its block is skipped.
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=jinja2.select_autoescape(
        enabled_extensions=("html", "j2")), undefined=jinja2.ChainableUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(si=fmt.si, pct=fmt.pct, integer=fmt.integer, span=fmt.span, sig=fmt._sig)
    env.filters.update(flatten_spec=flatten_spec, spec_sections=spec_sections, spec_value=spec_value)
    env.filters["json_script"] = lambda value: json.dumps(value).replace("</", "<\\/")
    return env


REQUIRED_MAPPING_FIELDS = ("model", "hw", "tile_shape", "tiles_used", "layers")


def _complete_mapping(mapping: dict) -> dict:
    """mapping.json with its optional fields filled from the required ones (older or hand-made files)."""
    missing = [key for key in REQUIRED_MAPPING_FIELDS if key not in mapping]
    if missing:
        raise UserError(f"mapping.json lacks {', '.join(missing)}; re-run aimc-compile to rewrite it")
    data = dict(mapping)
    util = {str(k): float(v) for k, v in (data.get("tile_utilization") or {}).items()}
    data.setdefault("tile_utilization", util)
    data.setdefault("mean_utilization", sum(util.values()) / len(util) if util else None)
    data.setdefault("tiles_per_chip", data.get("tiles_available") or data["tiles_used"])
    data.setdefault("tiles_available", data["tiles_per_chip"])
    tiles = [int(t) for t in util] or [0]
    data.setdefault("chips_used", max(tiles) // max(1, int(data["tiles_per_chip"])) + 1)
    for key, default in (("weights", "unknown"), ("weights_source", ""), ("task", ""), ("allocation", ""),
                         ("hw_file", ""), ("hw_spec", {}), ("blocks", []), ("segments", [])):
        data.setdefault(key, default)
    data.setdefault("analog_weights", sum((e.get("in_features") or 0) * (e.get("out_features") or 0)
                                          for e in data["layers"] if e.get("kind") == "analog"))
    return data


def render_report(mapping: dict, cost: dict | None = None, accuracy: dict | None = None,
                  command: str | None = None) -> str:
    """The report page as a string."""
    mapping = _complete_mapping(mapping)
    view = build_mapping_view(mapping)
    tile_map = render_tile_map(view)
    chip_maps = render_chip_map(view)
    overrides = spec_differences(mapping)
    cost_section = build_cost_section(cost) if cost else None
    accuracy_section = build_accuracy_section(accuracy) if accuracy else None
    return _environment().get_template("report.html.j2").render(
        m=mapping, view=view, tile_map=tile_map, chip_maps=chip_maps, cost=cost, accuracy=accuracy, command=command,
        cs=cost_section, acc=accuracy_section, overrides=overrides)


def write_report(out_dir: Path, command: str | None = None) -> Path:
    """Render out_dir/report.html from out_dir's mapping.json, cost.json and accuracy.json (both optional).

    `command` is the command line that produced the outputs; without one, the command recorded in an
    earlier report.html in out_dir is kept.
    """
    out_dir = Path(out_dir)
    mapping = _read_json(out_dir / "mapping.json", required=True)
    cost = _read_json(out_dir / "cost.json", required=False)
    accuracy = _read_json(out_dir / "accuracy.json", required=False)
    target = out_dir / REPORT_NAME
    if command is None:
        command = mapping.get("command") or _previous_command(target)
    html = render_report(mapping, cost, accuracy, command)
    partial = target.with_name(f".{REPORT_NAME}.partial")
    partial.write_text(html, encoding="utf-8")
    partial.replace(target)
    return target
