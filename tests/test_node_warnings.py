"""A node change (`--set technology_nm=`) warns, one line each, for every cost component whose price does not
follow the node (compiler/backends/estimator/node.py). Complete by measurement: the shipped AIMC specs priced at
their node and at half of it, every component of a tile's MVM energy, of the chip's area and of its leakage that
does not move by the full node factor must be named, and none that does."""
from __future__ import annotations

import math

import pytest

from compiler.backends.estimator.area import chip_area
from compiler.backends.estimator.calibration import validation_summary
from compiler.backends.estimator.prices import tile_mvm_energy, tile_prices
from compiler.backends.estimator.static import static_power
from compiler.hw_spec import load_hw_spec


def _prices(hw) -> dict[str, tuple[dict[str, float], float]]:
    """figure -> (by component, the factor a fully node-scaled component moves by when the node halves)."""
    area = chip_area(hw)
    return {"energy": (tile_mvm_energy(tile_prices(hw), hw.tile.rows, hw.tile.cols), 0.5),
            "area": (area.by_component_mm2(), 0.25),
            "static": (static_power(hw, area, tiles=hw.tile.count, chips=1), 0.25)}


@pytest.mark.parametrize("name", ["pcm_1M", "hermes", "ambrogio2023", "pcm_1M_projected"])
def test_every_component_that_does_not_follow_the_node_is_warned_about(name) -> None:
    base = load_hw_spec(name)
    assert validation_summary(load_hw_spec(name, {"technology_nm": base.technology_nm}))["warnings"] == \
        validation_summary(base)["warnings"]   # the file's own node, written again: nothing moved
    moved = load_hw_spec(name, {"technology_nm": base.technology_nm / 2})
    warnings = validation_summary(moved)["warnings"]
    assert len(warnings) == len(set(warnings))
    named = {w.split(": ")[1].split(" not scaled")[0] for w in warnings if "not scaled" in w}
    named |= {"adc"} if any(w.startswith("adc.") for w in warnings) else set()
    fixed, scaled = set(), set()
    for figure, ((before, full), (after, _)) in {k: (v, _prices(moved)[k]) for k, v in _prices(base).items()}.items():
        for component, value in before.items():
            if value > 0:
                (scaled if math.isclose(after[component] / value, full, rel_tol=1e-9) else fixed).add(
                    "static" if figure == "static" else component)
    scaled -= fixed
    assert fixed <= named, f"not warned about: {sorted(fixed - named)}"
    assert not (scaled & named), f"warned about, though they scale: {sorted(scaled & named)}"
    assert {"tile_array", "adc", "control", "static", "latency"} <= named
    assert tile_prices(moved).mvm_time_s == tile_prices(base).mvm_time_s   # the clocks stay: "latency" is right
    for line in warnings:
        assert "\n" not in line
