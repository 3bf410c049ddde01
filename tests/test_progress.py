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
        clock.now += 0.5  # 15 s per 10 %
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10, lines
    assert lines[0] == "teacher: 30/300 (10%) 2.00 it/s 15s"
    assert lines[-1].startswith("teacher: 300/300 (100%)")
    assert "\r" not in stream.getvalue()


def test_fast_progress_is_not_flooded():
    stream, clock = io.StringIO(), FakeClock()
    bar = LineProgress(range(300), total=300, desc="teacher", stream=stream, clock=clock)
    for _ in bar:
        clock.now += 0.01  # 3 s in all: every 10 % mark is within 10 s of the previous line
    bar.close()
    assert stream.getvalue().splitlines() == ["teacher: 300/300 (100%) 100.00 it/s 3s"]


def test_slow_progress_gets_heartbeats_and_carries_postfix():
    stream, clock = io.StringIO(), FakeClock()
    bar = LineProgress(total=1000, desc="distill", unit="step", stream=stream, clock=clock)
    for _ in range(250):  # one step a second: heartbeats at 60 s and 160 s, 10 % at 100 s, 20 % at 200 s
        clock.now += 1.0
        bar.set_postfix(loss="0.1234")
        bar.update(1)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == ["60/1000", "100/1000", "160/1000", "200/1000", "250/1000"]
    assert lines[0] == "distill: 60/1000 (6%) 1.00 step/s 60s loss=0.1234"


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
