#!/usr/bin/env bash
# Build carry/whl_arm with the wheels `crcm data metaworld` needs on the GPU image (Python 3.12, x86-64):
# metaworld, mujoco and their dependencies (~45 MB; scipy goes with /work/shared/tools/gpu_wheels.sh into
# .whl, so each carried folder stays under the device tool's 64 MiB). carry/ is git-ignored.
# Run from the project root: bash scripts/gpu/arm_wheels.sh
set -euo pipefail
mkdir -p carry/whl_arm
for spec in metaworld==3.1.1 mujoco==3.3.0 gymnasium==1.4.0 farama-notifications cloudpickle glfw absl-py \
            pyopengl etils imageio; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d carry/whl_arm "$spec" 2>/dev/null || echo "arm_wheels: could not fetch $spec" >&2
done
du -sh carry/whl_arm
