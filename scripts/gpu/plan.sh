# GPU runs for the planning issue (12), in three stages on one warm machine (outputs persist in $WORK).
# Usage (device tool, carry .whl; issue each stage right after the last one, the machine idles out in ~30 s):
#   STAGE=1 bash scripts/gpu/plan.sh   PushT store (scripted + exploration) -> state probe + frame-skip teacher
#   STAGE=2 bash scripts/gpu/plan.sh   two 2-step Causal-rCM students (seeds 0, 1) while the CPU runs the
#                                      random and oracle arms of `crcm bench plan`
#   STAGE=3 bash scripts/gpu/plan.sh   `crcm bench plan` model arms: both students and the teacher
# Env: WORK (/root/work), EPISODES (500), FS (frame skip, 5), TEACHER_MIN (6.3), DISTILL_MIN (4), GOALS (50),
#      BEHAVIOR (mixed), PLAN (extra planner overrides), BACKEND (cuda_graph), ORACLE_GOALS (GOALS),
#      SWEEP (stage 1's oracle_state planner settings, '+'-joined overrides each), SWEEP_GOALS (20), SW (workers)
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
  SWEEP=${SWEEP:-"planner.samples=16+planner.iterations=2+planner.elites=4+budget=10"}; SWEEP_GOALS=2; SW=1
else
  DATA="episodes=${EPISODES:-500} min_steps=180 max_steps=300"; PROBE="steps=4000"
  TEACH="preset=small train.max_minutes=${TEACHER_MIN:-6.3} train.steps=30000"
  DIST="preset=small train.max_minutes=${DISTILL_MIN:-4}"
  PLAN=${PLAN:-"planner.replan_every=10"}
  # planner settings for the oracle_state sweep (each a '+'-joined override list), 4 simulator workers each
  SWEEP=${SWEEP:-"planner.replan_every=10 planner.replan_every=5 planner.kind=mppi+planner.replan_every=10 planner.samples=128+planner.iterations=4+planner.replan_every=10"}
  SWEEP_GOALS=${SWEEP_GOALS:-20}; SW=${SW:-3}
fi
mkdir -p "$WORK"
STORE=$WORK/pusht64.zarr; TEACHER=$WORK/teacher_fs$FS
case "${STAGE:?set STAGE=1, 2 or 3}" in
1) {
  crcm data pusht out=$STORE size=64 seed=0 behavior=${BEHAVIOR:-mixed} overwrite=true $DATA
  crcm train probe data.path=$STORE out=$WORK/probe device=$DEV progress=false $PROBE > $WORK/probe.log 2>&1 &
  # While the GPU trains the teacher, the CPU cores measure the planner's own ceiling (the simulator with the
  # true state distance as cost) at a few settings, then the simulator with the probe cost.
  ( i=0; for arm in $SWEEP; do
      i=$((i + 1)); echo "$arm" > $WORK/sweep_$i.args
      crcm bench plan data.path=$STORE arms=[oracle_state] goals=$SWEEP_GOALS device=cpu oracle_workers=$SW \
          out=$WORK/sweep/s$i progress=false gifs=0 $(echo $arm | tr '+' ' ') > $WORK/sweep_$i.json 2>&1 &
    done; wait ) &
  crcm train teacher $TEACH data.path=$STORE data.frame_skip=$FS train.out=$TEACHER train.progress=false
  wait
  tail -1 $WORK/probe.log
  for f in $WORK/sweep_*.json; do echo "sweep $(cat ${f%.json}.args): $(tail -1 $f)"; done
  cp -r $WORK/probe $TEACHER/probe
  crcm eval $TEACHER horizon=8 context=2 out=$WORK/eval/teacher time_batch1=false
  crcm bench plan $TEACHER arms=[model] goals=2 device=$DEV backend=$BACKEND out=$WORK/speed_teacher gifs=0 $PLAN
  } 2>&1 | tee "$OUT/plan_stage1.log"
  tar czf "$OUT/stage1.tgz" -C $WORK sweep eval speed_teacher probe/meta.json ;;
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
