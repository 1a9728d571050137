"""The energy / latency estimator: exact sums, scaling laws, hand counts, clear errors (the component model's
sweeps, area, leakage, uncertainty and validations: tests/test_cost_model.py)."""
import dataclasses
import json
import math

import pytest
import torch

from compiler import UserError, compile_model, load_hw_spec
from compiler.backends.estimator import estimate, peak_throughput
from compiler.backends.estimator.schedule import Stage, schedule
from compiler.hw_spec import SPEC_DIR, builtin_spec_names, load_baseline_spec

REL = 1e-12


def _tiny_bert(seq_len: int = 16):
    from transformers import BertConfig, BertForSequenceClassification
    config = BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=64)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = BertForSequenceClassification(config).eval()
    example = {"input_ids": torch.randint(0, 100, (2, seq_len)),
               "attention_mask": torch.ones(2, seq_len, dtype=torch.long)}
    return model, example


@pytest.fixture(scope="module")
def pcm_spec():
    return load_hw_spec("pcm_1M")


@pytest.fixture(scope="module")
def tiny_placed(pcm_spec):
    model, example = _tiny_bert()
    return compile_model(model, example, pcm_spec, allocation="packed")  # the figures below were set on packed


@pytest.fixture(scope="module")
def linear_placed(pcm_spec):
    torch.manual_seed(0)
    return compile_model(torch.nn.Linear(512, 512), (torch.randn(4, 512),), pcm_spec)


def _with_hw(placed, **overrides):
    return dataclasses.replace(placed, hw=load_hw_spec("pcm_1M", overrides=overrides))


def test_breakdowns_sum_to_totals(tiny_placed):
    cost = tiny_placed.estimate(batch=2, seq_len=16)
    assert cost.energy_J > 0
    assert math.fsum(cost.energy_by_component_J.values()) == pytest.approx(cost.energy_J, rel=REL)
    assert math.fsum(layer.energy_J for layer in cost.layers) == pytest.approx(cost.energy_J, rel=REL)
    for layer in cost.layers:
        assert math.fsum(layer.energy_by_component_J.values()) == pytest.approx(layer.energy_J, rel=REL)
    for component, joules in cost.energy_by_component_J.items():
        assert math.fsum(l.energy_by_component_J[component] for l in cost.layers) == pytest.approx(joules, rel=REL)
    data = json.loads(json.dumps(cost.to_json(), allow_nan=False))
    assert math.fsum(l["energy_J"] for l in data["layers"]) == pytest.approx(data["totals"]["energy_J"], rel=REL)
    base = data["baseline"]
    assert math.fsum(base["energy_by_component_J"].values()) == pytest.approx(base["energy_J"], rel=REL)
    names = [l["name"] for l in data["layers"]]
    assert names[-3:] == ["bert.pooler", "classifier", "(static power)"]


def test_static_power_is_its_own_layer_and_component(tiny_placed):
    cost = estimate(_with_hw(tiny_placed, **{"static.logic_mW_per_mm2": 50.0}), batch=1, seq_len=16)
    assert cost.static_power_W > 0
    assert cost.energy_by_component_J["static"] == pytest.approx(cost.static_power_W * cost.latency_s, rel=REL)
    assert cost.layers[-1].name == "(static power)"
    assert math.fsum(l.energy_J for l in cost.layers) == pytest.approx(cost.energy_J, rel=REL)
    none = estimate(_with_hw(tiny_placed, **{"static.logic_mW_per_mm2": 0.0, "static.sram_pW_per_bit": 0.0}),
                    batch=1, seq_len=16)
    assert none.energy_by_component_J["static"] == 0 and none.layers[-1].name == "classifier"


def test_energy_is_linear_in_batch(tiny_placed):
    """The dynamic energy is affine in batch (the leakage goes with the schedule's idle gaps: power gating)."""
    e1, e2, e3 = (c.energy_J - c.static_energy_J for c in (tiny_placed.estimate(batch=b, seq_len=16)
                                                           for b in (1, 2, 3)))
    assert e3 - e2 == pytest.approx(e2 - e1, rel=1e-9)       # affine in batch ...
    # ... through ~0: only the position-embedding lookup and mask set-up are shared by a batch
    assert e2 == pytest.approx(2 * e1, rel=1e-2)


