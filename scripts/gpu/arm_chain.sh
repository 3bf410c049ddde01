# The arm chain of issue 16 on one GPU: 128x128 Meta-World push-v3 store -> latent codec + state probe ->
# latent teacher -> 2-step Causal-rCM student -> eval (PSNR, end-effector error read by the probe) -> runtime
# bench -> closed-loop planning (random, oracle, teacher, student). Outputs persist in $WORK on a warm machine:
# issue each call right after the last (the machine idles out in ~30 s).
# Wheels: bash /work/shared/tools/gpu_wheels.sh && bash scripts/gpu/arm_wheels.sh; every call carries
# ["carry/whl_arm"] (Meta-World, MuJoCo, zarr, hydra and the glvnd GL loaders MuJoCo's EGL context needs).
#   STAGE=teacher  the store (EGL, WORKERS processes), then the codec and the probe side by side, then the
#                  teacher for what is left of the call's CALL_S seconds
#   STAGE=student  the student distils while the CPU runs the random and oracle planning arms and the GPU
#                  also evaluates the teacher and runs its planning arms; then the student's eval and bench.
#                  Prints a summary (scripts/arm_summary.py) and returns $OUT/arm_results.tgz. The oracle
#                  (~6 s a replan on 12 processes) and the teacher's arms may be cut by CALL_S: finished goals
#                  are kept in plan_*/ARM.goals.jsonl.
#   STAGE=plan     the student's planning arms (alone on the GPU: sharing it with the distillation left them
#                  no time), the server's load test and `crcm bench` on `compile`. Returns $OUT/arm_plan.tgz.
#   STAGE=extra    a second distillation seed (train.seed=1), its eval and planning arm (the first of
#                  VARIANTS). Returns $OUT/arm_extra.tgz.
# Env: TASK (push-v3; e.g. button-press-v3: the chain runs, but the planning arms judge success by the object
#      ending within 5 cm of the goal's, push-v3's rule, which a button's short travel does not test),
#      PLAN (planner overrides of every arm, "planner.replan_every=10"), VARIANTS (planner variants the model
#      arms run side by side, "NAME=OVERRIDES;NAME=OVERRIDES", each added to PLAN; the oracle takes the first;
#      default "default=", e.g. "effort=;no_effort=planner.effort_weight=0"),
#      WORK (/root/work), EPISODES (300), WORKERS (16), CODEC_MIN (3),
#      CALL_S (seconds the call may take, 560), DISTILL_MIN (3.3), GOALS (20), OW (oracle processes, 12),
#      EVAL_EPISODES (0 = every held-out one).
# DRY=1 rehearses every stage on the CPU at toy sizes (64x64, OSMesa).
source scripts/gpu/setup.sh
set -o pipefail
T0=$(date +%s)
TASK=${TASK:-push-v3}; WORK=${WORK:-/root/work}; GOALS=${GOALS:-20}; OW=${OW:-12}; CALL_S=${CALL_S:-560}; DEV=cuda; BACKEND=cuda_graph
if [ -n "${DRY:-}" ]; then
  WORK=outputs/arm_dry; DEV=cpu; BACKEND=eager; OW=1; GOALS=2; export MUJOCO_GL=osmesa
  DATA="preset=arm_tiny episodes=8 min_steps=40 max_steps=50 workers=1"; PROBE="steps=40 batch_size=16 width=8"
  CODEC="preset=arm_tiny train.steps=30"; TEACH="preset=arm_tiny train.steps=20"; DIST="preset=arm_tiny train.steps=4"
  EVAL="horizon=4 context=2 episodes=2"; PLAN="planner.samples=16 planner.elites=4 planner.iterations=2 min_move=0"
  FID="fidelity_goals=1"; BENCH="backends=[eager] device=cpu"; LOAD_IMAGINE="--rollouts 2 --horizon 2"
