"""The HTML report: built from the JSON outputs alone, true to them, self-contained."""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from torch import nn

from compiler import compile_model, load_hw_spec
from compiler.writers import cost_json, mapping_json
from reports import write_report
from reports.fmt import si, span
from reports.mapping_view import build_mapping_view, split_group
from reports.schema import MappingJson, SchemaError


class Block(nn.Module):
    """A transformer-like layer: Q, K, V (one fused block), attention, FFN."""

    def __init__(self, d: int = 48, f: int = 160) -> None:
        super().__init__()
        self.query, self.key, self.value = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.intermediate, self.output = nn.Linear(d, f), nn.Linear(f, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x + torch.softmax(self.query(x) @ self.key(x).transpose(-1, -2), dim=-1) @ self.value(x)
        return h + self.output(nn.functional.gelu(self.intermediate(h)))


class TinyEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.ModuleList([Block() for _ in range(3)])
        self.classifier = nn.Linear(48, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.layer:
            x = block(x)
        return self.classifier(x)


@pytest.fixture(scope="module")
def tiny_placed():
    """A 3-layer encoder on 32x32 tiles: dozens of tiles, shared tiles, several groups."""
    torch.manual_seed(0)
    hw = load_hw_spec("pcm_1M", {"tile.rows": 32, "tile.cols": 32})
    return compile_model(TinyEncoder().eval(), (torch.randn(1, 8, 48),), hw)


def accuracy_fixture(placed) -> dict:
    """An accuracy.json in the schema of docs/outputs.md, written by hand: input for the renderer (the
    simulator's own numbers are tested where it is), with a run without PT optimization beside it."""
    def results(worse: float) -> list[dict]:
        rows = []
        for label, seconds, k in (("1s", 1.0, 0.0), ("1h", 3600.0, 1.0), ("1d", 86400.0, 2.0), ("1y", 3.1536e7, 4.0)):
            per_seed = {"output_rel_l2": [0.05 + worse * k * 0.02 + d for d in (0.0, 0.004, 0.008)],
                        "top1_agreement": [1.0 - worse * k * 0.03 - d for d in (0.0, 0.01, 0.02)]}
            rows.append({"label": label, "seconds": seconds,
                         "mean": {m: sum(v) / 3 for m, v in per_seed.items()},
                         "std": {"output_rel_l2": 0.004, "top1_agreement": 0.01}, "per_seed": per_seed})
        return rows
    return {"schema_version": 1, "model": placed.model_info.name, "task": "custom", "hw": placed.hw.name,
            "hw_file": placed.hw.source_file, "weights": "real", "device": "cpu", "seeds": [0, 1, 2],
            "drift_times": [{"label": r["label"], "seconds": r["seconds"]} for r in results(1.0)],
            "eval": {"source": "the compile example inputs", "glue_task": None, "examples": 1, "batches": 1,
                     "batch_size": 16, "max_seq_len": 8},
            "output": "output",
            "metrics": {"output_rel_l2": {"description": "relative L2 error", "higher_is_better": False},
                        "top1_agreement": {"description": "argmax agreement", "higher_is_better": True}},
            "fp_reference": {"task": None}, "pt_optimization": True, "results": results(1.0),
            "results_without_pt_opt": results(2.0), "notes": ["a note <b>escaped</b>"], "elapsed_s": 1.0}


@pytest.fixture()
def mapping_dir(tmp_path: Path, tiny_placed) -> Path:
    (tmp_path / "mapping.json").write_text(json.dumps(mapping_json(tiny_placed)))
    return tmp_path


class _Collector(HTMLParser):
    """Elements by id, tile cells and layer rectangles of the rendered page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.tiles: list[str] = []
        self.layer_rects: list[dict] = []
        self.resource_urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "g" and a.get("class") == "tile":
            self.tiles.append(a["data-tile"])
        if tag == "rect" and a.get("class") == "w":
            self.layer_rects.append({**a, "tile": int(self.tiles[-1])})
        for key in ("src", "href", "xlink:href"):
            if a.get(key) and not a[key].startswith(("#", "data:")):
                self.resource_urls.append(a[key])


def _parse(html: str) -> _Collector:
    collector = _Collector()
    collector.feed(html)
    return collector


def test_report_from_mapping_alone(mapping_dir: Path, tiny_placed) -> None:
    path = write_report(mapping_dir)
    assert path == mapping_dir / "report.html"
    html = path.read_text()
    page = _parse(html)
    assert {"summary", "tiles", "layers", "hardware", "command"} <= page.ids
    assert not {"cost", "accuracy"} & page.ids           # no data, no section
    # Every used tile is drawn exactly once, and every layer slice as one rectangle.
    assert sorted(page.tiles, key=int) == [str(t) for t in sorted(tiny_placed.tile_utilization())]
    slices = sum(len(tiny_placed.layer_slices(p.node)) for p in tiny_placed.analog_layers())
    assert len(page.layer_rects) == slices
    assert f'<div class="v">{tiny_placed.tiles_used}</div>' in html
    assert not re.search(r"https?://", html), "the page must not reference any URL"
    assert page.resource_urls == []


def test_tile_map_rectangles_match_the_mapping(mapping_dir: Path, tiny_placed) -> None:
    """A rectangle's position inside its cell is its row/column range on the tile."""
    page = _parse(write_report(mapping_dir).read_text())
    view = build_mapping_view(MappingJson.from_json(mapping_json(tiny_placed)))
    rows, cols = tiny_placed.hw.tile.rows, tiny_placed.hw.tile.cols
    cell = max(float(r["x"]) + float(r["width"]) for r in page.layer_rects)  # a full-width slice exists
    drawn: dict[int, list[tuple]] = {}
    for rect in page.layer_rects:
        drawn.setdefault(int(rect["data-l"]), []).append(
            (rect["tile"], *(float(rect[k]) for k in ("x", "y", "width", "height"))))
    for layer in view.analog_layers:
        expected = [(p.tile, p.cols[0] / cols * cell, p.rows[0] / rows * cell,
                     (p.cols[1] - p.cols[0]) / cols * cell, (p.rows[1] - p.rows[0]) / rows * cell)
                    for p in layer.slices]
        got = drawn[layer.index]
        assert len(got) == len(expected), layer.name
        for a, b in zip(sorted(got, key=lambda r: (r[0], round(r[1]), round(r[2]))),
                        sorted(expected, key=lambda r: (r[0], round(r[1]), round(r[2])))):
            assert a[0] == b[0] and a[1:] == pytest.approx(b[1:], abs=0.01), layer.name


def test_random_weights_banner(mapping_dir: Path) -> None:
    html = write_report(mapping_dir).read_text()
    assert 'id="random-weights"' not in html                   # TinyEncoder's weights are its own
    data = json.loads((mapping_dir / "mapping.json").read_text())
    data.update(weights="random", weights_source="bundled config")
    (mapping_dir / "mapping.json").write_text(json.dumps(data))
    html = write_report(mapping_dir).read_text()
    assert 'id="random-weights"' in html and "RANDOM WEIGHTS" in html


def test_rerender_keeps_the_command(mapping_dir: Path) -> None:
    command = "aimc-compile tiny --hw pcm_1M --set tile.rows=32 --out '</script>x'"
    write_report(mapping_dir, command=command)
    html = write_report(mapping_dir).read_text()                 # as `aimc-compile report DIR` does
    assert "aimc-compile tiny --hw pcm_1M --set tile.rows=32" in html
    assert html.count("</script>") == 2                          # the command cannot close a script early


def test_missing_or_broken_inputs_are_schema_errors(tmp_path: Path, mapping_dir: Path) -> None:
    with pytest.raises(SchemaError, match="mapping.json"):
        write_report(tmp_path / "nowhere")
    (mapping_dir / "cost.json").write_text("{not json")
    with pytest.raises(SchemaError, match="cost.json"):
        write_report(mapping_dir)


@pytest.mark.parametrize("name, group, label, role", [
    ("roberta.encoder.layer.11.attention.self.query", "roberta.encoder.layer.11", "layer 11", "attention.self.query"),
    ("transformer.h.3.mlp.c_fc", "transformer.h.3", "layer 3", "mlp.c_fc"),
    ("distilbert.transformer.layer.0.ffn.lin1", "distilbert.transformer.layer.0", "layer 0", "ffn.lin1"),
    ("classifier.out_proj", "classifier", "classifier", "classifier.out_proj"),
    ("", "model", "model", ""),
])
def test_split_group(name: str, group: str, label: str, role: str) -> None:
    assert split_group(name) == (group, label, role)


def test_number_formats() -> None:
    assert si(1.525016e-3, "J") == "1.53 mJ"
    assert si(4.3052e-4, "s") == "431 µs"
    assert si(15378.9, "/s") == "15.4 k/s"
    assert si(0.0, "J") == "0 J"
    assert si(None) == "—"
    assert si(999.9, "W") == "1 kW"
    assert span(0.5, 0.5) == "0.5" and span(0.25, 2.0) == "0.25 – 2"


def test_cost_and_accuracy_sections(mapping_dir: Path, tiny_placed) -> None:
    cost = cost_json(tiny_placed.estimate(batch=1, seq_len=8))
    (mapping_dir / "cost.json").write_text(json.dumps(cost))
    html = write_report(mapping_dir).read_text()
    page = _parse(html)
    assert {"cost", "fig-components", "fig-baseline", "fig-layers", "fig-sweep", "cost-table"} <= page.ids
    assert "accuracy" not in page.ids
    # how far the cost model was off on published silicon: every figure of cost.json's validation, one row each
    validation = cost["validation"]
    assert {"cost-validation", "cost-validation-table"} <= page.ids and validation["chips"]
    rows = re.search(r'id="cost-validation-table">.*?<tbody>(.*?)</tbody>', html, re.S).group(1)
    assert rows.count("<tr>") == len(validation["figures"]) + len(validation["baseline_figures"]) > 0
    assert si(cost["totals"]["energy_per_inference_J"], "J") in html
    assert html.count('<svg class="chart"') == 5
    (mapping_dir / "accuracy.json").write_text(json.dumps(accuracy_fixture(tiny_placed)))
    html = write_report(mapping_dir).read_text()
    page = _parse(html)
    assert {"accuracy", "fig-accuracy", "accuracy-table-0", "accuracy-table-1"} <= page.ids
    assert "a note &lt;b&gt;escaped&lt;/b&gt;" in html
    assert not re.search(r"https?://", html)
    assert len(set(re.findall(r'\bid="([^"]+)"', html))) == len(re.findall(r'\bid="([^"]+)"', html)), "duplicate ids"


def test_accuracy_without_results_or_metrics_is_omitted_not_broken(mapping_dir: Path, tiny_placed) -> None:
    accuracy = accuracy_fixture(tiny_placed)
    accuracy.update(results=[], metrics={}, results_without_pt_opt=None)
    (mapping_dir / "accuracy.json").write_text(json.dumps(accuracy))
    html = write_report(mapping_dir).read_text()
    assert "fig-accuracy" not in html and 'id="card-accuracy"' not in html


def test_overridden_spec_values_are_marked(mapping_dir: Path) -> None:
    data = json.loads((mapping_dir / "mapping.json").read_text())
    assert data["hw_spec"]["tile"]["rows"] == 32                 # the fixture's --set tile.rows=32
    html = write_report(mapping_dir).read_text()
    marked = set(re.findall(r'class="override" data-key="([^"]+)"', html))
    assert marked == {"tile.rows", "tile.cols"}


def test_roberta_naive_report_stays_small(tmp_path: Path, roberta_placed_naive) -> None:
    """The largest map we ship (486 tiles) with every chart: one file well under 5 MB."""
    (tmp_path / "mapping.json").write_text(json.dumps(mapping_json(roberta_placed_naive)))
    (tmp_path / "cost.json").write_text(json.dumps(cost_json(roberta_placed_naive.estimate(batch=1, seq_len=128))))
    html = write_report(tmp_path).read_text()
    assert len(html.encode()) < 5 * 2**20
    assert len(_parse(html).tiles) == roberta_placed_naive.tiles_used == 486
    assert not re.search(r"https?://", html)


def test_layer_table_shows_stage_energy_when_cost_lists_stages(mapping_dir: Path, tiny_placed) -> None:
    """With per-stage costs in cost.json, a fused block's energy is split over its layers by columns."""
    mapping = mapping_json(tiny_placed)
    fused = next(b for b in mapping["blocks"] if len(b["layers"]) > 1)
    digital = next(entry for entry in mapping["layers"] if entry["kind"] == "digital")
    cost = cost_json(tiny_placed.estimate(batch=1, seq_len=8))
    cost["stages"] = [{"name": fused["name"], "energy_J": 3e-9, "busy_s": 2e-6},
                      {"name": digital["node"], "energy_J": 5e-10, "busy_s": 1e-7}]
    (mapping_dir / "cost.json").write_text(json.dumps(cost))
    html = write_report(mapping_dir).read_text()
    rows = dict(re.findall(r'<tr data-kind="[^"]+" data-node="([^"]+)">(.*?)</tr>', html, flags=re.S))
    by_node = {entry["node"]: entry for entry in mapping["layers"]}
    for node in fused["layers"]:
        share = by_node[node]["out_features"] / fused["out_features"]
        assert f'data-v="{3e-9 * share}"' in rows[node] and si(2e-6, "s") in rows[node]
    assert si(5e-10, "J") in rows[digital["node"]]


def test_cost_and_accuracy_missing_their_optional_parts_still_render(mapping_dir: Path, tiny_placed) -> None:
    """Every optional part removed at once: each is read independently, so none may break the page."""
    cost = cost_json(tiny_placed.estimate(batch=1, seq_len=8))
    latency = si(cost["totals"]["latency_s"], "s")
    for key in ("peak", "baseline", "sweep", "schedule", "counts", "layers", "energy_by_component_J",
                "has_sequence_dim"):
        del cost[key]
    accuracy = accuracy_fixture(tiny_placed)
    for key in ("fp_reference", "notes", "device", "results_without_pt_opt", "pt_optimization", "eval"):
        del accuracy[key]
    for result in accuracy["results"]:
        del result["std"], result["per_seed"]
    (mapping_dir / "cost.json").write_text(json.dumps(cost))
    (mapping_dir / "accuracy.json").write_text(json.dumps(accuracy))
    html = write_report(mapping_dir).read_text()
    assert 'id="cost"' in html and latency in html and 'id="fig-accuracy"' in html
    del cost["totals"]
    accuracy["results"][0]["mean"] = {}
    (mapping_dir / "cost.json").write_text(json.dumps(cost))
    (mapping_dir / "accuracy.json").write_text(json.dumps(accuracy))
    html = write_report(mapping_dir).read_text()
    assert 'id="cost"' in html and 'id="fig-accuracy"' in html


def test_a_minimal_mapping_renders_and_an_incomplete_one_is_a_schema_error(tmp_path: Path) -> None:
    """Only the required fields of reports/schema.py are needed; the rest are derived or left out."""
    layers = [{"name": "fc", "node": "linear", "kind": "analog", "in_features": 8, "out_features": 4,
               "tiles": [{"tile": 0, "rows": [0, 8], "cols": [0, 4], "in_features": [0, 8], "out_features": [0, 4]}]}]
    mapping = {"model": "m", "hw": "h", "tile_shape": [8, 8], "tiles_used": 1, "layers": layers}
    (tmp_path / "mapping.json").write_text(json.dumps(mapping))
    html = write_report(tmp_path).read_text()
    assert len(_parse(html).layer_rects) == 1 and 'id="random-weights"' not in html
    del mapping["tiles_used"]
    (tmp_path / "mapping.json").write_text(json.dumps(mapping))
    with pytest.raises(SchemaError, match="tiles_used"):
        write_report(tmp_path)
