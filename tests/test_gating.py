"""Leakage and power gating (compiler/backends/estimator/gating.py): idle gaps longer than the break-even time are
spent off, each off/on cycle pays the leakage it saves over the break-even time, idle tiles stay off, and the
report's static figures are the gated ones."""
from __future__ import annotations

import math

import pytest

from compiler import load_hw_spec
from compiler.backends.estimator.area import chip_area
from compiler.backends.estimator.gating import _powered, leakage
from compiler.backends.estimator.schedule import DIGITAL_UNITS, Schedule, Stage, tile
from compiler.backends.estimator.static import shared_leakage_W, static_power, tile_leakage_W

NS = 1e-9


def _stage(sid, resource, busy_s, vectors=1):
    return Stage(id=sid, name=sid, layer="l", vectors=vectors, vector_time_s=busy_s / vectors, deps=(),
                 energy_J={}, busy_s={resource: busy_s})


def _timing(latency_s, spans):
    return Schedule(latency_s=latency_s, critical_path_s=latency_s, critical_path=[], period_s=0.0, bottleneck=None,
                    resource_busy_s={}, start_s={k: a for k, (a, _) in spans.items()},
                    finish_s={k: b for k, (_, b) in spans.items()})


def test_gaps_beyond_the_break_even_time_are_spent_off():
    # busy 0-100 ns and 500-600 ns of 1000 ns; break-even 20 ns: the 400 ns gap and the 400 ns wrap-around are off
    on, off, wakes = _powered([(0.0, 100 * NS, 100 * NS, 1), (500 * NS, 600 * NS, 100 * NS, 1)], 1000 * NS, 20 * NS)
    assert (on, off, wakes) == (pytest.approx(200 * NS), pytest.approx(800 * NS), 2)
    # gaps under the break-even time are spent on
    on, off, wakes = _powered([(0.0, 100 * NS, 100 * NS, 1), (110 * NS, 200 * NS, 90 * NS, 1)], 205 * NS, 20 * NS)
    assert (on, off, wakes) == (pytest.approx(205 * NS), 0.0, 0)
    # inside a stage: 11 vectors of 10 ns over 1,100 ns, ten 100 ns gaps between them, each off
    on, off, wakes = _powered([(0.0, 1100 * NS, 110 * NS, 11)], 1100 * NS, 20 * NS)
    assert (on, off, wakes) == (pytest.approx(110 * NS), pytest.approx(990 * NS), 10)


def test_leakage_of_a_schedule_by_hand():
    hw = load_hw_spec("pcm_1M")
    area = chip_area(hw)
    f, t_be = hw.static.gated_leakage_fraction, hw.static.gate_break_even_ns * NS
    latency = 1000 * NS
    stages = [_stage("a", tile(3), 100 * NS), _stage("d", DIGITAL_UNITS, 50 * NS)]
    timing = _timing(latency, {"a": (0.0, 100 * NS), "d": (100 * NS, 150 * NS)})
    got = leakage(hw, area, 1, stages, timing)
    tile_W = math.fsum(tile_leakage_W(hw, area).values())
    shared = shared_leakage_W(hw, area)
    busy_tile = tile_W * (100 * NS + f * 900 * NS + (1 - f) * t_be)       # one off/on cycle
    idle_tiles = (area.tiles - 1) * tile_W * f * latency                    # never woken
    digital = shared["digital_units"] * (50 * NS + f * 950 * NS + (1 - f) * t_be)
    attention = shared["attention_units"] * f * latency                     # no attention op: off throughout
    assert got.energy_J == pytest.approx(busy_tile + idle_tiles + digital + attention, rel=1e-12)
    assert got.wakeups == 2
    all_on = math.fsum(static_power(hw, area, area.tiles, 1).values())
    assert math.fsum(got.all_on_W.values()) == pytest.approx(all_on, rel=1e-12)
    assert got.energy_J < 0.1 * all_on * latency
    # without gating: everything leaks throughout
    ungated = leakage(load_hw_spec("pcm_1M", {"static.power_gating": False}), area, 1, stages, timing)
    assert ungated.energy_J == pytest.approx(all_on * latency, rel=1e-12) and ungated.wakeups == 0


