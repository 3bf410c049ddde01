"""A live ROS 2 graph for tests and the latency benchmark: the node in a subprocess, rclpy in this process.

Fast DDS stays on this machine (``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``) in a
domain of its own (``ROS_DOMAIN_ID`` from the process id), so parallel runs and
other engineers' graphs do not meet. rclpy comes from the ROS 2 Jazzy wheels
that ``scripts/ros2_env.sh`` installs into the venv; ``require_rclpy`` fails in
CI (``CI=true``) when they are missing and skips elsewhere.
"""

from __future__ import annotations

import array
import gc
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DOMAIN_ID = str(1 + os.getpid() % 100)  # 1..100: valid Fast DDS domains on Linux, 0 (the default) avoided
GRAPH_ENV = {"ROS_DOMAIN_ID": DOMAIN_ID, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}


def require_rclpy() -> None:
    """Import rclpy and crcm_interfaces, or fail (CI) / skip (elsewhere) saying how to install them."""
    import pytest

    try:
        import crcm_interfaces.srv  # noqa: F401
        import rclpy  # noqa: F401
    except ImportError as exc:
        why = (
            f"rclpy / crcm_interfaces cannot be imported ({exc}); "
            "install them with `bash scripts/ros2_env.sh .venv` (scripts/setup.d/20-ros2.sh)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"live ROS 2 tests must run in CI: {why}", pytrace=False)
        pytest.skip(why)


def stamp(t: float) -> Any:
    from builtin_interfaces.msg import Time

    sec = int(t)
    return Time(sec=sec, nanosec=int(round((t - sec) * 1e9)))


def pattern_frame(i: int, h: int = 32, w: int = 32) -> np.ndarray:
    """A frame that encodes its index: R = 8*i mod 256, G = column ramp, B = row ramp."""
    out = np.zeros((h, w, 3), np.uint8)
    out[..., 0] = (8 * i) % 256
    out[..., 1] = np.arange(w)[None, :] * (255 // max(w - 1, 1))
    out[..., 2] = np.arange(h)[:, None] * (255 // max(h - 1, 1))
    return out


def image_msg(frame_HW3: np.ndarray, encoding: str = "rgb8", t: float = 0.0, pad: int = 0) -> Any:
    """A ``sensor_msgs/Image`` of an RGB frame in ``encoding`` with ``pad`` bytes of row padding."""
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    if encoding == "rgb8":
        px = frame_HW3
    elif encoding == "bgr8":
        px = frame_HW3[..., ::-1]
    elif encoding == "mono8":
        px = frame_HW3.mean(axis=2, keepdims=True).astype(np.uint8)
    else:
        raise ValueError(f"test encoding {encoding!r} is not one of rgb8, bgr8, mono8")
    h, w, c = px.shape
    rows = np.zeros((h, w * c + pad), np.uint8)
    rows[:, : w * c] = px.reshape(h, w * c)
    return Image(
        header=Header(stamp=stamp(t), frame_id="camera"),
        height=h,
        width=w,
        encoding=encoding,
        is_bigendian=0,
        step=w * c + pad,
        data=array.array("B", rows.tobytes()),
    )


def compressed_msg(frame_HW3: np.ndarray, t: float = 0.0) -> Any:
    import io

    from PIL import Image as PILImage
    from sensor_msgs.msg import CompressedImage
    from std_msgs.msg import Header

    buf = io.BytesIO()
    PILImage.fromarray(frame_HW3).save(buf, format="PNG")
    return CompressedImage(
        header=Header(stamp=stamp(t), frame_id="camera"), format="png", data=array.array("B", buf.getvalue())
    )


def image_array(msg: Any) -> np.ndarray:
    """An rgb8 ``sensor_msgs/Image`` as uint8 ``[H, W, 3]``."""
    assert msg.encoding == "rgb8", msg.encoding
    rows = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)
    return rows[:, : msg.width * 3].reshape(msg.height, msg.width, 3)


def command_msg(action_type: str, values: tuple[float, ...], t: float = 0.0) -> Any:
    """A command of ``action_type`` carrying two values (the PushT student's action_dim); a
    ``float32_multi_array`` carries any number (the arm's four)."""
    from geometry_msgs.msg import Twist, TwistStamped, Vector3
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float32MultiArray, Header

    if action_type == "float32_multi_array":
        return Float32MultiArray(data=[float(v) for v in values])
    if len(values) != 2:
        raise ValueError(f"a {action_type} command here carries two values, got {len(values)}")
    a, b = values
    twist = Twist(linear=Vector3(x=a, y=b, z=0.0))
    if action_type == "twist":
        return twist
    if action_type == "twist_stamped":
        return TwistStamped(header=Header(stamp=stamp(t)), twist=twist)
    if action_type == "joint_state":
        return JointState(header=Header(stamp=stamp(t)), name=["j0", "j1"], velocity=[a, b])
    raise ValueError(f"unknown action_type {action_type!r}")


def ros_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


class NodeProcess:
    """``world_model_node`` in a subprocess with ``params`` (``--ros-args -p name:=value``), log in a file."""

    def __init__(
        self,
        params: dict[str, Any],
        log_path: Path,
        node_name: str | None = None,
        extra_env: dict[str, str] | None = None,
    ):
        args = [sys.executable, "-m", "crcm_robotics.ros.node", "--ros-args"]
        if node_name:
            args += ["-r", f"__node:={node_name}"]
        for name, value in params.items():
            args += ["-p", f"{name}:={ros_value(value)}"]
        env = {**os.environ, **GRAPH_ENV, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **(extra_env or {})}
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=REPO)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"node still running after {timeout} s; log:\n{self.log()[-3000:]}") from None

    def interrupt(self, timeout: float = 20.0) -> int:
        """SIGINT (Ctrl-C) and wait for the exit code."""
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
        return self.wait(timeout)

    def kill(self) -> None:
        """Always safe: stop the process if it still runs (SIGINT, then SIGKILL), close the log."""
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


