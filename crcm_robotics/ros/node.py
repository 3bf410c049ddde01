"""``world_model_node``: the rclpy shell around the plain modules of :mod:`crcm_robotics.ros`.

Subscribes
    <camera_topic>    sensor_msgs/Image, sensor-data QoS (CompressedImage when the topic ends in
                      ``/compressed``, image_transport's naming)
    <action_topic>    Twist | TwistStamped | Float32MultiArray | JointState (action_type), sensor-data QoS
Publishes
    ~/predicted            crcm_interfaces/PredictedFrames at publish_rate_hz (current command held)
    ~/predicted/filmstrip  sensor_msgs/Image, the same frames side by side (publish_filmstrip)
    /diagnostics           diagnostic_msgs/DiagnosticArray every diagnostics_period_s
Serves
    ~/imagine              crcm_interfaces/srv/ImagineRollouts

Parameters: :class:`crcm_robotics.ros.params.NodeParams` (each declared
read-only with its description; ``ros2 param describe /world_model <name>``).

Threading: camera/command callbacks, the prediction timer and ``~/imagine``
each run in their own callback group under a MultiThreadedExecutor (with a fix
for Jazzy's, :class:`QueueOnceExecutor`), and the
prediction stream and the planners each have their own model (the planners'
in a worker process, :func:`crcm_robotics.ros.model.open_planner_model`: the
runtime serializes calls per instance, and a batched rollout in this process
would hold the GIL), so a long imagine never stalls ``~/predicted`` and image
decoding never waits on inference. Frame and command times are the node clock at arrival
(``use_sim_time`` works with ``ros2 bag play --clock``).

This is the only module that imports rclpy or ROS message packages; it has
no logic beyond conversion and delegation. It runs on a live DDS graph in
``tests/test_ros_live.py`` (ROS 2 Jazzy wheels from PyPI, ``scripts/ros2_env.sh``).
"""

from __future__ import annotations

import json
import sys
import threading
import time

import rclpy
from crcm_interfaces.msg import PredictedFrames
from crcm_interfaces.srv import ImagineRollouts
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Twist, TwistStamped
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import (
    ConditionReachedException,
    ExternalShutdownException,
    MultiThreadedExecutor,
    ShutdownException,
    TimeoutException,
)
from rclpy.logging import get_logger
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float32MultiArray, Header

from crcm_robotics.ros import diagnostics as diag_levels
from crcm_robotics.ros.actions import make_action_adapter
from crcm_robotics.ros.context import ContextBuffer
from crcm_robotics.ros.diagnostics import Diagnostics
from crcm_robotics.ros.images import ImageError, compressed_to_rgb, fit_frame, image_to_rgb
from crcm_robotics.ros.imagine import (
    RequestError,
    fail_imagine_response,
    fill_imagine_response,
    parse_imagine_request,
)
from crcm_robotics.ros.messages import MessageKit, fill_predicted_frames, filmstrip, hold_command, make_image
from crcm_robotics.ros.model import open_model, open_planner_model, resolve_spec
from crcm_robotics.ros.params import NodeParams, parameter_table

NODE_NAME = "world_model"
ACTION_MSG_CLASSES = {
    "twist": Twist,
    "twist_stamped": TwistStamped,
    "float32_multi_array": Float32MultiArray,
    "joint_state": JointState,
}
ROS_PARAMETER_TYPES = {
    "bool": Parameter.Type.BOOL,
    "integer": Parameter.Type.INTEGER,
    "double": Parameter.Type.DOUBLE,
    "string": Parameter.Type.STRING,
    "string_array": Parameter.Type.STRING_ARRAY,
}
COMPRESSED_SUFFIX = "/compressed"  # image_transport's name for the CompressedImage variant of a topic
DIAGNOSTIC_LEVELS = {
    diag_levels.OK: DiagnosticStatus.OK,
    diag_levels.WARN: DiagnosticStatus.WARN,
    diag_levels.ERROR: DiagnosticStatus.ERROR,
}


