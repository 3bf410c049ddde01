"""``crcm eval`` with a state probe: each logged state read off predicted frames against the truth, per step.

Guards the per-step arithmetic (angles wrapped) on a probe whose readings are known, and the figures, plot and
errors of a real tiny probe through ``evaluate``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

pytest.importorskip("gym_pusht", reason="needs the [sim] extra (gym-pusht)")


def test_probe_scores_per_step_with_wrapped_angles():
    from crcm_robotics.eval.evaluate import probe_scores

    class ReadsPixel:  # reads state 0 from pixel [0, 0, 0] and an angle of pixel [0, 0, 1] / 10 rad
        spec = SimpleNamespace(state_names=("x", "turn"), angles=(False, True))

        def state_of(self, frames):
            f = frames.double().numpy()
            return np.stack([f[:, 0, 0, 0], f[:, 0, 0, 1] / 10.0], axis=-1)

    pred = np.zeros((2, 3, 4, 4, 3), np.uint8)
    pred[:, :, 0, 0, 0] = [[10, 20, 30], [12, 22, 32]]
    pred[:, :, 0, 0, 1] = 62  # 6.2 rad: 0.083 rad short of a full turn
    states = np.zeros((2, 3, 2))
    states[..., 0] = [[10, 21, 27], [10, 20, 30]]
    scores = probe_scores(ReadsPixel(), pred, states, torch.device("cpu"))
    assert scores["probe_err"]["x"] == [1.0, 1.5, 2.5]
    wrapped = np.degrees(2 * np.pi - 6.2)
    assert scores["probe_err"]["turn_deg"] == pytest.approx([wrapped] * 3, abs=1e-3)
    assert scores["probe_err_mean"]["x"] == pytest.approx(5 / 3, abs=1e-3)


@pytest.fixture(scope="module")
def teacher_with_probe(tiny_teacher, pusht_store_32, tmp_path_factory) -> Path:
    from crcm_robotics.conf import compose_config
    from distill.probe import train_probe

    out = tmp_path_factory.mktemp("evalprobe") / "teacher"
    shutil.copytree(tiny_teacher, out)
    train_probe(compose_config("train_probe", [f"data.path={pusht_store_32}", f"out={out / 'probe'}", "steps=20",
                                               "batch_size=16", "width=8", "progress=false"]))
    return out


def _eval(ckpt: Path, out: Path, *extra: str) -> dict:
    from crcm_robotics.conf import compose_config
    from crcm_robotics.eval.evaluate import evaluate

    return evaluate(compose_config("eval", [f"ckpt={ckpt}", "horizon=3", "episodes=2", "windows_per_episode=1",
                                            "time_batch1=false", "device=cpu", f"out={out}", *extra]))


def test_eval_reports_probe_errors_for_model_copy_last_and_the_real_frames(teacher_with_probe, tmp_path,
                                                                          one_torch_thread):
    result = _eval(teacher_with_probe, tmp_path / "r")
    names = {"agent_pos", "block_pos", "agent_x", "agent_y", "block_x", "block_y", "block_angle_deg"}
    assert set(result["probe_err"]) == names and all(len(v) == 3 for v in result["probe_err"].values())
    assert set(result["baseline_copy_last"]["probe_err_mean"]) == names and set(result["probe_floor"]) == names
    assert all(v >= 0 for v in result["probe_err_mean"].values())
    assert (tmp_path / "r" / "probe_error_vs_horizon.png").stat().st_size > 0
    assert "probe_err" not in _eval(teacher_with_probe, tmp_path / "n", "probe=none", "report=false")


def test_a_probe_that_does_not_fit_the_store_is_a_clear_error(teacher_with_probe, tmp_path, one_torch_thread):
    import json

    bad = tmp_path / "probe"
    shutil.copytree(teacher_with_probe / "probe", bad)
    meta = json.loads((bad / "meta.json").read_text())
    meta["image_hw"] = [64, 64]
    (bad / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"reads 5 states from 64x64 frames; store .* logs 5 states at 32x32"):
        _eval(teacher_with_probe, tmp_path / "b", f"probe={bad}", "report=false")
    with pytest.raises(ValueError, match="no such state-probe directory"):
        _eval(teacher_with_probe, tmp_path / "b", f"probe={tmp_path / 'missing'}", "report=false")


@pytest.mark.parametrize("steps", [1, 5])
def test_a_probe_trains_for_very_few_steps(pusht_store_32, tmp_path, steps):
    from crcm_robotics.conf import compose_config
    from distill.probe import train_probe

    figures = train_probe(compose_config("train_probe", [f"data.path={pusht_store_32}", f"out={tmp_path / 'p'}",
                                                         f"steps={steps}", "batch_size=8", "width=8",
                                                         "progress=false"]))
    assert figures["steps"] == steps and (tmp_path / "p" / "probe.safetensors").is_file()


def test_position_groups_join_the_axes_of_each_point():
    from crcm_robotics.eval.evaluate import position_groups

    arm = ["hand_x", "hand_y", "hand_z", "gripper_open", "obj_x", "obj_y", "obj_z", "goal_x", "goal_y", "success"]
    assert position_groups(arm) == {"hand_pos": ["hand_x", "hand_y", "hand_z"], "obj_pos": ["obj_x", "obj_y", "obj_z"],
                                    "goal_pos": ["goal_x", "goal_y"]}
    assert position_groups(["agent_x", "block_angle"]) == {}


def test_probe_scores_give_the_euclidean_error_of_each_point():
    import types

    import numpy as np
    import torch

    from crcm_robotics.eval.evaluate import probe_scores

    states = np.zeros((2, 1, 3), dtype=np.float32)  # hand_x, hand_y, hand_z
    read = np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)  # 5 units off, then 1
    spec = types.SimpleNamespace(state_names=("hand_x", "hand_y", "hand_z"), angles=(False, False, False))
    probe = types.SimpleNamespace(spec=spec, state_of=lambda frames: read)
    scores = probe_scores(probe, np.zeros((2, 1, 4, 4, 3), np.uint8), states, torch.device("cpu"))
    assert scores["probe_err"]["hand_pos"] == [3.0]  # mean of 5 and 1; the axes' own errors stay beside it
    assert scores["probe_err"]["hand_x"] == [1.5] and scores["probe_err_mean"]["hand_pos"] == 3.0


def test_a_probe_learns_from_a_models_imagined_frames_labelled_with_true_states(tiny_teacher, pusht_store_32,
                                                                                tmp_path, one_torch_thread):
    from crcm_robotics.conf import compose_config
    from crcm_robotics.data.store import TrajectoryStore
    from crcm_robotics.model.checkpoint import load_checkpoint
    from crcm_robotics.plan.probe import load_probe
    from distill.probe import Imaginer, train_probe

    figures = train_probe(compose_config("train_probe", [
        f"data.path={pusht_store_32}", f"out={tmp_path / 'p'}", "steps=4", "batch_size=8", "width=8",
        "progress=false", "data.val_fraction=0.25", f"imagined.ckpt={tiny_teacher}",
        "imagined.sampler_steps=1", "imagined.horizon=2", "imagined.windows_per_episode=2",
        "imagined.batch=4"]))
    imagined = figures["imagined"]
    train_eps = load_checkpoint(str(tiny_teacher)).meta["split"]["train"]
    assert imagined["train_frames"] == len(train_eps) * 2 * 2 and imagined["val_frames"] > 0
    assert set(imagined["val"]["block"]) == {"still", "moved"}
    assert imagined["val"]["block"]["still"]["frames"] + imagined["val"]["block"]["moved"]["frames"] == \
        imagined["val_frames"]
    assert load_probe(tmp_path / "p").spec.state_names[:2] == ("agent_x", "agent_y")

    # the labels are the states the window's logged actions reached, frame_skip apart, after the context
    store = TrajectoryStore(pusht_store_32)
    cfg = compose_config("train_probe", [f"imagined.ckpt={tiny_teacher}", "imagined.sampler_steps=1",
                                         "imagined.horizon=2", "imagined.context=2"]).imagined
    frames, true, last = Imaginer(cfg, store, torch.device("cpu")).frames_and_states([train_eps[0]], 1)
    skip = int(load_checkpoint(str(tiny_teacher)).meta.get("frame_skip", 1))
    lo, _ = store.episode_bounds(train_eps[0])
    states = store.state(lo, lo + 4 * skip + 1)
    first = skip  # one window per episode starts where its producing actions exist
    np.testing.assert_allclose(true, states[[first + 2 * skip, first + 3 * skip]], rtol=1e-6)
    np.testing.assert_allclose(last, states[[first + skip, first + skip]], rtol=1e-6)
    assert frames.shape == (2, 32, 32, 3) and frames.dtype == np.uint8


@pytest.mark.parametrize("override, message", [
    ("imagined.share=1.0", "imagined.share must be in"),
    ("imagined.horizon=0", "must be ≥ 1"),
    ("seen_everything", "share 9 training and 0 held-out episodes"),
])
def test_bad_imagined_settings_are_one_line_errors(tiny_teacher, pusht_store_32, tmp_path, override, message):
    import json

    from crcm_robotics.conf import compose_config
    from crcm_robotics.config import ConfigError
    from distill.probe import train_probe

    ckpt = tiny_teacher
    if override == "seen_everything":  # a model trained on every episode has no held-out windows to score
        ckpt = tmp_path / "seen_all"
        shutil.copytree(tiny_teacher, ckpt)
        meta = json.loads((ckpt / "meta.json").read_text())
        meta["split"]["train"] = list(range(12))
        (ckpt / "meta.json").write_text(json.dumps(meta))
        override = "imagined.share=0.5"
    args = [f"data.path={pusht_store_32}", f"out={tmp_path / 'p'}", "steps=1", "batch_size=4", "width=8",
            "progress=false", "data.val_fraction=0.25", f"imagined.ckpt={ckpt}", override]
    with pytest.raises(ConfigError, match=message):
        train_probe(compose_config("train_probe", args))
