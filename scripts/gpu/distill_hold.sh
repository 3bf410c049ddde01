# Issue 14 on one GPU: does the 2-step Causal-rCM preset hold across two teacher lengths and two seeds,
# against SF-DMD and against the candidate fixes? Every arm of a call runs side by side on the one GPU
# (distillation is launch-bound: one student keeps the GPU busy a fraction of the time). Three calls on one
# warm machine (outputs persist in $WORK and outputs/; issue each right after the last: the machine idles out
# in ~30 s):
#   STAGE=1  builds the frame-skip-5 mixed PushT store the carried long teacher trained on, starts the short
#            teacher (the long one's recipe cut to SHORT_STEPS updates, wsd decay inside them) and, beside it,
#            distils every arm from the long teacher (TEACHER_FROM, carried); evaluates the selected students
#            and the teacher at horizon 16 and LONG frames.
#   STAGE=2  resumes the short teacher if the first call cut it, then distils and evaluates every arm from it.
#   STAGE=3  distils every arm of METHODS from TAG's teacher (long | short), resuming those already there to
#            UPDATES, and evaluates them: more seeds (e.g. FIX_SEEDS=1), or what a cut call left.
# Arms (METHODS, as distill_curves.sh): causal_rcm (the preset), sf_dmd, and three fixes of Causal-rCM: the
# sCM regulariser faded out (fade), sCM's adaptive time weighting (adapt), and the sCM stage's length chosen
# by validation (patience); the first two at SEEDS, the fixes at FIX_SEEDS ("0"). Also defined, for METHODS to
# name: roll=causal_rcm, self-forcing rollouts of ROLL_FRAMES (12) frames, past the 5-frame training window
# (dmd.rollout_frames; issue 14's drift item), e.g. METHODS="causal_rcm roll=causal_rcm" LONG=160.
# Usage (device tool, carry .whl and the long teacher):
#   TEACHER_FROM=carry/teacher_long STAGE=1 bash scripts/gpu/distill_hold.sh
# Env: WORK (/root/work), TEACHER_FROM, SHORT_STEPS (3300; 0: no short teacher), TEACHER_MIN (minutes of
#      short-teacher training per call, 7.5), UPDATES (150 per student), MINUTES (per student per call, 5.0),
#      LONG (32 frames = 160 env steps at frame skip 5; past 32, a store of LONG_EPISODES (50) episodes long
#      enough is built for it), SEEDS ("0 1"), METHODS, DEADLINE_S (evaluations not started by then are
#      skipped, 420), UNSEEN (as distill_study.sh: every horizon-16 evaluation repeated on a store of an
#      unseen policy, built there if missing, e.g. UNSEEN=$WORK/orbit.zarr; hold_summary.py reports it apart).
# DRY=1 rehearses every stage on the CPU at toy sizes (DRY_LONG=24: with a store of longer episodes).
source scripts/gpu/setup.sh
set -o pipefail
WORK=${WORK:-/root/work}; export STORE=$WORK/pusht64.zarr
export GEN="size=64 min_steps=180 max_steps=300 behavior=mixed" EPISODES=${EPISODES:-500}
export LONG=${LONG:-32} SEEDS=${SEEDS:-"0 1"} UPDATES=${UPDATES:-150} VAL_EVERY=25
export MINUTES=${MINUTES:-5.0} DEADLINE_S=${DEADLINE_S:-420} PRESET=small
export METHODS=${METHODS:-"causal_rcm sf_dmd fade=causal_rcm adapt=causal_rcm patience=causal_rcm"}
FIX_SEEDS=${FIX_SEEDS:-0}; export SEEDS_fade=$FIX_SEEDS SEEDS_adapt=$FIX_SEEDS SEEDS_patience=$FIX_SEEDS
export ARM_fade="rcm.scm_weight_schedule=cosine rcm.scm_fade_steps=100"
export ARM_adapt="scm.adaptive_weight=true"
export ARM_patience="rcm.scm_steps=300 rcm.scm_stage_patience=2"
export ARM_roll="dmd.rollout_frames=${ROLL_FRAMES:-12}"
SHORT_STEPS=${SHORT_STEPS:-3300}; TEACHER_MIN=${TEACHER_MIN:-7.5}
# the carried long teacher's recipe (its config.yaml): `small` at frame skip 5, wsd over the last quarter
TEACH="data.frame_skip=5 optim.lr_schedule=wsd optim.decay_fraction=0.25"
if [ -n "${DRY:-}" ]; then
  WORK=outputs/hold_dry; STORE=$WORK/pusht64.zarr; GEN="size=64 min_steps=100 max_steps=110 behavior=mixed"
  EPISODES=12; LONG=${DRY_LONG:-6}; LONG_MAX=18; UPDATES=4; VAL_EVERY=2; MINUTES=1.0; PRESET=tiny
  [ "$SHORT_STEPS" = 0 ] || SHORT_STEPS=20; TEACHER_MIN=1.0
  export ARM_fade="rcm.scm_weight_schedule=cosine rcm.scm_fade_steps=2"
  export ARM_patience="rcm.scm_stage_patience=1" ARM_roll="dmd.rollout_frames=4"
