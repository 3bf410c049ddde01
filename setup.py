"""setuptools shim for ROS 2 (ament_python): colcon builds this repo as the ROS package ``crcm_robotics``.

Two ways in, one metadata:

- **pip / python -m build** (PEP 517) read pyproject.toml, which wins over
  the arguments below (it also packages ``distill/``); this file only adds
  the ament ``data_files``.
- **colcon** runs ``python setup.py …`` directly (colcon-core
  ``task/python/build.py``): ``egg_info … build … install …`` in the source
  tree for ``colcon build``, ``develop …`` in colcon's build space for
  ``--symlink-install`` (only setup.py, setup.cfg, the packages and the data
  files are linked there, not pyproject.toml, so the arguments below must
  stand alone), and ``--dry-run`` to introspect (colcon-python-setup-py).
  Then only ``crcm_robotics*`` is installed (``distill/`` is training code,
  not part of the robot install); the ament index marker, package.xml, the
  launch files and their params go under ``share/crcm_robotics`` and
  ``world_model_node`` under ``lib/crcm_robotics`` (setup.cfg).

Build from ros2_ws/: ``colcon build --base-paths src ..`` (README, ROS 2 section).
"""

import sys
import xml.etree.ElementTree as ET
from glob import glob

from setuptools import find_packages, setup
from setuptools.dist import Distribution

PACKAGE = "crcm_robotics"
COLCON = bool({"install", "develop", "--dry-run"} & set(sys.argv[1:]))  # PEP 517 backends never pass these


def only_this_package(packages):
    return [p for p in packages or [] if p == PACKAGE or p.startswith(PACKAGE + ".")]


class RosDistribution(Distribution):
    """Applies pyproject.toml as usual, then keeps only ``crcm_robotics*`` (when colcon runs setup.py)."""

    def parse_config_files(self, *args, **kwargs):
        super().parse_config_files(*args, **kwargs)
        self.packages = only_this_package(self.packages)
        # pyproject's requires-python arrives as a SpecifierSet, whose repr colcon-python-setup-py
        # cannot literal_eval ("SyntaxError: invalid syntax" at `colcon build`): keep it a string
        for holder in (self, self.metadata):
            if getattr(holder, "python_requires", None) is not None:
                holder.python_requires = str(holder.python_requires)


setup(
    name=PACKAGE,
    version=ET.parse("package.xml").getroot().findtext("version"),
    packages=only_this_package(find_packages()),
    package_data={PACKAGE: ["conf/**/*.yaml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/launch/params", glob("launch/params/*.yaml")),
    ],
    entry_points={
        "console_scripts": ["crcm = crcm_robotics.cli:main", "world_model_node = crcm_robotics.ros.node:main"]
    },
    zip_safe=False,
    **({"distclass": RosDistribution} if COLCON else {}),
)