class WorldModelNode(Node):
    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self.params = NodeParams.from_values(self._declare_parameters())
        p = self.params
        self.model = open_model(p)  # the prediction stream's
        self.planner_model = open_planner_model(p)  # ~/imagine's, in a worker process: never blocks the stream
        self.spec = resolve_spec(p, self.model.spec)
        self.adapter = make_action_adapter(
            p.action_type,
            fields=p.action_fields,
            joint_names=p.joint_names,
            joint_field=p.joint_field,
            dim=self.spec.command_dim,  # a frame-skip model's commands are held for its k camera frames
        )
        if self.adapter.dim and self.adapter.dim != self.spec.command_dim:
            skip = (f" ({self.spec.frame_skip} commands of {self.spec.command_dim})"
                    if self.spec.frame_skip > 1 else "")
            raise ValueError(
                f"action_type {p.action_type} gives {self.adapter.dim} values {list(self.adapter.names)} "
                f"but the model takes action_dim {self.spec.action_dim}{skip}"
            )
        self.buffer = ContextBuffer(
            self.spec.context_frames,
            self.spec.action_dim,
            max_staleness_s=p.max_staleness_s,
            gap_s=p.gap_s,
            rate_hz=p.context_rate_hz,
            stale_command=p.stale_command,
        )
        self.diag = Diagnostics()
        self.kit = MessageKit(image=Image)
        self.frame_period_s = 1.0 / p.context_rate_hz if p.context_rate_hz > 0 else 0.0

        # said before any topic or service exists: a client that finds ~/imagine finds this line logged
        h, w, _ = self.spec.image_shape
        skip = self.spec.frame_skip
        held = f" (frame skip {skip}: each command held {skip} camera frames)" if skip > 1 else ""
        if skip > 1 and p.context_rate_hz <= 0:
            self.get_logger().warning(
                f"the model predicts every {skip}th camera frame but context_rate_hz is 0 (every frame): set "
                f"it to the camera's rate / {skip} so that context frames are one model step apart")
        self.get_logger().info(
            f"model {self.model.description}: {h}x{w} images, action_dim {self.spec.action_dim}{held} "
            f"{list(self.adapter.names)}, context {self.spec.context_frames} frames "
            f"at {p.context_rate_hz} Hz; "
            f"camera {p.camera_topic}, commands {p.action_topic} ({p.action_type})"
        )

        inputs = MutuallyExclusiveCallbackGroup()
        stream = MutuallyExclusiveCallbackGroup()
        planner = MutuallyExclusiveCallbackGroup()
        compressed = p.camera_topic.endswith(COMPRESSED_SUFFIX)
        camera_type = CompressedImage if compressed else Image
        self.decode_camera = compressed_to_rgb if compressed else image_to_rgb
        self.create_subscription(
            camera_type, p.camera_topic, self._on_image, qos_profile_sensor_data, callback_group=inputs
        )
        self.create_subscription(
            ACTION_MSG_CLASSES[p.action_type],
            p.action_topic,
            self._on_command,
            qos_profile_sensor_data,
            callback_group=inputs,
        )
        self.predicted_pub = self.create_publisher(PredictedFrames, "~/predicted", 1)
        self.filmstrip_pub = (
            self.create_publisher(Image, "~/predicted/filmstrip", 1) if p.publish_filmstrip else None
        )
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_service(ImagineRollouts, "~/imagine", self._on_imagine, callback_group=planner)
        # the timer only wakes the prediction thread: a callback that returns at once keeps the
        # executor from spinning on a ready timer of a busy group (which took the GIL from the model)
        self._prediction_due = threading.Event()
        # Set while no prediction is due or running: ~/imagine starts its (Python-side) work only then, so a
        # stream of planner calls cannot hold the GIL while a prediction waits for it (2-core CPUs).
        self._stream_idle = threading.Event()
        self._stream_idle.set()
        self._stopping = threading.Event()
        self._predictor = threading.Thread(target=self._prediction_loop, name="prediction", daemon=True)
        if p.publish_rate_hz > 0:
            self.create_timer(1.0 / p.publish_rate_hz, self._prediction_tick, callback_group=stream)
            self._predictor.start()
        if p.diagnostics_period_s > 0:
            self.create_timer(p.diagnostics_period_s, self._on_diagnostics_timer, callback_group=inputs)

    def _declare_parameters(self) -> dict:
        values = {}
        for spec in parameter_table():
            descriptor = ParameterDescriptor(description=spec.description, read_only=True)
            if spec.ros_type == "string_array" and not spec.default:
                # an empty list would be typed BYTE_ARRAY; declare the type and fall back to []
                self.declare_parameter(spec.name, ROS_PARAMETER_TYPES[spec.ros_type], descriptor)
                fallback = Parameter(spec.name, Parameter.Type.STRING_ARRAY, [])
                values[spec.name] = list(self.get_parameter_or(spec.name, fallback).value)
                continue
            if spec.ros_type == "double":
                descriptor.dynamic_typing = (
                    True  # accept `5` for `5.0`; NodeParams.from_values checks the type
                )
            self.declare_parameter(spec.name, spec.default, descriptor)
            values[spec.name] = self.get_parameter(spec.name).value
        return values

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # -- inputs ----------------------------------------------------------------------------------
    def _on_image(self, msg: Image | CompressedImage) -> None:
        now = self._now()
        try:
            frame = fit_frame(
                self.decode_camera(msg, self.params.camera_topic),
                self.spec.image_shape[:2],
                self.params.center_crop,
            )
        except ImageError as exc:
            self.diag.error("frames_undecodable", str(exc))
            self.get_logger().warning(str(exc), throttle_duration_sec=5.0)
            return
        self.diag.frame(now, self.buffer.add_frame(now, frame, meta=msg.header))

    def _on_command(self, msg) -> None:
        now = self._now()
        try:
            self.buffer.add_command(now, self.spec.held(self.adapter(msg)))
        except ValueError as exc:
            self.diag.error("commands_rejected", str(exc))
            self.get_logger().warning(f"{self.params.action_topic}: {exc}", throttle_duration_sec=5.0)
            return
        self.diag.command(now)

    # -- model -----------------------------------------------------------------------------------
    def _prediction_tick(self) -> None:
        self._stream_idle.clear()
        self._prediction_due.set()

    def _prediction_loop(self) -> None:
        while not self._stopping.is_set():
            if self._prediction_due.wait(timeout=0.5):
                self._prediction_due.clear()
                try:
                    self._on_predict_timer()
                except Exception:
                    if not rclpy.ok(context=self.context):  # SIGINT shut ROS down mid-prediction: just stop
                        return
                    raise
                finally:
                    self._stream_idle.set()

    def stop_predicting(self) -> None:
        self._stopping.set()
        if self._predictor.is_alive():
            self._predictor.join(timeout=30)

    def _on_predict_timer(self) -> None:
        now = self._now()
        context = self.buffer.snapshot(now)
        if context is None:
            self.get_logger().info(
                f"not predicting: {self.buffer.why_not_ready(now)}", throttle_duration_sec=10.0
            )
            return
        actions = hold_command(context.command, self.params.horizon)
        try:
            prediction = self.model.imagine(actions[None], (context.frames, context.actions))
        except Exception as exc:  # a failed prediction must not stop the node
            self.diag.error("prediction_errors", f"{type(exc).__name__}: {exc}")
            self.get_logger().error(
                f"prediction failed: {type(exc).__name__}: {exc}", throttle_duration_sec=5.0
            )
            return
        msg = fill_predicted_frames(
            PredictedFrames(),
            self.kit,
            header=context.meta,
            frames_HzHW3=prediction.frames[0],
            actions_HzA=actions,
            frame_period_s=self.frame_period_s,
            latency_ms=prediction.latency_ms,
            encoding=self.params.output_encoding,
        )
        self.predicted_pub.publish(msg)
        if self.filmstrip_pub is not None:
            strip = make_image(
                self.kit, filmstrip(prediction.frames[0]), context.meta, self.params.output_encoding
            )
            self.filmstrip_pub.publish(strip)
        self.diag.prediction(now, prediction.latency_ms)

    def _on_imagine(self, request, response):
        self._stream_idle.wait(timeout=1.0)  # let a due prediction go first (never waits longer than 1 s)
        now = self._now()
        p = self.params
        try:
            query = parse_imagine_request(
                request,
                self.spec,
                max_rollouts=p.max_rollouts,
                max_horizon=p.max_horizon,
                center_crop=p.center_crop,
            )
            if query.context is None:
                context = self.buffer.snapshot(now, require_command=False)
                if context is None:
                    raise RequestError(
                        f"no live context yet: {self.buffer.why_not_ready(now, require_command=False)}"
                    )
                frames_actions, header = (context.frames, context.actions), context.meta
            else:
                frames_actions, header = query.context, query.context_header
            prediction = self.planner_model.imagine(query.actions, frames_actions, query.goal,
                                                    return_frames=query.return_frames)
            fill_imagine_response(
                response,
                self.kit,
                frames=prediction.frames,
                costs=prediction.costs,
                latency_ms=prediction.latency_ms,
                header=header,
                return_frames=query.return_frames,
                encoding=p.output_encoding,
                shape=query.actions.shape[:2],
            )
            self.diag.imagine(True, prediction.latency_ms)
        except ValueError as exc:  # bad request (RequestError) or input rejected by the model
            self.diag.imagine(False)
            fail_imagine_response(response, self.kit, str(exc))
        except Exception as exc:  # the model failed; answer, log, keep serving
            self.diag.imagine(False)
            self.diag.error("imagine_errors", f"{type(exc).__name__}: {exc}")
            self.get_logger().error(f"imagine failed: {type(exc).__name__}: {exc}")
            fail_imagine_response(response, self.kit, f"model error: {type(exc).__name__}: {exc}")
        return response

    # -- diagnostics -----------------------------------------------------------------------------
    def _on_diagnostics_timer(self) -> None:
        now = self._now()
        summary = self.diag.summary(now)
        level, message = self.diag.level(now, self.buffer.why_not_ready(now), max_silence_s=self.params.gap_s)
        status = DiagnosticStatus(
            level=DIAGNOSTIC_LEVELS[level],
            name=f"{self.get_name()}: world model",
            message=message,
            hardware_id=self.model.description,
            values=[KeyValue(key=k, value=v) for k, v in Diagnostics.key_values(summary)],
        )
        array = DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()), status=[status])
        try:
            self.diagnostics_pub.publish(array)
        except Exception:
            if not rclpy.ok(context=self.context):  # SIGINT shut ROS down as the timer fired: nothing to tell
                return
            raise
        self.get_logger().info(f"{message}: {json.dumps(summary)}", throttle_duration_sec=30.0)


