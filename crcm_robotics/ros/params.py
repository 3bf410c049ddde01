"""The world-model node's parameters: one typed table (defaults + descriptions), validated in plain Python.

The node declares one ROS parameter per field of :class:`NodeParams` (read-only,
with the field's description in its ``ParameterDescriptor``), reads them back
and calls :meth:`NodeParams.from_values`, which rejects bad values with a
sentence. ``launch/params/world_model.yaml`` sets them for a deployment.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from crcm_robotics.ros.actions import ACTION_MSGTYPES, DEFAULT_TWIST_FIELDS, JOINT_FIELDS, TWIST_PATHS
from crcm_robotics.ros.context import STALE_POLICIES
from crcm_robotics.ros.images import ENCODINGS

REMOTE_BACKEND = "remote"
DEFAULT_SERVER_PORT = 5555


def _p(default: Any, doc: str):
    if isinstance(default, tuple):
        return field(default_factory=lambda: default, metadata={"doc": doc})
    return field(default=default, metadata={"doc": doc})


@dataclass
class NodeParams:
    """Parameters of ``world_model_node`` (names are the ROS parameter names)."""

    # model
    checkpoint: str = _p("", "checkpoint directory for the in-process model (unused with backend=remote)")
    backend: str = _p(
        "eager",
        "in-process runtime backend (eager, cuda_graph, compile, onnxruntime, tensorrt) "
        "or 'remote' to use a running msgpack server",
    )
    device: str = _p("cuda", "torch device of the in-process model (cuda, cuda:1, cpu)")
    steps: int = _p(0, "student sampling steps per frame; 0 = the checkpoint's default")
    server_host: str = _p("127.0.0.1", "msgpack server host (backend=remote)")
    server_port: int = _p(DEFAULT_SERVER_PORT, "msgpack server TCP port (backend=remote)")
    server_token: str = _p("", "msgpack server auth token (backend=remote); empty = none")
    # inputs
    camera_topic: str = _p(
        "/camera/image_raw", "sensor_msgs/Image topic (sensor-data QoS); rgb8/bgr8/rgba8/bgra8/mono8"
    )
    action_topic: str = _p("/cmd_vel", "command topic, message type per action_type")
    action_type: str = _p(
        "twist", "command adapter: twist | twist_stamped | float32_multi_array | joint_state"
    )
    action_fields: tuple[str, ...] = _p(
        DEFAULT_TWIST_FIELDS,
        "twist/twist_stamped: fields in action order, e.g. [linear.x, linear.y, angular.z]",
    )
    joint_names: tuple[str, ...] = _p(
        (), "joint_state: joints in action order; empty = every joint of the first message"
    )
    joint_field: str = _p("velocity", "joint_state: position | velocity | effort")
    # context and alignment
    context_frames: int = _p(0, "context frames K fed to the model; 0 = the model's")
    context_rate_hz: float = _p(
        10.0,
        "frame rate of the context; must match the training store's fps divided by the model's frame skip "
        "(`crcm data info` prints the fps); 0 = every camera frame",
    )
    max_staleness_s: float = _p(0.5, "a command older than this is not in force (see stale_command)")
    stale_command: str = _p(
        "reset",
        "frames without a command in force: reset (restart the context) or "
        "zero (use a zero action, for velocity-controlled bases)",
    )
    gap_s: float = _p(
        1.0, "a camera gap longer than this restarts the context; older context is not predicted from"
    )
    image_height: int = _p(
        0, "expected model image height; 0 = the model's (a check that params match the checkpoint)"
    )
    image_width: int = _p(0, "expected model image width; 0 = the model's")
    center_crop: bool = _p(
        True, "crop camera frames to the model's aspect ratio before resizing (as the importer does)"
    )
    # outputs
    publish_rate_hz: float = _p(5.0, "rate of ~/predicted (current command held over the horizon); 0 = off")
    horizon: int = _p(8, "predicted frames per ~/predicted message")
    output_encoding: str = _p("rgb8", "encoding of published images: rgb8 | bgr8 | rgba8 | bgra8 | mono8")
    publish_filmstrip: bool = _p(
        True,
        "also publish ~/predicted/filmstrip, a sensor_msgs/Image of the horizon "
        "side by side (for rviz2 / Foxglove)",
    )
    max_rollouts: int = _p(256, "largest num_rollouts accepted by ~/imagine")
    max_horizon: int = _p(64, "largest horizon accepted by ~/imagine")
    diagnostics_period_s: float = _p(2.0, "period of /diagnostics messages and the log summary; 0 = off")

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> NodeParams:
        """Build from parameter values (ints accepted for floats; arrays for tuples) and validate."""
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(values) - set(names)
        if unknown:
            raise ValueError(f"unknown parameter(s) {sorted(unknown)}")
        kwargs: dict[str, Any] = {}
        for name, value in values.items():
            default = _default(names[name])
            if isinstance(default, bool):
                if not isinstance(value, bool):
                    raise ValueError(f"parameter {name} must be true or false, got {value!r}")
            elif isinstance(default, float):
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ValueError(f"parameter {name} must be a number, got {value!r}")
                value = float(value)
            elif isinstance(default, int):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError(f"parameter {name} must be an integer, got {value!r}")
            elif isinstance(default, tuple):
                if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                    raise ValueError(f"parameter {name} must be a list of strings, got {value!r}")
                value = tuple(value)
            elif not isinstance(value, str):
                raise ValueError(f"parameter {name} must be a string, got {value!r}")
            kwargs[name] = value
        params = cls(**kwargs)
        params.validate()
        return params

    def validate(self) -> None:
        def need(cond: bool, message: str) -> None:
            if not cond:
                raise ValueError(message)

        need(bool(self.backend), "parameter backend is empty; use eager, cuda_graph, ... or remote")
        if self.backend == REMOTE_BACKEND:
            need(bool(self.server_host), "parameter server_host is empty (backend=remote)")
            need(
                1 <= self.server_port <= 65535,
                f"parameter server_port is {self.server_port}; expected 1 to 65535",
            )
        else:
            need(
                bool(self.checkpoint),
                f"parameter checkpoint is empty; backend={self.backend} loads a checkpoint "
                "in-process (or set backend:=remote to use a server)",
            )
        need(self.steps >= 0, f"parameter steps is {self.steps}; expected >= 0 (0 = checkpoint default)")
        need(bool(self.camera_topic), "parameter camera_topic is empty")
        need(bool(self.action_topic), "parameter action_topic is empty")
        need(
            self.action_type in ACTION_MSGTYPES,
            f"parameter action_type is {self.action_type!r}; expected one of {', '.join(ACTION_MSGTYPES)}",
        )
        if self.action_type.startswith("twist"):
            bad = [f for f in self.action_fields if f not in TWIST_PATHS]
            need(
                bool(self.action_fields) and not bad,
                f"parameter action_fields {list(self.action_fields)} must be a non-empty subset of "
                f"{list(TWIST_PATHS)}",
            )
        need(
            self.joint_field in JOINT_FIELDS,
            f"parameter joint_field is {self.joint_field!r}; expected one of {', '.join(JOINT_FIELDS)}",
        )
        need(self.context_frames >= 0, f"parameter context_frames is {self.context_frames}; expected >= 0")
        for name in ("context_rate_hz", "publish_rate_hz", "diagnostics_period_s"):
            value = getattr(self, name)
            need(
                math.isfinite(value) and value >= 0,
                f"parameter {name} is {value}; expected a finite value >= 0",
            )
        for name in ("max_staleness_s", "gap_s"):
            value = getattr(self, name)
            need(
                math.isfinite(value) and value > 0,
                f"parameter {name} is {value}; expected a finite value > 0",
            )
        need(
            self.stale_command in STALE_POLICIES,
            f"parameter stale_command is {self.stale_command!r}; expected one of {', '.join(STALE_POLICIES)}",
        )
        need(
            self.image_height >= 0 and self.image_width >= 0,
            f"parameters image_height/image_width are {self.image_height}/{self.image_width}; expected >= 0",
        )
        need(self.horizon >= 1, f"parameter horizon is {self.horizon}; expected >= 1")
        need(self.max_rollouts >= 1, f"parameter max_rollouts is {self.max_rollouts}; expected >= 1")
        need(
            self.max_horizon >= self.horizon,
            f"parameter max_horizon ({self.max_horizon}) is smaller than horizon ({self.horizon})",
        )
        need(
            self.output_encoding in ENCODINGS,
            f"parameter output_encoding is {self.output_encoding!r}; expected one of {', '.join(ENCODINGS)}",
        )

    @property
    def token(self) -> str | None:
        return self.server_token or None


@dataclass(frozen=True)
class ParamSpec:
    """One ROS parameter to declare: name, default, description and ROS type name."""

    name: str
    default: Any
    description: str
    ros_type: str  # bool | integer | double | string | string_array


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]


def parameter_table() -> list[ParamSpec]:
    """Every node parameter in declaration order."""
    out = []
    for f in dataclasses.fields(NodeParams):
        default = _default(f)
        if isinstance(default, bool):
            ros_type = "bool"
        elif isinstance(default, int):
            ros_type = "integer"
        elif isinstance(default, float):
            ros_type = "double"
        elif isinstance(default, tuple):
            ros_type = "string_array"
            default = list(default)
        else:
            ros_type = "string"
        out.append(ParamSpec(f.name, default, f.metadata["doc"], ros_type))
    return out
