"""Paired statistics of a sweep (compiler/dse/paired.py) and what sweep.json/csv/html make of them, on
hand-made rows (no Ray, no model): the paired interval against a hand computation, the resolved front, the
summary, the page."""
from __future__ import annotations

import math

import pytest

from compiler.dse.paired import paired_difference, pick_reference, resolved_front, better_than, summary_lines, \
    versus_reference

T_975_DF2 = 4.302652729911275  # Student's t, 0.975 quantile, 2 degrees of freedom (tables: 4.303)


def test_paired_interval_equals_the_hand_computation() -> None:
    reference = {0: 0.90, 1: 0.92, 2: 0.91}
    point = {0: 0.88, 1: 0.91, 2: 0.89, 3: 0.5}   # seed 3: not in the reference, left out of the pairing
    diffs = [-0.02, -0.01, -0.02]
    mean = sum(diffs) / 3
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2)
    half = T_975_DF2 * sd / math.sqrt(3)
    got = paired_difference(point, reference)
    assert got["n"] == 3
    assert got["mean"] == pytest.approx(mean, abs=1e-15)
    assert got["ci95"] == pytest.approx(half, rel=1e-12)
    assert (got["low"], got["high"]) == pytest.approx((mean - half, mean + half), rel=1e-12)
    assert got["resolved"] is True  # -0.0167 +- 0.0143 excludes 0
    # the unpaired intervals overlap: only the pairing resolves it
    assert max(point[s] for s in range(3)) > min(reference.values())
    loose = paired_difference({0: 0.93, 1: 0.90, 2: 0.91}, reference)
    assert loose["resolved"] is False and loose["low"] < 0 < loose["high"]
    assert paired_difference({5: 1.0}, reference) is None
    assert paired_difference({0: 1.0}, reference)["ci95"] is None


def _row(name, bits, energy, per_seed, area=10.0):
    mean = sum(per_seed) / len(per_seed)
    return {"name": name, "key": name * 4, "values": {"adc.bits": bits}, "labels": [{"adc.bits": bits}],
            "status": "computed", "error": None, "seconds": 1.0, "command": "aimc-compile compile m",
            "dir": f"points/{name}", "report": None, "model": "m", "tiles": 4, "chips": 1, "tops_per_w": 1.0,
            "derived": {},
            "energy_J": energy, "latency_s": 1e-3, "area_mm2": area,
            "energy_low_J": 0.8 * energy, "energy_high_J": 1.3 * energy, "latency_low_s": 0.9e-3,
            "latency_high_s": 1.2e-3, "area_low_mm2": 0.7 * area, "area_high_mm2": 1.4 * area,
            "ttft_s": None, "tokens_per_s": None, "energy_per_token_J": None, "ttft_low_s": None, "ttft_high_s": None,
            "tokens_per_s_low": None, "tokens_per_s_high": None, "energy_per_token_low_J": None,
            "energy_per_token_high_J": None,
            "metric": "embedding_cosine_mean", "higher_is_better": True, "seeds": list(range(len(per_seed))),
            "accuracy": [{"label": "1d", "seconds": 86400.0, "mean": mean, "std": None, "ci95": None,
                          "low": None, "high": None, "per_seed": per_seed}]}


ROWS = [_row("b8", "8", 3.0e-6, [0.950, 0.960, 0.955, 0.945, 0.952]),
        _row("b7", "7", 2.7e-6, [0.951, 0.959, 0.956, 0.944, 0.953]),   # within noise of 8 bits, cheaper
        _row("b6", "6", 2.0e-6, [0.940, 0.949, 0.944, 0.935, 0.941]),   # resolved worse, cheapest
        _row("b5", "5", 2.5e-6, [0.930, 0.939, 0.934, 0.925, 0.931])]   # worse than 6 bits and dearer


