"""Decoder architectures from tiny configs (fast, offline, on the meta device): every linear analog exactly once,
the attention matmuls on the digital unit, tiles and analog weights as the config implies; config-only
directories and the bundled Llama-3.1 configs (issue 14, first part; docs/decoders.md)."""
import json
import warnings

import pytest
import torch
import transformers as tf

from compiler import UserError, load_hw_spec, load_model
from compiler.frontend import export_model
from compiler.ir import Kind, PlacedGraph
from compiler.models import _from_config, model_info
from passes import allocate_tiles, partition

SMALL = dict(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64, bos_token_id=1, eos_token_id=2, pad_token_id=0)


def _map(model, example=None, hw="pcm_1M", allocation="packed") -> PlacedGraph:
    """Export, partition and allocate: the shape-only part of compile_model (no finite-weight check or
    calibration, which read values a meta model does not have)."""
    example = example or {"input_ids": torch.randint(5, 96, (1, 8)),
                          "attention_mask": torch.ones(1, 8, dtype=torch.long)}
    placed = PlacedGraph(exported=export_model(model, example), model=model,
                         hw=hw if not isinstance(hw, str) else load_hw_spec(hw), model_info=model_info(model),
                         example=example)
    partition(placed)
    return allocate_tiles(placed, allocation)


def _meta(config, task="causal-lm"):
    model = _from_config(config, task, 2, materialize=False)
    model.eval()
    model.config.use_cache = False
    return model


def _expected_linears(config) -> dict[str, tuple[int, int]]:
    """From the config alone: module -> (in, out) of every linear a decoder layer stack and LM head must have."""
    h, n_layers, inter = config.hidden_size, config.num_hidden_layers, config.intermediate_size
    d = h // config.num_attention_heads
    q, kv = config.num_attention_heads * d, config.num_key_value_heads * d
    fused = config.model_type == "phi3"
    expected = {}
    for i in range(n_layers):
        attn, mlp = f"model.layers.{i}.self_attn", f"model.layers.{i}.mlp"
        if fused:
            expected.update({f"{attn}.qkv_proj": (h, q + 2 * kv), f"{mlp}.gate_up_proj": (h, 2 * inter)})
        else:
            expected.update({f"{attn}.q_proj": (h, q), f"{attn}.k_proj": (h, kv), f"{attn}.v_proj": (h, kv),
                             f"{mlp}.gate_proj": (h, inter), f"{mlp}.up_proj": (h, inter)})
        expected.update({f"{attn}.o_proj": (q, h), f"{mlp}.down_proj": (inter, h)})
    expected["lm_head"] = (h, config.vocab_size)
    return expected


