# Issue 12: does replanning every model frame (every 5 env steps) lift the pixel students as it lifted the
# state models (0.78 -> 0.88, docs/results.md "Replanning every model frame")? The pixel runs replanned every
# 10 (but for one student on 18 goals, fifth session). A teacher of the 13,000-update recipe (as long as one
# call allows), two 2-step Causal-rCM students of it (seeds 0, 1), each planned on the 50 held-out goals at
# replan_every=10 and 5, goal by goal on the same goals (scripts/plan_goal_pairs.py pairs them).
# Three calls on one warm machine (issue each right after the last: it idles out in ~30 s):
#   STAGE=1  the store (mixed, 500 episodes), the state probe beside the teacher, the teacher alone on the GPU
#   STAGE=2  both students side by side (DISTILL_MIN; validation by PSNR plus the pusher selects the weights),
#            then the four arms (2 students x 2 replan rates) side by side, cut before the call ends
#   STAGE=3  each cut arm resumed where it stopped (first_goal=), cut before the call ends; the parts joined
#            and compared goal by goal
# Carry .whl. Env: CALL_S (seconds this call may take, 570), RATE (teacher updates/s alone, 10.5; since the
# sixtieth session the teacher's rate decays by the clock, and RATE sizes nothing here), DISTILL_MIN
# (1.5), WORK (/root/work). DRY=1 rehearses every stage on the CPU at toy sizes.
source scripts/gpu/setup.sh
STUDY=replan; RATE=${RATE:-10.5}; DISTILL_MIN=${DISTILL_MIN:-1.5}
source scripts/gpu/pusht_study.sh
ARMS="s0_r10 s0_r5 s1_r10 s1_r5"
plan() {  # ARM FIRST_GOAL PART: student s<seed> at replan r<every>, from FIRST_GOAL, cut 15 s before the end
  plan_arm $1_$3 $WORK/student_${1%_r*} first_goal=$2 planner.replan_every=${1#*_r}
}
case "${STAGE:?set STAGE=1, 2 or 3}" in
1) teacher_alone 2>&1 | tee "$OUT/replan1.log"
  cp $WORK/teacher/meta.json "$OUT"/teacher.meta.json ;;
2) {
  for seed in 0 1; do distil_student s$seed $seed & done
  wait
  echo "students at $(( $(date +%s) - T0 )) s"
  for arm in $ARMS; do plan $arm 0 a & done
  wait
  } 2>&1 | tee "$OUT/replan2.log"
  cp $WORK/distill_s*.log "$OUT"/ ;;
3) {
  resume_and_join
  } 2>&1 | tee "$OUT/replan3.log"
  tar czf "$OUT/replan3.tgz" -C $WORK joined $(cd $WORK && ls -d plan_* 2>/dev/null) ;;
*) echo "replan.sh: unknown STAGE=$STAGE (expected 1, 2 or 3)" >&2; exit 2 ;;
esac
ls -la "$OUT"