def test_energy_at_least_linear_in_seq_len_attention_quadratic(tiny_placed):
    short, long = (tiny_placed.estimate(batch=1, seq_len=s) for s in (16, 32))
    assert long.energy_J >= 2 * short.energy_J
    assert long.counts["attention_macs"] == 4 * short.counts["attention_macs"]
    assert long.counts["softmax_elements"] == 4 * short.counts["softmax_elements"]
    # every token takes one MVM per segment, except in the pooler and the classifier (one token per sequence)
    assert 2 * short.counts["tile_mvms"] - long.counts["tile_mvms"] == 2
    assert long.energy_by_component_J["attention_int6"] > 3 * short.energy_by_component_J["attention_int6"]


def test_more_adc_bits_cost_more_adc_energy(tiny_placed):
    base = estimate(_with_hw(tiny_placed), batch=1, seq_len=16)
    more = estimate(_with_hw(tiny_placed, **{"adc.bits": 10}), batch=1, seq_len=16)
    # the oscillator counts for max(window, full-scale count): 2^10 x 300 ps = 307.2 ns outlasts the 127 ns window
    cco = tiny_placed.hw.adc.cco
    per = {b: cco.oscillator_uW * 1e-6 * max(127e-9, 2 ** b * 300e-12) + b * cco.readout_fJ_per_bit * 1e-15
           for b in (8, 10)}
    assert more.energy_by_component_J["adc"] == pytest.approx(
        base.energy_by_component_J["adc"] * per[10] / per[8], rel=1e-9)
    assert more.energy_J > base.energy_J
    assert more.latency_s >= base.latency_s  # 2^10 x 300 ps outlasts the 127 ns input window


def test_one_linear_layer_matches_hand_count(linear_placed):
    """nn.Linear(512, 512): one full 512x512 tile, one MVM per input vector."""
    cost = linear_placed.estimate(batch=8, seq_len=1)
    assert not cost.has_sequence_dim and cost.to_json()["sweep"]["axis"] == "batch"
    scale = (14 / 45) * (0.8 / 0.9) ** 2                 # Horowitz 45 nm -> 14 nm, 0.8 V
    cell = 0.25 * 25e-6 * 0.3 ** 2 * 127e-9            # mean conductance x V_read^2 x 127 ns PWM window
    bitline = 512 * 0.4e-15 * 0.3 ** 2                 # a full-height bit line charged to V_read, per column
    row = 512 * 1.2e-15 * 0.8 ** 2 + 127 * 0.03e-12 * scale  # the input line, and a PWM compare per cycle
    parts = cost.energy_by_component_J
    assert parts["tile_array"] == pytest.approx(8 * (512 * 512 * cell + 512 * bitline), rel=1e-9)
    assert parts["dac"] == pytest.approx(8 * 512 * row, rel=1e-9)
    cco = linear_placed.hw.adc.cco                     # oscillator power x the 127 ns window + counter readout
    assert parts["adc"] == pytest.approx(8 * 512 * (cco.oscillator_uW * 1e-6 * 127e-9 + 8 * cco.readout_fJ_per_bit
                                                    * 1e-15), rel=1e-9)
    assert parts["local_digital"] == pytest.approx(8 * 512 * (1.1 + 0.4) * 1e-12 * scale, rel=1e-9)
    assert parts["control"] == pytest.approx(8 * 1024 * 5e-15 * 0.8 ** 2 * 127, rel=1e-9)  # lanes x cycles
    hop_mm = math.sqrt(512 * 512 * 2.0) / 1e3            # the side of the tile's PCM array
    assert parts["network"] == pytest.approx(8 * 1024 * 8 * 0.1e-12 * hop_mm, rel=1e-9)
    assert cost.counts["tile_mvms"] == 8 and cost.counts["analog_macs"] == 8 * 512 * 512
    assert cost.period_s == pytest.approx(8 * 127e-9, rel=1e-9)     # the tile is the bottleneck
    assert cost.throughput_inferences_per_s == pytest.approx(8 / cost.period_s, rel=REL)
    assert cost.tile_utilization == {0: pytest.approx(1.0)}


