"""The node's parameters, model handle and diagnostics (crcm_robotics.ros.params, .model, .diagnostics).

Guards: every parameter has a description and a ROS type; the shipped
params files are valid; bad values are rejected with sentences; the model
spec is checked against the params; both backends (in-process, remote) go
through one interface; diagnostics report rates and latency percentiles.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import yaml

from crcm_robotics.ros.diagnostics import ERROR, OK, WARN, Diagnostics, RateMeter
from crcm_robotics.ros.imagine import ModelSpec
from crcm_robotics.ros.model import ModelHandle, open_model, resolve_spec, spec_of
from crcm_robotics.ros.params import NodeParams, parameter_table

REPO = Path(__file__).resolve().parents[1]


def test_every_parameter_is_described_and_typed():
    table = parameter_table()
    assert len(table) == len({p.name for p in table}) >= 25
    for p in table:
        assert len(p.description) > 15, p.name
        assert p.ros_type in ("bool", "integer", "double", "string", "string_array"), p.name
    kinds = {p.name: p.ros_type for p in table}
    assert (kinds["publish_rate_hz"], kinds["server_port"], kinds["center_crop"], kinds["joint_names"]) == (
        "double",
        "integer",
        "bool",
        "string_array",
    )
    assert {p.name: p.default for p in table}["action_fields"] == ["linear.x", "linear.y", "angular.z"]


@pytest.mark.parametrize("name", ["world_model.yaml", "world_model_remote.yaml"])
def test_shipped_params_files_are_valid(name):
    data = yaml.safe_load((REPO / "launch" / "params" / name).read_text())
    (values,) = [v["ros__parameters"] for v in data.values()]
    params = NodeParams.from_values(values)
    assert params.backend == ("remote" if "remote" in name else "eager")


def test_values_are_type_checked_and_validated():
    ok = NodeParams.from_values({"checkpoint": "/m", "publish_rate_hz": 5, "joint_names": ["a", "b"]})
    assert (
        ok.publish_rate_hz == 5.0 and isinstance(ok.publish_rate_hz, float) and ok.joint_names == ("a", "b")
    )
    assert NodeParams.from_values({"backend": "remote"}).token is None
    cases = [
        ({"backend": "eager"}, "parameter checkpoint is empty; backend=eager loads a checkpoint in-process"),
        ({"checkpoint": "/m", "horizon": 0}, "parameter horizon is 0; expected >= 1"),
        ({"checkpoint": "/m", "horizon": 2.5}, "parameter horizon must be an integer, got 2.5"),
        ({"checkpoint": "/m", "center_crop": 1}, "parameter center_crop must be true or false, got 1"),
        (
            {"checkpoint": "/m", "action_type": "ackermann"},
            "parameter action_type is 'ackermann'; expected one of",
        ),
        (
            {"checkpoint": "/m", "action_fields": ["linear.q"]},
            "parameter action_fields ['linear.q'] must be a",
        ),
        ({"checkpoint": "/m", "gap_s": 0.0}, "parameter gap_s is 0.0; expected a finite value > 0"),
        (
            {"checkpoint": "/m", "publish_rate_hz": -1.0},
            "parameter publish_rate_hz is -1.0; expected a finite",
        ),
        ({"checkpoint": "/m", "max_horizon": 4}, "parameter max_horizon (4) is smaller than horizon (8)"),
        ({"checkpoint": "/m", "output_encoding": "yuv"}, "parameter output_encoding is 'yuv'"),
        ({"backend": "remote", "server_port": 0}, "parameter server_port is 0; expected 1 to 65535"),
        ({"checkpoint": "/m", "joint_names": "a,b"}, "parameter joint_names must be a list of strings"),
        ({"checkpoint": "/m", "bogus": 1}, "unknown parameter(s) ['bogus']"),
    ]
    for values, message in cases:
        with pytest.raises(ValueError) as err:
            NodeParams.from_values(values)
        assert str(err.value).startswith(message), (values, str(err.value))


def test_spec_resolution_checks_params_against_the_model():
    model = ModelSpec((64, 64, 3), 2, 4)
    params = NodeParams.from_values({"checkpoint": "/m"})
    assert resolve_spec(params, model) == model
    assert (
        resolve_spec(NodeParams.from_values({"checkpoint": "/m", "context_frames": 2}), model).context_frames
        == 2
    )
    with pytest.raises(ValueError, match="parameter context_frames is 5 but the model was built for 4"):
        resolve_spec(NodeParams.from_values({"checkpoint": "/m", "context_frames": 5}), model)
    with pytest.raises(
        ValueError, match="image_height/image_width are 96/0 but the model takes 64x64 images"
    ):
        resolve_spec(NodeParams.from_values({"checkpoint": "/m", "image_height": 96}), model)


class FakeModel:
    """What WorldModel exposes: shapes as attributes, imagine() returning an object with fields."""

    image_shape, action_dim, context_frames = (8, 8, 3), 2, 3

    def __init__(self):
        self.calls = []

    def imagine(self, actions, context=None, goal=None, return_frames="all"):
        self.calls.append((actions, context, goal))
        self.return_frames = return_frames
        n, hz, _ = actions.shape
        frames = np.zeros((n, hz, 8, 8, 3), np.uint8)
        costs = None if goal is None else actions.sum(axis=(1, 2))
        return types.SimpleNamespace(frames=frames if return_frames == "all" else None, costs=costs,
                                     latency_ms=1.25)


def test_model_handle_passes_arrays_through():
    fake = FakeModel()
    handle = ModelHandle(fake, spec_of(fake, "fake"), "fake")
    assert handle.spec == ModelSpec((8, 8, 3), 2, 3)
    ctx = (np.zeros((3, 8, 8, 3), np.uint8), np.zeros((3, 2), np.float64))
    pred = handle.imagine(np.ones((4, 5, 2)), ctx, goal=np.zeros((8, 8, 3), np.uint8))
    actions, context, goal = fake.calls[-1]
    assert actions.dtype == np.float32 and context[1].dtype == np.float32 and goal is not None
    assert (
        pred.frames.shape == (4, 5, 8, 8, 3) and pred.costs.tolist() == [10.0] * 4 and pred.latency_ms == 1.25
    )
    assert handle.imagine(np.ones((1, 2, 2)), ctx).costs is None
    lean = handle.imagine(np.ones((4, 5, 2)), ctx, goal=np.zeros((8, 8, 3), np.uint8), return_frames=False)
    assert fake.return_frames == "none" and lean.frames is None and lean.costs.tolist() == [10.0] * 4


def test_open_model_remote_uses_the_msgpack_client(monkeypatch):
    created = {}

    class FakeClient:
        def __init__(self, host, port, token):
            created.update(host=host, port=port, token=token)

        def info(self):
            return {"image_shape": [16, 16, 3], "action_dim": 3, "context_frames": 2, "max_batch": 64}

        def imagine(self, actions, context=None, goal=None, return_frames="all"):
            return {
                "frames": np.zeros((*actions.shape[:2], 16, 16, 3), np.uint8),
                "costs": None,
                "latency_ms": 2.0,
            }

    module = types.ModuleType("crcm_robotics.serve.client")
    module.WorldModelClient = FakeClient
    monkeypatch.setitem(sys.modules, "crcm_robotics.serve.client", module)
    params = NodeParams.from_values(
        {"backend": "remote", "server_host": "gpu-box", "server_port": 6000, "server_token": "s3cret"}
    )
    handle = open_model(params)
    assert created == {"host": "gpu-box", "port": 6000, "token": "s3cret"}
    assert handle.spec == ModelSpec((16, 16, 3), 3, 2) and handle.description == "msgpack server gpu-box:6000"
    pred = handle.imagine(np.zeros((2, 3, 3)), (np.zeros((2, 16, 16, 3), np.uint8), np.zeros((2, 3))))
    assert pred.frames.shape == (2, 3, 16, 16, 3) and pred.latency_ms == 2.0


def test_spec_errors_name_the_source():
    with pytest.raises(
        RuntimeError, match=r"info\(\) of server has no 'context_frames' \(keys: \['action_dim', "
    ):
        spec_of({"action_dim": 2, "image_shape": [8, 8, 3]}, "info() of server")
    with pytest.raises(RuntimeError, match=r"model reports image_shape \(8, 8\), expected \(H, W, 3\)"):
        spec_of({"action_dim": 2, "image_shape": [8, 8], "context_frames": 1}, "model")


def test_rate_meter_and_diagnostics():
    meter = RateMeter(window_s=1.0)
    for i in range(11):
        meter.tick(i * 0.1)
    assert meter.rate(1.0) == pytest.approx(10.0)
    assert meter.rate(5.0) == 0.0  # everything fell out of the window

    diag = Diagnostics(window_s=2.0)
    assert diag.level(0.0, "", 1.0) == (ERROR, "no camera frames")
    for i in range(21):
        diag.frame(i * 0.05, "kept")
        diag.command(i * 0.1)
    for ms in (10.0, 20.0, 30.0):
        diag.prediction(1.0, ms)
    diag.imagine(False)
    diag.error("frames_undecodable", "/cam: unsupported image encoding 'yuv422'")
    summary = diag.summary(1.0)
    assert summary["camera_hz"] == pytest.approx(20.0) and summary["command_hz"] == pytest.approx(10.0)
    assert (summary["latency_ms_p50"], summary["latency_ms_max"]) == (20.0, 30.0)
    assert (summary["frames_kept"], summary["predictions"], summary["imagine_failed"]) == (21, 3, 1)
    assert summary["last_error"] == "/cam: unsupported image encoding 'yuv422'"
    assert ("camera_hz", "20.0") in Diagnostics.key_values(summary)
    assert diag.level(1.0, "waiting for context: 1 of 4 frames", 1.0) == (
        WARN,
        "waiting for context: 1 of 4 frames",
    )
    assert diag.level(1.0, "", 1.0) == (OK, "predicting")
    assert diag.level(3.5, "", 1.0) == (ERROR, "camera silent for 2.5 s")


def test_planner_worker_process_matches_the_in_process_model_and_reports_errors(tiny_student):
    """~/imagine's model runs in a worker process; it answers as the in-process model does."""
    from crcm_robotics.ros.model import WorkerModel

    params = NodeParams.from_values({"checkpoint": str(tiny_student), "device": "cpu"})
    worker = WorkerModel(params)
    try:
        local = open_model(params)
        assert worker.spec == local.spec and worker.description.endswith("worker process")
        k, (h, w, _), a = local.spec.context_frames, local.spec.image_shape, local.spec.action_dim
        rng = np.random.default_rng(0)
        context = (rng.integers(0, 256, (k, h, w, 3), dtype=np.uint8), np.zeros((k, a), np.float32))
        actions = rng.uniform(-1, 1, (3, 2, a)).astype(np.float32)
        goal = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        got = worker.imagine(actions, context, goal)
        assert got.frames.shape == (3, 2, h, w, 3) and got.frames.dtype == np.uint8
        assert got.costs.shape == (3,) and got.latency_ms > 0
        with pytest.raises(ValueError, match="actions"):
            worker.imagine(np.zeros((3, 2, a + 1), np.float32), context)  # the runtime's InputError
        assert worker.imagine(actions, context).costs is None  # still serving
    finally:
        worker.close()
    assert not worker._proc.is_alive()
