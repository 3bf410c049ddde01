"""Tiny synthetic trajectory stores whose values say where they came from (for tests and smoke runs).

Every row ``i`` (global frame index) carries its own index, so a reader's output
can be checked position by position:

- ``frames[i]``: random pixels, except pixel (0, 0) holds ``(i % 256, i // 256, episode)``;
- ``action[i, 0] = i`` and ``state[i, 0] = i``, other columns random normal;
- ``timestamp[i]``: seconds since the episode's start at ``fps``, plus a per-episode offset.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from crcm_robotics.data.store import TrajectoryWriter


def frame_index(frames: np.ndarray) -> np.ndarray:
    """The global indices encoded in ``frames[..., 0, 0, :2]`` by :func:`synthetic_episodes`."""
    px = np.asarray(frames)[..., 0, 0, :].astype(np.int64)
    return px[..., 0] + 256 * px[..., 1]


def synthetic_episodes(
    lengths: Sequence[int],
    image_size: int = 8,
    action_dim: int = 2,
    state_dim: int = 3,
    cameras: Sequence[str] = ("rgb",),
    fps: float = 10.0,
    seed: int = 0,
) -> list[dict]:
    """Episodes as :meth:`TrajectoryWriter.append_episode` takes them (``frames`` keyed by camera)."""
    rng = np.random.default_rng(seed)
    episodes, start = [], 0
    for e, n in enumerate(lengths):
        idx = start + np.arange(n)
        frames = {}
        for cam in cameras:
            f = rng.integers(0, 256, size=(n, image_size, image_size, 3), dtype=np.uint8)
            f[:, 0, 0] = np.stack([idx % 256, idx // 256, np.full(n, e % 256)], axis=1)
            frames[cam] = f
        action = rng.normal(size=(n, action_dim)).astype(np.float32)
        action[:, 0] = idx
        ep = {"frames": frames, "action": action, "timestamp": 100.0 * e + np.arange(n) / fps}
        if state_dim:
            state = rng.normal(size=(n, state_dim)).astype(np.float32)
            state[:, 0] = idx
            ep["state"] = state
        episodes.append(ep)
        start += n
    return episodes


def write_synthetic_store(
    path: str | Path,
    lengths: Sequence[int] = (12, 9, 15),
    image_size: int = 8,
    action_dim: int = 2,
    state_dim: int = 3,
    cameras: Sequence[str] = ("rgb",),
    fps: float = 10.0,
    seed: int = 0,
    stats: bool = True,
) -> list[dict]:
    """Write a native store of ``len(lengths)`` episodes at ``path``; returns the episodes written."""
    episodes = synthetic_episodes(lengths, image_size, action_dim, state_dim, cameras, fps, seed)
    writer = TrajectoryWriter.create(
        path, image_shape=(image_size, image_size, 3), action_dim=action_dim, state_dim=state_dim,
        cameras=cameras, fps=fps, source=f"synthetic, seed={seed}",
    )
    for ep in episodes:
        writer.append_episode(ep["frames"], ep["action"], ep.get("state"), ep["timestamp"])
    if stats:
        writer.write_stats()
    return episodes
