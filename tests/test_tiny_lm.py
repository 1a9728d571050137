"""The trained small causal LM (tests/fixtures/tiny_llama, compiler/training/tiny_lm.py): it loads as a checkpoint,
its predictions are far from flat on text it never saw, and noisy decoding runs on it."""
import json
import warnings
from pathlib import Path

import pytest
import torch

from compiler import compile_model, load_hw_spec, load_model, sentences
from compiler.evaluation.decoding import evaluate_decoding
from compiler.training import tiny_lm

CHECKPOINT = Path(__file__).resolve().parent.parent / tiny_lm.FIXTURE


@pytest.fixture(scope="module")
def tiny_llama():
    return load_model(str(CHECKPOINT), seq_len=32)


def test_committed_weights_are_the_recorded_ones():
    assert tiny_lm.weights_sha256(CHECKPOINT) == tiny_lm.FIXTURE_SHA256
    assert json.loads((CHECKPOINT / "training.json").read_text())["weights_sha256"] == tiny_lm.FIXTURE_SHA256


def test_loads_like_any_checkpoint(tiny_llama):
    model, example = tiny_llama
    info = model.aimc_info
    assert (info.task, info.weights, info.head) == ("causal-lm", "real", "real")
    assert type(model).__name__ == "LlamaForCausalLM"
    assert all(p.dtype == torch.float32 for p in model.parameters())   # float16 on disk, float32 in memory
    recorded = json.loads((CHECKPOINT / "training.json").read_text())["parameters"]
    assert sum(p.numel() for p in model.parameters()) == recorded
    # the tokenizer prepends <s> to every sequence, as in training
    assert (example["input_ids"][:, 0] == info.tokenizer.bos_token_id).all()
    assert info.tokenizer.decode(info.tokenizer("The loop ends here.")["input_ids"][1:]) == "The loop ends here."


def test_predictions_far_from_flat(tiny_llama):
    """On the 32 EVALUATION sentences (never trained on, everyday English unlike the training text) the trained
    model's perplexity is far below uniform (the vocabulary size) and its top-1 far above chance; the same
    architecture with random weights is nearly flat."""
    model, _ = tiny_llama
    tokenizer, vocab = model.aimc_info.tokenizer, model.config.vocab_size
    trained = tiny_lm.perplexity(model, tokenizer, list(sentences.EVALUATION))
    assert trained["uniform_perplexity"] == vocab == 2048
    assert trained["perplexity"] < vocab / 4 and trained["top1"] > 0.05   # measured: 336, 0.103
    torch.manual_seed(0)
    random = tiny_lm.build_model(vocab).eval()
    flat = tiny_lm.perplexity(random, tokenizer, list(sentences.EVALUATION))
    assert flat["perplexity"] > vocab / 2 and flat["top1"] < 0.02
    held = tiny_lm.heldout_texts()
    if held:  # this Python ships pydoc_data: held-out sentences of the training text's kind
        assert tiny_lm.perplexity(model, tokenizer, held[:64])["perplexity"] < vocab / 16   # measured: 52.0 on all 284


def test_noisy_decode_on_the_chip(tiny_llama):
    model, example = tiny_llama
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        placed = compile_model(model, example, load_hw_spec("pcm_1M"), allocation="naive", calibration=8)
    record = evaluate_decoding(placed, "1s", seeds=1, gen_tokens=4, prompts=2, prompt_tokens=6, max_context=16,
                               progress=False)
    assert "weights_note" not in record   # real weights: the figures are a language model's, not the machinery's
    row = record["results"][0]["mean"]
    assert 0.0 <= row["next_token_top1_agreement"] <= 1.0 and 0.0 <= row["gen_token_agreement"] <= 1.0
    assert row["next_token_kl_nats"] >= 0.0
    # measured 0.763 +- 0.012 at 1 s over 10 seeds (docs/decoders.md); random weights of this config: 0.43
    assert row["next_token_top1_agreement"] > 0.6
