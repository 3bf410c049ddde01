# GPU run for issue 16 (a real robot arm): a 128x128 Meta-World push-v3 store rendered with EGL, then the
# latent frame codec (`crcm train codec preset=arm_small`); its final JSON line holds the held-out PSNR.
# Wheels (two carried folders, each < 64 MiB):
#   bash /work/shared/tools/gpu_wheels.sh scipy      # -> .whl (zarr, hydra, ... + scipy for Meta-World)
#   bash scripts/gpu/arm_wheels.sh                   # -> carry/whl_arm (metaworld, mujoco, gymnasium, ...)
# Device calls, on one warm machine (a path carried once stays there for the next call):
#   run(carry=["carry/whl_arm"], command="ls carry/whl_arm | wc -l")
#   run(carry=[".whl"], command="bash scripts/gpu/arm_codec.sh")
# Env: EPISODES (200), WORKERS (16), STEPS (6000), MINUTES (training budget, 6.0), EXTRA (more codec overrides),
#      STORE (use this store instead of generating one). DRY=1 rehearses on the CPU with .venv (tiny sizes: set
#      EPISODES=2 STEPS=5 SIZE=64).
source scripts/gpu/setup.sh
if [ -z "${DRY:-}" ]; then
  ls carry/whl_arm/*.whl >/dev/null 2>&1 || { echo "arm_codec: carry/whl_arm is missing (see the header)" >&2; exit 1; }
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site carry/whl_arm/*.whl
  export MUJOCO_GL=${MUJOCO_GL:-egl}
fi
EPISODES=${EPISODES:-200}; WORKERS=${WORKERS:-16}; STEPS=${STEPS:-6000}; MINUTES=${MINUTES:-6.0}; SIZE=${SIZE:-128}
STORE=${STORE:-}
set -o pipefail
{
if [ -z "$STORE" ]; then
  STORE=outputs/arm$SIZE.zarr
  crcm data metaworld preset=arm_small out=$STORE episodes=$EPISODES size=$SIZE workers=$WORKERS overwrite=true \
      progress=false
fi
crcm data info $STORE out=outputs/arm_sheet.png episodes=6 frames_per_row=10 scale=1
crcm train codec preset=arm_small data.path=$STORE train.out=outputs/codec_arm_small train.steps=$STEPS \
    train.max_minutes=$MINUTES train.progress=false ${EXTRA:-}
} 2>&1 | tee outputs/arm_codec_run.log
tar czf "$OUT/arm_codec.tgz" --exclude train_state.pt -C outputs codec_arm_small codec_arm_small_log.jsonl \
    arm_sheet.png arm_codec_run.log
ls -la "$OUT"
