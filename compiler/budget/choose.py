"""The exact choice: one option per block, minimizing the summed cost subject to the summed predicted drop <= a limit
and the summed SRAM use <= the SRAM left free (a multiple-choice knapsack with two constraints).

Solved exactly by dynamic programming over Pareto sets: block by block, the partial assignments kept are those no
other partial assignment beats in cost, drop and SRAM at once (a dominated one can never complete to a better
whole), less those that cannot meet the limits even with the smallest drop and SRAM the remaining blocks allow.
The last set, restricted to the limits, holds the optimum; its cost-drop front is the frontier the report draws.
Pure Python on numbers: tests check it against brute force (tests/test_budget.py).
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

# a partial set beyond this many assignments is thinned (drops rounded up to 1e-6, i.e. conservatively); the result
# then says `exact: False`. MiniLM's 24 blocks x 5 options stay far below it (docs/accuracy_budget.md).
MAX_FRONT = 200_000
_ROUND = 1e-6


@dataclass(frozen=True)
class Choice:
    """One option of one block: what it adds to the assignment's cost, predicted drop and SRAM use."""
    cost: float
    drop: float
    sram: float = 0.0


@dataclass(frozen=True)
class Assignment:
    picks: tuple[int, ...]           # per block, the index of its option
    cost: float
    drop: float
    sram: float


@dataclass(frozen=True)
class Solution:
    """Every assignment within the SRAM limit that no other beats in cost, drop and SRAM at once: the optimum for
    any drop limit is among them (`best`), so tightening the limit needs no new search."""
    whole: list[Assignment]
    exact: bool

    def best(self, drop_limit: float) -> Assignment | None:
        """The least cost with drop <= drop_limit (ties: the smaller drop); None when no assignment meets it."""
        feasible = [a for a in self.whole if a.drop <= drop_limit]
        return min(feasible, key=lambda a: (a.cost, a.drop)) if feasible else None

    @property
    def min_drop(self) -> float:
        """The smallest predicted drop any assignment within the SRAM limit reaches (inf: none fits)."""
        return min((a.drop for a in self.whole), default=math.inf)

    def front(self) -> list[Assignment]:
        """The assignments no other beats in both cost and drop, by increasing cost."""
        front: list[Assignment] = []
        for a in sorted(self.whole, key=lambda a: (a.cost, a.drop)):
            if not front or a.drop < front[-1].drop:
                front.append(a)
        return front


def solve(blocks: list[list[Choice]], sram_limit: float = math.inf) -> Solution:
    """`blocks[b][i]`: option i of block b. Every non-dominated whole assignment with SRAM <= sram_limit."""
    if not blocks or any(not options for options in blocks):
        raise ValueError("every block needs at least one option")
    # least SRAM the blocks after b can still add: what prunes a partial assignment early
    rest_sram = [0.0] * (len(blocks) + 1)
    for b in range(len(blocks) - 1, -1, -1):
        rest_sram[b] = rest_sram[b + 1] + min(c.sram for c in blocks[b])
    exact = True
    partial: list[tuple[float, float, float, tuple[int, ...]]] = [(0.0, 0.0, 0.0, ())]
    for b, options in enumerate(blocks):
        grown = [(cost + c.cost, drop + c.drop, sram + c.sram, picks + (i,))
                 for cost, drop, sram, picks in partial for i, c in enumerate(options)
                 if sram + c.sram + rest_sram[b + 1] <= sram_limit]
        partial = _pareto(grown)
        if len(partial) > MAX_FRONT:
            exact = False
            partial = _pareto([(cost, math.ceil(drop / _ROUND) * _ROUND, sram, picks)
                               for cost, drop, sram, picks in partial])
    return Solution([Assignment(picks, cost, drop, sram) for cost, drop, sram, picks in partial], exact)


def _pareto(points: list[tuple[float, float, float, tuple[int, ...]]]) -> list:
    """The points no other point beats in all of cost, drop and SRAM (ties kept once)."""
    points.sort(key=lambda p: (p[0], p[1], p[2]))
    kept: list = []
    # sweep by cost: a point survives unless a kept (cheaper or equal) point has both drop and SRAM <= its own. The
    # staircase: the kept points' drops, increasing, and per entry the least SRAM of the kept points up to that drop
    drops: list[float] = []
    least: list[float] = []
    for p in points:
        _, drop, sram, _ = p
        at = bisect.bisect_right(drops, drop)
        if at and least[at - 1] <= sram:
            continue
        kept.append(p)
        drops.insert(at, drop)
        least.insert(at, min(sram, least[at - 1]) if at else sram)
        i = at + 1
        while i < len(least) and least[i] > sram:  # prefix minima: stop at the first entry already as low
            least[i] = sram
            i += 1
    return kept
