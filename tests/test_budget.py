"""--accuracy-budget (compiler/budget, compiler/block_options.py): the exact choice against brute force, a budget no
mapping meets refused in one line, and each block option simulated and priced as the same physics says."""
import dataclasses
import itertools
import json
import math
import random

import pytest
import torch

from compiler import UserError, compile_model, load_hw_spec
from compiler.backends.estimator import estimate
from compiler.block_options import ANALOG, DIGITAL, BlockOption, available_options
from compiler.budget.choose import Choice, solve

VOCAB = 100


def _tiny_bert(layers: int = 1):
    from transformers import BertConfig, BertModel
    config = BertConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=layers, num_attention_heads=4,
                        intermediate_size=128, max_position_embeddings=64, initializer_range=0.2,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    return BertModel(config).eval()


def _tokens(rows: int = 4, length: int = 16, seed: int = 0) -> dict:
    ids = torch.randint(5, VOCAB, (rows, length), generator=torch.Generator().manual_seed(seed))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def placed():
    return compile_model(_tiny_bert(), _tokens(), load_hw_spec("pcm_1M"))


# --- the choice -------------------------------------------------------------------------------------------------

def _brute_force(blocks, drop_limit, sram_limit):
    best = None
    for picks in itertools.product(*(range(len(o)) for o in blocks)):
        chosen = [blocks[b][i] for b, i in enumerate(picks)]
        cost, drop, sram = (math.fsum(getattr(c, f) for c in chosen) for f in ("cost", "drop", "sram"))
        if drop <= drop_limit and sram <= sram_limit and (best is None or (cost, drop) < best[:2]):
            best = (cost, drop, picks)
    return best


def test_exact_choice_is_the_brute_force_optimum():
    rng = random.Random(7)
    for _ in range(60):
        blocks = [[Choice(rng.uniform(-1, 1), rng.uniform(-0.05, 0.1), rng.choice([0, 0, 1, 3]))
                   for _ in range(rng.randint(1, 4))] for _ in range(rng.randint(1, 6))]
        drop_limit, sram_limit = rng.uniform(-0.05, 0.2), rng.choice([math.inf, 0, 2, 4])
        expected = _brute_force(blocks, drop_limit, sram_limit)
        found = solve(blocks, sram_limit).best(drop_limit)
        assert (expected is None) == (found is None)
        if expected is not None:
            assert found.cost == pytest.approx(expected[0], abs=1e-12)
            assert found.drop <= drop_limit and found.sram <= sram_limit


def test_frontier_holds_no_dominated_assignment():
    rng = random.Random(3)
    blocks = [[Choice(rng.uniform(-1, 1), rng.uniform(-0.05, 0.1)) for _ in range(4)] for _ in range(5)]
    front = solve(blocks).front()
    assert all(a.cost < b.cost and a.drop > b.drop for a, b in zip(front, front[1:]))
    every = [(sum(blocks[b][i].cost for b, i in enumerate(p)), sum(blocks[b][i].drop for b, i in enumerate(p)))
             for p in itertools.product(range(4), repeat=5)]
    for a in front:  # nothing beats a front point on both
        assert not any(c < a.cost - 1e-12 and d < a.drop - 1e-12 for c, d in every)


# --- the search on a small model, through the command line ----------------------------------------------------

@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, save_with_char_tokenizer):
    return save_with_char_tokenizer(_tiny_bert(), tmp_path_factory.mktemp("tiny_bert"))


def _cli(capsys, *argv):
    from compiler.cli import main
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


RUN = ("--hw", "pcm_1M", "--task", "feature-extraction", "--seq-len", 32, "--simulate", "--eval-sentences", 8,
       "--drift-times", "1y", "--seeds", 2, "--calibration", 4)


@pytest.fixture(scope="module")
def budget_run(tiny_checkpoint, tmp_path_factory):
    """One budgeted run of the tiny model: accuracy.json's budget record and mapping.json."""
    from compiler.cli import main
    out = tmp_path_factory.mktemp("budget") / "out"
    assert main([str(a) for a in (tiny_checkpoint, *RUN, "--accuracy-budget", 0.08, "--out", out)]) == 0
    return (json.loads((out / "accuracy.json").read_text())["budget"], json.loads((out / "mapping.json").read_text()),
            (out / "report.html").read_text())


