"""Energy / latency / area / throughput estimator: the second backend of the PlacedGraph.

    cost = estimate(placed, batch=1, seq_len=128)      # what PlacedGraph.estimate calls
    cost.to_json()                                      # cost.json (docs/outputs.md)
    peak_throughput(hw)                                 # all tiles busy: the figure chips are quoted with
    check_prices(hw)                                    # every priced spec field there, before any work

The component model and the validations (HERMES, Ambrogio et al. 2023) are in docs/estimator.md; every spec
field it reads in docs/specs.md.
"""
from compiler.backends.estimator.estimate import estimate
from compiler.backends.estimator.peak import PeakThroughput, peak_throughput
from compiler.backends.estimator.prices import check_prices
from compiler.backends.estimator.report import CostReport, LayerCost

__all__ = ["CostReport", "LayerCost", "PeakThroughput", "check_prices", "estimate", "peak_throughput"]
