"""``colcon build --base-paths src ..`` from ros2_ws/, as the README says: both ROS 2 packages build and install.

Guards the colcon path a robot takes (crcm_interfaces by rosidl, crcm_robotics
through the setup.py shim, whose metadata colcon-python-setup-py reads back
with ``ast.literal_eval``), with colcon, ament_cmake and the rosidl generators
from the ROS 2 Jazzy wheels that ``scripts/ros2_env.sh`` puts into the venv.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _ros_live import require_rclpy

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(600)
def test_colcon_builds_both_packages_from_ros2_ws(tmp_path):
    require_rclpy()
    venv = Path(sys.prefix)
    colcon = venv / "bin" / "colcon"
    if not colcon.exists():
        pytest.fail(f"{colcon} not found; scripts/ros2_env.sh installs colcon-common-extensions", pytrace=False)
    env = {
        **os.environ,
        "AMENT_PREFIX_PATH": str(venv),
        "CMAKE_PREFIX_PATH": str(venv),
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    install = tmp_path / "install"
    cmd = [
        str(colcon), "build", "--base-paths", "src", "..",
        "--build-base", str(tmp_path / "build"), "--install-base", str(install),
        "--event-handlers", "console_cohesion-", "summary-",
        "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF",
    ]
    proc = subprocess.run(cmd, cwd=REPO / "ros2_ws", env=env, capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]

    node = install / "crcm_robotics" / "lib" / "crcm_robotics" / "world_model_node"
    assert node.is_file() and os.access(node, os.X_OK)
    # the installed entry point runs from the install space: a bad parameter stops it with its one line
    site_robotics = next((install / "crcm_robotics" / "lib").glob("python3*/site-packages"))
    run = subprocess.run(
        [str(node), "--ros-args", "-p", "checkpoint:=/nonexistent", "-p", "horizon:=0"],
        env={**env, "PYTHONPATH": str(site_robotics)}, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 1 and "parameter horizon is 0; expected >= 1" in run.stderr + run.stdout, run
    launch = install / "crcm_robotics" / "share" / "crcm_robotics" / "launch"
    assert sorted(p.name for p in launch.iterdir()) == ["params", "world_model.launch.py"]
    assert sorted(p.name for p in (launch / "params").iterdir()) == ["world_model.yaml", "world_model_remote.yaml"]
    share = install / "crcm_interfaces" / "share" / "crcm_interfaces"
    assert (share / "srv" / "ImagineRollouts.srv").is_file() and (share / "msg" / "PredictedFrames.msg").is_file()
    site = next((install / "crcm_interfaces" / "lib").glob("python3*/site-packages/crcm_interfaces"))
    assert (site / "srv" / "_imagine_rollouts.py").is_file()
    packages = sorted(p.name for p in Path(site_robotics).iterdir() if not p.name.endswith(".egg-info"))
    assert packages == ["crcm_robotics"]  # distill/ (training code) is not part of the robot install
    shutil.rmtree(tmp_path / "build", ignore_errors=True)
