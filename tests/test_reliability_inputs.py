"""Issue 12, case by case (second part): hostile spec files and `--set` values, broken checkpoints and model
names, a head created at load time, and the API's edges (t_inference, seed=None, unknown options, input shapes,
NaN weights). Each is one short UserError (or a TypeError for an unknown keyword), never a traceback."""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest
import torch

from compiler import UserError, compile_model, load_hw_spec, load_model
from compiler.hw_spec import SPEC_DIR, parse_override
from test_reliability import _cli, _one_line_error, checkpoints, no_model  # noqa: F401  (shared fixtures)

PCM = (SPEC_DIR / "pcm_1M.yaml").read_text()


# --- specs ----------------------------------------------------------------------------------------------------

def _spec(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _alias_bomb(levels: int = 9) -> str:
    text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    names = "abcdefghijklmnop"
    for i in range(1, levels):
        text += f"{names[i]}: &{names[i]} [" + ",".join([f"*{names[i - 1]}"] * 9) + "]\n"
    return text


@pytest.mark.parametrize("case, text, needle", [
    ("alias bomb", PCM + _alias_bomb(), "expands to more than"),
    ("alias bomb in a field", PCM.replace("name: pcm_1M\n", "") + _alias_bomb() + "name: *i\n", "expands to more than"),
    ("recursive alias", PCM + "x: &x [*x]\n", "recursive alias"),
    ("not UTF-8", PCM.encode() + b"\n# \xff\xfe\n", "not UTF-8"),
    ("non-string keys", PCM + "on: 1\n1024: 1\n", "key True"),
    ("deep nesting", PCM + "x: " + "[" * 5000 + "]" * 5000 + "\n", "nested deeper than 32"),
    ("duplicate key", PCM + "adc: {bits: 6}\n", "duplicate key 'adc'"),
    ("inf", PCM.replace("vdd_V: 0.8 ", "vdd_V: .inf"), "energy.vdd_V"),
    ("nan", PCM.replace("g_max_uS: 25.0", "g_max_uS: .nan"), "device.g_max_uS"),
    ("inf, unbounded", re.sub(r"oscillator_uW: [0-9.]+", "oscillator_uW: .inf", PCM, count=1), "adc.cco.oscillator_uW"),
    ("inf in a device coefficient", PCM.replace("slope: -0.0155", "slope: -.inf"), "device.drift_nu_mean.slope"),
    ("1-bit ADC", PCM.replace("  bits: 8                    # 8-bit ADCs", "  bits: 1 #"), "adc.bits"),
    ("a list", "- 1\n- 2\n", "expected a mapping"),
])
def test_hostile_spec_files_are_one_short_line(tmp_path, case, text, needle):
    started = time.perf_counter()
    with pytest.raises(UserError) as info:
        load_hw_spec(_spec(tmp_path, text))
    message = str(info.value)
    assert needle in message and "\n" not in message and len(message) < 2000, message
    assert time.perf_counter() - started < 2.0


def test_the_alias_bomb_through_the_cli_is_one_line(tmp_path, no_model):
    code, err = _cli("roberta-base", "--hw", _spec(tmp_path, PCM + _alias_bomb()), "--out", tmp_path / "out")
    _one_line_error(code, err, "expands to more than")
    assert len(err) < 400


def test_all_errors_of_a_file_together(tmp_path):
    text = PCM.replace("rows: 512", "rows: -1").replace("  cols: 512\n", "").replace("type: PCM", "type: RRAM")
    with pytest.raises(UserError) as info:
        load_hw_spec(_spec(tmp_path, text + "extra: 1\n"))
    message = str(info.value)
    assert "4 errors" in message
    for field in ("tile.rows", "tile.cols", "device.type", "extra"):
        assert field in message


@pytest.mark.parametrize("overrides, needle", [
    ({"adc.bits": 1}, "adc.bits"), ({"dac.bits": 1}, "dac.bits"),
    ({"energy.dac_pJ_per_conversion": float("inf")}, "energy.dac_pJ_per_conversion"),
    ({"latency.pwm_step_ns": float("nan")}, "latency.pwm_step_ns"),
    ({"device.read_noise_qs.coeff": float("inf")}, "device.read_noise_qs.coeff"),
    ({"device.t0_s": 1e-6, "device.t_read_s": 1e-3}, "needs t0_s >= t_read_s"),
    ({"device.drift_nu_mean": {"slope": 0, "intercept": 0, "lo": 0.2, "hi": 0.1}}, "lo = 0.2 is above hi"),
    ({"technology_nm": "x" * 100_000, "description": ["y"] * 100_000}, "2 errors"),
])
def test_bad_values_are_rejected(overrides, needle):
    with pytest.raises(UserError, match=needle) as info:
        load_hw_spec("pcm_1M", overrides)
    assert len(str(info.value)) < 1000


def test_set_reads_exponent_floats_and_sets_optional_fields(tmp_path):
    overrides = dict(parse_override(t) for t in ("device.t0_s=1e-9", "device.t_read_s=1e-12", "latency.pwm_step_ns=2E0"))
    hw = load_hw_spec("pcm_1M", overrides)
    assert hw.device.t0_s == 1e-9 and hw.device.t_read_s == 1e-12 and hw.latency.pwm_step_ns == 2.0
    without = PCM.replace("  vdd_V: 0.8 ", "  # vdd_V: 0.8 ")
    hw = load_hw_spec(_spec(tmp_path, without), dict([parse_override("energy.vdd_V=0.8")]))
    assert hw.energy.vdd_V == 0.8 and hw.overrides["energy.vdd_V"] == {"value": 0.8, "file": None}
    no_cost = PCM.split("energy:\n")[0]
    hw = load_hw_spec(_spec(tmp_path, no_cost), dict([parse_override("energy.vdd_V=0.8")]))
    assert hw.energy.vdd_V == 0.8 and hw.energy.digital is None
    hw = load_hw_spec(_spec(tmp_path, no_cost), dict([parse_override("latency={pwm_step_ns: 1.0}")]))
    assert hw.latency.pwm_step_ns == 1.0
    with pytest.raises(UserError, match="unknown field 'nope'; fields of energy"):
        load_hw_spec("pcm_1M", {"energy.nope": 1})


# --- models and reports -----------------------------------------------------------------------------------------

@pytest.fixture()
def broken(checkpoints, tmp_path):
    target = tmp_path / "ckpt"
    shutil.copytree(checkpoints["cls"], target)
    return target


@pytest.mark.parametrize("damage, needle", [
    (lambda d: (d / "config.json").write_text("{corrupt"), "config.json: cannot read it as JSON"),
    (lambda d: (d / "config.json").write_text("[1, 2]"), "config.json: expected a JSON object"),
    (lambda d: (d / "model.safetensors").write_bytes(os.urandom(4096)), "model.safetensors: cannot load it"),
])
def test_damaged_checkpoints_are_one_line(broken, damage, needle):
    damage(broken)
    with pytest.raises(UserError, match=needle):
        load_model(str(broken), seq_len=8)


@pytest.mark.parametrize("name, task, needle", [
    ("x" * 300, None, "not a usable name or path"),
    ("distilbert-base-uncased", "causal-lm", "no causal-lm head"),
])
def test_bad_model_names_are_one_line(name, task, needle):
    with pytest.raises(UserError, match=needle):
        load_model(name, task=task, seq_len=8)


def test_a_long_model_name_through_the_cli(tmp_path, no_model):
    code, err = _cli("y" * 300, "--hw", "pcm_1M", "--out", tmp_path / "out")
    _one_line_error(code, err, "not a usable name")


def test_a_head_created_at_load_time_is_reported(checkpoints, tmp_path):
    code, err = _cli(checkpoints["base"], "--task", "sequence-classification", "--hw", "pcm_1M", "--seq-len", "8",
                     "--out", tmp_path / "out")
    assert code == 0, err
    assert "created at RANDOM" in err and "classifier.weight" in err
    mapping = json.loads((tmp_path / "out" / "mapping.json").read_text())
    assert mapping["weights"] == "real" and mapping["head"] == "random"
    assert 'id="random-head"' in (tmp_path / "out" / "report.html").read_text()
    model, _ = load_model(str(checkpoints["cls"]), seq_len=8)
    assert model.aimc_info.head == "real" and model.aimc_info.new_weights == ()


# --- the API ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def placed_linear():
    torch.manual_seed(0)
    return compile_model(torch.nn.Linear(64, 32), (torch.randn(4, 64),), "pcm_1M")


@pytest.mark.parametrize("t", [float("nan"), float("inf"), -1.0, "1h"])
def test_t_inference_must_be_finite_and_not_negative(placed_linear, t):
    with pytest.raises(UserError, match="t_inference"):
        placed_linear.simulator(t_inference=t)


def test_seed_none_draws_a_fresh_seed_and_records_it(placed_linear):
    x = torch.randn(3, 64)
    first, second = placed_linear.simulator(t_inference=60.0, seed=None), placed_linear.simulator(seed=None)
    assert isinstance(first.seed, int) and first.seed != second.seed
    again = placed_linear.simulator(t_inference=60.0, seed=first.seed)
    assert torch.equal(first(x), again(x))


def test_unknown_compile_options_are_a_type_error():
    with pytest.raises(TypeError, match="bogus_option"):
        compile_model(torch.nn.Linear(8, 8), (torch.randn(2, 8),), "pcm_1M", bogus_option=1)


def test_a_wrong_input_shape_names_the_expected_one(placed_linear):
    sim = placed_linear.simulator()
    with pytest.raises(UserError, match=r"shape \[4, 40\].*input \[\?, 64\]"):
        sim(torch.randn(4, 40))
    with pytest.raises(UserError, match="takes input"):
        sim(torch.randn(4, 64), torch.randn(4, 64))


def test_a_nan_weight_is_one_line():
    layer = torch.nn.Linear(16, 8)
    with torch.no_grad():
        layer.weight[0, 0] = float("nan")
    with pytest.raises(UserError, match="weight .* holds NaN"):
        compile_model(layer, (torch.randn(2, 16),), "pcm_1M", calibration={"input": torch.randn(8, 16)})
