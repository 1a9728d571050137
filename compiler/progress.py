"""What the terminal shows: progress bars only where a person watches, whole lines everywhere else.

A tqdm bar redraws itself with carriage returns; written into a pipe or a log file it becomes one long line
that swallows the log lines around it (`aimc-compile ... 2>&1 | grep ^mapped` then misses them). So a bar is
drawn only when stderr is a terminal. Elsewhere `bar` returns a stand-in that counts silently and, at the
verbose level, says one line per finished part of a stage. `say` writes the CLI's stage lines at a level,
through `printable`: a model or spec name is untrusted text, and its control characters (an escape sequence
that clears the screen or sets the window title, a carriage return or newline that forges a line) are shown
escaped, never sent to the terminal.
The CLI sets the level (--quiet, --verbose); the Python API runs at the normal level. Standard library only
(tqdm is imported when a bar is drawn).
"""
from __future__ import annotations

import contextlib
import re
import sys
import time
from collections.abc import Iterable, Iterator

QUIET, NORMAL, VERBOSE = 0, 1, 2
_level = NORMAL


def set_level(level: int) -> None:
    """QUIET: no bars and no stage lines; NORMAL: bars on a terminal; VERBOSE: also lines off a terminal."""
    global _level
    if level not in (QUIET, NORMAL, VERBOSE):
        raise ValueError(f"progress level must be QUIET, NORMAL or VERBOSE, got {level!r}")
    _level = level


def level() -> int:
    return _level


def on_terminal() -> bool:
    """Whether stderr (where bars and log lines go) is a terminal."""
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):  # no stderr, or a closed one
        return False


def bars_shown() -> bool:
    """Whether progress bars are drawn now (also asked for third-party bars, e.g. transformers' loading)."""
    return _level > QUIET and on_terminal()


# C0 and C1 controls (ESC, CSI, BEL, CR, LF, ...), DEL, and the Unicode line separators and bidirectional
# overrides that make a terminal show text in another order than it is
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: object) -> str:
    """`text` for a terminal: every control character escaped as Python writes it (`\\x1b`, `\\n`,
    `\\u202e`), the rest unchanged. For any line that carries a name or path from the user or a file."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(text))


def say(message: str, level: int = NORMAL) -> None:
    """One line on stderr at `level` and above (QUIET: always; warnings and a run's final line), its control
    characters escaped (printable). Flushed at once, so that in a pipe it keeps its place among the lines of
    other writers."""
    if _level >= level:
        print(printable(message), file=sys.stderr, flush=True)


@contextlib.contextmanager
def timed(what: str) -> Iterator[None]:
    """At VERBOSE, a line saying how long the work inside took."""
    started = time.perf_counter()
    yield
    say(f"  {what} in {time.perf_counter() - started:.1f} s", VERBOSE)


def bar(iterable: Iterable | None = None, *, desc: str, total: int | None = None, unit: str = "it",
        leave: bool = True, enabled: bool = True):
    """A tqdm bar on a terminal; elsewhere a silent stand-in with the same methods (iteration, update,
    set_description, set_postfix, close, `with`). `enabled=False`: never a bar (a caller's own switch)."""
    if enabled and bars_shown():
        from tqdm import tqdm
        return tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave, file=sys.stderr, dynamic_ncols=True)
    return _Lines(iterable, desc, unit, lines=enabled and _level >= VERBOSE)


class _Lines:
    """The bar off a terminal: nothing redrawn; with `lines`, one line per description when its work ends."""

    def __init__(self, iterable: Iterable | None, desc: str, unit: str, lines: bool):
        self._iterable, self._desc, self._unit, self._lines = iterable, desc, unit, lines
        self._count, self._postfix, self._started = 0, "", time.perf_counter()
        self.n = 0

    def __iter__(self) -> Iterator:
        for item in self._iterable if self._iterable is not None else ():
            yield item
            self.update(1)
        self.close()

    def update(self, n: int = 1) -> None:
        self._count += n
        self.n += n

    def set_description(self, desc: str, refresh: bool = True) -> None:
        if desc != self._desc:
            self._say()
            self._desc = desc

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        self._postfix = ", ".join(f"{k} {v}" for k, v in {**(ordered_dict or {}), **kwargs}.items())

    def close(self) -> None:
        self._say()

    def _say(self) -> None:
        """One line for the work done under the current description, if any (and only at --verbose)."""
        now = time.perf_counter()
        if self._lines and self._count:
            unit = self._unit if self._count == 1 else _plural(self._unit)
            postfix = f"; {self._postfix}" if self._postfix else ""
            print(printable(f"  {self._desc}: {self._count} {unit} in {now - self._started:.1f} s{postfix}"),
                  file=sys.stderr, flush=True)
        self._count, self._started = 0, now

    def __enter__(self) -> "_Lines":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _plural(unit: str) -> str:
    return unit + ("es" if unit.endswith(("s", "x", "ch", "sh")) else "s")
