"""Decoder inference cost (issue 14, items 2 and 3): prefill and decode against a KV cache, the digital baseline on
the same work, chip-to-chip links. Tiny configs on the meta device (fast); every expected figure computed here
from the config or the spec, not read back from the estimator."""
import json
import warnings
from dataclasses import replace

import pytest
import torch
import transformers as tf
from torch import nn

from compiler import UserError, compile_model, load_hw_spec, load_model
from compiler.backends.estimator import estimate
from compiler.backends.estimator.baseline import price_on_baseline
from compiler.backends.estimator.decode import kv_geometry
from compiler.backends.estimator.links import crossings
from compiler.backends.estimator.prices import digital_prices
from compiler.backends.estimator.schedule import ANALOG
from compiler.backends.estimator.workload import DECODE, FORWARD, PREFILL, Phase, WorkloadTemplate
from compiler.hw_spec import load_baseline_spec

SMALL = dict(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64, bos_token_id=1, eos_token_id=2, pad_token_id=0)


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    """A tiny Llama (grouped-query attention: 4 heads, 2 KV heads) mapped on pcm_1M from its config alone."""
    config = tf.LlamaConfig(**SMALL, tie_word_embeddings=False)
    path = tmp_path_factory.mktemp("llama")
    (path / "config.json").write_text(config.to_json_string())
    model, example = load_model(str(path), seq_len=8, materialize=False)
    return config, compile_model(model, example, load_hw_spec("pcm_1M"), allocation="packed")


def _kv_formula(config, bits: int, context: int, batch: int) -> float:
    head_dim = config.hidden_size // config.num_attention_heads
    return 2 * config.num_hidden_layers * config.num_key_value_heads * head_dim * context * batch * bits / 8


def test_kv_cache_bytes_follow_the_config(llama):
    config, placed = llama
    hw = placed.hw
    cost = placed.estimate(batch=2, seq_len=8, gen_len=12, sensitivity=False)
    kv = cost.to_json()["decode"]["kv_cache"]
    assert kv["bits"] == hw.memory.kv_cache_bits == 8
    assert kv["bytes"] == _kv_formula(config, 8, 8 + 12, 2)
    assert kv["location"] == "sram"  # a few KiB beside the chip's 4 MiB of activation SRAM
    geometry = kv_geometry(placed.attention, hw)
    assert (geometry.layers, geometry.kv_heads, geometry.head_dim) == (2, 2, 8)
    # a chip without activation SRAM sends it to DRAM
    tiny_sram = load_hw_spec("pcm_1M", {"area.sram_KiB_per_tile": 0})
    tiny = replace(placed, hw=tiny_sram)  # the same mapping (same tile shape) on a chip with less SRAM
    assert tiny.estimate(batch=2, seq_len=8, gen_len=12, sensitivity=False).decode.run.kv_location == "dram"


def test_kv_geometry_is_read_off_the_traced_graph(tmp_path):
    """The IR's attention layers carry the KV geometry of the traced shapes: a head_dim that is not hidden / heads
    (Llama's `head_dim` override) and grouped-query attention's KV heads, before repeat_kv widens them; GPT-2's
    fused QKV projection, every head its own K and V."""
    cases = ((tf.LlamaConfig(**{**SMALL, "num_hidden_layers": 3}, head_dim=16, tie_word_embeddings=False), 3, 2, 16),
             (tf.GPT2Config(n_layer=2, n_head=4, n_embd=32, vocab_size=96, n_positions=64, bos_token_id=1,
                            eos_token_id=2), 2, 4, 8))
    for i, (config, layers, kv_heads, head_dim) in enumerate(cases):
        path = tmp_path / str(i)
        path.mkdir()
        (path / "config.json").write_text(config.to_json_string())
        model, example = load_model(str(path), seq_len=8, materialize=False)
        placed = compile_model(model, example, load_hw_spec("pcm_1M"), allocation="naive")
        assert [(a.kv_heads, a.head_dim, a.values_per_token) for a in placed.attention] == \
            [(kv_heads, head_dim, 2 * kv_heads * head_dim)] * layers
        assert all(len(a.matmuls) == 2 for a in placed.attention)
        kv = placed.estimate(batch=2, seq_len=8, gen_len=4, sensitivity=False).to_json()["decode"]["kv_cache"]
        assert (kv["layers"], kv["kv_heads"], kv["head_dim"]) == (layers, kv_heads, head_dim)
        assert kv["bytes"] == 2 * layers * kv_heads * head_dim * (8 + 4) * 2 * placed.hw.memory.kv_cache_bits / 8


