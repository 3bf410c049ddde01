"""Latency of ``world_model_node`` on a live ROS 2 graph; prints one JSON line.

    python scripts/bench_ros_live.py --ckpt CKPT [--device cpu|cuda] [--seconds 10]
        [--camera-hz 30] [--publish-hz 10] [--rollouts 64] [--horizon 16] [--imagine-calls 10]

Starts the node in a subprocess (Fast DDS on localhost, a domain of its own),
publishes camera frames stamped with the wall time they are sent and a
Float32MultiArray command, and measures:

- ``camera_to_predicted_ms``: from sending the newest context frame to receiving the
  ``~/predicted`` message built on it (header stamp -> arrival). It includes the wait
  for the prediction timer (up to 1 / publish-hz) and ROS transport both ways;
  ``predicted_model_ms`` is the model time inside it (the message's latency_ms).
- ``imagine_roundtrip_ms``: an rclpy client's ``~/imagine`` call (rollouts x horizon from a
  given context, with a goal, return_frames false; the camera stopped, so the stream is idle)
  against ``worldmodel_imagine_ms``, the same query on ``WorldModel.imagine`` in this process
  (no ROS), measured before the node starts.
- ``service_discovery_s``: from starting the node process to ``~/imagine`` being available.

Needs rclpy and crcm_interfaces (``bash scripts/ros2_env.sh .venv``). Percentiles are p50/p99
over all samples.
"""

from __future__ import annotations

import argparse
import array
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np


