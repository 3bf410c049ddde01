# Issue 12: does a student of half the teacher's blocks plan as well as a full-depth one, at a third of the
# teacher's time? A 2-step student makes 3 network passes per frame to the DDIM-4 teacher's 5 (0.61 of its
# time, docs/results.md); `student_depth=4` keeps 4 of the `small` teacher's 8 blocks (0.29 of its time on the
# CPU). One teacher of the 13,000-update recipe (as long as one call allows beside its students), three 2-step
# Causal-rCM students of it side by side: full depth (seed 0) and 4 blocks (seeds 0, 1); the teacher and two
# students each timed alone, then the three planned on the 50 held-out goals (replanning every 10, the
# benchmark's default), goal by goal on the same goals.
# Run in the seventeenth session (docs/results.md, "A 4-block student on the GPU"): 0.33 of the teacher's
# time, and none of the 50 goals held: the 4-block student's block never moves.
# Two or three calls on one warm machine (issue each right after the last: it idles out in ~30 s):
#   STAGE=1  the store (mixed, 500 episodes), the state probe beside the teacher, the teacher alone on the
#            GPU, then the three students side by side (DISTILL_MIN; validation, PSNR plus the pusher, keeps
#            the weights: by PSNR alone, the seventeenth session's run kept a 12.7-px pusher over a 2-px one)
#   STAGE=2  the teacher, the full-depth and the 4-block student (seed 0) each planned alone on TIME_GOALS
#            goals (ms per replan at the same settings); then the three arms side by side, cut before the call
#            ends, and what they finished compared goal by goal
#   STAGE=3  each cut arm resumed where it stopped (first_goal=), the parts joined and compared goal by goal;
#            with the time left, the held-out pushed block of the full-depth and the 4-block student (seed 0)
# Carry .whl. Env: CALL_S (seconds this call may take, 570), RATE (teacher updates/s alone, 11.5), DISTILL_MIN
# (2), TIME_GOALS (2), WORK (/root/work; with DRY=1 outputs/shallow_dry). DRY=1 rehearses every stage on the
# CPU at toy sizes (tests/test_gpu_scripts.py).
source scripts/gpu/setup.sh
STUDY=shallow; RATE=${RATE:-11.5}
source scripts/gpu/pusht_study.sh
PLAN="$PLAN planner.replan_every=10"; DEPTH=$([ -n "${DRY:-}" ] && echo 1 || echo 4)
ARMS="d0_s0 d${DEPTH}_s0 d${DEPTH}_s1"
distil() {  # ARM (d<depth>_s<seed>; depth 0 = the teacher's): one 2-step Causal-rCM student
  local depth=${1%_s*} seed=${1#*_s}
  crcm distill causal_rcm teacher=$WORK/teacher preset=$PRESET data.path=$STORE train.seed=$seed \
      train.validation.select=psnr_pusher \
      student_depth=${depth#d} train.max_minutes=${DISTILL_MIN:-2} train.out=$WORK/student_$1 \
      train.progress=false $([ -n "${DRY:-}" ] && echo train.steps=4) > $WORK/distill_$1.log 2>&1
  echo "student_$1: exit $? at $(( $(date +%s) - T0 )) s; $(tail -1 $WORK/distill_$1.log | cut -c1-500)"
}
plan() {  # ARM FIRST_GOAL PART: the arm's student from FIRST_GOAL, cut 15 s before the end
  plan_arm $1_$3 $WORK/student_$1 first_goal=$2
}
case "${STAGE:?set STAGE=1, 2 or 3}" in
1) {
  teacher_alone $($PY -c "print(int(${DISTILL_MIN:-2} * 60 + 60))")  # the students' minutes and their start
  for arm in $ARMS; do distil $arm & done
  wait
  } 2>&1 | tee "$OUT/shallow1.log"
  cp $WORK/teacher/meta.json "$OUT"/teacher.meta.json
  cp $WORK/distill_*.log $WORK/student_*_log.jsonl "$OUT"/ ;;
2) {
  for name in teacher student_d0_s0 student_d${DEPTH}_s0; do  # alone on the GPU, one after the other
    plan_arm time_$name $WORK/$name goals=${TIME_GOALS:-2}
    $PY -c "import json; [a] = json.load(open('$WORK/plan_time_$name.json'))['arms'].values(); \
print('$name', {k: a.get(k) for k in ('goals', 'replan_ms_median', 'replan_ms_p90', 'model')})"
  done
  for arm in $ARMS; do plan $arm 0 a & done
  wait
  $PY scripts/plan_goal_pairs.py $WORK/plan_*_s?_a/*.goals.jsonl
  } 2>&1 | tee "$OUT/shallow2.log"
  tar czf "$OUT/shallow2.tgz" -C $WORK $(cd $WORK && ls -d plan_* 2>/dev/null) ;;
3) {
  resume_and_join
  if [ $(left) -gt 90 ]; then  # the held-out pushed block, full depth against 4 blocks, while time allows
    pushed_block 2 d0_s0=$WORK/student_d0_s0 d${DEPTH}_s0=$WORK/student_d${DEPTH}_s0
  fi
  } 2>&1 | tee "$OUT/shallow3.log"
  tar czf "$OUT/shallow3.tgz" -C $WORK joined $(cd $WORK && ls -d plan_* bme_*.json 2>/dev/null) ;;
*) echo "shallow.sh: unknown STAGE=$STAGE (expected 1, 2 or 3)" >&2; exit 2 ;;
esac
ls -la "$OUT"
