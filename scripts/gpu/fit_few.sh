# Issue 12: can the pixel teacher's network fit a pushed block at all? The 13,000-update teacher predicts the
# pushed block as badly on episodes it trained on as on held-out ones (scripts/block_motion_error.py --split
# train|val), so it does not memorise them and more data alone would not help. This call fine-tunes it
# (`crcm train teacher init=`) on the first FEW episodes of its own store (the same generator and seed, so the
# same episodes) until the call's time is nearly spent, then scores the pushed block on the episodes it fitted
# and on the two it held out, and the teacher it started from on the same windows. If the fine-tune drives the
# error on its episodes far down, the network can render a pushed block and the limit is how it generalises
# contact; if not, the limit is the network (its patches, its size) or the objective.
# Carry .whl, carry/teacher_xl and outputs/gpu_long/probe_cpu. Env: CALL_S (550), FEW (20), WORK (/root/work).
# DRY=1 rehearses it on the CPU at toy sizes (a toy teacher instead of the carried one).
source scripts/gpu/setup.sh
set +e -o pipefail
T0=$(date +%s); left() { echo $(( ${CALL_S:-550} - $(date +%s) + T0 )); }
WORK=${WORK:-/root/work}; FEW=${FEW:-20}; TEACHER=carry/teacher_xl; PROBE=outputs/gpu_long/probe_cpu; DEV=cuda
PRESET=small; GEN="size=64 min_steps=180 max_steps=300"; EVAL_S=120; EPISODES=20
if [ -n "${DRY:-}" ]; then
  WORK=outputs/fit_few_dry; FEW=6; TEACHER=$WORK/teacher; PROBE=$WORK/probe; DEV=cpu; PRESET=tiny
  GEN="size=64 min_steps=80 max_steps=100"; EVAL_S=60; EPISODES=2
fi
RECIPE="data.frame_skip=5 optim.lr_schedule=wsd optim.decay_fraction=0.25"  # the carried teacher's recipe
mkdir -p $WORK
{
  crcm data pusht out=$WORK/few.zarr seed=0 episodes=$FEW behavior=mixed workers=$FEW overwrite=true $GEN | tail -1
  if [ -n "${DRY:-}" ]; then
    [ -d $TEACHER ] || crcm train teacher preset=tiny data.path=$WORK/few.zarr $RECIPE train.steps=20 \
        train.out=$TEACHER train.progress=false | tail -1
    [ -d $PROBE ] || crcm train probe data.path=$WORK/few.zarr out=$PROBE device=cpu steps=60 batch_size=32 \
        width=8 progress=false | tail -1
  fi
  minutes=$($PY -c "print(round(max(0.2, ($(left) - $EVAL_S) / 60), 2))")
  echo "store at $(( $(date +%s) - T0 )) s; fine-tuning for $minutes min"
  # steps sized so the wsd decay lands inside the time (~11 updates/s alone on an H200)
  steps=$($PY -c "print(max(4, int($minutes * 60 * ${RATE:-10})))")
  crcm train teacher preset=$PRESET data.path=$WORK/few.zarr $RECIPE init=$TEACHER train.out=$WORK/fit_few \
      train.steps=$steps train.max_minutes=$minutes train.validation.every=0 train.progress=false \
      train.device=$DEV 2>&1 | tail -2
  for split in train val; do
    for ckpt in $WORK/fit_few $TEACHER; do
      timeout $(( $(left) - 5 )) $PY scripts/block_motion_error.py $ckpt $WORK/few.zarr $PROBE --steps 4 \
          --episodes $EPISODES --split $split --split-from $WORK/fit_few --device $DEV \
          > $WORK/bme_$(basename $ckpt)_$split.json
      echo "$(basename $ckpt) on its fitted store's $split episodes: $(cut -c1-600 $WORK/bme_$(basename $ckpt)_$split.json)"
    done
  done
} 2>&1 | tee "$OUT/fit_few.log"
cp $WORK/bme_*.json $WORK/fit_few/meta.json $WORK/fit_few_log.jsonl "$OUT"/ 2>/dev/null
ls -la "$OUT"
