"""A spec with a YAML syntax error is refused in one line that names the file, the line and the column."""
from pathlib import Path

import pytest

from compiler import load_hw_spec
from compiler.errors import UserError

SPEC_DIR = Path(__file__).resolve().parents[1] / "hw_specs"


@pytest.mark.parametrize("broken, line, column, problem", [
    ("  rows: [512\n", 4, 7, "expected ',' or ']'"),    # an unclosed flow list: found at the next key
    ("\trows: 512\n", 3, 1, "'\\t' that cannot start"),  # a tab for indentation
])
def test_yaml_syntax_error_names_line_and_column(tmp_path, broken, line, column, problem):
    spec = tmp_path / "chip.yaml"
    spec.write_text("name: chip\ntile:\n" + broken + "  cols: 512\n")
    with pytest.raises(UserError) as caught:
        load_hw_spec(spec)
    message = str(caught.value)
    assert "\n" not in message and str(spec) in message
    assert f"line {line}, column {column}:" in message and problem in message


def test_error_on_a_late_line_of_a_shipped_spec(tmp_path):
    """Lines count from the file's start, comments included; an unclosed list names where it opened."""
    lines = (SPEC_DIR / "pcm_1M.yaml").read_text().splitlines()
    at = next(i for i, text in enumerate(lines) if text.startswith("output_noise:"))
    lines[at] = "output_noise: [0.04"
    spec = tmp_path / "pcm.yaml"
    spec.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=rf"line \d+, column \d+: .* starts at line {at + 1}, column 15\)"):
        load_hw_spec(spec)
