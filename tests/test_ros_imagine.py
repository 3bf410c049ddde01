"""ImagineRollouts requests/responses and PredictedFrames (crcm_robotics.ros.imagine, .messages).

Request and response objects are rosbags dataclasses generated from this
repo's own .srv/.msg files, so field names and types are the interface's;
filled messages are CDR-serialized and read back to prove it.
"""

from __future__ import annotations

import numpy as np
import pytest
from _ros_msgs import PREDICTED, REQUEST, RESPONSE, T, empty_image, header, image_msg, numpy_kit, roundtrip

from crcm_robotics.ros.images import image_to_rgb
from crcm_robotics.ros.imagine import (
    CONTEXT_GIVEN,
    CONTEXT_LATEST,
    ModelSpec,
    RequestError,
    best_rollout,
    fail_imagine_response,
    fill_imagine_response,
    parse_imagine_request,
)
from crcm_robotics.ros.messages import fill_predicted_frames, filmstrip, hold_command

SPEC = ModelSpec(image_shape=(8, 8, 3), action_dim=2, context_frames=3)
RNG = np.random.default_rng(1)


def request(**overrides):
    fields = dict(
        context_source=CONTEXT_LATEST,
        context_frames=[],
        context_actions=np.zeros(0, np.float32),
        num_rollouts=4,
        horizon=5,
        action_dim=2,
        actions=RNG.normal(size=4 * 5 * 2).astype(np.float32),
        goal=empty_image(),
        return_frames=True,
    )
    fields.update(overrides)
    return T(REQUEST)(**fields)


def parse(req, **kw):
    return parse_imagine_request(req, SPEC, max_rollouts=kw.get("max_rollouts", 64), max_horizon=16)


def test_constants_match_the_srv_file():
    assert (T(REQUEST).CONTEXT_LATEST, T(REQUEST).CONTEXT_GIVEN) == (CONTEXT_LATEST, CONTEXT_GIVEN)


def test_latest_context_request_becomes_arrays():
    req = roundtrip(request(), REQUEST)
    q = parse(req)
    assert q.actions.shape == (4, 5, 2) and q.actions.dtype == np.float32
    np.testing.assert_array_equal(q.actions.reshape(-1), req.actions)  # row-major: (n * horizon + h) * A + a
    assert q.context is None and q.goal is None and q.return_frames
    assert (q.num_rollouts, q.horizon) == (4, 5)


def test_given_context_and_goal_are_converted_and_fitted():
    frames = [
        RNG.integers(0, 256, (12, 16, 3), dtype=np.uint8) for _ in range(3)
    ]  # camera size, not model size
    req = request(
        context_source=CONTEXT_GIVEN,
        context_frames=[image_msg(f, "bgr8", pad=2, t=10.0 + i) for i, f in enumerate(frames)],
        context_actions=np.arange(6, dtype=np.float32),
        goal=image_msg(frames[0], "rgba8"),
        return_frames=False,
    )
    q = parse(roundtrip(req, REQUEST))
    ctx_frames, ctx_actions = q.context
    assert ctx_frames.shape == (3, 8, 8, 3) and ctx_actions.tolist() == [[0, 1], [2, 3], [4, 5]]
    assert q.goal.shape == (8, 8, 3) and not q.return_frames
    assert q.context_header.stamp.sec == 12


