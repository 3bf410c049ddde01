"""rosbag2 (sqlite3 or mcap) -> trajectory store.

``crcm data import-rosbag BAG out=… camera_topic=… action_topic=…``

Reads the bag with ``rosbags`` (no ROS installation needed), in one pass:

1. all messages of ``action_topic`` (``Twist``, ``TwistStamped``,
   ``Float32MultiArray`` or ``JointState``) become action vectors through the
   adapters of :mod:`crcm_robotics.ros.actions`;
2. camera messages (``sensor_msgs/Image`` in rgb8/bgr8/rgba8/bgra8/mono8 with
   any row padding, or ``CompressedImage`` JPEG/PNG) are offered in recording
   order to :class:`crcm_robotics.ros.align.EpisodeSegmenter`, which applies
   the alignment rules (zero-order hold; frames before the first command
   dropped; a stale command or a camera gap ends an episode; optional
   down-sampling to ``rate``); only kept frames are decoded, cropped and
   resized (:func:`crcm_robotics.ros.images.fit_frame`, the function the live
   node uses);
3. each finished episode is appended with :class:`TrajectoryWriter`
   (``timestamp`` = bag time in seconds), episodes shorter than
   ``min_episode_frames`` are skipped, then normalization stats are written
   and the store is validated.

Times are the bag's log (receive) times unless ``use_header_stamps``, which
reads ``header.stamp`` of stamped messages. The store's ``fps`` is the
measured mean frame rate of the kept frames.
"""

from __future__ import annotations

import math
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crcm_robotics.data.schema import DEFAULT_CAMERA, open_group, validate_store
from crcm_robotics.data.store import TrajectoryWriter
from crcm_robotics.ros.actions import (
    ACTION_MSGTYPES,
    DEFAULT_TWIST_FIELDS,
    ActionError,
    action_type_for_msgtype,
    make_action_adapter,
)
from crcm_robotics.ros.align import EpisodeSegmenter
from crcm_robotics.ros.images import ImageError, compressed_to_rgb, fit_frame, image_to_rgb

IMAGE_MSGTYPE = "sensor_msgs/msg/Image"
COMPRESSED_MSGTYPE = "sensor_msgs/msg/CompressedImage"
STAMPED_MSGTYPES = {
    IMAGE_MSGTYPE,
    COMPRESSED_MSGTYPE,
    ACTION_MSGTYPES["twist_stamped"],
    ACTION_MSGTYPES["joint_state"],
}


class RosbagImportError(ValueError):
    """The bag cannot be imported as asked (missing topic, unsupported type or encoding, nothing usable)."""


@dataclass
class _Episode:
    frames: list[np.ndarray]
    actions: list[np.ndarray]
    times: list[float]


def header_stamp_from_cdr(raw: bytes | memoryview) -> float:
    """``header.stamp`` (seconds) of a CDR-serialized message whose first field is a ``std_msgs/Header``.

    Reads the 8 bytes after the 4-byte encapsulation header, so camera images
    need not be deserialized just to learn their time.
    """
    head = bytes(raw[:12])
    if len(head) < 12 or head[0] != 0 or head[1] not in (0, 1):
        raise RosbagImportError("message is not plain CDR (cannot read header.stamp)")
    sec, nanosec = struct.unpack("<iI" if head[1] == 1 else ">iI", head[4:12])
    return sec + nanosec * 1e-9


def _topics_listing(reader) -> str:
    return ", ".join(f"{name} ({info.msgtype})" for name, info in sorted(reader.topics.items())) or "(none)"


