"""Baselines you can choose and scale (issue 24, item 2): --baseline SPEC, --baseline-scale, the GPU class."""
import re
import warnings

import pytest
import transformers as tf

from compiler import UserError, compile_model, load_hw_spec, load_model
from compiler.backends.estimator import estimate
from compiler.backends.estimator.baseline import price_on_baseline, scale_baseline
from compiler.backends.estimator.workload import FORWARD, Phase, WorkloadTemplate
from compiler.config import RunConfig, parse_baseline_scale
from compiler.hw_spec import SPEC_DIR, load_baseline_spec

SMALL = dict(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64, bos_token_id=1, eos_token_id=2, pad_token_id=0,
             tie_word_embeddings=False)


@pytest.fixture(scope="module")
def placed(tmp_path_factory):
    path = tmp_path_factory.mktemp("llama")
    (path / "config.json").write_text(tf.LlamaConfig(**SMALL).to_json_string())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, example = load_model(str(path), seq_len=8, materialize=False)
    return compile_model(model, example, load_hw_spec("pcm_1M"), allocation="packed")


def test_scale_values_parse_and_bad_ones_are_one_line():
    assert parse_baseline_scale("iso-area") == ("iso-area", None)
    assert parse_baseline_scale("chips=8") == ("chips", 8)
    for bad in ("chips=0", "chips=x", "twice", "chips=-2"):
        with pytest.raises(UserError, match="--baseline-scale"):
            parse_baseline_scale(bad)
    with pytest.raises(UserError, match="baseline-scale"):
        RunConfig("gpt2", "pcm_1M", baseline_scale="half").validate()


def test_n_chips_multiply_arrays_memory_and_bandwidth():
    spec, hw = load_baseline_spec("gpu_h100"), load_hw_spec("pcm_1M")
    s = scale_baseline(spec, hw, "chips=4", 1.0, 1.0)
    assert s.chips == 4
    assert (s.spec.arrays, s.spec.dram_GBps, s.spec.weight_buffer_MiB) == (
        4 * spec.arrays, 4 * spec.dram_GBps, 4 * spec.weight_buffer_MiB)
    # iso-area: the AIMC silicon over the published die, rounded
    assert scale_baseline(spec, hw, "iso-area", 10 * spec.area_mm2, 1.0).chips == 10
    assert scale_baseline(spec, hw, "iso-power", 1.0, 3.4 * spec.tdp_W).chips == 3
    with pytest.raises(UserError, match="tdp_W"):
        scale_baseline(load_baseline_spec("digital_int8"), hw, "iso-power", 1.0, 100.0)


def test_weights_move_on_chip_when_the_scaled_memory_holds_them(placed):
    """A model whose weights exceed one chip's weight memory but fit N chips' is read from SRAM at N."""
    hw = placed.hw
    work = WorkloadTemplate(placed).instantiate(Phase(FORWARD, 1, 1))
    weight_bytes = sum(w.in_features * w.out_features for w in work.analog)
    spec = load_baseline_spec("gpu_h100")
    small = spec.__class__(**{**spec.__dict__, "weight_buffer_MiB": weight_bytes / 2 ** 20 / 3})
    assert price_on_baseline(work, small, hw).weights_in_dram
    four = scale_baseline(small, hw, "chips=4", 1.0, 1.0).spec
    assert not price_on_baseline(work, four, hw).weights_in_dram


def test_the_gpu_baseline_runs_through_estimate_and_says_what_bounds_it(placed):
    one = estimate(placed, batch=1, seq_len=8, gen_len=4, sensitivity=False, baseline="gpu_h100",
                   baseline_scale="chips=1").to_json()
    two = estimate(placed, batch=1, seq_len=8, gen_len=4, sensitivity=False, baseline="gpu_h100",
                   baseline_scale="chips=2").to_json()
    assert one["baseline"]["name"] == "gpu_h100" and two["baseline"]["chips"] == 2
    assert one["baseline"]["bound"] in ("compute", "memory bandwidth")
    assert one["decode"]["baseline_bound"] in ("compute", "memory bandwidth", "fixed overhead per layer")
    assert one["decode"]["bound"]
    assert two["decode"]["baseline_tokens_per_s"] > one["decode"]["baseline_tokens_per_s"]
    assert one["decode"]["tokens_per_s"] == two["decode"]["tokens_per_s"]  # the AIMC side does not move


def test_a_baseline_whose_memory_cannot_hold_the_weights_and_cache_says_so(placed, tmp_path):
    """hbm_GB is enforced as a flag: the generation is priced, and its bound says the real part could not run it."""
    text = (SPEC_DIR / "gpu_h100.yaml").read_text()
    tiny = re.sub(r"(?m)^hbm_GB: [0-9.]+", "hbm_GB: 1.0e-6", re.sub(r"(?m)^weight_buffer_MiB: [0-9.]+",
                                                                      "weight_buffer_MiB: 0.001", text))
    assert tiny.count("1.0e-6") == 1 and "weight_buffer_MiB: 0.001" in tiny
    (tmp_path / "tiny_gpu.yaml").write_text(tiny)
    one = estimate(placed, batch=1, seq_len=8, gen_len=4, sensitivity=False, baseline=str(tmp_path / "tiny_gpu.yaml"),
                   baseline_scale="chips=1").to_json()["decode"]
    assert one["baseline_bound"].startswith("does not fit its memory (") and "> 1e-06 GB" in one["baseline_bound"]
    assert one["baseline_tokens_per_s"] > 0                       # still priced
    roomy = estimate(placed, batch=1, seq_len=8, gen_len=4, sensitivity=False, baseline="gpu_h100",
                     baseline_scale="chips=1").to_json()["decode"]
    assert not roomy["baseline_bound"].startswith("does not fit")
