"""Progress output: sparse plain lines when not on a terminal, silence when switched off."""

from __future__ import annotations

import io

from crcm_robotics.progress import LineProgress, progress


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_non_tty_stream_gets_line_progress_not_tqdm():
    stream = io.StringIO()  # isatty() is False, like a file or a pipe
    bar = progress(range(3), total=3, desc="teacher", enabled=True, stream=stream)
    assert isinstance(bar, LineProgress)
    assert list(bar) == [0, 1, 2]
    bar.close()
    assert "\r" not in stream.getvalue()
    assert stream.getvalue().splitlines()[-1].startswith("teacher: 3/3 (100%)")


def test_line_progress_prints_once_per_ten_percent_without_carriage_returns():
    stream, clock = io.StringIO(), FakeClock()
    bar = LineProgress(range(300), total=300, desc="teacher", stream=stream, clock=clock)
    for _ in bar:
        clock.now += 0.01  # 3 s in all: no time-driven lines
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10, lines
    assert lines[0].startswith("teacher: 30/300 (10%)")
    assert lines[-1].startswith("teacher: 300/300 (100%)")
    assert "\r" not in stream.getvalue()


def test_line_progress_prints_every_interval_on_slow_progress_and_carries_postfix():
    stream, clock = io.StringIO(), FakeClock()
    bar = LineProgress(total=1000, desc="distill", unit="step", stream=stream, clock=clock, interval_s=10.0)
    for _ in range(50):  # 5 % of the total over 50 s: only the clock triggers lines
        clock.now += 1.0
        bar.set_postfix(loss="0.1234")
        bar.update(1)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 5, lines
    assert lines[0] == "distill: 10/1000 (1%) 1.00 step/s 10s loss=0.1234"


def test_line_progress_resumed_run_counts_from_initial():
    stream = io.StringIO()
    bar = LineProgress(range(90, 100), initial=90, total=100, desc="t", stream=stream)
    for _ in bar:
        pass
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("t: 100/100 (100%)"), lines


def test_disabled_progress_prints_nothing_even_on_write():
    stream = io.StringIO()
    bar = progress(range(5), total=5, desc="x", enabled=False, stream=stream)
    for _ in bar:
        pass
    bar.write("budget spent")
    bar.close()
    assert stream.getvalue() == ""