def test_latency_bounds_and_utilization(tiny_placed):
    cost = tiny_placed.estimate(batch=2, seq_len=16)
    assert cost.latency_s >= cost.period_s > 0
    assert all(0 < u <= 1 + 1e-12 for u in cost.tile_utilization.values())
    assert cost.critical_path[0] == "embedding" and cost.critical_path[-1] == "classifier"
    assert cost.tops == pytest.approx(cost.ops / cost.period_s / 1e12, rel=REL)
    assert cost.tops_per_w == pytest.approx(cost.ops / cost.energy_J / 1e12, rel=REL)


def _stage(sid, vectors, t, deps=(), barrier=()):
    return Stage(id=sid, name=sid, layer="x", vectors=vectors, vector_time_s=t, deps=deps, energy_J={},
                 barrier_deps=barrier)


def test_schedule_pipelines_streams_and_waits_at_barriers():
    streamed = schedule([_stage("a", 10, 1.0), _stage("b", 10, 2.0, deps=("a",))])
    assert streamed.latency_s == 21.0      # b starts after a's first vector: 1 + 10 x 2
    assert streamed.critical_path == ["a", "b"]
    blocked = schedule([_stage("a", 10, 1.0), _stage("b", 10, 2.0, deps=("a",), barrier=("a",))])
    assert blocked.latency_s == 30.0       # b needs all of a: 10 + 10 x 2
    slow_producer = schedule([_stage("a", 10, 3.0), _stage("b", 10, 1.0, deps=("a",))])
    assert slow_producer.latency_s == 31.0  # b waits for a's last vector: 30 + 1
    assert slow_producer.period_s == 0.0 and slow_producer.bottleneck is None


def test_hermes_peak_time_comes_from_its_published_clock_and_converter():
    """127 PWM levels at 1 GHz hide the 76.8 ns CCO conversion (300 ps/LSB, JSSC 2022): 66.05 TOPS against the
    measured 63.1 (Le Gallo et al. 2023); the energy prediction and its error: tests/test_cost_model.py."""
    peak = peak_throughput(load_hw_spec("hermes"))
    assert peak.mvm_time_s == pytest.approx(127e-9, rel=1e-12)
    assert peak.tops == pytest.approx(64 * 2 * 256 * 256 / 127e-9 / 1e12, rel=1e-12)
    assert peak.tops == pytest.approx(63.1, rel=0.05)
    assert math.fsum(peak.energy_by_component_J.values()) == pytest.approx(peak.mvm_energy_J, rel=REL)


@pytest.mark.parametrize("field", ["adc.cco.oscillator_uW", "energy.digital.fp16_mult_pJ",
                                   "latency.pwm_step_ns", "adc.bits", "area.weight_cell_um2",
                                   "static.sram_pW_per_bit", "adc.architecture"])
def test_missing_action_cost_is_a_clear_error(tiny_placed, field):
    with pytest.raises(UserError, match=field.replace(".", r"\.")):
        estimate(_with_hw(tiny_placed, **{field: None}), batch=1, seq_len=16)


def test_spec_without_cost_sections_loads_but_cannot_be_costed(tiny_placed, tmp_path):
    text = (SPEC_DIR / "pcm_1M.yaml").read_text().split("# --- cost model")[0]
    path = tmp_path / "no_costs.yaml"
    path.write_text(text)
    hw = load_hw_spec(path)
    assert hw.energy is None and hw.latency is None
    with pytest.raises(UserError, match=rf"{path}.*(dac|adc|latency|energy|area|static)\."):
        estimate(dataclasses.replace(tiny_placed, hw=hw), batch=1, seq_len=16)


def test_bad_batch_or_seq_len_is_a_user_error(tiny_placed):
    with pytest.raises(UserError, match="batch"):
        tiny_placed.estimate(batch=0, seq_len=16)
    with pytest.raises(UserError, match="64 positions"):
        tiny_placed.estimate(batch=1, seq_len=65)


