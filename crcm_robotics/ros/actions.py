"""Command messages -> float32 action vectors (the model's ``action`` input).

An adapter turns one message of a fixed ROS type into a float32 ``[A]``
vector and names its dimensions (stored as the trajectory store's
``action_names``). Adapters read fields by name only, so they accept rclpy
messages and ``rosbags`` messages alike.

    twist                geometry_msgs/msg/Twist          dotted fields, default linear.x, linear.y, angular.z
    twist_stamped        geometry_msgs/msg/TwistStamped   same, inside .twist
    float32_multi_array  std_msgs/msg/Float32MultiArray   data as is (length: dim, or the first message's)
    joint_state          sensor_msgs/msg/JointState       position / velocity / effort of named joints
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DEFAULT_TWIST_FIELDS = ("linear.x", "linear.y", "angular.z")
TWIST_PATHS = tuple(f"{part}.{axis}" for part in ("linear", "angular") for axis in "xyz")
JOINT_FIELDS = ("position", "velocity", "effort")

# action_type -> ROS message type name
ACTION_MSGTYPES: dict[str, str] = {
    "twist": "geometry_msgs/msg/Twist",
    "twist_stamped": "geometry_msgs/msg/TwistStamped",
    "float32_multi_array": "std_msgs/msg/Float32MultiArray",
    "joint_state": "sensor_msgs/msg/JointState",
}


class ActionError(ValueError):
    """A command message cannot be turned into an action vector."""


def action_type_for_msgtype(msgtype: str) -> str:
    """The adapter name for a ROS message type (``geometry_msgs/msg/Twist`` -> ``twist``)."""
    normalized = msgtype.replace("/msg/", "/")
    for name, full in ACTION_MSGTYPES.items():
        if full.replace("/msg/", "/") == normalized:
            return name
    raise ActionError(
        f"unsupported command message type {msgtype}; supported: {', '.join(ACTION_MSGTYPES.values())}"
    )


@dataclass
class TwistAdapter:
    """``geometry_msgs/Twist`` (or ``TwistStamped`` with ``stamped=True``) -> the listed fields."""

    fields: tuple[str, ...] = DEFAULT_TWIST_FIELDS
    stamped: bool = False

    def __post_init__(self) -> None:
        self.fields = tuple(self.fields)
        if not self.fields:
            raise ActionError("twist adapter needs at least one field, e.g. linear.x")
        bad = [f for f in self.fields if f not in TWIST_PATHS]
        if bad:
            raise ActionError(f"unknown Twist field(s) {bad}; choose from {', '.join(TWIST_PATHS)}")
        if len(set(self.fields)) != len(self.fields):
            raise ActionError(f"Twist fields repeat: {list(self.fields)}")

    @property
    def msgtype(self) -> str:
        return ACTION_MSGTYPES["twist_stamped" if self.stamped else "twist"]

    @property
    def dim(self) -> int:
        return len(self.fields)

    @property
    def names(self) -> tuple[str, ...]:
        return self.fields

    @property
    def units(self) -> str:
        return "m/s (linear.*), rad/s (angular.*)"

    def __call__(self, msg: Any) -> np.ndarray:
        twist = msg.twist if self.stamped else msg
        out = np.empty(len(self.fields), np.float32)
        for i, path in enumerate(self.fields):
            part, axis = path.split(".")
            out[i] = float(getattr(getattr(twist, part), axis))
        _check_finite(out, self.msgtype, self.names)
        return out


@dataclass
class Float32MultiArrayAdapter:
    """``std_msgs/Float32MultiArray`` -> ``data`` as is; its length must equal ``dim``.

    ``dim=0`` means "take the length of the first message and hold every later one to it".
    """

    dim: int = 0
    _names: tuple[str, ...] = field(default=(), repr=False)

    msgtype = ACTION_MSGTYPES["float32_multi_array"]

    @property
    def names(self) -> tuple[str, ...]:
        return self._names or tuple(f"a{i}" for i in range(self.dim))

    @property
    def units(self) -> str:
        return ""

    def __call__(self, msg: Any) -> np.ndarray:
        data = np.asarray(msg.data, dtype=np.float32).reshape(-1)
        if self.dim == 0:
            if data.size == 0:
                raise ActionError("Float32MultiArray command has no data")
            self.dim = int(data.size)
            labels = [str(getattr(d, "label", "")) for d in getattr(getattr(msg, "layout", None), "dim", [])]
            if len(labels) == 1 and labels[0]:
                self._names = tuple(f"{labels[0]}[{i}]" for i in range(self.dim))
        if data.size != self.dim:
            raise ActionError(f"Float32MultiArray command has {data.size} values, expected {self.dim}")
        _check_finite(data, self.msgtype, self.names)
        return data.copy()


@dataclass
class JointStateAdapter:
    """``sensor_msgs/JointState`` -> ``field`` (position | velocity | effort) of ``joint_names``, in order.

    Empty ``joint_names`` means "every joint of the first message, in its order".
    Joints are looked up by name in each message, so publishers may reorder them.
    """

    joint_names: tuple[str, ...] = ()
    field: str = "velocity"

    msgtype = ACTION_MSGTYPES["joint_state"]

    def __post_init__(self) -> None:
        self.joint_names = tuple(self.joint_names)
        if self.field not in JOINT_FIELDS:
            raise ActionError(f"joint_field {self.field!r} must be one of {', '.join(JOINT_FIELDS)}")
        if len(set(self.joint_names)) != len(self.joint_names):
            raise ActionError(f"joint_names repeat: {list(self.joint_names)}")

    @property
    def dim(self) -> int:
        return len(self.joint_names)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f"{n}.{self.field}" for n in self.joint_names)

    @property
    def units(self) -> str:
        return {"position": "rad or m", "velocity": "rad/s or m/s", "effort": "N*m or N"}[self.field]

    def __call__(self, msg: Any) -> np.ndarray:
        names = [str(n) for n in msg.name]
        values = np.asarray(getattr(msg, self.field), dtype=np.float64).reshape(-1)
        if values.size != len(names):
            raise ActionError(
                f"JointState has {len(names)} names but {values.size} {self.field} values "
                f"(publishers may leave {self.field} empty; pick another joint_field)"
            )
        if not self.joint_names:
            if not names:
                raise ActionError("JointState command has no joints")
            self.joint_names = tuple(names)
        index = {n: i for i, n in enumerate(names)}
        missing = [n for n in self.joint_names if n not in index]
        if missing:
            raise ActionError(f"JointState lacks joint(s) {missing}; it has {names}")
        out = values[[index[n] for n in self.joint_names]].astype(np.float32)
        _check_finite(out, self.msgtype, self.names)
        return out


ActionAdapter = TwistAdapter | Float32MultiArrayAdapter | JointStateAdapter


def make_action_adapter(
    action_type: str,
    *,
    fields: Sequence[str] = DEFAULT_TWIST_FIELDS,
    joint_names: Sequence[str] = (),
    joint_field: str = "velocity",
    dim: int = 0,
) -> ActionAdapter:
    """Build the adapter named ``action_type`` (a key of :data:`ACTION_MSGTYPES`)."""
    if action_type == "twist":
        return TwistAdapter(tuple(fields))
    if action_type == "twist_stamped":
        return TwistAdapter(tuple(fields), stamped=True)
    if action_type == "float32_multi_array":
        return Float32MultiArrayAdapter(dim)
    if action_type == "joint_state":
        return JointStateAdapter(tuple(joint_names), joint_field)
    raise ActionError(f"unknown action_type {action_type!r}; choose one of {', '.join(ACTION_MSGTYPES)}")


def _check_finite(values: np.ndarray, msgtype: str, names: Sequence[str]) -> None:
    if not np.isfinite(values).all():
        i = int(np.argmax(~np.isfinite(values)))
        name = names[i] if i < len(names) else f"[{i}]"
        kind = "NaN" if math.isnan(float(values[i])) else "inf"
        raise ActionError(f"{msgtype} command has {kind} in {name}")
