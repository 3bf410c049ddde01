"""Aligning commands to camera frames: zero-order hold, staleness, gaps, and a rate gate.

One set of rules serves the rosbag2 importer (:class:`EpisodeSegmenter`, one
pass over the bag; :func:`plan_episodes` is its offline form) and the live
node (:class:`crcm_robotics.ros.context.ContextBuffer`, which restarts its
context where the importer ends an episode), so a model is fed live context
built exactly the way its training data was:

- **Zero-order hold.** Frame ``i`` at time ``t_i`` gets the latest command
  with time ``<= t_i`` (the command in force; the store's ``action[i]`` is
  "the command applied right after frame i").
- **Before the first command.** Frames with no command yet are dropped.
- **Staleness.** A frame whose command in force is older than
  ``max_staleness_s`` is dropped and ends the current episode (the robot
  was not being commanded; what it did then is not an action outcome).
- **Gaps.** Two consecutive usable frames (before rate gating) more than
  ``gap_s`` apart end an episode (a dropped camera, a paused recording).
- **Order.** A frame not later than the previous usable one is dropped.
- **Rate.** :class:`RateGate` keeps frames on a ``1/rate`` grid: the first
  frame within half a camera interval of each grid time, which for a regular
  camera is the frame nearest the grid time. The grid restarts at every
  episode start.

Times are seconds (float64).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np


def hold_index(frame_t: np.ndarray, cmd_t: np.ndarray) -> np.ndarray:
    """Index of the command in force at each frame time (latest ``cmd_t <= t``); -1 before the first.

    ``cmd_t`` must be sorted ascending.
    """
    return np.searchsorted(np.asarray(cmd_t), np.asarray(frame_t), side="right").astype(np.int64) - 1


class RateGate:
    """Streaming down-sampler onto a ``1/rate_hz`` grid (see the module docstring).

    ``rate_hz=0`` lets every frame through. The camera interval is estimated as
    the median of the last 16 intervals offered.
    """

    def __init__(self, rate_hz: float):
        if rate_hz < 0:
            raise ValueError(f"rate must be >= 0 Hz, got {rate_hz}")
        self.period = 1.0 / rate_hz if rate_hz > 0 else 0.0
        self._due: float | None = None
        self._last_offered: float | None = None
        self._intervals: deque[float] = deque(maxlen=16)

    def reset(self) -> None:
        """Restart the grid at the next offered frame (keeps the camera-interval estimate)."""
        self._due = None

    def offer(self, t: float) -> bool:
        """Whether the frame at time ``t`` is kept."""
        if self._last_offered is not None and t > self._last_offered:
            self._intervals.append(t - self._last_offered)
        self._last_offered = t
        if self.period == 0.0:
            return True
        if self._due is None:
            self._due = t + self.period
            return True
        half_camera = 0.5 * float(np.median(self._intervals)) if self._intervals else 0.0
        if t < self._due - min(half_camera, 0.5 * self.period) - 1e-9:
            return False
        self._due += self.period
        if self._due <= t:  # fell behind by more than a period (frames missing): restart the grid here
            self._due = t + self.period
        return True


@dataclass
class EpisodePlan:
    """Which frames become which episode, with the command index each frame holds."""

    episodes: list[tuple[np.ndarray, np.ndarray]] = field(
        default_factory=list
    )  # (frame idx, cmd idx) per episode
    frames_total: int = 0
    dropped_before_first_command: int = 0
    dropped_stale: int = 0
    dropped_not_increasing: int = 0
    dropped_by_rate: int = 0
    dropped_short_episodes: int = 0
    dropped_short_frames: int = 0
    splits_on_gap: int = 0
    splits_on_staleness: int = 0

    @property
    def frames_kept(self) -> int:
        return sum(len(f) for f, _ in self.episodes)

    def as_json(self) -> dict[str, int]:
        return {
            "episodes": len(self.episodes),
            "frames_kept": self.frames_kept,
            "frames_total": self.frames_total,
            "dropped_before_first_command": self.dropped_before_first_command,
            "dropped_stale": self.dropped_stale,
            "dropped_not_increasing": self.dropped_not_increasing,
            "dropped_by_rate": self.dropped_by_rate,
            "dropped_short_episodes": self.dropped_short_episodes,
            "dropped_short_frames": self.dropped_short_frames,
            "splits_on_gap": self.splits_on_gap,
            "splits_on_staleness": self.splits_on_staleness,
        }


@dataclass(frozen=True)
class Decision:
    """What :class:`EpisodeSegmenter` decided for one frame."""

    keep: bool  # the frame belongs to the current episode
    cmd_index: int  # command in force (-1 before the first)
    close_before: bool  # the episode so far ended before this frame (staleness or gap)
    reason: str  # kept | before_first_command | stale | not_increasing | rate


class EpisodeSegmenter:
    """The rules of this module, streaming: offer frame times in recording order, get a :class:`Decision`.

    Commands are known up front (``cmd_t`` sorted ascending), as in a bag.
    Counters accumulate in :attr:`plan` (its ``episodes`` stay empty; see
    :func:`plan_episodes` for the offline form that fills them).
    """

    def __init__(self, cmd_t: np.ndarray, *, max_staleness_s: float, gap_s: float, rate_hz: float = 0.0):
        cmd_t = np.asarray(cmd_t, dtype=np.float64)
        if not (max_staleness_s > 0 and gap_s > 0):
            raise ValueError(f"max_staleness_s ({max_staleness_s}) and gap_s ({gap_s}) must be positive")
        if cmd_t.size and np.any(np.diff(cmd_t) < 0):
            raise ValueError("command times must be sorted ascending")
        self.cmd_t = cmd_t
        self.max_staleness_s = max_staleness_s
        self.gap_s = gap_s
        self.plan = EpisodePlan()
        self._gate = RateGate(rate_hz)
        self._open = False  # an episode has at least one kept frame
        self._last_valid_t = -np.inf  # last frame that passed the command checks (kept or rate-skipped)

    def offer(self, t: float) -> Decision:
        plan = self.plan
        plan.frames_total += 1
        held = int(np.searchsorted(self.cmd_t, t, side="right")) - 1
        if t <= self._last_valid_t:
            plan.dropped_not_increasing += 1
            return Decision(False, held, False, "not_increasing")
        if held < 0:
            plan.dropped_before_first_command += 1
            return Decision(False, held, False, "before_first_command")
        if t - self.cmd_t[held] > self.max_staleness_s:
            plan.dropped_stale += 1
            closed = self._close()
            if closed:
                plan.splits_on_staleness += 1
            return Decision(False, held, closed, "stale")
        closed = False
        if self._open and t - self._last_valid_t > self.gap_s:
            closed = self._close()
            plan.splits_on_gap += 1
        self._last_valid_t = t
        if not self._gate.offer(t):
            plan.dropped_by_rate += 1
            return Decision(False, held, closed, "rate")
        self._open = True
        return Decision(True, held, closed, "kept")

    def _close(self) -> bool:
        was_open = self._open
        self._open = False
        self._gate.reset()
        return was_open


def plan_episodes(
    frame_t: np.ndarray,
    cmd_t: np.ndarray,
    *,
    max_staleness_s: float,
    gap_s: float,
    rate_hz: float = 0.0,
    min_frames: int = 2,
) -> EpisodePlan:
    """Split a camera stream into episodes of frames paired with their command in force.

    ``frame_t`` is in recording order; ``cmd_t`` sorted ascending. Returns an
    :class:`EpisodePlan` whose episodes hold indices into ``frame_t`` and
    ``cmd_t``; episodes shorter than ``min_frames`` are dropped (and counted).
    """
    seg = EpisodeSegmenter(cmd_t, max_staleness_s=max_staleness_s, gap_s=gap_s, rate_hz=rate_hz)
    plan = seg.plan
    current: list[tuple[int, int]] = []

    def flush() -> None:
        if len(current) >= min_frames:
            idx = np.asarray(current, dtype=np.int64).reshape(-1, 2)
            plan.episodes.append((idx[:, 0], idx[:, 1]))
        elif current:
            plan.dropped_short_episodes += 1
            plan.dropped_short_frames += len(current)
        current.clear()

    for i, t in enumerate(np.asarray(frame_t, dtype=np.float64)):
        d = seg.offer(float(t))
        if d.close_before:
            flush()
        if d.keep:
            current.append((i, d.cmd_index))
    flush()
    return plan


def median_rate(t: np.ndarray) -> float:
    """Median frame rate (Hz) of increasing times; 0 when fewer than two frames."""
    d = np.diff(np.asarray(t, dtype=np.float64))
    d = d[d > 0]
    return float(1.0 / np.median(d)) if d.size else 0.0