fi
# the store's episodes (180-300 env steps) hold LONG_MAX frames at frame skip 5; longer rollouts get their own
# store (another seed: held out whole)
if ((LONG > ${LONG_MAX:-32})); then
  export LONG_STORE=$WORK/pusht64_long$LONG.zarr LONG_EPISODES=${LONG_EPISODES:-50}
  [ -n "${DRY:-}" ] && LONG_EPISODES=4
  steps=$(( (LONG + 4) * 5 ))
  export LONG_GEN="size=64 min_steps=$steps max_steps=$(( steps + 20 )) behavior=mixed"
fi
mkdir -p $WORK
short_teacher() {  # train or resume the short teacher (outputs/teacher_short) for up to TEACHER_MIN minutes
  TEACHERS=short:$SHORT_STEPS MINUTES=$TEACHER_MIN VAL_EVERY=500 EXTRA="$TEACH" \
      bash scripts/gpu/teacher_curves.sh > $WORK/teacher_short.out 2>&1
  tail -3 $WORK/teacher_short.out
}
students() {  # TAG TEACHER_DIR: every arm × seed from that teacher, side by side, then their evaluations
  TAG=$1 TEACHER=$2 STUDENT_STEPS=2 bash scripts/gpu/distill_curves.sh > $WORK/students_$1.out 2>&1
  tail -40 $WORK/students_$1.out
}
case "${STAGE:?set STAGE=1, 2 or 3}" in
1) {
  [ -d $STORE ] || crcm data pusht out=$STORE seed=0 episodes=$EPISODES $GEN overwrite=true | tail -1
  if [ -n "${DRY:-}" ] && [ -z "${TEACHER_FROM:-}" ]; then  # a toy long teacher to distil from
    [ -d $WORK/teacher_long ] || crcm train teacher preset=tiny data.path=$STORE $TEACH train.steps=30 \
        train.out=$WORK/teacher_long train.progress=false | tail -1
  else
    rm -rf $WORK/teacher_long
    cp -r "${TEACHER_FROM:?STAGE=1 needs TEACHER_FROM=DIR, the carried long teacher}" $WORK/teacher_long
  fi
  ((SHORT_STEPS > 0)) && short_teacher &  # SHORT_STEPS=0: the carried teacher's students alone
  students long $WORK/teacher_long
  wait
  } 2>&1 | tee "$OUT/hold1.log" ;;
2) {
  [ -f outputs/teacher_short/train_state.pt ] || { echo "distill_hold.sh: no short teacher (machine lost?)"
                                                   exit 1; }
  # teacher_curves.sh resumes a cut run; a finished one just reports
  short_teacher
  students short outputs/teacher_short
  } 2>&1 | tee "$OUT/hold2.log" ;;
3) {
  t=${TAG:?STAGE=3 needs TAG=long or short}
  dir=$WORK/teacher_long; [ $t = short ] && dir=outputs/teacher_short
  students $t $dir
  } 2>&1 | tee "$OUT/hold3.log" ;;
*) echo "distill_hold.sh: unknown STAGE=$STAGE (expected 1, 2 or 3)" >&2; exit 2 ;;
esac
