"""The device technologies the estimator prices, found through a registry: a model gives the mean power of one
conducting weight cell at the read bias. PCM is built in; `register_device(model)` adds a technology (its name
becomes a valid `device.type`), so an RRAM or other device is one class registered here (tests/test_components.py
defines one in its own file and prices roberta-base with it). The simulator models PCM only (compiler/analog)."""
from __future__ import annotations

from typing import Protocol

from compiler.errors import UserError
from compiler.hw_spec import HardwareSpec, register_device_type
from compiler.backends.estimator.fields import require


class DeviceModel(Protocol):
    name: str

    def cell_read_power_W(self, hw: HardwareSpec) -> float:
        """Mean power of one weight cell (all its devices) while its input pulse is applied."""


class Pcm:
    """PCM: each weight's devices conduct G = mean_conductance_fraction x g_max at the read bias: P = G V^2."""
    name = "PCM"

    def cell_read_power_W(self, hw: HardwareSpec) -> float:
        volts = require(hw, "energy.read_voltage_V", "read bias of the crossbar")
        g_frac = require(hw, "energy.mean_conductance_fraction", "mean conductance of a weight cell")
        return g_frac * hw.device.g_max_uS * 1e-6 * volts ** 2


DEVICE_MODELS: dict[str, DeviceModel] = {"PCM": Pcm()}


def register_device(model: DeviceModel) -> None:
    register_device_type(model.name)
    DEVICE_MODELS[model.name] = model


def unregister_device(name: str) -> None:
    if name != "PCM":
        DEVICE_MODELS.pop(name, None)
        register_device_type(name, add=False)


def cell_read_power_W(hw: HardwareSpec) -> float:
    model = DEVICE_MODELS.get(hw.device.type)
    if model is None:
        raise UserError(f"device.type {hw.device.type!r}: no device cost model of that name is registered "
                        f"({', '.join(DEVICE_MODELS)})")
    return model.cell_read_power_W(hw)
