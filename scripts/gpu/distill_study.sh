# Distillation study on a multi-GPU machine: every method distils the same teacher on its own GPU (each a
# single-GPU run), then each student is evaluated at 1, 2 and 4 steps on held-out episodes at horizon 16
# (with batch-1 ms/frame) and 160 (drift); the teacher at its sampler(s) likewise.
# Usage (device tool, carry .whl and the teacher dir):  TEACHER=outputs/s9c/teacher_pw10 bash scripts/gpu/distill_study.sh
# Env: TEACHER (required), DISTILL_EXTRA (overrides for every method) METHODS ("causal_rcm tf_scm sf_dmd tf_dcm") MINUTES (3.0) PRESET (small)
#      TEACHER_EVALS ("4/ddim") STUDENT_STEPS ("1 2 4") EPISODES/GEN (store, as teacher_sweep.sh)
# DRY=1 rehearses on the CPU with tiny sizes.
source scripts/gpu/setup.sh
set -o pipefail
: "${TEACHER:?set TEACHER=checkpoint dir}"
EPISODES=${EPISODES:-500}; MINUTES=${MINUTES:-3.0}; PRESET=${PRESET:-small}
METHODS=${METHODS:-"causal_rcm tf_scm sf_dmd tf_dcm"}; STUDENT_STEPS=${STUDENT_STEPS:-"1 2 4"}
TEACHER_EVALS=${TEACHER_EVALS:-"1/ddim 2/ddim 4/ddim 8/ddim"}; LONG=${LONG:-160}
GEN=${GEN:-"size=64 min_steps=180 max_steps=300"}
STORE=${STORE:-outputs/pusht64.zarr}
LOG=outputs/study_logs; EVAL=outputs/study_eval
rm -rf $LOG $EVAL; mkdir -p $LOG  # a warm machine keeps outputs/ from the previous call
NM=$(wc -w <<< "$METHODS")
[ -d $STORE ] || crcm data pusht out=$STORE episodes=$EPISODES seed=0 $GEN overwrite=true 2>&1 | tail -1
ngpu=$( (nvidia-smi -L 2>/dev/null || true) | wc -l); ngpu=$((ngpu > 0 ? ngpu : 1))

evaluate() {  # ckpt name steps solver horizon extra…
  local ck=$1 name=$2 steps=$3 solver=$4 h=$5; shift 5
  crcm eval "$ck" data.path=$STORE horizon=$h context=2 steps=$steps ${solver:+solver=$solver} \
      out=$EVAL/${name}_h$h "$@" 2>>$LOG/eval_errors.log | grep '^{' > $LOG/eval_${name}_h$h.json || true
}

# GPU i distils method i, evaluates its student, then takes teacher sampler i (so no run shares a GPU)
read -ra teacher_evals <<< "$TEACHER_EVALS"
gpu=0
for m in $METHODS; do
  ( export CUDA_VISIBLE_DEVICES=$((gpu % ngpu))
    crcm distill $m teacher=$TEACHER preset=$PRESET data.path=$STORE train.out=outputs/student_$m \
        train.max_minutes=$MINUTES train.progress=false ${DISTILL_EXTRA:-} > $LOG/distill_$m.log 2>&1
    for s in $STUDENT_STEPS; do
      evaluate outputs/student_$m ${m}_${s}step $s "" 16
      evaluate outputs/student_$m ${m}_${s}step $s "" $LONG windows_per_episode=1 time_batch1=false report=false
    done
    for ((i = gpu; i < ${#teacher_evals[@]}; i += ${NM:-4})); do
      ev=${teacher_evals[$i]}
      evaluate $TEACHER teacher_${ev%/*}${ev#*/} ${ev%/*} ${ev#*/} 16
      evaluate $TEACHER teacher_${ev%/*}${ev#*/} ${ev%/*} ${ev#*/} $LONG windows_per_episode=1 time_batch1=false \
          report=false
    done ) &
  gpu=$((gpu + 1))
done
wait
$PY -m crcm_robotics.eval.study_table $LOG | tee $LOG/table.md
tar czf - --exclude rollout.gif -C outputs study_eval study_logs $(cd outputs && ls student_*_log.jsonl 2>/dev/null) \
    | split -b 15M - "$OUT/study.tgz.part-"
tar cf - --exclude train_state.pt -C outputs student_causal_rcm | split -b 15M - "$OUT/student_causal_rcm.tar.part-"
ls -la "$OUT"
