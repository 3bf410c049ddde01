"""The repo as ROS 2 packages: package.xml (format 3), interface definitions, setup.py shim, layout rules.

xmllint and the REP 149 XSD (http://download.ros.org/schema/package_format3.xsd)
are not reachable here, so :func:`check_format3` implements the schema's
structure: root ``package`` with ``format="3"``, then name, version,
description, maintainer(s) with email, license(s), url(s), author(s),
dependency elements, group_depend, member_of_group, export, in that order,
with the schema's patterns for name, version and email.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INTERFACES = REPO / "ros2_ws" / "src" / "crcm_interfaces"

DEPENDENCY_TAGS = {
    "build_depend",
    "build_export_depend",
    "buildtool_depend",
    "buildtool_export_depend",
    "exec_depend",
    "depend",
    "doc_depend",
    "test_depend",
    "conflict",
    "replace",
}
# (allowed tags, min occurrences, max occurrences) in schema order
FORMAT3_SEQUENCE = [
    ({"name"}, 1, 1),
    ({"version"}, 1, 1),
    ({"description"}, 1, 1),
    ({"maintainer"}, 1, None),
    ({"license"}, 1, None),
    ({"url"}, 0, None),
    ({"author"}, 0, None),
    (DEPENDENCY_TAGS, 0, None),
    ({"group_depend"}, 0, None),
    ({"member_of_group"}, 0, None),
    ({"export"}, 0, 1),
]
NAME = re.compile(r"[a-z](_?[a-z0-9]+)*")
VERSION = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*)){2}")
EMAIL = re.compile(r"[-a-zA-Z0-9_%+]+(\.[-a-zA-Z0-9_%+]+)*@[-a-zA-Z0-9%]+(\.[-a-zA-Z0-9%]+)*\.[a-zA-Z]{2,}")
DEPENDENCY_ATTRS = {"version_lt", "version_lte", "version_eq", "version_gte", "version_gt", "condition"}


def check_format3(text: str) -> list[str]:
    """Violations of the package format 3 schema (REP 149); empty when valid."""
    root = ET.fromstring(text)
    errors = []
    if root.tag != "package":
        return [f"root element is <{root.tag}>, expected <package>"]
    if root.attrib != {"format": "3"}:
        errors.append(f'<package> attributes are {root.attrib}, expected exactly format="3"')
    children = [c for c in root if isinstance(c.tag, str)]
    i = 0
    for tags, lo, hi in FORMAT3_SEQUENCE:
        n = 0
        while i < len(children) and children[i].tag in tags:
            n, i = n + 1, i + 1
        if n < lo or (hi is not None and n > hi):
            errors.append(
                f"<{'|'.join(sorted(tags))}> occurs {n} times at its place, expected {lo}..{hi or 'n'}"
            )
    if i < len(children):
        errors.append(
            f"<{children[i].tag}> is unexpected at position {i + 1} (wrong order or unknown element)"
        )
    for c in children:
        text_ = (c.text or "").strip()
        if c.tag == "name" and not NAME.fullmatch(text_):
            errors.append(f"name {text_!r} does not match {NAME.pattern}")
        if c.tag == "version" and not VERSION.fullmatch(text_):
            errors.append(f"version {text_!r} is not X.Y.Z")
        if c.tag == "maintainer" and not EMAIL.fullmatch(c.get("email", "")):
            errors.append(f"maintainer {text_!r} needs a valid email attribute, got {c.get('email')!r}")
        if c.tag in ("description", "license", "maintainer") and not text_:
            errors.append(f"<{c.tag}> is empty")
        if c.tag in DEPENDENCY_TAGS and (not text_ or set(c.attrib) - DEPENDENCY_ATTRS):
            errors.append(f"<{c.tag}> {text_!r} is empty or has unknown attributes {sorted(c.attrib)}")
        if c.tag == "url" and c.get("type", "website") not in ("website", "bugtracker", "repository"):
            errors.append(f"url type {c.get('type')!r} is not website, bugtracker or repository")
    return errors


def deps(root: ET.Element, tag: str) -> set[str]:
    return {(e.text or "").strip() for e in root.findall(tag)}


def test_root_package_xml_is_format3_ament_python():
    text = (REPO / "package.xml").read_text()
    assert check_format3(text) == []
    root = ET.fromstring(text)
    assert root.findtext("name") == "crcm_robotics"
    assert root.findtext("export/build_type") == "ament_python"
    assert {"rclpy", "sensor_msgs", "std_msgs", "geometry_msgs", "crcm_interfaces"} <= deps(
        root, "exec_depend"
    )
    assert {"diagnostic_msgs", "rcl_interfaces", "launch", "launch_ros"} <= deps(
        root, "exec_depend"
    )  # node.py, launch/
    assert deps(root, "buildtool_depend") == {"ament_python"}


def test_interfaces_package_xml_is_format3_rosidl():
    text = (INTERFACES / "package.xml").read_text()
    assert check_format3(text) == []
    root = ET.fromstring(text)
    assert root.findtext("name") == "crcm_interfaces"
    assert root.findtext("export/build_type") == "ament_cmake"
    assert deps(root, "buildtool_depend") == {"ament_cmake", "rosidl_default_generators"}
    assert deps(root, "exec_depend") == {"rosidl_default_runtime"}
    assert {"sensor_msgs", "std_msgs", "builtin_interfaces"} <= deps(root, "depend")
    assert deps(root, "member_of_group") == {"rosidl_interface_packages"}


def test_format3_checker_rejects_what_the_schema_rejects():
    good = (REPO / "package.xml").read_text()
    assert check_format3(good.replace('format="3"', 'format="2"'))
    assert check_format3(good.replace(' email="maintainers@crcm-robotics.dev"', ""))
    assert check_format3(good.replace("<version>0.1.0</version>", "<version>0.1</version>"))
    assert check_format3(good.replace("<name>crcm_robotics</name>", "<name>crcm__robotics</name>"))
    lic = "<license>Apache-2.0</license>"
    moved = good.replace(lic, "").replace("<buildtool_depend>", lic + "\n  <buildtool_depend>", 1)
    assert any("unexpected" in e or "occurs 0 times" in e for e in check_format3(moved))
    assert check_format3(good.replace("<export>", "<exports>").replace("</export>", "</exports>"))


def test_interface_definitions_parse_and_are_built():
    from _ros_msgs import PREDICTED, REQUEST, RESPONSE, typestore

    store = typestore()  # parses PredictedFrames.msg and both halves of ImagineRollouts.srv with rosbags
    fields = {  # rosbags lists constants and __msgtype__ as fields too: keep the data fields
        t: {
            f.name
            for f in dataclasses.fields(store.types[t])
            if not f.name.isupper() and f.name != "__msgtype__"
        }
        for t in (PREDICTED, REQUEST, RESPONSE)
    }
    assert fields[PREDICTED] == {
        "header",
        "frame_period",
        "horizon",
        "action_dim",
        "actions",
        "frames",
        "latency_ms",
    }
    assert fields[REQUEST] == {
        "context_source",
        "context_frames",
        "context_actions",
        "num_rollouts",
        "horizon",
        "action_dim",
        "actions",
        "goal",
        "return_frames",
    }
    assert fields[RESPONSE] == {
        "success",
        "message",
        "num_rollouts",
        "horizon",
        "frames",
        "costs",
        "best_rollout",
        "latency_ms",
        "context_stamp",
    }
    cmake = (INTERFACES / "CMakeLists.txt").read_text()
    assert '"msg/PredictedFrames.msg"' in cmake and '"srv/ImagineRollouts.srv"' in cmake
    assert "DEPENDENCIES builtin_interfaces std_msgs sensor_msgs" in cmake
    readme = (INTERFACES / "README.md").read_text()
    for name in fields[REQUEST] | fields[RESPONSE] | fields[PREDICTED]:
        assert f"`{name}`" in readme, f"README.md of crcm_interfaces does not document {name}"


def test_versions_agree():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert ET.parse(REPO / "package.xml").getroot().findtext("version") == pyproject["project"]["version"]
    assert pyproject["project"]["scripts"]["world_model_node"] == "crcm_robotics.ros.node:main"


def test_ament_resource_marker_and_launch_files_exist():
    assert (REPO / "resource" / "crcm_robotics").is_file()
    assert (REPO / "launch" / "world_model.launch.py").is_file()
    assert sorted(p.name for p in (REPO / "launch" / "params").glob("*.yaml")) == [
        "world_model.yaml",
        "world_model_remote.yaml",
    ]
    assert "script_dir=$base/lib/crcm_robotics" in (REPO / "setup.cfg").read_text()
    assert "install_scripts=$base/lib/crcm_robotics" in (REPO / "setup.cfg").read_text()


def test_setup_py_as_colcon_sees_it_installs_only_crcm_robotics():
    """colcon-python-setup-py introspects with run_setup(..., ('--dry-run',), stop_after='config')."""
    code = (
        "import json; from distutils.core import run_setup; "
        "d = run_setup('setup.py', script_args=('--dry-run',), stop_after='config'); "
        "print(json.dumps({'packages': d.packages, 'data_files': d.data_files, "
        "'scripts': d.entry_points['console_scripts'] if isinstance(d.entry_points, dict) else None}))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["packages"] and all(
        p == "crcm_robotics" or p.startswith("crcm_robotics.") for p in info["packages"]
    )
    assert "crcm_robotics.ros" in info["packages"]
    files = {dest: sorted(srcs) for dest, srcs in info["data_files"]}
    assert files["share/ament_index/resource_index/packages"] == ["resource/crcm_robotics"]
    assert files["share/crcm_robotics"] == ["package.xml"]
    assert files["share/crcm_robotics/launch"] == ["launch/world_model.launch.py"]
    assert files["share/crcm_robotics/launch/params"] == [
        "launch/params/world_model.yaml",
        "launch/params/world_model_remote.yaml",
    ]


def test_compileall_covers_the_rclpy_layer_launch_and_examples():
    proc = subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "crcm_robotics/ros", "launch", "examples", "setup.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


ROS_MODULES = {
    "rclpy",
    "rcl_interfaces",
    "builtin_interfaces",
    "std_msgs",
    "sensor_msgs",
    "geometry_msgs",
    "diagnostic_msgs",
    "crcm_interfaces",
    "launch",
    "launch_ros",
}


def test_only_node_py_imports_ros_and_only_at_module_level():
    offenders = []
    for path in sorted((REPO / "crcm_robotics").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        top_level = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            if any(n.split(".")[0] in ROS_MODULES for n in names):
                rel = path.relative_to(REPO).as_posix()
                if rel != "crcm_robotics/ros/node.py" or id(node) not in top_level:
                    offenders.append(f"{rel}:{node.lineno}")
    assert offenders == []


def test_plain_ros_modules_import_without_rclpy(tmp_path):
    code = (
        "import sys, json, importlib\n"
        "for m in ('rclpy', 'sensor_msgs', 'crcm_interfaces'):\n"
        "    sys.modules[m] = None  # any import of them fails\n"
        "import crcm_robotics.ros\n"
        "plain = ('images', 'actions', 'align', 'context', 'imagine', 'messages', 'params', 'model',\n"
        "         'diagnostics')\n"
        "for m in plain:\n"
        "    importlib.import_module('crcm_robotics.ros.' + m)\n"
        "heavy = sorted(m for m in sys.modules\n"
        "               if m.split('.')[0] in ('torch', 'launch', 'rclpy') and sys.modules[m])\n"
        "import crcm_robotics.data.rosbag\n"
        "try:\n"
        "    import crcm_robotics.ros.node\n"
        "    node = 'imported'\n"
        "except ImportError as e:\n"
        "    node = 'ImportError'\n"
        "print(json.dumps({'node': node, 'heavy': heavy}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"node": "ImportError", "heavy": []}


def test_launch_file_declares_its_arguments():
    tree = ast.parse((REPO / "launch" / "world_model.launch.py").read_text())
    funcs = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in funcs
    declared = {
        c.args[0].value
        for c in ast.walk(tree)
        if isinstance(c, ast.Call) and getattr(c.func, "id", "") == "DeclareLaunchArgument"
    }
    assert {"params_file", "checkpoint", "backend", "server_host", "server_port"} <= declared
    from crcm_robotics.ros.params import NodeParams

    overrides = next(n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "OVERRIDES")
    assert {k.value for k in overrides.value.keys} <= set(NodeParams.__dataclass_fields__)


def test_ros_docs_give_the_build_command_and_say_what_was_not_run():
    text = (REPO / "README.md").read_text()
    assert "colcon build --base-paths src .." in text
    assert "ros2 service call /world_model/imagine crcm_interfaces/srv/ImagineRollouts" in text
    assert "bash scripts/ros2_env.sh .venv" in text  # ROS 2 from PyPI wheels, without a ROS install
    assert "**Not run:** `ros2 launch`" in text
