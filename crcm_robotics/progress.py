"""Progress output that suits where it goes: live tqdm bars on a terminal, sparse lines elsewhere.

A tqdm bar piped to a file (CI logs, a robot's journal) writes a carriage-return
update several times a second; split into lines, a two-minute job leaves
hundreds of ``34%|███▍ …`` fragments. :func:`progress` returns a tqdm bar when
the stream is a TTY and otherwise a :class:`LineProgress`, which prints one
plain line when another ``percent_step`` (10 %) of the total is done, at most
one per ``min_interval_s`` (10 s), and a heartbeat line when ``heartbeat_s``
(60 s) pass without one; plus one at the end. A bar so leaves at most about a
dozen lines however fast it runs, and a slow one still shows it is alive.
Both take the same calls: iterate, ``update``, ``set_postfix``, ``write``, ``close``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

PERCENT_STEP = 10.0  # non-TTY: one line per this much of the total …
MIN_INTERVAL_S = 10.0  # … but not within this many seconds of the previous line
HEARTBEAT_S = 60.0  # and one line after this long without any


class LineProgress:
    """tqdm's small surface used here, printing ``desc: 40/300 (13%) 2.1 it/s 19s loss=0.1`` lines."""

    def __init__(self, iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "",
                 unit: str = "it", initial: int = 0, disable: bool = False, stream: TextIO | None = None,
                 percent_step: float = PERCENT_STEP, min_interval_s: float = MIN_INTERVAL_S,
                 heartbeat_s: float = HEARTBEAT_S, clock=time.monotonic):
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = initial + len(iterable)  # type: ignore[arg-type]
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.n, self.disable, self.stream = initial, disable, stream
        self.percent_step, self.min_interval_s, self.heartbeat_s = percent_step, min_interval_s, heartbeat_s
        self.clock = clock
        self.postfix = ""
        self.start = self.last_time = clock()
        self.start_n = self.last_n = initial
        self.closed = False

    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("LineProgress: iterating needs an iterable; none was given")
        for item in self.iterable:
            yield item
            self.update(1)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.disable:
            return
        now = self.clock()
        step_done = bool(self.total) and self.percent_step > 0 and self._steps(self.n) > self._steps(self.last_n)
        quiet_for = now - self.last_time
        if (step_done and quiet_for >= self.min_interval_s) or quiet_for >= self.heartbeat_s:
            self._print(now)

    def _steps(self, n: int) -> int:
        """How many whole ``percent_step`` slices of the total ``n`` has completed."""
        return int(100 * n / self.total / self.percent_step) if self.total else 0

    def set_postfix(self, **values: Any) -> None:
        self.postfix = " ".join(f"{k}={v}" for k, v in values.items())

    def write(self, text: str) -> None:
        if not self.disable:
            print(text, file=self._out(), flush=True)

    def close(self) -> None:
        if not self.closed and not self.disable and self.n != self.last_n:
            self._print(self.clock())
        self.closed = True

    def _out(self) -> TextIO:
        return self.stream if self.stream is not None else sys.stderr

    def _print(self, now: float) -> None:
        elapsed = now - self.start
        rate = (self.n - self.start_n) / elapsed if elapsed > 0 else 0.0
        count = f"{self.n}/{self.total} ({100 * self.n / self.total:.0f}%)" if self.total else f"{self.n}"
        line = f"{self.desc}: {count} {rate:.2f} {self.unit}/s {elapsed:.0f}s"
        print(f"{line} {self.postfix}".rstrip(), file=self._out(), flush=True)
        self.last_time, self.last_n = now, self.n


def is_tty(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (default: stderr, where bars go) is an interactive terminal."""
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def progress(iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "",
             unit: str = "it", initial: int = 0, enabled: bool = True, stream: TextIO | None = None,
             **tqdm_kwargs: Any):
    """A live tqdm bar on a terminal, a :class:`LineProgress` otherwise; silent when ``enabled`` is False."""
    if enabled and is_tty(stream):
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, file=stream, **tqdm_kwargs)
    return LineProgress(iterable, total=total, desc=desc, unit=unit, initial=initial, disable=not enabled,
                        stream=stream)