def test_digital_baseline_streams_weights_it_cannot_hold(tiny_placed):
    spec = dataclasses.replace(load_baseline_spec("digital_int8"), area_mm2=100.0)  # one die: the same uncore
    on_chip = estimate(tiny_placed, batch=1, seq_len=16, baseline=spec).baseline
    assert not on_chip.weights_in_dram                     # 0.1 MB of weights fit the 128 MiB weight memory
    dram = estimate(tiny_placed, batch=1, seq_len=16,
                    baseline=dataclasses.replace(spec, weight_buffer_MiB=0.0)).baseline
    weights = sum(b.in_features * b.out_features for b in tiny_placed.blocks.values())
    assert dram.weights_in_dram
    assert dram.energy_by_component_J["weight_fetch"] == pytest.approx(weights * 31.2e-12, rel=1e-9)
    assert dram.energy_J > on_chip.energy_J


def test_baseline_spec_is_not_a_chip_spec():
    assert "digital_int8" not in builtin_spec_names()
    with pytest.raises(UserError, match="digital baseline spec"):
        load_hw_spec("digital_int8")
    assert load_baseline_spec("digital_int8").array_rows == 128


class _WeightThroughMatmul(torch.nn.Module):
    """A weight used through matmul, not linear: partition leaves it digital."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(32, 32)
        self.table = torch.nn.Parameter(torch.randn(32, 16))

    def forward(self, x):
        return self.proj(x) @ self.table


def test_weight_product_left_digital_is_priced_per_mac(pcm_spec):
    placed = compile_model(_WeightThroughMatmul(), (torch.randn(4, 32),), pcm_spec)
    cost = placed.estimate(batch=4, seq_len=1)
    assert cost.counts["digital_matmul_macs"] == 4 * 32 * 16
    assert cost.ops == 2 * (4 * 32 * 32 + 4 * 32 * 16)
    per_mac = cost.action_energies_J["digital_mult"] + cost.action_energies_J["digital_add"]
    assert cost.energy_by_component_J["digital_matmul"] == pytest.approx(4 * 32 * 16 * per_mac, rel=1e-9)


def test_stages_name_mapping_blocks_and_sum_to_dynamic_energy(pcm_1m):
    import math
    from torch import nn
    import torch
    from compiler import compile_model
    model = nn.Sequential(nn.Linear(64, 96), nn.ReLU(), nn.Linear(96, 32))
    placed = compile_model(model, (torch.randn(4, 64),), pcm_1m)
    report = placed.estimate(batch=2, seq_len=1).to_json()
    names = {s["name"] for s in report["stages"]}
    assert set(placed.blocks) <= names
    static = sum(layer["energy_J"] for layer in report["layers"] if layer["name"] == "(static power)")
    assert math.isclose(math.fsum(s["energy_J"] for s in report["stages"]) + static, report["totals"]["energy_J"],
                        rel_tol=1e-12)
    assert all(s["busy_s"] >= 0 for s in report["stages"])


def test_a_kept_schedule_is_the_one_the_stages_would_get():
    """schedule() hands back a kept Schedule for stages of the same timing: it must be what scheduling them gives,
    and a change to any time must not be answered from what was kept."""
    from compiler.backends.estimator import schedule as sched
    from compiler.backends.estimator.schedule import ANALOG, Busy, StageId, tile

    def stages(vt: float, seconds: tuple[float, float]) -> list[Stage]:
        a, b = StageId(ANALOG, "a"), StageId(ANALOG, "b")
        busy = Busy((tile(0), tile(1), tile(2)), (0, 1, 1), seconds, serial=-100)
        return [Stage(a, "a", "l0", 4, vt, (), {}, busy), Stage(b, "b", "l1", 4, 2e-9, (a,), {}, {tile(3): 3e-9})]

    first = schedule(stages(1e-9, (5e-9, 1e-9)))
    assert schedule(stages(1e-9, (5e-9, 1e-9))) is first
    fresh = sched._schedule(stages(1e-9, (5e-9, 1e-9)))
    assert (first.latency_s, first.period_s, first.bottleneck, first.finish_s, first.resource_busy_s) == \
        (fresh.latency_s, fresh.period_s, fresh.bottleneck, fresh.finish_s, fresh.resource_busy_s)
    slower = schedule(stages(3e-9, (5e-9, 1e-9)))
    assert slower is not first and slower.critical_path_s > first.critical_path_s
    busier = schedule(stages(1e-9, (5e-9, 9e-9)))
    assert busier.period_s == 9e-9 and busier.bottleneck == tile(1)
