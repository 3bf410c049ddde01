"""Planning on the Meta-World arm (OSMesa on CPU): replayed goals, MuJoCo snapshots, and ``crcm bench plan``.

Guards that a stored episode replays exactly (the start and the goal the logged actions reach), that a
snapshot rolls candidates out as stepping would, in one process or several, and the benchmark's JSON for the
simulator arms and a model arm (with its fidelity figures) on an arm store.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from crcm_robotics.data import metaworld as mw

mw.choose_gl_backend()  # MUJOCO_GL before mujoco is first imported
pytest.importorskip("metaworld", reason="Meta-World needs the [metaworld] extra")

from crcm_robotics.data import TrajectoryStore  # noqa: E402


@pytest.fixture(scope="module")
def arm_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("armplan") / "arm.zarr"
    mw.generate_metaworld(path, task="push-v3", seed=0, workers=1, episodes=4, size=32, min_steps=40,
                          max_steps=50, progress=False)
    return path


def test_replayed_goals_match_the_store_and_snapshots_roll_out_as_stepping(arm_store):
    from crcm_robotics.data.metaworld_sim import ArmRolloutPool, ArmSim, arm_goal_pair_at

    store = TrajectoryStore(arm_store)
    sim = ArmSim("push-v3", 32)
    try:
        pair = arm_goal_pair_at(store, sim, episode=1, start=12, ahead=10, context=2)
        s, _ = store.episode_bounds(1)
        np.testing.assert_allclose(pair.start_state[:11], store.state(s + 12, s + 13)[0, :11], atol=1e-5)
        np.testing.assert_allclose(pair.goal_state[:11], store.state(s + 22, s + 23)[0, :11], atol=1e-5)
        assert pair.context_frames.shape == (2, 32, 32, 3) and pair.goal_frame.shape == (32, 32, 3)
        rng = np.random.default_rng(0)
        cands = np.concatenate([pair.logged_actions[None], rng.uniform(-1, 1, (3, 10, 4))]).astype(np.float32)
        frames, states = sim.rollout(pair.start_snapshot, cands, frames="last")
        np.testing.assert_allclose(states[0, -1, :11], pair.goal_state[:11], atol=1e-6)
        np.testing.assert_array_equal(frames[0, 0], pair.goal_frame)
        assert not np.allclose(states[1, -1, :3], states[2, -1, :3])  # different commands, different hands
        pool = ArmRolloutPool("push-v3", 32, workers=2)
        try:
            _, pooled = pool.rollout(pair.start_snapshot, cands, frames="none")
        finally:
            pool.close()
        np.testing.assert_array_equal(pooled, states)
        with pytest.raises(ValueError, match=r"actions must be finite \[N ≥ 1, Hz ≥ 1, 4\]"):
            sim.rollout(pair.start_snapshot, cands[..., :2], frames="none")
    finally:
        sim.close()


def _bench(store, out, *extra):
    from crcm_robotics.conf import compose_config
    from crcm_robotics.eval.plan_bench import run_bench_plan_cfg

    return run_bench_plan_cfg(compose_config("bench_plan", [
        f"out={out}", "goals=2", "ahead=10", "budget=10", "min_move=0", "planner.samples=16",
        "planner.iterations=2", "planner.elites=4", "planner.horizon=10", "planner.hold=5",
        "planner.replan_every=5", "gifs=1", "oracle_workers=1", "device=cpu", "progress=false", *extra]))


def test_bench_plan_runs_the_simulator_arms_on_the_arm(arm_store, tmp_path):
    report = _bench(arm_store, tmp_path / "sim", f"data.path={arm_store}", "arms=[random,oracle_state]")
    assert report["domain"] == "metaworld" and report["goals"] == 2
    # the arm's effort defaults (the end-effector velocity, the gripper's ±1 effort left out)
    assert {k: report["planner"][k] for k in ("effort_weight", "effort_on", "effort_dims")} == {
        "effort_weight": 1.0, "effort_on": "magnitude", "effort_dims": (0, 1, 2)}
    for arm in report["arms"].values():
        assert 0.0 <= arm["success_end"] <= arm["success_any"] <= 1.0
        assert 0.0 <= arm["block_pos_error"] < 1.0  # metres
    assert "Closed-loop planning in Meta-World" in (tmp_path / "sim" / "report.md").read_text()
    assert (tmp_path / "sim" / "random" / "goal00.gif").stat().st_size > 0


def test_bench_plan_runs_a_model_arm_with_fidelity_on_the_arm(arm_store, tmp_path, one_torch_thread):
    from crcm_robotics.conf import compose_config
    from distill.probe import train_probe
    from distill.teacher import train_teacher

    ckpt = tmp_path / "teacher"
    train_teacher(compose_config("config", [f"data.path={arm_store}", f"train.out={ckpt}", "train.steps=4",
                                            "train.progress=false", "data.val_fraction=0.25"],
                                 "crcm_robotics.conf.teacher"))
    shutil.rmtree(ckpt / "selected", ignore_errors=True)
    train_probe(compose_config("train_probe", [f"data.path={arm_store}", f"out={ckpt / 'probe'}", "steps=10",
                                               "batch_size=8", "width=8", "progress=false"]))
    report = _bench(arm_store, tmp_path / "model", f"ckpt={ckpt}", "arms=[model]", "goals=1",
                    "fidelity_goals=1", "planner.cost=probe")
    arm = report["arms"]["teacher"]
    assert arm["replan_ms_median"] > 0 and arm["model"]["frame_skip"] == 1
    fid = arm["fidelity"]
    assert {"imagined_hand_error", "imagined_obj_error", "probe_obj_error", "static_obj_error",
            "rank_corr_model", "rank_corr_oracle"} <= set(fid)
    assert "hand error" in (tmp_path / "model" / "report.md").read_text()


def test_scenes_made_and_dropped_do_not_spoil_other_renderers():
    """Under OSMesa a freed MuJoCo renderer left the others drawing noise: scenes are kept and reused."""
    import gc

    from crcm_robotics.data.metaworld_sim import ArmSim

    keep = ArmSim("push-v3", 40)
    keep.replay(1, np.zeros((2, 4), np.float32))
    before = keep.scene.render()
    for size in (24, 32):
        dropped = ArmSim("push-v3", size)
        dropped.replay(2, np.zeros((1, 4), np.float32))
        dropped.scene.render()
        dropped.close()
        del dropped
    gc.collect()
    np.testing.assert_array_equal(keep.scene.render(), before)
    made = len(mw._ALL_SCENES)
    again = ArmSim("push-v3", 32)
    assert len(mw._ALL_SCENES) == made  # a released 32 px scene is handed out again, not rebuilt
    keep.close()
    again.close()
