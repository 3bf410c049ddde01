# Issue 12: one kept PushT teacher planned on the held-out goals under two (or more) planner settings side by
# side (the same candidates and noise: the seed is shared), with each arm's fidelity figures (how well its cost
# ranks one round of candidates against the simulator's true cost, on the first FIDELITY goals). The forty-ninth
# session:
# COSTS="probe probe_mass" (the block's position read off its colour's pixel centroid, not the probe: the
# model draws a pushed block as a cloud whose mass sits nearer the truth than the probe reads it). The fiftieth:
# ARMS="r10=planner.cost=probe_mass r5=planner.cost=probe_mass,planner.replan_every=5" (does replanning every
# model frame, which lifted the learnt state model from 0.78 to 0.88 and no pixel model under the probe's cost,
# lift one under the cost that reads the cloud's mass?).
# Two or three calls on one warm machine, the first carrying the teacher and probe (they do not fit one carry
# beside the wheels), the others the wheels:
#   STAGE=put   copies the carried TEACHER (a checkpoint folder) and, if given, PROBE_FROM (a probe folder)
#               into WORK
#   STAGE=plan  (carry .whl) the store and, without a put probe, the study's probe (PROBE_STEPS on the device, as
#               every planning study trains it), then the teacher planned under each arm until the call
#               ends (a cut arm keeps the goals it finished), every two compared goal by goal (plan_goal_pairs.py)
#   STAGE=more  (carry .whl; after STAGE=plan on this machine) each cut arm resumed where it stopped
#               (first_goal=, no fidelity), cut before the call ends; every arm's parts joined
#               ($WORK/joined/NAME) and compared goal by goal. Run again while goals are left.
# STUDENT=SEED (the fifty-first session): a 2-step Causal-rCM student of the put teacher (pusht_study.sh's
# distil_student at that seed, DISTILL_MIN minutes, validation keeping its weights) is distilled in STAGE=plan,
# beside the probe's training, and planned in place of the teacher under both arms, here and in STAGE=more.
# PROBE_SEEDS="S..." (the fifty-third session): STAGE=plan also trains a probe at each seed S into $WORK/probe_sS,
# beside the study's own (seed 0), and returns the weights of every probe it trained, one tarball each (at most
# four seeds: a probe is ~4 MB compressed); an arm reads one with probe=$WORK/probe_sS in its overrides (the
# literal $WORK, put in single quotes: it is filled in here; S must be one of PROBE_SEEDS). Does the probe a
# call trains explain why the same teacher held 35 of 50 goals in one call and 23 in another (fiftieth and fifty-second)?
# (No: with probes of seeds 0 and 1 it held 26 / 26, fifty-third session.) Arms share the GPU: three teacher arms
# took 3,650 ms a replan each and two 2,430 ms on an H100, against 1,128 alone; side by side gains no throughput.
# Env: TEACHER, PROBE_FROM (STAGE=put), ARMS (two or more NAME=KEY=VALUE[,KEY=VALUE...] items: each arm's planner
# overrides, planner.replan_every=10 where an arm sets none), or COSTS (two planner.cost names, "probe
# probe_mass": the arms NAME=planner.cost=NAME), FIDELITY (20), CALL_S (570), WORK (/root/work). DRY=1 rehearses
# it on the CPU at toy sizes (tests/test_gpu_scripts.py).
STUDY=${STUDY:-cost}; RATE=6
case "${STAGE:?set STAGE=put, plan or more}" in
put) {  # no wheels needed: only files moved
  set -euo pipefail
  WORK=${WORK:-$([ -n "${DRY:-}" ] && echo outputs/${STUDY}_dry || echo /root/work)}
  for dir in "${TEACHER:?set TEACHER=a carried checkpoint folder}" ${PROBE_FROM:+"$PROBE_FROM"}; do
    if ! [ -f "$dir/meta.json" ]; then
      echo "cost_pair.sh: $dir: expected a carried checkpoint or probe folder (meta.json in it)" >&2; exit 2
    fi
  done
  mkdir -p $WORK && rm -rf $WORK/teacher $WORK/probe
  cp -r "$TEACHER" $WORK/teacher
  [ -n "${PROBE_FROM:-}" ] && cp -r "$PROBE_FROM" $WORK/probe
  echo "put $TEACHER${PROBE_FROM:+ and $PROBE_FROM} into $WORK"
  exit 0
} ;;
plan|more) ;;
*) echo "cost_pair.sh: unknown STAGE=$STAGE (expected put, plan or more)" >&2; exit 2 ;;
esac
source scripts/gpu/setup.sh
source scripts/gpu/pusht_study.sh
if [ -n "${ARMS:-}" ]; then
  read -r -a ITEMS <<< "$ARMS"
  for item in "${ITEMS[@]}"; do  # a name, then every comma-separated override a KEY=VALUE
    if ! [[ $item =~ ^[A-Za-z0-9_]+=[^=,]+=[^,]*(,[^=,]+=[^,]*)*$ ]]; then
      echo "cost_pair.sh: ARMS item '$item': expected NAME=KEY=VALUE[,KEY=VALUE...]" >&2; exit 2
    fi
  done
  what="ARMS=\"$ARMS\": expected two or more items with different names"
