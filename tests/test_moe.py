"""Mixture of experts (Mixtral, built by transformers from a tiny config on the meta device): every expert on
tiles, one block per expert; only the routed top-k per token priced; simulation, calibration and HWA refused in
one line; the command line end to end (issue 14, item 4; docs/decoders.md). Expected values come from the
config alone."""
import json
import math
from dataclasses import replace

import pytest
import torch
import transformers as tf

from compiler import UserError, load_hw_spec
from compiler.backends.estimator.chip import price_on_chip
from compiler.backends.estimator.workload import DECODE, FORWARD, Phase, WorkloadTemplate
from compiler.frontend import export_model
from compiler.ir import Kind, PlacedGraph
from compiler.models import _from_config, model_info
from compiler.writers import mapping_json
from passes import allocate_tiles, partition
from reports.schema import MappingJson

CONFIG = dict(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=64, bos_token_id=1, eos_token_id=2, pad_token_id=0,
              num_local_experts=4, num_experts_per_tok=2, tie_word_embeddings=False)
EXAMPLE = {"input_ids": torch.randint(5, 96, (1, 8)), "attention_mask": torch.ones(1, 8, dtype=torch.long)}


@pytest.fixture(scope="module")
def mixtral():
    """(config, meta model, exported program): exported once for the module."""
    config = tf.MixtralConfig(**CONFIG)
    model = _from_config(config, "causal-lm", 2, materialize=False)
    model.eval()
    model.config.use_cache = False
    return config, model, export_model(model, EXAMPLE)


def _place(mixtral, allocation="packed", tile=512) -> PlacedGraph:
    _, model, exported = mixtral
    hw = load_hw_spec("pcm_1M", overrides={"tile.rows": tile, "tile.cols": tile, "tile.max_chips": 64})
    info = replace(model_info(model), name="tiny-mixtral", task="causal-lm", weights="none")
    placed = PlacedGraph(exported=exported, model=model, hw=hw, model_info=info, example=EXAMPLE)
    partition(placed)
    return allocate_tiles(placed, allocation)


def _expected_blocks(config) -> list[tuple[int, int]]:
    """(in, out) of every analog weight block the config implies, unfused: q, k, v, o, the router, each expert's
    gate_up and down (E of each per layer), the untied LM head."""
    h, inter, e = config.hidden_size, config.intermediate_size, config.num_local_experts
    d = h // config.num_attention_heads
    q, kv = config.num_attention_heads * d, config.num_key_value_heads * d
    per_layer = [(h, q), (h, kv), (h, kv), (q, h), (h, e)] + [(h, 2 * inter)] * e + [(inter, h)] * e
    return per_layer * config.num_hidden_layers + [(h, config.vocab_size)]


def test_every_expert_on_tiles_one_block_each(mixtral):
    config = mixtral[0]
    e = config.num_local_experts
    expected = _expected_blocks(config)
    weights = sum(i * o for i, o in expected)
    for tile in (16, 24):  # naive: one tile per grid piece of every block, each expert's block split alone
        placed = _place(mixtral, "naive", tile)
        assert sorted((b.in_features, b.out_features) for b in placed.blocks.values()) == sorted(expected)
        assert placed.tiles_used == sum(math.ceil(i / tile) * math.ceil(o / tile) for i, o in expected)
        assert sum(s.weights for s in placed.segments) == weights == placed.analog_weights
    placed = _place(mixtral)  # packed on 512x512: every weight once, in the fewest tiles
    assert placed.analog_weights == weights and sum(s.weights for s in placed.segments) == weights
    assert placed.tiles_used == math.ceil(weights / 512 ** 2)
    stacked = [p for p in placed.analog_layers() if p.experts]
    assert len(stacked) == 2 * config.num_hidden_layers and all(p.experts == e for p in stacked)
    assert {p.weight.rsplit(".", 1)[1] for p in stacked} == {"gate_up_proj", "down_proj"}
    for p in stacked:
        blocks = placed.blocks_of(p.node)
        assert [b.expert for b in blocks] == list(range(e))
        assert {(b.out_features, b.in_features) for b in blocks} == {tuple(placed.model.get_parameter(p.weight).shape[1:])}
    # the router is a plain linear (analog); its top-k selection and the experts' combine digital
    routers = [p for p in placed.analog_layers() if p.module.endswith("mlp.gate")]
    assert len(routers) == config.num_hidden_layers and all(p.out_features == e for p in routers)
    kinds = {p.op: p.kind for p in placed.placements.values()}
    assert kinds["aten.topk.default"] is Kind.DIGITAL and kinds["aten.sum.dim_IntList"] is Kind.DIGITAL
    mapping = MappingJson.from_json(json.loads(json.dumps(mapping_json(placed))))  # the typed definition holds it
    assert mapping.analog_weights == weights
    assert sorted(layer.experts for layer in mapping.layers if layer.kind == "analog") == [0] * 11 + [e] * 4
    assert {t.segment for layer in mapping.layers for t in layer.tiles} == {s.id for s in placed.segments}
    assert all(sorted({t.expert for t in layer.tiles}) == list(range(e)) for layer in mapping.layers if layer.experts)


