"""`aimc-compile validate`: the cost model against published silicon, each figure predicted leave-one-out.

Prints one table (chip, figure, published, predicted, error, the bound recorded beside the figure, and which
calibrated parameter was fitted on which chips); `--json PATH` also writes it. The figures, their citations and
scopes are hw_specs/validation.yaml; the fitting is calibration.py beside this module. Exit status 0 when
every error is within its bound, 1 when one is not, 2 for a usage error.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from compiler.errors import UserError
from compiler.backends.estimator.calibration import VALIDATION_FILE, Row, validation_rows

HEADER = ("chip", "figure", "published", "predicted", "error", "bound", "fitted on (parameter: chips)")


def rows() -> tuple[Row, ...]:
    """The validation table as typed rows (published, predicted, error, bound, fits)."""
    return validation_rows()


def _fits(row: Row) -> str:
    if not row.fitted:
        return "none: priced from its sources"
    return "; ".join(f"{name} {fit['value']:.3g}: {', '.join(fit['fitted_on'])}" for name, fit in row.fitted.items())


def _cells(row: Row) -> tuple[str, ...]:
    unverified = "" if row.verified else " *"
    return (row.chip, f"{row.label}{unverified}", f"{row.published:g} {row.unit}", f"{row.predicted:.3g} {row.unit}",
            f"{100 * row.error:+.1f} %", f"±{100 * row.bound:.0f} %", _fits(row))


def table_markdown(table: tuple[Row, ...] | None = None) -> str:
    """The table as docs/estimator.md shows it (tests check the page against it)."""
    table = validation_rows() if table is None else table
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in table]
    return "\n".join(lines)


def table_text(table: tuple[Row, ...]) -> str:
    cells = [HEADER] + [_cells(r) for r in table]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER))]
    out = ["  ".join(c[i].ljust(widths[i]) for i in range(len(HEADER))).rstrip() for c in cells]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="aimc-compile validate", description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the table as JSON")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse printed its one-line usage error (or --help)
        return int(exc.code or 0) and 2
    try:
        table = validation_rows()
        if args.json is not None:
            try:
                args.json.write_text(json.dumps({"source": str(VALIDATION_FILE),
                                                 "rows": [r.to_json() for r in table]}, indent=1))
            except OSError as exc:
                raise UserError(f"--json {args.json}: cannot write ({exc.strerror})") from None
    except UserError as exc:
        print(f"aimc-compile validate: error: {exc}", file=sys.stderr)
        return 2
    print(table_text(table))
    print("* value or scope not re-read against the paper in this repository's sources (hw_specs/validation.yaml)")
    outside = [r for r in table if abs(r.error) > r.bound]
    for r in outside:
        print(f"outside its bound: {r.chip}, {r.label}: {100 * r.error:+.1f} % (bound ±{100 * r.bound:.0f} %)")
    return 1 if outside else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
