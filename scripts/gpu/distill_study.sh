# Distillation study on a multi-GPU machine: every method distils the same teacher on its own GPU (each a
# single-GPU run), then each student is evaluated at 1, 2 and 4 steps on held-out episodes at horizon 16
# (with batch-1 ms/frame) and 160 (drift); the teacher at its sampler(s) likewise.
# Usage (device tool, carry .whl and the teacher dir):  TEACHER=outputs/s9c/teacher_pw10 bash scripts/gpu/distill_study.sh
# Env: TEACHER (required), DISTILL_EXTRA (overrides for every method) METHODS ("causal_rcm tf_scm sf_dmd tf_dcm") MINUTES (3.0) PRESET (small)
#      METHODS entries may be LABEL=METHOD, with that arm's own overrides in ARM_LABEL, e.g.
#        METHODS="causal_rcm rcm_c100=causal_rcm" ARM_rcm_c100="scm.tangent_norm_c=100"
#      TEACHER_EVALS ("1/ddim 2/ddim 4/ddim 8/ddim"; S/consistency = the teacher's weights run with the student's
#      S-step sampler, the undistilled reference; S/consistency@T,… the same with mid_times=[T,…])
#      STUDENT_STEPS ("1 2 4") MID_EVALS (""; S@T,… also evaluates every student at S steps with mid_times=[T,…];
#      MIDS_LABEL replaces it for one arm) GPU_TESTS (0; 1 = the GPU parity tests on GPU 0 after its evaluations)
#      EPISODES/GEN (store, as teacher_sweep.sh)
#      LONG (160 frames) LONG_STORE (STORE): the store of the long-horizon evaluations, built if missing from
#      LONG_GEN (episodes long enough for LONG frames at the teacher's frame skip) with LONG_EPISODES (50)
#      and seed LONG_SEED (9); a store other than the teacher's is held out whole
#      RETURN (the first arm's label): students whose weights come back under $OUT
#      DEADLINE_S (560): evaluations not started by then are skipped, so the logs still come back in one call
#      RESUME (0; 1 = each arm continues outputs/student_LABEL from its train_state.pt when one is there)
#      TEACHER_TAG (""): names the teacher's evaluations teacher_TAG_<sampler>, so calls on two teachers merge
#      into one folder for study_table and scripts/hold_summary.py
#      UNSEEN (""): a store of a behaviour policy no preset trains on; every horizon-16 evaluation is repeated
#      on it, named <name>_unseen. Built if missing: UNSEEN_EPISODES (60) episodes, seed UNSEEN_SEED (100),
#      UNSEEN_GEN ("size=64 min_steps=180 max_steps=300 behavior=orbit": the pusher circles the block)
# DRY=1 rehearses on the CPU with tiny sizes.
source scripts/gpu/setup.sh
set -o pipefail
: "${TEACHER:?set TEACHER=checkpoint dir}"
EPISODES=${EPISODES:-500}; MINUTES=${MINUTES:-3.0}; PRESET=${PRESET:-small}
METHODS=${METHODS:-"causal_rcm tf_scm sf_dmd tf_dcm"}; STUDENT_STEPS=${STUDENT_STEPS:-"1 2 4"}
TEACHER_EVALS=${TEACHER_EVALS:-"1/ddim 2/ddim 4/ddim 8/ddim"}; LONG=${LONG:-160}
GEN=${GEN:-"size=64 min_steps=180 max_steps=300"}
STORE=${STORE:-outputs/pusht64.zarr}; DEADLINE_S=${DEADLINE_S:-560}
LOG=outputs/study_logs; EVAL=outputs/study_eval
rm -rf $LOG $EVAL; mkdir -p $LOG  # a warm machine keeps outputs/ from the previous call
NM=$(wc -w <<< "$METHODS")
[ -d $STORE ] || crcm data pusht out=$STORE episodes=$EPISODES seed=0 $GEN overwrite=true 2>&1 | tail -1
LONG_STORE=${LONG_STORE:-$STORE}
[ -d $LONG_STORE ] || crcm data pusht out=$LONG_STORE episodes=${LONG_EPISODES:-50} seed=${LONG_SEED:-9} \
    ${LONG_GEN:?LONG_STORE=$LONG_STORE is missing: give LONG_GEN to build it} overwrite=true 2>&1 | tail -1
UNSEEN=${UNSEEN:-}
[ -n "$UNSEEN" ] && [ ! -d "$UNSEEN" ] && crcm data pusht out=$UNSEEN episodes=${UNSEEN_EPISODES:-60} \
    seed=${UNSEEN_SEED:-100} ${UNSEEN_GEN:-size=64 min_steps=180 max_steps=300 behavior=orbit} \
    overwrite=true 2>&1 | tail -1
