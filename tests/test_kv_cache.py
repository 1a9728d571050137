"""The KV cache where it lives (issue 24, item 6): each layer's on its attention's chip, then its package's other chips
over the link, then the package's DRAM. Expected figures computed here by hand, not read back from the estimator."""
import math
import warnings
from dataclasses import replace

import pytest
import transformers as tf

from compiler import compile_model, load_hw_spec, load_model
from compiler.backends.estimator.kv_cache import DRAM, LOCAL, PACKAGE, KvPrices, place, traffic
from compiler.backends.estimator.schedule import CHIP_LINK, DRAM_PACKAGE, Resource

SMALL = dict(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=4, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=256, bos_token_id=1, eos_token_id=2, pad_token_id=0,
             tie_word_embeddings=False)


def test_a_full_chip_splits_its_sram_evenly_and_spills_to_its_package_then_dram():
    # chips 0 and 1 hold 2 layers each; 4 chips to a package: chips 2 and 3 are free; 100 bytes of SRAM per chip
    kv = place([0, 0, 1, 1], layer_bytes=120.0, sram_per_chip=100.0, chips_per_package=4)
    assert [layer.local_bytes for layer in kv.layers] == [50.0] * 4
    # overflow 4 x 70 = 280 against 200 free on chips 2 and 3: each layer gets 200/280 of its 70 there
    granted = 70 * 200 / 280
    for layer in kv.layers:
        assert dict(layer.remote) == pytest.approx({2: granted / 2, 3: granted / 2})
    assert kv.bytes_by_tier[LOCAL] == 200.0
    assert kv.bytes_by_tier[PACKAGE] == pytest.approx(200.0)
    assert kv.bytes_by_tier[DRAM] == pytest.approx(80.0)
    assert kv.location == "sram+dram" and kv.dram_by_package == pytest.approx({0: 80.0})
    # one chip to a package: no donors, the overflow goes to each chip's own package DRAM
    alone = place([0, 0, 1, 1], layer_bytes=120.0, sram_per_chip=100.0, chips_per_package=1, dram_capacity=100.0)
    assert alone.dram_by_package == pytest.approx({0: 140.0, 1: 140.0})
    assert not alone.dram_fits
    assert place([0, 1], layer_bytes=10.0, sram_per_chip=100.0, chips_per_package=4).location == "sram"
    assert place([0], layer_bytes=10.0, sram_per_chip=0.0, chips_per_package=None).location == "dram"


def test_a_layers_traffic_is_priced_where_each_byte_lives():
    kv = place([0], layer_bytes=300.0, sram_per_chip=100.0, chips_per_package=2)   # 100 own, 100 on chip 1, 100 DRAM
    layer = kv.layers[0]
    prices = KvPrices(sram_read_J=1.0, sram_write_J=2.0, link_J=10.0, link_s=0.5, dram_J=100.0,
                      dram_Bps_per_package=4.0)
    # a step reading the first 250 bytes and appending 20 after them (in DRAM)
    t = traffic(layer, read_bytes=250.0, write_bytes=20.0, held_bytes=250.0, prices=prices, link_component="link")
    assert t.bytes_by_tier == {LOCAL: 100.0, PACKAGE: 100.0, DRAM: 70.0}
    # own reads; remote reads read there, staged (write + read) at home; DRAM reads and the appended bytes
    assert t.energy_J["kv_cache"] == pytest.approx(100 * 1.0 + 100 * (1.0 + 2.0 + 1.0) + 70 * 100.0)
    assert t.energy_J["link"] == pytest.approx(100 * 10.0)
    assert t.busy_s == pytest.approx({Resource(CHIP_LINK, 1): 100 * 0.5, Resource(DRAM_PACKAGE, 0): 70 / 4.0})


@pytest.fixture(scope="module")
def spread(tmp_path_factory):
    """A 4-layer Llama on chips of 8 tiles of 64x64: its layers' attention on several chips."""
    path = tmp_path_factory.mktemp("llama")
    (path / "config.json").write_text(tf.LlamaConfig(**SMALL).to_json_string())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, example = load_model(str(path), seq_len=8, materialize=False)
    hw = load_hw_spec("pcm_1M", {"tile.rows": 64, "tile.cols": 64, "tile.count": 8, "tile.max_chips": 64})
    return compile_model(model, example, hw, allocation="packed")


def _kv_bytes(context: int, batch: int, bits: int = 8) -> float:
    d = SMALL["hidden_size"] // SMALL["num_attention_heads"]
    return 2 * SMALL["num_hidden_layers"] * SMALL["num_key_value_heads"] * d * context * batch * bits / 8


def test_the_cache_follows_its_layers_chips_and_spills_per_package(spread):
    assert spread.chips_used > 2
    # 0.25 KiB per tile: 2 KiB per chip; the cache at 64 + 64 tokens x 4 sequences is 64 KiB: it spills
    for cpp, expect in ((1, "sram+dram"), (64, "sram+dram")):
        hw = load_hw_spec("pcm_1M", {**{f"tile.{k}": v for k, v in (("rows", 64), ("cols", 64), ("count", 8),
                                                                   ("max_chips", 64))},
                                     "area.sram_KiB_per_tile": 0.25, "package.chips_per_package": cpp})
        cost = replace(spread, hw=hw).estimate(batch=4, seq_len=64, gen_len=64, sensitivity=False)
        run = cost.decode.run
        assert run.kv_location == expect
        placed = run.kv_placement
        assert math.fsum(placed.bytes_by_tier.values()) == pytest.approx(_kv_bytes(128, 4))
        chips = {layer.chip for layer in placed.layers}
        assert len(chips) > 1  # the layers' caches sit on their own chips, not pooled
        step = run.steps[-1]
        # what a step moves, by tier, adds up to the cache bytes it reads and writes
        assert math.fsum(step.kv_bytes_by_tier.values()) == pytest.approx(step.kv_bytes_moved)
        assert step.kv_bytes_moved == pytest.approx(_kv_bytes(step.context - 1, 4) + _kv_bytes(1, 4))
        if cpp == 64:  # one package: the free SRAM of the chips without attention takes part of the overflow
            assert placed.bytes_by_tier[PACKAGE] > 0 and step.energy_by_component_J["chip_link"] > 0
        else:
            assert placed.bytes_by_tier[PACKAGE] == 0 and len(placed.dram_by_package) == len(chips)


def test_kv_cache_bits_is_a_spec_field_that_scales_the_cache(spread):
    for bits in (4, 16):
        hw = replace(spread.hw, memory=replace(spread.hw.memory, kv_cache_bits=bits))
        cost = replace(spread, hw=hw).estimate(batch=1, seq_len=16, gen_len=8, sensitivity=False)
        assert cost.to_json()["decode"]["kv_cache"]["bytes"] == _kv_bytes(24, 1, bits)