else
  export MUJOCO_GL=${MUJOCO_GL:-egl}
  if [ -d carry/whl_arm/glvnd ]; then
    mkdir -p /tmp/glvnd && cp carry/whl_arm/glvnd/* /tmp/glvnd/
    export LD_LIBRARY_PATH=/tmp/glvnd${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  fi
  DATA="preset=arm_small episodes=${EPISODES:-300} min_steps=120 max_steps=180 workers=${WORKERS:-16}"
  PROBE="steps=3000"; CODEC="preset=arm_small train.max_minutes=${CODEC_MIN:-3}"; TEACH="preset=arm_small train.steps=100000"
  DIST="preset=arm_small train.max_minutes=${DISTILL_MIN:-3.3}"  # selection by PSNR: the arm has no pusher
  EVAL="horizon=16 context=2 episodes=${EVAL_EPISODES:-0}"; PLAN=${PLAN:-"planner.replan_every=10"}
  FID="fidelity_goals=10"
  BENCH="backends=[cuda_graph] device=cuda teacher_backend=cuda_graph"; LOAD_IMAGINE="--rollouts 64 --horizon 16"
fi
mkdir -p "$WORK"
STORE=$WORK/arm.zarr; CODEC_DIR=$WORK/codec; TEACHER=$WORK/teacher; STUDENT=$WORK/student
left() { echo $(( CALL_S - $(date +%s) + T0 )); }
plan_arm() {  # NAME ARMS [CKPT [EXTRA]] : one planning process, its JSON line in $WORK/plan_NAME.json
  local name=$1 arms=$2 ckpt=${3:-} extra=${4:-}
  timeout $(( $(left) - 20 )) $PY -m crcm_robotics.cli bench plan $ckpt data.path=$STORE probe=$WORK/probe \
    arms=[$arms] goals=$GOALS device=$DEV backend=$BACKEND oracle_workers=$OW gifs=2 progress=false $PLAN $extra \
    $( [ -n "$ckpt" ] && echo $FID || echo fidelity_goals=0 ) out=$WORK/plan_$name \
    > $WORK/plan_$name.json 2> $WORK/plan_$name.err
}
IFS=';' read -r -a VARIANT_LIST <<< "${VARIANTS:-default=}"
variant_name() { echo "${1%%=*}"; }
variant_extra() { echo "${1#*=}"; }
plan_variants() {  # PREFIX CKPT : the model arm under every variant, side by side; waits for them all
  local prefix=$1 ckpt=$2 v pids=()
  for v in "${VARIANT_LIST[@]}"; do
    plan_arm "${prefix}_$(variant_name "$v")" model "$ckpt" "$(variant_extra "$v")" &
    pids+=($!)
  done
  for v in "${pids[@]}"; do wait "$v" || echo "arm_chain: a $prefix planning arm failed (plan_${prefix}_*.err)"; done
}
results() {  # TARBALL : $WORK's figures, logs and the first GIF of each arm; without GIFs past 15 MiB (a
  # call returns files of at most 16 MiB; at 128x128 a goal's GIF is ~3 MB)
  local skip=(--exclude '*.zarr' --exclude ./teacher --exclude ./student --exclude ./student_s1
              --exclude ./codec --exclude ./probe --exclude '*_samples'
              --exclude 'goal0[1-9].gif' --exclude 'goal[1-9]?.gif')
  tar czf "$OUT/$1" -C $WORK "${skip[@]}" . 2>/dev/null
  if [ "$(stat -c %s "$OUT/$1")" -gt $(( 15 * 1024 * 1024 )) ]; then
    echo "arm_chain: $1 over 15 MiB with GIFs; returned without them (they stay in $WORK)"
    tar czf "$OUT/$1" -C $WORK "${skip[@]}" --exclude '*.gif' . 2>/dev/null
  fi
  ls -la "$OUT"
}
case "${STAGE:?set STAGE=teacher, student, plan or extra}" in
teacher) {
  $PY -c "import numpy as np; from crcm_robotics.data.metaworld_sim import ArmSim; s = ArmSim('$TASK', 64)
s.replay(0, np.zeros((1, 4))); f, _ = s.step(np.zeros(4)); print('render ok', f.shape, f.mean()); s.close()" \
    || { echo "arm_chain: Meta-World does not render here (MUJOCO_GL=$MUJOCO_GL)" >&2; exit 1; }
  crcm data metaworld $DATA task=$TASK out=$STORE size=$( [ -n "${DRY:-}" ] && echo 64 || echo 128 ) overwrite=true \
      progress=false | tail -1
  echo "store done at $(( $(date +%s) - T0 )) s"
  crcm train probe data.path=$STORE out=$WORK/probe device=$DEV progress=false $PROBE > $WORK/probe.log 2>&1 &
  crcm train codec $CODEC data.path=$STORE train.out=$CODEC_DIR train.progress=false | tail -1
  echo "codec done at $(( $(date +%s) - T0 )) s"
  minutes=$($PY -c "print(round(max(0.5, ($(left) - 60) / 60), 2))")  # the teacher's final eval + returns
  crcm train teacher $TEACH data.path=$STORE model.codec=$CODEC_DIR train.out=$TEACHER train.progress=false \
      train.max_minutes=$minutes | tail -1
  wait; tail -1 $WORK/probe.log
  cp -r $WORK/probe $TEACHER/probe
  crcm data info $STORE out=$WORK/arm_sheet.png episodes=6 frames_per_row=10 scale=1 | tail -1
  echo "teacher stage done at $(( $(date +%s) - T0 )) s"
  } 2>&1 | tee $WORK/teacher_stage.log
  tar czf "$OUT/arm_teacher_stage.tgz" -C $WORK teacher_stage.log arm_sheet.png probe.log \
      $(cd $WORK && ls -d codec_log.jsonl teacher_log.jsonl codec/meta.json teacher/meta.json 2>/dev/null) ;;
student) {
  # The GPU is far from full with one 64-token model: the teacher's eval and planning arm share it.
  crcm distill causal_rcm teacher=$TEACHER $DIST train.out=$STUDENT train.progress=false > $WORK/distill.log 2>&1 &
  distill=$!
  plan_arm sim random,oracle "" "$(variant_extra "${VARIANT_LIST[0]}")" &
  crcm eval $TEACHER $EVAL out=$WORK/eval_teacher > $WORK/eval_teacher.json 2> $WORK/eval_teacher.err \
      || tail -2 $WORK/eval_teacher.err
  plan_variants teacher $TEACHER
  wait $distill || { tail -3 $WORK/distill.log; echo "arm_chain: distillation failed" >&2; exit 1; }
  tail -1 $WORK/distill.log
  echo "distilled at $(( $(date +%s) - T0 )) s"
  cp -r $WORK/probe $STUDENT/probe
  crcm eval $STUDENT $EVAL out=$WORK/eval_student > $WORK/eval_student.json 2> $WORK/eval_student.err \
      || tail -2 $WORK/eval_student.err
  timeout $(( $(left) - 40 )) $PY -m crcm_robotics.cli bench $STUDENT steps=2 $BENCH teacher=$TEACHER \
      out=$WORK/bench.json > $WORK/bench.log 2>&1 || echo "bench: exit $?"
  wait || true
  echo "student stage done at $(( $(date +%s) - T0 )) s"
  $PY scripts/arm_summary.py $WORK
  } 2>&1 | tee $WORK/student_stage.log
  results arm_results.tgz ;;
plan) {
  plan_variants student $STUDENT
  echo "planned at $(( $(date +%s) - T0 )) s"
  # the msgpack server with the trained student: a stream over the wire, then planner-sized imagine queries
  # that return every frame (the heaviest reply)
  for load in "--kind step --clients 1 --requests 200" "--kind imagine --clients 2 --requests 8 $LOAD_IMAGINE"; do
    timeout 100 $PY -m crcm_robotics.serve.loadtest --ckpt $STUDENT --device $DEV --backend $BACKEND \
        --steps 2 $load | tail -1 | tee -a $WORK/loadtest.jsonl
  done
  # the trained student on `compile` (the teacher is timed on cuda_graph: compiling it too takes minutes)
  [ -z "${DRY:-}" ] && { timeout $(( $(left) - 30 )) $PY -m crcm_robotics.cli bench $STUDENT steps=2 \
      backends=[compile] device=cuda teacher_backend=cuda_graph out=$WORK/bench_compile.json \
      > $WORK/bench_compile.log 2>&1 || echo "compile bench: exit $?"; tail -1 $WORK/bench_compile.log; }
  echo "plan stage done at $(( $(date +%s) - T0 )) s"
  $PY scripts/arm_summary.py $WORK
  } 2>&1 | tee $WORK/plan_stage.log
  results arm_plan.tgz ;;
extra) {
  crcm distill causal_rcm teacher=$TEACHER $DIST train.seed=1 train.out=$WORK/student_s1 train.progress=false \
      > $WORK/distill_s1.log 2>&1 || { tail -3 $WORK/distill_s1.log; exit 1; }
  tail -1 $WORK/distill_s1.log
  cp -r $WORK/probe $WORK/student_s1/probe
  plan_arm "student_s1_$(variant_name "${VARIANT_LIST[0]}")" model $WORK/student_s1 \
      "$(variant_extra "${VARIANT_LIST[0]}")" &
  crcm eval $WORK/student_s1 $EVAL out=$WORK/eval_student_s1 > $WORK/eval_student_s1.json \
      2> $WORK/eval_student_s1.err || tail -2 $WORK/eval_student_s1.err
  wait || true
  echo "extra stage done at $(( $(date +%s) - T0 )) s"
  $PY scripts/arm_summary.py $WORK
  } 2>&1 | tee $WORK/extra_stage.log
  results arm_extra.tgz ;;
*) echo "arm_chain: unknown STAGE=$STAGE (teacher, student, plan, extra)" >&2; exit 2 ;;
esac
