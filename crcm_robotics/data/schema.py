"""The trajectory store's schema, written down once, and its validator.

Layout (Zarr v3; DESIGN §2)::

    NAME.zarr/                         attrs: format, version, fps, cameras, action/state names+units, source, stats
      data/frames/<camera>  uint8   [N, H, W, 3]
      data/action           float32 [N, A]      command applied right after frame i
      data/state            float32 [N, S]      optional
      data/timestamp        float64 [N]         seconds, monotonic within an episode
      meta/episode_ends     int64   [E]         exclusive end index of each episode

``meta/episode_ends`` is the commit record: frames beyond its last value were
written by an append that did not finish and are ignored by every reader.
Stores written by other tools (Diffusion Policy's ReplayBuffer: ``data/img``,
``data/state``, ``data/action``, ``meta/episode_ends``) open through a
:class:`KeyMap`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

STORE_FORMAT = "crcm-trajectories"
STORE_VERSION = 1
DEFAULT_CAMERA = "rgb"
EPISODE_ENDS_FILL = -1  # value of an episode_ends slot whose append did not finish


class StoreError(ValueError):
    """A trajectory store is missing, malformed or holds bad values."""


@dataclass(frozen=True)
class KeyMap:
    """Where each array lives inside a store, and how to read its frames.

    The default is this project's own layout; :meth:`diffusion_policy` is the
    Diffusion Policy ReplayBuffer layout. ``frames_range`` says what the frame
    array holds: ``uint8`` (0..255 bytes, the native format), ``float_0_255``
    (floats holding byte values, as Diffusion Policy's PushT store does) or
    ``float_0_1``. Float frames are converted to uint8 only because the key map
    says so, never silently.
    """

    frames: str = f"data/frames/{DEFAULT_CAMERA}"
    action: str = "data/action"
    state: str | None = "data/state"
    timestamp: str | None = "data/timestamp"
    episode_ends: str = "meta/episode_ends"
    frames_range: Literal["uint8", "float_0_255", "float_0_1"] = "uint8"
    fps: float | None = None  # used to synthesise timestamps when the store has none

    @classmethod
    def native(cls, camera: str = DEFAULT_CAMERA) -> "KeyMap":
        return cls(frames=f"data/frames/{camera}")

    @classmethod
    def diffusion_policy(cls, fps: float = 10.0, frames_range: str = "float_0_255") -> "KeyMap":
        return cls(frames="data/img", timestamp=None, frames_range=frames_range, fps=fps)  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "KeyMap":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise StoreError(f"key map has unknown field(s) {sorted(unknown)}; expected some of {sorted(known)}")
        return cls(**d)


@dataclass(frozen=True)
class StoreSummary:
    """What :func:`validate_store` found; ``as_json()`` is the CLI's one-line summary."""

    path: str
    episodes: int
    frames: int
    image_shape: tuple[int, int, int]
    action_dim: int
    state_dim: int
    cameras: tuple[str, ...]
    uncommitted_frames: int
    fps: float | None

    def as_json(self) -> dict[str, Any]:
        return {
            "episodes": self.episodes,
            "frames": self.frames,
            "image_shape": list(self.image_shape),
            "action_dim": self.action_dim,
            "state_dim": self.state_dim,
            "cameras": list(self.cameras),
            "uncommitted_frames": self.uncommitted_frames,
            "fps": self.fps,
        }


def open_group(path: str | Path, mode: Literal["r", "r+", "a"] = "r"):
    """Open a store's root group (zarr v2 or v3), with an error that names the path."""
    import zarr

    path = Path(path)
    if mode == "r" and not path.exists():
        raise StoreError(f"trajectory store {path} does not exist")
    try:
        group = zarr.open_group(store=str(path), mode=mode)
    except Exception as exc:  # zarr raises several types for "not a group"
        raise StoreError(f"{path} is not a readable Zarr group ({type(exc).__name__}: {exc})") from exc
    return group


def get_array(group, key: str, store_path: str | Path):
    import zarr

    try:
        node = group[key]
    except KeyError:
        raise StoreError(f"store {store_path} has no array {key}") from None
    if not isinstance(node, zarr.Array):
        raise StoreError(f"store {store_path}: {key} is a group, expected an array")
    return node


def committed_episode_ends(raw: np.ndarray, store_path: str | Path, key: str) -> np.ndarray:
    """Episode ends without trailing slots of an unfinished append; errors on bad values."""
    ends = np.asarray(raw)
    if ends.dtype != np.int64:
        raise StoreError(f"store {store_path}: {key} has dtype {ends.dtype}, expected int64")
    if ends.ndim != 1:
        raise StoreError(f"store {store_path}: {key} has shape {ends.shape}, expected 1-D [episodes]")
    n = len(ends)
    while n > 0 and ends[n - 1] == EPISODE_ENDS_FILL:
        n -= 1
    ends = ends[:n]
    if n and ends[0] <= 0:
        raise StoreError(f"store {store_path}: {key}[0] = {ends[0]}, expected a positive end index")
    steps = np.diff(ends)
    if np.any(steps <= 0):
        i = int(np.argmax(steps <= 0)) + 1
        raise StoreError(
            f"store {store_path}: {key} is not strictly increasing: episode {i} ends at {ends[i]} "
            f"after episode {i - 1} ends at {ends[i - 1]}"
        )
    return ends


def _check_dtype(arr, key: str, store_path, expected: tuple[np.dtype, ...]) -> None:
    if arr.dtype not in expected:
        names = " or ".join(str(np.dtype(e)) for e in expected)
        raise StoreError(f"store {store_path}: {key} has dtype {arr.dtype}, expected {names}")


def _check_finite(values: np.ndarray, key: str, store_path, ends: np.ndarray) -> None:
    bad = ~np.isfinite(values)
    if values.ndim > 1:
        bad = bad.reshape(len(values), -1).any(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        episode = int(np.searchsorted(ends, i, side="right"))
        start = 0 if episode == 0 else int(ends[episode - 1])
        kind = "NaN" if np.isnan(values[i]).any() else "inf"
        raise StoreError(f"store {store_path}: episode {episode} of {key} has {kind} at step {i - start}")


def validate_store(path: str | Path, key_map: KeyMap | None = None) -> StoreSummary:
    """Check a store against the schema; return its summary or raise :class:`StoreError`.

    Reads every action/state/timestamp value (small) but only the metadata of
    the frame arrays, so it is fast on large stores.
    """
    path = Path(path)
    key_map = key_map or detect_key_map(path)
    group = open_group(path)
    native = group.attrs.get("format") == STORE_FORMAT
    if native and group.attrs.get("version") != STORE_VERSION:
        raise StoreError(
            f"store {path} has format version {group.attrs.get('version')}, this reader knows {STORE_VERSION}"
        )

    ends_arr = get_array(group, key_map.episode_ends, path)
    ends = committed_episode_ends(ends_arr[:], path, key_map.episode_ends)
    committed = int(ends[-1]) if len(ends) else 0

    frames = get_array(group, key_map.frames, path)
    if key_map.frames_range == "uint8":
        _check_dtype(frames, key_map.frames, path, (np.dtype(np.uint8),))
    else:
        _check_dtype(frames, key_map.frames, path, (np.dtype(np.float32), np.dtype(np.float64)))
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise StoreError(f"store {path}: {key_map.frames} has shape {frames.shape}, expected [N, H, W, 3] (RGB)")

    action = get_array(group, key_map.action, path)
    _check_dtype(action, key_map.action, path, (np.dtype(np.float32),))
    if action.ndim != 2:
        raise StoreError(f"store {path}: {key_map.action} has shape {action.shape}, expected [N, action_dim]")

    arrays = {key_map.frames: frames, key_map.action: action}
    if native:  # every camera the attrs list, not only the one the key map reads
        for cam in group.attrs.get("cameras", []):
            key = f"data/frames/{cam}"
            if key != key_map.frames:
                other = get_array(group, key, path)
                _check_dtype(other, key, path, (np.dtype(np.uint8),))
                if other.ndim != 4 or other.shape[-1] != 3:
                    raise StoreError(f"store {path}: {key} has shape {other.shape}, expected [N, H, W, 3] (RGB)")
                arrays[key] = other
    state = None
    if key_map.state is not None and key_map.state in group:
        state = get_array(group, key_map.state, path)
        _check_dtype(state, key_map.state, path, (np.dtype(np.float32),))
        if state.ndim != 2:
            raise StoreError(f"store {path}: {key_map.state} has shape {state.shape}, expected [N, state_dim]")
        arrays[key_map.state] = state
    timestamp = None
    if key_map.timestamp is not None:
        if native or key_map.timestamp in group:
            timestamp = get_array(group, key_map.timestamp, path)
            _check_dtype(timestamp, key_map.timestamp, path, (np.dtype(np.float64),))
            if timestamp.ndim != 1:
                raise StoreError(f"store {path}: {key_map.timestamp} has shape {timestamp.shape}, expected [N]")
            arrays[key_map.timestamp] = timestamp

    for key, arr in arrays.items():
        if arr.shape[0] < committed:
            raise StoreError(
                f"store {path}: length mismatch: {key} has {arr.shape[0]} rows but {key_map.episode_ends} "
                f"ends at {committed}"
            )
    uncommitted = max(arr.shape[0] for arr in arrays.values()) - committed

    _check_finite(action[:committed], key_map.action, path, ends)
    if state is not None:
        _check_finite(state[:committed], key_map.state, path, ends)
    if timestamp is not None:
        ts = timestamp[:committed]
        _check_finite(ts, key_map.timestamp, path, ends)
        starts = np.concatenate([[0], ends[:-1]])
        for e, (s, t) in enumerate(zip(starts, ends)):
            d = np.diff(ts[s:t])
            if np.any(d <= 0):
                raise StoreError(
                    f"store {path}: episode {e} of {key_map.timestamp} is not increasing at step {int(np.argmax(d <= 0)) + 1}"
                )

    fps = group.attrs.get("fps", key_map.fps)
    cameras = tuple(group.attrs.get("cameras", [key_map.frames.rsplit("/", 1)[-1]]))
    return StoreSummary(
        path=str(path),
        episodes=len(ends),
        frames=committed,
        image_shape=tuple(int(s) for s in frames.shape[1:]),  # type: ignore[arg-type]
        action_dim=int(action.shape[1]),
        state_dim=int(state.shape[1]) if state is not None else 0,
        cameras=cameras,
        uncommitted_frames=int(uncommitted),
        fps=None if fps is None or (isinstance(fps, float) and math.isnan(fps)) else float(fps),
    )


def detect_key_map(path: Path) -> KeyMap:
    """The native key map for our stores (first camera), Diffusion Policy's when ``data/img`` is present."""
    group = open_group(path)
    if group.attrs.get("format") == STORE_FORMAT:
        cameras = group.attrs.get("cameras") or [DEFAULT_CAMERA]
        return KeyMap.native(cameras[0])
    if "data" in group and "img" in group["data"]:
        img = group["data"]["img"]
        return KeyMap.diffusion_policy(frames_range="uint8" if img.dtype == np.uint8 else "float_0_255")
    return KeyMap()
