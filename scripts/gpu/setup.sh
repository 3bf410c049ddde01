# Sourced at the start of every GPU (device tool) command: install the carried wheels, set paths.
# The device image has torch/numpy/opencv/msgpack but not zarr, hydra or the PushT simulator.
# DRY=1 runs the same script here on the CPU with the project's .venv, or PY (a rehearsal before spending GPU
# time; tests/test_gpu_scripts.py runs one in CI).
set -euo pipefail
# The call's start, before the wheels go in: the studies' CALL_S counts from here (pusht_study.sh's left), as the
# device's 600 s do. Counted from after the install, the forty-first session's first call (a cold machine,
# CALL_S=585) ran past 600 s before its teacher was saved and lost about 3,000 updates.
CALL_T0=${CALL_T0:-$(date +%s)}
if [ -n "${DRY:-}" ]; then
  PY=${PY:-.venv/bin/python}
else
  PY=python3
  # Every carried wheel folder goes into /tmp/site (which outlives the call on a warm machine).
  # A folder installed once stays installed (a marker names its wheels), so scripts of one call may source
  # this side by side without two pip processes writing /tmp/site at once.
  for dir in .whl carry/whl_arm; do
    if ls $dir/*.whl >/dev/null 2>&1; then
      marker=/tmp/site/.carried_$(echo "$dir" | tr / _)
      if [ "$(cat $marker 2>/dev/null)" != "$(ls $dir/*.whl)" ]; then
        $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
          --target /tmp/site $dir/*.whl
        ls $dir/*.whl > $marker
      fi
    fi
  done
  export PYTHONPATH=/tmp/site:$PWD
  $PY -c "import zarr, hydra" 2>/dev/null || { echo "setup: zarr/hydra missing: carry .whl (or carry/whl_arm)" >&2; exit 1; }
fi
# The device image sets PYTHONDONTWRITEBYTECODE and its torch has no .pyc files, so every process compiled
# ~2 400 modules from source (~5 s of each start, measured by scripts/profile_compile_start.py). A pip-installed
# torch has them; let this machine write them too.
unset PYTHONDONTWRITEBYTECODE
export TQDM_MININTERVAL=20 SDL_VIDEODRIVER=dummy PYTHONUNBUFFERED=1 PYTHONWARNINGS="ignore::UserWarning:pygame.pkgdata"
OUT=${OUT:-outputs/device_out}
mkdir -p "$OUT" outputs
crcm() { $PY -m crcm_robotics.cli "$@"; }
cpu_model() {  # the machine's CPU model, as /proc/cpuinfo names it
  sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1
}
if [ -z "${DRY:-}" ]; then  # what the call runs on (a rehearsal skips it: 3 s of torch import at each start)
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
  echo "cpu: $(cpu_model)"  # the simulators' stores can differ by machine (pusht_study.sh's make_store)
fi
