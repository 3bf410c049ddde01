"""``crcm_interfaces/srv/ImagineRollouts``: validate a request into arrays, build the response.

The service (ros2_ws/src/crcm_interfaces/srv/ImagineRollouts.srv; README there)::

    uint8 CONTEXT_LATEST=0              context = the node's latest K camera frames + commands
    uint8 CONTEXT_GIVEN=1               context = context_frames + context_actions below
    uint8 context_source
    sensor_msgs/Image[] context_frames  K images, oldest first (CONTEXT_GIVEN only)
    float32[] context_actions           K x action_dim, row-major (CONTEXT_GIVEN only)
    uint32 num_rollouts                 N
    uint32 horizon                      Hz
    uint32 action_dim                   A, the model's; or, for a model with frame skip k, the robot's
                                        command size (A / k), each command held for k camera frames
    float32[] actions                   N x Hz x A, row-major
    sensor_msgs/Image goal              optional: leave empty (0x0) for no goal / no costs
    bool return_frames                  false: only costs + best_rollout come back
    ---
    bool success
    string message                      why it failed, or a one-line summary
    uint32 num_rollouts
    uint32 horizon
    sensor_msgs/Image[] frames          N x Hz images, row-major: frames[n * horizon + h]
    float32[] costs                     N costs against the goal (lower is better); empty without goal
    int32 best_rollout                  argmin of costs; -1 without goal
    float32 latency_ms                  model time
    builtin_interfaces/Time context_stamp  stamp of the newest context frame used

Every bad request becomes ``success: false`` with a sentence naming the
field, the expected and the found value; the node never raises out of the
service callback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from crcm_robotics.ros.images import ImageError, fit_frame, image_to_rgb, is_empty_image
from crcm_robotics.ros.messages import MessageKit, make_image

CONTEXT_LATEST = 0
CONTEXT_GIVEN = 1


class RequestError(ValueError):
    """An ImagineRollouts request is malformed."""


@dataclass(frozen=True)
class ModelSpec:
    """What the node needs to know about the model it serves.

    A model trained with frame skip k predicts every k-th camera frame from the k commands between
    (``action_dim = k × command_dim``). The node then takes commands of ``command_dim`` values and holds each
    for the k camera frames of a model step (:meth:`held`).
    """

    image_shape: tuple[int, int, int]  # (H, W, 3)
    action_dim: int
    context_frames: int  # K
    frame_skip: int = 1

    def __post_init__(self) -> None:
        if self.frame_skip < 1 or self.action_dim % self.frame_skip:
            raise ValueError(f"frame_skip {self.frame_skip} must be ≥ 1 and divide action_dim "
                             f"{self.action_dim}")

    @property
    def command_dim(self) -> int:
        """Values of one robot command: the model's action_dim without frame skip."""
        return self.action_dim // self.frame_skip

    def held(self, commands: np.ndarray) -> np.ndarray:
        """Commands [..., command_dim] → model actions [..., action_dim]: each held for k camera frames."""
        return np.tile(commands, self.frame_skip) if self.frame_skip > 1 else commands


@dataclass(frozen=True)
class ImagineQuery:
    """A validated request, as arrays the model takes."""

    actions: np.ndarray  # float32 [N, Hz, A] (the model's A: commands already held for frame skip)
    context: (
        tuple[np.ndarray, np.ndarray] | None
    )  # (uint8 [K, H, W, 3], float32 [K, A]); None = use the latest
    context_header: Any  # header of the newest given context frame (None with CONTEXT_LATEST)
    goal: np.ndarray | None  # uint8 [H, W, 3]
    return_frames: bool

    @property
    def num_rollouts(self) -> int:
        return int(self.actions.shape[0])

    @property
    def horizon(self) -> int:
        return int(self.actions.shape[1])


def _floats(values: Any, name: str) -> np.ndarray:
    out = np.asarray(values, dtype=np.float32).reshape(-1)
    if not np.isfinite(out).all():
        i = int(np.argmax(~np.isfinite(out)))
        raise RequestError(f"{name}[{i}] is {out[i]}; every value must be finite")
    return out


def _image(msg: Any, name: str, spec: ModelSpec, center_crop: bool) -> np.ndarray:
    try:
        return fit_frame(image_to_rgb(msg, name), spec.image_shape[:2], center_crop)
    except ImageError as exc:
        raise RequestError(str(exc)) from None


