# Issue 14, teacher curves: `small` teachers of several lengths, side by side (one GPU each), with held-out
# validation every VAL_EVERY updates; every call resumes each teacher where the last call stopped (the machine
# stays warm between calls, outputs/ with it): repeat the same call until each teacher's log reaches its STEPS.
# The curves table (markdown) and plots, each run's last JSON line and the selected teachers come back under $OUT.
# Usage (device tool, carry .whl):  TEACHERS="short:3300 long:40000" bash scripts/gpu/teacher_curves.sh
# Env: TEACHERS ("short:3300 long:40000": LABEL:UPDATES, trained into outputs/teacher_LABEL), MINUTES (8.0 per call),
#      VAL_EVERY (250), PRESET (small), EXTRA (more train overrides), EXTRA_<LABEL> (overrides of that teacher
#      only, after EXTRA), EPISODES/GEN/STORE (as distill_study.sh)
# DRY=1 rehearses on the CPU: DRY=1 PRESET=tiny TEACHERS="a:20" EPISODES=12 GEN="size=32 min_steps=40 max_steps=60"
source scripts/gpu/setup.sh
set -o pipefail
TEACHERS=${TEACHERS:-"short:3300 long:40000"}; MINUTES=${MINUTES:-8.0}; VAL_EVERY=${VAL_EVERY:-250}
PRESET=${PRESET:-small}; EPISODES=${EPISODES:-500}; STORE=${STORE:-outputs/pusht64.zarr}
GEN=${GEN:-"size=64 min_steps=180 max_steps=300"}
[ -d $STORE ] || crcm data pusht out=$STORE episodes=$EPISODES seed=0 $GEN overwrite=true 2>&1 | tail -1
ngpu=$( (nvidia-smi -L 2>/dev/null || true) | wc -l); ngpu=$((ngpu > 0 ? ngpu : 1))
gpu=0
for t in $TEACHERS; do
  label=${t%%:*}; steps=${t#*:}; out=outputs/teacher_$label
  resume=""
  if [ -f $out/train_state.pt ]; then resume=train.resume=$out; fi
  own=EXTRA_$label
  ( export CUDA_VISIBLE_DEVICES=$((gpu % ngpu))
    crcm train teacher preset=$PRESET data.path=$STORE train.out=$out train.steps=$steps train.max_minutes=$MINUTES \
        train.validation.every=$VAL_EVERY train.progress=false $resume ${EXTRA:-} ${!own:-} \
        >> outputs/teacher_${label}_run.log 2>&1
  ) &
  gpu=$((gpu + 1))
done
wait
logs=(); for t in $TEACHERS; do logs+=(outputs/teacher_${t%%:*}_log.jsonl); done
$PY -m crcm_robotics.eval.training_curves "${logs[@]}" --plot "$OUT/teacher_curves" | tee "$OUT/teacher_curves.md"
for t in $TEACHERS; do
  label=${t%%:*}
  grep '^{' outputs/teacher_${label}_run.log | tail -n1 | tee "$OUT/teacher_${label}_final.json"
  cp outputs/teacher_${label}_log.jsonl "$OUT/"
  # the selected weights (a complete checkpoint) come back; the last ones stay on the machine to resume from
  [ -d outputs/teacher_$label/selected ] && tar cf - -C outputs/teacher_$label selected \
      | split -b 15M - "$OUT/teacher_${label}_selected.tar.part-"
done
ls -la "$OUT"
