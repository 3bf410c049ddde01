"""ROS 2 message objects for tests, from ``rosbags``' Humble typestore (same field names as rclpy's).

Also registers this repo's ``crcm_interfaces`` definitions (parsed from the
.msg/.srv files themselves), writes rosbag2 bags, and provides the numpy
:class:`MessageKit` the plain modules build messages with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from crcm_robotics.ros.images import ENCODINGS
from crcm_robotics.ros.messages import MessageKit

REPO = Path(__file__).resolve().parents[1]
INTERFACES = REPO / "ros2_ws" / "src" / "crcm_interfaces"
PREDICTED = "crcm_interfaces/msg/PredictedFrames"
REQUEST = (
    "crcm_interfaces/msg/ImagineRollouts_Request"  # rosbags has no .srv; the halves are registered as msgs
)
RESPONSE = "crcm_interfaces/msg/ImagineRollouts_Response"

_STORE = None


def typestore():
    """Humble typestore with crcm_interfaces registered (cached)."""
    global _STORE
    if _STORE is None:
        from rosbags.typesys import Stores, get_types_from_msg, get_typestore

        store = get_typestore(Stores.ROS2_HUMBLE)
        types = get_types_from_msg((INTERFACES / "msg" / "PredictedFrames.msg").read_text(), PREDICTED)
        request, response = (INTERFACES / "srv" / "ImagineRollouts.srv").read_text().split("\n---\n")
        types.update(get_types_from_msg(request, REQUEST))
        types.update(get_types_from_msg(response, RESPONSE))
        store.register(types)
        _STORE = store
    return _STORE


def T(name: str):
    return typestore().types[name]


def header(t: float = 0.0, frame_id: str = "camera"):
    sec = int(np.floor(t))
    return T("std_msgs/msg/Header")(
        stamp=T("builtin_interfaces/msg/Time")(sec=sec, nanosec=int(round((t - sec) * 1e9))),
        frame_id=frame_id,
    )


def image_msg(frame_HW3: np.ndarray, encoding: str = "rgb8", pad: int = 0, t: float = 0.0):
    """An Image holding an RGB frame in ``encoding``, each row padded with ``pad`` junk bytes (0xAB)."""
    channels, rgb = ENCODINGS[encoding]
    h, w, _ = frame_HW3.shape
    if encoding == "mono8":
        pixels = frame_HW3[..., :1]
    else:
        pixels = np.full((h, w, channels), 255, np.uint8)
        pixels[..., list(rgb)] = frame_HW3
    row = pixels.reshape(h, w * channels)
    padded = np.concatenate([row, np.full((h, pad), 0xAB, np.uint8)], axis=1)
    return T("sensor_msgs/msg/Image")(
        header=header(t),
        height=h,
        width=w,
        encoding=encoding,
        is_bigendian=0,
        step=w * channels + pad,
        data=np.ascontiguousarray(padded).reshape(-1),
    )


def empty_image():
    return T("sensor_msgs/msg/Image")(
        header=header(), height=0, width=0, encoding="", is_bigendian=0, step=0, data=np.zeros(0, np.uint8)
    )


def compressed_msg(frame_HW3: np.ndarray, fmt: str = "jpeg", t: float = 0.0, **save: Any):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame_HW3).save(buf, format="JPEG" if "jpeg" in fmt else "PNG", **save)
    return T("sensor_msgs/msg/CompressedImage")(
        header=header(t), format=fmt, data=np.frombuffer(buf.getvalue(), np.uint8).copy()
    )


def vector3(x=0.0, y=0.0, z=0.0):
    return T("geometry_msgs/msg/Vector3")(x=float(x), y=float(y), z=float(z))


def twist(vx=0.0, vy=0.0, wz=0.0, vz=0.0, wx=0.0, wy=0.0):
    return T("geometry_msgs/msg/Twist")(linear=vector3(vx, vy, vz), angular=vector3(wx, wy, wz))


def twist_stamped(vx=0.0, vy=0.0, wz=0.0, t=0.0):
    return T("geometry_msgs/msg/TwistStamped")(header=header(t), twist=twist(vx, vy, wz))


def f32_array(values, label: str = ""):
    values = np.asarray(values, np.float32)
    dims = (
        [T("std_msgs/msg/MultiArrayDimension")(label=label, size=len(values), stride=len(values))]
        if label
        else []
    )
    return T("std_msgs/msg/Float32MultiArray")(
        layout=T("std_msgs/msg/MultiArrayLayout")(dim=dims, data_offset=0), data=values
    )


def joint_state(names, position=(), velocity=(), effort=(), t: float = 0.0):
    def arr(values):
        return np.asarray(values, np.float64)

    return T("sensor_msgs/msg/JointState")(
        header=header(t), name=list(names), position=arr(position), velocity=arr(velocity), effort=arr(effort)
    )


def numpy_kit() -> MessageKit:
    """Build messages with rosbags classes and numpy containers (what rosbags serializes)."""
    return MessageKit(
        image=T("sensor_msgs/msg/Image"),
        u8=lambda b: np.frombuffer(b, np.uint8).copy(),
        f32=lambda a: np.asarray(a, np.float32).reshape(-1).copy(),
    )


def roundtrip(msg: Any, msgtype: str) -> Any:
    """Serialize to CDR and back: proves the fields match the message definition."""
    store = typestore()
    return store.deserialize_cdr(store.serialize_cdr(msg, msgtype), msgtype)


def write_bag(path: Path, storage: str, messages: list[tuple[str, str, float, Any]]) -> Path:
    """Write a rosbag2 bag (storage ``sqlite3`` or ``mcap``) of (topic, msgtype, log time s, message)."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    plugin = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}[storage]
    store = typestore()
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conns: dict[tuple[str, str], Any] = {}
        for topic, msgtype, t, msg in sorted(messages, key=lambda m: m[2]):
            if (topic, msgtype) not in conns:
                conns[(topic, msgtype)] = writer.add_connection(topic, msgtype, typestore=store)
            writer.write(conns[(topic, msgtype)], int(round(t * 1e9)), store.serialize_cdr(msg, msgtype))
    return path