def test_kv_cache_in_dram_costs_its_bytes_at_the_dram_price(llama):
    """Leakage off: the same decode step with the cache in SRAM and in DRAM differs by exactly the cache bytes
    moved times the difference of their prices per byte."""
    config, placed = llama
    quiet = {"static.logic_mW_per_mm2": 0, "static.sram_pW_per_bit": 0}
    sram_hw = load_hw_spec("pcm_1M", quiet)
    dram_hw = load_hw_spec("pcm_1M", {**quiet, "area.sram_KiB_per_tile": 0})
    steps = {}
    for name, hw in (("sram", sram_hw), ("dram", dram_hw)):
        cost = replace(placed, hw=hw).estimate(batch=2, seq_len=8, gen_len=4, sensitivity=False)
        steps[name] = {p.context: p for p in cost.decode.curve}[32]
        assert steps[name].kv_location == name
    read, write = _kv_formula(config, 8, 31, 2), _kv_formula(config, 8, 1, 2)
    digital = digital_prices(sram_hw, "energy", sram_hw.digital.other_precision)
    dram_J = sram_hw.memory.dram_pJ_per_byte * 1e-12
    expected = read * (dram_J - digital.sram_read_J_per_byte) + write * (dram_J - digital.sram_write_J_per_byte)
    assert steps["dram"].energy_J - steps["sram"].energy_J == pytest.approx(expected, rel=1e-9)
    assert steps["dram"].latency_s >= steps["sram"].latency_s


def test_decode_step_attends_one_query_to_the_context(llama):
    """Every linear on one token per sequence; QK^T and PV: heads x head_dim x c MACs each per sequence."""
    config, placed = llama
    template = WorkloadTemplate(placed)
    d = config.hidden_size // config.num_attention_heads
    batch = 3
    for context in (5, 40):
        work = template.instantiate(Phase(DECODE, batch, context))
        assert all(w.vectors == batch for w in work.analog)
        expected = config.num_hidden_layers * 2 * config.num_attention_heads * d * context * batch
        assert work.attention_macs == expected
        # the analog MACs do not depend on the context: one token's worth of every weight
        weights = sum(b.in_features * b.out_features for b in placed.blocks.values())
        assert work.analog_macs == batch * weights


def test_decode_energy_grows_with_context_by_the_attention_and_cache_terms(llama):
    config, placed = llama
    cost = placed.estimate(batch=1, seq_len=8, gen_len=4, sensitivity=False)
    points = {p.context: p for p in cost.decode.curve}
    a, b = points[16], points[32]
    d = config.hidden_size // config.num_attention_heads
    assert b.attention_macs - a.attention_macs == config.num_hidden_layers * 2 * config.num_attention_heads * d * 16
    assert b.kv_bytes_moved - a.kv_bytes_moved == _kv_formula(config, 8, 16, 1)  # 16 more cached tokens read
    assert b.energy_J > a.energy_J and b.baseline_energy_J > a.baseline_energy_J


def test_prefill_runs_the_lm_head_on_the_last_position_and_skips_the_masked_half(llama):
    config, placed = llama
    template = WorkloadTemplate(placed)
    s, batch = 16, 2
    last = template.heads()
    assert {w.name for w in last if w.kind == ANALOG} == {"lm_head"}
    work = template.instantiate(Phase(PREFILL, batch, s))
    vectors = {w.name: w.vectors for w in work.analog}
    assert vectors.pop("lm_head") == batch
    assert set(vectors.values()) == {batch * s}
    d = config.hidden_size // config.num_attention_heads
    causal_pairs = s * (s + 1) // 2
    assert work.attention_macs == config.num_hidden_layers * 2 * config.num_attention_heads * d * batch * causal_pairs
    full = template.instantiate(Phase(FORWARD, batch, s))  # the encoder-style forward: all positions, the whole square
    assert full.attention_macs == config.num_hidden_layers * 2 * config.num_attention_heads * d * batch * s * s
    # the estimate's inference of a causal LM is this prefill: its counts say so
    cost = placed.estimate(batch=batch, seq_len=s, sensitivity=False)
    assert cost.counts["attention_macs"] == work.attention_macs
    assert cost.counts["analog_macs"] == work.analog_macs < full.analog_macs