CONFIGS = {
    "llama-gqa-untied": lambda: tf.LlamaConfig(**SMALL, tie_word_embeddings=False),
    "llama-tied": lambda: tf.LlamaConfig(**SMALL, tie_word_embeddings=True),
    "qwen2-qkv-bias": lambda: tf.Qwen2Config(**SMALL, tie_word_embeddings=False),
    "phi3-fused": lambda: tf.Phi3Config(**SMALL, tie_word_embeddings=False),
    "mistral": lambda: tf.MistralConfig(**SMALL, tie_word_embeddings=False),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_decoder_linears_analog_once_and_attention_digital(name):
    config = CONFIGS[name]()
    model = _meta(config)
    assert all(p.is_meta for p in model.parameters())
    placed = _map(model)
    analog = placed.analog_layers()
    expected = _expected_linears(config)
    assert {p.module: (p.in_features, p.out_features) for p in analog} == expected
    assert len(analog) == len(expected)  # once each, a tied head included
    assert len({p.weight for p in analog}) == len(analog)
    weights = sum(i * o for i, o in expected.values())
    assert sum(p.in_features * p.out_features for p in analog) == weights
    # attention: QK^T and PV per layer on the digital unit, nothing else there (rotary's matmul included)
    digital_int = [p for p in placed.placements.values() if p.kind is Kind.ATTENTION_MATMUL]
    assert len(digital_int) == 2 * config.num_hidden_layers
    assert all(p.module.endswith("self_attn") for p in digital_int)
    assert sum(p.operand_is_probability for p in digital_int) == config.num_hidden_layers
    # the rest digital: RMSNorm, SiLU (SwiGLU's gate), rotary, embedding gather
    ops = {p.op for p in placed.placements.values() if p.kind is Kind.DIGITAL}
    assert "aten.embedding.default" in ops and any("silu" in op for op in ops) and any("rsqrt" in op for op in ops)
    # every analog weight on tiles exactly once: segments cover each block's cells once
    cells = sum((s.rows[1] - s.rows[0]) * (s.cols[1] - s.cols[0]) for s in placed.segments)
    assert cells == weights
    assert placed.tiles_used == -(-weights // (512 * 512))  # tiny: everything packs into the fewest tiles


def test_qwen2_biases_on_qkv_only():
    placed = _map(_meta(CONFIGS["qwen2-qkv-bias"]()))
    with_bias = {p.module.rsplit(".", 1)[-1] for p in placed.analog_layers() if p.bias}
    without = {p.module.rsplit(".", 1)[-1] for p in placed.analog_layers() if not p.bias}
    assert with_bias == {"q_proj", "k_proj", "v_proj"}
    assert without == {"o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"}


def test_tied_head_is_the_embedding_weight_once():
    model = _meta(CONFIGS["llama-tied"]())
    placed = _map(model)
    assert model.lm_head.weight is model.model.embed_tokens.weight  # one tensor, two names
    (head,) = [p for p in placed.analog_layers() if p.module == "lm_head"]  # one analog layer
    assert head.weight in ("lm_head.weight", "model.embed_tokens.weight")
    assert placed.weight_of(head) is not None
    untied = _map(_meta(CONFIGS["llama-gqa-untied"]()))
    assert [p.weight for p in untied.analog_layers() if p.module == "lm_head"] == ["lm_head.weight"]


def test_gpt2_tied_conv1d_head_counted_once():
    config = tf.GPT2Config(vocab_size=96, n_embd=32, n_layer=2, n_head=4, n_positions=64)
    placed = _map(_meta(config))
    analog = placed.analog_layers()
    assert len(analog) == 4 * 2 + 1  # c_attn (fused QKV), c_proj, c_fc, mlp.c_proj per layer + lm_head
    assert sum(p.in_features * p.out_features for p in analog) == 2 * (32 * 96 + 32 * 32 + 2 * 32 * 128) + 32 * 96


def test_stacked_weights_outside_a_grouped_matmul_are_refused_in_one_line():
    """Mixtral's experts map (tests/test_moe.py); a 3-D weight used any other way would run digital unsaid."""
    class Stacked(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.experts = torch.nn.Parameter(torch.randn(2, 4, 3))

        def forward(self, x):
            return torch.matmul(x.unsqueeze(1), self.experts)

    with pytest.raises(UserError, match="stacked per expert") as err:
        _map(Stacked(), (torch.randn(2, 5, 4),))
    assert "\n" not in str(err.value)


def test_meta_and_random_weights_map_alike(tmp_path):
    config = CONFIGS["llama-gqa-untied"]()
    (tmp_path / "config.json").write_text(config.to_json_string())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        real, example = load_model(str(tmp_path), seq_len=8)  # config only: random weights, materialized
    meta, meta_example = load_model(str(tmp_path), seq_len=8, materialize=False)
    assert real.aimc_info.weights == "random" and real.aimc_info.source == str(tmp_path)
    assert meta.aimc_info.weights == "none" and meta.aimc_info.task == "causal-lm"
    assert not any(p.is_meta for p in real.parameters()) and all(p.is_meta for p in meta.parameters())
    assert meta_example["input_ids"].device.type == "cpu"
    a, b = _map(real, example), _map(meta, meta_example)
    assert [(p.module, p.in_features, p.out_features) for p in a.analog_layers()] == \
           [(p.module, p.in_features, p.out_features) for p in b.analog_layers()]
    assert a.tiles_used == b.tiles_used


def test_config_only_directory_defaults_to_causal_lm_for_decoders_only(tmp_path):
    decoder, encoder = tmp_path / "decoder", tmp_path / "encoder"
    decoder.mkdir(), encoder.mkdir()
    (decoder / "config.json").write_text(json.dumps({"model_type": "qwen2", **SMALL}))  # no architectures key
    (encoder / "config.json").write_text(tf.BertConfig(vocab_size=96, hidden_size=32, num_hidden_layers=1,
                                                       num_attention_heads=2, intermediate_size=64)
                                         .to_json_string())
    model, _ = load_model(str(decoder), seq_len=8, materialize=False)
    assert model.aimc_info.task == "causal-lm" and type(model).__name__ == "Qwen2ForCausalLM"
    model, _ = load_model(str(encoder), seq_len=8, materialize=False)
    assert model.aimc_info.task == "sequence-classification"


def test_config_only_directory_with_a_bad_config_is_one_line(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    with pytest.raises(UserError, match="config.json"):
        load_model(str(tmp_path), materialize=False)


@pytest.mark.parametrize("name, layers, hidden, heads, inter", [
    ("meta-llama/Llama-3.1-8B", 32, 4096, 32, 14336), ("meta-llama/Llama-3.1-70B", 80, 8192, 64, 28672)])
def test_bundled_llama_configs_build_on_meta_in_no_memory(name, layers, hidden, heads, inter):
    model, example = load_model(name, seq_len=16, materialize=False)
    config = model.config
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads, config.intermediate_size,
            config.num_key_value_heads, config.vocab_size) == (layers, hidden, heads, inter, 8, 128256)
    assert model.aimc_info.task == "causal-lm" and model.aimc_info.weights == "none"
    assert not config.tie_word_embeddings and all(p.is_meta for p in model.parameters())
    expected = _expected_linears(config)
    linears = {n: (m.in_features, m.out_features) for n, m in model.named_modules()
               if isinstance(m, torch.nn.Linear)}
    assert linears == expected
    # analog weights the config implies: 7.50B and 69.50B (embeddings, digital gathers, not counted)
    assert sum(i * o for i, o in expected.values()) == {32: 7_504_658_432, 80: 69_501_714_432}[layers]


def test_random_weights_too_large_are_refused_before_allocating():
    with pytest.raises(UserError, match="materialize=False"):
        load_model("meta-llama/Llama-3.1-8B", seq_len=16)


def test_compile_model_maps_and_prices_a_meta_model(tmp_path):
    """Shapes only: compile_model (no calibration) and the estimate run on a model without weight values."""
    from compiler import compile_model, load_hw_spec
    config = CONFIGS["llama-gqa-untied"]()
    (tmp_path / "config.json").write_text(config.to_json_string())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        real, example = load_model(str(tmp_path), seq_len=8)
    meta, meta_example = load_model(str(tmp_path), seq_len=8, materialize=False)
    hw = load_hw_spec("pcm_1M")
    a = compile_model(real, example, hw, allocation="packed")
    b = compile_model(meta, meta_example, hw, allocation="packed")
    assert b.tiles_used == a.tiles_used and len(b.segments) == len(a.segments)
    assert b.estimate(batch=1, seq_len=8).energy_J == pytest.approx(a.estimate(batch=1, seq_len=8).energy_J)
