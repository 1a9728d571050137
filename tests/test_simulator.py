"""The lowered noisy simulator (compiler/backends/simulator): ideal = FP, each non-ideality alone, seeds."""
import math

import pytest
import torch
from torch import nn

from compiler import UserError, compile_model, load_hw_spec
from compiler.analog import native
from compiler.analog.programming import ideal_segment
from compiler.analog.tile import analog_mvm
from compiler.backends.simulator.block import segment_weight
from compiler.backends.simulator.lowering import block_layers

IDEAL = {"dac.bits": None, "adc.bits": None, "output_noise": 0.0, "device.programming_noise": False,
         "device.drift": False, "device.read_noise": False, "digital.attention_bits": None}
SMALL_TILES = {"tile.rows": 256, "tile.cols": 256}
KERNELS = [None, False] if native.available() else [False]   # fused C kernels (where they build) and torch ops


def spec(tiles: dict | None = None, **overrides):
    return load_hw_spec("pcm_1M", overrides={**IDEAL, **(tiles or {}), **overrides})


def rel_err(y: torch.Tensor, ref: torch.Tensor) -> float:
    return float((y - ref).norm() / ref.norm())


@pytest.fixture(scope="module")
def linear():
    torch.manual_seed(0)
    layer = nn.Linear(512, 512)
    x = torch.randn(4, 512)
    return layer, x, compile_model(layer, (x,), "pcm_1M")


@pytest.fixture(scope="module")
def wide_linear():
    """700 inputs x 600 outputs on 256x256 tiles: 3 row chunks x 3 column pieces, partial tiles packed."""
    gen = torch.Generator().manual_seed(1)
    layer = nn.Linear(700, 600)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(600, 700, generator=gen) * 0.03)
    x = torch.randn(64, 700, generator=gen)
    return layer, x, compile_model(layer, (x,), load_hw_spec("pcm_1M", overrides=SMALL_TILES))


@pytest.fixture(scope="module")
def tiny_bert():
    from transformers import BertConfig, BertModel
    config = BertConfig(attn_implementation="eager", vocab_size=120, hidden_size=64, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=300, max_position_embeddings=64)
    torch.manual_seed(0)
    model = BertModel(config).eval()
    ids = torch.randint(0, 120, (3, 16), generator=torch.Generator().manual_seed(2))
    mask = torch.ones(3, 16, dtype=torch.long)
    mask[0, 11:] = 0
    inputs = {"input_ids": ids, "attention_mask": mask}
    placed = compile_model(model, inputs, load_hw_spec("pcm_1M", overrides=SMALL_TILES))
    with torch.no_grad():
        ref = model(**inputs)
    return model, inputs, placed, ref


# --- every non-ideality off: the FP model --------------------------------------------------------------

