#!/usr/bin/env bash
# Build carry/whl_arm (git-ignored, ~58 MB, under the device tool's 64 MiB carry limit): the wheels the arm runs
# need on the GPU image (Python 3.12, x86-64): metaworld, mujoco, gymnasium and their dependencies, zarr/hydra
# from ./.whl (PushT's simulator left out), and in glvnd/ the vendor-neutral GL loaders (libEGL.so.1,
# libOpenGL.so.0, libGLdispatch.so.0) from this Debian machine: the image has NVIDIA's EGL driver and its glvnd
# vendor file but not the loaders, so MuJoCo's EGL context failed ("'NoneType' object has no attribute
# 'eglQueryString'"). The image has scipy (1.18.1), which Meta-World imports. Run from the project root, after
# /work/shared/tools/gpu_wheels.sh made .whl:  bash scripts/gpu/arm_wheels.sh
set -euo pipefail
fetch() {  # DIR SPEC...
  local dir=$1; shift
  for spec in "$@"; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 --platform any -d "$dir" "$spec" 2>/dev/null \
      || echo "arm_wheels: could not fetch $spec" >&2
  done
}
mkdir -p carry/whl_arm
fetch carry/whl_arm metaworld==3.1.1 mujoco==3.3.0 gymnasium==1.4.0 farama-notifications cloudpickle glfw absl-py \
  pyopengl etils imageio
ls .whl/*.whl >/dev/null 2>&1 || { echo "arm_wheels: run /work/shared/tools/gpu_wheels.sh first (.whl)" >&2; exit 1; }
for whl in .whl/*.whl; do  # the store and config side; PushT's simulator (pygame, pymunk, ...) stays out
  case $(basename "$whl") in pygame-*|pymunk-*|shapely-*|gym_pusht-*) ;; *) cp "$whl" carry/whl_arm/ ;; esac
done
mkdir -p carry/whl_arm/glvnd
for lib in libEGL.so.1 libOpenGL.so.0 libGLdispatch.so.0; do
  cp -L "/usr/lib/x86_64-linux-gnu/$lib" carry/whl_arm/glvnd/ \
    || { echo "arm_wheels: /usr/lib/x86_64-linux-gnu/$lib missing (apt install libegl1 libopengl0)" >&2; exit 1; }
done
du -sh carry/whl_arm
