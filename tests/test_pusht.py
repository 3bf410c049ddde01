"""The embedded PushT generator: deterministic for a seed, frames that follow the state."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gym_pusht", reason="PushT generation needs the [sim] extra (gym-pusht)")

from crcm_robotics.data import TrajectoryStore, validate_store  # noqa: E402
from crcm_robotics.data.pusht import generate_pusht  # noqa: E402

TINY = dict(episodes=3, size=32, min_steps=20, max_steps=30, progress=False)


def arrays(path) -> dict[str, bytes]:
    store = TrajectoryStore(path)
    return {
        "episode_ends": store.episode_ends.tobytes(),
        "frames": store.frames(0, store.num_frames).tobytes(),
        "action": store.action().tobytes(),
        "state": store.state().tobytes(),
        "timestamp": store.timestamp().tobytes(),
    }


@pytest.fixture(scope="module")
def seed0(tmp_path_factory):
    path = tmp_path_factory.mktemp("pusht") / "a.zarr"
    figures = generate_pusht(path, seed=0, workers=1, **TINY)
    return path, figures


def test_same_seed_same_bytes_whatever_the_workers(seed0, tmp_path):
    path, figures = seed0
    assert (figures["episodes"], figures["workers"]) == (3, 1)
    generate_pusht(tmp_path / "b.zarr", seed=0, workers=1, **TINY)
    generate_pusht(tmp_path / "c.zarr", seed=0, workers=2, **TINY)
    reference = arrays(path)
    assert arrays(tmp_path / "b.zarr") == reference
    assert arrays(tmp_path / "c.zarr") == reference
    generate_pusht(tmp_path / "d.zarr", seed=1, workers=1, **TINY)
    other = arrays(tmp_path / "d.zarr")
    assert other["frames"] != reference["frames"] and other["action"] != reference["action"]


@pytest.mark.parametrize("behavior", ["scripted", "mixed"])
def test_a_store_of_more_episodes_begins_with_the_smaller_stores_episodes(tmp_path, behavior):
    """Episode e is written from its own seed (and, mixed, explores by its index alone), so a store grown to more
    episodes (pusht_study.sh STORE_EPISODES) holds the smaller store's episodes first, byte for byte: its
    held-out ones are the same episodes."""
    generate_pusht(tmp_path / "small.zarr", seed=0, workers=1, behavior=behavior, **TINY)
    generate_pusht(tmp_path / "grown.zarr", seed=0, workers=2, behavior=behavior, **{**TINY, "episodes": 5})
    small, grown = TrajectoryStore(tmp_path / "small.zarr"), TrajectoryStore(tmp_path / "grown.zarr")
    end = int(small.episode_ends[-1])
    assert grown.num_episodes == 5 and grown.episode_ends[:3].tolist() == small.episode_ends.tolist()
    assert grown.frames(0, end).tobytes() == small.frames(0, small.num_frames).tobytes()
    assert grown.action(0, end).tobytes() == small.action().tobytes()
    assert grown.state(0, end).tobytes() == small.state().tobytes()


def test_store_follows_the_schema(seed0):
    path, figures = seed0
    summary = validate_store(path)
    lengths = np.diff(np.r_[0, TrajectoryStore(path).episode_ends])
    assert (summary.episodes, summary.image_shape, summary.action_dim, summary.state_dim) == (3, (32, 32, 3), 2, 5)
    assert summary.frames == figures["frames"] == lengths.sum()
    assert ((20 <= lengths) & (lengths <= 30)).all()
    store = TrajectoryStore(path)
    assert store.attrs["cameras"] == ["top"] and store.fps == 10.0
    assert store.attrs["state_names"] == ["agent_x", "agent_y", "block_x", "block_y", "block_angle"]
    action, state = store.action(), store.state()
    assert action.min() >= 10.0 and action.max() <= 502.0
    assert np.abs(state[:, 4]).max() <= np.pi
    np.testing.assert_allclose(store.episode(1)["timestamp"], np.arange(lengths[1]) / 10.0)
    assert set(store.attrs["stats"]) == {"action", "state"}


def test_frames_show_the_agent_where_the_state_says(tmp_path):
    size = 64
    path = tmp_path / "p.zarr"
    generate_pusht(path, episodes=2, size=size, seed=1, workers=1, min_steps=25, max_steps=25, progress=False)
    store = TrajectoryStore(path)
    frames = store.frames(0, store.num_frames).astype(np.int64)
    state = store.state()
    ends = store.episode_ends

    def pixel(xy):  # env units -> (row, col); the env draws with y down
        return tuple(int(v) for v in np.clip(np.round(np.asarray(xy)[::-1] * size / 512), 0, size - 1))

    def patch(frame, rc, r=3):
        return frame[max(rc[0] - r, 0) : rc[0] + r + 1, max(rc[1] - r, 0) : rc[1] + r + 1]

    moved = 0
    for i in range(len(state) - 1):
        r, g, b = frames[i][pixel(state[i, :2])]
        assert b > r + 100 and b > g + 60, f"frame {i}: no blue agent at {pixel(state[i, :2])}"
        if i + 1 in ends or np.linalg.norm(state[i + 1, :2] - state[i, :2]) <= 8.0:
            continue
        moved += 1
        new = pixel(state[i + 1, :2])
        assert np.abs(patch(frames[i + 1], new) - patch(frames[i], new)).sum() > 0, f"step {i}: agent area unchanged"
        if np.allclose(state[i + 1, 2:], state[i, 2:]):  # block still: every changed pixel is near the agent
            changed = np.argwhere(np.abs(frames[i + 1] - frames[i]).sum(-1) > 0)
            old = pixel(state[i, :2])
            near = [min(max(abs(rc[0] - o[0]), abs(rc[1] - o[1])) for o in (old, new)) <= 4 for rc in changed]
            assert all(near), f"step {i}: pixels far from the agent changed"
    assert moved >= 10


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"episodes must be ≥ 1, got 0"):
        generate_pusht(tmp_path / "x.zarr", episodes=0)
    with pytest.raises(ValueError, match=r"need 2 ≤ min_steps ≤ max_steps, got 30, 20"):
        generate_pusht(tmp_path / "x.zarr", episodes=1, min_steps=30, max_steps=20)
    assert not (tmp_path / "x.zarr").exists()