ngpu=$( (nvidia-smi -L 2>/dev/null || true) | wc -l); ngpu=$((ngpu > 0 ? ngpu : 1))

evaluate() {  # ckpt name steps solver horizon extra… (the long horizon on LONG_STORE)
  local ck=$1 name=$2 steps=$3 solver=$4 h=$5; shift 5
  local store=$STORE; [ "$h" = "$LONG" ] && store=$LONG_STORE
  if ((SECONDS > DEADLINE_S)); then echo "skipped $name h$h: past DEADLINE_S=$DEADLINE_S" >> $LOG/eval_errors.log; return; fi
  crcm eval "$ck" data.path=$store horizon=$h context=2 steps=$steps ${solver:+solver=$solver} \
      out=$EVAL/${name}_h$h "$@" 2>>$LOG/eval_errors.log | grep '^{' > $LOG/eval_${name}_h$h.json || true
  if [ -n "$UNSEEN" ] && [ "$h" = 16 ]; then  # the same figures on the unseen policy's episodes
    crcm eval "$ck" data.path=$UNSEEN horizon=16 context=2 steps=$steps ${solver:+solver=$solver} \
        out=$EVAL/${name}_unseen_h16 time_batch1=false report=false "$@" 2>>$LOG/eval_errors.log \
        | grep '^{' > $LOG/eval_${name}_unseen_h16.json || true
  fi
}

# GPU i distils method i, evaluates its student, then takes teacher sampler i (so no run shares a GPU)
read -ra teacher_evals <<< "$TEACHER_EVALS"
gpu=0
for arm in $METHODS; do
  label=${arm%%=*}; m=${arm#*=}; extra_var=ARM_$label
  resume=""
  if [ "${RESUME:-0}" = 1 ] && [ -f outputs/student_$label/train_state.pt ]; then resume=train.resume=outputs/student_$label; fi
  ( export CUDA_VISIBLE_DEVICES=$((gpu % ngpu))
    crcm distill $m teacher=$TEACHER preset=$PRESET data.path=$STORE train.out=outputs/student_$label \
        train.max_minutes=$MINUTES train.progress=false ${DISTILL_EXTRA:-} ${!extra_var:-} $resume \
        > $LOG/distill_$label.log 2>&1
    for s in $STUDENT_STEPS; do
      evaluate outputs/student_$label ${label}_${s}step $s "" 16
      evaluate outputs/student_$label ${label}_${s}step $s "" $LONG windows_per_episode=1 time_batch1=false report=false
    done
    mids_var=MIDS_$label
    for ev in ${!mids_var-${MID_EVALS:-}}; do  # MIDS_<label> replaces MID_EVALS for that arm
      s=${ev%@*}; mids=${ev#*@}; name=${label}_${s}step_mid$mids
      evaluate outputs/student_$label $name $s "" 16 "mid_times=[$mids]"
      evaluate outputs/student_$label $name $s "" $LONG windows_per_episode=1 time_batch1=false report=false "mid_times=[$mids]"
    done
    for ((i = gpu; i < ${#teacher_evals[@]}; i += ${NM:-4})); do
      ev=${teacher_evals[$i]}; s=${ev%/*}; how=${ev#*/}
      if [[ $how == consistency@* ]]; then
        name=undistilled_${s}step_mid${how#*@}; args=(sampler=consistency "mid_times=[${how#*@}]"); how=""
      elif [ "$how" = consistency ]; then
        name=undistilled_${s}step; args=(sampler=consistency); how=""
      else
        name=teacher_${TEACHER_TAG:+${TEACHER_TAG}_}$s$how; args=()
      fi
      evaluate $TEACHER $name $s "$how" 16 "${args[@]}"
      evaluate $TEACHER $name $s "$how" $LONG windows_per_episode=1 time_batch1=false report=false "${args[@]}"
    done
    if [ "${GPU_TESTS:-0}" = 1 ] && [ $gpu = 0 ]; then
      timeout 150 $PY -m pytest -q -m gpu tests/test_runtime.py tests/test_export.py -rs > $LOG/gpu_tests.log 2>&1 || true
    fi ) &
  gpu=$((gpu + 1))
done
wait
$PY -m crcm_robotics.eval.study_table $LOG | tee $LOG/table.md
tar czf - --exclude rollout.gif -C outputs study_eval study_logs $(cd outputs && ls student_*_log.jsonl 2>/dev/null) \
    | split -b 15M - "$OUT/study.tgz.part-"
first=${METHODS%% *}
for label in ${RETURN:-${first%%=*}}; do  # students to bring back (weights only; ≤ 8 files of 15 MB in all)
  [ -d outputs/student_$label ] && tar cf - --exclude train_state.pt -C outputs student_$label \
      | split -b 15M - "$OUT/student_$label.tar.part-"
done
ls -la "$OUT"
