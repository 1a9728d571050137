"""Physical decode latency (issue 24, item 3): fixed latencies a pipeline does not hide, link tiers, ranges, and a
decode step's energy breakdown. Expected figures computed here from the spec, not read back from the estimator."""
import math
import warnings

import pytest
import torch
import transformers as tf
from torch import nn

from compiler import compile_model, load_hw_spec, load_model
from compiler.backends.estimator import estimate
from compiler.backends.estimator.chip import fixed_latencies

SMALL = dict(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64, bos_token_id=1, eos_token_id=2, pad_token_id=0,
             tie_word_embeddings=False)


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    path = tmp_path_factory.mktemp("llama")
    (path / "config.json").write_text(tf.LlamaConfig(**SMALL).to_json_string())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, example = load_model(str(path), seq_len=8, materialize=False)
    return compile_model(model, example, load_hw_spec("pcm_1M"), allocation="naive")  # a block per tile: pipelined


def test_latency_range_is_not_degenerate_for_a_causal_lm(llama):
    cost = estimate(llama, batch=1, seq_len=8, gen_len=4)
    low, base, high = cost.sensitivity.range("latency_s")
    assert low < base < high
    fields = {f.field for f in cost.sensitivity.fields if f.swing("latency_s") > 0}
    assert {"latency.digital_op_ns", "latency.network_hop_ns"} <= fields


def test_a_decode_steps_energy_components_sum_to_its_total(llama):
    cost = estimate(llama, batch=2, seq_len=8, gen_len=4, sensitivity=False)
    for step in cost.decode.run.steps:
        parts = step.energy_by_component_J
        assert parts["static"] > 0 and parts["kv_cache"] > 0
        assert math.fsum(parts.values()) == pytest.approx(step.energy_J, rel=1e-12)
        assert step.layer_latency_s and max(step.layer_latency_s.values()) <= step.latency_s * (1 + 1e-9)


def test_fixed_latencies_follow_the_spec():
    hw = load_hw_spec("pcm_1M")
    fixed = fixed_latencies(hw)
    k = math.sqrt(hw.tile.count)
    assert fixed.hops == pytest.approx(2 * (k * k - 1) / (3 * k))
    assert fixed.transfer_s == pytest.approx(fixed.hops * hw.latency.network_hop_ns * 1e-9)
    assert fixed.digital_op_s == pytest.approx(hw.latency.digital_op_ns * 1e-9)
    # a one-op model: the digital op's latency is added once, whatever the batch
    off = load_hw_spec("pcm_1M", {"latency.digital_op_ns": 0.0, "latency.network_hop_ns": 0.0,
                                  "latency.reduction_ns_per_level": 0.0})
    model = nn.Sequential(nn.Linear(1024, 32), nn.ReLU())
    x = (torch.randn(1, 4, 1024),)
    with_fixed = estimate(compile_model(model, x, hw), batch=1, seq_len=4, sensitivity=False)
    without = estimate(compile_model(model, x, off), batch=1, seq_len=4, sensitivity=False)
    # one block of two row tiles: 2 mesh transfers + 1 adder level; then the ReLU's pipeline depth
    expected = 2 * fixed.transfer_s + hw.latency.reduction_ns_per_level * 1e-9 + fixed.digital_op_s
    assert with_fixed.latency_s - without.latency_s == pytest.approx(expected, rel=1e-6)


def test_crossings_between_packages_take_the_board_link():
    """Linear -> ReLU -> Linear on two one-tile chips: in one package the chip link, in two the board link."""
    base = {"tile.rows": 32, "tile.cols": 32, "tile.count": 1, "tile.max_chips": 4}
    model = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 32))
    x = (torch.randn(2, 8, 32),)
    costs = {}
    for cpp in (2, 1):
        hw = load_hw_spec("pcm_1M", {**base, "package.chips_per_package": cpp})
        placed = compile_model(model, x, hw, allocation="packed")
        assert placed.chips_used == 2
        costs[cpp] = estimate(placed, batch=1, seq_len=8, sensitivity=False)
    nbytes = 8 * 32 * 2
    assert costs[2].links.energy_J == pytest.approx(nbytes * 8 * hw.chip_link.pJ_per_bit * 1e-12)
    assert costs[1].links.energy_J == pytest.approx(nbytes * 8 * hw.package.board_link_pJ_per_bit * 1e-12)
    gap = (hw.package.board_link_latency_ns - hw.chip_link.latency_ns) * 1e-9
    assert costs[1].latency_s - costs[2].latency_s >= gap * 0.999


def test_decode_ranges_are_not_degenerate_and_bracket_the_figures(llama):
    cost = estimate(llama, batch=2, seq_len=8, gen_len=4, decode_range_batches=(1, 2))
    d = cost.to_json()["decode"]
    for ranges, figures in ((d["ranges"], d), *((b["ranges"], b) for b in d["by_batch"] if b["batch"] in (1, 2))):
        for metric in ("ttft_s", "tokens_per_s", "energy_per_token_J"):
            low, value, high = ranges[metric]
            assert low < value < high
            assert value == pytest.approx(figures[metric] if metric != "ttft_s" else figures["ttft_s"])
        assert ranges["fields_varied"] > 10
        assert "latency.digital_op_ns" in ranges["widest"]["ttft_s"] + ranges["widest"]["tokens_per_s"]
    assert [b["ranges"] is not None for b in d["by_batch"]] == [b["batch"] in (1, 2) for b in d["by_batch"]]
    # without the sensitivity: no ranges
    assert estimate(llama, batch=2, seq_len=8, gen_len=4, sensitivity=False).decode.run.ranges is None