def test_chosen_assignment_is_optimal_for_the_priced_sensitivities(budget_run):
    record, mapping, _ = budget_run
    blocks = list(dict.fromkeys(r["block"] for r in record["sensitivity"]))
    others = [o for o in record["options"] if o != record["reference_option"]]
    cell = {(r["block"], r["option"]): r for r in record["sensitivity"]}
    free = record["sram_macros_free"]
    first = record["tries"][0]
    best = None
    for picks in itertools.product(range(len(others) + 1), repeat=len(blocks)):  # 5^5 assignments
        rows = [cell[b, others[i - 1]] for b, i in zip(blocks, picks) if i]
        drop = record["reference_drop"] + math.fsum(r["delta_drop"] for r in rows)
        cost = record["reference_cost"] + math.fsum(r["delta_cost"] for r in rows)
        if drop <= first["limit"] + 1e-12 and sum(r["sram_macros"] for r in rows) <= free \
                and (best is None or cost < best[0] - 1e-18):
            best = (cost, list(picks))
    assert best is not None and first["picks"] == best[1]
    assert first["predicted_cost"] == pytest.approx(best[0], rel=1e-9)
    # what mapping.json records is the verified assignment, block by block
    chosen = record["tries"][record["chosen"]] if record["met"] else None
    if chosen is not None:
        labels = {b: (others[i - 1] if i else record["reference_option"]) for b, i in zip(blocks, chosen["picks"])}
        assert {b: o["label"] for b, o in mapping["block_options"].items()} == labels
        assert chosen["measured_upper"] <= record["delta"]
    assert len(record["tries"][0]["per_seed"]) == len(record["verify_seeds"]) == 5
    assert not set(record["verify_seeds"]) & set(record["sensitivity_seeds"])
    assert record["sensitivity_simulations"] == 3 * (1 + len(blocks) * len(others))


def test_report_shows_the_budget_section(budget_run):
    _, _, html = budget_run
    assert 'id="budget"' in html and 'id="budget-sensitivity"' in html and "<svg" in html.split('id="budget"')[1]


def test_a_budget_no_mapping_meets_is_refused_in_one_line(tiny_checkpoint, tmp_path, capsys):
    code, err = _cli(capsys, tiny_checkpoint, *RUN, "--set", "block_options.digital_bits=null",
                     "--set", "block_options.redundancy=null", "--accuracy-budget", 0.0, "--out", tmp_path / "o")
    assert code == 2
    line = err.strip().splitlines()[-1]
    assert line.startswith("aimc-compile: error: --accuracy-budget 0: no mapping is predicted to meet it; the "
                           "closest achievable drop of embedding_cosine_mean at 1y is ")
    assert float(line.split(" at 1y is ")[1].split()[0]) > 0


@pytest.mark.parametrize("argv, message", [
    (("--accuracy-budget", 0.1), "add --simulate"),
    (("--simulate", "--budget-metric", "x"), "need --accuracy-budget"),
    (("--simulate", "--accuracy-budget", -1), "drop >= 0"),
    (("--simulate", "--accuracy-budget", 0.1, "--set", "block_options=null"), "no options to choose between"),
])
def test_budget_flags_are_checked_before_the_model_loads(argv, message, capsys, tmp_path):
    code, err = _cli(capsys, "/no/such/model", "--hw", "pcm_1M", *argv, "--out", tmp_path / "o")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


# --- options: one physics for the simulator and the estimator -------------------------------------------------

def test_spec_lists_the_options():
    hw = load_hw_spec("pcm_1M")
    assert available_options(hw) == [BlockOption(ANALOG, 8), BlockOption(ANALOG, 6), BlockOption(ANALOG, 7),
                                     BlockOption(ANALOG, 8, 2), BlockOption(DIGITAL, 6)]
    with pytest.raises(UserError, match="block_options.adc_bits"):
        load_hw_spec("pcm_1M", overrides={"block_options.adc_bits": [6, 6]})
    with pytest.raises(UserError, match="block_options.redundancy"):
        load_hw_spec("pcm_1M", overrides={"block_options.redundancy": [1]})


def test_analog_bits_option_is_the_spec_at_those_bits(placed):
    """Every block at 6 bits simulates and prices exactly as the whole spec at adc.bits = 6."""
    six = load_hw_spec("pcm_1M", overrides={"adc.bits": 6})
    x = _tokens(seed=1)
    placed.block_options = {name: BlockOption(ANALOG, 6) for name in placed.blocks}
    try:
        by_option = placed.simulator(t_inference=3600.0, seed=4)(**x).last_hidden_state
        energy_option = estimate(placed, seq_len=16, sensitivity=False).energy_J
    finally:
        placed.block_options = {}
    by_spec = placed.simulator(t_inference=3600.0, seed=4, hw=six)(**x).last_hidden_state
    assert torch.equal(by_option, by_spec)
    respec = dataclasses.replace(placed, hw=six)
    assert energy_option == pytest.approx(estimate(respec, seq_len=16, sensitivity=False).energy_J, rel=1e-12)


