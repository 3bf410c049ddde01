# Issue 12's bottleneck (the pushed block is not learnt) and issue 14's second teacher seed, in three calls on
# one warm machine (issue each right after the last: it idles out in ~30 s). Carry .whl and the loss's probe
# (LOSS_PROBE, trained on the same store: outputs/gpu_long/probe_cpu).
# Two `small` teachers at frame skip 5 with the wsd rate (the long recipe), seed SEED, side by side on the GPU
# through scripts/gpu/teacher_curves.sh, to STEPS updates each:
#   plain  the recipe as it is: issue 14's per-step curve (validation every 500 updates on VAL_WINDOWS
#          held-out windows, every step 1..16 against copy-last) at a second seed;
#   state  the same plus the state-probe loss (objective.state_weight=WEIGHT): a frozen probe reads pusher and
#          block pose off every predicted clean frame, scored against the logged state.
# Validation reads the block off the predictions with another probe (probe_long, trained here), never the
# loss's, so a teacher that learnt to please its probe without rendering the block shows it.
#   STAGE=1  the mixed 500-episode store and probe_long, then both teachers until CALL_S is nearly spent
#   STAGE=2  both resumed to STEPS; each scored on the 50 held-out episodes at horizon 16, and the block
#            read off its moved-block predictions by both probes (scripts/block_motion_error.py)
#   STAGE=3  closed-loop planning on the store's 50 held-out goals (bench plan, the earlier runs' planner and
#            cost, read by probe_long), `state` first, `plain` beside it, each cut before the call ends
# Everything returns as one tarball per call, and the state teacher's selected weights after stage 2.
# Env: STEPS (5000), SEED (1), WEIGHT (10), CALL_S (570), VAL_WINDOWS (32), STORE (outputs/pusht64.zarr),
#      LOSS_PROBE (outputs/gpu_long/probe_cpu), PLAN_ARMS ("state plain"). DRY=1 rehearses on the CPU.
source scripts/gpu/setup.sh
set -o pipefail
DRY_DIR=outputs/state_loss_dry source scripts/gpu/long_recipe.sh
STEPS=${STEPS:-5000}; SEED=${SEED:-1}; WEIGHT=${WEIGHT:-10}
LOSS_PROBE=${LOSS_PROBE:-outputs/gpu_long/probe_cpu}; BACKEND=cuda_graph
EPISODES=50; GOALS=50; BME="--episodes 20"
if [ -n "${DRY:-}" ]; then
  BACKEND=eager; STEPS=40; EPISODES=2; GOALS=2; BME="--episodes 2 --horizon 3"
  LOSS_PROBE=$PROBE_DIR  # the toy store's only probe
fi
WORK=outputs/state_loss; mkdir -p $WORK
teachers() {  # MINUTES: both teachers for that long (or to STEPS), resuming where the last call stopped
  EXTRA_state="objective.state_weight=$WEIGHT objective.state_probe=$LOSS_PROBE" \
  MINUTES=$1 TEACHERS="plain:$STEPS state:$STEPS" STORE=$STORE PRESET=$PRESET VAL_EVERY=500 OUT=$WORK/curves \
    EXTRA="$RECIPE train.seed=$SEED" bash scripts/gpu/teacher_curves.sh
}
bundle() {  # NAME: this call's logs, curves and results as one tarball under $OUT
  tar czf "$OUT/$1.tgz" $(ls -d $WORK/*.log $WORK/*.json $WORK/eval_* $WORK/plan_* \
      $WORK/curves/teacher_curves* outputs/teacher_{plain,state}_log.jsonl \
      outputs/teacher_{plain,state}_run.log 2>/dev/null)
}
case "${STAGE:?set STAGE=1, 2 or 3}" in
1) {
  [ -f $LOSS_PROBE/meta.json ] || [ -n "${DRY:-}" ] || { echo "state_loss.sh: carry $LOSS_PROBE"; exit 1; }
  store_and_probe
  teachers $(minutes_left)
  } 2>&1 | tee "$WORK/stage1.log"
  bundle state_loss1 ;;
2) {
  for t in plain state; do [ -f outputs/teacher_$t/train_state.pt ] || {
    echo "state_loss.sh 2: no teacher $t to resume (machine lost?)"; exit 1; }; done
  teachers $(minutes_left 170)
  for t in state plain; do
    timeout $(( $(left) - 60 )) $PY -m crcm_robotics.cli eval outputs/teacher_$t horizon=$H context=2 \
        episodes=$EPISODES out=$WORK/eval_$t time_batch1=false device=$DEV 2>&1 | tail -1
    timeout $(( $(left) - 40 )) $PY scripts/block_motion_error.py outputs/teacher_$t $STORE $PROBE_DIR \
        $LOSS_PROBE --steps 4 $BME --device $DEV | tee $WORK/block_$t.json
  done
  } 2>&1 | tee "$WORK/stage2.log"
  bundle state_loss2
  [ -d outputs/teacher_state/selected ] && tar cf - -C outputs/teacher_state selected \
      | split -b 15M - "$OUT/teacher_state_selected.tar.part-" ;;
3) {
  for t in ${PLAN_ARMS:-state plain}; do
    timeout $(( $(left) - 25 )) $PY -m crcm_robotics.cli bench plan outputs/teacher_$t arms=[model] \
        goals=$GOALS probe=$PROBE_DIR device=$DEV backend=$BACKEND gifs=0 progress=false fidelity_goals=0 \
        out=$WORK/plan_$t $PLAN > $WORK/plan_$t.json 2> $WORK/plan_$t.err &
    sleep 5
  done
  wait
  for t in ${PLAN_ARMS:-state plain}; do
    echo "$t: $(cat $WORK/plan_$t/*.goals.jsonl 2>/dev/null | wc -l) goals done;" \
        "$(tail -c 700 $WORK/plan_$t.json)"
    tail -2 $WORK/plan_$t.err
  done
  } 2>&1 | tee "$WORK/stage3.log"
  bundle state_loss3 ;;
esac
ls -la "$OUT"
