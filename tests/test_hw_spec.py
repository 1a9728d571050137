import textwrap

import pytest

from compiler import UserError, load_hw_spec
from compiler.hw_spec import SPEC_DIR, parse_override


@pytest.mark.parametrize("name", ["pcm_1M", "hermes"])
def test_builtin_specs_load_by_name_and_path(name):
    by_name = load_hw_spec(name)
    by_path = load_hw_spec(str(SPEC_DIR / f"{name}.yaml"))
    assert by_name == by_path


def test_pcm_1m_matches_lammie_et_al(pcm_1m):
    assert (pcm_1m.tile.rows, pcm_1m.tile.cols, pcm_1m.tile.devices_per_weight) == (512, 512, 2)
    assert pcm_1m.device.g_max_uS == 25.0
    assert pcm_1m.dac.bits == 8 and pcm_1m.dac.encoding == "PWM" and pcm_1m.adc.bits == 8
    assert pcm_1m.digital.attention_bits == 6
    assert pcm_1m.device.programming_noise_poly_uS == (0.26348, 1.9650, -1.1731)


def test_hermes_shape():
    hermes = load_hw_spec("hermes")
    assert (hermes.tile.rows, hermes.tile.cols, hermes.tile.count, hermes.technology_nm) == (256, 256, 64, 14)


def test_spec_is_frozen(pcm_1m):
    with pytest.raises(Exception):
        pcm_1m.tile.rows = 3


def test_dotted_overrides_set_ideal_values():
    hw = load_hw_spec("pcm_1M", overrides={"adc.bits": None, "dac.bits": 6, "output_noise": 0,
                                           "device.programming_noise": False, "device.drift": False,
                                           "device.read_noise": False, "tile.rows": 256, "tile.cols": 128})
    assert hw.adc.bits is None and hw.dac.bits == 6 and hw.output_noise == 0.0
    assert not (hw.device.programming_noise or hw.device.drift or hw.device.read_noise)
    assert (hw.tile.rows, hw.tile.cols) == (256, 128)


@pytest.mark.parametrize("overrides, message", [
    ({"adc.bitz": 6}, "adc.bitz"),
    ({"adc.bits": 0}, "adc.bits"),
    ({"adc.bits": "eight"}, "adc.bits"),
    ({"tile.rows": -1}, "tile.rows"),
    ({"output_noise": 2.0}, "output_noise"),
    ({"device.drift": "yes"}, "device.drift"),
    ({"nosuch.section": 1}, "nosuch"),
    ({"dac.encoding": "optical"}, "dac.encoding"),
])
def test_bad_override_names_the_field(overrides, message):
    with pytest.raises(UserError, match=message):
        load_hw_spec("pcm_1M", overrides=overrides)


def _write(tmp_path, text):
    path = tmp_path / "spec.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_missing_field_names_file_and_field(tmp_path):
    text = (SPEC_DIR / "pcm_1M.yaml").read_text().replace("  cols: 512", "")
    path = _write(tmp_path, text)
    with pytest.raises(UserError) as err:
        load_hw_spec(path)
    assert str(path) in str(err.value) and "tile.cols" in str(err.value) and "expected int" in str(err.value)


def test_unknown_field_in_file(tmp_path):
    text = (SPEC_DIR / "pcm_1M.yaml").read_text().replace("  bits: 8                    # 8-bit ADCs",
                                                         "  bitz: 8                    # 8-bit ADCs")
    with pytest.raises(UserError, match="adc.bitz"):
        load_hw_spec(_write(tmp_path, text))


def test_malformed_and_missing_files(tmp_path):
    with pytest.raises(UserError, match="not valid YAML"):
        load_hw_spec(_write(tmp_path, "tile: [1, 2\n"))
    with pytest.raises(UserError, match="not found"):
        load_hw_spec(tmp_path / "nope.yaml")
    with pytest.raises(UserError, match="unknown hardware spec"):
        load_hw_spec("no_such_chip")


def test_parse_override():
    assert parse_override("adc.bits=6") == ("adc.bits", 6)
    assert parse_override("adc.bits=null") == ("adc.bits", None)
    assert parse_override("device.drift=false") == ("device.drift", False)
    with pytest.raises(UserError, match="KEY=VALUE"):
        parse_override("adc.bits")
