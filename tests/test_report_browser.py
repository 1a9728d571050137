"""The report in a real browser: headless Chromium (Debian's `chromium`) driven by Playwright.

Checks that the page loads from file:// with no console error and no network request, that its key
sections and numbers are there and equal to the JSON, that the layer table sorts and filters, that the
tile map's tooltip names the layer, and saves a 1440x900 screenshot. Skipped, saying why, when Chromium
or Playwright is missing (`make test` installs Chromium when run as root; playwright is a dev extra).
"""
from __future__ import annotations

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


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory, tiny_placed) -> Path:
    out = tmp_path_factory.mktemp("report")
    (out / "mapping.json").write_text(json.dumps(tiny_placed.to_json()))
    (out / "cost.json").write_text(json.dumps(tiny_placed.estimate(batch=1, seq_len=8).to_json()))
    (out / "accuracy.json").write_text(json.dumps(accuracy_fixture(tiny_placed)))
    write_report(out, command="aimc-compile tiny --hw pcm_1M --set tile.rows=32 --set tile.cols=32 --simulate")
    return out


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser, report_dir):
    """The report opened at 1440x900; records console errors and every non-file request (then blocks it)."""
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
    page.goto((report_dir / "report.html").as_uri(), wait_until="load")
    yield page
    context.close()


def test_loads_offline_without_errors(page, report_dir: Path) -> None:
    assert page.console_errors == []
    assert page.network == []
    for section in ("summary", "tiles", "layers", "cost", "accuracy", "hardware", "command"):
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
