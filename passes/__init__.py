"""Compiler passes over a PlacedGraph: each a plain function, testable alone."""
from passes.partition import partition
from passes.tile_allocation import STRATEGIES, allocate_tiles

__all__ = ["partition", "allocate_tiles", "STRATEGIES"]
