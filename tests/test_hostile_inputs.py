"""Issue 25, inputs: config.json dimensions bounded before anything is built (cases 10, 12), one sequence-length
check for compile_model and estimate (case 13), transformers' bars following --quiet (case 15), and names
with escape sequences shown escaped on the terminal (case 5)."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch

from compiler import UserError, compile_model, load_hw_spec, load_model, progress
from compiler.cli import main

BERT = {"model_type": "bert", "vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
        "intermediate_size": 64, "max_position_embeddings": 64}


def _config_only(tmp_path: Path, **changes) -> Path:
    folder = tmp_path / "ckpt"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps({**BERT, **changes}))
    return folder


def _cli(*argv) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main([str(a) for a in argv])
    return code, err.getvalue()


# --- cases 10 and 12: config.json-only checkpoints ---------------------------------------------------------

@pytest.mark.parametrize("changes, needle", [
    ({"vocab_size": 0}, "vocab_size 0 must be an integer from 1"),
    ({"num_attention_heads": 0}, "num_attention_heads 0 must be an integer from 1"),
    ({"hidden_size": -8}, "hidden_size -8 must be an integer from 1"),
    ({"hidden_size": 130, "num_attention_heads": 4}, "hidden_size 130 is not a multiple of num_attention_heads 4"),
    ({"hidden_size": 10 ** 12}, "hidden_size 1000000000000 must be an integer"),
    ({"num_hidden_layers": 2 ** 40}, "num_hidden_layers"),
    ({"intermediate_size": 1.5}, "intermediate_size"),
    ({"max_position_embeddings": 1}, "max_position_embeddings 1"),
    ({"pad_token_id": 500}, "pad_token_id 500 is outside the vocabulary"),
])
@pytest.mark.parametrize("materialize", [True, False])
def test_config_dimensions_are_one_line_before_building(tmp_path, changes, needle, materialize):
    with pytest.raises(UserError, match=needle.replace("(", r"\(")) as caught:
        load_model(str(_config_only(tmp_path, **changes)), seq_len=8, materialize=materialize)
    assert "config.json" in str(caught.value) and "\n" not in str(caught.value)


def test_a_checkpoint_with_weights_is_checked_before_its_weights_are_allocated(tmp_path):
    from transformers import BertConfig, BertModel
    folder = tmp_path / "real"
    BertModel(BertConfig(**{k: v for k, v in BERT.items() if k != "model_type"})).save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "hidden_size": 2 ** 24, "num_attention_heads": 1}))
    with pytest.raises(UserError, match="hidden_size 16777216 must be an integer"):
        load_model(str(folder), task="feature-extraction", seq_len=8)


def test_a_tiny_vocabulary_still_loads(tmp_path):
    model, example = load_model(str(_config_only(tmp_path, vocab_size=4)), seq_len=8)
    assert int(example["input_ids"].max()) < 4


def test_config_cases_through_the_cli(tmp_path):
    cases = (({"vocab_size": 4}, None), ({"num_attention_heads": 0}, "num_attention_heads 0"),
             ({"hidden_size": -8}, "hidden_size -8"),
             ({"hidden_size": 130, "num_attention_heads": 4}, "not a multiple"))
    for i, (changes, needle) in enumerate(cases):
        code, err = _cli(_config_only(tmp_path, **changes), "--hw", "pcm_1M", "--seq-len", "8", "--out",
                         tmp_path / f"out{i}")
        if needle is None:
            assert code == 0, err
        else:
            assert code == 2 and "Traceback" not in err and needle in err.strip().splitlines()[-1], err
            assert "choose another --task" not in err


# --- case 13: compile_model refuses the lengths estimate() refuses -----------------------------------------

@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    folder = _config_only(tmp_path_factory.mktemp("bert"))
    return load_model(str(folder), seq_len=8, materialize=False)


@pytest.mark.parametrize("seq_len", [0, -3, 10 ** 6, 65, 2.5, True, "8"])
def test_compile_model_refuses_a_sequence_length_estimate_refuses(bert, seq_len):
    model, example = bert
    with pytest.raises(UserError, match="seq_len") as api:
        compile_model(model, example, load_hw_spec("pcm_1M"), allocation="packed", seq_len=seq_len)
    assert "\n" not in str(api.value)


def test_compile_model_and_estimate_agree_on_the_limit(bert):
    model, example = bert
    placed = compile_model(model, example, load_hw_spec("pcm_1M"), seq_len=64)  # the last position: fine
    assert placed.estimate(seq_len=64).latency_s > 0
    with pytest.raises(UserError, match="65 exceeds the 64 positions"):
        placed.estimate(seq_len=65)
    with pytest.raises(UserError, match="65 exceeds the 64 positions"):
        compile_model(model, example, load_hw_spec("pcm_1M"), seq_len=65)


def test_the_default_length_fits_a_short_model(bert):
    model, example = bert
    placed = compile_model(model, example, load_hw_spec("pcm_1M"))  # 128 by default: 64 for this model
    assert placed.strategies and any(s["latency_s"] for s in placed.strategies)


def test_a_module_without_a_config_has_no_position_limit():
    placed = compile_model(torch.nn.Linear(64, 64), (torch.randn(2, 64),), load_hw_spec("pcm_1M"), seq_len=10 ** 4)
    assert placed.tiles_used == 1
    with pytest.raises(UserError, match="seq_len must be a positive integer"):
        compile_model(torch.nn.Linear(64, 64), (torch.randn(2, 64),), load_hw_spec("pcm_1M"), seq_len=0)


# --- case 15: transformers' "Writing model shards" follows the progress level ------------------------------

def test_saving_a_checkpoint_draws_no_bar_off_a_terminal_or_quiet(tmp_path):
    from compiler.training.finetune import save_finetuned
    model, _ = load_model(str(_config_only(tmp_path)), seq_len=8)
    for level in (progress.QUIET, progress.NORMAL):
        progress.set_level(level)
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                save_finetuned(model, tmp_path / f"saved{level}")
        finally:
            progress.set_level(progress.NORMAL)
        assert "Writing model shards" not in err.getvalue() and "\r" not in err.getvalue(), err.getvalue()
        assert (tmp_path / f"saved{level}" / "config.json").is_file()


# --- case 5: names with escape sequences reach the terminal escaped ----------------------------------------

def test_escape_sequences_in_a_spec_name_and_a_model_folder_are_shown_escaped(tmp_path):
    spec = tmp_path / "spec.yaml"
    from compiler.hw_spec import SPEC_DIR
    spec.write_text((SPEC_DIR / "pcm_1M.yaml").read_text().replace("name: pcm_1M",
                                                                   'name: "pcm\\e[2J\\e]0;owned\\a\\nfake: line"', 1))
    ckpt = _config_only(tmp_path)
    evil = tmp_path / "m\x1b[31mred\rX"
    ckpt.rename(evil)
    code, err = _cli(evil, "--hw", spec, "--seq-len", "8", "--out", tmp_path / "out")
    assert code == 0, err
    assert "\x1b" not in err and "\x07" not in err and "\r" not in err, repr(err)
    assert not any(line.startswith("fake: line") for line in err.splitlines()), err
    assert "pcm\\x1b[2J\\x1b]0;owned\\x07\\nfake: line" in err and "m\\x1b[31mred\\rX" in err


@pytest.mark.parametrize("field", ["vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                   "intermediate_size", "max_position_embeddings", "pad_token_id"])
@pytest.mark.parametrize("value", [-1, 0, 1, 3, 10 ** 12, 2 ** 63, 1.5, True, "x", [4]])
def test_every_config_dimension_at_its_extremes_loads_or_is_one_line(tmp_path, field, value):
    try:
        model, example = load_model(str(_config_only(tmp_path, **{field: value})), seq_len=8, materialize=False)
    except UserError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 600, exc
    else:
        assert model.aimc_info.weights == "none" and example["input_ids"].shape == (1, 8)