def test_resolved_front_and_reference() -> None:
    rows = ROWS
    better = better_than(rows, [0, 1, 2, 3])
    assert 2 in better[0] and 3 in better[2] and 1 not in better[0] and 0 not in better[1]
    front = resolved_front({i: r["energy_J"] for i, r in enumerate(rows)}, better)
    assert front == {0, 1, 2}   # 5 bits: 6 bits costs less and is resolved better
    assert pick_reference(rows, None) == 0 and pick_reference(rows, {"adc.bits": "7"}) == 1
    assert pick_reference(rows, {"adc.bits": "9"}) is None
    versus = versus_reference(rows, 0)
    assert versus[0]["versus"] is None
    assert versus[1]["versus"]["accuracy"]["resolved"] is False
    assert versus[2]["versus"]["accuracy"]["resolved"] is True and versus[2]["versus"]["accuracy"]["mean"] < 0
    assert versus[2]["versus"]["energy_ratio"] == pytest.approx(2.0 / 3.0)
    lines = summary_lines(versus, 0, ["adc.bits"])
    assert lines[0].startswith("reference: adc.bits=8 (embedding_cosine_mean 0.9524 at t=1d, 5 seeds)")
    worse = next(line for line in lines if line.startswith("resolved worse"))
    assert "adc.bits=6: -0.0106" in worse and "energy -33 %" in worse and "adc.bits=7" not in worse
    assert any(line.startswith("not resolved from the reference") and "adc.bits=7" in line for line in lines)


def sweep_folder(folder, causal: bool = False) -> None:
    """A sweep folder as the MiniLM ADC-bits x tile-size sweep writes it (two axes, a coupled one, iso-capacity
    tile counts, 5 seeds, the estimator's ranges), from hand-made rows: sweep.json, sweep.csv, sweep.html (the
    browser layout test). `causal`: the points carry a causal LM's decode figures too."""
    from types import SimpleNamespace

    from compiler.dse.summary import sweep_json, write_sweep_json
    from reports.sweep import write_sweep_files
    config = SimpleNamespace(hw="pcm_1M", model="sentence-transformers/all-MiniLM-L6-v2",
                             simulation=SimpleNamespace(seeds=5))
    axes = [SimpleNamespace(name="adc.bits", kind="spec", keys=("adc.bits",), values=("6", "7", "8")),
            SimpleNamespace(name="tile.rows+tile.cols+tile.count", kind="spec", coupled=True,
                            keys=("tile.rows", "tile.cols", "tile.count"), values=("256,256,2048", "512,512,512"))]
    rows = []
    for k, row in enumerate(ROWS[:3] * 2):
        tiles = "256,256,2048" if k < 3 else "512,512,512"
        values = {"adc.bits": row["values"]["adc.bits"], "tile.rows+tile.cols+tile.count": tiles}
        rows.append({**row, "name": f"adc.bits-{values['adc.bits']}_tile-{tiles.replace(',', '-')}-0123456789ab",
                     "values": values, "labels": [values], "derived": {"tile.count": tiles.split(",")[2]},
                     "energy_J": row["energy_J"] * (1.2 if k < 3 else 1.0), "area_mm2": 372.0 if k < 3 else 313.0})
        if causal:
            rows[-1].update(ttft_s=1.234e-3 * (k + 1), tokens_per_s=12345.0 / (k + 1), energy_per_token_J=4.56e-5,
                            ttft_low_s=1.1e-3 * (k + 1), ttft_high_s=1.5e-3 * (k + 1),
                            tokens_per_s_low=10234.0 / (k + 1), tokens_per_s_high=14567.0 / (k + 1),
                            energy_per_token_low_J=3.9e-5, energy_per_token_high_J=5.8e-5)
    write_sweep_json(folder / "sweep.json", sweep_json([SimpleNamespace(config=config)], axes, rows,
                                                       "ray, embedded on this machine (2 CPUs)", 123.6, None, True))
    write_sweep_files(folder)


def test_sweep_json_csv_and_page(tmp_path) -> None:
    """sweep.json from rows (schema-checked), then sweep.csv and sweep.html from it alone."""
    import csv
    import io
    from types import SimpleNamespace

    from compiler.dse.summary import sweep_json, write_sweep_json
    from compiler.errors import UserError
    from reports.sweep import read_sweep, render_sweep, sweep_csv
    config = SimpleNamespace(hw="pcm_1M", model="m", simulation=SimpleNamespace(seeds=5))
    points = [SimpleNamespace(config=config)]
    axes = [SimpleNamespace(name="adc.bits", kind="spec", keys=("adc.bits",), values=("8", "7", "6", "5"))]
    data = sweep_json(points, axes, [dict(r) for r in ROWS], "serial", 1.0, {"adc.bits": "7"})
    assert data["reference"] == "b7" and [p["pareto"] for p in data["points"]] == [True, True, True, False]
    with pytest.raises(UserError, match="no point of the grid"):
        sweep_json(points, axes, [dict(r) for r in ROWS], "serial", 1.0, {"adc.bits": "4"})
    data = sweep_json(points, axes, [dict(r) for r in ROWS], "serial", 1.0)
    write_sweep_json(tmp_path / "sweep.json", data)
    sweep = read_sweep(tmp_path)
    rows = list(csv.DictReader(io.StringIO(sweep_csv(sweep))))
    assert rows[0]["vs_reference.mean"] == "reference"
    assert rows[2]["vs_reference.resolved"] == "yes" and rows[1]["vs_reference.resolved"] == "no"
    low, mean, high = (float(rows[2][f"vs_reference.{k}"]) for k in ("low", "mean", "high"))
    assert low < mean < high < 0
    html = render_sweep(sweep)
    assert 'id="says"' in html and "resolved worse than the reference" in html and "not resolved" in html
    # the estimator's ranges: in sweep.json, as columns of sweep.csv and under each figure of the page
    assert (sweep.points[0].energy_low_J, sweep.points[0].area_high_mm2) == (0.8 * 3.0e-6, 14.0)
    assert float(rows[0]["energy_per_inference_J.low"]) == 0.8 * 3.0e-6
    assert float(rows[0]["energy_per_inference_J.high"]) == 1.3 * 3.0e-6
    assert float(rows[0]["latency_s.high"]) == 1.2e-3 and float(rows[0]["area_mm2.low"]) == 7.0
    assert "2.4–3.9 µJ" in html and "7–14 mm²" in html
    assert "tokens_per_s" not in rows[0] and ">Decode<" not in html   # no causal LM: no decode column