else
  read -r -a ITEMS <<< "${COSTS:-probe probe_mass}"
  for i in "${!ITEMS[@]}"; do ITEMS[$i]=${ITEMS[$i]}=planner.cost=${ITEMS[$i]}; done
  what="COSTS=\"${COSTS:-}\": expected two different planner.cost names"
fi
named_twice() {  # WORD...: the words given more than once, space-separated
  printf '%s\n' "$@" | sort | uniq -d | tr '\n' ' '
}
twice=$(named_twice "${ITEMS[@]%%=*}")
if [ ${#ITEMS[@]} -lt 2 ] || { [ -z "${ARMS:-}" ] && [ ${#ITEMS[@]} -ne 2 ]; } || [ -n "$twice" ]; then
  echo "cost_pair.sh: $what (got ${#ITEMS[@]}${twice:+, named twice: ${twice% }})" >&2; exit 2
fi
read -r -a EXTRA_SEEDS <<< "${PROBE_SEEDS:-}"
for seed in "${EXTRA_SEEDS[@]}"; do
  if ! [[ $seed =~ ^[1-9][0-9]*$ ]]; then
    echo "cost_pair.sh: PROBE_SEEDS=\"$PROBE_SEEDS\": seed '$seed': expected whole-number seeds other than 0 (the" \
        "study's own probe is seed 0)" >&2
    exit 2
  fi
done
twice=$(named_twice "${EXTRA_SEEDS[@]}")
if [ -n "$twice" ] || [ ${#EXTRA_SEEDS[@]} -gt 4 ]; then
  echo "cost_pair.sh: PROBE_SEEDS=\"$PROBE_SEEDS\": expected at most four different seeds (each probe comes back" \
      "as its own ~4 MB tarball)${twice:+; named twice: ${twice% }}" >&2
  exit 2
fi
for item in "${ITEMS[@]}"; do  # an arm that reads an extra probe reads one this call trains (or trained)
  if [[ ,${item#*=}, =~ ,probe=\$WORK/probe_s([0-9]+), ]] \
      && ! [[ " ${EXTRA_SEEDS[*]} " == *" ${BASH_REMATCH[1]} "* ]]; then
    echo "cost_pair.sh: ARMS item '${item%%=*}' reads probe_s${BASH_REMATCH[1]}: expected its seed in" \
        "PROBE_SEEDS=\"${PROBE_SEEDS:-}\"" >&2
    exit 2
  fi
done
MODEL=$WORK/teacher; KIND=teacher  # what the arms plan
if [ -n "${STUDENT:-}" ]; then
  if ! [[ $STUDENT =~ ^[0-9]+$ ]]; then
    echo "cost_pair.sh: STUDENT=$STUDENT: expected a seed (a whole number) for the student of the put teacher" >&2
    exit 2
  fi
  MODEL=$WORK/student_s$STUDENT; KIND=student
fi
if ! [ -d $WORK/teacher ]; then
  echo "cost_pair.sh: STAGE=$STAGE needs $WORK/teacher from STAGE=put on this machine; not found" \
      "(the warm machine was lost?): run STAGE=put again" >&2
  exit 2
fi
if [ $STAGE = more ] && ! { [ -d $STORE ] && [ -f $PROBE/probe.safetensors ]; }; then
  echo "cost_pair.sh: STAGE=more needs the store and probe of STAGE=plan on this machine; not found: run" \
      "STAGE=plan again" >&2
  exit 2
fi
for seed in "${EXTRA_SEEDS[@]}"; do
  if [ $STAGE = more ] && ! [ -f $WORK/probe_s$seed/probe.safetensors ]; then
    echo "cost_pair.sh: STAGE=more needs the probe at seed $seed that STAGE=plan trained on this machine" \
        "($WORK/probe_s$seed); not found: run STAGE=plan again with the same PROBE_SEEDS" >&2
    exit 2
  fi
done
if [ $STAGE = more ] && ! [ -f $MODEL/meta.json ]; then
  echo "cost_pair.sh: STAGE=more needs the $KIND that STAGE=plan planned on this machine ($MODEL); not found:" \
      "run STAGE=plan again with the same STUDENT" >&2
  exit 2
fi
arm_overrides() {  # ITEM: the arm's planner overrides, replan_every=10 where it sets none, $WORK filled in
  local item=${1#*=}
  item=${item//\$WORK/"$WORK"}
  [[ ,$item, == *,planner.replan_every=* ]] || item="planner.replan_every=10,$item"
  echo "$item" | tr , ' '
}
PROBE_TRAINED_HERE=$([ -f $PROBE/probe.safetensors ] || echo 1)  # none on this machine yet: STAGE=plan trains it
arm_goals() {  # NAME: the per-goal lines the arm has written over all its parts, in goal order
  cat $WORK/plan_$1/*.goals.jsonl $WORK/plan_${1}_from*/*.goals.jsonl 2>/dev/null
}
{
if [ $STAGE = plan ]; then
  rm -rf $WORK/plan_* $WORK/joined $WORK/probe_s*  # an earlier study's arms and extra probes are not this one's
  if [ -f $PROBE/probe.safetensors ]; then
    [ -d $STORE ] || make_store
  else  # the study's own probe, trained here on the store as every planning study's is
    store_and_probe
  fi
  EXTRA_PIDS=()
  for seed in "${EXTRA_SEEDS[@]}"; do  # beside the study's own probe, on the same store and steps
    train_probe $WORK/probe_s$seed $seed
    EXTRA_PIDS+=($!)
  done
  if [ -n "${STUDENT:-}" ]; then  # beside the probe's training
    rm -rf $MODEL && distil_student s$STUDENT $STUDENT
    if ! [ -f $MODEL/meta.json ]; then
      echo "cost_pair.sh: the student's distillation wrote no checkpoint ($MODEL): $WORK/distill_s$STUDENT.log" >&2
      exit 2
    fi
  fi
  probe_ready
  [ -z "${PROBE_PID:-}" ] || tail -1 $WORK/probe.log | cut -c1-400  # the summary of a probe trained here
  for i in "${!EXTRA_SEEDS[@]}"; do
    wait ${EXTRA_PIDS[$i]}
    seed=${EXTRA_SEEDS[$i]}
    if ! [ -f $WORK/probe_s$seed/probe.safetensors ]; then
      echo "cost_pair.sh: no probe at seed $seed after its training: $(tail -1 $WORK/probe_s$seed.log)" >&2
      kill "${EXTRA_PIDS[@]}" 2>/dev/null
      exit 2
    fi
    echo "probe_s$seed: $(tail -1 $WORK/probe_s$seed.log | cut -c1-400)"
  done
  FIDELITY=${FIDELITY:-20}
  for item in "${ITEMS[@]}"; do
    plan_arm ${item%%=*} $MODEL $(arm_overrides $item) &
  done
  wait
  for item in "${ITEMS[@]}"; do
    echo "plan_${item%%=*} fidelity: $(cat $WORK/plan_${item%%=*}/*.fidelity.json 2>/dev/null | cut -c1-700)"
    tail -2 $WORK/plan_${item%%=*}.err | cut -c1-300
  done
  $PY scripts/plan_goal_pairs.py $WORK/plan_*/*.goals.jsonl
else
  FIDELITY=0
  for item in "${ITEMS[@]}"; do
    done_goals=$(arm_goals ${item%%=*} | wc -l)
    [ "$done_goals" -lt $GOALS ] && plan_arm ${item%%=*}_from$done_goals $MODEL $(arm_overrides $item) \
        first_goal=$done_goals &
  done
  wait
  for item in "${ITEMS[@]}"; do
    name=${item%%=*}
    mkdir -p $WORK/joined/$name
    arm_goals $name > $WORK/joined/$name/$KIND.goals.jsonl
    echo "$name: $(wc -l < $WORK/joined/$name/$KIND.goals.jsonl) of $GOALS goals"
  done
  $PY scripts/plan_goal_pairs.py $WORK/joined/*/$KIND.goals.jsonl
fi
} 2>&1 | tee "$OUT/${STUDY}_$STAGE.log"
status=$?  # the stage's own (pipefail): a refusal inside it ends the call with its status, after the files go back
tar czf "$OUT/${STUDY}_$STAGE.tgz" -C $WORK $(cd $WORK && ls -d plan_* joined distill_s*.log 2>/dev/null)
if [ $STAGE = plan ]; then  # the probes this call trained, one tarball each (to carry to another call)
  [ -n "$PROBE_TRAINED_HERE" ] && [ -f $PROBE/probe.safetensors ] && tar czf "$OUT/${STUDY}_probe.tgz" -C $WORK probe
  for seed in "${EXTRA_SEEDS[@]}"; do
    [ -f $WORK/probe_s$seed/probe.safetensors ] && tar czf "$OUT/${STUDY}_probe_s$seed.tgz" -C $WORK probe_s$seed
  done
fi
ls -la "$OUT"
exit $status
