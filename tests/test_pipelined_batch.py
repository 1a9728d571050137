"""Batched decoding pipelines (issue 24, item 4): the sequences of a batch are independent, so they flow through
the weight-stationary pipeline one behind the other; a sequence's attention waits only for its own keys."""
import warnings

import pytest
import transformers as tf

from compiler import compile_model, load_hw_spec, load_model
from compiler.backends.estimator.decode import DecodeModel
from compiler.backends.estimator.pricing import Chip
from compiler.backends.estimator.schedule import Stage, independent_sequences, schedule
from compiler.backends.estimator.workload import DECODE, FORWARD, Phase, WorkloadTemplate

# 512-wide, so that every projection fills its own 512x512 tiles: 4 layers x 4 blocks + the head = 17 stages
DEEP = dict(vocab_size=512, hidden_size=512, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=256, bos_token_id=1, eos_token_id=2, pad_token_id=0,
            tie_word_embeddings=False)


@pytest.fixture(scope="module")
def decoder(tmp_path_factory):
    path = tmp_path_factory.mktemp("deep")
    (path / "config.json").write_text(tf.LlamaConfig(**DEEP).to_json_string())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, example = load_model(str(path), seq_len=8, materialize=False)
    hw = load_hw_spec("pcm_1M")
    placed = compile_model(model, example, hw, allocation="packed")
    return DecodeModel(WorkloadTemplate(placed), Chip.of(placed, {}), None)


def test_batch_8_decode_step_costs_less_than_1_6x_batch_1(decoder):
    analog = [w for w in decoder.template.instantiate(Phase(FORWARD, 1, 1)).analog]
    assert len(analog) >= 8  # a pipeline of at least 8 weight stages
    one = decoder.price(Phase(DECODE, 1, 64), decoder.placement(decoder.kv.bytes(64, 1)), "")
    eight = decoder.price(Phase(DECODE, 8, 64), decoder.placement(decoder.kv.bytes(64, 8)), "")
    assert one.kv_location == eight.kv_location == "sram"
    assert eight.latency_s < 1.6 * one.latency_s
    # and not below what a pipeline can do: 7 more sequences behind the first, each through the slowest tile
    tile_s = min(s.vector_time_s for s in decoder._analog[1])
    assert eight.latency_s >= one.latency_s + 7 * tile_s * 0.999


def test_a_barrier_binds_within_a_sequence_only():
    """K (4 vectors = 2 sequences x 2) then QK^T with K as barrier: grouped, the first sequence's scores start
    after its own keys, not all of them."""
    def stages():
        k = Stage("k", "k", "l", vectors=4, vector_time_s=1.0, deps=(), energy_J={})
        qk = Stage("qk", "qk", "l", vectors=4, vector_time_s=1.0, deps=("k",), energy_J={}, barrier_deps=("k",))
        return [k, qk]
    lock_step = schedule(stages())
    assert lock_step.critical_path_s == 8.0      # all 4 keys, then 4 score rows
    piped = schedule(independent_sequences(stages(), 2))
    assert piped.critical_path_s == 6.0          # sequence 2's keys (t=4), then its 2 rows; sequence 1's at t=2..4
