# GPU runs for the planning issue (12), in three stages on one warm machine (outputs persist in $WORK).
# Usage (device tool, carry .whl; issue each stage right after the last one, the machine idles out in ~30 s):
#   STAGE=1 bash scripts/gpu/plan.sh   PushT store (scripted + exploration) -> state probe + frame-skip teacher
#   STAGE=2 bash scripts/gpu/plan.sh   two 2-step Causal-rCM students (seeds 0, 1) while the CPU runs the
#                                      random and oracle arms of `crcm bench plan`
#   STAGE=3 bash scripts/gpu/plan.sh   `crcm bench plan` model arms: both students and the teacher
# Env: WORK (/root/work), EPISODES (500), FS (frame skip, 5), TEACHER_MIN (6.3), DISTILL_MIN (4), GOALS (50),
#      BEHAVIOR (mixed), PLAN (extra planner overrides), BACKEND (cuda_graph), ORACLE_GOALS (GOALS)
# DRY=1 rehearses every stage on the CPU at toy sizes.
source scripts/gpu/setup.sh
set -o pipefail
WORK=${WORK:-/root/work}; FS=${FS:-5}; GOALS=${GOALS:-50}; BACKEND=${BACKEND:-cuda_graph}
DEV=cuda
if [ -n "${DRY:-}" ]; then
  WORK=outputs/plan_dry; DEV=cpu; BACKEND=eager
  DATA="episodes=12 min_steps=80 max_steps=100 workers=2"; PROBE="steps=60 batch_size=32 width=8"
  TEACH="preset=tiny train.steps=30"; DIST="preset=tiny train.steps=4"; GOALS=2
  PLAN=${PLAN:-"planner.samples=16 planner.iterations=2 planner.elites=4 budget=10 planner.replan_every=5"}
else
  DATA="episodes=${EPISODES:-500} min_steps=180 max_steps=300"; PROBE="steps=4000"
  TEACH="preset=small train.max_minutes=${TEACHER_MIN:-6.3} train.steps=30000"
  DIST="preset=small train.max_minutes=${DISTILL_MIN:-4}"
  PLAN=${PLAN:-"planner.replan_every=10"}
fi
mkdir -p "$WORK"
STORE=$WORK/pusht64.zarr; TEACHER=$WORK/teacher_fs$FS
case "${STAGE:?set STAGE=1, 2 or 3}" in
1) {
  crcm data pusht out=$STORE size=64 seed=0 behavior=${BEHAVIOR:-mixed} overwrite=true $DATA
  crcm train probe data.path=$STORE out=$WORK/probe device=$DEV progress=false $PROBE > $WORK/probe.log 2>&1 &
  crcm train teacher $TEACH data.path=$STORE data.frame_skip=$FS train.out=$TEACHER train.progress=false
  wait
  cat $WORK/probe.log | tail -1
  cp -r $WORK/probe $TEACHER/probe
  crcm eval $TEACHER horizon=8 context=2 out=$WORK/eval/teacher time_batch1=false
  } 2>&1 | tee "$OUT/plan_stage1.log" ;;
2) {
  for s in 0 1; do
    crcm distill causal_rcm teacher=$TEACHER $DIST train.seed=$s train.out=$WORK/student_s$s \
        train.progress=false > $WORK/distill_s$s.log 2>&1 &
  done
  crcm bench plan $TEACHER arms=[random,oracle] goals=${ORACLE_GOALS:-$GOALS} device=$DEV \
      out=$WORK/bench_plan_sim progress=true $PLAN
  wait
  for s in 0 1; do tail -1 $WORK/distill_s$s.log; cp -r $WORK/probe $WORK/student_s$s/probe; done
  } 2>&1 | tee "$OUT/plan_stage2.log"
  tar czf "$OUT/bench_plan_sim.tgz" -C $WORK bench_plan_sim ;;
3) {
  for s in 0 1; do crcm eval $WORK/student_s$s horizon=8 context=2 out=$WORK/eval/student_s$s time_batch1=false; done
  crcm bench plan $WORK/student_s0 models=[$WORK/student_s1,$TEACHER] arms=[model] goals=$GOALS device=$DEV \
      backend=$BACKEND out=$WORK/bench_plan_models progress=true $PLAN
  } 2>&1 | tee "$OUT/plan_stage3.log"
  tar czf "$OUT/bench_plan_models.tgz" -C $WORK bench_plan_models eval ;;
esac
ls -la "$OUT"
