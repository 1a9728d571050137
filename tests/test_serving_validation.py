"""The GPU-class baseline against published serving measurements (issue 24, item 2): every point of
hw_specs/serving_validation.yaml predicted by serving terms fitted without it (throughput) or on the throughput points
only (time to first token) stays within the bounds the data file records, and gpu_h100's terms are the fit on every
throughput point. ~30 s: it maps LLaMA-2-7B's and GPT-J's shapes at 2 and 3 layers and fits a grid per held-out
point."""
from dataclasses import replace

import pytest

from compiler.serving import THROUGHPUT, TTFT, Validation, load_validation
from compiler.hw_spec import load_baseline_spec


def test_held_out_errors_stay_within_the_recorded_bounds():
    data = load_validation()
    assert sum(p.metric == THROUGHPUT for p in data["points"]) >= 2 and any(p.batch == 1 for p in data["points"])
    validation = Validation()
    (efficiency, overhead), predictions = validation.run()
    spec = load_baseline_spec("gpu_h100")
    assert spec.dram_efficiency == pytest.approx(efficiency) and spec.layer_overhead_us == pytest.approx(overhead)
    for pr in predictions:
        lo, hi = data["bounds"][pr.point.metric]
        assert lo <= pr.error <= hi, (pr.point, pr.predicted)
        if pr.point.metric == THROUGHPUT:  # the done-when: within +-30 % of the published throughput
            assert abs(pr.error) <= 0.30
    assert {pr.point.metric for pr in predictions} == {THROUGHPUT, TTFT}
    # held out: doubling a point's published figure moves the fit (the others' predictions), never its own
    k = next(i for i, p in enumerate(validation.data["points"]) if p.metric == THROUGHPUT and p.batch == 1)
    first = validation.data["points"][k]
    validation.data["points"][k] = replace(first, published=first.published * 2)
    again = validation.run()[1]
    assert again[k].predicted == predictions[k].predicted
    assert any(a.predicted != b.predicted for a, b in zip(again, predictions) if a.point.metric == TTFT)
