"""Windowed PyTorch dataset over a trajectory store, and the episode split.

A sample is ``window`` frames ``s, s+k, …, s+(window-1)k`` of one episode
(``k = frame_skip``) with, for each frame, the ``k`` actions that follow it
(concatenated: ``[window, k*A]``), so nothing between sampled frames is lost.
Windows never cross an episode boundary.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from crcm_robotics.data.schema import KeyMap, StoreError
from crcm_robotics.data.store import TrajectoryStore


def split_episodes(num_episodes: int, val_fraction: float, seed: int = 0,
                   first: int = 0) -> tuple[list[int], list[int]]:
    """Deterministic train/validation split *by episode* (never by frame).

    ``first`` > 0 draws the split over the first ``first`` episodes only and trains on every later one: a store
    grown with more episodes of the same generator and seed (PushT writes episode ``e`` from its own seed, so
    the first ones are unchanged) then holds out the same episodes, and goals drawn from them, as before it grew.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if num_episodes < 1:
        raise ValueError("cannot split a store with no episodes")
    if first < 0 or first > num_episodes:
        raise ValueError(f"the split's first episodes ({first}) must be in [0, {num_episodes}] (the store's "
                         "episodes; 0: split over all of them)")
    drawn = first or num_episodes
    order = np.random.default_rng(seed).permutation(drawn)
    n_val = int(round(drawn * val_fraction))
    if val_fraction > 0 and n_val == 0 and drawn > 1:
        n_val = 1
    return sorted(order[n_val:].tolist()) + list(range(drawn, num_episodes)), sorted(order[:n_val].tolist())


def window_starts(episode_ends: np.ndarray, episodes: Sequence[int], window: int, frame_skip: int) -> np.ndarray:
    """Global start index of every window that fits inside one of ``episodes``."""
    span = window * frame_skip  # frames plus the actions after the last one
    starts = []
    for e in episodes:
        s = 0 if e == 0 else int(episode_ends[e - 1])
        end = int(episode_ends[e])
        if end - s >= span:
            starts.append(np.arange(s, end - span + 1))
    return np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)


class WindowDataset(torch.utils.data.Dataset):
    """``window`` frames + their actions from one episode; safe with multi-worker DataLoaders.

    Items: ``frames`` uint8 [window, H, W, 3], ``action`` float32 [window, frame_skip*A],
    ``state`` float32 [window, S] (if the store has one), ``start`` (global index of
    the first frame) and ``episode``.

    Worker processes never share a Zarr handle: ``__getstate__`` drops it (spawn and
    forkserver workers unpickle a dataset without one) and ``_get_store`` reopens the
    store when the process id changed (fork workers inherit the parent's handle, which
    this detects). zarr-python 3 runs its I/O on a background asyncio loop thread that
    a forked child does not inherit; zarr ≥ 3.0.3 resets that loop, its thread pool
    and lock in the child (``os.register_at_fork``, zarr-python PR #2815), so forked
    workers read correctly even after the parent has read the store. zarr 3.0.0–3.0.2
    hang there, hence ``zarr>=3.0.3`` in pyproject; tests/test_dataset.py checks fork
    and spawn workers return the same items as ``num_workers=0``.

    Action and state are read into RAM once per process (they are small), so an item
    costs one Zarr read (its frames). With ``in_memory=True`` the committed frames are
    read once into RAM too (shared copy-on-write with forked workers, pickled to spawned
    ones), which suits small stores.
    """

    def __init__(
        self,
        path: str | Path,
        window: int,
        frame_skip: int = 1,
        episodes: Sequence[int] | None = None,
        key_map: KeyMap | None = None,
        in_memory: bool = False,
    ):
        if window < 1 or frame_skip < 1:
            raise ValueError(f"window ({window}) and frame_skip ({frame_skip}) must be ≥ 1")
        self.path = Path(path)
        self.window = window
        self.frame_skip = frame_skip
        self.key_map = key_map
        store = TrajectoryStore(self.path, key_map)
        self.episodes = list(range(store.num_episodes)) if episodes is None else list(episodes)
        bad = [e for e in self.episodes if not 0 <= e < store.num_episodes]
        if bad:
            raise StoreError(f"episodes {bad[:5]} not in store {self.path} ({store.num_episodes} episodes)")
        self.episode_ends = store.episode_ends
        self.starts = window_starts(store.episode_ends, self.episodes, window, frame_skip)
        if len(self.starts) == 0:
            raise StoreError(
                f"no episode of {self.path} among the {len(self.episodes)} selected is long enough for a window of "
                f"{window} frames at frame_skip {frame_skip} (needs {window * frame_skip} frames)"
            )
        self.image_shape = store.image_shape
        self.action_dim = store.action_dim * frame_skip
        self.state_dim = store.state_dim
        self._frames_in_memory = store.frames(0, store.num_frames) if in_memory else None
        self._store: TrajectoryStore | None = store
        self._pid = os.getpid()
        # action/state are a few bytes per frame: read once per process, so an item costs one Zarr read
        self._action: np.ndarray | None = store.action()
        self._state: np.ndarray | None = store.state()

    def __len__(self) -> int:
        return len(self.starts)

    def _get_store(self) -> TrajectoryStore:
        if self._store is None or self._pid != os.getpid():  # a fresh handle per worker process
            self._store = TrajectoryStore(self.path, self.key_map)
            self._pid = os.getpid()
        if self._action is None:  # unpickled in a spawn/forkserver worker
            self._action, self._state = self._store.action(), self._store.state()
        return self._store

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_store"] = None  # zarr handles do not cross process boundaries
        state["_action"] = state["_state"] = None  # re-read by the worker rather than pickled
        return state

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        s = int(self.starts[index])
        k, t = self.frame_skip, self.window
        stop = s + t * k  # frames s, s+k, …, s+(t-1)k; actions s … stop-1
        store = self._get_store()
        if self._frames_in_memory is not None:
            frames = self._frames_in_memory[s:stop:k]
        else:
            frames = store.frames(s, stop - k + 1, k)
        action = self._action[s:stop]  # type: ignore[index]
        item = {
            "frames": torch.from_numpy(np.ascontiguousarray(frames)),
            "action": torch.from_numpy(np.ascontiguousarray(action.reshape(t, -1))),
            "start": torch.tensor(s),
            "episode": torch.tensor(int(np.searchsorted(self.episode_ends, s, side="right"))),
        }
        if self._state is not None:
            item["state"] = torch.from_numpy(np.ascontiguousarray(self._state[s:stop:k]))
        return item
