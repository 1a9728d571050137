"""The grid of a sweep without running it (no Ray, no model load): every key `--set` accepts is an axis, keys
that move together, iso-capacity tile counts, --reference checked before anything runs."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from compiler.config import from_options, text_value
from compiler.dse.grid import expand, iso_capacity_count, make_axis, parse_axis, validate
from compiler.errors import UserError

SPECS = Path(__file__).resolve().parent.parent / "hw_specs"
MODEL = "roberta-base"  # resolves offline (bundled config); validate loads no weights


def _leaves(spec, raw: dict, prefix: str = ""):
    """(dotted key, value) of every field the spec file sets, down to the spec's sections (dataclasses); a
    field that is a mapping (uncertainty) is one key, as --set takes it."""
    for key, value in raw.items():
        node = getattr(spec, key, None)
        if isinstance(value, dict) and dataclasses.is_dataclass(node):
            yield from _leaves(node, value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


@pytest.mark.parametrize("name", ["pcm_1M", "hermes", "ambrogio2023"])
def test_every_key_of_a_shipped_spec_is_an_axis(name) -> None:
    """Every field the shipped spec sets, as --grid takes it (a value holding a comma, a list or a mapping
    through the Python/YAML form), set to its own value: the spec loader accepts the point, and the spec is
    unchanged. The keys come from the file and the spec's sections, not from a list here, so a field added
    or renamed is covered."""
    from compiler.hw_spec import load_hw_spec
    spec = load_hw_spec(name)
    leaves = list(_leaves(spec, yaml.safe_load((SPECS / f"{name}.yaml").read_text())))
    assert len(leaves) > 50
    axes = []
    for key, value in leaves:
        if isinstance(value, str) and yaml.safe_load(value) != value:  # "IBM HERMES: ...": quoted, as for --set
            value = json.dumps(value)
        text = text_value(value)
        plain = not isinstance(value, (list, dict)) and "," not in text and ";" not in text
        axis = parse_axis(f"{key}={text}") if plain else make_axis(key, [value], "test")
        assert axis.kind == "spec" and axis.keys == (key,), key
        axes.append(axis)
    points = validate(expand([MODEL], from_options("", name), axes))
    assert len(points) == 1
    assert points[0].checked.hw.to_dict() == spec.to_dict()
    assert dict(points[0].config.overrides).keys() == {key for key, _ in leaves}


def test_the_keys_the_issue_names_sweep() -> None:
    axes = [parse_axis("adc.bits=6,8"), parse_axis("energy.vdd_V=0.7,0.8"), parse_axis("output_noise=0,0.01")]
    points = validate(expand([MODEL], from_options("", "pcm_1M"), axes))
    assert len(points) == 8
    hw = points[-1].checked.hw
    assert (hw.adc.bits, hw.energy.vdd_V, hw.output_noise) == (8, 0.8, 0.01)
    with pytest.raises(UserError, match="unknown field"):   # the spec loader says what is no field
        validate(expand([MODEL], from_options("", "pcm_1M"), [parse_axis("adc.no_such_field=1,2")]))


def test_coupled_axes_and_iso_capacity() -> None:
    axis = parse_axis("tile.rows+tile.cols+tile.count=256,256,2048;512,512,512")
    assert axis.coupled and axis.values == ("256,256,2048", "512,512,512")
    assert make_axis("tile.rows+tile.cols+tile.count", [[256, 256, 2048], (512, 512, 512)], "t") == axis
    points = validate(expand([MODEL], from_options("", "pcm_1M"), [axis]))
    assert [(p.checked.hw.tile.rows, p.checked.hw.tile.cols, p.checked.hw.tile.count) for p in points] == \
        [(256, 256, 2048), (512, 512, 512)]
    for bad in ("tile.rows+tile.cols=256,256,2048;512", "tile.rows+tile.cols=1,2;"):
        with pytest.raises(UserError):
            parse_axis(bad)
    # iso-capacity: pcm_1M holds 512 x 512 x 512 weights per chip; 256 x 256 tiles need 2048 of them
    square = [parse_axis("tile.rows+tile.cols=256,384,512"), parse_axis("adc.bits=6,8")]
    points = validate(expand([MODEL], from_options("", "pcm_1M"), square, iso_capacity=True))
    counts = {(p.checked.hw.tile.rows, p.checked.hw.adc.bits): p.checked.hw.tile.count for p in points}
    assert counts == {(256, 6): 2048, (256, 8): 2048, (384, 6): 911, (384, 8): 911, (512, 6): 512, (512, 8): 512}
    assert 384 * 384 * 911 >= 512 ** 3 > 384 * 384 * 910
    assert points[0].derived == {"tile.count": "2048"}
    assert iso_capacity_count((512, 512, 512), 1024, 1024) == 128
    kept = validate(expand([MODEL], from_options("", "pcm_1M"), [axis], iso_capacity=True))  # count given: kept
    assert [p.checked.hw.tile.count for p in kept] == [2048, 512] and not kept[0].derived


def test_reference_is_checked_before_anything_runs(tmp_path) -> None:
    from compiler.dse.run import check_reference
    axes = [parse_axis("adc.bits=6,8")]
    points = validate(expand([MODEL], from_options("", "pcm_1M"), axes))
    assert check_reference({"adc.bits": 8}, points, axes) == {"adc.bits": "8"}
    with pytest.raises(UserError, match="no point of the grid"):
        check_reference({"adc.bits": "7"}, points, axes)
    with pytest.raises(UserError, match="not an axis"):
        check_reference({"tile.rows": "7"}, points, axes)