def test_only_the_routed_top_k_is_priced(mixtral):
    config = mixtral[0]
    e, k, h, inter = (config.num_local_experts, config.num_experts_per_tok, config.hidden_size,
                      config.intermediate_size)
    tile = 24  # gate_up 32x96: 2x4 pieces, down 48x32: 2x2 pieces (partial ones packed, sharing tiles)
    pieces = math.ceil(h / tile) * math.ceil(2 * inter / tile) + math.ceil(inter / tile) * math.ceil(h / tile)
    placed = _place(mixtral, "packed", tile)
    batch, seq = 2, 8
    tokens = batch * seq
    stages = price_on_chip(WorkloadTemplate(placed).instantiate(Phase(FORWARD, batch, seq)), placed.hw)
    experts = [s for s in stages if "experts." in s.name]
    assert len(experts) == 2 * e * config.num_hidden_layers
    assert all(s.vectors == tokens * k // e for s in experts)  # uniform routing: tokens x top_k / E each
    mvms = sum(s.counts["tile_mvms"] for s in experts)
    assert mvms == tokens * k * pieces * config.num_hidden_layers
    assert mvms == pytest.approx(k / e * (e * tokens * pieces * config.num_hidden_layers))  # not every expert
    # a decode step of one sequence: its k routed (token, expert) pairs per stacked layer, nothing more
    step = WorkloadTemplate(placed).instantiate(Phase(DECODE, 1, seq))
    routed = [w for w in step.analog if "experts." in w.name]
    assert sum(w.vectors for w in routed) == k * 2 * config.num_hidden_layers
    # the digital baseline reads the weights of the experts that get a token only: top_k of E per layer
    from compiler.backends.estimator.baseline import price_on_baseline
    from compiler.hw_spec import load_baseline_spec
    spec = load_baseline_spec("digital_int8")
    fetch = [price_on_baseline(w, spec, placed.hw).energy_by_component_J["weight_fetch"]
             for w in (step, WorkloadTemplate(placed).instantiate(Phase(FORWARD, batch, seq)))]
    weights = sum(i * o for i, o in _expected_blocks(config))
    idle = (e - k) * (h * 2 * inter + inter * h) * config.num_hidden_layers
    assert fetch[0] / fetch[1] == pytest.approx((weights - idle) / weights)
    cost = placed.estimate(batch=1, seq_len=seq, gen_len=4, sensitivity=False)
    assert cost.decode is not None and cost.decode.run.tokens_per_s > 0


def test_simulation_calibration_and_hwa_refused_in_one_line(mixtral):
    from compiler.training.hardware import HwaNoiseConfig, TrainingChip
    from passes import calibrate_ranges
    placed = _place(mixtral)
    for run in (lambda: placed.simulator(), lambda: calibrate_ranges(placed, {"input_ids": EXAMPLE["input_ids"]}),
                lambda: TrainingChip(placed, HwaNoiseConfig())):
        with pytest.raises(UserError, match="not supported for mixture-of-experts models yet") as err:
            run()
        assert "\n" not in str(err.value) and "experts.gate_up_proj" in str(err.value)


def test_command_line_maps_and_prices_a_config_only_mixtral(tmp_path, capsys):
    from compiler.cli import main
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text(tf.MixtralConfig(**CONFIG).to_json_string())
    out = tmp_path / "out"
    code = main([str(tmp_path / "model"), "--hw", "pcm_1M", "--out", str(out), "--seq-len", "16", "--gen-len", "4"])
    assert code == 0, capsys.readouterr().err
    mapping = json.loads((out / "mapping.json").read_text())
    weights = sum(i * o for i, o in _expected_blocks(tf.MixtralConfig(**CONFIG)))
    assert mapping["analog_weights"] == weights and mapping["weights"] == "none"
    assert sum(b.get("expert") is not None for b in mapping["blocks"]) == 2 * 4 * 2
    cost = json.loads((out / "cost.json").read_text())
    assert cost["totals"]["energy_J"] > 0 and cost["decode"] is not None
    # the prefill's analog MACs from the config: 16 tokens through attention's linears and the router, k routed
    # experts (gate_up, down) per token, the LM head on the last position only
    h, q, kv, e, inter, vocab, k = 32, 32, 16, 4, 48, 96, 2
    per_token = h * (q + 2 * kv) + q * h + h * e + k * (h * 2 * inter + inter * h)
    assert cost["counts"]["analog_macs"] == 16 * 2 * per_token + h * vocab
    assert (out / "report.html").stat().st_size > 0


def test_bundled_mixtral_8x7b_config_builds_on_meta_with_the_weights_it_implies():
    from compiler import load_model
    model, _ = load_model("mistralai/Mixtral-8x7B-v0.1", seq_len=16, materialize=False)
    c = model.config
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads, c.intermediate_size,
            c.num_local_experts, c.num_experts_per_tok, c.vocab_size, c.max_position_embeddings) == \
        (4096, 32, 32, 8, 14336, 8, 2, 32000, 32768)
    assert model.aimc_info.weights == "none" and all(p.is_meta for p in model.parameters())
    assert not c.tie_word_embeddings
    experts = model.model.layers[0].mlp.experts
    assert tuple(experts.gate_up_proj.shape) == (8, 2 * 14336, 4096) and tuple(experts.down_proj.shape) == (8, 4096, 14336)
    # analog weights: every linear and every expert (the embedding a digital gather, norms digital), from the
    # config, against the model's own weight-bearing parameters: 46.57B, 177,656 tiles of 512x512 at least
    implied = sum(i * o for i, o in _expected_blocks(c))
    bearing = sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" not in n and "norm" not in n)
    assert implied == bearing == 46_571_454_464 == 177_656 * 512 ** 2
