# The arm's runtime figures of issue 16 without a trained chain: latency does not depend on the DiT's weights,
# so a random-weight 2-step student of the `arm_small` network carrying a *trained* codec gives the stream and
# planner-query figures, and the codec's precision is measured on held-out frames. Carry ["carry/whl_arm"].
#   STAGE=prepare  a small 128x128 push-v3 store (EGL) and the codec trained on it for CODEC_MIN minutes
#   STAGE=random   no store: a random-weight codec too (speed does not depend on the codec's weights either),
#                  then `crcm bench` on cuda_graph and compile (the compile backend compiles the decoder too)
#   STAGE=bench    the codec's held-out PSNR and decode time per compute dtype (scripts/codec_precision.py);
#                  the random student; `crcm bench` on cuda_graph with the codec in float32 and in the default
#                  (float16), then on compile (precompiled steps, a cold start) unless COMPILE=0
# Env: WORK (/root/work), EPISODES (60), CODEC_MIN (1.3). Prints one JSON line (arm_speed: ...) at the end.
# DRY=1 rehearses both stages on the CPU at toy sizes (64x64, OSMesa).
source scripts/gpu/setup.sh
set -o pipefail
WORK=${WORK:-/root/work}
if [ -n "${DRY:-}" ]; then
  WORK=outputs/arm_speed_dry; export MUJOCO_GL=osmesa; SIZE=64; COMPILE=0
  DATA="preset=arm_tiny episodes=10 min_steps=30 max_steps=40 workers=1"
  CODEC="preset=arm_tiny train.steps=20"
  PRESET=arm_tiny
  BENCH="device=cpu backends=[eager] planner_rollouts=4 planner_horizon=3 max_batch=4 repeats=1"
  DTYPES="--device cpu --dtypes float32 bfloat16 --batches 1 4 --frames 32"
else
  export MUJOCO_GL=${MUJOCO_GL:-egl}
  if [ -d carry/whl_arm/glvnd ]; then
    mkdir -p /tmp/glvnd && cp carry/whl_arm/glvnd/* /tmp/glvnd/
    export LD_LIBRARY_PATH=/tmp/glvnd${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  fi
  SIZE=128; DATA="preset=arm_small episodes=${EPISODES:-60} min_steps=120 max_steps=180 workers=16"
  CODEC="preset=arm_small train.max_minutes=${CODEC_MIN:-1.3}"; PRESET=arm_small
  BENCH="device=cuda teacher_backend=cuda_graph teacher_steps=4 teacher_solver=ddim"; DTYPES="--device cuda"
fi
mkdir -p "$WORK"
STORE=$WORK/arm_speed.zarr; CODEC_DIR=$WORK/codec_speed; CKPT=$WORK/student_arm_random
summary() {  # one JSON line from the bench reports in $WORK
  $PY - "$WORK" <<'PY'
import json, sys
w = sys.argv[1]
def load(name):
    try:
        return json.load(open(f"{w}/{name}"))
    except (OSError, ValueError):
        return {}
keys = ("stream_ms_per_frame", "stream_fps", "step_ms_per_frame", "planner_ms", "planner_costs_ms", "setup_s",
        "codec_dtype", "status")
runs = {"cuda_graph_codec_float32": load("bench_cg_float32.json"), "cuda_graph": load("bench_cg_auto.json"),
        "compile": load("bench_compile_auto.json")}
figures = {name: {k: b.get(k) for k in keys} for name, r in runs.items()
           for b in r.get("backends", {}).values()}
print("arm_speed:", json.dumps({"codec": load("codec_precision.json").get("dtypes"), "bench": figures}))
PY
}
case "${STAGE:?set STAGE=prepare, random or bench}" in
random)
  rm -rf $WORK/codec_random $CKPT $WORK/bench_*.json $WORK/codec_precision.json
  $PY -c "import sys; from crcm_robotics.runtime.bench import random_student_checkpoint as r
from scripts.codec_precision import random_codec
random_codec('$PRESET', $SIZE, 'cpu').save(sys.argv[2])
print('saved', r(sys.argv[1], preset='$PRESET', codec=sys.argv[2], env_action_dim=4, frame_skip=5))" \
    $CKPT $WORK/codec_random
  crcm bench $CKPT steps=2 backends=[cuda_graph] $BENCH out=$WORK/bench_cg_auto.json 2>&1 | tail -n 1
  if [ "${COMPILE:-1}" = 1 ]; then
    timeout ${COMPILE_LIMIT:-300} $PY -m crcm_robotics.cli bench $CKPT steps=2 backends=[compile] $BENCH \
      out=$WORK/bench_compile_auto.json 2>&1 | tail -n 1 || echo "arm_speed: compile bench did not finish"
  fi
  summary
  tar czf "$OUT/arm_speed_random.tgz" -C $WORK $(cd $WORK && ls bench_*.json) ;;
prepare)
  crcm data metaworld $DATA out=$STORE size=$SIZE overwrite=true progress=false | tail -1
  crcm train codec $CODEC data.path=$STORE train.out=$CODEC_DIR train.progress=false | tail -1 ;;
bench)
  $PY scripts/codec_precision.py --codec $CODEC_DIR --store $STORE $DTYPES | tee $WORK/codec_precision.json
  rm -rf $CKPT
  $PY -c "import sys; from crcm_robotics.runtime.bench import random_student_checkpoint as r
print('saved', r(sys.argv[1], preset='$PRESET', codec=sys.argv[2], env_action_dim=4, frame_skip=5))" \
    $CKPT $CODEC_DIR
  for dt in float32 auto; do
    crcm bench $CKPT steps=2 backends=[cuda_graph] codec_dtype=$dt $BENCH out=$WORK/bench_cg_$dt.json \
      2>&1 | tail -n 1
  done
  if [ "${COMPILE:-1}" = 1 ]; then
    timeout ${COMPILE_LIMIT:-300} $PY -m crcm_robotics.cli bench $CKPT steps=2 backends=[compile] $BENCH \
      out=$WORK/bench_compile_auto.json 2>&1 | tail -n 1 || echo "arm_speed: compile bench did not finish"
  fi
  summary
  tar czf "$OUT/arm_speed.tgz" -C $WORK codec_precision.json $(cd $WORK && ls bench_*.json) \
    codec_speed/meta.json ;;
esac
