# Cold vs warm setup of the `compile` backend (issue 15). `crcm bench` on one checkpoint in fresh processes, each
# with empty local Inductor and Triton caches, so a warm start can only come from what CKPT/compile_cache holds:
#   cold       torch.compile from scratch (it saves Inductor's artefacts into CKPT/compile_cache)
#   warm       a second start that loads those artefacts (Dynamo still traces the step)
#   aoti_warm  a start after `crcm export CKPT format=compiled compiled=aoti` built AOTInductor packages (nothing
#              traced; on torch 2.11 cu130 the package loader crashed with a segfault, see aot_package.py)
# Prints one JSON line with every setup time. Usage (device tool, carry .whl):  bash scripts/gpu/compile_cache.sh
# Env: CKPT  student checkpoint on the machine; default: a `small`-sized 2-step student with random weights
#            (compile time does not depend on the weights' values). Its compile_cache/ folder is emptied first.
#      RUNS  which of "cold warm aoti" to run (default "cold warm")
source scripts/gpu/setup.sh
set -o pipefail
RUNS=${RUNS:-cold warm}
if [ -z "${CKPT:-}" ]; then
  CKPT=outputs/compile_cache_small_random
  rm -rf "$CKPT"
  $PY -c "import sys; from crcm_robotics.runtime.bench import random_student_checkpoint as r; print('saved', r(sys.argv[1]))" "$CKPT"
fi
rm -rf "$CKPT/compile_cache"
fresh() { TORCHINDUCTOR_CACHE_DIR=$(mktemp -d) TRITON_CACHE_DIR=$(mktemp -d) timeout ${COMPILE_LIMIT:-420} "$@"; }
bench() {
  fresh $PY -m crcm_robotics.cli bench "$CKPT" steps=2 backends=[compile] device=cuda teacher_backend=cuda_graph \
    teacher_steps=4 teacher_solver=ddim out="$OUT/compile_$1.json" 2>&1 | tee "$OUT/compile_$1.log" | tail -n 2
}
for run in $RUNS; do
  case $run in
    cold|warm) bench "$run" ;;
    aoti)
      rm -rf "$CKPT/compile_cache"  # the packages alone: no Inductor artefacts to fall back on
      fresh $PY -m crcm_robotics.cli export "$CKPT" format=compiled compiled=aoti device=cuda dtype=auto \
        batch=[1,64] \
        2>&1 | tee "$OUT/export_aoti.log" | tail -n 1 > "$OUT/export_aoti.json"
      bench aoti_warm ;;
  esac
done
ls -la "$CKPT/compile_cache"
$PY - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
def backend(run):
    path = f"{out}/compile_{run}.json"
    return json.load(open(path))["backends"]["compile"] if os.path.exists(path) else {}
runs = {r: backend(r) for r in ("cold", "warm", "aoti_warm")}
export = json.load(open(f"{out}/export_aoti.json")) if os.path.exists(f"{out}/export_aoti.json") else {}
print(json.dumps({"compile_setup_s": {r: b.get("setup_s") for r, b in runs.items()},
                  "aoti_export_s": export.get("seconds_per_batch"), "aoti_package_bytes": export.get("package_bytes"),
                  "cache": {r: b.get("cache") for r, b in runs.items()},
                  "status": {r: b.get("status") for r, b in runs.items()},
                  "stream_ms_per_frame": {r: b.get("stream_ms_per_frame") for r, b in runs.items()},
                  "planner_ms": {r: b.get("planner_ms") for r, b in runs.items()}}))
PY
