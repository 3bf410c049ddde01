# Cold vs warm setup of the `compile` backend (issue 15). `crcm bench` on one checkpoint in fresh processes, each
# with empty local Inductor and Triton caches, so a warm start can only come from what CKPT/compile_cache holds:
#   cold       torch.compile from scratch, precompiled steps off (it saves Inductor's artefacts)
#   warm       a second start that loads those artefacts (Dynamo still traces the step)
#   aotc       the folder emptied, then aotc_cold: a start that aot_compiles the step per batch size and saves
#              it (CKPT/compile_cache/<key>_b<B>.aotc), and aotc_warm: a start that loads those files (nothing
#              traced), followed by scripts/profile_compile_start.py on the same files (where the seconds go)
#   aotc_cold / aotc_warm  the two halves of aotc alone (aotc_warm keeps the folder: run it after aotc_cold,
#              e.g. once other work on the machine has finished, so that the warm start is timed on a quiet
#              machine)
#   aoti_warm  a start after `crcm export CKPT format=compiled compiled=aoti` built AOTInductor packages (nothing
#              traced; on torch 2.11 cu130 the package loader crashed with a segfault, see aot_package.py)
# Prints one JSON line with every setup time. Usage (device tool, carry .whl):  bash scripts/gpu/compile_cache.sh
# Env: CKPT  student checkpoint on the machine; default: a `small`-sized 2-step student with random weights
#            (compile time does not depend on the weights' values). Its compile_cache/ folder is emptied first.
#      RUNS  which of "cold warm aotc aoti" to run (default "cold warm")
#      DEVICE (default cuda), BENCH_ARGS (extra `crcm bench` overrides): a CPU rehearsal is
#            DRY=1 DEVICE=cpu CKPT=outputs/quickstart/student BENCH_ARGS="max_batch=2 planner_rollouts=2" \
#            BATCHES="1 2" RUNS=aotc bash scripts/gpu/compile_cache.sh
#            (on CPU a cold start saves nothing by itself, so aotc runs `crcm export … format=compiled` first)
source scripts/gpu/setup.sh
set -o pipefail
RUNS=${RUNS:-cold warm}
DEVICE=${DEVICE:-cuda}
BATCHES=${BATCHES:-1 64}  # the bench's stream and planner batch sizes (export and profile use them)
if [ -z "${CKPT:-}" ]; then
  CKPT=outputs/compile_cache_small_random
  if [ ! -f "$CKPT/meta.json" ]; then
    $PY -c "import sys; from crcm_robotics.runtime.bench import random_student_checkpoint as r
print('saved', r(sys.argv[1]))" "$CKPT"
  fi
fi
[ "$RUNS" = aotc_warm ] || rm -rf "$CKPT/compile_cache"
fresh() { TORCHINDUCTOR_CACHE_DIR=$(mktemp -d) TRITON_CACHE_DIR=$(mktemp -d) timeout ${COMPILE_LIMIT:-420} "$@"; }
bench() {  # bench RUN_NAME PRECOMPILED
  fresh $PY -m crcm_robotics.cli bench "$CKPT" steps=2 backends=[compile] device=$DEVICE teacher_backend=cuda_graph \
    teacher_steps=4 teacher_solver=ddim compile_precompiled=$2 ${BENCH_ARGS:-} out="$OUT/compile_$1.json" 2>&1 \
    | tee "$OUT/compile_$1.log" | tail -n 2
}
for run in $RUNS; do
  case $run in
    cold|warm) bench "$run" false ;;
    aotc|aotc_cold)
      rm -rf "$CKPT/compile_cache"  # the precompiled steps alone: no Inductor artefacts to fall back on
      bench aotc_cold true
      if [ "$DEVICE" = cpu ]; then
        fresh $PY -m crcm_robotics.cli export "$CKPT" format=compiled device=cpu dtype=auto \
          "batch=[${BATCHES// /,}]" 2>&1 | tail -n 1
      fi ;;&
    aotc|aotc_warm)
      bench aotc_warm true
      fresh $PY scripts/profile_compile_start.py --ckpt "$CKPT" --device $DEVICE --batches $BATCHES \
        > "$OUT/profile_aotc.json" || true ;;
    aoti)
      rm -rf "$CKPT/compile_cache"  # the packages alone: no Inductor artefacts to fall back on
      fresh $PY -m crcm_robotics.cli export "$CKPT" format=compiled compiled=aoti device=$DEVICE dtype=auto \
        batch=[1,64] \
        2>&1 | tee "$OUT/export_aoti.log" | tail -n 1 > "$OUT/export_aoti.json"
      bench aoti_warm true ;;
  esac
done
ls -la "$CKPT/compile_cache"
$PY - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
def load(path):
    try:
        return json.load(open(path))
    except (OSError, ValueError):
        return {}
runs = {r: load(f"{out}/compile_{r}.json").get("backends", {}).get("compile", {})
        for r in ("cold", "warm", "aotc_cold", "aotc_warm", "aoti_warm")}
runs = {r: b for r, b in runs.items() if b}
export, profile = load(f"{out}/export_aoti.json"), load(f"{out}/profile_aotc.json")
print(json.dumps({"compile_setup_s": {r: b.get("setup_s") for r, b in runs.items()},
                  "stream_ms_per_frame": {r: b.get("stream_ms_per_frame") for r, b in runs.items()},
                  "planner_ms": {r: b.get("planner_ms") for r, b in runs.items()},
                  "aotc_warm_profile": {k: profile.get(k) for k in ("total_s", "phases_s", "dynamo_frames")},
                  "aoti_export_s": export.get("seconds_per_batch"), "aoti_package_bytes": export.get("package_bytes"),
                  "cache": {r: b.get("cache") for r, b in runs.items()},
                  "status": {r: b.get("status") for r, b in runs.items()}}))
PY
