"""Hardware specifications: typed, frozen, validated on load.

A spec is a YAML file (see `hw_specs/`). Each section maps onto one frozen dataclass below; the
dataclass fields carry their allowed range in `metadata`, so validation is one generic walk and a
bad file yields one error naming the file, the dotted field and what was expected.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from compiler.errors import UserError

SPEC_DIR = Path(__file__).resolve().parent.parent / "hw_specs"


def _f(lo: float | None = None, hi: float | None = None, choices: tuple | None = None, **kw) -> Any:
    """A dataclass field with its validation range."""
    return field(metadata={"min": lo, "max": hi, "choices": choices}, **kw)


@dataclass(frozen=True)
class TileSpec:
    rows: int = _f(1, 1 << 16)              # weight rows per tile = inputs (word lines)
    cols: int = _f(1, 1 << 16)              # weight columns per tile = outputs (bit lines)
    devices_per_weight: int = _f(1, 8)      # 2 = differential pair G+ - G-
    count: int = _f(1, 1 << 20)             # tiles on one chip
    max_chips: int = _f(1, 1 << 10, default=1)  # a model may span this many chips


@dataclass(frozen=True)
class ClippedLinear:
    """clip(slope * ln(g) + intercept, lo, hi): the drift-coefficient statistics of DESIGN.md."""
    slope: float = _f()
    intercept: float = _f()
    lo: float = _f()
    hi: float = _f()


@dataclass(frozen=True)
class ReadNoiseSpec:
    """Qs = min(coeff / g**exponent, max): 1/f read noise amplitude."""
    coeff: float = _f(0.0)
    exponent: float = _f(0.0)
    max: float = _f(0.0)


@dataclass(frozen=True)
class DeviceSpec:
    type: str = _f(choices=("PCM",))
    g_max_uS: float = _f(1e-3, 1e4)
    programming_noise: bool = _f()
    drift: bool = _f()
    read_noise: bool = _f()
    drift_compensation: bool = _f()
    t0_s: float = _f(1e-9, 1e6)
    t_read_s: float = _f(1e-12, 1.0)
    # sigma_prog = c0 + c1 g + c2 g^2 (uS, fitted at g_max_fit_uS; scaled by g_max/g_max_fit)
    programming_noise_poly_uS: tuple[float, float, float] = _f()
    programming_noise_fit_g_max_uS: float = _f(1e-3, 1e4)
    drift_nu_mean: ClippedLinear = _f()
    drift_nu_std: ClippedLinear = _f()
    read_noise_qs: ReadNoiseSpec = _f()


@dataclass(frozen=True)
class DacSpec:
    bits: int | None = _f(1, 16)            # null = ideal (no input quantization)
    encoding: str = _f(choices=("PWM", "amplitude", "bit-serial"))


@dataclass(frozen=True)
class AdcSpec:
    bits: int | None = _f(1, 16)            # null = ideal (no output quantization)


@dataclass(frozen=True)
class DigitalSpec:
    attention_bits: int | None = _f(2, 16)  # null = FP attention
    attention_scale: str = _f(choices=("per_tensor", "per_head"))
    other_precision: str = _f(choices=("fp32", "fp16", "bf16", "int8"))


@dataclass(frozen=True)
class HardwareSpec:
    name: str = _f()
    description: str = _f()
    technology_nm: float = _f(1, 1000)
    tile: TileSpec = _f()
    device: DeviceSpec = _f()
    dac: DacSpec = _f()
    adc: AdcSpec = _f()
    output_noise: float = _f(0.0, 1.0)      # std of additive output noise, relative to ADC full scale
    digital: DigitalSpec = _f()
    ir_drop: float = _f(0.0, 1.0, default=0.0)  # relative output attenuation at full input (0 = none)
    source_file: str = field(default="", metadata={"internal": True})

    @property
    def weights_per_tile(self) -> int:
        return self.tile.rows * self.tile.cols

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data.pop("source_file")
        return data


def builtin_spec_names() -> list[str]:
    return sorted(p.stem for p in SPEC_DIR.glob("*.yaml"))


def load_hw_spec(path_or_name: str | Path, overrides: Mapping[str, Any] | None = None) -> HardwareSpec:
    """Load a spec from a YAML path or a built-in name (`pcm_1M`, `hermes`), apply dotted overrides."""
    path = _resolve_spec_path(path_or_name)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({str(exc).splitlines()[0]}); fix the file's syntax") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read the spec file ({exc.strerror})") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping of spec sections at the top level, got {type(raw).__name__}")
    for key, value in (overrides or {}).items():
        _apply_override(raw, key, value, path)
    raw["source_file"] = str(path)
    return _build(HardwareSpec, raw, "", path)


def parse_override(text: str) -> tuple[str, Any]:
    """Parse a CLI `--set key=value`; the value is read as YAML (6, 0.02, null, false, PWM)."""
    if "=" not in text:
        raise UserError(f"--set {text!r}: expected KEY=VALUE, e.g. --set adc.bits=6")
    key, value = text.split("=", 1)
    key = key.strip()
    if not key:
        raise UserError(f"--set {text!r}: the key before '=' is empty; e.g. --set adc.bits=6")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        raise UserError(f"--set {text!r}: cannot read the value {value!r}") from None
    return key, parsed


def _resolve_spec_path(path_or_name: str | Path) -> Path:
    candidate = Path(path_or_name)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists() or "/" in str(path_or_name):
        if not candidate.is_file():
            raise UserError(f"{candidate}: spec file not found; built-in specs: {', '.join(builtin_spec_names())}")
        return candidate
    builtin = SPEC_DIR / f"{path_or_name}.yaml"
    if builtin.is_file():
        return builtin
    raise UserError(f"unknown hardware spec {str(path_or_name)!r}: give a YAML path or one of "
                    f"{', '.join(builtin_spec_names())}")


def _apply_override(raw: dict, dotted: str, value: Any, path: Path) -> None:
    parts = dotted.split(".")
    node: Any = raw
    for depth, part in enumerate(parts[:-1]):
        if not isinstance(node, dict) or part not in node or not isinstance(node[part], dict):
            raise UserError(f"{path}: override {dotted!r}: no section {'.'.join(parts[:depth + 1])!r} in the spec")
        node = node[part]
    if not isinstance(node, dict) or parts[-1] not in node:
        _check_known_field(dotted, path)
    node[parts[-1]] = value


def _check_known_field(dotted: str, path: Path) -> None:
    cls: Any = HardwareSpec
    for part in dotted.split("."):
        fields = {f.name: f for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else {}
        if part not in fields or fields[part].metadata.get("internal"):
            raise UserError(f"{path}: override {dotted!r}: unknown field; known fields of this section: "
                            f"{', '.join(n for n, f in fields.items() if not f.metadata.get('internal'))}")
        cls = _hint(cls, part)


def _hint(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls)[name]


def _build(cls: type, data: Any, prefix: str, path: Path) -> Any:
    where = prefix.rstrip(".") or "top level"
    if not isinstance(data, dict):
        raise UserError(f"{path}: field {where!r}: expected a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise UserError(f"{path}: unknown field {prefix + unknown[0]!r}; expected one of: "
                        f"{', '.join(n for n, f in fields.items() if not f.metadata.get('internal'))}")
    values = {}
    for name, f in fields.items():
        dotted = prefix + name
        if name not in data:
            if f.default is not dataclasses.MISSING:
                continue
            raise UserError(f"{path}: missing field {dotted!r} ({_describe(_hint(cls, name), f)})")
        values[name] = _convert(_hint(cls, name), f, data[name], dotted, path)
    return cls(**values)


def _describe(hint: Any, f: dataclasses.Field) -> str:
    meta = f.metadata
    optional, base = _unwrap_optional(hint)
    if dataclasses.is_dataclass(base):
        text = f"a mapping with fields {', '.join(x.name for x in dataclasses.fields(base))}"
    elif meta.get("choices"):
        text = "one of " + ", ".join(meta["choices"])
    else:
        text = getattr(base, "__name__", str(base))
        lo, hi = meta.get("min"), meta.get("max")
        if lo is not None or hi is not None:
            text += f" in [{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
    return "expected " + text + (" or null (ideal)" if optional else "")


def _unwrap_optional(hint: Any) -> tuple[bool, Any]:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return True, args[0]
    return False, hint


def _convert(hint: Any, f: dataclasses.Field, value: Any, dotted: str, path: Path) -> Any:
    optional, base = _unwrap_optional(hint)
    bad = UserError(f"{path}: field {dotted!r} = {value!r}: {_describe(hint, f)}")
    if value is None:
        if optional:
            return None
        raise bad
    if dataclasses.is_dataclass(base):
        return _build(base, value, dotted + ".", path)
    if typing.get_origin(base) is tuple:
        args = typing.get_args(base)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise bad
        return tuple(_scalar(a, v, bad) for a, v in zip(args, value))
    converted = _scalar(base, value, bad)
    meta = f.metadata
    if meta.get("choices") and converted not in meta["choices"]:
        raise bad
    if meta.get("min") is not None and converted < meta["min"]:
        raise bad
    if meta.get("max") is not None and converted > meta["max"]:
        raise bad
    return converted


def _scalar(base: Any, value: Any, bad: UserError) -> Any:
    if base is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if base is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if base is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise bad
        return float(value)
    if base is str:
        if not isinstance(value, str):
            raise bad
        return value
    raise TypeError(f"unsupported spec field type {base}")
