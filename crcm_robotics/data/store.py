"""Write and read trajectory stores (schema in :mod:`crcm_robotics.data.schema`).

Chunking and compression of the frame arrays, measured with
``python -m crcm_robotics.eval.bench_data --episodes 40 --window 8 --sweep``
(40-episode 64×64 PushT store, 2-core CPU, random 8-frame windows; ms/window is
``WindowDataset.__getitem__``, best of 3 interleaved rounds)::

    frames chunk   codec          bytes/frame   files   ms/window
    (1, H, W, 3)   zstd-3             433        5846     3.77
    (8, H, W, 3)   none             12294         732     0.78
    (8, H, W, 3)   blosc-lz4          298         732     1.07
    (8, H, W, 3)   blosc-zstd-3       131         732     1.05
    (8, H, W, 3)   zstd-3             137         732     1.18   <- default
    (32, H, W, 3)  zstd-3             104         184     0.82
    (8, H, W, 3)   zstd-3 +shard      139          24     1.47   (256 frames per shard file)

Reads are dominated by zarr-python's per-read overhead (~0.9 ms), not by
decoding, so the codec barely moves read speed; chunk 1 costs 3-4x per window.
Chunk 32 is a little smaller and faster at 64×64 but ties chunk 8 at 128-224 px
while decoding 4x more per single-frame read, so ``FRAMES_CHUNK`` stays 8.
``zstd-3`` ties ``blosc-zstd-3`` at 64-128 px and is 2.3x smaller at 224×224,
hence ``FRAMES_CODEC``. Sharding (``frames_shard=256``) cuts files 30x for
1.25-1.5x the read time: an option, not the default. ``docs/data_layout.md``
holds the full sweep (64, 128 and 224 px) and the commands.

Appending is atomic for readers: the frame/action/state/timestamp arrays are
grown and written first and ``meta/episode_ends`` last, so a write that dies
midway leaves rows past the last committed end, which readers ignore and the
next append overwrites.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crcm_robotics.data.schema import (
    DEFAULT_CAMERA,
    EPISODE_ENDS_FILL,
    STORE_FORMAT,
    STORE_VERSION,
    KeyMap,
    StoreError,
    committed_episode_ends,
    detect_key_map,
    get_array,
    open_group,
    validate_store,
)

FRAMES_CHUNK = 8  # frames per chunk along N; see the module docstring
FRAMES_CODEC = "zstd-3"  # compressor of the frame arrays; one of FRAMES_CODECS; see the module docstring
FRAMES_CODECS = ("none", "blosc-lz4", "blosc-zstd-3", "zstd-3")
VECTOR_CHUNK = 4096  # rows per chunk of action/state/timestamp
ENDS_CHUNK = 1024


def frames_codec(name: str = FRAMES_CODEC):
    """The Zarr v3 compressor called ``name`` (see ``FRAMES_CODECS``); ``None`` for ``"none"``."""
    import zarr.codecs

    if name == "none":
        return None
    if name == "blosc-lz4":
        return zarr.codecs.BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")
    if name == "blosc-zstd-3":
        return zarr.codecs.BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")
    if name == "zstd-3":
        return zarr.codecs.ZstdCodec(level=3)
    raise StoreError(f"unknown frames codec {name!r}; expected one of {list(FRAMES_CODECS)}")


@dataclass(frozen=True)
class NormStats:
    """Per-dimension mean/std/min/max of a vector array (action or state)."""

    mean: np.ndarray
    std: np.ndarray
    min: np.ndarray
    max: np.ndarray

    @classmethod
    def of(cls, values: np.ndarray) -> "NormStats":
        values = np.asarray(values, dtype=np.float64)
        if len(values) == 0:
            raise StoreError("cannot compute normalization stats of an empty array")
        return cls(values.mean(0), values.std(0), values.min(0), values.max(0))

    def to_dict(self) -> dict[str, list[float]]:
        return {k: [float(x) for x in getattr(self, k)] for k in ("mean", "std", "min", "max")}

    @classmethod
    def from_dict(cls, d: Mapping[str, Sequence[float]]) -> "NormStats":
        missing = {"mean", "std", "min", "max"} - set(d)
        if missing:
            raise StoreError(f"normalization stats lack {sorted(missing)}")
        return cls(*(np.asarray(d[k], dtype=np.float64) for k in ("mean", "std", "min", "max")))

    def normalize(self, x: np.ndarray) -> np.ndarray:
        """Zero-mean, unit-std; dimensions that never vary are only centred."""
        std = np.where(self.std > 1e-8, self.std, 1.0)
        return ((x - self.mean) / std).astype(np.float32)


class TrajectoryWriter:
    """Create a store or append episodes to one (single writer at a time)."""

    def __init__(self, path: str | Path, group, key_map: KeyMap, cameras: Sequence[str]):
        self.path = Path(path)
        self._group = group
        self._key_map = key_map
        self.cameras = tuple(cameras)

    @classmethod
    def create(
        cls,
        path: str | Path,
        *,
        image_shape: tuple[int, int, int],
        action_dim: int,
        state_dim: int = 0,
        cameras: Sequence[str] = (DEFAULT_CAMERA,),
        fps: float,
        action_names: Sequence[str] | None = None,
        action_units: str = "",
        state_names: Sequence[str] | None = None,
        state_units: str = "",
        source: str = "",
        extra_attrs: Mapping[str, Any] | None = None,
        frames_chunk: int = FRAMES_CHUNK,
        frames_codec_name: str = FRAMES_CODEC,
        frames_shard: int | None = None,
        overwrite: bool = False,
    ) -> "TrajectoryWriter":
        """A new, empty store. ``frames_codec_name`` is one of ``FRAMES_CODECS``;
        ``frames_shard`` (frames per shard file, a multiple of ``frames_chunk``) packs
        chunks into Zarr v3 shards: one file per shard instead of per chunk, at about
        1.5× the cost of a random window read (docs/data_layout.md)."""
        import zarr

        path = Path(path)
        if path.exists() and not overwrite:
            raise StoreError(f"{path} already exists; pass overwrite=True or open it with TrajectoryWriter.append_to")
        if len(image_shape) != 3 or image_shape[2] != 3:
            raise StoreError(f"image_shape {image_shape} must be (H, W, 3)")
        if action_dim <= 0:
            raise StoreError(f"action_dim must be positive, got {action_dim}")
        if not cameras:
            raise StoreError("a store needs at least one camera")
        if frames_chunk < 1:
            raise StoreError(f"frames_chunk must be positive, got {frames_chunk}")
        if frames_shard is not None and (frames_shard < frames_chunk or frames_shard % frames_chunk):
            raise StoreError(f"frames_shard {frames_shard} must be a multiple of frames_chunk {frames_chunk}")
        codec = frames_codec(frames_codec_name)  # unknown names fail before anything is written
        group = zarr.open_group(store=str(path), mode="w", zarr_format=3)
        h, w, c = image_shape
        for cam in cameras:
            group.create_array(
                f"data/frames/{cam}", shape=(0, h, w, c), dtype="uint8", chunks=(frames_chunk, h, w, c),
                shards=None if frames_shard is None else (frames_shard, h, w, c),
                compressors=codec, dimension_names=("frame", "height", "width", "channel"),
            )
        group.create_array("data/action", shape=(0, action_dim), dtype="float32", chunks=(VECTOR_CHUNK, action_dim))
        if state_dim:
            group.create_array("data/state", shape=(0, state_dim), dtype="float32", chunks=(VECTOR_CHUNK, state_dim))
        group.create_array("data/timestamp", shape=(0,), dtype="float64", chunks=(VECTOR_CHUNK,))
        group.create_array(
            "meta/episode_ends", shape=(0,), dtype="int64", chunks=(ENDS_CHUNK,), fill_value=EPISODE_ENDS_FILL
        )
        group.attrs.update(
            {
                "format": STORE_FORMAT,
                "version": STORE_VERSION,
                "fps": float(fps),
                "cameras": list(cameras),
                "action_names": list(action_names or [f"a{i}" for i in range(action_dim)]),
                "action_units": action_units,
                "state_names": list(state_names or [f"s{i}" for i in range(state_dim)]),
                "state_units": state_units,
                "source": source,
                **dict(extra_attrs or {}),
            }
        )
        return cls(path, group, KeyMap.native(cameras[0]), cameras)

    @classmethod
    def append_to(cls, path: str | Path) -> "TrajectoryWriter":
        """Open an existing native store for appending (after validating it)."""
        validate_store(path)
        group = open_group(path, mode="r+")
        if group.attrs.get("format") != STORE_FORMAT:
            raise StoreError(f"{path} is not a {STORE_FORMAT} store; only native stores can be appended to")
        cameras = group.attrs["cameras"]
        return cls(path, group, KeyMap.native(cameras[0]), cameras)

    # -- appending -------------------------------------------------------------------------------
    def _arrays(self) -> dict[str, Any]:
        g = self._group
        arrays = {f"data/frames/{c}": g[f"data/frames/{c}"] for c in self.cameras}
        arrays["data/action"] = g["data/action"]
        if "state" in g["data"]:
            arrays["data/state"] = g["data/state"]
        arrays["data/timestamp"] = g["data/timestamp"]
        return arrays

    def _committed(self) -> tuple[Any, np.ndarray]:
        ends_arr = self._group["meta/episode_ends"]
        return ends_arr, committed_episode_ends(ends_arr[:], self.path, "meta/episode_ends")

    def append_episode(
        self,
        frames: np.ndarray | Mapping[str, np.ndarray],
        action: np.ndarray,
        state: np.ndarray | None = None,
        timestamp: np.ndarray | None = None,
    ) -> int:
        """Append one episode; returns its index. Inputs are checked, never cast."""
        frames_by_cam = dict(frames) if isinstance(frames, Mapping) else {self.cameras[0]: frames}
        if set(frames_by_cam) != set(self.cameras):
            raise StoreError(f"episode has frames for cameras {sorted(frames_by_cam)}, store has {list(self.cameras)}")
        arrays = self._arrays()
        ends_arr, ends = self._committed()
        episode = len(ends)
        if not isinstance(action, np.ndarray):
            raise StoreError(f"data/action: expected a numpy array, got {type(action).__name__}")
        n = len(action)
        if n == 0:
            raise StoreError(f"episode {episode} is empty; cannot append an episode without steps")
        values: dict[str, np.ndarray] = {}
        for cam, f in frames_by_cam.items():
            key = f"data/frames/{cam}"
            _check_input(f, key, np.uint8, (n, *arrays[key].shape[1:]))
            values[key] = f
        _check_input(action, "data/action", np.float32, (n, arrays["data/action"].shape[1]))
        _check_input_finite(action, "data/action", episode)
        values["data/action"] = action
        if "data/state" in arrays:
            if state is None:
                raise StoreError("store has data/state but the episode gives no state")
            _check_input(state, "data/state", np.float32, (n, arrays["data/state"].shape[1]))
            _check_input_finite(state, "data/state", episode)
            values["data/state"] = state
        elif state is not None:
            raise StoreError("episode gives a state but the store was created with state_dim=0")
        if timestamp is None:
            timestamp = np.arange(n, dtype=np.float64) / float(self._group.attrs["fps"])
        _check_input(timestamp, "data/timestamp", np.float64, (n,))
        _check_input_finite(timestamp, "data/timestamp", episode)
        if np.any(np.diff(timestamp) <= 0):
            step = int(np.argmax(np.diff(timestamp) <= 0)) + 1
            raise StoreError(f"episode {episode} of data/timestamp is not increasing at step {step}")
        values["data/timestamp"] = timestamp

        start = int(ends[-1]) if len(ends) else 0
        for key, arr in arrays.items():  # data first ...
            arr.resize((start + n, *arr.shape[1:]))
            arr[start : start + n] = values[key]
        ends_arr.resize((len(ends) + 1,))  # ... commit record last
        ends_arr[len(ends)] = start + n
        return len(ends)

    def write_stats(self) -> dict[str, Any]:
        """Compute action/state normalization stats over committed frames; store them in attrs."""
        _, ends = self._committed()
        end = int(ends[-1]) if len(ends) else 0
        stats = {"action": NormStats.of(self._group["data/action"][:end]).to_dict()}
        if "state" in self._group["data"]:
            stats["state"] = NormStats.of(self._group["data/state"][:end]).to_dict()
        self._group.attrs["stats"] = stats
        return stats


def _check_input_finite(x: np.ndarray, key: str, episode: int) -> None:
    bad = ~np.isfinite(x)
    if bad.ndim > 1:
        bad = bad.any(axis=1)
    if bad.any():
        step = int(np.argmax(bad))
        kind = "NaN" if np.isnan(x[step]).any() else "inf"
        raise StoreError(f"episode {episode} of {key} has {kind} at step {step}")


def _check_input(x: np.ndarray, key: str, dtype, shape: tuple[int, ...]) -> None:
    if not isinstance(x, np.ndarray):
        raise StoreError(f"{key}: expected a numpy array, got {type(x).__name__}")
    if x.dtype != dtype:
        raise StoreError(f"{key}: expected dtype {np.dtype(dtype)}, got {x.dtype} (convert explicitly)")
    if tuple(x.shape) != tuple(shape):
        raise StoreError(f"{key}: expected shape {tuple(shape)}, got {tuple(x.shape)}")


class TrajectoryStore:
    """Read-only view of a validated store: committed episodes only, frames as uint8."""

    def __init__(self, path: str | Path, key_map: KeyMap | None = None):
        self.path = Path(path)
        self.summary = validate_store(self.path, key_map)
        group = open_group(self.path)
        self.key_map = key_map or detect_key_map(self.path)
        self.attrs: dict[str, Any] = dict(group.attrs)
        self.episode_ends = committed_episode_ends(
            get_array(group, self.key_map.episode_ends, self.path)[:], self.path, self.key_map.episode_ends
        )
        self._frames = get_array(group, self.key_map.frames, self.path)
        self._action = get_array(group, self.key_map.action, self.path)
        self._state = (
            get_array(group, self.key_map.state, self.path)
            if self.key_map.state is not None and self.summary.state_dim
            else None
        )
        self._timestamp = (
            get_array(group, self.key_map.timestamp, self.path)
            if self.key_map.timestamp is not None and self.key_map.timestamp in group
            else None
        )

    # -- sizes -------------------------------------------------------------------------------------
    @property
    def num_episodes(self) -> int:
        return len(self.episode_ends)

    @property
    def num_frames(self) -> int:
        return int(self.episode_ends[-1]) if len(self.episode_ends) else 0

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.summary.image_shape

    @property
    def action_dim(self) -> int:
        return self.summary.action_dim

    @property
    def state_dim(self) -> int:
        return self.summary.state_dim

    @property
    def fps(self) -> float:
        return self.summary.fps or 10.0

    def episode_bounds(self, episode: int) -> tuple[int, int]:
        if not 0 <= episode < self.num_episodes:
            raise IndexError(f"episode {episode} out of range: store {self.path} has {self.num_episodes}")
        start = 0 if episode == 0 else int(self.episode_ends[episode - 1])
        return start, int(self.episode_ends[episode])

    def episode_lengths(self) -> np.ndarray:
        return np.diff(np.concatenate([[0], self.episode_ends]))

    # -- reading -----------------------------------------------------------------------------------
    def frames(self, start: int, stop: int, step: int = 1) -> np.ndarray:
        """uint8 [n, H, W, 3] for global frame indices ``start:stop:step`` (committed rows only)."""
        if not 0 <= start <= stop <= self.num_frames:
            raise IndexError(f"frames {start}:{stop} outside committed range 0:{self.num_frames} of {self.path}")
        raw = self._frames[start:stop:step] if step > 1 else self._frames[start:stop]
        return self._to_uint8(np.asarray(raw))

    def _to_uint8(self, raw: np.ndarray) -> np.ndarray:
        mode = self.key_map.frames_range
        if mode == "uint8":
            return raw
        scale = 255.0 if mode == "float_0_1" else 1.0
        return np.clip(np.rint(raw * scale), 0, 255).astype(np.uint8)

    def action(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        return np.asarray(self._action[start : self.num_frames if stop is None else stop])

    def state(self, start: int = 0, stop: int | None = None) -> np.ndarray | None:
        if self._state is None:
            return None
        return np.asarray(self._state[start : self.num_frames if stop is None else stop])

    def timestamp(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        stop = self.num_frames if stop is None else stop
        if self._timestamp is not None:
            return np.asarray(self._timestamp[start:stop])
        # Stores without timestamps (Diffusion Policy): seconds since each episode's start at the key map's fps.
        idx = np.arange(start, stop)
        ep_start = np.concatenate([[0], self.episode_ends[:-1]])[np.searchsorted(self.episode_ends, idx, side="right")]
        return (idx - ep_start) / self.fps

    def episode(self, episode: int) -> dict[str, np.ndarray]:
        s, e = self.episode_bounds(episode)
        out = {"frames": self.frames(s, e), "action": self.action(s, e), "timestamp": self.timestamp(s, e)}
        state = self.state(s, e)
        if state is not None:
            out["state"] = state
        return out

    def stats(self) -> dict[str, NormStats]:
        """Normalization stats from the attrs (written by the writer), else computed now."""
        stored = self.attrs.get("stats")
        if stored:
            return {k: NormStats.from_dict(v) for k, v in stored.items()}
        out = {"action": NormStats.of(self.action())}
        if self._state is not None:
            out["state"] = NormStats.of(self.state())  # type: ignore[arg-type]
        return out

    def content_hash(self) -> str:
        """A short hash of the store's shape and episode layout (recorded in checkpoints)."""
        import hashlib

        h = hashlib.sha256()
        h.update(json.dumps(self.summary.as_json(), sort_keys=True).encode())
        h.update(self.episode_ends.tobytes())
        h.update(self.action(0, min(self.num_frames, 4096)).tobytes())
        return h.hexdigest()[:16]
