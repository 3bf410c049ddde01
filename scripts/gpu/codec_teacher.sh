# Issue 12, frames larger than 64x64: one call makes the PushT store at SIZE (128) and its state probe, a latent
# codec on it (the arm's `arm_small`: 8x down to 16x16x16 latents), and a teacher of the planning recipe on the
# latents (2x2 patches: 64 tokens a frame, as the `small` teacher's 8x8 patches of a 64x64 frame) for STEPS
# updates alone on the GPU, then its held-out pushed block (scripts/block_motion_error.py, DDIM 4), to set
# beside the 64x64 pixel teachers at the same length (docs/results.md, twenty-ninth session). On a warm machine
# the store and probe of the call before are reused.
#   twenty-ninth session: CALL_S=575 bash scripts/gpu/codec_teacher.sh; SEED=1 CALL_S=575 bash ...  # 461, 451 s
# (A pixel teacher at 128 with 16x16 patches, the same token grid, collapsed: teacher_pair.sh with SIZE=128.)
# Carry .whl. Env: SIZE (128), SEED (the teacher's train.seed, 0), STEPS (2400), CODEC_MIN (1.5), CALL_S (570),
# WORK (/root/work). DRY=1 rehearses it on the CPU at toy sizes (tests/test_gpu_scripts.py).
source scripts/gpu/setup.sh
STUDY=codec_teacher; RATE=10; SIZE=${SIZE:-128}
SEED=${SEED:-0}; STEPS=${STEPS:-2400}; CODEC_MIN=${CODEC_MIN:-1.5}; CODEC_PRESET=arm_small
for setting in SEED STEPS; do
  if ! [[ ${!setting} =~ ^[0-9]+$ ]]; then
    echo "codec_teacher.sh: $setting=${!setting}: expected a whole number" >&2; exit 2
  fi
done
if ! [[ $CODEC_MIN =~ ^[0-9]+(\.[0-9]+)?$ ]] || [[ $CODEC_MIN =~ ^0+(\.0+)?$ ]]; then
  echo "codec_teacher.sh: CODEC_MIN=$CODEC_MIN: expected the codec's minutes, a positive number" >&2; exit 2
fi
source scripts/gpu/pusht_study.sh
if [ -n "$STORE_EPISODES" ]; then  # the codec splits its store by its own fraction alone
  echo "codec_teacher.sh: STORE_EPISODES=$STORE_EPISODES: a grown store is for shallow.sh's teachers; expected none" >&2
  exit 2
fi
[ -n "${DRY:-}" ] && { CODEC_PRESET=arm_tiny; CODEC_MIN=0.3; STEPS=6; }
{
[ -d $STORE ] && [ -d $PROBE ] || store_and_probe
crcm train codec preset=$CODEC_PRESET data.path=$STORE train.out=$WORK/codec train.max_minutes=$CODEC_MIN \
    train.progress=false 2>&1 | tail -1 | cut -c1-700
echo "codec at $(( $(date +%s) - T0 )) s"
teacher_budget 70  # the pushed block and the returns after it
train_model teacher_c$SIZE model.codec=$WORK/codec model.patch=2 objective.motion_threshold=0.1 \
    train.steps=$STEPS train.max_minutes=$minutes train.seed=$SEED
wait; tail -1 $WORK/probe.log | cut -c1-300
pushed_block 4 teacher_c${SIZE}_s$SEED=$WORK/teacher_c$SIZE
} 2>&1 | tee "$OUT/codec_teacher_s$SEED.log"
cp $WORK/bme_*.json $WORK/teacher_c$SIZE.log "$OUT"/
ls -la "$OUT"
