# Issue 12: does PushT's symmetry teach the pixel teacher contact? The state models that plan at ~0.75 read
# contact in the block's own frame, so one pushed block teaches them every pose of it; the pixel teacher has
# to learn each pose from its own examples (the 45-episode state model plans at the pixel teachers' level).
# data.augment=dihedral shows each training window turned or mirrored into one of the square's 8 poses
# (the physics is exactly symmetric: tests/test_symmetry.py). Two teachers of the same recipe, with and
# without it, train side by side on the one GPU for the same updates, then both are scored on the held-out
# pushed block (scripts/block_motion_error.py) and planned on the 50 held-out goals.
# Three calls on one warm machine (issue each right after the last: it idles out in ~30 s):
#   STAGE=1  the store (mixed, 500 episodes), the state probe, the two teachers side by side, the pushed block
#   STAGE=2  both teachers trained on from there (init=: a fresh optimizer and schedule, so both decay again)
#            for MORE updates (2,700) in at most MORE_MIN minutes (8.1), the pushed block again
#   STAGE=3  both teachers planned side by side with the benchmark's planner and probe cost, cut before the
#            call ends (a cut arm keeps the goals it finished)
# Carry .whl. Env: CALL_S (seconds this call may take, 570), RATE (updates/s each teacher is expected to make
# side by side, 6), MORE, MORE_MIN, WORK (/root/work). DRY=1 rehearses every stage on the CPU at toy sizes.
source scripts/gpu/setup.sh
STUDY=augment; RATE=${RATE:-6}
source scripts/gpu/pusht_study.sh
PLAN="$PLAN planner.replan_every=10"; EVAL_S=$([ -n "${DRY:-}" ] && echo 40 || echo 100)
teacher() {  # NAME MINUTES STEPS AUGMENT [overrides]
  local name=$1 minutes=$2 steps=$3 augment=$4; shift 4
  crcm train teacher preset=$PRESET data.path=$STORE $RECIPE data.augment=$augment train.out=$WORK/$name \
      train.steps=$steps train.max_minutes=$minutes train.progress=false train.device=$DEV "$@" \
      > $WORK/$name.log 2>&1
  echo "$name: exit $? at $(( $(date +%s) - T0 )) s; $(tail -1 $WORK/$name.log | cut -c1-400)"
}
teachers_pushed_block() {  # PREFIX: both teachers' held-out pushed block
  pushed_block 4 ${1}_plain=$WORK/${1}_plain ${1}_dihedral=$WORK/${1}_dihedral
  cp $WORK/bme_${1}_*.json "$OUT"/
}
case "${STAGE:?set STAGE=1 or 2}" in
1) {
  store_and_probe
  teacher_budget $EVAL_S
  echo "two teachers side by side: $steps updates each, at most $minutes min"
  teacher teacher_plain $minutes $steps none &
  teacher teacher_dihedral $minutes $steps dihedral &
  wait
  tail -1 $WORK/probe.log | cut -c1-300
  teachers_pushed_block teacher
  } 2>&1 | tee "$OUT/augment1.log" ;;
2) {
  for aug in plain dihedral; do
    teacher t2_$aug ${MORE_MIN:-8.1} ${MORE:-2700} $([ $aug = plain ] && echo none || echo dihedral) \
        init=$WORK/teacher_$aug &
  done
  wait
  teachers_pushed_block t2
  } 2>&1 | tee "$OUT/augment2.log"
  cp $WORK/t2_*.log "$OUT"/ ;;
3) {
  plan_arm t2_plain $WORK/t2_plain &
  plan_arm t2_dihedral $WORK/t2_dihedral &
  wait
  $PY scripts/plan_goal_pairs.py $WORK/plan_t2_*/*.goals.jsonl
  } 2>&1 | tee "$OUT/augment3.log"
  tar czf "$OUT/augment3.tgz" -C $WORK $(cd $WORK && ls -d plan_* 2>/dev/null) ;;
*) echo "augment.sh: unknown STAGE=$STAGE (expected 1, 2 or 3)" >&2; exit 2 ;;
esac
ls -la "$OUT"
