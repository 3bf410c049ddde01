# Issue 12: one kept PushT teacher planned on the held-out goals under two goal costs side by side (the same
# candidates and noise: the seed is shared), with each cost's fidelity figures (how well it ranks one round of
# candidates against the simulator's true cost, on the first FIDELITY goals). The forty-ninth session:
# COSTS="probe probe_mass" (the block's position read off its colour's pixel centroid, not the probe: the
# model draws a pushed block as a cloud whose mass sits nearer the truth than the probe reads it).
# Two calls on one warm machine, the first carrying the teacher and probe (they do not fit one carry beside the
# wheels), the second the wheels:
#   STAGE=put   copies the carried TEACHER (a checkpoint folder) and, if given, PROBE_FROM (a probe folder)
#               into WORK
#   STAGE=plan  (carry .whl) the store and, without a put probe, the study's probe (PROBE_STEPS on the device, as
#               every planning study trains it), then the teacher planned under each of COSTS until the call
#               ends (a cut arm keeps the goals it finished), the two compared goal by goal (plan_goal_pairs.py)
# Env: TEACHER, PROBE_FROM (STAGE=put), COSTS (two planner.cost names, "probe probe_mass"), FIDELITY (20),
# CALL_S (570), WORK (/root/work). DRY=1 rehearses it on the CPU at toy sizes (tests/test_gpu_scripts.py).
STUDY=${STUDY:-cost}; RATE=6
case "${STAGE:?set STAGE=put or plan}" in
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
plan) ;;
*) echo "cost_pair.sh: unknown STAGE=$STAGE (expected put or plan)" >&2; exit 2 ;;
esac
source scripts/gpu/setup.sh
source scripts/gpu/pusht_study.sh
read -r -a PAIR_COSTS <<< "${COSTS:-probe probe_mass}"
if [ ${#PAIR_COSTS[@]} -ne 2 ] || [ "${PAIR_COSTS[0]}" = "${PAIR_COSTS[1]}" ]; then
  echo "cost_pair.sh: COSTS=\"${COSTS:-}\": expected two different planner.cost names" >&2; exit 2
fi
if ! [ -d $WORK/teacher ]; then
  echo "cost_pair.sh: STAGE=plan needs $WORK/teacher from STAGE=put on this machine; not found" \
      "(the warm machine was lost?): run STAGE=put again" >&2
  exit 2
fi
{
if [ -f $PROBE/probe.safetensors ]; then
  [ -d $STORE ] || make_store
else  # the study's own probe, trained here on the store as every planning study's is
  store_and_probe
  probe_ready
  tail -1 $WORK/probe.log | cut -c1-400
fi
FIDELITY=${FIDELITY:-20}
for cost in "${PAIR_COSTS[@]}"; do
  plan_arm $cost $WORK/teacher planner.replan_every=10 planner.cost=$cost &
done
wait
for cost in "${PAIR_COSTS[@]}"; do
  echo "plan_$cost fidelity: $(cat $WORK/plan_$cost/*.fidelity.json 2>/dev/null | cut -c1-700)"
  tail -2 $WORK/plan_$cost.err | cut -c1-300
done
$PY scripts/plan_goal_pairs.py $WORK/plan_*/*.goals.jsonl
} 2>&1 | tee "$OUT/${STUDY}_plan.log"
tar czf "$OUT/${STUDY}_plan.tgz" -C $WORK $(cd $WORK && ls -d plan_* 2>/dev/null)
ls -la "$OUT"
