"""The arm chain at CPU size, through the CLI with the `arm_tiny` presets: a Meta-World store (OSMesa) ->
latent codec -> latent teacher (5 env steps per frame) -> Causal-rCM student -> eval with the state probe's
end-effector error -> the student behind the msgpack server. The GPU run of the same chain is
scripts/gpu/arm_chain.sh (docs/results.md, "A robot arm").
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from crcm_robotics.data import metaworld as mw

mw.choose_gl_backend()  # MUJOCO_GL before mujoco is first imported
pytest.importorskip("metaworld", reason="Meta-World needs the [metaworld] extra")

from crcm_robotics.cli import main  # noqa: E402


def _last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def arm_chain(tmp_path_factory, one_torch_thread_module):
    """Store, codec, probe, teacher and student made by the CLI, as a user runs them."""
    root = tmp_path_factory.mktemp("armchain")
    store, codec, teacher, student = (root / n for n in ("arm.zarr", "codec", "teacher", "student"))
    mw.generate_metaworld(store, task="push-v3", seed=0, workers=1, episodes=6, size=64, min_steps=40,
                          max_steps=50, progress=False)
    common = ["train.progress=false", "train.device=cpu"]
    assert main(["train", "codec", "preset=arm_tiny", f"data.path={store}", f"train.out={codec}",
                 "train.steps=10", *common]) == 0
    assert main(["train", "teacher", "preset=arm_tiny", f"data.path={store}", f"model.codec={codec}",
                 f"train.out={teacher}", "train.steps=6", "data.val_fraction=0.2",
                 "train.validation.every=3", "train.validation.horizon=2", *common]) == 0
    assert main(["train", "probe", f"data.path={store}", f"out={root / 'probe'}", "steps=10",
                 "batch_size=8", "width=8", "progress=false", "device=cpu"]) == 0
    assert main(["distill", "causal_rcm", f"teacher={teacher}", "preset=arm_tiny", f"train.out={student}",
                 "train.steps=2", *common]) == 0
    return {"store": store, "codec": codec, "teacher": teacher, "student": student, "root": root}


@pytest.fixture(scope="module")
def one_torch_thread_module():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny networks run fastest on one thread on a busy 2-core box
    yield
    torch.set_num_threads(threads)


def test_arm_presets_make_a_latent_teacher_and_student(arm_chain):
    from crcm_robotics.model.checkpoint import load_checkpoint

    for name in ("teacher", "student"):
        ck = load_checkpoint(arm_chain[name])
        assert (arm_chain[name] / "codec").is_dir(), f"the {name} carries its codec"
        assert ck.meta.get("frame_skip") == 5 and ck.model_config.patch == 2
        assert ck.model_config.channels == 4  # arm_tiny codec latents, not RGB


def test_eval_reads_the_end_effector_off_predicted_frames(arm_chain, tmp_path, capsys):
    assert main(["eval", str(arm_chain["student"]), "horizon=2", "context=2", "episodes=1",
                 f"probe={arm_chain['root'] / 'probe'}", f"out={tmp_path / 'eval'}"]) == 0
    result = _last_json(capsys)
    base = result["baseline_copy_last"]
    assert len(result["psnr"]) == 2 and len(base["psnr"]) == 2
    for figures in (result["probe_err"], base["probe_err"]):
        assert {"hand_pos", "obj_pos"} <= set(figures) and all(v >= 0 for v in figures["hand_pos"])
    assert (tmp_path / "eval" / "probe_error_vs_horizon.png").stat().st_size > 0


def test_the_student_serves_camera_frames(arm_chain):
    from crcm_robotics.data.store import TrajectoryStore
    from crcm_robotics.runtime import WorldModel
    from crcm_robotics.serve.client import WorldModelClient
    from crcm_robotics.serve.server import ServerThread, WorldModelServer

    model = WorldModel.load(arm_chain["student"], device="cpu")
    assert model.image_shape == (64, 64, 3) and model.action_dim == 4 * 5  # 5 env commands per frame
    store = TrajectoryStore(arm_chain["store"])
    frames = store.frames(0, 10)[::5][:2]
    actions = np.zeros((2, model.action_dim), np.float32)
    plan = np.random.default_rng(0).uniform(-1, 1, (3, 2, model.action_dim)).astype(np.float32)
    with ServerThread(WorldModelServer(model)) as address, WorldModelClient(*address) as client:
        out = client.imagine(plan, context=(frames, actions), goal=frames[-1], return_frames="best")
        assert out.frames.dtype == np.uint8 and out.frames.shape == (1, 2, 64, 64, 3)
        assert out.costs.shape == (3,) and np.isfinite(out.costs).all()
        # the latent cost: the final latents against the encoded goal, no frame decoded or sent
        lat = client.imagine(plan, context=(frames, actions), goal=frames[-1], seed=1, cost="latent_mse",
                             return_frames="none")
        assert lat.frames is None and lat.costs.shape == (3,) and np.isfinite(lat.costs).all()


@pytest.mark.timeout(300)
def test_the_ros_node_predicts_the_arm_from_its_own_commands(arm_chain, tmp_path):
    """The node on a live ROS 2 graph with the arm student (latent codec, frame skip 5): the robot's 4-value
    end-effector command drives it, held for the 5 camera frames of each predicted frame; ``~/imagine`` takes
    commands of 4 values too."""
    import time

    from _ros_live import Feeder, Graph, NodeProcess, require_rclpy

    require_rclpy()
    from crcm_interfaces.msg import PredictedFrames
    from crcm_interfaces.srv import ImagineRollouts

    command = (0.5, -0.25, 0.0, 1.0)
    graph = Graph()
    predicted = graph.collect(PredictedFrames, "/wm_arm/predicted")
    client = graph.node.create_client(ImagineRollouts, "/wm_arm/imagine")
    node = NodeProcess({"checkpoint": str(arm_chain["student"]), "device": "cpu", "backend": "eager",
                        "camera_topic": "/arm/cam", "action_topic": "/arm/cmd",
                        "action_type": "float32_multi_array", "context_rate_hz": 2.0, "publish_rate_hz": 2.0,
                        "horizon": 2, "max_rollouts": 4, "max_horizon": 4}, tmp_path / "node.log",
                       node_name="wm_arm")
    try:
        deadline = time.monotonic() + 120
        while not client.wait_for_service(timeout_sec=0.5):
            assert node.alive() and time.monotonic() < deadline, f"node not up; log:\n{node.log()[-3000:]}"
        assert "frame skip 5: each command held 5 camera frames" in node.log()
        with Feeder("/arm/cam", "/arm/cmd", "float32_multi_array", command=command):
            msg = predicted.wait_for(1, 90, f"PredictedFrames; node log:\n{node.log()[-2000:]}")[-1]
            assert (msg.horizon, msg.action_dim, len(msg.frames)) == (2, 20, 2)
            held = np.frombuffer(msg.actions, np.float32).reshape(2, 20)
            np.testing.assert_allclose(held, [command * 5] * 2)
            assert {(f.height, f.width) for f in msg.frames} == {(64, 64)}
            req = ImagineRollouts.Request()
            req.num_rollouts, req.horizon, req.action_dim = 3, 2, 4
            req.actions = np.linspace(-1, 1, 3 * 2 * 4, dtype=np.float32).tolist()
            req.return_frames = True
            resp = graph.call(client, req)
            assert resp.success, resp.message
            assert (resp.num_rollouts, resp.horizon, len(resp.frames)) == (3, 2, 6)
    finally:
        node.kill()
        graph.close()