def test_redundant_copies_are_independent_chips_averaged_and_priced_k_times(placed):
    name = next(iter(placed.blocks))
    x = torch.randn(64, placed.blocks[name].in_features, generator=torch.Generator().manual_seed(0))
    ideal = torch.nn.functional.linear(x, *_weight(placed, name))
    errors = {}
    for k in (1, 2):
        placed.block_options = {name: BlockOption(ANALOG, 8, k)}
        try:
            outs = [placed.simulator(t_inference=3.15e7, seed=s).blocks[name](x) for s in range(6)]
        finally:
            placed.block_options = {}
        errors[k] = torch.stack([(o - ideal).pow(2).mean() for o in outs]).mean().item()
    assert errors[2] < 0.75 * errors[1]  # independent noise halves the variance; the ADC's rounding does not average
    stages = {}
    for k in (1, 2):
        placed.block_options = {name: BlockOption(ANALOG, 8, k)}
        try:
            cost = estimate(placed, seq_len=16, sensitivity=False)
            stages[k] = next(s for s in cost.stages if s.name == name)
            tiles = cost.tiles_used
        finally:
            placed.block_options = {}
    assert stages[2].energy_J > 1.9 * stages[1].energy_J
    assert tiles == placed.tiles_used + len({s.tile for s in placed.segments if s.block == name})


def _weight(placed, name):
    from compiler.backends.simulator import block_weight
    return block_weight(placed, placed.blocks[name])


def test_digital_option_is_integer_matmul_priced_as_the_attention_units(placed):
    name = next(iter(placed.blocks))
    weight, bias = _weight(placed, name)
    x = torch.randn(8, weight.shape[1], generator=torch.Generator().manual_seed(1))
    placed.block_options = {name: BlockOption(DIGITAL, 6)}
    try:
        simulated = placed.simulator(t_inference=3.15e7, seed=0).blocks[name](x)
        cost = estimate(placed, seq_len=16, sensitivity=False)
    finally:
        placed.block_options = {}
    levels = 31
    w_step = weight.abs().amax(1, keepdim=True) / levels
    x_step = x.abs().amax(1, keepdim=True) / levels
    expected = ((x / x_step).round() @ (weight / w_step).round().T) * x_step * w_step.T + bias
    assert torch.allclose(simulated, expected, rtol=1e-5, atol=1e-6)
    macs = 16 * weight.shape[0] * weight.shape[1]  # one sequence of 16 tokens
    assert cost.counts["digital_block_macs"] == macs
    assert cost.tiles_used == len({s.tile for s in placed.segments if s.block != name})


def test_hwa_trains_through_the_chosen_options(placed):
    from compiler.backends.simulator.options import AveragedBlock
    from compiler.training.hardware import HwaNoiseConfig, TrainingChip
    names = list(placed.blocks)
    placed.block_options = {names[0]: BlockOption(DIGITAL, 6), names[1]: BlockOption(ANALOG, 8, 2),
                            names[2]: BlockOption(ANALOG, 6)}
    try:
        chip = TrainingChip(placed, HwaNoiseConfig())
        chip.program()
        x = torch.randn(8, placed.blocks[names[0]].in_features, generator=torch.Generator().manual_seed(2))
        simulated = placed.simulator(t_inference=3600.0, seed=0).blocks[names[0]](x)
        assert torch.allclose(chip.blocks[names[0]](x), simulated, rtol=1e-5, atol=1e-6)  # one integer matmul
        pair = chip.blocks[names[1]]
        assert isinstance(pair, AveragedBlock) and len(pair.copies) == 2
        offsets = [next(iter(c.offset.values())) for c in pair.copies]
        assert not torch.equal(offsets[0], offsets[1])  # two chips' devices, not one drawn twice
        assert chip.blocks[names[2]].adc_bits == 6
        chip(**_tokens()).last_hidden_state.square().mean().backward()
        weight = placed.model.get_parameter(placed.placements[placed.blocks[names[0]].layers[0]].weight)
        assert weight.grad is not None and weight.grad.abs().sum() > 0  # straight through the integer quantizers
    finally:
        placed.block_options = {}
        placed.model.zero_grad(set_to_none=True)


def test_cli_budget_with_hwa_fine_tunes_the_chosen_mapping(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    code, err = _cli(capsys, tiny_checkpoint, *RUN, "--accuracy-budget", 0.08, "--hwa-finetune", "--hwa-steps", 2,
                     "--out", out)
    assert code == 0, err
    budget = json.loads((out / "accuracy.json").read_text())["budget"]
    mapping = json.loads((out / "mapping.json").read_text())
    assert {b: o["label"] for b, o in mapping["block_options"].items()} == budget["block_options"]
    assert json.loads((out / "hwa.json").read_text())["steps"] == 2
    assert err.index("accuracy budget: try 1") < err.index("HWA fine-tuning: 2 steps")


def test_report_reads_a_hand_made_budget_record_without_a_traceback(budget_run):
    from reports.render import render_report
    record, mapping, _ = budget_run
    for change in ({"chosen": 7}, {"tries": [], "frontier": [], "chosen": None, "met": False}):
        html = render_report(mapping, None, {"results": [], "budget": {**record, **change}})
        assert 'id="budget"' in html
    assert "NOT MET" in html