def test_baseline_streams_every_weight_once_per_decode_step(llama):
    """Weights in DRAM (a weight memory of 0 MiB): each decode step reads every weight byte once."""
    config, placed = llama
    base = replace(load_baseline_spec("digital_int8"), weight_buffer_MiB=0.0)
    template = WorkloadTemplate(placed)
    weights = sum(b.in_features * b.out_features for b in placed.blocks.values())
    for batch in (1, 4):
        step = template.instantiate(Phase(DECODE, batch, 20))
        cost = price_on_baseline(step, base, placed.hw)
        assert cost.weights_in_dram
        assert cost.energy_by_component_J["weight_fetch"] == pytest.approx(weights * base.dram_pJ_per_byte * 1e-12)
        assert cost.latency_s >= weights / (base.dram_GBps * 1e9)


def test_one_chip_has_no_link_traffic(llama):
    _, placed = llama
    assert placed.chips_used == 1
    cost = placed.estimate(batch=1, seq_len=8, gen_len=4, sensitivity=False)
    assert cost.links.bytes == 0 and cost.links.energy_J == 0
    assert cost.decode.run.prefill.links.bytes == 0


def test_activations_crossing_chips_are_priced_per_bit():
    """Two linears on chips of one 32x32 tile each: the ReLU output (on chip 0) crosses to chip 1. (No mesh hop
    latency: its mean hop count depends on tile.count, which the one-chip twin changes.)"""
    hw = load_hw_spec("pcm_1M", {"tile.rows": 32, "tile.cols": 32, "tile.count": 1, "tile.max_chips": 4,
                                 "latency.network_hop_ns": 0.0})
    model = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 32))
    placed = compile_model(model, (torch.randn(2, 8, 32),), hw, allocation="packed")
    assert placed.chips_used == 2
    batch, seq = 3, 8
    cost = estimate(placed, batch=batch, seq_len=seq, sensitivity=False)
    act_bytes = 2  # fp16 activations (digital.other_precision)
    expected = batch * seq * 32 * act_bytes
    assert cost.links.bytes == expected
    assert cost.links.energy_J == pytest.approx(expected * 8 * hw.chip_link.pJ_per_bit * 1e-12)
    assert cost.energy_by_component_J["chip_link"] == pytest.approx(cost.links.energy_J)
    # the crossing delays the second layer by the link's latency at least
    one_chip = estimate(compile_model(model, (torch.randn(2, 8, 32),),
                                      load_hw_spec("pcm_1M", {"tile.rows": 32, "tile.cols": 32, "tile.count": 2,
                                                                "latency.network_hop_ns": 0.0}),
                                      allocation="packed"), batch=batch, seq_len=seq, sensitivity=False)
    assert cost.latency_s >= one_chip.latency_s + hw.chip_link.latency_ns * 1e-9
    moves, _ = crossings(WorkloadTemplate(placed).instantiate(Phase(FORWARD, batch, seq)), 1, act_bytes)
    assert [(m.src, m.dst) for m in moves] == [(0, 1)]


def test_a_block_split_over_chips_sends_its_partial_sums_home_once_per_column():
    """Linear(96, 32) on 32x32 tiles, one per chip: three row pieces on chips 0-2; chips 1 and 2 each send their
    32 partial sums per token to chip 0 (the home: ties go to the lowest chip)."""
    hw = load_hw_spec("pcm_1M", {"tile.rows": 32, "tile.cols": 32, "tile.count": 1, "tile.max_chips": 4})
    placed = compile_model(nn.Sequential(nn.Linear(96, 32)), (torch.randn(2, 8, 32 * 3),), hw, allocation="packed")
    assert placed.chips_used == 3
    cost = estimate(placed, batch=2, seq_len=8, sensitivity=False)
    assert cost.links.chip_pairs == {"1->0": 2 * 8 * 32 * 2, "2->0": 2 * 8 * 32 * 2}
    assert cost.links.crossings == 2


