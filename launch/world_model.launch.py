"""Launch world_model_node with a params file; checkpoint/backend/server overrides from the command line.

    ros2 launch crcm_robotics world_model.launch.py checkpoint:=/models/student
    ros2 launch crcm_robotics world_model.launch.py backend:=remote server_port:=5555 \
        params_file:=$(ros2 pkg prefix --share crcm_robotics)/launch/params/world_model_remote.yaml

Arguments left empty keep the params file's value.
"""

import os

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

HERE = os.path.dirname(os.path.abspath(__file__))
# Overridable from the command line; empty means "as in the params file". Values are typed here because
# launch_ros would otherwise pass every substitution to the node as a string.
OVERRIDES = {
    "checkpoint": str,
    "backend": str,
    "device": str,
    "server_host": str,
    "server_port": int,
    "camera_topic": str,
    "action_topic": str,
}


def _node(context):
    overrides = {}
    for name, kind in OVERRIDES.items():
        value = LaunchConfiguration(name).perform(context)
        if value != "":
            overrides[name] = kind(value)
    return [
        Node(
            package="crcm_robotics",
            executable="world_model_node",
            name=LaunchConfiguration("node_name").perform(context),
            namespace=LaunchConfiguration("namespace").perform(context) or None,
            parameters=[LaunchConfiguration("params_file").perform(context), overrides],
            output="screen",
            emulate_tty=True,
        )
    ]


def generate_launch_description():
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "params_file",
                default_value=os.path.join(HERE, "params", "world_model.yaml"),
                description="ROS parameters file for world_model_node",
            ),
            DeclareLaunchArgument("node_name", default_value="world_model", description="node name"),
            DeclareLaunchArgument("namespace", default_value="", description="node namespace"),
            DeclareLaunchArgument(
                "checkpoint", default_value="", description="checkpoint directory (in-process)"
            ),
            DeclareLaunchArgument(
                "backend",
                default_value="",
                description="eager | cuda_graph | compile | onnxruntime | tensorrt | remote",
            ),
            DeclareLaunchArgument("device", default_value="", description="torch device, e.g. cuda or cpu"),
            DeclareLaunchArgument(
                "server_host", default_value="", description="msgpack server host (remote)"
            ),
            DeclareLaunchArgument(
                "server_port", default_value="", description="msgpack server port (remote)"
            ),
            DeclareLaunchArgument("camera_topic", default_value="", description="sensor_msgs/Image topic"),
            DeclareLaunchArgument("action_topic", default_value="", description="command topic"),
            OpaqueFunction(function=_node),
        ]
    )
