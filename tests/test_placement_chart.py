"""The report's placement frontier (reports/placement_chart.py): drawn from the strategies the search tried,
the chosen one marked; absent when there is nothing to compare."""
from __future__ import annotations

from reports.placement_chart import _front, frontier
from reports.schema import Strategy


def _strategy(name, tiles, latency_us, per_s, chosen=False):
    return Strategy(name=name, tiles=tiles, latency_s=latency_us * 1e-6, period_s=1.0 / per_s,
                    throughput_per_s=per_s, copies=0, chosen=chosen)


def test_frontier_marks_the_chosen_mapping() -> None:
    rows = [_strategy("naive", 486, 216.1, 54253), _strategy("packed", 327, 430.5, 15379),
            _strategy("slack", 457, 216.1, 54253), _strategy("slack, 17 least busy packed", 394, 216.1, 20505, True)]
    svg = frontier(rows)
    assert svg is not None and svg.startswith("<svg") and "chosen" in svg and "slack+17 packed" in svg
    assert frontier(rows[:1]) is None
    assert frontier([Strategy(name="packed", tiles=327), Strategy(name="naive", tiles=486)]) is None  # no schedule
    # the front over tiles: naive (486 tiles, no better than slack at 457) is off it on both panels
    latency = [(r.tiles, r.latency_s) for r in rows]
    assert sorted(_front(latency, higher_is_better=False)) == [1, 3]
    throughput = [(r.tiles, r.throughput_per_s) for r in rows]
    assert sorted(_front(throughput, higher_is_better=True)) == [1, 2, 3]
