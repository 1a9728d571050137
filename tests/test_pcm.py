"""The analog core: the PCM device model (compiler/analog/device.py) and the one-segment MVM (tile.py)."""
import math

import pytest
import torch

from compiler import load_hw_spec
from compiler.analog.device import PCMDevice
from compiler.analog.programming import ideal_segment, program_segment
from compiler.analog.tile import analog_mvm

IDEAL = {"dac.bits": None, "adc.bits": None, "output_noise": 0.0, "device.programming_noise": False,
         "device.drift": False, "device.read_noise": False, "digital.attention_bits": None}


def _spec(**overrides):
    return load_hw_spec("pcm_1M", overrides={**IDEAL, **overrides})


def _rel_err(y: torch.Tensor, ref: torch.Tensor) -> float:
    return float((y - ref).norm() / ref.norm())


@pytest.fixture(scope="module")
def layer():
    gen = torch.Generator().manual_seed(1)
    return torch.randn(256, 512, generator=gen) * 0.05, torch.randn(64, 512, generator=gen)


def test_ideal_segment_reproduces_matmul(layer):
    w, x = layer
    hw = _spec()
    seg = program_segment(w, hw, torch.Generator().manual_seed(0), t_inference=3.15e7)
    y = analog_mvm(x, seg, dac_range=None, adc_range=None, hw=hw)
    assert torch.allclose(y, x @ w.T, rtol=1e-5, atol=1e-5)
    # a calibrated range that clips some inputs changes nothing while the DAC is ideal
    y2 = analog_mvm(x, seg, dac_range=0.5, adc_range=1.0, hw=hw)
    assert torch.allclose(y2, x @ w.T, rtol=1e-5, atol=1e-5)


def test_programming_noise_statistics():
    hw = _spec(**{"device.programming_noise": True})
    device = PCMDevice(hw.device)
    g = torch.full((400_000,), 0.5)
    g_prog = device.program(g, torch.Generator().manual_seed(0))
    c0, c1, c2 = hw.device.programming_noise_poly_uS
    expected = (c0 + c1 * 0.5 + c2 * 0.25) / 25.0   # uS at 25 uS, normalized by g_max = 25 uS
    assert g_prog.mean().item() == pytest.approx(0.5, abs=3 * expected / math.sqrt(g.numel()) + 1e-6)
    assert g_prog.std().item() == pytest.approx(expected, rel=0.01)
    assert (device.program(torch.zeros(1000), torch.Generator().manual_seed(0)) >= 0).all()


def test_drift_follows_power_law():
    hw = _spec(**{"device.drift": True})
    device = PCMDevice(hw.device)
    g = torch.full((100_000,), 0.8)
    nu = device.drift_exponents(g, torch.Generator().manual_seed(0))
    mean = min(max(-0.0155 * math.log(0.8) + 0.0244, 0.049), 0.1)   # the published model, clipped
    assert nu.mean().item() == pytest.approx(mean, rel=0.05)
    t = 3600.0
    g_t = device.drift(g, nu, t)
    assert torch.allclose(g_t, g * ((t + 20.0) / 20.0) ** (-nu))
    assert (g_t < g).all()


def test_read_noise_grows_with_time():
    hw = _spec(**{"device.read_noise": True})
    device = PCMDevice(hw.device)
    g = torch.full((200_000,), 0.5)
    spreads = []
    for t in (1.0, 3600.0, 3.15e7):
        g_t = device.at_time(g, torch.zeros_like(g), t, torch.Generator().manual_seed(0))
        spreads.append(g_t.std().item())
        qs = min(0.0088 / 0.5 ** 0.65, 0.2)
        expected = 0.5 * qs * math.sqrt(math.log((t + 20.0 + 2.5e-7) / (2 * 2.5e-7)))
        assert spreads[-1] == pytest.approx(expected, rel=0.02)
    assert spreads[0] < spreads[1] < spreads[2]


def test_drift_compensation_undoes_mean_drift(layer):
    w, x = layer
    ref = x @ w.T
    plain = _spec(**{"device.drift": True, "device.drift_compensation": False})
    comp = _spec(**{"device.drift": True, "device.drift_compensation": True})
    seg_plain = program_segment(w, plain, torch.Generator().manual_seed(0), t_inference=86400.0)
    seg_comp = program_segment(w, comp, torch.Generator().manual_seed(0), t_inference=86400.0)
    assert float(seg_comp.drift_compensation) > 1.2      # nu ~ 0.05-0.1 over ln(4321): 35-55 % decay
    err_plain = _rel_err(analog_mvm(x, seg_plain, None, None, plain), ref)
    err_comp = _rel_err(analog_mvm(x, seg_comp, None, None, comp), ref)
    assert err_comp < 0.5 * err_plain


def test_segment_is_deterministic_per_seed(layer):
    w, x = layer
    hw = load_hw_spec("pcm_1M")
    a = program_segment(w, hw, torch.Generator().manual_seed(3), 3600.0)
    b = program_segment(w, hw, torch.Generator().manual_seed(3), 3600.0)
    c = program_segment(w, hw, torch.Generator().manual_seed(4), 3600.0)
    assert torch.equal(a.g_eff, b.g_eff)
    assert not torch.equal(a.g_eff, c.g_eff)
    ya = analog_mvm(x, a, 3.0, 10.0, hw, torch.Generator().manual_seed(9))
    yb = analog_mvm(x, b, 3.0, 10.0, hw, torch.Generator().manual_seed(9))
    assert torch.equal(ya, yb)


def test_col_w_max_clips_large_weights(layer):
    w, _ = layer
    small = torch.full((w.shape[0],), float(w.abs().max()) / 2)
    seg = ideal_segment(w, small)
    assert float(seg.g_eff.abs().max()) == pytest.approx(1.0)
    assert torch.allclose(seg.g_eff * seg.w_max[:, None], w.clamp(-small[0], small[0]), atol=1e-7)
