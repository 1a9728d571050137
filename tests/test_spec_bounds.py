"""Every numeric cost field at its lower bound, its upper bound and 1e300, one at a time: the bounds load and price
to finite numbers; 1e300 is one UserError naming the field (issue 25: a zero clock divided, a huge figure of merit
overflowed in the uncertainty ranges after all the work)."""
import math

import pytest

from compiler import UserError, load_hw_spec
from compiler.backends.estimator import check_prices, peak_throughput
from compiler.backends.estimator.sensitivity import sensitivity
from compiler.hw_spec import HardwareSpec, cost_number_fields, load_baseline_spec
from compiler.spec_check import field_hint, unwrap_optional

FIELDS = cost_number_fields()


def _meta(dotted: str):
    cls, f = HardwareSpec, None
    for part in dotted.split("."):
        f = {x.name: x for x in __import__("dataclasses").fields(cls)}[part]
        cls = unwrap_optional(field_hint(cls, part))[1]
    return f.metadata


def test_every_cost_field_is_bounded_above():
    assert FIELDS and all(_meta(name).get("max") is not None for name in FIELDS)


@pytest.mark.parametrize("end", ["min", "max"])
def test_cost_fields_at_their_bounds_price_finitely(end):
    for name in FIELDS:
        value = _meta(name)[end]
        hw = load_hw_spec("pcm_1M", {name: value})
        check_prices(hw)
        peak = peak_throughput(hw)
        assert all(math.isfinite(v) for v in (peak.tops, peak.mvm_energy_J, peak.chip_area_mm2)), name


def test_the_largest_field_at_its_bound_gives_finite_ranges():
    hw = load_hw_spec("hermes", {"adc.cco.oscillator_uW": 1e9})
    ranges = sensitivity(hw, lambda h: {"energy_J": peak_throughput(h).mvm_energy_J, "latency_s": 1.0,
                                        "area_mm2": peak_throughput(h).chip_area_mm2})
    assert all(math.isfinite(x) for x in ranges.range("energy_J"))


def test_huge_cost_fields_are_one_line_naming_the_field():
    for name in FIELDS:
        with pytest.raises(UserError) as info:
            load_hw_spec("pcm_1M", {name: 1e300})
        assert name in str(info.value) and "\n" not in str(info.value), name


def test_a_zero_tile_clock_is_refused_at_load():
    with pytest.raises(UserError, match="latency.pwm_step_ns"):
        load_hw_spec("pcm_1M", {"latency.pwm_step_ns": 0})


def test_baseline_fields_are_bounded():
    from compiler.hw_spec import DigitalBaselineSpec
    import dataclasses
    numeric = [f for f in dataclasses.fields(DigitalBaselineSpec) if f.type in ("float", "int")]
    assert numeric and all(f.metadata.get("max") is not None for f in numeric)
    assert load_baseline_spec().mac_overhead >= 1


def test_pairs_of_cost_fields_at_their_bounds_price_finitely_or_are_one_line():
    """Two fields at once, each at its lower or upper bound (a combination can divide or overflow where neither
    field alone does): the derived prices are finite, or loading is one UserError line. 60 pairs, fixed draw."""
    import random
    draw = random.Random(25)
    for _ in range(60):
        (a, b), ends = draw.sample(FIELDS, 2), (draw.choice(["min", "max"]), draw.choice(["min", "max"]))
        overrides = {a: _meta(a)[ends[0]], b: _meta(b)[ends[1]]}
        try:
            hw = load_hw_spec("pcm_1M", overrides)
            check_prices(hw)
        except UserError as exc:
            assert "\n" not in str(exc), overrides
            continue
        peak = peak_throughput(hw)
        assert all(math.isfinite(v) for v in (peak.tops, peak.mvm_energy_J, peak.chip_area_mm2)), overrides
