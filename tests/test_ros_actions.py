"""Command adapters (crcm_robotics.ros.actions) on rosbags' geometry_msgs / std_msgs / sensor_msgs types.

Guards: each adapter picks the documented fields in the configured order,
names its dimensions, holds its dimension fixed, and rejects bad commands
(missing joints, wrong lengths, NaN) with sentences.
"""

from __future__ import annotations

import array

import numpy as np
import pytest
from _ros_msgs import f32_array, joint_state, roundtrip, twist, twist_stamped

from crcm_robotics.ros.actions import (
    ActionError,
    Float32MultiArrayAdapter,
    JointStateAdapter,
    TwistAdapter,
    action_type_for_msgtype,
    make_action_adapter,
)


def test_twist_default_fields_and_order():
    adapter = make_action_adapter("twist")
    msg = roundtrip(twist(vx=0.5, vy=-0.25, wz=1.5, vz=9.0), "geometry_msgs/msg/Twist")
    out = adapter(msg)
    assert out.dtype == np.float32 and out.tolist() == [0.5, -0.25, 1.5]
    assert adapter.names == ("linear.x", "linear.y", "angular.z") and adapter.dim == 3
    assert adapter.msgtype == "geometry_msgs/msg/Twist"


def test_twist_custom_fields_and_stamped():
    adapter = make_action_adapter("twist_stamped", fields=["angular.z", "linear.x"])
    assert adapter(twist_stamped(vx=2.0, wz=-1.0)).tolist() == [-1.0, 2.0]
    assert adapter.msgtype == "geometry_msgs/msg/TwistStamped"
    with pytest.raises(ActionError, match=r"unknown Twist field\(s\) \['linear.w'\]; choose from linear.x, "):
        TwistAdapter(("linear.w",))
    with pytest.raises(ActionError, match="Twist fields repeat"):
        TwistAdapter(("linear.x", "linear.x"))


def test_float32_multi_array_fixes_its_length():
    adapter = make_action_adapter("float32_multi_array")
    assert adapter(f32_array([1, 2, 3], label="joint_vel")).tolist() == [1, 2, 3]
    assert adapter.dim == 3 and adapter.names == ("joint_vel[0]", "joint_vel[1]", "joint_vel[2]")
    with pytest.raises(ActionError, match="Float32MultiArray command has 2 values, expected 3"):
        adapter(f32_array([1, 2]))
    fixed = Float32MultiArrayAdapter(dim=2)
    assert fixed.names == ("a0", "a1")
    msg = f32_array([0.0, 0.0])
    msg.data = array.array("f", [4.0, 5.0])  # rclpy's container
    assert fixed(msg).tolist() == [4.0, 5.0]
    with pytest.raises(ActionError, match=r"std_msgs/msg/Float32MultiArray command has NaN in a1"):
        fixed(f32_array([1.0, np.nan]))


def test_joint_state_by_name_in_configured_order():
    adapter = make_action_adapter("joint_state", joint_names=["wrist", "shoulder"], joint_field="position")
    msg = roundtrip(
        joint_state(["shoulder", "elbow", "wrist"], position=[0.1, 0.2, 0.3], velocity=[1, 2, 3]),
        "sensor_msgs/msg/JointState",
    )
    np.testing.assert_allclose(adapter(msg), [0.3, 0.1])
    assert adapter.names == ("wrist.position", "shoulder.position")
    reordered = joint_state(["wrist", "shoulder"], position=[7.0, 8.0])
    np.testing.assert_allclose(adapter(reordered), [7.0, 8.0])


def test_joint_state_defaults_and_errors():
    adapter = JointStateAdapter()  # velocity of every joint of the first message
    np.testing.assert_allclose(adapter(joint_state(["a", "b"], velocity=[1.0, -1.0])), [1.0, -1.0])
    assert adapter.joint_names == ("a", "b") and adapter.dim == 2
    with pytest.raises(ActionError, match=r"JointState lacks joint\(s\) \['b'\]; it has \['a', 'c'\]"):
        adapter(joint_state(["a", "c"], velocity=[0, 0]))
    with pytest.raises(ActionError, match="JointState has 2 names but 0 velocity values"):
        adapter(joint_state(["a", "b"], position=[0, 0]))
    with pytest.raises(ActionError, match="joint_field 'torque' must be one of position, velocity, effort"):
        JointStateAdapter(("a",), "torque")


def test_message_type_names():
    assert action_type_for_msgtype("geometry_msgs/msg/Twist") == "twist"
    assert action_type_for_msgtype("sensor_msgs/JointState") == "joint_state"
    with pytest.raises(
        ActionError,
        match="unsupported command message type nav_msgs/msg/Odometry; supported: "
        "geometry_msgs/msg/Twist, geometry_msgs/msg/TwistStamped",
    ):
        action_type_for_msgtype("nav_msgs/msg/Odometry")
    with pytest.raises(ActionError, match="unknown action_type 'ackermann'"):
        make_action_adapter("ackermann")
