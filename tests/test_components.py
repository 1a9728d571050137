"""A converter model defined here alone, registered, prices roberta-base end to end: the estimator and the spec
loader know converters only through the registry (compiler/backends/estimator/converters.py)."""
import dataclasses
from dataclasses import dataclass, field

import pytest

from compiler import UserError, load_hw_spec
from compiler.backends.estimator import estimate
from compiler.backends.estimator.converters import (CONVERTERS, Conversion, register_converter,
                                                    unregister_converter)
from compiler.backends.estimator.sensitivity import uncertainties
from compiler.hw_spec import cost_number_fields


@dataclass(frozen=True)
class ToySpec:
    """A made-up converter: a fixed energy and time per conversion, one per column."""
    pJ_per_conversion: float | None = field(default=None, metadata={"min": 0.0, "max": 1e9})
    ns_per_conversion: float | None = field(default=None, metadata={"min": 0.0, "max": 1e9})
    um2: float | None = field(default=None, metadata={"min": 0.0, "max": 1e9})
    columns_per_adc: int = field(default=1, metadata={"min": 1, "max": 1 << 16})


class Toy:
    name, spec_cls, description = "toy", ToySpec, "a test's converter"

    def conversion(self, hw, spec, bits, window_s):
        return Conversion(spec.pJ_per_conversion * 1e-12, spec.ns_per_conversion * 1e-9, False)

    def area_um2(self, hw, spec, bits, register_um2_per_bit):
        return spec.um2


@pytest.fixture
def toy():
    register_converter(Toy())
    yield
    unregister_converter("toy")


TOY = {"adc.architecture": "toy", "adc.toy": {"pJ_per_conversion": 5.0, "ns_per_conversion": 20.0, "um2": 50.0}}


def test_a_converter_defined_in_a_test_prices_roberta_base(toy, roberta_placed_naive):
    hw = load_hw_spec("pcm_1M", TOY)
    cost = estimate(dataclasses.replace(roberta_placed_naive, hw=hw), batch=1, seq_len=128)
    conversions = cost.counts["adc_conversions"]
    assert cost.energy_by_component_J["adc"] == pytest.approx(conversions * 5e-12, rel=1e-12)
    tile = cost.area.tile_um2
    assert tile["adc"] == pytest.approx(512 * 50.0, rel=1e-12)
    assert "adc.toy.pJ_per_conversion" in cost_number_fields()
    assert uncertainties(hw)["adc.toy.pJ_per_conversion"] == 0.3          # the spec's default uncertainty
    assert cost.to_json()["totals"]["energy_J"] == pytest.approx(cost.energy_J)
    with pytest.raises(UserError, match="adc.toy.pJ_per_conversion"):
        load_hw_spec("pcm_1M", {**TOY, "adc.toy": {"pJ_per_conversion": -1.0}})


def test_unregistered_it_is_gone(toy):
    unregister_converter("toy")
    assert "toy" not in CONVERTERS
    with pytest.raises(UserError, match="toy"):
        load_hw_spec("pcm_1M", TOY)
    register_converter(Toy())          # the fixture unregisters it again


def test_every_component_has_one_label_and_color():
    """The components the estimator prices are the names the report styles: one table (reports/schema.py)."""
    from compiler.backends.estimator.components import REGISTRY
    from reports.charts import component_color, component_label
    from reports.schema import COMPONENT_STYLES
    assert sorted(c.name for c in REGISTRY) == sorted(COMPONENT_STYLES)
    for c in REGISTRY:
        assert (component_label(c.name), component_color(c.name)) == COMPONENT_STYLES[c.name]


class ToyDevice:
    """A made-up device technology: every weight cell draws 1 uW while its input is applied."""
    name = "TOY"

    def cell_read_power_W(self, hw):
        return 1e-6


def test_a_device_defined_in_a_test_prices_roberta_base(roberta_placed_naive):
    from compiler.analog.device import PCMDevice
    from compiler.backends.estimator.devices import register_device, unregister_device
    register_device(ToyDevice())
    try:
        hw = load_hw_spec("pcm_1M", {"device.type": "TOY"})
        cost = estimate(dataclasses.replace(roberta_placed_naive, hw=hw), batch=1, seq_len=128, sensitivity=False)
        pcm = estimate(roberta_placed_naive, batch=1, seq_len=128, sensitivity=False)
        bitlines = pcm.energy_by_component_J["tile_array"] - cost.counts["array_cell_reads"] * (
            0.25 * 25e-6 * 0.3 ** 2 * 127e-9)
        assert cost.energy_by_component_J["tile_array"] == pytest.approx(
            cost.counts["array_cell_reads"] * 1e-6 * 127e-9 + bitlines, rel=1e-9)
        with pytest.raises(UserError, match="simulator models PCM"):
            PCMDevice(hw.device)                       # a cost model, no device model: said, not simulated as PCM
    finally:
        unregister_device("TOY")
    with pytest.raises(UserError, match="device.type"):
        load_hw_spec("pcm_1M", {"device.type": "TOY"})
