"""Meta-World arm stores: schema, state columns, determinism per seed, bad inputs (OSMesa on CPU)."""

from __future__ import annotations

import numpy as np
import pytest

from crcm_robotics.data import metaworld as mw

mw.choose_gl_backend()  # MUJOCO_GL must be set before mujoco is first imported (importorskip imports it)
pytest.importorskip("metaworld", reason="Meta-World generation needs the [metaworld] extra")

from crcm_robotics.data import TrajectoryStore, validate_store  # noqa: E402
from crcm_robotics.data.schema import StoreError  # noqa: E402

TINY = dict(episodes=3, size=64, min_steps=12, max_steps=18, progress=False)


@pytest.fixture(scope="module")
def arm_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("arm") / "arm.zarr"
    figures = mw.generate_metaworld(path, task="push-v3", seed=0, workers=1, **TINY)
    return path, figures


def test_store_follows_the_schema_with_arm_state(arm_store):
    path, figures = arm_store
    summary = validate_store(path)
    shape = (summary.episodes, summary.image_shape, summary.action_dim, summary.state_dim)
    assert shape == (3, (64, 64, 3), 4, 15)
    assert summary.frames == figures["frames"] and figures["gl"] in ("osmesa", "egl")
    store = TrajectoryStore(path)
    assert store.attrs["cameras"] == ["front"] and store.fps == pytest.approx(80.0)
    assert store.attrs["state_names"][-1] == "success" == mw.STATE_NAMES[mw.SUCCESS_COLUMN]
    assert store.attrs["metaworld"]["success_column"] == 14
    action, state = store.action(), store.state()
    assert np.abs(action).max() <= 1.0
    assert set(np.unique(state[:, mw.SUCCESS_COLUMN])) <= {0.0, 1.0}
    np.testing.assert_allclose(np.linalg.norm(state[:, 7:11], axis=1), 1.0, atol=1e-4)  # unit quaternions
    assert abs(state[0, 7]) == pytest.approx(1.0, abs=1e-3)  # an upright puck: w first, w = ±1
    assert state[0, 10] == pytest.approx(0.0, abs=1e-3)
    lengths = store.episode_lengths()
    assert ((12 <= lengths) & (lengths <= 18)).all()
    np.testing.assert_allclose(store.episode(1)["timestamp"], np.arange(lengths[1]) / 80.0)
    # frames follow the hand: consecutive frames of a moving arm differ, and the scene is not blank
    frames = store.frames(0, int(lengths[0])).astype(np.int16)
    assert frames.std() > 20 and np.abs(np.diff(frames, axis=0)).mean() > 0.05


def test_hand_moves_as_commanded(arm_store):
    """Meta-World moves the mocap by action[:3] x 1 cm: the hand's next move follows the command's sign."""
    store = TrajectoryStore(arm_store[0])
    s, e = store.episode_bounds(0)
    action, hand = store.action(s, e), store.state(s, e)[:, :3]
    moved = np.diff(hand, axis=0)
    big = np.abs(action[:-1, :3]) > 0.5
    agree = np.sign(moved[big]) == np.sign(action[:-1, :3][big])
    assert agree.mean() > 0.8


def test_same_seed_same_episode_whatever_ran_before(arm_store):
    """What parallel workers rely on: an episode depends only on (seed, episode), not on what ran before."""
    path, _ = arm_store
    store = TrajectoryStore(path)
    mw._WORKER_SCENE = None  # a fresh scene, as a new worker process has
    job = ("push-v3", 0, 2, 64, 12, 18, mw.BehaviourConfig())
    fresh = mw.collect_episode(job)
    ep = store.episode(2)
    assert np.array_equal(fresh.frames, ep["frames"])
    assert np.array_equal(fresh.action, ep["action"]) and np.array_equal(fresh.state, ep["state"])
    other = mw.collect_episode(("push-v3", 1, 2, 64, 12, 18, mw.BehaviourConfig()))
    assert not np.array_equal(other.action[:5], ep["action"][:5])


def test_button_press_task_records_its_scene(tmp_path):
    path = tmp_path / "button.zarr"
    figures = mw.generate_metaworld(path, task="button-press-v3", seed=3, workers=1, episodes=1, size=32,
                                    min_steps=5, max_steps=5, progress=False)
    store = TrajectoryStore(path)
    assert figures["frames"] == 5 and store.image_shape == (32, 32, 3)
    assert "button-press-v3" in store.attrs["source"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(task="pick-v9"),
         "unknown Meta-World task 'pick-v9'; expected one of push-v3, button-press-v3, drawer-open-v3"),
        (dict(size=8), "size must be in [16, 480] pixels, got 8"),
        (dict(episodes=0), "episodes must be ≥ 1, got 0"),
        (dict(min_steps=10, max_steps=600), "need 2 ≤ min_steps ≤ max_steps ≤ 500, got 10, 600"),
    ],
)
def test_bad_input_is_one_sentence(tmp_path, kwargs, message):
    args = dict(episodes=1, size=32, min_steps=5, max_steps=5, workers=1, progress=False) | kwargs
    with pytest.raises(StoreError) as err:
        mw.generate_metaworld(tmp_path / "bad.zarr", **args)
    assert str(err.value) == message
    assert not (tmp_path / "bad.zarr").exists()


def test_cli_reports_a_bad_task_in_one_line(capsys):
    from crcm_robotics.cli import main

    assert main(["data", "metaworld", "preset=arm_tiny", "task=nope", "out=unused.zarr"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("crcm: error: unknown Meta-World task 'nope'") and "\n" not in err


def test_gl_backend_respects_the_user(monkeypatch):
    monkeypatch.delenv("PYOPENGL_PLATFORM", raising=False)  # restored after the test, as MUJOCO_GL is
    monkeypatch.setenv("MUJOCO_GL", "egl")
    assert mw.choose_gl_backend() == "egl"
    monkeypatch.delenv("MUJOCO_GL")
    expected = "egl" if mw.os.path.exists("/dev/nvidiactl") or mw.os.path.exists("/dev/nvidia0") else "osmesa"
    assert mw.choose_gl_backend() == expected