def test_a_variants_rescaled_leakage_is_exact_when_its_schedule_is_the_references(llama):
    """The ranges' variants take the reported evaluation's leakage rescaled: exact for a field that moves leakage
    prices only (the schedule unchanged)."""
    from dataclasses import replace as with_

    from compiler.backends.estimator.decode import DecodeModel
    from compiler.backends.estimator.pricing import Chip
    from compiler.backends.estimator.workload import WorkloadTemplate
    hw = llama.hw
    chip = Chip.of(llama, {})
    template, shared = WorkloadTemplate(llama), {}
    reference = DecodeModel(template, chip, None, shared).generation(2, 8, 4)
    leakier = with_(hw, static=with_(hw.static, logic_mW_per_mm2=hw.static.logic_mW_per_mm2 * 1.3,
                                     sram_pW_per_bit=hw.static.sram_pW_per_bit * 0.6))
    rescaled = DecodeModel(template, chip.with_hw(leakier), None, shared, variant=True).generation(2, 8, 4)
    real = DecodeModel(template, chip.with_hw(leakier), None, {}).generation(2, 8, 4)
    for a, b in zip(rescaled.steps + (rescaled.prefill,), real.steps + (real.prefill,)):
        assert a.energy_by_component_J["static"] == pytest.approx(b.energy_by_component_J["static"], rel=1e-9)
    assert rescaled.steps[0].energy_by_component_J["static"] != pytest.approx(
        reference.steps[0].energy_by_component_J["static"])
    # a field of the gating itself is gated anew, not rescaled (a rescale would leave the leakage unchanged)
    offs = with_(hw, static=with_(hw.static, gated_leakage_fraction=hw.static.gated_leakage_fraction * 3))
    variant = DecodeModel(template, chip.with_hw(offs), None, shared, variant=True).generation(2, 8, 4)
    real = DecodeModel(template, chip.with_hw(offs), None, {}).generation(2, 8, 4)
    assert variant.steps[0].energy_by_component_J["static"] == real.steps[0].energy_by_component_J["static"] != \
        pytest.approx(reference.steps[0].energy_by_component_J["static"])


def test_the_prefill_sensitivity_rescales_leakage_as_exactly_as_gating_anew(llama):
    """The prefill's one-at-a-time variants take the reported evaluation's leakage rescaled where their stages and
    schedule are its own, and gate anew otherwise (a timing field, a gating field): every figure equals gating
    every variant anew."""
    from compiler.backends.estimator.estimate import _metrics
    from compiler.backends.estimator.gating import rescaled, same_activity
    from compiler.backends.estimator.pricing import Chip, evaluate
    from compiler.backends.estimator.sensitivity import MEASURES, sensitivity
    from compiler.backends.estimator.workload import WorkloadTemplate
    hw = llama.hw
    chip = Chip.of(llama, {})
    template = WorkloadTemplate(llama)
    work = template.instantiate(template.inference(1, 8))
    main = evaluate(work, chip)
    fast = sensitivity(hw, lambda h: _metrics(main, chip.with_hw(h), 1))

    def gated_anew(h):
        ev = evaluate(work, chip.with_hw(h))
        return {"energy_J": ev.energy_J, "latency_s": ev.schedule.latency_s,
                "area_mm2": chip.chips * chip.with_hw(h).area.chip_mm2}

    slow = sensitivity(hw, gated_anew)
    for a, b in zip(fast.fields, slow.fields):
        for m in MEASURES:
            assert a.low[m] == pytest.approx(b.low[m], rel=1e-9) and a.high[m] == pytest.approx(b.high[m], rel=1e-9)
    for m in MEASURES:
        assert fast.range(m) == pytest.approx(slow.range(m), rel=1e-9)
    # which path each kind of field takes
    from compiler.backends.estimator.sensitivity import with_value

    def path(field, factor):
        variant = chip.with_hw(with_value(hw, field, getattr(hw.static if field.startswith("static.") else
                                                             hw.latency, field.split(".")[1]) * factor))
        ev = evaluate(work, variant)
        return same_activity(ev.stages, ev.schedule, main.stages, main.schedule), rescaled(
            main.leakage, hw, chip.area, variant.hw, variant.area, ev.schedule.latency_s)
    same, joules = path("static.logic_mW_per_mm2", 1.3)    # a leakage price: rescaled
    assert same and joules is not None and joules != pytest.approx(main.leakage.energy_J)
    assert not path("latency.digital_op_ns", 1.3)[0]       # a timing field: its schedule moves, gated anew
    assert path("static.gated_leakage_fraction", 1.3)[1] is None  # the gating's own field: gated anew
    assert {f.field for f in fast.fields if f.swing("energy_J") > 0} >= {"static.gated_leakage_fraction",
                                                                        "static.gate_break_even_ns"}