def test_a_frame_skip_model_takes_commands_held_for_its_frames_or_its_own_actions():
    """Frame skip 3, commands of 2 values: the model's actions are 6 values, 3 commands side by side."""
    spec = ModelSpec(image_shape=(8, 8, 3), action_dim=6, context_frames=3, frame_skip=3)
    assert spec.command_dim == 2
    commands = RNG.normal(size=(4, 5, 2)).astype(np.float32)
    frames = [image_msg(np.zeros((8, 8, 3), np.uint8), t=10.0 + i) for i in range(3)]
    req = request(actions=commands.reshape(-1), context_source=CONTEXT_GIVEN, context_frames=frames,
                  context_actions=np.arange(6, dtype=np.float32))
    q = parse_imagine_request(roundtrip(req, REQUEST), spec, max_rollouts=64, max_horizon=16)
    np.testing.assert_array_equal(q.actions, np.concatenate([commands] * 3, axis=-1))
    assert q.context[1].tolist() == [[0, 1] * 3, [2, 3] * 3, [4, 5] * 3]
    own = RNG.normal(size=4 * 5 * 6).astype(np.float32)  # the model's own actions pass as they are
    q = parse_imagine_request(request(action_dim=6, actions=own), spec, max_rollouts=64, max_horizon=16)
    np.testing.assert_array_equal(q.actions.reshape(-1), own)
    message = r"action_dim is 3; the model takes action_dim 6 \(or 2: one command, held for the 3 camera"
    with pytest.raises(RequestError, match=message):
        parse_imagine_request(request(action_dim=3), spec, max_rollouts=64, max_horizon=16)
    with pytest.raises(ValueError, match="frame_skip 4 must be ≥ 1 and divide action_dim 6"):
        ModelSpec(image_shape=(8, 8, 3), action_dim=6, context_frames=3, frame_skip=4)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(action_dim=3), "action_dim is 3; the model takes action_dim 2"),
        (dict(num_rollouts=0), r"num_rollouts is 0; expected 1 to 64 \(parameter max_rollouts\)"),
        (dict(num_rollouts=65), "num_rollouts is 65; expected 1 to 64"),
        (dict(horizon=17), r"horizon is 17; expected 1 to 16 \(parameter max_horizon\)"),
        (
            dict(actions=np.zeros(39, np.float32)),
            r"actions has 39 values; expected num_rollouts \* horizon \* action_dim = 4 \* 5 \* 2 = 40",
        ),
        (
            dict(actions=np.r_[np.zeros(7), np.nan, np.zeros(32)].astype(np.float32)),
            r"actions\[7\] is nan; every value must be finite",
        ),
        (
            dict(context_source=7),
            r"context_source is 7; expected CONTEXT_LATEST \(0\) or CONTEXT_GIVEN \(1\)",
        ),
        (
            dict(context_actions=np.zeros(6, np.float32)),
            r"context_frames/context_actions are set but context_source is CONTEXT_LATEST \(0\)",
        ),
        (
            dict(context_source=CONTEXT_GIVEN, context_frames=[image_msg(np.zeros((8, 8, 3), np.uint8))]),
            "context_frames has 1 images; the model takes 3",
        ),
        (
            dict(
                context_source=CONTEXT_GIVEN,
                context_frames=[image_msg(np.zeros((8, 8, 3), np.uint8))] * 3,
                context_actions=np.zeros(5, np.float32),
            ),
            r"context_actions has 5 values; expected context frames \* action_dim = 3 \* 2 = 6",
        ),
    ],
)
def test_bad_requests_say_what_is_wrong(overrides, message):
    with pytest.raises(RequestError, match=message):
        parse(request(**overrides))


def test_bad_images_in_requests_name_the_field():
    goal = image_msg(np.zeros((8, 8, 3), np.uint8))
    goal.encoding = "yuv422"
    with pytest.raises(RequestError, match="goal: unsupported image encoding 'yuv422'"):
        parse(request(goal=goal))
    bad = image_msg(np.zeros((8, 8, 3), np.uint8))
    bad.step = 3
    frames = [image_msg(np.zeros((8, 8, 3), np.uint8)), bad, image_msg(np.zeros((8, 8, 3), np.uint8))]
    with pytest.raises(RequestError, match=r"context_frames\[1\]: step 3 is smaller than width"):
        parse(
            request(
                context_source=CONTEXT_GIVEN, context_frames=frames, context_actions=np.zeros(6, np.float32)
            )
        )


def empty_response():
    return T(RESPONSE)(
        success=False,
        message="",
        num_rollouts=0,
        horizon=0,
        frames=[],
        costs=np.zeros(0, np.float32),
        best_rollout=0,
        latency_ms=0.0,
        context_stamp=T("builtin_interfaces/msg/Time")(sec=0, nanosec=0),
    )


