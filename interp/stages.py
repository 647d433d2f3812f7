"""Stage headers for long commands: one line per stage, with the clock and the time elapsed.

A long command (`python -m interp.train`, `analyses/paper.py` and its experiments) says
where it is with lines such as

    [12:03 +4m10s] stage 2/3: β sweep (F2)
    [12:03 +4m10s] stage 2/3 › 1/2: train 28 dpo runs, β 0.01…1 (sweep preset, seed 0)

on stdout: the wall-clock time (HH:MM, local), the time since the outermost list of stages
began, the stage's number out of how many, and what it does. Progress bars say this on a
terminal, but they are off or invisible when stdout goes to a file (`make paper > log`),
so headers are printed when stdout is not a terminal; `show=True` prints them anyway.

Lists nest: a `Stages` opened while another is open (an experiment inside `paper.py`,
training inside an experiment) numbers its stages under the current stage of the outer
one and shares its clock and its start, so elapsed times count from the command's start.

    with Stages(3) as stage:
        stage("grokking (F1)")
        ...

    for seed in each(seeds, lambda s: f"seed {s}"):   # a loop, one stage per item
        ...

This module sits at the bottom layer (beside `errors` and `options`): it imports nothing
from `interp`, so training (`interp.runs`), commands and the experiments can all use it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TextIO, TypeVar

T = TypeVar("T")

_open: list[Stages] = []  # the lists of stages now open, outermost first


def format_elapsed(seconds: float) -> str:
    """`+12s`, `+4m10s`, `+1h02m03s`: whole seconds, the largest unit first."""
    s = max(0, int(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"+{h}h{m:02d}m{s:02d}s"
    if m:
        return f"+{m}m{s:02d}s"
    return f"+{s}s"


def header(now: float, start: float, label: str, title: str) -> str:
    """One stage header: `[HH:MM +elapsed] stage <label>: <title>` (HH:MM in local time)."""
    clock = time.strftime("%H:%M", time.localtime(now))
    return f"[{clock} {format_elapsed(now - start)}] stage {label}: {title}"


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class Stages:
    """A numbered list of `total` stages; calling it (`stage("title")`) starts the next one
    and prints its header. Use it as a context manager, so that lists opened inside it
    nest under its current stage.

    `stream` (default: sys.stdout at the time of printing), `show` (None: print when the
    stream is not a terminal; False: never) and `clock` (seconds since the epoch): a
    nested list takes the outer one's clock and start, and its stream and `show` unless
    it is given its own."""

    def __init__(
        self,
        total: int,
        *,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.time,
        show: bool | None = None,
    ):
        self.total = total
        self.done = 0
        self._stream, self._clock, self._show = stream, clock, show
        self._parent: Stages | None = None
        self._start: float | None = None  # the outermost list's start (set on entering)

    def __enter__(self) -> Stages:
        self._parent = _open[-1] if _open else None
        if self._parent is not None:  # its clock and start; its stream and show unless given
            p = self._parent
            self._clock, self._start = p._clock, p._start
            self._stream = self._stream if self._stream is not None else p._stream
            self._show = self._show if self._show is not None else p._show
        else:
            self._start = self._clock()
        _open.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        if self in _open:
            del _open[_open.index(self) :]  # and any inner list left open by an exception

    @property
    def label(self) -> str:
        """The current stage's number, under the outer lists' current ones: `2/3 › 1/2`."""
        own = f"{self.done}/{self.total}"
        return own if self._parent is None else f"{self._parent.label} › {own}"

    def __call__(self, title: str) -> None:
        """Start the next stage: print its header (flushed, so a log file shows it now)."""
        self.done += 1
        if self._start is None:  # used without `with`: count from the first stage
            self._start = self._clock()
        stream = self._stream if self._stream is not None else sys.stdout
        show = self._show if self._show is not None else not _is_terminal(stream)
        if show:
            print(header(self._clock(), self._start, self.label, title), file=stream, flush=True)


def each(items: Sequence[T], title: Callable[[T], str]) -> Iterator[T]:
    """The items, each one a stage titled `title(item)`: `for seed in each(seeds, f)` is a
    loop whose body can open nested lists (training inside it numbers under it)."""
    with Stages(len(items)) as stage:
        for item in items:
            stage(title(item))
            yield item
