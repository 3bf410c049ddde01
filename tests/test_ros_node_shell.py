"""world_model_node's rclpy shell (crcm_robotics.ros.node) driven through a fake rclpy.

rclpy is not installable here. The fake below mirrors the signatures of the
rclpy calls node.py makes (``rclpy/node.py``: ``create_subscription(msg_type,
topic, callback, qos_profile, *, callback_group=None)``, ``create_publisher(
msg_type, topic, qos_profile, *, callback_group=None)``, ``create_service(
srv_type, srv_name, callback, *, qos_profile=..., callback_group=None)``,
``create_timer(timer_period_sec, callback, callback_group=None)``,
``declare_parameter(name, value, descriptor)``) so misuse of keyword-only
arguments fails here too. This checks the glue (parameters -> plain logic ->
messages), not rclpy itself; messages coming in are rosbags objects.
"""

from __future__ import annotations

import enum
import importlib
import sys
import types

import numpy as np
import pytest
from _ros_msgs import REQUEST, T, empty_image, image_msg, twist


class Msg:
    """A rosidl-like message: fields with defaults, unknown keyword arguments rejected."""

    FIELDS: dict = {}

    def __init__(self, **kwargs):
        unknown = set(kwargs) - set(self.FIELDS)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field(s) {sorted(unknown)}")
        for name, default in self.FIELDS.items():
            setattr(self, name, kwargs.get(name, default() if callable(default) else default))


def msg_type(type_name, /, **fields):
    return type(type_name, (Msg,), {"FIELDS": fields})


class ParameterType(enum.Enum):
    (
        NOT_SET,
        BOOL,
        INTEGER,
        DOUBLE,
        STRING,
        BYTE_ARRAY,
        BOOL_ARRAY,
        INTEGER_ARRAY,
        DOUBLE_ARRAY,
        STRING_ARRAY,
    ) = range(10)


class Parameter:
    Type = ParameterType

    def __init__(self, name, type_=None, value=None):
        self.name, self.type_, self.value = name, type_, value


