# Sourced by the PushT planning studies (augment.sh, replan.sh, shallow.sh) after setup.sh and their settings:
# the pieces they share. Expects PY, T0, left (seconds the call has left), WORK, STORE, PROBE, DEV, DATA,
# PROBE_STEPS, RATE, GOALS, PLAN, DRY (and PRESET, RECIPE for teacher_alone; ARMS and plan for
# resume_and_join).

store_and_probe() {  # the mixed 500-episode store, then the state probe started in the background
  crcm data pusht out=$STORE size=64 seed=0 behavior=mixed overwrite=true $DATA | tail -1
  echo "store at $(( $(date +%s) - T0 )) s"
  crcm train probe data.path=$STORE out=$PROBE device=$DEV steps=$PROBE_STEPS progress=false \
      $([ -n "${DRY:-}" ] && echo batch_size=32 width=8) > $WORK/probe.log 2>&1 &
}

teacher_budget() {  # MARGIN: sets minutes (what the call has left but MARGIN seconds) and steps (at RATE)
  minutes=$($PY -c "print(round(max(0.2, ($(left) - $1) / 60), 2))")
  steps=$($PY -c "print(max(4, int($minutes * 60 * $RATE)))")
}

teacher_alone() {  # [MARGIN]: store, probe beside it, then one teacher (RECIPE) alone on the GPU until MARGIN
  # seconds (25) are left
  store_and_probe
  teacher_budget ${1:-25}
  echo "teacher: $steps updates, at most $minutes min"
  crcm train teacher preset=$PRESET data.path=$STORE $RECIPE train.out=$WORK/teacher train.steps=$steps \
      train.max_minutes=$minutes train.progress=false train.device=$DEV > $WORK/teacher.log 2>&1
  echo "teacher: exit $? at $(( $(date +%s) - T0 )) s; $(tail -1 $WORK/teacher.log | cut -c1-600)"
  wait
  tail -1 $WORK/probe.log | cut -c1-300
}

plan_arm() {  # NAME CKPT [OVERRIDES...]: the model arm on the held-out goals, cut 15 s before the call ends
  local name=$1 ckpt=$2; shift 2
  timeout $(( $(left) - 15 )) $PY -m crcm_robotics.cli bench plan $ckpt arms=[model] goals=$GOALS probe=$PROBE \
      device=$DEV backend=$([ $DEV = cuda ] && echo cuda_graph || echo eager) gifs=0 progress=false \
      fidelity_goals=0 $PLAN "$@" out=$WORK/plan_$name > $WORK/plan_$name.json 2> $WORK/plan_$name.err
  echo "plan_$name: exit $? at $(( $(date +%s) - T0 )) s, $(cat $WORK/plan_$name/*.goals.jsonl 2>/dev/null | wc -l) goals"
}

resume_and_join() {  # each arm of ARMS cut in part a resumed as part b (the caller's
  # `plan ARM FIRST_GOAL PART`), the parts joined (one arm, one file, in $WORK/joined) and compared goal by goal
  for arm in $ARMS; do
    done_goals=$(cat $WORK/plan_${arm}_a/*.goals.jsonl 2>/dev/null | wc -l)
    [ "$done_goals" -lt $GOALS ] && plan $arm $done_goals b &
  done
  wait
  for arm in $ARMS; do
    mkdir -p $WORK/joined/$arm && cat $WORK/plan_${arm}_*/*.goals.jsonl > $WORK/joined/$arm/student.goals.jsonl
  done
  $PY scripts/plan_goal_pairs.py $WORK/joined/*/student.goals.jsonl
}
