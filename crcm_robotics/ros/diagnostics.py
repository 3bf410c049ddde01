"""Rates, latencies and counters the node reports (``/diagnostics`` and a periodic log line).

Plain Python with explicit times, so it is testable without a clock; the node
feeds it ``now`` from its ROS clock.
"""

from __future__ import annotations

import threading
from collections import Counter, deque

import numpy as np

OK, WARN, ERROR = 0, 1, 2  # diagnostic_msgs/DiagnosticStatus levels


class RateMeter:
    """Events per second over a sliding window of the last ``window_s`` seconds."""

    def __init__(self, window_s: float = 5.0):
        self.window_s = window_s
        self._t: deque[float] = deque()

    def tick(self, t: float) -> None:
        self._t.append(t)

    def rate(self, now: float) -> float:
        while self._t and self._t[0] < now - self.window_s:
            self._t.popleft()
        if len(self._t) < 2:
            return 0.0
        span = self._t[-1] - self._t[0]
        return (len(self._t) - 1) / span if span > 0 else 0.0

    def last(self) -> float | None:
        return self._t[-1] if self._t else None


class Diagnostics:
    """Thread-safe counters for the node: input rates, prediction latency, imagine requests, drops."""

    def __init__(self, window_s: float = 5.0, latency_window: int = 200):
        self._lock = threading.Lock()
        self.camera = RateMeter(window_s)
        self.commands = RateMeter(window_s)
        self.published = RateMeter(window_s)
        self._latency_ms: deque[float] = deque(maxlen=latency_window)
        self.counts: Counter[str] = Counter()
        self.last_error = ""

    def frame(self, t: float, status: str) -> None:
        with self._lock:
            self.camera.tick(t)
            self.counts[f"frames_{status}"] += 1

    def command(self, t: float) -> None:
        with self._lock:
            self.commands.tick(t)
            self.counts["commands"] += 1

    def prediction(self, t: float, latency_ms: float) -> None:
        with self._lock:
            self.published.tick(t)
            self._latency_ms.append(latency_ms)
            self.counts["predictions"] += 1

    def imagine(self, ok: bool, latency_ms: float = 0.0) -> None:
        with self._lock:
            self.counts["imagine_ok" if ok else "imagine_failed"] += 1
            if ok:
                self._latency_ms.append(latency_ms)

    def error(self, kind: str, message: str) -> None:
        with self._lock:
            self.counts[kind] += 1
            self.last_error = message

    def summary(self, now: float) -> dict[str, float | int | str]:
        with self._lock:
            lat = np.asarray(self._latency_ms, dtype=np.float64)
            out: dict[str, float | int | str] = {
                "camera_hz": round(self.camera.rate(now), 2),
                "command_hz": round(self.commands.rate(now), 2),
                "predicted_hz": round(self.published.rate(now), 2),
                "latency_ms_p50": round(float(np.median(lat)), 2) if lat.size else 0.0,
                "latency_ms_max": round(float(lat.max()), 2) if lat.size else 0.0,
            }
            out.update(sorted(self.counts.items()))
            if self.last_error:
                out["last_error"] = self.last_error
            return out

    def level(self, now: float, ready_reason: str, max_silence_s: float) -> tuple[int, str]:
        """(level, message): ERROR when the camera is silent, WARN when the context is not ready."""
        with self._lock:
            last = self.camera.last()
        if last is None or now - last > max_silence_s:
            return ERROR, "no camera frames" if last is None else f"camera silent for {now - last:.1f} s"
        if ready_reason:
            return WARN, ready_reason
        return OK, "predicting"

    @staticmethod
    def key_values(summary: dict[str, float | int | str]) -> list[tuple[str, str]]:
        return [(k, str(v)) for k, v in summary.items()]
