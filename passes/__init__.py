"""Compiler passes over a PlacedGraph: each a plain function, testable alone."""
from passes.partition import partition
from passes.range_optimization import calibrate_ranges, optimize_column_ranges, optimize_input_ranges
from passes.ranges import assign_ranges, calibration_inputs
from passes.tile_allocation import STRATEGIES, allocate_tiles

__all__ = ["partition", "allocate_tiles", "STRATEGIES", "assign_ranges", "calibration_inputs", "calibrate_ranges",
           "optimize_column_ranges", "optimize_input_ranges"]
