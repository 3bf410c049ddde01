# Issue 14's teacher curve past the 14-minute runs, and issue 12's oracle again, in three calls on one warm
# machine (issue each right after the last: it idles out in ~30 s). Carry .whl (as plan.sh).
# One `small` teacher, frame skip 5, the wsd rate decayed over the last quarter of STEPS, trained by
# scripts/gpu/teacher_curves.sh (label `long`, outputs/teacher_long) with validation every 500 updates on
# VAL_WINDOWS held-out windows: mean PSNR and the least margin over copy-last at any single step 1..16
# (`worst_step_vs_copy_last`), the pusher, and the block read off the predictions by the state probe.
#   STAGE=1  the mixed 500-episode store and the state probe, then the teacher until CALL_S is nearly spent
#   STAGE=2  the teacher resumed for the call, while the CPU cores run the oracle arm (ORACLE_SEEDS, one
#            bench each, OW simulator processes each) on the store's held-out goals, cut before the call ends
#            (a cut arm keeps its finished goals)
#   STAGE=3  the teacher resumed to STEPS (or until 110 s of CALL_S are left), then its selected and last
#            weights scored on the store's held-out episodes at horizon 16 (every step against copy-last);
#            both come back under $OUT
# Env: STEPS (13000), CALL_S (seconds this call may take, 570), VAL_WINDOWS (32), ORACLE_SEEDS ("1 2"),
#      OW (6), STORE (outputs/pusht64.zarr). DRY=1 rehearses every stage on the CPU at toy sizes.
source scripts/gpu/setup.sh
set -o pipefail
DRY_DIR=outputs/teacher_long_dry source scripts/gpu/long_recipe.sh
STEPS=${STEPS:-13000}; OW=${OW:-6}
[ -n "${DRY:-}" ] && STEPS=40 && OW=1
teacher() {  # MINUTES: the teacher for that long (or to STEPS), resuming where the last call stopped
  MINUTES=$1 TEACHERS="long:$STEPS" STORE=$STORE PRESET=$PRESET VAL_EVERY=500 EXTRA="$RECIPE" \
    bash scripts/gpu/teacher_curves.sh
}
case "${STAGE:?set STAGE=1, 2 or 3}" in
1) {
  store_and_probe
  teacher $(minutes_left)
  } 2>&1 | tee "$OUT/teacher_long1.log" ;;
2) {
  [ -f outputs/teacher_long/train_state.pt ] || {
    echo "teacher_long.sh 2: no teacher to resume (machine lost?)"; exit 1; }
  for s in ${ORACLE_SEEDS-1 2}; do
    timeout $(( $(left) - 30 )) $PY -m crcm_robotics.cli bench plan data.path=$STORE probe=$PROBE_DIR \
        arms=[oracle] goals=50 device=$DEV oracle_workers=$OW gifs=0 progress=false planner.seed=$s \
        out=outputs/oracle_long_s$s $PLAN > outputs/oracle_long_s$s.json 2> outputs/oracle_long_s$s.err &
  done
  teacher $(minutes_left)
  wait
  for s in ${ORACLE_SEEDS-1 2}; do
    echo "oracle seed $s: $(cat outputs/oracle_long_s$s/*.goals.jsonl 2>/dev/null | wc -l) goals done; \
$(tail -c 600 outputs/oracle_long_s$s.json)"
    tail -2 outputs/oracle_long_s$s.err
  done
  } 2>&1 | tee "$OUT/teacher_long2.log"
  tar czf "$OUT/oracle_long.tgz" $(ls -d outputs/oracle_long_s* 2>/dev/null) ;;
3) {
  [ -f outputs/teacher_long/train_state.pt ] || {
    echo "teacher_long.sh 3: no teacher to resume (machine lost?)"; exit 1; }
  teacher $(minutes_left 110)
  for w in selected last; do
    timeout $(( $(left) - 20 )) $PY -m crcm_robotics.cli eval outputs/teacher_long weights=$w horizon=$H \
        context=2 episodes=50 out=outputs/eval_long_$w time_batch1=false 2>&1 | tail -1
  done
  } 2>&1 | tee "$OUT/teacher_long3.log"
  tar czf "$OUT/teacher_long_eval.tgz" $(ls -d outputs/eval_long_* 2>/dev/null)
  # the last weights too (fp16; teacher_curves.sh returns the selected ones), for later sessions
  tar cf - -C outputs/teacher_long --exclude=train_state.pt --exclude=selected . \
      | split -b 15M - "$OUT/teacher_long_last.tar.part-" ;;
esac
ls -la "$OUT"
