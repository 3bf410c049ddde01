"""A robot's drivers in a process of their own: camera frames and commands at a fixed rate (live-graph tests).

    python tests/_ros_feeder.py --camera-topic T --action-topic T --action-type TYPE
        [--encodings rgb8,bgr8,mono8,rgb8+pad] [--rate-hz 10] [--reliable-camera] [--command 0.25,-0.5]

Publishes until SIGINT or SIGTERM (or end of stdin: the test process is gone) and exits 0.
Frame ``i`` is ``pattern_frame(i)`` in ``encodings[i % len(encodings)]`` (``+pad`` adds 5 bytes
per row), a ``CompressedImage`` (PNG) when the topic ends in ``/compressed``; every image and
stamped command carries the wall time it is sent. Best-effort camera QoS (``qos_profile_sensor_data``)
unless ``--reliable-camera``. Prints ``ready`` once its publishers exist. Reads commands from stdin,
one a line: ``frames off`` stops the camera (a gap), ``frames on`` starts it again.

It runs apart from the pytest process because a thread there stalled for seconds at a time on a
loaded 2-core box (the test's rclpy executor, torch, the GIL), and the node then saw camera gaps
and stale commands that no robot sent. The graph (``ROS_DOMAIN_ID``, localhost discovery) comes
from the environment ``_ros_live.Feeder`` starts it with.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

from _ros_live import command_msg, compressed_msg, image_msg, pattern_frame


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--camera-topic", required=True)
    ap.add_argument("--action-topic", required=True)
    ap.add_argument("--action-type", required=True,
                    choices=["twist", "twist_stamped", "float32_multi_array", "joint_state"])
    ap.add_argument("--encodings", default="rgb8", help="comma-separated, cycled frame by frame")
    ap.add_argument("--rate-hz", type=float, default=10.0)
    ap.add_argument("--reliable-camera", action="store_true")
    ap.add_argument("--command", default="0.25,-0.5",
                    help="the values every command carries (two; any number for float32_multi_array)")
    args = ap.parse_args(argv)
    encodings = args.encodings.split(",")
    values = tuple(float(v) for v in args.command.split(","))

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    import rclpy
    from geometry_msgs.msg import Twist, TwistStamped
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from rclpy.signals import SignalHandlerOptions
    from sensor_msgs.msg import CompressedImage, Image, JointState
    from std_msgs.msg import Float32MultiArray

    command_types = {
        "twist": Twist,
        "twist_stamped": TwistStamped,
        "float32_multi_array": Float32MultiArray,
        "joint_state": JointState,
    }
    compressed = args.camera_topic.endswith("/compressed")
    camera_qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE) if args.reliable_camera \
        else qos_profile_sensor_data

    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)  # SIGINT / SIGTERM are ours: a clean exit 0
    node = rclpy.create_node("crcm_test_feeder")
    camera = node.create_publisher(CompressedImage if compressed else Image, args.camera_topic, camera_qos)
    commands = node.create_publisher(command_types[args.action_type], args.action_topic, 10)

    send_frames = threading.Event()
    send_frames.set()

    def read_commands() -> None:
        for line in sys.stdin:
            if line.strip() == "frames off":
                send_frames.clear()
            elif line.strip() == "frames on":
                send_frames.set()
            else:
                print(f"feeder: unknown command {line.strip()!r}; expected 'frames on' or 'frames off'",
                      file=sys.stderr, flush=True)
        stop.set()  # stdin closed: the test process has gone

    threading.Thread(target=read_commands, daemon=True).start()
    print("ready", flush=True)

    period = 1.0 / args.rate_hz
    i, next_t = 0, time.monotonic()
    while not stop.is_set():
        now = time.time()
        commands.publish(command_msg(args.action_type, values, now))
        if send_frames.is_set():
            frame = pattern_frame(i)
            if compressed:
                msg = compressed_msg(frame, now)
            else:
                enc = encodings[i % len(encodings)]
                msg = image_msg(frame, enc.removesuffix("+pad"), now, pad=5 if enc.endswith("+pad") else 0)
            camera.publish(msg)
        i += 1
        next_t = max(next_t + period, time.monotonic())  # after a stall of this process: no burst to catch up
        stop.wait(max(0.0, next_t - time.monotonic()))

    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
