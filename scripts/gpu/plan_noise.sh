# Issue 12: does sharing one noise draw across a round's candidates (common random numbers,
# planner.noise=shared) lift closed-loop planning? Until now every candidate drew its own noise, so two
# candidates' costs differed by their noise as well as their actions. The carried 13,000-update teacher and its
# students plan the 50 held-out goals with the benchmark's planner and probe cost (CEM 256 x 6, delta waypoints
# held 5, replanning every 10 env steps, the cost in the success rule's units). The arms of a stage run side by
# side on the one GPU, each cut before the call ends (a cut arm keeps the goals it finished, one line each).
# Three calls on one warm machine (issue each right after the last: it idles out in ~30 s):
#   STAGE=1  the store the teacher trained on (mixed, 500 episodes), then the teacher with
#            planner.noise=per_candidate and =shared side by side: a paired comparison, goal by goal
#   STAGE=2  two 2-step Causal-rCM students (seeds 0 and 1, the thirteenth session's recipe) distilled side by
#            side, then both planned with planner.noise=$NOISE side by side
#   STAGE=3  a 1-step student distilled, then planned alone with NOISE (its time per replan alone), then the
#            same student with DRAWS noise draws per candidate if time is left
# Carry .whl, carry/teacher_xl and outputs/gpu_long/probe_cpu. Env: CALL_S (seconds this call may take, 570),
# NOISE (shared), DRAWS (2), WORK (/root/work). DRY=1 rehearses every stage on the CPU at toy sizes (a toy
# teacher and probe instead of the carried ones).
source scripts/gpu/setup.sh
set +e -o pipefail
T0=$(date +%s); left() { echo $(( ${CALL_S:-570} - $(date +%s) + T0 )); }
WORK=${WORK:-/root/work}; STORE=outputs/pusht64.zarr; TEACHER=carry/teacher_xl; PROBE=outputs/gpu_long/probe_cpu
NOISE=${NOISE:-shared}; DRAWS=${DRAWS:-2}; DEV=cuda; BACKEND=cuda_graph; MIN2=3.5; MIN1=2.1; PRESET=small
GOALS=50; DATA="episodes=500 min_steps=180 max_steps=300"; DIST="train.steps=150 train.validation.every=25"
PLAN="planner.mode=delta planner.replan_every=10 planner.probe_position_unit=20 planner.probe_angle_unit=0.349"
if [ -n "${DRY:-}" ]; then
  WORK=outputs/plan_noise_dry; STORE=$WORK/pusht64.zarr; TEACHER=$WORK/teacher; PROBE=$WORK/probe
  DEV=cpu; BACKEND=eager; MIN2=0.3; MIN1=0.3; PRESET=tiny; GOALS=2; DIST="train.steps=4 train.validation.every=2"
  DATA="episodes=12 min_steps=80 max_steps=100 workers=2"
  PLAN="$PLAN planner.samples=16 planner.iterations=2 planner.elites=4 budget=10"
fi
mkdir -p $WORK
plan() {  # NAME CKPT NOISE [overrides]: one model arm on the held-out goals, cut 15 s before the call ends
  local name=$1 ckpt=$2 noise=$3; shift 3
  timeout $(( $(left) - 15 )) $PY -m crcm_robotics.cli bench plan $ckpt arms=[model] goals=$GOALS probe=$PROBE \
      device=$DEV backend=$BACKEND gifs=0 progress=false fidelity_goals=0 $PLAN planner.noise=$noise "$@" \
      out=$WORK/plan_$name > $WORK/plan_$name.json 2> $WORK/plan_$name.err
  echo "plan_$name: exit $? at $(( $(date +%s) - T0 )) s"
}
distil() {  # NAME MINUTES [overrides]: a Causal-rCM student of the teacher
  local name=$1 minutes=$2; shift 2
  timeout $(( $(left) - 15 )) $PY -m crcm_robotics.cli distill causal_rcm teacher=$TEACHER preset=$PRESET \
      data.path=$STORE train.out=$WORK/$name train.max_minutes=$minutes train.progress=false $DIST "$@" \
      > $WORK/$name.log 2>&1
  echo "$name: exit $? at $(( $(date +%s) - T0 )) s; $(tail -1 $WORK/$name.log | cut -c1-300)"
}
summary() {  # every arm's finished goals, and goal-by-goal pairs of arms that ran the same goals
  $PY scripts/plan_goal_pairs.py $WORK/plan_*/*.goals.jsonl
}
case "${STAGE:?set STAGE=1, 2 or 3}" in
1) {
  [ -d $STORE ] || crcm data pusht out=$STORE size=64 seed=0 behavior=mixed overwrite=true $DATA | tail -1
  if [ -n "${DRY:-}" ]; then
    [ -d $TEACHER ] || crcm train teacher preset=tiny data.path=$STORE data.frame_skip=5 train.steps=30 \
        train.out=$TEACHER train.progress=false | tail -1
    [ -d $PROBE ] || crcm train probe data.path=$STORE out=$PROBE device=cpu steps=60 batch_size=32 width=8 \
        progress=false | tail -1
  fi
  echo "store at $(( $(date +%s) - T0 )) s"
  plan teacher_per_candidate $TEACHER per_candidate &
  plan teacher_shared $TEACHER shared &
  wait
  summary
  } 2>&1 | tee "$OUT/plan_noise1.log" ;;
2) {
  distil student2_s0 $MIN2 train.seed=0 &
  distil student2_s1 $MIN2 train.seed=1 &
  wait
  plan student2_s0_$NOISE $WORK/student2_s0 $NOISE &
  plan student2_s1_$NOISE $WORK/student2_s1 $NOISE &
  wait
  summary
  } 2>&1 | tee "$OUT/plan_noise2.log" ;;
3) {
  distil student1 $MIN1 student_steps=1 "student_mid_times=[]"
  plan student1_$NOISE $WORK/student1 $NOISE
  (( $(left) > 120 )) && plan student1_${NOISE}_draws$DRAWS $WORK/student1 $NOISE planner.draws=$DRAWS
  summary
  } 2>&1 | tee "$OUT/plan_noise3.log" ;;
*) echo "plan_noise.sh: unknown STAGE=$STAGE (expected 1, 2 or 3)" >&2; exit 2 ;;
esac
tar czf "$OUT/plan_noise$STAGE.tgz" -C $WORK $(cd $WORK && ls -d plan_* *.log 2>/dev/null)
ls -la "$OUT"
