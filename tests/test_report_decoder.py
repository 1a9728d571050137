"""A causal LM's report leads with its serving figures (issue 24, item 7): the summary cards J/token, tokens/s
(aggregate and per sequence) and TTFT at the run's batch; a decode step's energy by component; its per-layer
latency; what bounds it (compute, memory, links) against context and batch."""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest
import transformers as tf

from compiler import compile_model, load_hw_spec, load_model
from compiler.backends.estimator.schedule import (CHIP_LINK, DRAM_PACKAGE, Resource, Stage, critical_path_by_kind, schedule,
                                                  tile)
from compiler.writers import cost_json, mapping_json
from reports import write_report
from reports.fmt import integer, si

LLAMA = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=128)


def test_the_critical_path_splits_by_what_each_stage_works_on():
    """Three stages in a chain: tiles (compute), a chip link, a DRAM read; each counts from its predecessor's
    finish to its own, and the parts sum to the critical path."""
    stages = [Stage("a", "a", "l0", 4, 1e-6, (), {}, busy_s={tile(0): 4e-6}),
              Stage("ab", "chip 0->1: a", "l0", 4, 0.5e-6, ("a",), {}, busy_s={Resource(CHIP_LINK, 0): 2e-6},
                    delay_s=20e-9),
              Stage("b", "b", "l1", 4, 2e-6, ("ab",), {}, busy_s={tile(600): 1e-6, Resource(DRAM_PACKAGE, 0): 8e-6})]
    timing = schedule(stages)
    parts = critical_path_by_kind(stages, timing)
    finish = timing.finish_s
    assert parts == pytest.approx({"compute": finish["a"], "links": finish["ab"] - finish["a"],
                                   "memory": finish["b"] - finish["ab"]})
    assert sum(parts.values()) == pytest.approx(timing.critical_path_s)
    assert parts["links"] > 0 and parts["memory"] > parts["compute"]


class _Cards(HTMLParser):
    """The summary's cards in order: (id, key, value, detail)."""

    def __init__(self):
        super().__init__()
        self.cards, self._where, self._section = [], None, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self._section = a.get("id")
        if self._section != "summary" or tag != "div":
            return
        classes = (a.get("class") or "").split()
        if "card" in classes:
            self.cards.append([a.get("id"), "", "", ""])
        elif self.cards and classes[:1] in (["k"], ["v"], ["d"]):
            self._where = {"k": 1, "v": 2, "d": 3}[classes[0]]

    def handle_endtag(self, tag):
        if tag == "div":
            self._where = None

    def handle_data(self, data):
        if self._where is not None:
            self.cards[-1][self._where] += data


@pytest.fixture(scope="module")
def llama_report(tmp_path_factory):
    """A two-layer Llama on 16x16 tiles, 160 to a chip (its layers on several chips), batch 4: the files and the
    report as the CLI writes them."""
    folder = tmp_path_factory.mktemp("llama")
    (folder / "config.json").write_text(tf.LlamaConfig(**LLAMA).to_json_string())
    model, example = load_model(str(folder), seq_len=16, materialize=False)
    hw = load_hw_spec("pcm_1M", {"tile.rows": 16, "tile.cols": 16, "tile.count": 160, "tile.max_chips": 100})
    placed = compile_model(model, example, hw)
    cost = cost_json(placed.estimate(batch=4, seq_len=16, gen_len=16, sensitivity=False), placed.strategies)
    (folder / "mapping.json").write_text(json.dumps(mapping_json(placed)))
    (folder / "cost.json").write_text(json.dumps(cost))
    return cost, write_report(folder).read_text()


def test_the_summary_leads_with_j_per_token_tokens_per_s_and_ttft(llama_report):
    cost, html = llama_report
    d = cost["decode"]
    parser = _Cards()
    parser.feed(html)
    first = {card[0]: card for card in parser.cards[:3]}
    assert list(first) == ["card-lm-j-per-token", "card-lm-tokens-per-s", "card-lm-ttft"]
    assert first["card-lm-j-per-token"][2] == si(d["energy_per_token_J"], "J")
    assert first["card-lm-tokens-per-s"][1] == "Tokens / s, batch 4"
    assert first["card-lm-tokens-per-s"][2] == integer(d["tokens_per_s"])
    assert first["card-lm-tokens-per-s"][3].startswith(integer(d["tokens_per_s"] / 4) + " per sequence")
    assert first["card-lm-ttft"][2] == si(d["ttft_s"], "s")
    assert "card-latency" not in [c[0] for c in parser.cards]   # the prefill's latency is the TTFT, shown once


def test_a_decode_step_by_component_layer_and_bound(llama_report):
    cost, html = llama_report
    d = cost["decode"]
    parts = d["decode_step_energy_by_component_J"]
    assert sum(parts.values()) == pytest.approx(d["decode_step_energy_J"])
    rows = re.search(r'<table id="decode-step-breakdown">(.*?)</table>', html, re.S).group(1)
    assert rows.count("<tr>") - 1 == sum(1 for v in parts.values() if v) + 1   # header, components, total
    assert 'id="decode-step-layers"' in html and len(d["decode_step_layer_latency_s"]) >= 3
    # what bounds each step: its critical path by kind, within its latency; links where layers cross chips
    steps = [(c["bound_s"], c["latency_s"]) for c in d["contexts"]]
    steps += [(b["decode_step_bound_s"], b["decode_step_latency_s"]) for b in d["by_batch"]]
    assert len(steps) >= 5
    for bound, latency in steps:
        assert set(bound) == {"compute", "memory", "links"} and 0 < sum(bound.values()) <= latency * (1 + 1e-9)
    assert cost["links"]["crossings"] > 0 and all(b["links"] > 0 for b, _ in steps)
    assert 'id="fig-decode-bounds"' in html and "chip links" in html


def test_a_kv_cache_partly_in_dram_is_shaded(llama_report):
    """The context chart shades where the cache leaves the package's SRAM, also when only part of it spills."""
    from reports.decode_charts import decode_vs_context
    from reports.schema import CostJson
    cost, _ = llama_report
    label = "KV cache (partly) in DRAM"
    assert label not in decode_vs_context(CostJson.from_json(cost))
    spilled = json.loads(json.dumps(cost))
    spilled["decode"]["contexts"][-1]["kv_location"] = "sram+dram"
    assert label in decode_vs_context(CostJson.from_json(spilled))