def test_decode_figures_of_a_causal_lm(tmp_path) -> None:
    """A causal LM's TTFT, tokens/s and J/token: columns of sweep.csv, a column of sweep.html; an encoder's
    cells empty."""
    import csv
    import io
    from types import SimpleNamespace

    from compiler.dse.summary import sweep_json, write_sweep_json
    from reports.sweep import read_sweep, render_sweep, sweep_csv
    config = SimpleNamespace(hw="pcm_1M", model="m", simulation=None)
    rows = [dict(r, accuracy=[], seeds=[], metric=None) for r in ROWS[:2]]
    rows[1].update(model="llama", ttft_s=2.5e-4, tokens_per_s=1234.0, energy_per_token_J=4.2e-6, ttft_low_s=2e-4,
                   ttft_high_s=3e-4, tokens_per_s_low=1000.0, tokens_per_s_high=1500.0, energy_per_token_low_J=3e-6,
                   energy_per_token_high_J=6e-6)
    axes = [SimpleNamespace(name="adc.bits", kind="spec", keys=("adc.bits",), values=("8", "7"))]
    write_sweep_json(tmp_path / "sweep.json", sweep_json([SimpleNamespace(config=config)], axes, rows, "serial", 1.0))
    sweep = read_sweep(tmp_path)
    table = list(csv.DictReader(io.StringIO(sweep_csv(sweep))))
    assert [r["tokens_per_s"] for r in table] == ["", "1234.0"]
    assert float(table[1]["ttft_s"]) == 2.5e-4 and float(table[1]["energy_per_token_J"]) == 4.2e-6
    html = render_sweep(sweep)
    assert ">Decode<" in html and "1.23 k/s" in html and "250 µs TTFT" in html and "4.2 µJ / token" in html
    assert float(table[1]["tokens_per_s.low"]) == 1000.0 and float(table[1]["energy_per_token_J.high"]) == 6e-6
    assert "1–1.5 k/s" in html and "TTFT 200–300 µs" in html and "3–6 µJ / token" in html   # the ranges


def test_sweep_csv_cells_a_spreadsheet_would_run_are_text(tmp_path) -> None:
    """A label or command from the user's grid (`=HYPERLINK(...)`) is text in sweep.csv; figures stay numbers."""
    import csv
    import io
    from types import SimpleNamespace

    from compiler.dse.summary import sweep_json, write_sweep_json
    from reports.sweep import read_sweep, sweep_csv
    config = SimpleNamespace(hw="pcm_1M", model="m", simulation=SimpleNamespace(seeds=5))
    rows = [dict(r) for r in ROWS]
    rows[1]["command"] = '=HYPERLINK("http://x")'
    axes = [SimpleNamespace(name="adc.bits", kind="spec", keys=("adc.bits",), values=("8", "7", "6", "5"))]
    write_sweep_json(tmp_path / "sweep.json", sweep_json([SimpleNamespace(config=config)], axes, rows, "serial", 1.0))
    table = list(csv.DictReader(io.StringIO(sweep_csv(read_sweep(tmp_path)))))
    assert table[1]["command"] == "'=HYPERLINK(\"http://x\")"
    assert float(table[2]["vs_reference.low"]) < 0   # a negative figure is a number, not neutralized text
