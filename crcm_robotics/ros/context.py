"""The live node's context: the latest K camera frames, each with the command in force when it was taken.

Streaming counterpart of :func:`crcm_robotics.ros.align.plan_episodes`, with the
same rules (zero-order hold, staleness, gaps, rate gate). Where the importer
ends an episode, the buffer starts over; with ``stale_command="zero"`` a frame
without a fresh command gets a zero action instead (for velocity-controlled
bases whose controllers stop when commands stop).

Thread-safe: camera/command callbacks and the model thread may call it concurrently.
"""

from __future__ import annotations

import bisect
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from crcm_robotics.ros.align import RateGate

STALE_POLICIES = ("reset", "zero")


@dataclass(frozen=True)
class Context:
    """A consistent copy of the buffer, ready to hand to the model."""

    frames: np.ndarray  # uint8 [K, H, W, 3], oldest first
    actions: np.ndarray  # float32 [K, A]: command in force at each frame
    times: np.ndarray  # float64 [K], seconds
    meta: Any  # what the caller stored with the newest frame (the node: its camera header)
    command: np.ndarray | None  # float32 [A]: the command in force now (None when not required and none is)


class ContextBuffer:
    """Latest ``context_frames`` frames aligned with commands (see the module docstring)."""

    def __init__(
        self,
        context_frames: int,
        action_dim: int,
        *,
        max_staleness_s: float,
        gap_s: float,
        rate_hz: float = 0.0,
        stale_command: str = "reset",
        command_history: int = 512,
    ):
        if context_frames < 1:
            raise ValueError(f"context_frames must be >= 1, got {context_frames}")
        if action_dim < 1:
            raise ValueError(f"action_dim must be >= 1, got {action_dim}")
        if stale_command not in STALE_POLICIES:
            raise ValueError(f"stale_command {stale_command!r} must be one of {', '.join(STALE_POLICIES)}")
        self.context_frames = context_frames
        self.action_dim = action_dim
        self.max_staleness_s = max_staleness_s
        self.gap_s = gap_s
        self.stale_command = stale_command
        self._gate = RateGate(rate_hz)
        self._lock = threading.Lock()
        self._cmd_t: list[float] = []
        self._cmd_v: list[np.ndarray] = []
        self._command_history = command_history
        self._frames: deque[tuple[float, np.ndarray, np.ndarray, Any]] = deque(maxlen=context_frames)
        self._last_valid_t: float | None = None
        self.last_reset_reason = "no frame yet"
        self.resets = 0

    # -- input -----------------------------------------------------------------------------------
    def add_command(self, t: float, action: np.ndarray) -> None:
        action = np.asarray(action, dtype=np.float32).reshape(-1)
        if action.shape != (self.action_dim,):
            raise ValueError(
                f"command has {action.size} values, the model takes action_dim={self.action_dim}"
            )
        with self._lock:
            i = bisect.bisect_right(self._cmd_t, t)
            self._cmd_t.insert(i, t)
            self._cmd_v.insert(i, action.copy())
            if len(self._cmd_t) > self._command_history:
                del self._cmd_t[0], self._cmd_v[0]

    def add_frame(self, t: float, frame: np.ndarray, meta: Any = None) -> str:
        """Offer a frame taken at ``t``; returns what happened to it.

        ``"kept"``, ``"skipped_rate"`` (between grid times), ``"not_increasing"``,
        ``"no_command"`` / ``"stale_command"`` (buffer reset, or zero action kept
        with ``stale_command="zero"``, then reported as ``"kept_zero_action"``).
        """
        with self._lock:
            if self._last_valid_t is not None and t <= self._last_valid_t:
                return "not_increasing"
            i = bisect.bisect_right(self._cmd_t, t) - 1
            status = "ok"
            if i < 0:
                status = "no_command"
            elif t - self._cmd_t[i] > self.max_staleness_s:
                status = "stale_command"
            if status != "ok":
                if self.stale_command == "reset":
                    age = "none received yet" if i < 0 else f"{t - self._cmd_t[i]:.2f} s old"
                    self._reset_locked(
                        f"command in force at a frame is {age} (max_staleness_s {self.max_staleness_s})"
                    )
                    self._last_valid_t = t
                    return status
                action = np.zeros(self.action_dim, np.float32)
            else:
                action = self._cmd_v[i]
            if self._last_valid_t is not None and t - self._last_valid_t > self.gap_s and self._frames:
                self._reset_locked(f"camera gap of {t - self._last_valid_t:.2f} s (gap_s {self.gap_s})")
            self._last_valid_t = t
            if not self._gate.offer(t):
                return "skipped_rate"
            self._frames.append((t, frame, action, meta))
            return "kept" if status == "ok" else "kept_zero_action"

    def reset(self, reason: str = "reset requested") -> None:
        with self._lock:
            self._reset_locked(reason)

    def _reset_locked(self, reason: str) -> None:
        if self._frames:
            self.resets += 1
        self._frames.clear()
        self._gate.reset()
        self.last_reset_reason = reason

    # -- output ----------------------------------------------------------------------------------
    def current_command(self, now: float) -> np.ndarray | None:
        """The command in force at ``now``; zeros or None (per ``stale_command``) when none is fresh."""
        with self._lock:
            return self._current_command_locked(now)

    def _current_command_locked(self, now: float) -> np.ndarray | None:
        i = bisect.bisect_right(self._cmd_t, now) - 1
        if i >= 0 and now - self._cmd_t[i] <= self.max_staleness_s:
            return self._cmd_v[i].copy()
        return np.zeros(self.action_dim, np.float32) if self.stale_command == "zero" else None

    def snapshot(self, now: float, require_command: bool = True) -> Context | None:
        """A copy of the context if complete and fresh (and, if required, a command is in force); else None.

        ``~/predicted`` needs the command in force to hold over its horizon;
        ``~/imagine`` brings its own actions and passes ``require_command=False``.
        """
        with self._lock:
            if len(self._frames) < self.context_frames:
                return None
            if now - self._frames[-1][0] > self.gap_s:
                return None
            command = self._current_command_locked(now)
            if command is None and require_command:
                return None
            times, frames, actions, metas = zip(*self._frames)
            return Context(
                frames=np.stack(frames),
                actions=np.stack(actions).astype(np.float32),
                times=np.asarray(times, dtype=np.float64),
                meta=metas[-1],
                command=command,
            )

    def why_not_ready(self, now: float, require_command: bool = True) -> str:
        """A sentence saying why :meth:`snapshot` returns None (empty when it would not)."""
        with self._lock:
            n = len(self._frames)
            if n < self.context_frames:
                return (
                    f"waiting for context: {n} of {self.context_frames} frames since the last reset "
                    f"({self.last_reset_reason})"
                )
            age = now - self._frames[-1][0]
            if age > self.gap_s:
                return f"newest camera frame is {age:.2f} s old (gap_s {self.gap_s})"
            if require_command and self._current_command_locked(now) is None:
                i = bisect.bisect_right(self._cmd_t, now) - 1
                last = "none received yet" if i < 0 else f"the last is {now - self._cmd_t[i]:.2f} s old"
                return f"no command in force: {last} (max_staleness_s {self.max_staleness_s})"
            return ""

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)
