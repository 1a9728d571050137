"""Number formatting for the report: SI prefixes, percentages, ranges; CSV cells a spreadsheet shows as text."""
from __future__ import annotations

import math

_PREFIXES = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""), (1e-3, "m"), (1e-6, "µ"),
             (1e-9, "n"), (1e-12, "p"), (1e-15, "f")]


def _number(value: object) -> float | None:
    """A finite number, or None for anything else (null, a missing JSON field, NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return value


def si(value: float | None, unit: str = "", digits: int = 3) -> str:
    """1.525e-3, "J" -> "1.53 mJ"; None -> an em dash."""
    value = _number(value)
    if value is None:
        return "—"
    if value == 0:
        return f"0 {unit}".strip()
    magnitude = abs(value)
    for scale, prefix in _PREFIXES:
        if magnitude >= scale * 0.9995:
            return f"{_sig(value / scale, digits)} {prefix}{unit}".strip()
    scale, prefix = _PREFIXES[-1]
    return f"{_sig(value / scale, digits)} {prefix}{unit}".strip()


def _sig(value: float, digits: int) -> str:
    """`digits` significant figures, no scientific notation, no trailing zeros after the point."""
    value = _number(value)
    if value is None:
        return "—"
    if value == 0:
        return "0"
    decimals = max(0, digits - 1 - int(math.floor(math.log10(abs(value)))))
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def pct(fraction: float | None, decimals: int = 1) -> str:
    fraction = _number(fraction)
    return "—" if fraction is None else f"{100 * fraction:.{decimals}f} %"


def integer(value: int | float | None) -> str:
    value = _number(value)
    return "—" if value is None else f"{round(value):,}".replace(",", "\u202f")


def span(lo: float | None, hi: float | None, digits: int = 3) -> str:
    """A range of values, collapsed to one value when both ends agree."""
    lo, hi = _number(lo), _number(hi)
    if lo is None or hi is None:
        return "—"
    if math.isclose(lo, hi, rel_tol=1e-9, abs_tol=0.0):
        return _sig(lo, digits)
    return f"{_sig(lo, digits)} – {_sig(hi, digits)}"


# A cell starting with one of these is a formula to Excel, LibreOffice and Google Sheets (OWASP, "CSV Injection")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> object:
    """A CSV cell from untrusted text (a folder name, a spec key or value) that a spreadsheet shows as text and
    never runs: a string starting with = + - @ tab or carriage return gets a leading apostrophe, as OWASP
    advises. Numbers stay numbers (a negative number is no string)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def csv_row(cells) -> list:
    """Every cell of a CSV row through csv_cell: compare.csv's rows, and any other table written from files."""
    return [csv_cell(cell) for cell in cells]
