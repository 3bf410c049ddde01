"""Command/frame alignment (crcm_robotics.ros.align) and the node's live context (crcm_robotics.ros.context).

Guards the numbers: which command each frame holds (zero-order hold), which
frames are dropped (before the first command, stale, not increasing, between
rate-grid times), where episodes split (staleness, gaps), and that the live
ContextBuffer keeps exactly the frames the importer would have kept.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from crcm_robotics.ros.align import EpisodeSegmenter, RateGate, hold_index, median_rate, plan_episodes
from crcm_robotics.ros.context import ContextBuffer


def test_hold_index_is_the_latest_command_at_or_before_each_frame():
    cmd_t = np.array([1.0, 2.0, 3.0])
    assert hold_index([0.5, 1.0, 1.5, 2.0, 9.0], cmd_t).tolist() == [-1, 0, 0, 1, 2]


def test_rate_gate_picks_the_nearest_frame_on_the_grid():
    gate = RateGate(10.0)
    t30 = np.arange(60) / 30
    assert [i for i, t in enumerate(t30) if gate.offer(float(t))] == list(range(0, 60, 3))
    gate = RateGate(10.0)
    t25 = np.arange(50) / 25  # 40 ms camera: kept times stay within half a camera interval of the 100 ms grid
    kept = np.array([t for t in t25 if gate.offer(float(t))])
    assert len(kept) == 20
    assert np.abs(kept - np.round(kept * 10) / 10).max() <= 0.02 + 1e-9
    assert all(RateGate(0).offer(t) for t in (0.0, 0.001, 0.002))
    with pytest.raises(ValueError, match="rate must be >= 0 Hz"):
        RateGate(-1)


def test_rate_gate_restarts_after_missing_frames():
    gate = RateGate(10.0)
    times = [
        0.0,
        0.05,
        0.1,
        0.15,
        0.2,
        0.25,
        1.03,
        1.08,
        1.13,
        1.18,
        1.23,
        1.28,
        1.33,
    ]  # 20 Hz, 0.78 s dropout
    kept = [t for t in times if gate.offer(t)]
    assert kept == [0.0, 0.1, 0.2, 1.03, 1.13, 1.23, 1.33]  # the grid restarts at the first frame after it


def test_plan_counts_and_splits():
    frame_t = np.array([0.0, 0.1, 0.2, 0.3, 0.3, 0.4, 1.5, 1.6, 1.7, 3.0, 3.1, 3.2, 3.3])
    cmd_t = np.array([0.05, 1.45, 3.25])
    plan = plan_episodes(frame_t, cmd_t, max_staleness_s=1.0, gap_s=0.5, min_frames=2)
    # 0.0 before first cmd; 0.3 repeated; 1.5 follows a 1.1 s gap; 3.0..3.2 hold the 1.45 cmd (> 1.0 s): stale
    assert [f.tolist() for f, _ in plan.episodes] == [[1, 2, 3, 5], [6, 7, 8]]
    assert [c.tolist() for _, c in plan.episodes] == [[0, 0, 0, 0], [1, 1, 1]]
    counts = plan.as_json()
    assert counts == {
        "episodes": 2,
        "frames_kept": 7,
        "frames_total": 13,
        "dropped_before_first_command": 1,
        "dropped_stale": 3,
        "dropped_not_increasing": 1,
        "dropped_by_rate": 0,
        "dropped_short_episodes": 1,
        "dropped_short_frames": 1,
        "splits_on_gap": 1,
        "splits_on_staleness": 1,
    }


def test_plan_with_rate_restarts_the_grid_per_episode():
    frame_t = np.concatenate([np.arange(0, 1, 1 / 30), 5 + np.arange(0, 1, 1 / 30)])
    plan = plan_episodes(frame_t, np.array([0.0, 5.0]), max_staleness_s=10, gap_s=0.5, rate_hz=10)
    assert [f.tolist() for f, _ in plan.episodes] == [list(range(0, 30, 3)), list(range(30, 60, 3))]
    assert plan.dropped_by_rate == 40 and plan.splits_on_gap == 1
    assert median_rate(frame_t[plan.episodes[0][0]]) == pytest.approx(10.0)


def test_segmenter_rejects_bad_arguments():
    with pytest.raises(ValueError, match="must be positive"):
        EpisodeSegmenter(np.array([0.0]), max_staleness_s=0, gap_s=1)
    with pytest.raises(ValueError, match="sorted ascending"):
        EpisodeSegmenter(np.array([1.0, 0.0]), max_staleness_s=1, gap_s=1)


def frame(i: int) -> np.ndarray:
    return np.full((2, 2, 3), i, np.uint8)


def test_context_buffer_pairs_frames_with_commands_in_force():
    buf = ContextBuffer(3, 2, max_staleness_s=0.5, gap_s=1.0)
    assert buf.add_frame(0.0, frame(0)) == "no_command"
    buf.add_command(0.05, [1.0, 0.0])
    for i in range(1, 4):
        assert buf.add_frame(0.1 * i, frame(i), meta=f"header{i}") == "kept"
    buf.add_command(0.35, [2.0, 0.0])
    assert buf.add_frame(0.4, frame(4), meta="header4") == "kept"
    ctx = buf.snapshot(0.45)
    assert ctx.frames[:, 0, 0, 0].tolist() == [2, 3, 4]
    assert ctx.actions[:, 0].tolist() == [1.0, 1.0, 2.0]
    assert ctx.command.tolist() == [2.0, 0.0] and ctx.meta == "header4"
    np.testing.assert_allclose(ctx.times, [0.2, 0.3, 0.4])
    assert buf.snapshot(0.9) is None  # command 0.55 s old
    assert buf.why_not_ready(0.9) == "no command in force: the last is 0.55 s old (max_staleness_s 0.5)"
    assert buf.snapshot(0.9, require_command=False) is not None  # ~/imagine brings its own actions
    assert buf.snapshot(1.5, require_command=False) is None
    assert buf.why_not_ready(1.5, require_command=False) == "newest camera frame is 1.10 s old (gap_s 1.0)"


def test_context_buffer_resets_on_stale_command_and_gap():
    buf = ContextBuffer(2, 1, max_staleness_s=0.5, gap_s=0.3)
    buf.add_command(0.0, [1.0])
    buf.add_frame(0.1, frame(1))
    buf.add_frame(0.2, frame(2))
    assert len(buf) == 2
    assert buf.add_frame(0.7, frame(7)) == "stale_command"
    assert len(buf) == 0 and buf.resets == 1
    assert buf.why_not_ready(0.7) == (
        "waiting for context: 0 of 2 frames since the last reset (command in force at "
        "a frame is 0.70 s old (max_staleness_s 0.5))"
    )
    buf.add_command(0.75, [2.0])
    buf.add_frame(0.8, frame(8))
    assert buf.add_frame(1.2, frame(12)) == "kept"  # 0.4 s gap > gap_s: restart with this frame
    assert len(buf) == 1 and "camera gap of 0.40 s (gap_s 0.3)" in buf.last_reset_reason
    assert buf.add_frame(1.2, frame(12)) == "not_increasing"


def test_context_buffer_zero_policy_keeps_frames_with_zero_action():
    buf = ContextBuffer(2, 2, max_staleness_s=0.2, gap_s=1.0, stale_command="zero")
    assert buf.add_frame(0.0, frame(0)) == "kept_zero_action"
    buf.add_command(0.05, [3.0, 4.0])
    assert buf.add_frame(0.1, frame(1)) == "kept"
    ctx = buf.snapshot(0.5)
    assert ctx.actions.tolist() == [[0.0, 0.0], [3.0, 4.0]]
    assert ctx.command.tolist() == [0.0, 0.0]  # 0.45 s old: not in force, zero held


def test_context_buffer_checks_its_inputs():
    buf = ContextBuffer(2, 3, max_staleness_s=0.5, gap_s=1.0)
    with pytest.raises(ValueError, match="command has 2 values, the model takes action_dim=3"):
        buf.add_command(0.0, [1.0, 2.0])
    with pytest.raises(ValueError, match="stale_command 'hold' must be one of reset, zero"):
        ContextBuffer(2, 3, max_staleness_s=0.5, gap_s=1.0, stale_command="hold")


def test_live_buffer_keeps_the_frames_the_importer_keeps():
    """Same stream into plan_episodes (importer) and ContextBuffer (node): the newest K frames agree."""
    rng = np.random.default_rng(3)
    frame_t = np.cumsum(rng.uniform(0.02, 0.05, 300))
    frame_t[150:] += 0.8  # a camera gap
    cmd_t = np.sort(rng.uniform(0, frame_t[-1], 60))
    cmd_t = cmd_t[(cmd_t < 3.0) | (cmd_t > 3.9)]  # commands pause for 0.9 s
    k = 4
    plan = plan_episodes(frame_t, cmd_t, max_staleness_s=0.5, gap_s=0.4, rate_hz=10, min_frames=1)
    buf = ContextBuffer(k, 1, max_staleness_s=0.5, gap_s=0.4, rate_hz=10)
    cmds = list(zip(cmd_t, np.arange(len(cmd_t), dtype=np.float32)))
    checked = 0
    for i, t in enumerate(frame_t):
        while cmds and cmds[0][0] <= t:  # commands arrive in time order, before later frames
            buf.add_command(*cmds.pop(0))
        buf.add_frame(float(t), frame(0), meta=i)
        kept_so_far = [(f[f <= i], c[f <= i]) for f, c in plan.episodes]
        episode = next((e for e in reversed(kept_so_far) if len(e[0]) and e[0][-1] == i), None)
        if episode is not None and len(episode[0]) >= k:
            ctx = buf.snapshot(float(t), require_command=False)
            assert ctx is not None and ctx.meta == i
            np.testing.assert_allclose(ctx.times, frame_t[episode[0][-k:]])
            np.testing.assert_array_equal(ctx.actions[:, 0], episode[1][-k:].astype(np.float32))
            checked += 1
    assert checked > 20 and plan.splits_on_gap >= 1 and plan.splits_on_staleness >= 1


def test_context_buffer_is_thread_safe():
    buf = ContextBuffer(4, 1, max_staleness_s=10.0, gap_s=10.0)
    buf.add_command(0.0, [1.0])
    errors = []

    def writer():
        for i in range(2000):
            buf.add_frame(1e-3 * (i + 1), frame(i % 255))

    def reader():
        for _ in range(2000):
            ctx = buf.snapshot(1.0)
            if ctx is not None and not (ctx.frames.shape[0] == 4 and np.all(np.diff(ctx.times) > 0)):
                errors.append(ctx)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert errors == []