def test_coarser_power_domains_leak_more():
    hw = load_hw_spec("pcm_1M")
    area = chip_area(hw)
    stages = [_stage(f"s{t}", tile(t), 100 * NS) for t in (0, 5, 9)]
    timing = _timing(1000 * NS, {f"s{t}": (100 * t * NS, (100 * t + 100) * NS) for t in (0, 5, 9)})
    fine = leakage(hw, area, 1, stages, timing).energy_J
    coarse = leakage(load_hw_spec("pcm_1M", {"static.gating_tiles": 16}), area, 1, stages, timing).energy_J
    assert coarse > fine                 # a 16-tile domain is on while any of its tiles works
    never = leakage(load_hw_spec("pcm_1M", {"static.gate_break_even_ns": 1e6}), area, 1, stages, timing)
    assert never.energy_J > fine and never.wakeups == 0  # a break-even beyond every gap: used tiles stay on


def test_a_leakage_figure_from_another_node_is_said():
    from compiler.backends.estimator.static import node_warnings
    assert node_warnings(load_hw_spec("pcm_1M", {"static.node_nm": 14})) == []
    (warning,) = node_warnings(load_hw_spec("pcm_1M"))
    assert "7 nm" in warning and "unscaled" in warning


def test_retained_sram_and_extra_copies_are_priced():
    hw = load_hw_spec("pcm_1M")
    area = chip_area(hw)
    latency = 1000 * NS
    stages = [_stage("a", tile(3), 100 * NS)]
    timing = _timing(latency, {"a": (0.0, 100 * NS)})
    base = leakage(hw, area, 1, stages, timing)
    bits = 1e6
    kept = leakage(hw, area, 1, stages, timing, retained_sram_bits=bits)
    f, w = hw.static.gated_leakage_fraction, hw.static.sram_pW_per_bit * 1e-12
    assert kept.energy_J - base.energy_J == pytest.approx((1 - f) * bits * w * latency, rel=1e-9)
    copies = leakage(hw, area, 1, stages, timing, tiles_working=3)  # two more tiles work as tile 3 does
    tile_W = math.fsum(tile_leakage_W(hw, area).values())
    on_s = 100 * NS + f * 900 * NS + (1 - f) * hw.static.gate_break_even_ns * NS
    assert copies.energy_J - base.energy_J == pytest.approx(2 * tile_W * (on_s - f * latency), rel=1e-9)


@pytest.mark.parametrize("per_domain", [1, 3, 4])
def test_a_busy_dicts_domains_are_the_loops_over_its_tiles(per_domain):
    """gating reads a weight block's Busy from its structure and few values: the same domains, the same busy time
    per domain and the same groups in the same order (leakage sums over them in that order) as the loop over every
    tile of an ordinary dict."""
    import random
    from compiler.backends.estimator import gating
    from compiler.backends.estimator.schedule import Busy, tile
    rng = random.Random(7)
    tiles = rng.sample(range(200), 90)
    which = tuple(rng.randrange(4) for _ in tiles)
    for values in ((1e-6, 2e-6, 2e-6, 0.5e-6), (3e-6, 1e-6, 1e-6, 3e-6)):
        busy = Busy(tuple(map(tile, tiles)), which, values, serial=-1 - per_domain)
        fast = gating._stage_domains(busy, 10, per_domain)
        slow = gating._stage_domains(dict(busy), 10, per_domain)
        assert fast.keys == slow.keys
        assert list(fast.by_busy.items()) == list(slow.by_busy.items())
        assert list(fast.busiest.items()) == list(slow.busiest.items())