def import_rosbag(
    bag: str | Path,
    out: str | Path,
    *,
    camera_topic: str,
    action_topic: str,
    action_type: str = "auto",
    action_fields: Sequence[str] = DEFAULT_TWIST_FIELDS,
    joint_names: Sequence[str] = (),
    joint_field: str = "velocity",
    rate: float = 0.0,
    size: int | None = 64,
    center_crop: bool = True,
    max_staleness_s: float = 0.5,
    gap_s: float = 1.0,
    min_episode_frames: int = 2,
    use_header_stamps: bool = False,
    camera: str = DEFAULT_CAMERA,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Import one rosbag2 bag (directory, ``.db3`` or ``.mcap``) into a new store; return a summary."""
    from rosbags.rosbag2 import Reader
    from rosbags.rosbag2.errors import ReaderError
    from rosbags.typesys import Stores, get_typestore

    from crcm_robotics.progress import progress as progress_bar

    bag, out = Path(bag), Path(out)
    if not bag.exists():
        raise FileNotFoundError(f"rosbag {bag} does not exist")
    if out.exists() and not overwrite:
        raise RosbagImportError(f"{out} already exists; pass overwrite=true to replace it")
    if rate < 0 or not math.isfinite(rate):
        raise RosbagImportError(
            f"rate is {rate}; expected a frame rate in Hz, or 0 to keep every camera frame"
        )
    if size is not None and size <= 0:
        raise RosbagImportError(
            f"size is {size}; expected a positive side length or null for the camera's size"
        )
    if min_episode_frames < 1:
        raise RosbagImportError(f"min_episode_frames is {min_episode_frames}; expected >= 1")

    typestore = get_typestore(Stores.ROS2_HUMBLE)
    try:
        reader = Reader(bag)
        reader.open()
    except ReaderError as exc:
        raise RosbagImportError(f"cannot open rosbag {bag}: {exc}") from None
    try:
        topics = reader.topics
        for role, topic in (("camera_topic", camera_topic), ("action_topic", action_topic)):
            if topic not in topics:
                raise RosbagImportError(
                    f"{role} {topic} is not in {bag}; the bag has: {_topics_listing(reader)}"
                )
        camera_msgtype = topics[camera_topic].msgtype
        if camera_msgtype not in (IMAGE_MSGTYPE, COMPRESSED_MSGTYPE):
            raise RosbagImportError(
                f"camera_topic {camera_topic} carries {camera_msgtype}; "
                f"supported: {IMAGE_MSGTYPE}, {COMPRESSED_MSGTYPE}"
            )
        action_msgtype = topics[action_topic].msgtype or "(mixed types)"
        try:
            found_type = action_type_for_msgtype(action_msgtype)
        except ActionError as exc:
            raise RosbagImportError(f"action_topic {action_topic}: {exc}") from None
        if action_type not in ("auto", found_type):
            raise RosbagImportError(
                f"action_type is {action_type} but {action_topic} carries {action_msgtype} "
                f"(action_type {found_type})"
            )
        if use_header_stamps:
            for topic, msgtype in ((camera_topic, camera_msgtype), (action_topic, action_msgtype)):
                if msgtype not in STAMPED_MSGTYPES:
                    raise RosbagImportError(
                        f"use_header_stamps needs stamped messages but {topic} carries {msgtype}, "
                        "which has no "
                        "header; use the bag's log times (use_header_stamps=false)"
                    )
        try:
            adapter = make_action_adapter(
                found_type, fields=action_fields, joint_names=joint_names, joint_field=joint_field
            )
        except ActionError as exc:
            raise RosbagImportError(str(exc)) from None

        # -- commands (small): all of them, sorted by time -------------------------------------
        cmd_t, cmd_v = [], []
        conns = [c for c in reader.connections if c.topic == action_topic]
        for i, (conn, t_ns, raw) in enumerate(reader.messages(connections=conns)):
            t = header_stamp_from_cdr(raw) if use_header_stamps else t_ns * 1e-9
            try:
                cmd_v.append(adapter(typestore.deserialize_cdr(raw, conn.msgtype)))
            except ActionError as exc:
                raise RosbagImportError(f"{action_topic} message {i} (t={t:.3f} s): {exc}") from None
            cmd_t.append(t)
        if not cmd_t:
            raise RosbagImportError(f"action_topic {action_topic} has no messages in {bag}")
        order = np.argsort(np.asarray(cmd_t), kind="stable")
        cmd_t_arr = np.asarray(cmd_t, dtype=np.float64)[order]
        cmd_v_arr = np.stack(cmd_v)[order].astype(np.float32)

        # -- camera: one pass, decode kept frames only ------------------------------------------
        segmenter = EpisodeSegmenter(cmd_t_arr, max_staleness_s=max_staleness_s, gap_s=gap_s, rate_hz=rate)
        plan = segmenter.plan
        writer: TrajectoryWriter | None = None
        shape: tuple[int, int, int] | None = None
        episode = _Episode([], [], [])
        durations: list[tuple[int, float]] = []  # (intervals, seconds) per written episode

        def flush() -> None:
            nonlocal writer
            n = len(episode.frames)
            if n and n < min_episode_frames:
                plan.dropped_short_episodes += 1
                plan.dropped_short_frames += n
            elif n:
                times = np.asarray(episode.times, dtype=np.float64)
                if writer is None:
                    assert shape is not None
                    writer = TrajectoryWriter.create(
                        out,
                        image_shape=shape,
                        action_dim=cmd_v_arr.shape[1],
                        cameras=(camera,),
                        fps=rate or (((n - 1) / (times[-1] - times[0])) if n > 1 else 1.0),
                        action_names=list(adapter.names),
                        action_units=adapter.units,
                        source=f"rosbag2:{bag.resolve()}",
                        extra_attrs={
                            "rosbag": {
                                "bag": str(bag.resolve()),
                                "camera_topic": camera_topic,
                                "camera_msgtype": camera_msgtype,
                                "action_topic": action_topic,
                                "action_msgtype": action_msgtype,
                                "time_source": "header.stamp" if use_header_stamps else "log time",
                                "max_staleness_s": max_staleness_s,
                                "gap_s": gap_s,
                                "rate": rate,
                                "size": size,
                                "center_crop": center_crop,
                            }
                        },
                        overwrite=overwrite,
                    )
                writer.append_episode(np.stack(episode.frames), np.stack(episode.actions), timestamp=times)
                durations.append((n - 1, float(times[-1] - times[0])))
            episode.frames.clear()
            episode.actions.clear()
            episode.times.clear()

        conns = [c for c in reader.connections if c.topic == camera_topic]
        total = sum(c.msgcount for c in conns)
        bar = progress_bar(total=total or None, unit="frame", desc=f"{bag.name} -> {out.name}", enabled=progress)
        for i, (conn, t_ns, raw) in enumerate(reader.messages(connections=conns)):
            bar.update(1)
            t = header_stamp_from_cdr(raw) if use_header_stamps else t_ns * 1e-9
            decision = segmenter.offer(t)
            if decision.close_before:
                flush()
            if not decision.keep:
                continue
            where = f"{camera_topic} message {i} (t={t:.3f} s)"
            msg = typestore.deserialize_cdr(raw, conn.msgtype)
            try:
                rgb = (
                    image_to_rgb(msg, where)
                    if conn.msgtype == IMAGE_MSGTYPE
                    else compressed_to_rgb(msg, where)
                )
            except ImageError as exc:
                raise RosbagImportError(str(exc)) from None
            if size is not None:
                rgb = fit_frame(rgb, (size, size), center_crop)
            if shape is None:
                shape = (int(rgb.shape[0]), int(rgb.shape[1]), 3)
            elif rgb.shape != shape:
                raise RosbagImportError(
                    f"{where} is {rgb.shape[0]}x{rgb.shape[1]} but earlier frames are {shape[0]}x{shape[1]}; "
                    "pass size=… to resize every frame"
                )
            episode.frames.append(rgb)
            episode.actions.append(cmd_v_arr[decision.cmd_index])
            episode.times.append(t)
        flush()
        bar.close()
    finally:
        reader.close()

    if writer is None:
        raise RosbagImportError(
            f"no episode of at least {min_episode_frames} frames survived alignment in {bag}: "
            f"{_plan_sentence(plan.as_json())}"
        )
    writer.write_stats()
    intervals = sum(n for n, _ in durations)
    seconds = sum(s for _, s in durations)
    fps = intervals / seconds if seconds > 0 else float(rate or 1.0)
    open_group(out, mode="r+").attrs["fps"] = float(fps)
    summary = validate_store(out).as_json()
    warnings = []
    if rate and abs(fps - rate) > 0.1 * rate:
        warnings.append(
            f"measured frame rate {fps:.2f} Hz differs from rate={rate} Hz (is the camera slower than rate?)"
        )
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    return {
        "store": str(out),
        **summary,
        "alignment": {
            **plan.as_json(),
            "episodes": len(durations),
            "frames_kept": intervals + len(durations),
            "commands": len(cmd_t_arr),
        },
        "action_names": list(adapter.names),
        "warnings": warnings,
    }


def _plan_sentence(counts: dict[str, int]) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items() if v)
