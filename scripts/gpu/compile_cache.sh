# Cold vs warm setup of the `compile` backend (issue 15). The same `crcm bench` twice on one checkpoint, each
# process with empty local Inductor and Triton caches, so the second start can only be warm through the
# artefacts the first saved in CKPT/compile_cache. Prints one JSON line with both setup times.
# Usage (device tool, carry .whl):  bash scripts/gpu/compile_cache.sh
# Env: CKPT  student checkpoint on the machine; default: a `small`-sized 2-step student with random weights
#      (compile time does not depend on the weights' values). Its compile_cache/ folder is emptied first.
source scripts/gpu/setup.sh
set -o pipefail
if [ -z "${CKPT:-}" ]; then
  CKPT=outputs/compile_cache_small_random
  rm -rf "$CKPT"
  $PY -c "import sys; from crcm_robotics.runtime.bench import random_student_checkpoint as r; print('saved', r(sys.argv[1]))" "$CKPT"
fi
rm -rf "$CKPT/compile_cache"
for run in cold warm; do
  TORCHINDUCTOR_CACHE_DIR=$(mktemp -d) TRITON_CACHE_DIR=$(mktemp -d) timeout ${COMPILE_LIMIT:-420} \
    $PY -m crcm_robotics.cli bench "$CKPT" steps=2 backends=[compile] device=cuda teacher_backend=cuda_graph \
      teacher_steps=4 teacher_solver=ddim out="$OUT/compile_$run.json" 2>&1 | tee "$OUT/compile_$run.log" | tail -n 3
done
ls -la "$CKPT/compile_cache"
$PY - "$OUT" <<'PY'
import json, sys
c, w = (json.load(open(f"{sys.argv[1]}/compile_{r}.json"))["backends"]["compile"] for r in ("cold", "warm"))
print(json.dumps({"compile_setup_s": {"cold": c.get("setup_s"), "warm": w.get("setup_s")},
                  "cache": {"cold": c.get("cache"), "warm": w.get("cache")},
                  "stream_ms_per_frame": {"cold": c.get("stream_ms_per_frame"), "warm": w.get("stream_ms_per_frame")},
                  "planner_ms": {"cold": c.get("planner_ms"), "warm": w.get("planner_ms")}}))
PY
