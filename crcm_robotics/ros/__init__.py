"""ROS 2 integration: plain-Python conversion/alignment logic plus one thin rclpy node.

Every module here except :mod:`crcm_robotics.ros.node` is plain Python (numpy,
Pillow) and works on any object with the ROS message field names, so the
same code handles rclpy messages on a robot, ``rosbags`` messages in the
rosbag2 importer and in tests:

    images       sensor_msgs/Image + CompressedImage <-> uint8 RGB arrays; resize to the model size
    actions      Twist / TwistStamped / Float32MultiArray / JointState -> float32 action vectors
    align        zero-order-hold command alignment, staleness, rate gate, episode planning
    context      the node's rolling context: latest K frames with the command in force at each
    imagine      crcm_interfaces/srv/ImagineRollouts request validation and response building
    messages     building Image / PredictedFrames messages (MessageKit), filmstrip view
    params       the node's parameters: one typed table with descriptions, validated
    model        opening the world model in-process or as a msgpack-server client
    diagnostics  rates and latencies the node reports
    node         the rclpy node (the only module importing rclpy or ROS message packages)

``import crcm_robotics.ros`` never imports rclpy.
"""
