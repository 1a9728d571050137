"""compiler.run prices PWM input pulses by the calibration statistics whenever the run calibrated (issue 26,
item 6), and at full length (the upper bound) when it did not."""
from __future__ import annotations

import pytest

from compiler.config import from_options
from compiler.runner import run


@pytest.fixture()
def tiny_bert(tmp_path) -> str:
    import transformers
    config = transformers.BertConfig(vocab_size=96, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=32)
    (tmp_path / "config.json").write_text(config.to_json_string())
    return str(tmp_path)


def test_pulses_are_priced_by_the_calibrated_input(tiny_bert) -> None:
    overrides = {"tile.rows": 32, "tile.cols": 32}
    calibrated = run(from_options(tiny_bert, "pcm_1M", overrides, calibration=8, seq_len=8), report=False).cost
    full = run(from_options(tiny_bert, "pcm_1M", overrides, seq_len=8), report=False).cost
    assert calibrated.pulses.mode == "calibrated_mean" and calibrated.pulses.segments_calibrated > 0
    assert full.pulses.mode == "full_length"
    assert 0 < calibrated.pulses.mean_fill < 1
