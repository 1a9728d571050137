"""Noisy decoding of causal LMs (compiler/evaluation/decoding.py): next-token fidelity, greedy generation through
the simulated chip with its KV cache; the accuracy.json record and the report (tiny GPT-2 / Llama configs with
random weights, a few tokens)."""
import json
import math

import pytest
import torch
import transformers as tf

from compiler import compile_model, load_hw_spec, sentences
from compiler.evaluation.decoding import (CachedBlock, evaluate_decoding, fp_greedy, generate, generation_agreement,
                                          greedy, kv_cache, next_token_fidelity)
from compiler.models import ModelInfo

IDEAL = {"dac.bits": None, "adc.bits": None, "output_noise": 0.0, "device.programming_noise": False,
         "device.drift": False, "device.read_noise": False, "digital.attention_bits": None}
SMALL_TILES = {"tile.rows": 256, "tile.cols": 256}
VOCAB = 128
NAMES = {"input_ids", "attention_mask"}


def _tiny(kind: str):
    """A tiny causal LM with random weights and example inputs; untied heads, since a tiny random GPT-2 with a tied
    head greedily repeats one token, which would make generation tests weak."""
    torch.manual_seed(0)
    if kind == "gpt2":
        config = tf.GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=64, bos_token_id=0,
                               eos_token_id=0, initializer_range=0.1, tie_word_embeddings=False)
    else:
        config = tf.LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                tie_word_embeddings=False, bos_token_id=0, eos_token_id=0, pad_token_id=0,
                                initializer_range=0.1)
    model = tf.AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()
    model.config.use_cache = False
    model.aimc_info = ModelInfo(f"tiny-{kind}", "causal-lm", "random", "test config")
    ids = torch.randint(5, VOCAB, (2, 12), generator=torch.Generator().manual_seed(1))
    return model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def tiny(request):
    model, example = _tiny(request.param)
    placed = compile_model(model, example, load_hw_spec("pcm_1M", overrides=SMALL_TILES), allocation="naive",
                           calibration=2)
    return model, example, placed


def _spec(**overrides):
    return load_hw_spec("pcm_1M", overrides={**SMALL_TILES, **overrides})


def _step_logits(chip, ids: torch.Tensor, cached: bool) -> torch.Tensor:
    """The last position's logits after each prefix of ids (1, n): with the chip's KV cache, or each prefix run
    whole (fresh output noise for every position)."""
    rows = []
    with torch.no_grad():
        if cached:
            with kv_cache(chip) as blocks:
                for n in range(1, ids.shape[1] + 1):
                    rows.append(chip(input_ids=ids[:, :n], attention_mask=torch.ones(1, n, dtype=torch.long)).logits[0, -1])
                assert all(b.computed == ids.shape[1] for b in blocks)  # every MVM ran once per token
        else:
            for n in range(1, ids.shape[1] + 1):
                rows.append(chip(input_ids=ids[:, :n], attention_mask=torch.ones(1, n, dtype=torch.long)).logits[0, -1])
    return torch.stack(rows)


def test_ideal_chip_decodes_like_fp(tiny):
    model, example, placed = tiny
    prompt = example["input_ids"][:1, :5]
    fp = fp_greedy(model, prompt, 8)
    with torch.no_grad():
        assert fp == greedy(model, prompt, 8, NAMES)   # transformers' own cache and the whole prefix agree
    assert len(set(fp)) > 1                            # a real sequence, not one token repeated
    chip = placed.simulator(seed=0, hw=_spec(**IDEAL))
    assert generate(chip, placed, prompt, 8, cache=True) == fp
    record = evaluate_decoding(placed, "1s", seeds=1, gen_tokens=6, prompts=2, prompt_tokens=4, max_context=10,
                               progress=False, simulator_options={"hw": _spec(**IDEAL)})
    mean = record["results"][0]["mean"]
    assert mean["next_token_top1_agreement"] == 1.0
    assert abs(mean["next_token_kl_nats"]) < 1e-6
    assert mean["gen_prefix_match_tokens"] == 6 and mean["gen_token_agreement"] == 1.0
    # the evaluation sentences' count of random-id sequences (no tokenizer), each cut to max_context positions
    assert record["sequences"] == len(sentences.EVALUATION) and record["tokens"] == 10 * record["sequences"]
    assert record["prompts"] == 2 and [len(g) for g in record["fp_generation"]] == [6, 6]


