# Issue 14, student curves: METHODS × SEEDS distilled from one teacher (one GPU each, through distill_study.sh),
# out to UPDATES updates with held-out validation every VAL_EVERY; every call resumes each student where the last
# call stopped (warm machine: repeat the same call until the logs reach UPDATES), then evaluates the selected
# students at horizon 16 and 160 like distill_study.sh. The curves table and plots come back under $OUT.
# Usage (device tool, carry .whl; after teacher_curves.sh on the same machine):
#   TEACHER=outputs/teacher_short bash scripts/gpu/distill_curves.sh
# Env: TEACHER (required; its selected weights are distilled), METHODS ("causal_rcm sf_dmd tf_scm"), SEEDS ("0 1"),
#      SEEDS_<METHOD> (that method's seeds instead of SEEDS),
#      UPDATES (2000), VAL_EVERY (50), MINUTES (7.0 per call), TAG (the teacher dir's name: arms are TAG_METHOD_sSEED,
#      the teacher's evaluations teacher_TAG_<sampler>),
#      ARM_<METHOD> (overrides for every seed of that method), DISTILL_EXTRA, STUDENT_STEPS ("2"), and the rest of
#      distill_study.sh's settings (PRESET, STORE, TEACHER_EVALS ("4/ddim"), DEADLINE_S, RETURN ("none")).
# Fix arms are methods with a label, e.g. METHODS="causal_rcm fade=causal_rcm" ARM_fade="rcm.scm_weight_schedule=cosine
# rcm.scm_fade_steps=500".
: "${TEACHER:?set TEACHER=teacher checkpoint dir}"
TAG=${TAG:-$(basename "$TEACHER")}; SEEDS=${SEEDS:-"0 1"}; UPDATES=${UPDATES:-2000}; VAL_EVERY=${VAL_EVERY:-50}
arms=""
for arm in ${METHODS:-"causal_rcm sf_dmd tf_scm"}; do
  base=${arm%%=*}; m=${arm#*=}; base_extra=ARM_$base
  seeds_var=SEEDS_$base
  for seed in ${!seeds_var:-$SEEDS}; do
    label=${TAG}_${base}_s$seed
    arms+=" $label=$m"
    export "ARM_$label=train.seed=$seed ${!base_extra:-}"
  done
done
export METHODS="${arms# }" RESUME=1 MINUTES=${MINUTES:-7.0} STUDENT_STEPS=${STUDENT_STEPS:-2}
export TEACHER_EVALS=${TEACHER_EVALS:-"4/ddim"} RETURN=${RETURN:-none} TEACHER_TAG=$TAG
export DISTILL_EXTRA="train.steps=$UPDATES train.validation.every=$VAL_EVERY ${DISTILL_EXTRA:-}"
bash scripts/gpu/distill_study.sh
source scripts/gpu/setup.sh > /dev/null
logs=(); for arm in $METHODS; do logs+=(outputs/student_${arm%%=*}_log.jsonl); done
$PY -m crcm_robotics.eval.training_curves "${logs[@]}" --plot "$OUT/${TAG}_curves" | tee "$OUT/${TAG}_curves.md"
