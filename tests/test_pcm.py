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


def test_more_wire_resistance_more_ir_drop_error(layer):
    """IR drop (docs/analog_mvm.md): zero resistance is exact; the error grows with the wire resistance,
    and rows far from the ADC lose more than near ones."""
    w, x = layer
    ref = x @ w.T
    seg = ideal_segment(w)
    errors = [_rel_err(analog_mvm(x, seg, None, None, _spec(ir_drop_wire_ohm=ohm)), ref) for ohm in (0.0, 0.35, 1.0, 3.0)]
    assert errors[0] < 1e-5
    assert errors[0] < errors[1] < errors[2] < errors[3], errors
    hw = _spec(ir_drop_wire_ohm=1.0)
    far = analog_mvm(x, seg, None, None, hw, tile_rows=(0, 512))
    near_w = torch.zeros(256, 512)
    near_w[:, 448:] = w[:, 448:]              # the same weights on the rows nearest the ADC, the rest empty
    far_w = torch.zeros(256, 512)
    far_w[:, :64] = w[:, 448:]                # ... and on the farthest rows
    x_near, x_far = torch.zeros_like(x), torch.zeros_like(x)
    x_near[:, 448:], x_far[:, :64] = x[:, 448:], x[:, 448:]
    ref_part = x[:, 448:] @ w[:, 448:].T
    err_near = _rel_err(analog_mvm(x_near, ideal_segment(near_w, seg.w_max), None, None, hw), ref_part)
    err_far = _rel_err(analog_mvm(x_far, ideal_segment(far_w, seg.w_max), None, None, hw), ref_part)
    assert err_far > 5 * err_near             # p_t: ~131k on the far rows, 0.5k-31k on the near ones
    assert far.shape == ref.shape


def test_simulator_ir_drop_matches_the_reference_mvm():
    """The simulator's folded IR drop (backends/simulator/block.py) equals analog_mvm's on a whole tile."""
    from compiler import compile_model
    torch.manual_seed(0)
    layer = torch.nn.Linear(512, 96, bias=False)
    x = torch.randn(32, 512)
    hw = _spec(ir_drop_wire_ohm=1.0)
    placed = compile_model(layer, (torch.randn(4, 512),), hw)
    (segment,) = placed.segments
    with torch.no_grad():
        simulated = placed.simulator()(x)
        reference = analog_mvm(x, ideal_segment(layer.weight.detach()), None, None, hw, tile_rows=segment.rows)
        exact = layer(x)
    assert _rel_err(simulated, reference) < 1e-5
    assert _rel_err(simulated, exact) > 1e-3