def test_kv_cache_equals_the_whole_prefix_when_noise_is_fixed_per_chip(tiny):
    """Programming noise, drift, read noise and the converters are fixed per chip instance (or deterministic), so
    the cache changes nothing; output noise, drawn per MVM, makes recomputing differ, and so do the integer
    attention's dynamic scales (they span the sequence: a past token recomputed sees later tokens' max|K|)."""
    _, example, placed = tiny
    ids = example["input_ids"][:1, :10]
    static = placed.simulator(t_inference=3600.0, seed=1, hw=_spec(output_noise=0.0, **{"digital.attention_bits": None}))
    cached, whole = _step_logits(static, ids, True), _step_logits(static, ids, False)
    assert torch.allclose(cached, whole, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(cached, placed.model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0],
                              rtol=1e-3, atol=1e-3)   # a noisy chip, not the FP model
    integer = placed.simulator(t_inference=3600.0, seed=1, hw=_spec(output_noise=0.0))
    assert not torch.allclose(_step_logits(integer, ids, True), _step_logits(integer, ids, False), rtol=1e-3, atol=1e-3)
    noisy = placed.simulator(t_inference=3600.0, seed=1, hw=_spec())
    fp = placed.model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0].detach()
    cached, whole = _step_logits(noisy, ids, True), _step_logits(noisy, ids, False)
    assert not torch.allclose(cached, whole, rtol=1e-3, atol=1e-3)
    # both are the same chip, about as far from FP: the cache keeps noise, it does not remove it
    err_cached, err_whole = float((cached - fp).norm() / fp.norm()), float((whole - fp).norm() / fp.norm())
    assert 0 < err_cached < 3 * err_whole and 0 < err_whole < 3 * err_cached


def test_noise_gives_kl_that_grows_with_noise_and_drift(tiny):
    _, _, placed = tiny
    common = dict(gen_tokens=4, prompts=2, prompt_tokens=4, max_context=12, progress=False)
    kl = {}
    for scale in (0.02, 0.2):
        record = evaluate_decoding(placed, "1s", seeds=2, simulator_options={"hw": _spec(output_noise=scale)}, **common)
        kl[scale] = record["results"][0]["mean"]["next_token_kl_nats"]
    assert 0 < kl[0.02] < kl[0.2]
    drift = evaluate_decoding(placed, "1s,1y", seeds=2, **common)
    first, last = (row["mean"]["next_token_kl_nats"] for row in drift["results"])
    assert 0 < first < last
    assert len(drift["results"][0]["per_seed"]["gen_token_agreement"]) == 2


def test_metrics_by_hand():
    assert generation_agreement([1, 2, 3, 4], [1, 2, 9, 4]) == (2, 0.75)
    assert generation_agreement([1, 2, 3], [1, 2, 3]) == (3, 1.0)
    assert generation_agreement([5, 2], [1, 2]) == (0, 0.5)
    fp_logits, chip_logits = [[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]], [[1.0, 1.5, -1.0], [0.0, 1.0, 0.5]]

    def log_softmax(row):
        norm = math.log(sum(math.exp(v) for v in row))
        return [v - norm for v in row]
    kl = [sum(math.exp(f) * (f - c) for f, c in zip(log_softmax(a), log_softmax(b)))
          for a, b in zip(fp_logits, chip_logits)]
    scores = next_token_fidelity([torch.log_softmax(torch.tensor(fp_logits), -1)],
                                 [torch.log_softmax(torch.tensor(chip_logits), -1)])
    assert scores["next_token_top1_agreement"] == 0.5
    assert scores["next_token_kl_nats"] == pytest.approx(sum(kl) / 2, rel=1e-6)


def test_cached_block_refuses_a_shorter_prefix():
    block = torch.nn.Linear(3, 2)
    block.name, block.in_features, block.out_features = "b", 3, 2
    cached = CachedBlock(block)
    x = torch.randn(1, 4, 3)
    assert torch.allclose(cached(x), block(x))
    assert cached(x[:, :4]).shape == (1, 4, 2) and cached.computed == 4
    with pytest.raises(RuntimeError, match="reset"):
        cached(x[:, :2])


def test_gpt2_cli_writes_the_decoding_record_and_report(tmp_path, capsys):
    """A GPT-2 checkpoint folder (config only, random weights) through the command line, a short run: accuracy.json's
    decoding record, the terminal's decoding lines and the report's subsection. A 2-layer config, not the bundled
    124M gpt2: these are checks of the CLI's decoding record, terminal and report, which do not depend on the size
    (programming and simulating gpt2's 124M weights made this one test about a minute of the suite); gpt2 by
    name is loaded and mapped in test_decode_cost and test_allocation."""
    from compiler.cli import main
    config = tf.GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=64)
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text(config.to_json_string())
    out = tmp_path / "gpt2"
    code = main([str(tmp_path / "ckpt"), "--hw", "pcm_1M", "--simulate", "--seeds", "1", "--drift-times", "1s", "--seq-len", "4",
                 "--calibration", "1", "--no-pt-opt", "--allocation", "naive", "--gen-tokens", "2", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    record = json.loads((out / "accuracy.json").read_text())["decoding"]
    assert record["gen_tokens"] == 2 and record["prompt_tokens"] == 4 and "RANDOM" in record["weights_note"]
    row = record["results"][0]
    assert row["label"] == "1s" and 0 <= row["mean"]["next_token_top1_agreement"] <= 1
    assert row["mean"]["next_token_kl_nats"] > 0
    assert [line for line in err.splitlines() if line.startswith("decoding: t=1s: next-token top-1")]
    html = (out / "report.html").read_text()
    assert 'id="decoding-table"' in html and "Noisy decoding" in html and "RANDOM weights: the decoding" in html
