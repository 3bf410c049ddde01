#!/usr/bin/env bash
# ROS 2 Jazzy wheels + crcm_interfaces built into the venv, for the live-graph tests (tests/test_ros_live.py).
set -euo pipefail
bash "$(dirname "$0")/../ros2_env.sh" "$1"