def test_link_fields_missing_are_one_line_when_a_model_spans_chips():
    hw = load_hw_spec("pcm_1M", {"tile.rows": 32, "tile.cols": 32, "tile.count": 1, "tile.max_chips": 4,
                                 "chip_link": None})
    placed = compile_model(nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 32)),
                           (torch.randn(2, 8, 32),), hw, allocation="packed")
    with pytest.raises(UserError, match="chip_link.GBps"):
        estimate(placed, batch=1, seq_len=8, sensitivity=False)


def test_generation_longer_than_the_positions_is_refused(llama):
    _, placed = llama
    with pytest.raises(UserError, match="exceeds the 64 positions"):
        placed.estimate(batch=1, seq_len=60, gen_len=8, sensitivity=False)


def test_cli_gpt2_writes_the_decode_record_and_the_report_section(tmp_path, capsys):
    from compiler.cli import main
    out = tmp_path / "gpt2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["gpt2", "--hw", "pcm_1M", "--out", str(out), "--seq-len", "16", "--gen-len", "8",
                     "--allocation", "packed"]) == 0
    err = capsys.readouterr().err.splitlines()
    lines = [line for line in err if line.startswith("decode: ")]
    assert len(lines) == 1 and "tokens/s" in lines[0] and "KV cache" in lines[0]
    # a causal LM's cost line leads with J/token, tokens/s (aggregate, per sequence) and TTFT at the run's batch
    head = [line for line in err if line.startswith("cost: ")]
    assert len(head) == 1 and head[0].split(",")[0].endswith("mJ/token") and "per sequence" in head[0]
    assert "time to first token" in head[0] and "bound:" in head[0]
    assert any(line.startswith("prefill: ") for line in err)
    cost = json.loads((out / "cost.json").read_text())
    decode = cost["decode"]
    assert decode["gen_len"] == 8 and decode["seq_len"] == 16
    # gpt2: 12 layers x 12 heads x 64, 8-bit K and V, 24 tokens of context
    assert decode["kv_cache"]["bytes"] == 2 * 12 * 12 * 64 * 24
    assert decode["lm_head_last_position_only"] == ["lm_head"]
    assert decode["tokens_per_s"] > 0 and decode["energy_per_token_J"] > 0
    assert {r["batch"] for r in decode["by_batch"]} == {1, 8, 32}
    assert "links" in cost and cost["links"]["bytes"] >= 0
    html = (out / "report.html").read_text()
    assert 'id="decoder"' in html and 'id="fig-decode"' in html and "Time to first token" in html


def test_gen_len_is_refused_for_an_encoder(tmp_path, capsys):
    from compiler.cli import main
    config = tf.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=48, max_position_embeddings=32)
    (tmp_path / "config.json").write_text(config.to_json_string())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main([str(tmp_path), "--hw", "pcm_1M", "--out", str(tmp_path / "out"), "--seq-len", "8",
                     "--gen-len", "4", "--quiet"]) != 0
    assert "causal LMs only" in capsys.readouterr().err


def test_gen_len_flag_is_validated():
    from compiler.cli import main
    assert main(["gpt2", "--hw", "pcm_1M", "--gen-len", "0"]) != 0


def test_gen_len_beyond_the_positions_is_refused_before_mapping(tmp_path, capsys):
    from compiler.cli import main
    assert main(["gpt2", "--hw", "pcm_1M", "--seq-len", "1000", "--gen-len", "100", "--out", str(tmp_path / "o"),
                 "--verbose"]) == 2
    err = capsys.readouterr().err
    assert "1000 + --gen-len 100 = 1100 exceeds the 1024 positions gpt2 accepts" in err and "mapped:" not in err
