"""Building outgoing messages (``sensor_msgs/Image``, ``crcm_interfaces/PredictedFrames``) from arrays.

Message classes and sequence containers are injected through a
:class:`MessageKit`, so this module never imports ROS: the node passes rclpy's
``sensor_msgs.msg.Image`` and ``array.array`` containers (rosidl's fast path
for ``uint8[]`` / ``float32[]`` fields), tests pass ``rosbags`` classes and
numpy arrays.

``PredictedFrames`` (ros2_ws/src/crcm_interfaces/msg/PredictedFrames.msg)::

    std_msgs/Header header      stamp of the newest context frame; camera frame_id
    float32 frame_period        seconds between consecutive predicted frames
    uint32 horizon              number of predicted frames
    uint32 action_dim
    float32[] actions           horizon x action_dim, row-major: the command assumed before each frame
    sensor_msgs/Image[] frames  horizon images, frames[i] follows actions[i]
    float32 latency_ms          model time for this prediction
"""

from __future__ import annotations

import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from crcm_robotics.ros.images import encode_rgb


def array_u8(data: bytes) -> array.array:
    return array.array("B", data)


def array_f32(values: np.ndarray) -> array.array:
    return array.array("f", np.ascontiguousarray(values, dtype=np.float32).reshape(-1).tobytes())


@dataclass(frozen=True)
class MessageKit:
    """How to build messages: the Image class and containers for ``uint8[]`` and ``float32[]`` fields."""

    image: Callable[..., Any]
    u8: Callable[[bytes], Any] = array_u8
    f32: Callable[[np.ndarray], Any] = array_f32


def make_image(kit: MessageKit, frame_HW3: np.ndarray, header: Any, encoding: str = "rgb8") -> Any:
    """A ``sensor_msgs/Image`` holding a uint8 RGB frame in ``encoding``."""
    enc = encode_rgb(frame_HW3, encoding)
    return kit.image(
        header=header,
        height=enc.height,
        width=enc.width,
        encoding=enc.encoding,
        is_bigendian=0,
        step=enc.step,
        data=kit.u8(enc.data),
    )


def hold_command(command: np.ndarray, horizon: int) -> np.ndarray:
    """The current command held over ``horizon`` steps: float32 ``[horizon, A]``."""
    command = np.asarray(command, dtype=np.float32).reshape(1, -1)
    return np.repeat(command, horizon, axis=0)


def fill_predicted_frames(
    msg: Any,
    kit: MessageKit,
    *,
    header: Any,
    frames_HzHW3: np.ndarray,
    actions_HzA: np.ndarray,
    frame_period_s: float,
    latency_ms: float,
    encoding: str = "rgb8",
) -> Any:
    """Fill a ``crcm_interfaces/PredictedFrames`` message in place and return it."""
    frames_HzHW3 = np.asarray(frames_HzHW3)
    actions_HzA = np.asarray(actions_HzA, dtype=np.float32)
    if frames_HzHW3.ndim != 4 or actions_HzA.ndim != 2 or len(frames_HzHW3) != len(actions_HzA):
        raise ValueError(
            f"predicted frames {tuple(frames_HzHW3.shape)} and actions {tuple(actions_HzA.shape)} "
            "must be [horizon, H, W, 3] and [horizon, action_dim]"
        )
    msg.header = header
    msg.frame_period = float(frame_period_s)
    msg.horizon = len(frames_HzHW3)
    msg.action_dim = int(actions_HzA.shape[1])
    msg.actions = kit.f32(actions_HzA)
    msg.frames = [make_image(kit, f, header, encoding) for f in frames_HzHW3]
    msg.latency_ms = float(latency_ms)
    return msg


def filmstrip(frames_NHW3: np.ndarray, gap: int = 1) -> np.ndarray:
    """Frames side by side, oldest left, ``gap`` black columns between: uint8 ``[H, N*W + (N-1)*gap, 3]``.

    Published as a plain ``sensor_msgs/Image`` so rviz2 / Foxglove image panels can show a prediction.
    """
    frames_NHW3 = np.asarray(frames_NHW3)
    n, h, w, c = frames_NHW3.shape
    out = np.zeros((h, n * w + (n - 1) * gap, c), np.uint8)
    for i, f in enumerate(frames_NHW3):
        out[:, i * (w + gap) : i * (w + gap) + w] = f
    return out