class Graph:
    """rclpy in this process: one context, one node, a single-threaded executor spinning in a thread.

    Its callbacks only store messages and service responses, so one thread serves them all (Jazzy's
    MultiThreadedExecutor re-queues tasks that wait for a thread, see ``node.QueueOnceExecutor``).
    """

    def __init__(self, name: str = "crcm_test_client"):
        os.environ.update(GRAPH_ENV)  # read by rclpy.init
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.rclpy = rclpy
        self.context = rclpy.context.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        errors = self.rclpy._rclpy_pybind11
        while not self._closing.is_set() and self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.2)
            except errors.InvalidHandle:
                # a test destroyed a publisher or subscription while the executor built its wait set (rclpy
                # raises this out of spin(), which once ended this thread: every later recorder stayed empty)
                continue
            except (ExternalShutdownException, errors.RCLError):
                return

    def close(self) -> None:
        self._closing.set()
        self._thread.join(timeout=10)
        self.executor.shutdown(timeout_sec=5)
        self.node.destroy_node()
        self.rclpy.try_shutdown(context=self.context)
        # a task the shutdown cut short keeps an exception nobody fetched, and rclpy prints it ("The following
        # exception was never retrieved: cannot use Destroyable ...") when the task is garbage-collected. Drop
        # the executor (it holds its tasks) and collect here, so that the line lands in this teardown and not in
        # whichever test this process runs next (it once broke test_rosbag_import's one-line stderr check)
        self.executor = None
        gc.collect()

    def collect(self, msg_type: Any, topic: str, qos: Any = 100, raw: bool = False) -> Recorder:
        return Recorder(self.node, msg_type, topic, qos, raw)

    def call(self, client: Any, request: Any, timeout: float = 60.0) -> Any:
        """Call a service and wait for the response (the executor thread delivers it)."""
        done = threading.Event()
        future = client.call_async(request)
        future.add_done_callback(lambda _: done.set())
        if not done.wait(timeout):
            client.remove_pending_request(future)
            raise AssertionError(f"no response from {client.srv_name} within {timeout} s")
        return future.result()