def test_response_frames_are_row_major_rollout_by_horizon():
    n, hz = 3, 4
    frames = np.zeros((n, hz, 8, 8, 3), np.uint8)
    for i in range(n):
        for h in range(hz):
            frames[i, h] = 10 * i + h
    resp = fill_imagine_response(
        empty_response(),
        numpy_kit(),
        frames=frames,
        costs=np.array([0.5, 0.25, 0.75], np.float32),
        latency_ms=12.5,
        header=header(42.25, "cam"),
        return_frames=True,
    )
    resp = roundtrip(resp, RESPONSE)
    assert resp.success and (resp.num_rollouts, resp.horizon, len(resp.frames)) == (3, 4, 12)
    assert [int(image_to_rgb(f)[0, 0, 0]) for f in resp.frames] == [
        10 * i + h for i in range(n) for h in range(hz)
    ]
    assert resp.frames[5].header.frame_id == "cam"
    assert resp.costs.tolist() == [0.5, 0.25, 0.75] and resp.best_rollout == 1
    assert resp.latency_ms == pytest.approx(12.5)
    assert (resp.context_stamp.sec, resp.context_stamp.nanosec) == (42, 250_000_000)
    assert resp.message == "3 rollouts x 4 steps in 12.5 ms; best rollout 1 (cost 0.25)"


def test_response_without_goal_or_frames():
    resp = fill_imagine_response(
        empty_response(),
        numpy_kit(),
        frames=np.zeros((2, 1, 8, 8, 3), np.uint8),
        costs=None,
        latency_ms=3.0,
        header=header(),
        return_frames=False,
    )
    resp = roundtrip(resp, RESPONSE)
    assert resp.success and resp.frames == [] and resp.costs.size == 0 and resp.best_rollout == -1


def test_failed_response():
    resp = roundtrip(fail_imagine_response(empty_response(), numpy_kit(), "horizon is 0"), RESPONSE)
    assert (
        not resp.success and resp.message == "horizon is 0" and resp.best_rollout == -1 and resp.frames == []
    )


def test_response_rejects_inconsistent_model_output():
    with pytest.raises(ValueError, match=r"model returned 1 costs for 2 rollouts"):
        fill_imagine_response(
            empty_response(),
            numpy_kit(),
            frames=np.zeros((2, 1, 8, 8, 3), np.uint8),
            costs=np.zeros(1),
            latency_ms=0,
            header=header(),
            return_frames=False,
        )


def test_best_rollout_ignores_non_finite_costs():
    assert best_rollout(np.array([np.nan, 3.0, np.inf, 1.0])) == 3
    assert best_rollout(np.array([np.nan, np.inf])) == -1
    assert best_rollout(None) == -1


def test_predicted_frames_message():
    frames = RNG.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    actions = hold_command(np.array([0.3, -0.1]), 5)
    assert actions.shape == (5, 2) and actions.dtype == np.float32 and np.all(actions == actions[0])
    msg = T(PREDICTED)(
        header=header(),
        frame_period=0.0,
        horizon=0,
        action_dim=0,
        actions=np.zeros(0, np.float32),
        frames=[],
        latency_ms=0.0,
    )
    fill_predicted_frames(
        msg,
        numpy_kit(),
        header=header(7.5, "cam"),
        frames_HzHW3=frames,
        actions_HzA=actions,
        frame_period_s=0.1,
        latency_ms=4.0,
        encoding="bgr8",
    )
    msg = roundtrip(msg, PREDICTED)
    assert (msg.horizon, msg.action_dim, len(msg.frames)) == (5, 2, 5)
    np.testing.assert_allclose(msg.actions.reshape(5, 2), actions)
    assert msg.frames[2].encoding == "bgr8"
    np.testing.assert_array_equal(image_to_rgb(msg.frames[2]), frames[2])
    assert msg.frame_period == pytest.approx(0.1) and msg.header.stamp.sec == 7
    with pytest.raises(ValueError, match="must be \\[horizon, H, W, 3\\] and \\[horizon, action_dim\\]"):
        fill_predicted_frames(
            msg,
            numpy_kit(),
            header=header(),
            frames_HzHW3=frames,
            actions_HzA=actions[:4],
            frame_period_s=0.1,
            latency_ms=0,
        )


def test_filmstrip_lays_frames_side_by_side():
    frames = np.stack([np.full((4, 3, 3), i + 1, np.uint8) for i in range(3)])
    strip = filmstrip(frames, gap=1)
    assert strip.shape == (4, 3 * 3 + 2, 3)
    assert strip[0, :, 0].tolist() == [1, 1, 1, 0, 2, 2, 2, 0, 3, 3, 3]