def parse_imagine_request(
    req: Any,
    spec: ModelSpec,
    *,
    max_rollouts: int,
    max_horizon: int,
    center_crop: bool = True,
) -> ImagineQuery:
    """Check an ImagineRollouts request against the model; raise :class:`RequestError` with a sentence."""
    n, hz, a = int(req.num_rollouts), int(req.horizon), int(req.action_dim)
    if not 1 <= n <= max_rollouts:
        raise RequestError(f"num_rollouts is {n}; expected 1 to {max_rollouts} (parameter max_rollouts)")
    if not 1 <= hz <= max_horizon:
        raise RequestError(f"horizon is {hz}; expected 1 to {max_horizon} (parameter max_horizon)")
    if a != spec.action_dim and a != spec.command_dim:
        also = (f" (or {spec.command_dim}: one command, held for the {spec.frame_skip} camera frames of each "
                "predicted frame)") if spec.frame_skip > 1 else ""
        raise RequestError(f"action_dim is {a}; the model takes action_dim {spec.action_dim}{also}")
    actions = _floats(req.actions, "actions")
    if actions.size != n * hz * a:
        raise RequestError(
            f"actions has {actions.size} values; expected num_rollouts * horizon * action_dim = "
            f"{n} * {hz} * {a} = {n * hz * a}"
        )

    source = int(req.context_source)
    k = spec.context_frames
    context = None
    context_header = None
    if source == CONTEXT_LATEST:
        if len(req.context_frames) or len(req.context_actions):
            raise RequestError(
                "context_frames/context_actions are set but context_source is CONTEXT_LATEST (0); "
                "set context_source to CONTEXT_GIVEN (1) to use them"
            )
    elif source == CONTEXT_GIVEN:
        if len(req.context_frames) != k:
            raise RequestError(f"context_frames has {len(req.context_frames)} images; the model takes {k}")
        ctx_actions = _floats(req.context_actions, "context_actions")
        if ctx_actions.size != k * a:
            raise RequestError(
                f"context_actions has {ctx_actions.size} values; expected context frames * action_dim = "
                f"{k} * {a} = {k * a}"
            )
        frames = np.stack(
            [_image(m, f"context_frames[{i}]", spec, center_crop) for i, m in enumerate(req.context_frames)]
        )
        ctx = ctx_actions.reshape(k, a)
        context = (frames, ctx if a == spec.action_dim else spec.held(ctx))
        context_header = req.context_frames[-1].header
    else:
        raise RequestError(
            f"context_source is {source}; expected CONTEXT_LATEST ({CONTEXT_LATEST}) "
            f"or CONTEXT_GIVEN ({CONTEXT_GIVEN})"
        )

    goal = None if is_empty_image(req.goal) else _image(req.goal, "goal", spec, center_crop)
    actions = actions.reshape(n, hz, a)
    return ImagineQuery(
        actions=actions if a == spec.action_dim else spec.held(actions),
        context=context,
        context_header=context_header,
        goal=goal,
        return_frames=bool(req.return_frames),
    )


def best_rollout(costs: np.ndarray | None) -> int:
    """Index of the lowest finite cost; -1 when there are no costs or none is finite."""
    if costs is None or len(costs) == 0:
        return -1
    costs = np.asarray(costs, dtype=np.float64)
    if not np.isfinite(costs).any():
        return -1
    return int(np.nanargmin(np.where(np.isfinite(costs), costs, np.nan)))


def fill_imagine_response(
    resp: Any,
    kit: MessageKit,
    *,
    frames: np.ndarray | None,
    costs: np.ndarray | None,
    latency_ms: float,
    header: Any,
    return_frames: bool,
    encoding: str = "rgb8",
    shape: tuple[int, int] | None = None,
) -> Any:
    """Fill a successful response in place from the model's result; returns it.

    ``frames`` is uint8 ``[N, Hz, H, W, 3]``, or None for a costs-only answer (then ``shape`` gives
    ``(N, Hz)``); ``header`` (stamp of the newest context frame, camera frame_id) goes on every returned
    image and its stamp into ``context_stamp``.
    """
    if frames is None:
        if return_frames or shape is None:
            raise ValueError("the model returned no frames; a costs-only answer needs return_frames false and "
                             "the rollouts' (N, horizon)")
        n, hz = int(shape[0]), int(shape[1])
    else:
        frames = np.asarray(frames)
        if frames.ndim != 5:
            raise ValueError(
                f"model returned frames of shape {tuple(frames.shape)}, expected [N, horizon, H, W, 3]"
            )
        n, hz = int(frames.shape[0]), int(frames.shape[1])
    if costs is not None:
        costs = np.asarray(costs, dtype=np.float32).reshape(-1)
        if costs.size != n:
            raise ValueError(f"model returned {costs.size} costs for {n} rollouts")
    best = best_rollout(costs)
    resp.success = True
    resp.num_rollouts = n
    resp.horizon = hz
    resp.frames = (
        [make_image(kit, f, header, encoding) for f in frames.reshape(-1, *frames.shape[2:])]
        if return_frames and frames is not None
        else []
    )
    resp.costs = kit.f32(costs if costs is not None else np.zeros(0, np.float32))
    resp.best_rollout = best
    resp.latency_ms = float(latency_ms)
    resp.context_stamp = header.stamp
    summary = f"{n} rollouts x {hz} steps in {latency_ms:.1f} ms"
    if best >= 0:
        summary += f"; best rollout {best} (cost {float(costs[best]):.4g})"
    resp.message = summary
    return resp


def fail_imagine_response(resp: Any, kit: MessageKit, message: str) -> Any:
    """Fill a failed response in place: ``success`` false, ``message`` set, everything else empty."""
    resp.success = False
    resp.message = message
    resp.num_rollouts = 0
    resp.horizon = 0
    resp.frames = []
    resp.costs = kit.f32(np.zeros(0, np.float32))
    resp.best_rollout = -1
    resp.latency_ms = 0.0
    return resp