class QueueOnceExecutor(MultiThreadedExecutor):
    """rclpy Jazzy's MultiThreadedExecutor without its re-queueing of tasks that wait for a thread.

    Jazzy's ``_wait_for_ready_callbacks`` yields every task that is neither executing nor done
    before it waits, and ``spin_once`` hands each to the thread pool again; so a task still in
    the pool's queue is queued again on every turn, the spin thread stops waiting and loops
    holding the GIL, and the pool threads that should start the task get it even later
    (ros2/rclpy#1452, fixed after Jazzy). Measured here: the spin loop at 5000-8700 turns/s with
    up to 4800 queued copies, the prediction timer's task waiting 0.3-1.4 s for a thread, camera
    callbacks late enough to reset the context, and ``~/predicted`` at 1-3.5 Hz for 5 Hz while a
    client called ``~/imagine`` back to back. Here a task is queued once; when it is yielded again
    before a pool thread took it, the spin thread sleeps 1 ms (releasing the GIL) instead.
    A task that ran and is suspended (a coroutine callback awaiting a future) is not in the
    queue, so it is handed to the pool again as before.

    SIGINT shuts the context down from the signal handler, so it may land while the wait set is being
    built: rcl then raises ``RCLError`` (a ``RuntimeError``: "the given context is not valid"), not
    ``ExternalShutdownException``. With the context down that is a shutdown too (a CI run of
    2026-12-01 saw the node exit 1 on SIGINT this way); with the context up it is raised.
    """

    def __init__(self, num_threads: int, *, context=None):
        super().__init__(num_threads=num_threads, context=context)
        self._queued: set = set()  # tasks handed to the pool that no thread has started yet
        self._queued_lock = threading.Lock()

    def _run(self, task) -> None:
        with self._queued_lock:
            self._queued.discard(task)
        task()

    def _spin_once_impl(self, timeout_sec=None, wait_condition=lambda: False) -> None:
        try:
            task, _, _ = self.wait_for_ready_callbacks(timeout_sec, None, wait_condition)
        except (ExternalShutdownException, ShutdownException, TimeoutException, ConditionReachedException):
            return
        except RuntimeError:
            if self.context.ok():
                raise
            return  # the context was shut down while the wait set was built: spin() ends
        with self._queued_lock:
            queued_already = task in self._queued
            self._queued.add(task)
        if queued_already:
            time.sleep(0.001)
            return
        self._executor.submit(self._run, task)
        self._futures.append(task)
        for future in self._futures[:]:
            if future.done():
                self._futures.remove(future)
                future.result()  # raise any exceptions


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=args)
    node = None
    try:
        node = WorldModelNode()
        executor = QueueOnceExecutor(num_threads=4)  # one per callback group
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (
        ValueError,
        OSError,
        RuntimeError,
    ) as exc:  # bad parameters, missing checkpoint, no server: one line
        get_logger(NODE_NAME).fatal(
            f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc)
        )
        return 1
    finally:
        if node is not None:
            node.stop_predicting()
            if hasattr(node.planner_model, "close"):
                node.planner_model.close()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
