"""examples/plan_with_imagination.py against a fake msgpack client with the WorldModelClient verbs.

Guards the planner's use of the API (info keys; imagine(actions [N, Hz, A]
float32, context=(uint8 [K, H, W, 3], float32 [K, A]), goal=uint8 [H, W, 3]);
costs per rollout) and that CEM improves on its first iteration.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crcm_robotics.data import TrajectoryWriter

REPO = Path(__file__).resolve().parents[1]


def load_example():
    spec = importlib.util.spec_from_file_location(
        "plan_with_imagination", REPO / "examples" / "plan_with_imagination.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeClient:
    """A 'world' whose brightness integrates action[0]; cost = |final brightness - goal brightness|."""

    calls: list = []

    def __init__(self, host="127.0.0.1", port=0, token=None):
        self.address = (host, port, token)

    def info(self):
        return {"image_shape": [8, 8, 3], "action_dim": 2, "context_frames": 3, "max_batch": 256}

    def imagine(self, actions, context=None, goal=None, return_frames="all", cost=None):
        FakeClient.calls.append((actions, context, goal))
        assert return_frames in ("all", "none") and cost in (None, "final_mse")
        assert actions.dtype == np.float32 and actions.ndim == 3 and actions.shape[2] == 2
        frames, ctx_actions = context
        assert frames.dtype == np.uint8 and frames.shape == (3, 8, 8, 3) and ctx_actions.shape == (3, 2)
        assert goal is None or (goal.dtype == np.uint8 and goal.shape == (8, 8, 3))
        level = frames[-1].mean() + 20 * np.cumsum(actions[..., 0], axis=1)  # [N, Hz]
        out = (
            np.clip(level, 0, 255)
            .astype(np.uint8)[..., None, None, None]
            .repeat(8, 2)
            .repeat(8, 3)
            .repeat(3, 4)
        )
        costs = np.abs(level[:, -1] - goal.mean()).astype(np.float32) if goal is not None else None
        return types.SimpleNamespace(frames=out if return_frames == "all" else None, costs=costs, latency_ms=1.0)


@pytest.fixture
def fake_client(monkeypatch):
    module = types.ModuleType("crcm_robotics.serve.client")
    module.WorldModelClient = FakeClient
    monkeypatch.setitem(sys.modules, "crcm_robotics.serve.client", module)
    FakeClient.calls = []
    return FakeClient


def test_cem_from_a_store_improves_and_prints_a_plan(tmp_path, fake_client, capsys):
    store = tmp_path / "s.zarr"
    writer = TrajectoryWriter.create(store, image_shape=(8, 8, 3), action_dim=2, fps=10)
    n = 30
    action = np.stack([np.full(n, 0.5), np.zeros(n)], 1).astype(np.float32)
    frames = np.clip(100 + 10 * np.arange(n), 0, 255).astype(np.uint8)[:, None, None, None].repeat(8, 1)
    writer.append_episode(np.ascontiguousarray(frames.repeat(8, 2).repeat(3, 3)), action)
    writer.write_stats()
    example = load_example()
    code = example.main(
        [
            "--store",
            str(store),
            "--episode",
            "0",
            "--start",
            "5",
            "--horizon",
            "4",
            "--samples",
            "32",
            "--iterations",
            "3",
            "--elites",
            "4",
            "--action-low",
            "-1",
            "-1",
            "--action-high",
            "1",
            "1",
        ]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert np.asarray(out["actions"]).shape == (4, 2)
    assert out["cost"] <= out["iterations"][0]["best_cost"] and len(out["iterations"]) == 3
    assert out["logged_actions"] == [[0.5, 0.0]] * 4
    assert [c[0].shape for c in fake_client.calls] == [(32, 4, 2)] * 3 + [(1, 4, 2)]  # 3 CEM rounds + logged
    _, (ctx_frames, ctx_actions), goal = fake_client.calls[0]
    assert ctx_frames[:, 0, 0, 0].tolist() == [130, 140, 150]  # frames 3..5 of the episode
    assert goal[0, 0, 0] == 190  # the frame 4 steps after the newest context frame


def test_png_context_and_goal(tmp_path, fake_client, capsys):
    paths = []
    for i, v in enumerate([10, 20, 30, 200]):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(np.full((16, 24, 3), v, np.uint8)).save(paths[-1])
    example = load_example()
    assert (
        example.main(
            [
                "--context",
                *map(str, paths[:3]),
                "--goal",
                str(paths[3]),
                "--horizon",
                "3",
                "--samples",
                "16",
                "--iterations",
                "2",
                "--elites",
                "4",
                "--port",
                "6000",
            ]
        )
        == 0
    )
    assert fake_client.calls[0][1][0].shape == (3, 8, 8, 3)  # resized to the model's size
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert np.all(np.abs(out["actions"]) <= 1.0) and "logged_cost" not in out


def test_argument_errors(fake_client, tmp_path):
    example = load_example()
    with pytest.raises(SystemExit):
        example.main([])  # neither --store nor --context
    with pytest.raises(SystemExit):
        example.main(["--context", "a.png", "--goal", "g.png"])  # the model takes 3 context images