class Clock:
    t = 0.0

    def now(self):
        ns = int(round(Clock.t * 1e9))
        return types.SimpleNamespace(
            nanoseconds=ns, to_msg=lambda: types.SimpleNamespace(sec=ns // 10**9, nanosec=ns % 10**9)
        )


class Logger:
    """rcutils logger surface: one method per severity, filters as keyword arguments."""

    def __init__(self):
        self.lines = []

    def log(self, level, message, **kwargs):
        assert set(kwargs) <= {"throttle_duration_sec", "once", "skip_first"}, kwargs
        self.lines.append((level, message))

    def debug(self, message, **kwargs):
        self.log("debug", message, **kwargs)

    def info(self, message, **kwargs):
        self.log("info", message, **kwargs)

    def warning(self, message, **kwargs):
        self.log("warning", message, **kwargs)

    def error(self, message, **kwargs):
        self.log("error", message, **kwargs)

    def fatal(self, message, **kwargs):
        self.log("fatal", message, **kwargs)


class Publisher:
    def __init__(self, msg_type):
        self.msg_type, self.sent = msg_type, []

    def publish(self, msg):
        assert isinstance(msg, self.msg_type), (type(msg), self.msg_type)
        self.sent.append(msg)


class Node:
    OVERRIDES: dict = {}
    LAST: Node

    def __init__(self, node_name, **kwargs):
        self.name, self.param_values, self.descriptors = node_name, {}, {}
        self.subscriptions, self.publishers, self.services, self.timers = {}, {}, {}, []
        self.logger, self.clock = Logger(), Clock()
        Node.LAST = self

    def declare_parameter(self, name, value=None, descriptor=None, ignore_override=False):
        assert name not in self.param_values, f"{name} declared twice"
        self.descriptors[name] = descriptor
        if isinstance(value, ParameterType):
            assert not descriptor.dynamic_typing
            value = self.OVERRIDES.get(name)
        else:
            assert value is not None and (value != [] or descriptor.dynamic_typing), (
                f"{name}: untypable default"
            )
            value = self.OVERRIDES.get(name, value)
        self.param_values[name] = value
        return Parameter(name, None, value)

    def get_parameter(self, name):
        return Parameter(name, None, self.param_values[name])

    def get_parameter_or(self, name, alternative_value=None):
        value = self.param_values[name]
        return alternative_value if value is None else Parameter(name, None, value)

    def create_subscription(
        self,
        msg_type,
        topic,
        callback,
        qos_profile,
        *,
        callback_group=None,
        event_callbacks=None,
        qos_overriding_options=None,
        raw=False,
    ):
        self.subscriptions[topic] = (msg_type, callback, qos_profile, callback_group)

    def create_publisher(
        self,
        msg_type,
        topic,
        qos_profile,
        *,
        callback_group=None,
        event_callbacks=None,
        qos_overriding_options=None,
    ):
        self.publishers[topic] = Publisher(msg_type)
        return self.publishers[topic]

    def create_service(self, srv_type, srv_name, callback, *, qos_profile=None, callback_group=None):
        self.services[srv_name] = (srv_type, callback, callback_group)

    def create_timer(self, timer_period_sec, callback, callback_group=None, clock=None, autostart=True):
        self.timers.append((timer_period_sec, callback, callback_group))

    def get_clock(self):
        return self.clock

    def get_logger(self):
        return self.logger

    def get_name(self):
        return self.name

    def destroy_node(self):
        self.destroyed = True


SENSOR_QOS = object()
HEADER = msg_type("Header", stamp=lambda: types.SimpleNamespace(sec=0, nanosec=0), frame_id="")
IMAGE = msg_type("Image", header=HEADER, height=0, width=0, encoding="", is_bigendian=0, step=0, data=b"")
PREDICTED = msg_type(
    "PredictedFrames",
    header=HEADER,
    frame_period=0.0,
    horizon=0,
    action_dim=0,
    actions=list,
    frames=list,
    latency_ms=0.0,
)
RESPONSE = msg_type(
    "ImagineRollouts_Response",
    success=False,
    message="",
    num_rollouts=0,
    horizon=0,
    frames=list,
    costs=list,
    best_rollout=0,
    latency_ms=0.0,
    context_stamp=None,
)
STATUS = msg_type("DiagnosticStatus", level=b"\x00", name="", message="", hardware_id="", values=list)
STATUS.OK, STATUS.WARN, STATUS.ERROR = b"\x00", b"\x01", b"\x02"
ARRAY = msg_type("DiagnosticArray", header=HEADER, status=list)
DESCRIPTOR = msg_type(
    "ParameterDescriptor", name="", type=0, description="", read_only=False, dynamic_typing=False
)
EXECUTOR_RUNS = []


class ExternalShutdownException(Exception):
    pass


class ShutdownException(Exception):
    pass


class TimeoutException(Exception):
    pass


class ConditionReachedException(Exception):
    pass


class MultiThreadedExecutor:
    def __init__(self, num_threads=None, *, context=None):
        self.nodes = []

    def add_node(self, node):
        self.nodes.append(node)

    def spin(self):
        EXECUTOR_RUNS.append(self.nodes)
        raise KeyboardInterrupt


def fake_modules(logger: Logger) -> dict[str, types.ModuleType]:
    def module(name, **attrs):
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        return m

    rclpy = module("rclpy", init=lambda args=None: None, try_shutdown=lambda: None)
    return {
        "rclpy": rclpy,
        "rclpy.node": module("rclpy.node", Node=Node),
        "rclpy.callback_groups": module("rclpy.callback_groups", MutuallyExclusiveCallbackGroup=object),
        "rclpy.executors": module(
            "rclpy.executors",
            ExternalShutdownException=ExternalShutdownException,
            ShutdownException=ShutdownException,
            TimeoutException=TimeoutException,
            ConditionReachedException=ConditionReachedException,
            MultiThreadedExecutor=MultiThreadedExecutor,
        ),
        "rclpy.logging": module("rclpy.logging", get_logger=lambda name: logger),
        "rclpy.parameter": module("rclpy.parameter", Parameter=Parameter),
        "rclpy.qos": module("rclpy.qos", qos_profile_sensor_data=SENSOR_QOS),
        "rcl_interfaces": module("rcl_interfaces"),
        "rcl_interfaces.msg": module("rcl_interfaces.msg", ParameterDescriptor=DESCRIPTOR),
        "crcm_interfaces": module("crcm_interfaces"),
        "crcm_interfaces.msg": module("crcm_interfaces.msg", PredictedFrames=PREDICTED),
        "crcm_interfaces.srv": module("crcm_interfaces.srv", ImagineRollouts=msg_type("ImagineRollouts")),
        "diagnostic_msgs": module("diagnostic_msgs"),
        "diagnostic_msgs.msg": module(
            "diagnostic_msgs.msg",
            DiagnosticArray=ARRAY,
            DiagnosticStatus=STATUS,
            KeyValue=msg_type("KeyValue", key="", value=""),
        ),
        "geometry_msgs": module("geometry_msgs"),
        "geometry_msgs.msg": module(
            "geometry_msgs.msg", Twist=msg_type("Twist"), TwistStamped=msg_type("TwistStamped")
        ),
        "sensor_msgs": module("sensor_msgs"),
        "sensor_msgs.msg": module(
            "sensor_msgs.msg", Image=IMAGE, CompressedImage=msg_type("CompressedImage"), JointState=msg_type("JointState")
        ),
        "std_msgs": module("std_msgs"),
        "std_msgs.msg": module(
            "std_msgs.msg", Float32MultiArray=msg_type("Float32MultiArray"), Header=HEADER
        ),
    }


class FakeWorldModel:
    image_shape, action_dim, context_frames = (8, 8, 3), 3, 2
    fail = False

    @classmethod
    def load(cls, ckpt, device="cpu", backend="eager", steps=None):
        model = cls()
        model.loaded = (ckpt, device, backend, steps)
        return model

    def imagine(self, actions, context=None, goal=None, return_frames="all"):
        if self.fail:
            raise RuntimeError("CUDA out of memory")
        n, hz, _ = actions.shape
        frames = np.zeros((n, hz, 8, 8, 3), np.uint8)
        frames[..., 0] = np.clip(np.rint(actions[..., 0, None, None] * 100), 0, 255)  # red = 100 * action[0]
        costs = None if goal is None else np.abs(actions[..., 0] - 0.5).sum(1).astype(np.float32)
        return types.SimpleNamespace(frames=frames if return_frames == "all" else None, costs=costs,
                                     latency_ms=3.5)


@pytest.fixture
def node_module(monkeypatch):
    logger = Logger()
    for name, module in fake_modules(logger).items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setitem(
        sys.modules, "crcm_robotics.runtime", types.SimpleNamespace(WorldModel=FakeWorldModel)
    )
    import crcm_robotics.ros.model as ros_model

    # the planner's worker process would load the real runtime; here it is a second in-process fake
    monkeypatch.setattr(ros_model, "open_planner_model", ros_model.open_model)
    monkeypatch.delitem(sys.modules, "crcm_robotics.ros.node", raising=False)
    Node.OVERRIDES = {
        "checkpoint": "/models/student",
        "device": "cpu",
        "camera_topic": "/cam",
        "horizon": 3,
        "context_rate_hz": 0,
        "publish_rate_hz": 10,
        "max_staleness_s": 0.5,
    }
    module = importlib.import_module("crcm_robotics.ros.node")
    module.fatal_logger = logger
    yield module
    sys.modules.pop("crcm_robotics.ros.node", None)


def frame_msg(i):
    return image_msg(np.full((12, 16, 3), i, np.uint8), "bgr8", pad=2, t=100.0 + i)


def test_parameters_are_declared_read_only_with_descriptions(node_module):
    node = node_module.WorldModelNode()
    from crcm_robotics.ros.params import parameter_table

    assert list(node.descriptors) == [p.name for p in parameter_table()]
    for name, d in node.descriptors.items():
        assert d.read_only and len(d.description) > 15, name
        assert d.dynamic_typing == (name in {p.name for p in parameter_table() if p.ros_type == "double"})
    assert (
        node.param_values["joint_names"] is None and node.params.joint_names == ()
    )  # typed STRING_ARRAY, unset
    assert (
        node.param_values["publish_rate_hz"] == 10 and node.params.publish_rate_hz == 10.0
    )  # int for a double
    assert node.model.description == "/models/student (eager on cpu)"


def test_wiring_follows_the_parameters(node_module):
    node = node_module.WorldModelNode()
    assert node.subscriptions["/cam"][0] is IMAGE and node.subscriptions["/cam"][2] is SENSOR_QOS
    assert node.subscriptions["/cmd_vel"][0].__name__ == "Twist"
    assert set(node.publishers) == {"~/predicted", "~/predicted/filmstrip", "/diagnostics"}
    assert list(node.services) == ["~/imagine"]
    periods = sorted(p for p, _, _ in node.timers)
    assert periods == [0.1, 2.0]  # publish_rate_hz 10, diagnostics_period_s 2
    planner_group = node.services["~/imagine"][2]
    (stream_group,) = [g for p, _, g in node.timers if p == 0.1]
    # the prediction stream, the planners and the inputs never wait on each other's callbacks
    assert len({id(planner_group), id(stream_group), id(node.subscriptions["/cam"][3])}) == 3
    assert node.planner_model is not node.model  # and each has its own model instance


def test_compressed_topic_subscribes_compressed_images(node_module, monkeypatch):
    monkeypatch.setitem(Node.OVERRIDES, "camera_topic", "/cam/compressed")
    node = node_module.WorldModelNode()
    assert node.subscriptions["/cam/compressed"][0].__name__ == "CompressedImage"
    assert node.decode_camera.__name__ == "compressed_to_rgb"


def drive(node, start=0):
    on_image, on_cmd = node.subscriptions["/cam"][1], node.subscriptions["/cmd_vel"][1]
    Clock.t = 10.0
    on_cmd(twist(0.25, 0.0, 0.1))
    for i in range(start, start + 3):
        Clock.t = 10.0 + 0.1 * (i + 1)
        on_image(frame_msg(i))


def test_prediction_is_published_for_the_current_command(node_module):
    node = node_module.WorldModelNode()
    wake = next(cb for p, cb, _ in node.timers if p == 0.1)
    assert wake == node._prediction_tick and node._predictor.is_alive()  # the timer wakes the thread
    node.stop_predicting()
    wake()  # a due prediction holds ~/imagine back until it is done
    assert node._prediction_due.is_set() and not node._stream_idle.is_set()
    node._prediction_due.clear()
    node._stream_idle.set()
    predict = node._on_predict_timer
    Clock.t = 1.0
    predict()
    assert node.publishers["~/predicted"].sent == []
    assert any("not predicting: waiting for context: 0 of 2 frames" in m for _, m in node.logger.lines)
    drive(node)
    predict()
    (msg,) = node.publishers["~/predicted"].sent
    assert (msg.horizon, msg.action_dim, len(msg.frames), msg.latency_ms) == (3, 3, 3, 3.5)
    np.testing.assert_allclose(np.frombuffer(msg.actions, np.float32).reshape(3, 3), [[0.25, 0.0, 0.1]] * 3)
    assert msg.header.stamp.sec == 102  # the newest context frame's header
    first = msg.frames[0]
    assert (first.height, first.width, first.encoding, first.step) == (8, 8, "rgb8", 24)
    assert np.frombuffer(first.data, np.uint8)[0] == 25  # red = 100 * linear.x
    (strip,) = node.publishers["~/predicted/filmstrip"].sent
    assert (strip.height, strip.width) == (8, 3 * 8 + 2)


def imagine_request(**overrides):
    fields = dict(
        context_source=0,
        context_frames=[],
        context_actions=np.zeros(0, np.float32),
        num_rollouts=2,
        horizon=4,
        action_dim=3,
        actions=np.tile([0.5, 0, 0, 0.1, 0, 0], 4).astype(np.float32)[:24],
        goal=empty_image(),
        return_frames=True,
    )
    fields.update(overrides)
    return T(REQUEST)(**fields)


def test_imagine_service_answers_and_never_raises(node_module):
    node = node_module.WorldModelNode()
    serve = node.services["~/imagine"][1]
    resp = serve(imagine_request(), RESPONSE())
    assert not resp.success and resp.message.startswith(
        "no live context yet: waiting for context: 0 of 2 frames"
    )
    drive(node)
    actions = np.concatenate([np.tile([0.5, 0, 0], 4), np.tile([0.1, 0, 0], 4)]).astype(np.float32)
    goal = image_msg(np.zeros((8, 8, 3), np.uint8))
    resp = serve(imagine_request(actions=actions, goal=goal), RESPONSE())
    assert resp.success, resp.message
    assert (resp.num_rollouts, resp.horizon, len(resp.frames), resp.best_rollout) == (2, 4, 8, 0)
    assert np.frombuffer(resp.costs, np.float32).tolist() == pytest.approx([0.0, 1.6])
    assert resp.context_stamp.sec == 102
    resp = serve(imagine_request(action_dim=2), RESPONSE())
    assert not resp.success and resp.message == "action_dim is 2; the model takes action_dim 3"
    node.planner_model._impl.fail = True
    resp = serve(imagine_request(), RESPONSE())
    assert not resp.success and resp.message == "model error: RuntimeError: CUDA out of memory"
    assert node.diag.summary(Clock.t)["imagine_failed"] == 3


def test_bad_camera_frames_and_commands_are_counted_not_fatal(node_module):
    node = node_module.WorldModelNode()
    bad = frame_msg(0)
    bad.encoding = "16UC1"
    node.subscriptions["/cam"][1](bad)
    node.subscriptions["/cmd_vel"][1](twist(float("nan")))
    summary = node.diag.summary(Clock.t)
    assert summary["frames_undecodable"] == 1 and summary["commands_rejected"] == 1
    assert ("warning", "/cmd_vel: geometry_msgs/msg/Twist command has NaN in linear.x") in node.logger.lines


def test_diagnostics_are_published(node_module):
    node = node_module.WorldModelNode()
    drive(node)
    diagnose = next(cb for p, cb, _ in node.timers if p == 2.0)
    diagnose()
    (array,) = node.publishers["/diagnostics"].sent
    (status,) = array.status
    assert (
        status.level == STATUS.OK
        and status.message == "predicting"
        and status.name == "world_model: world model"
    )
    assert {kv.key for kv in status.values} >= {"camera_hz", "latency_ms_p50", "frames_kept"}


def test_main_exits_cleanly_and_reports_bad_parameters(node_module):
    assert node_module.main([]) == 0 and isinstance(EXECUTOR_RUNS[-1][0], node_module.WorldModelNode)
    assert Node.LAST.destroyed
    Node.OVERRIDES = {"checkpoint": "", "backend": "eager"}
    assert node_module.main([]) == 1
    assert node_module.fatal_logger.lines[-1] == (
        "fatal",
        "parameter checkpoint is empty; backend=eager loads a checkpoint in-process (or set "
        "backend:=remote to use a server)",
    )


def test_a_frame_skip_model_holds_each_command_for_its_frames(node_module, monkeypatch):
    """Frame skip 2: the model's action is two Twist commands side by side; the node holds each one."""
    monkeypatch.setattr(FakeWorldModel, "action_dim", 6, raising=False)
    monkeypatch.setattr(FakeWorldModel, "frame_skip", 2, raising=False)
    node = node_module.WorldModelNode()
    assert (node.spec.frame_skip, node.spec.command_dim) == (2, 3)
    assert any("set it to the camera's rate / 2" in m for _, m in node.logger.lines)  # context_rate_hz is 0
    node.stop_predicting()
    drive(node)
    node._on_predict_timer()
    (msg,) = node.publishers["~/predicted"].sent
    assert (msg.horizon, msg.action_dim) == (3, 6)
    np.testing.assert_allclose(np.frombuffer(msg.actions, np.float32).reshape(3, 6),
                               [[0.25, 0.0, 0.1] * 2] * 3)


def test_action_dim_mismatch_stops_the_node(node_module):
    Node.OVERRIDES = {"checkpoint": "/m", "action_fields": ["linear.x", "angular.z"]}
    with pytest.raises(
        ValueError,
        match=r"action_type twist gives 2 values \['linear.x', 'angular.z'\] but the "
        "model takes action_dim 3",
    ):
        node_module.WorldModelNode()