def percentiles(values_ms: list[float]) -> dict[str, float]:
    v = np.asarray(values_ms, dtype=np.float64)
    if v.size == 0:
        return {"p50": float("nan"), "p99": float("nan"), "n": 0}
    return {"p50": round(float(np.percentile(v, 50)), 2), "p99": round(float(np.percentile(v, 99)), 2), "n": int(v.size)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", required=True, help="student checkpoint directory")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backend", default="eager")
    ap.add_argument("--seconds", type=float, default=10.0, help="how long to sample ~/predicted")
    ap.add_argument("--camera-hz", type=float, default=30.0)
    ap.add_argument("--publish-hz", type=float, default=10.0, help="the node's publish_rate_hz")
    ap.add_argument("--predict-horizon", type=int, default=8, help="the node's horizon")
    ap.add_argument("--rollouts", type=int, default=64)
    ap.add_argument("--horizon", type=int, default=16)
    ap.add_argument("--imagine-calls", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads here and in the node (OMP_NUM_THREADS): 2-thread OpenMP on a busy "
                         "2-core box is 10-20x slower than 1 thread")
    args = ap.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before torch is imported; the node inherits it

    os.environ.update(ROS_DOMAIN_ID=str(1 + os.getpid() % 100), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    import rclpy
    from builtin_interfaces.msg import Time
    from crcm_interfaces.msg import PredictedFrames
    from crcm_interfaces.srv import ImagineRollouts
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from std_msgs.msg import Float32MultiArray, Header

    from crcm_robotics.runtime import WorldModel

    model = WorldModel.load(args.ckpt, device=args.device, backend=args.backend)
    h, w, _ = model.image_shape
    k, a_dim = model.context_frames, model.action_dim
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (16, h, w, 3), dtype=np.uint8)
    command = np.full(a_dim, 0.1, np.float32)
    goal = frames[0]
    ctx = (frames[:k], np.tile(command, (k, 1)))
    actions = rng.uniform(-1, 1, (args.rollouts, args.horizon, a_dim)).astype(np.float32)
    model.imagine(actions, ctx, goal)  # warm-up
    direct_ms = []
    for _ in range(args.imagine_calls):
        t0 = time.perf_counter()
        model.imagine(actions, ctx, goal)
        direct_ms.append((time.perf_counter() - t0) * 1e3)
    del model

    params = {
        "checkpoint": args.ckpt, "device": args.device, "backend": args.backend, "camera_topic": "/bench/cam",
        "action_topic": "/bench/cmd", "action_type": "float32_multi_array", "context_rate_hz": 0.0,
        "publish_rate_hz": float(args.publish_hz), "horizon": args.predict_horizon,
        "max_rollouts": max(args.rollouts, 1), "max_horizon": max(args.horizon, args.predict_horizon),
        "publish_filmstrip": False, "diagnostics_period_s": 0.0,
    }
    cmd = [sys.executable, "-m", "crcm_robotics.ros.node", "--ros-args", "-r", "__node:=bench_wm"]
    for name, value in params.items():
        cmd += ["-p", f"{name}:={str(value).lower() if isinstance(value, bool) else value}"]
    t_start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    rclpy.init()
    node = rclpy.create_node("bench_client")
    lat_ms: list[float] = []
    model_ms: list[float] = []

    def on_predicted(msg) -> None:
        sent = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        lat_ms.append((time.time() - sent) * 1e3)
        model_ms.append(msg.latency_ms)

    node.create_subscription(PredictedFrames, "/bench_wm/predicted", on_predicted, 10)
    camera = node.create_publisher(Image, "/bench/cam", qos_profile_sensor_data)
    commands = node.create_publisher(Float32MultiArray, "/bench/cmd", 10)
    client = node.create_client(ImagineRollouts, "/bench_wm/imagine")
    executor = MultiThreadedExecutor(num_threads=3)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    stop = threading.Event()

    def feed() -> None:
        i, next_t = 0, time.monotonic()
        while not stop.is_set():
            now = time.time()
            sec = int(now)
            commands.publish(Float32MultiArray(data=command.tolist()))
            f = frames[i % len(frames)]
            camera.publish(Image(header=Header(stamp=Time(sec=sec, nanosec=int((now - sec) * 1e9)), frame_id="cam"),
                                 height=h, width=w, encoding="rgb8", is_bigendian=0, step=w * 3,
                                 data=array.array("B", f.tobytes())))
            i += 1
            next_t += 1.0 / args.camera_hz
            stop.wait(max(0.0, next_t - time.monotonic()))

    try:
        if not client.wait_for_service(timeout_sec=300):
            raise SystemExit(f"bench: ~/imagine not up after 300 s; node stderr:\n{proc.stderr.read()[-2000:]}")
        discovery_s = time.monotonic() - t_start
        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        deadline = time.monotonic() + 120
        while not lat_ms and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(2.0)  # the stream's first predictions warm the model up
        lat_ms.clear(), model_ms.clear()
        time.sleep(args.seconds)
        stream = (percentiles(list(lat_ms)), percentiles(list(model_ms)))

        stop.set()  # the stream idles (camera gap), so both sides below measure the query alone
        feeder.join(timeout=5)
        time.sleep(1.5)
        req = ImagineRollouts.Request(num_rollouts=args.rollouts, horizon=args.horizon, action_dim=a_dim,
                                      return_frames=False, context_source=ImagineRollouts.Request.CONTEXT_GIVEN)
        req.context_frames = [Image(height=h, width=w, encoding="rgb8", step=w * 3,
                                    data=array.array("B", f.tobytes())) for f in ctx[0]]
        req.context_actions = array.array("f", ctx[1].astype(np.float32).tobytes())
        req.actions = array.array("f", actions.tobytes())
        req.goal = Image(height=h, width=w, encoding="rgb8", step=w * 3, data=array.array("B", goal.tobytes()))
        rt_ms, node_model_ms = [], []
        for i in range(args.imagine_calls + 1):
            t0 = time.perf_counter()
            done = threading.Event()
            future = client.call_async(req)
            future.add_done_callback(lambda _: done.set())
            if not done.wait(300):
                raise SystemExit("bench: no ~/imagine response within 300 s")
            resp = future.result()
            if not resp.success:
                raise SystemExit(f"bench: ~/imagine failed: {resp.message}")
            if i:  # the first call warms up
                rt_ms.append((time.perf_counter() - t0) * 1e3)
                node_model_ms.append(resp.latency_ms)
        print(json.dumps({
            "bench": "ros_live", "device": args.device, "backend": args.backend, "threads": args.threads,
            "checkpoint": args.ckpt,
            "image_shape": [h, w, 3], "camera_hz": args.camera_hz, "publish_hz": args.publish_hz,
            "predict_horizon": args.predict_horizon,
            "camera_to_predicted_ms": stream[0], "predicted_model_ms": stream[1],
            "imagine": f"{args.rollouts}x{args.horizon} with goal, return_frames false",
            "imagine_roundtrip_ms": percentiles(rt_ms), "imagine_node_model_ms": percentiles(node_model_ms),
            "worldmodel_imagine_ms": percentiles(direct_ms),
            "service_discovery_s": round(discovery_s, 2),
        }))
        sys.stdout.flush()  # before tearing down DDS
    finally:
        stop.set()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        executor.shutdown(timeout_sec=5)
        node.destroy_node()
        rclpy.try_shutdown()

    return 0


if __name__ == "__main__":
    sys.exit(main())
