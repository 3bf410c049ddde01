"""Trajectory store: writer/reader round trip, validator errors, interrupted appends, foreign layouts."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import zarr

from crcm_robotics.data import KeyMap, NormStats, StoreError, TrajectoryStore, TrajectoryWriter, validate_store
from crcm_robotics.data.dataset import WindowDataset
from crcm_robotics.data.schema import detect_key_map
from crcm_robotics.data.synthetic import frame_index, synthetic_episodes, write_synthetic_store

LENGTHS = (12, 9, 15)
NUM_FRAMES = 36


def error_of(fn, *args, **kwargs) -> str:
    with pytest.raises(StoreError) as exc:
        fn(*args, **kwargs)
    return str(exc.value)


# --- round trip ----------------------------------------------------------------------------------


def test_round_trip_two_cameras_is_exact(tmp_path):
    path = tmp_path / "s.zarr"
    episodes = synthetic_episodes(LENGTHS, image_size=6, cameras=("top", "wrist"), fps=5.0)
    writer = TrajectoryWriter.create(
        path, image_shape=(6, 6, 3), action_dim=2, state_dim=3, cameras=("top", "wrist"), fps=5.0,
        action_names=("vx", "vy"), action_units="m/s", source="unit test", extra_attrs={"robot": "r1"},
    )
    for e, ep in enumerate(episodes):
        assert writer.append_episode(ep["frames"], ep["action"], ep["state"], ep["timestamp"]) == e
    writer.write_stats()

    top = TrajectoryStore(path)  # default key map: the first camera
    wrist = TrajectoryStore(path, KeyMap.native("wrist"))
    assert top.episode_ends.tolist() == [12, 21, 36]
    assert (top.num_episodes, top.num_frames, top.image_shape) == (3, NUM_FRAMES, (6, 6, 3))
    assert (top.action_dim, top.state_dim, top.fps) == (2, 3, 5.0)
    for e, ep in enumerate(episodes):
        got = top.episode(e)
        assert got["frames"].dtype == np.uint8 and got["frames"].tobytes() == ep["frames"]["top"].tobytes()
        assert wrist.episode(e)["frames"].tobytes() == ep["frames"]["wrist"].tobytes()
        assert got["action"].dtype == np.float32 and got["action"].tobytes() == ep["action"].tobytes()
        assert got["state"].tobytes() == ep["state"].tobytes()
        assert got["timestamp"].dtype == np.float64 and got["timestamp"].tobytes() == ep["timestamp"].tobytes()
    assert top.attrs["cameras"] == ["top", "wrist"]
    assert top.attrs["action_names"] == ["vx", "vy"] and top.attrs["action_units"] == "m/s"
    assert top.attrs["state_names"] == ["s0", "s1", "s2"]
    assert (top.attrs["source"], top.attrs["robot"], top.attrs["format"], top.attrs["version"]) == (
        "unit test", "r1", "crcm-trajectories", 1)

    action = np.concatenate([ep["action"] for ep in episodes]).astype(np.float64)
    stats = top.stats()
    np.testing.assert_allclose(stats["action"].mean, action.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats["action"].std, action.std(0), rtol=1e-12)
    assert stats["action"].min[0] == 0.0 and stats["action"].max[0] == 35.0  # action[:, 0] is the frame index
    assert stats["state"].max[0] == 35.0
    assert top.summary.as_json() == {
        "episodes": 3, "frames": 36, "image_shape": [6, 6, 3], "action_dim": 2, "state_dim": 3,
        "cameras": ["top", "wrist"], "uncommitted_frames": 0, "fps": 5.0,
    }


def test_default_timestamps_and_frame_slices(tmp_path):
    path = tmp_path / "s.zarr"
    ep = synthetic_episodes([7])[0]
    writer = TrajectoryWriter.create(path, image_shape=(8, 8, 3), action_dim=2, state_dim=3, fps=4.0)
    writer.append_episode(ep["frames"]["rgb"], ep["action"], ep["state"])  # no timestamp: i / fps
    store = TrajectoryStore(path)
    assert store.timestamp().tolist() == [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5]
    assert frame_index(store.frames(1, 7, 2)).tolist() == [1, 3, 5]
    assert error_of(TrajectoryWriter.create, path, image_shape=(8, 8, 3), action_dim=2, fps=4.0) == (
        f"{path} already exists; pass overwrite=True or open it with TrajectoryWriter.append_to")
    with pytest.raises(IndexError, match=r"frames 0:8 outside committed range 0:7"):
        store.frames(0, 8)


def test_norm_stats_normalize_centres_constant_dimensions():
    stats = NormStats.of(np.array([[1.0, 5.0], [3.0, 5.0]]))
    assert stats.to_dict() == {"mean": [2.0, 5.0], "std": [1.0, 0.0], "min": [1.0, 5.0], "max": [3.0, 5.0]}
    np.testing.assert_array_equal(stats.normalize(np.array([[3.0, 6.0]])), [[1.0, 1.0]])
    assert NormStats.from_dict(stats.to_dict()).to_dict() == stats.to_dict()


def test_writer_rejects_bad_input_and_writes_nothing(tmp_path):
    path = tmp_path / "s.zarr"
    write_synthetic_store(path, LENGTHS[:1])
    writer = TrajectoryWriter.append_to(path)
    ep = synthetic_episodes([5])[0]
    frames, action, state = ep["frames"]["rgb"], ep["action"], ep["state"]

    assert error_of(writer.append_episode, frames, action.astype(np.float64), state) == (
        "data/action: expected dtype float32, got float64 (convert explicitly)")
    assert error_of(writer.append_episode, frames[:, :4], action, state) == (
        "data/frames/rgb: expected shape (5, 8, 8, 3), got (5, 4, 8, 3)")
    bad = action.copy()
    bad[3, 1] = np.nan
    assert error_of(writer.append_episode, frames, bad, state) == "episode 1 of data/action has NaN at step 3"
    bad = state.copy()
    bad[2, 0] = np.inf
    assert error_of(writer.append_episode, frames, action, bad) == "episode 1 of data/state has inf at step 2"
    ts = np.array([0.0, 0.1, 0.1, 0.2, 0.3])
    assert error_of(writer.append_episode, frames, action, state, ts) == (
        "episode 1 of data/timestamp is not increasing at step 2")
    assert error_of(writer.append_episode, frames, action) == "store has data/state but the episode gives no state"
    assert error_of(writer.append_episode, {"left": frames}, action, state) == (
        "episode has frames for cameras ['left'], store has ['rgb']")

    summary = validate_store(path)
    assert (summary.episodes, summary.frames, summary.uncommitted_frames) == (1, 12, 0)
    assert zarr.open_group(str(path), mode="r")["data/frames/rgb"].shape[0] == 12


# --- validator -----------------------------------------------------------------------------------


@pytest.fixture
def good_store(tmp_path):
    path = tmp_path / "good.zarr"
    write_synthetic_store(path, LENGTHS, cameras=("rgb", "wrist"))
    return path


def test_validator_accepts_good_store(good_store):
    summary = validate_store(good_store)
    assert (summary.episodes, summary.frames, summary.image_shape) == (3, 36, (8, 8, 3))
    assert (summary.action_dim, summary.state_dim, summary.cameras) == (2, 3, ("rgb", "wrist"))


def test_validator_missing_store_and_array(good_store, tmp_path):
    assert error_of(validate_store, tmp_path / "nope.zarr") == f"trajectory store {tmp_path / 'nope.zarr'} does not exist"
    shutil.rmtree(good_store / "data" / "action")
    assert error_of(validate_store, good_store) == f"store {good_store} has no array data/action"


def test_validator_missing_second_camera(good_store):
    shutil.rmtree(good_store / "data" / "frames" / "wrist")
    assert error_of(validate_store, good_store) == f"store {good_store} has no array data/frames/wrist"


def test_validator_length_mismatch(good_store):
    zarr.open_group(str(good_store), mode="r+")["data/state"].resize((30, 3))
    assert error_of(validate_store, good_store) == (
        f"store {good_store}: length mismatch: data/state has 30 rows but meta/episode_ends ends at 36")


def test_validator_non_monotonic_episode_ends(good_store):
    zarr.open_group(str(good_store), mode="r+")["meta/episode_ends"][:] = np.array([12, 10, 36])
    assert error_of(validate_store, good_store) == (
        f"store {good_store}: meta/episode_ends is not strictly increasing: episode 1 ends at 10 "
        "after episode 0 ends at 12")


@pytest.mark.parametrize(
    "key, row, value, message",
    [
        ("data/action", 12 + 3, np.nan, "episode 1 of data/action has NaN at step 3"),
        ("data/action", 35, np.inf, "episode 2 of data/action has inf at step 14"),
        ("data/state", 0, np.nan, "episode 0 of data/state has NaN at step 0"),
        ("data/timestamp", 21 + 2, np.nan, "episode 2 of data/timestamp has NaN at step 2"),
        ("data/timestamp", 21 + 2, 0.0, "episode 2 of data/timestamp is not increasing at step 2"),
    ],
)
def test_validator_bad_values_name_episode_and_step(good_store, key, row, value, message):
    arr = zarr.open_group(str(good_store), mode="r+")[key]
    if arr.ndim == 2:
        arr[row, arr.shape[1] - 1] = value
    else:
        arr[row] = value
    assert error_of(validate_store, good_store) == f"store {good_store}: {message}"


@pytest.mark.parametrize(
    "key, dtype, shape, message",
    [
        ("data/action", "float64", (36, 2), "data/action has dtype float64, expected float32"),
        ("data/frames/rgb", "float32", (36, 8, 8, 3), "data/frames/rgb has dtype float32, expected uint8"),
        ("data/frames/rgb", "uint8", (36, 8, 8, 4), "data/frames/rgb has shape (36, 8, 8, 4), expected [N, H, W, 3] (RGB)"),
        ("data/timestamp", "float32", (36,), "data/timestamp has dtype float32, expected float64"),
        ("meta/episode_ends", "int32", (3,), "meta/episode_ends has dtype int32, expected int64"),
    ],
)
def test_validator_wrong_dtype_or_shape(good_store, key, dtype, shape, message):
    group = zarr.open_group(str(good_store), mode="r+")
    values = np.array([12, 21, 36]) if key == "meta/episode_ends" else np.ones(shape)
    del group[key]
    group.create_array(key, shape=shape, dtype=dtype, chunks=shape)[:] = values.astype(dtype)
    assert error_of(validate_store, good_store) == f"store {good_store}: {message}"


def test_validator_refuses_unknown_format_version(good_store):
    zarr.open_group(str(good_store), mode="r+").attrs["version"] = 2
    assert error_of(validate_store, good_store) == f"store {good_store} has format version 2, this reader knows 1"


# --- interrupted appends -------------------------------------------------------------------------


class Crash(RuntimeError):
    pass


def _crash_on(monkeypatch, method: str, array_path: str) -> None:
    """Make ``zarr.Array.<method>`` raise :class:`Crash` when called on the array at ``array_path``."""
    original = getattr(zarr.Array, method)

    def crashing(self, *args, **kwargs):
        if self.path == array_path:
            raise Crash(f"simulated crash in {method} of {array_path}")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(zarr.Array, method, crashing)


@pytest.mark.parametrize(
    "method, array_path, new_length, uncommitted",
    [
        # all data arrays grown and written, episode_ends not touched
        ("resize", "meta/episode_ends", 9, 15),
        # frames grown and written, action/state/timestamp not yet
        ("resize", "data/action", 20, 15),
        # episode_ends grown but its value never written: the slot reads as the fill value -1
        ("__setitem__", "meta/episode_ends", 9, 15),
    ],
)
def test_interrupted_append_leaves_earlier_episodes_intact(tmp_path, monkeypatch, method, array_path, new_length,
                                                           uncommitted):
    path = tmp_path / "s.zarr"
    episodes = write_synthetic_store(path, LENGTHS[:2])
    crashed = synthetic_episodes([12, 9, 15], seed=1)[2]
    with monkeypatch.context() as m:
        _crash_on(m, method, array_path)
        with pytest.raises(Crash):
            TrajectoryWriter.append_to(path).append_episode(
                crashed["frames"]["rgb"], crashed["action"], crashed["state"], crashed["timestamp"])

    raw_ends = zarr.open_group(str(path), mode="r")["meta/episode_ends"][:]
    assert raw_ends.tolist() == ([12, 21, -1] if method == "__setitem__" else [12, 21])
    assert zarr.open_group(str(path), mode="r")["data/frames/rgb"].shape[0] == 21 + 15
    summary = validate_store(path)
    assert (summary.episodes, summary.frames, summary.uncommitted_frames) == (2, 21, uncommitted)
    store = TrajectoryStore(path)
    for e, ep in enumerate(episodes):
        got = store.episode(e)
        assert got["frames"].tobytes() == ep["frames"]["rgb"].tobytes()
        assert got["action"].tobytes() == ep["action"].tobytes()
        assert got["state"].tobytes() == ep["state"].tobytes()
    assert WindowDataset(path, window=9).starts.tolist() == [0, 1, 2, 3, 12]  # no window reaches past row 21

    new = synthetic_episodes([12, 9, new_length], seed=2)[2]
    assert TrajectoryWriter.append_to(path).append_episode(
        new["frames"]["rgb"], new["action"], new["state"], new["timestamp"]) == 2
    group = zarr.open_group(str(path), mode="r")
    assert group["meta/episode_ends"][:].tolist() == [12, 21, 21 + new_length]
    for key in ("data/frames/rgb", "data/action", "data/state", "data/timestamp"):
        assert group[key].shape[0] == 21 + new_length, key  # the crashed rows are gone, not kept past the end
    store = TrajectoryStore(path)
    assert store.summary.uncommitted_frames == 0
    got = store.episode(2)
    assert got["frames"].tobytes() == new["frames"]["rgb"].tobytes()
    assert got["action"].tobytes() == new["action"].tobytes()
    assert got["timestamp"].tobytes() == new["timestamp"].tobytes()
    assert store.episode(0)["frames"].tobytes() == episodes[0]["frames"]["rgb"].tobytes()


# --- foreign layouts: Diffusion Policy's ReplayBuffer ------------------------------------------------


def write_diffusion_policy_store(path, zarr_format: int, img_dtype: str, lengths=(7, 6)) -> dict[str, np.ndarray]:
    """A ReplayBuffer-layout store as Diffusion Policy writes it (its PushT store holds float32 0..255 images)."""
    rng = np.random.default_rng(3)
    n = sum(lengths)
    img_u8 = rng.integers(0, 256, size=(n, 96, 96, 3), dtype=np.uint8)
    arrays = {
        "data/img": img_u8.astype(img_dtype),
        "data/state": rng.normal(size=(n, 5)).astype(np.float32),
        "data/action": rng.uniform(0, 512, size=(n, 2)).astype(np.float32),
        "meta/episode_ends": np.cumsum(lengths).astype(np.int64),
    }
    group = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    for key, values in arrays.items():
        chunks = (4, *values.shape[1:]) if key.startswith("data") else values.shape
        group.create_array(key, shape=values.shape, dtype=values.dtype, chunks=chunks)[:] = values
    return {**arrays, "img_u8": img_u8}


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("img_dtype", ["float32", "uint8"])
def test_diffusion_policy_store_opens_through_key_map(tmp_path, zarr_format, img_dtype):
    path = tmp_path / "dp.zarr"
    arrays = write_diffusion_policy_store(path, zarr_format, img_dtype)
    assert zarr.open_group(str(path), mode="r").metadata.zarr_format == zarr_format
    expected = KeyMap.diffusion_policy(frames_range="float_0_255" if img_dtype == "float32" else "uint8")
    assert detect_key_map(path) == expected

    for key_map in (None, expected):  # auto-detected and explicit
        store = TrajectoryStore(path, key_map)
        assert store.summary.as_json() == {
            "episodes": 2, "frames": 13, "image_shape": [96, 96, 3], "action_dim": 2, "state_dim": 5,
            "cameras": ["img"], "uncommitted_frames": 0, "fps": 10.0,
        }
        frames = store.frames(0, 13)
        assert frames.dtype == np.uint8 and frames.tobytes() == arrays["img_u8"].tobytes()
        assert store.action().tobytes() == arrays["data/action"].tobytes()
        np.testing.assert_allclose(store.timestamp(), np.r_[np.arange(7), np.arange(6)] / 10.0)

    ds = WindowDataset(path, window=3, frame_skip=2)
    assert ds.starts.tolist() == [0, 1, 7]  # a 7-step and a 6-step episode, windows of 6 steps
    item = ds[2]
    assert item["frames"].numpy().tobytes() == arrays["img_u8"][[7, 9, 11]].tobytes()
    assert item["action"].shape == (3, 4)
    np.testing.assert_array_equal(item["action"].numpy(), arrays["data/action"][7:13].reshape(3, 4))
    np.testing.assert_array_equal(item["state"].numpy(), arrays["data/state"][[7, 9, 11]])


def test_diffusion_policy_float_frames_need_the_key_map_to_say_so(tmp_path):
    path = tmp_path / "dp.zarr"
    write_diffusion_policy_store(path, 2, "float32")
    assert error_of(validate_store, path, KeyMap.diffusion_policy(frames_range="uint8")) == (
        f"store {path}: data/img has dtype float32, expected uint8")