@pytest.mark.parametrize("kernels", KERNELS)
def test_ideal_linear_reproduces_fp(linear, kernels):
    layer, x, placed = linear
    sim = placed.simulator(t_inference=3.15e7, seed=3, hw=spec(), native_kernels=kernels)
    assert torch.allclose(sim(x), layer(x).detach(), rtol=1e-5, atol=1e-6)
    for batch in (torch.randn(7, 512), x[:1]):                  # the exported graph is dynamic in batch
        assert torch.allclose(sim(batch), layer(batch).detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kernels", KERNELS)
def test_ideal_transformer_reproduces_fp(tiny_bert, kernels):
    model, inputs, placed, ref = tiny_bert
    sim = placed.simulator(t_inference=86400.0, seed=0, hw=spec(SMALL_TILES), native_kernels=kernels)
    out = sim(**inputs)
    assert type(out) is type(ref)
    assert torch.allclose(out.last_hidden_state, ref.last_hidden_state, rtol=1e-4, atol=1e-5)
    assert torch.allclose(out.pooler_output, ref.pooler_output, rtol=1e-4, atol=1e-5)
    # dynamic shapes: another batch size and sequence length run through the same instance
    other = {k: v[:2, :9] for k, v in inputs.items()}
    with torch.no_grad():
        assert torch.allclose(sim(**other).last_hidden_state, model(**other).last_hidden_state, rtol=1e-4, atol=1e-5)


def test_fused_qkv_block_runs_once_per_input(tiny_bert):
    _, inputs, placed, _ = tiny_bert
    sim = placed.simulator(seed=0, hw=spec(SMALL_TILES))
    fused = [name for name, block in placed.blocks.items() if len(block.layers) == 3]
    assert len(fused) == 2
    sim(**inputs)
    assert all(sim.blocks[name].calls == 1 for name in fused)


# --- the batched blocks compute docs/analog_mvm.md exactly as the one-segment reference ----------------

@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("ranges", ["calibrated", "abs_max"])
def test_block_matches_segment_reference(wide_linear, kernels, ranges):
    layer, x, placed = wide_linear
    hw = spec(SMALL_TILES, **{"dac.bits": 8, "adc.bits": 6})
    block = next(iter(placed.blocks.values()))
    try:
        for i, seg in enumerate(placed.segments):
            seg.dac_range, seg.adc_range = (2.0 + 0.25 * i, 3.0 + 0.5 * i) if ranges == "calibrated" else (None, None)
        sim = placed.simulator(seed=0, hw=hw, native_kernels=kernels)
        layers, bias = block_layers(placed, block)
        expected = bias.expand(x.shape[0], -1).clone()
        for seg in placed.segments:
            w_seg = segment_weight(layers, seg.block_cols, seg.block_rows)
            (r0, r1), (c0, c1) = seg.block_rows, seg.block_cols
            expected[:, c0:c1] += analog_mvm(x[:, r0:r1], ideal_segment(w_seg), seg.dac_range, seg.adc_range, hw)
        got = sim(x)
    finally:
        for seg in placed.segments:
            seg.dac_range, seg.adc_range = None, None
    # same arithmetic up to float reassociation: an output may land on a neighbouring DAC or ADC level
    dac = max(float(x.abs().max()), 2.0 + 0.25 * len(placed.segments))
    lsb = max(3.0 + 0.5 * len(placed.segments), 10.0) / 31 * float(layer.weight.detach().abs().max()) * dac
    assert (got - expected).abs().max() <= 2 * lsb
    assert ((got - expected).abs() > 1e-4).float().mean() < 0.01
    assert rel_err(got, layer(x).detach()) > 1e-3    # the quantization did something


# --- each non-ideality alone moves the error the way physics says ------------------------------------

@pytest.mark.parametrize("kernels", KERNELS)
def test_more_drift_time_more_error(linear, kernels):
    layer, x, placed = linear
    ref = layer(x).detach()
    hw = spec(**{"device.drift": True})
    errors = [rel_err(placed.simulator(t_inference=t, seed=1, hw=hw, native_kernels=kernels)(x), ref)
              for t in (1.0, 3600.0, 86400.0, 3.15e7)]
    assert 0 < errors[0] < errors[1] < errors[2] < errors[3]
    without = spec(**{"device.drift": True, "device.drift_compensation": False})
    assert rel_err(placed.simulator(t_inference=3.15e7, seed=1, hw=without, native_kernels=kernels)(x), ref) \
        > 2 * errors[3]                                    # compensation removes the mean conductance decay


def test_read_noise_grows_with_time(linear):
    layer, x, placed = linear
    ref = layer(x).detach()
    hw = spec(**{"device.read_noise": True})
    errors = [rel_err(placed.simulator(t_inference=t, seed=1, hw=hw)(x), ref) for t in (1.0, 3600.0, 3.15e7)]
    assert 0 < errors[0] < errors[1] < errors[2]


def test_fewer_adc_bits_more_error(linear):
    layer, x, placed = linear
    ref = layer(x).detach()
    errors = []
    try:
        for seg in placed.segments:
            seg.dac_range, seg.adc_range = None, 30.0      # no clipping: outputs reach ~16 in normalized units
        for bits in (4, 6, 8, 10, None):
            errors.append(rel_err(placed.simulator(seed=0, hw=spec(**{"adc.bits": bits}))(x), ref))
    finally:
        for seg in placed.segments:
            seg.dac_range, seg.adc_range = None, None
    assert errors[0] > errors[1] > errors[2] > errors[3] > errors[4]
    assert errors[4] < 1e-5
    # uniform rounding: each extra 2 bits divide the error by about 4
    assert 2.5 < errors[1] / errors[2] < 6


def test_output_noise_is_fresh_per_call_and_scales(linear):
    layer, x, placed = linear
    ref = layer(x).detach()
    sim = placed.simulator(seed=0, hw=spec(output_noise=0.04))
    first, second = sim(x), sim(x)
    assert not torch.equal(first, second)
    e1 = rel_err(first, ref)
    e2 = rel_err(placed.simulator(seed=0, hw=spec(output_noise=0.08))(x), ref)
    assert 1.6 < e2 / e1 < 2.4


def _programming_noise_prediction(layer: nn.Linear, x: torch.Tensor, poly: tuple[float, float, float]) -> float:
    """Expected relative output error from programming noise alone (the published sigma_prog, g_max 25 uS).

    Per weight, the device holding it gets sigma(g) N(0,1) (rarely clamped at 0); the other device of
    the pair, programmed to 0, reads max(sigma(0) N, 0): mean sigma0/sqrt(2 pi), variance
    sigma0^2 (1/2 - 1/(2 pi)). With x_n = x / max|x| (abs_max DAC) and y = w_max * dac * y_n:
    E||dy||^2 = sum over outputs of sum_r x_r^2 Var(dg) + (sum_r x_r E[dg])^2, in weight units.
    """
    w = layer.weight.detach().double()
    w_max = float(w.abs().max())
    g = (w / w_max).abs()
    c0, c1, c2 = (c / 25.0 for c in poly)
    sigma_on = c0 + c1 * g + c2 * g ** 2
    s0 = c0
    var = sigma_on ** 2 + s0 ** 2 * (0.5 - 1 / (2 * math.pi))
    mean = -torch.sign(w) * s0 / math.sqrt(2 * math.pi)
    xd = x.double()
    dy2 = (xd ** 2) @ var.T + (xd @ mean.T) ** 2                 # (batch, out), in units of w_max
    return float(dy2.sum().sqrt() * w_max / layer(x).detach().double().norm())


@pytest.mark.parametrize("kernels", KERNELS)
def test_programming_noise_error_matches_theory(linear, kernels):
    layer, x, placed = linear
    x = torch.randn(256, 512, generator=torch.Generator().manual_seed(5))
    ref = layer(x).detach()
    poly = (0.26348, 1.9650, -1.1731)
    hw = spec(**{"device.programming_noise": True})
    error = rel_err(placed.simulator(seed=0, hw=hw, native_kernels=kernels)(x), ref)
    assert error == pytest.approx(_programming_noise_prediction(layer, x, poly), rel=0.05)
    doubled = spec(**{"device.programming_noise": True,
                      "device.programming_noise_poly_uS": [2 * c for c in poly]})
    assert rel_err(placed.simulator(seed=0, hw=doubled, native_kernels=kernels)(x), ref) / error \
        == pytest.approx(2.0, rel=0.05)


def test_int6_attention_small_nonzero_change(tiny_bert):
    _, inputs, placed, ref = tiny_bert
    for scale in ("per_tensor", "per_head"):
        hw = spec(SMALL_TILES, **{"digital.attention_bits": 6, "digital.attention_scale": scale})
        out = placed.simulator(seed=0, hw=hw)(**inputs).last_hidden_state
        change = rel_err(out, ref.last_hidden_state)
        assert 1e-4 < change < 0.05
    coarse = spec(SMALL_TILES, **{"digital.attention_bits": 3})
    assert rel_err(placed.simulator(seed=0, hw=coarse)(**inputs).last_hidden_state, ref.last_hidden_state) > change


def test_int6_quantizer_levels():
    from compiler.analog.integer import attention_matmul, quantize_symmetric
    x = torch.randn(2, 3, 5, 8)
    q = quantize_symmetric(x, 6, per_head=True)
    scale = x.abs().amax(dim=(2, 3), keepdim=True)
    codes = q / scale * 31
    assert torch.allclose(codes, codes.round(), atol=1e-4) and codes.abs().max() <= 31 + 1e-4
    assert (q - x).abs().max() <= (scale / 62).max() + 1e-6
    y = torch.randn(2, 3, 8, 4)
    for fused in ([False, True] if native.available() else [False]):
        got = attention_matmul(x, y.transpose(-1, -2).contiguous().transpose(-1, -2), 6, True, False, fused=fused)
        want = quantize_symmetric(x, 6, True) @ quantize_symmetric(y, 6, True)
        assert torch.allclose(got, want, atol=1e-5)


# --- seeds ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kernels", KERNELS)
def test_deterministic_per_seed_and_seeds_differ(tiny_bert, kernels):
    _, inputs, placed, ref = tiny_bert
    hw = load_hw_spec("pcm_1M", overrides=SMALL_TILES)        # every non-ideality on
    a = placed.simulator(t_inference=3600.0, seed=7, native_kernels=kernels, hw=hw)(**inputs).last_hidden_state
    b = placed.simulator(t_inference=3600.0, seed=7, native_kernels=kernels, hw=hw)(**inputs).last_hidden_state
    c = placed.simulator(t_inference=3600.0, seed=8, native_kernels=kernels, hw=hw)(**inputs).last_hidden_state
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert rel_err(a, ref.last_hidden_state) > 1e-3


def test_native_and_torch_paths_agree_in_distribution(linear):
    if not native.available():
        pytest.skip(f"native kernels unavailable: {native.unavailable_reason()}")
    layer, x, placed = linear
    x = torch.randn(128, 512, generator=torch.Generator().manual_seed(4))
    ref = layer(x).detach()
    hw = load_hw_spec("pcm_1M")
    for t in (1.0, 3.15e7):
        errs = {k: [rel_err(placed.simulator(t_inference=t, seed=s, native_kernels=k)(x), ref) for s in range(3)]
                for k in (None, False)}
        mean_native, mean_torch = (sum(v) / len(v) for v in errs.values())
        assert mean_native == pytest.approx(mean_torch, rel=0.1)


def test_bad_arguments(linear):
    _, _, placed = linear
    with pytest.raises(UserError, match="t_inference"):
        placed.simulator(t_inference=-1.0)
    with pytest.raises(UserError, match="tiles"):
        placed.simulator(hw=load_hw_spec("pcm_1M", overrides=SMALL_TILES))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu_when_ideal_and_is_deterministic(tiny_bert):
    _, inputs, placed, ref = tiny_bert
    out = placed.simulator(seed=0, hw=spec(SMALL_TILES), device="cuda")(**inputs).last_hidden_state
    assert out.device.type == "cuda"
    assert torch.allclose(out.cpu(), ref.last_hidden_state, rtol=1e-3, atol=1e-4)
    hw = load_hw_spec("pcm_1M", overrides=SMALL_TILES)
    a = placed.simulator(t_inference=3600.0, seed=1, hw=hw, device="cuda")(**inputs).last_hidden_state
    b = placed.simulator(t_inference=3600.0, seed=1, hw=hw, device="cuda")(**inputs).last_hidden_state
    assert torch.equal(a, b)