class Recorder:
    """Every message of a topic with the wall time DDS received it (``time.time()`` seconds).

    The time is the middleware's reception timestamp, taken by Fast DDS's own receive thread, not the
    moment this process's executor ran the callback: a stall of the test process (GIL, torch, a busy
    executor) delays the callbacks but neither shifts the times nor, with the history of 100 kept by
    default, loses messages. So a rate counted over these times is the publisher's, and a bag written
    from them has the gaps the graph had.
    """

    def __init__(self, node: Any, msg_type: Any, topic: str, qos: Any, raw: bool):
        self.items: list[tuple[float, Any]] = []
        self._lock = threading.Lock()
        self.sub = node.create_subscription(msg_type, topic, self._on, qos, raw=raw)

    def _on(self, msg: Any, info: dict[str, Any]) -> None:
        with self._lock:
            self.items.append((info["received_timestamp"] * 1e-9, msg))

    def since(self, t0: float) -> list[tuple[float, Any]]:
        with self._lock:
            return [(t, m) for t, m in self.items if t >= t0]

    def wait_for(self, count: int, timeout: float, what: str, predicate: Callable[[Any], bool] = bool) -> list:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                got = [m for _, m in self.items if predicate(m)]
            if len(got) >= count:
                return got
            if time.monotonic() >= deadline:
                raise AssertionError(f"{what}: {len(got)} of {count} messages within {timeout} s")
            time.sleep(0.05)

    def rate_hz(self, t0: float, window_s: float, timeout: float = 30.0) -> float:
        """Messages per second received in ``[t0, t0 + window_s)`` (wall time), counted once a message
        received after the window has been taken (the callbacks of a stalled test process catch up) or
        ``timeout`` seconds have passed (a publisher that stopped), divided by the window's length."""
        end = t0 + window_s
        deadline = time.monotonic() + max(0.0, end - time.time()) + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self.items and self.items[-1][0] >= end:
                    break
            time.sleep(0.05)
        with self._lock:
            return sum(1 for t, _ in self.items if t0 <= t < end) / window_s


class Feeder:
    """Camera frames and commands at ``rate_hz`` from a process of its own (``tests/_ros_feeder.py``), as a
    robot's drivers would publish them: a stall of the test process no longer reaches the node's inputs.

    ``send_frames = False`` stops the camera (a gap) and ``True`` starts it again; ``stop()`` ends the
    process (SIGINT) and fails unless it exits 0. Also a context manager.
    """

    def __init__(
        self,
        camera_topic: str,
        action_topic: str,
        action_type: str,
        encodings: tuple[str, ...] = ("rgb8",),
        rate_hz: float = 10.0,
        reliable_camera: bool = False,
        command: tuple[float, ...] = (0.25, -0.5),
        ready_timeout: float = 60.0,
    ):
        args = [
            sys.executable, str(REPO / "tests" / "_ros_feeder.py"),
            "--camera-topic", camera_topic, "--action-topic", action_topic, "--action-type", action_type,
            "--encodings", ",".join(encodings), "--rate-hz", str(rate_hz),
            "--command", ",".join(str(v) for v in command),
        ]
        if reliable_camera:
            args.append("--reliable-camera")
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
            env={**os.environ, **GRAPH_ENV, "PYTHONUNBUFFERED": "1"}, cwd=REPO, text=True,
        )
        self._send_frames = True
        ready, _, _ = select.select([self.proc.stdout], [], [], ready_timeout)
        line = self.proc.stdout.readline() if ready else ""
        if line.strip() != "ready":
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise AssertionError(f"feeder not ready within {ready_timeout} s (exit {self.proc.returncode}, "
                                 f"said {line!r}); stderr:\n{self.log()[-3000:]}")

    def log(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    @property
    def send_frames(self) -> bool:
        return self._send_frames

    @send_frames.setter
    def send_frames(self, on: bool) -> None:
        self.proc.stdin.write("frames on\n" if on else "frames off\n")
        self.proc.stdin.flush()
        self._send_frames = on

    def stop(self, timeout: float = 20.0) -> None:
        """SIGINT, wait, and fail unless the feeder exited 0. Safe to call twice."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                why = f"feeder ignored SIGINT for {timeout} s; stderr:\n{self.log()[-3000:]}"
                raise AssertionError(why) from None
        for pipe in (self.proc.stdin, self.proc.stdout):
            if not pipe.closed:
                pipe.close()
        if self.proc.returncode != 0:
            raise AssertionError(f"feeder exited {self.proc.returncode}; stderr:\n{self.log()[-3000:]}")

    def __enter__(self) -> Feeder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
