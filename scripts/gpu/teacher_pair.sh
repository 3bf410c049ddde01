# Issue 12: two PushT teachers of the planning recipe that differ in a few settings, trained side by side on
# the one GPU for the same time, scored on the held-out pushed block (scripts/block_motion_error.py), trained
# on, and planned on the 50 held-out goals. The studies that use it name their pair:
#   augment.sh (fifteenth session): PAIR="plain=data.augment=none dihedral=data.augment=dihedral"
#   twenty-first session: PAIR="base=objective.p_mean=-0.8 high=objective.p_mean=0.4" (the training noise
#   levels moved up, where a diffusion model settles a frame's coarse layout, such as where the block went)
#   twenty-third session: PAIR="p04=objective.p_mean=0.4,train.seed=1 p10=objective.p_mean=1.0,train.seed=1"
#   (moved up further: 1.0 held 0.64 of 50 goals against 0.48)
#   twenty-fourth session: PAIR="p10=objective.p_mean=1.0,train.seed=0 p16=objective.p_mean=1.6,train.seed=0"
#   (further still: 1.6 held 0.66 against 0.56, its pushed block 34° off in angle against 47°)
#   twenty-eighth session: PAIR="p16s1=objective.p_mean=1.6,train.seed=1 p22s1=objective.p_mean=2.2,train.seed=1"
#   (a second seed of the 1.6 recipe, and the noise moved up once more beside it)
#   twenty-ninth session: SIZE=128 PAIR="r128s0=model.patch=16,train.seed=0 r128s1=model.patch=16,train.seed=1"
#   (128x128 frames in 16x16 patches, the same token grid: both collapsed, 8 dB below copy-last at 1,500 updates)
#   forty-fifth session: PAIR="uni=data.motion_sampling=0 mot=data.motion_sampling=0.25" (training windows drawn
#   by the block's travel: the pushed block no nearer at ~2,200 and ~3,200-3,500 updates)
#   forty-eighth session: PAIR="base=train.seed=0 sw1=objective.state_weight=1,objective.state_probe=@probe,
#   train.seed=0" (one string; the state-probe loss at a tenth of the twelfth session's weight, on the planning
#   recipe: the first predicted frame's block no nearer, 23.0 against 21.7 units, and 23 of 48 goals against 26)
#   forty-ninth session: PAIR="base=train.seed=0 cfg=model.action_null=true,objective.action_dropout=0.1,
#   train.seed=0" GUIDE="1.5 2 3" PLAN_GUIDE=best (one string; classifier-free action guidance: does pushing
#   the frame towards what the command changes draw one block under contact instead of a cloud?)
# An override's value @probe names the study's own state probe ($WORK/probe, trained in stage 1 before the
# teachers), e.g. objective.state_probe=@probe for the teacher's state-probe loss.
# Three calls on one warm machine (issue each right after the last: it idles out in ~30 s; stages 2 and 3 on a
# machine that lost the pair are refused in one line, exit 2, and the study starts again at STAGE=1):
#   STAGE=1  (TESTS=1: the GPU-marked tests first, in the background) the store (mixed, 500 episodes), the
#            state probe, the two teachers side by side, the pushed block (each, and paired: cmp_teacher.json)
#   STAGE=2  both teachers trained on from there (init=: a fresh optimizer and schedule, so both decay again)
#            for MORE updates (2,700) in at most MORE_MIN minutes (8.1), the pushed block again (cmp_t2.json)
#   STAGE=3  stage 2's teachers (it needs stage 2) planned side by side with the benchmark's planner and
#            probe cost, cut before the call ends (a cut arm keeps the goals it finished)
# Carry .whl (with pytest for TESTS=1). Env: PAIR (two NAME=OVERRIDE[,OVERRIDE...] items), STUDY (the
# outputs' prefix, pair), GUIDE (guidance weights, e.g. "1.5 2 3": the second teacher, trained with
# model.action_null, also scored on the pushed block sampled with each, against the first: cmp_PREFIX_gW.json),
# PLAN_GUIDE (stage 3: the second teacher planned with this guidance weight, or "best": the one of 1 and GUIDE
# whose stage-2 pushed block is nearest), CALL_S (seconds this call may take, 570), RATE (updates/s each teacher is expected
# to make side by side, 6), MORE, MORE_MIN, WORK (/root/work). DRY=1 rehearses every stage on the CPU at toy
# sizes (tests/test_gpu_scripts.py).
source scripts/gpu/setup.sh
STUDY=${STUDY:-pair}; RATE=${RATE:-6}
source scripts/gpu/pusht_study.sh
PLAN="$PLAN planner.replan_every=10"; EVAL_S=$([ -n "${DRY:-}" ] && echo 40 || echo 100)
read -r -a ITEMS <<< "${PAIR:?set PAIR=\"NAME=OVERRIDE[,OVERRIDE...] NAME=OVERRIDE[,OVERRIDE...]\"}"
if [ ${#ITEMS[@]} -ne 2 ]; then
  echo "teacher_pair.sh: PAIR needs two NAME=OVERRIDES items, got ${#ITEMS[@]}: $PAIR" >&2; exit 2
fi
for item in "${ITEMS[@]}"; do  # a name, then every comma-separated override a KEY=VALUE
  if ! [[ $item =~ ^[A-Za-z0-9_]+=[^=,]+=[^,]*(,[^=,]+=[^,]*)*$ ]]; then
    echo "teacher_pair.sh: PAIR item '$item': expected NAME=KEY=VALUE[,KEY=VALUE...]" >&2; exit 2
  fi
done
for w in ${GUIDE:-}; do
  if ! [[ $w =~ ^[0-9]+(\.[0-9]+)?$ ]]; then
    echo "teacher_pair.sh: GUIDE=\"$GUIDE\": expected guidance weights such as \"1.5 2 3\"" >&2; exit 2
  fi
done
if [ -n "${PLAN_GUIDE:-}" ] && ! [[ $PLAN_GUIDE =~ ^([0-9]+(\.[0-9]+)?|best)$ ]]; then
  echo "teacher_pair.sh: PLAN_GUIDE=$PLAN_GUIDE: expected a guidance weight or best" >&2; exit 2
fi
if [ "${PLAN_GUIDE:-}" = best ] && [ -z "${GUIDE:-}" ]; then
  echo "teacher_pair.sh: PLAN_GUIDE=best picks among GUIDE's weights; set GUIDE" >&2; exit 2
fi
[ -n "${GUIDE:-}" ] && EVAL_S=$(( EVAL_S + 45 ))  # the guided pushed-block runs after the unguided ones
NAMES=("${ITEMS[0]%%=*}" "${ITEMS[1]%%=*}")
if [ "${NAMES[0]}" = "${NAMES[1]}" ]; then
  echo "teacher_pair.sh: PAIR names the same teacher twice: ${NAMES[0]}" >&2; exit 2
fi
overrides() {  # the INDEXth teacher's settings, @probe read as the study's probe
  local item=${ITEMS[$1]}; echo "${item#*=}" | tr , ' ' | sed "s#=@probe\( \|\$\)#=$PROBE\1#g"
}
teacher() {  # NAME MINUTES STEPS INDEX [overrides]: pusht_study.sh's train_model with the INDEXth settings
  local name=$1 minutes=$2 steps=$3 index=$4; shift 4
  train_model $name $(overrides $index) train.steps=$steps train.max_minutes=$minutes "$@"
}
teachers_pushed_block() {  # PREFIX: both teachers' held-out pushed block, and the second against the
  # first window by window on the same frames (compare_pair: $OUT/cmp_PREFIX.json)
  local a=$WORK/bme_${1}_${NAMES[0]}.npz b=$WORK/bme_${1}_${NAMES[1]}.npz
  rm -f $a $b  # an earlier call's on this warm machine: a run cut now must not be paired with them
  pushed_block 4 ${1}_${NAMES[0]}=$WORK/${1}_${NAMES[0]} ${1}_${NAMES[1]}=$WORK/${1}_${NAMES[1]}
  cp $WORK/bme_${1}_*.json "$OUT"/
  compare_pair $a $b cmp_${1} "${NAMES[1]} - ${NAMES[0]}" 900
}

compare_pair() {  # A.npz B.npz NAME LABEL WIDTH: B against A window by window (compare_block_errors.py: B - A
  # with a bootstrap interval over windows, by the block's move and by predicted frame) into $OUT/NAME.json, its
  # first WIDTH characters said under LABEL; both error files come back too, to be compared again later
  local a=$1 b=$2 name=$3
  if ! [ -f $a ] || ! [ -f $b ]; then
    echo "teacher_pair.sh: no $name: a pushed-block run was cut before it wrote its errors" \
        "($(basename $a), $(basename $b))" >&2
    return 0
  fi
  cp $a $b "$OUT"/
  if $PY scripts/compare_block_errors.py $a $b --move-bins 20 40 80 --by-step > "$OUT/$name.json"; then
    echo "$name ($4): $(cut -c1-$5 "$OUT/$name.json")"
  else  # its one-line reason is above; the means stand without the pairing
    echo "teacher_pair.sh: $name was not compared (compare_block_errors.py above)" >&2
    rm -f "$OUT/$name.json"
  fi
}
guided_pushed_block() {  # PREFIX: with GUIDE, the second teacher's pushed block sampled with each guidance
  # weight (bme_PREFIX_NAME_gW), each against the first teacher's unguided one on the same windows (cmp_PREFIX_gW)
  [ -n "${GUIDE:-}" ] || return 0
  local w items=() a=$WORK/bme_${1}_${NAMES[0]}.npz
  for w in $GUIDE; do
    rm -f $WORK/bme_${1}_${NAMES[1]}_g$w.*
    items+=("${1}_${NAMES[1]}_g$w=$WORK/${1}_${NAMES[1]}+g$w")
  done
  pushed_block 4 "${items[@]}"
  cp $WORK/bme_${1}_${NAMES[1]}_g*.json "$OUT"/
  for w in $GUIDE; do
    compare_pair $a $WORK/bme_${1}_${NAMES[1]}_g$w.npz cmp_${1}_g$w "${NAMES[1]} at guidance $w - ${NAMES[0]}" 600
  done
}

plan_guidance() {  # the second teacher's planning guidance: PLAN_GUIDE, or (best) the weight of 1 and GUIDE whose
  # stage-2 pushed block (moved frames, position) is nearest; nothing without PLAN_GUIDE
  [ -n "${PLAN_GUIDE:-}" ] || return 0
  if [ "$PLAN_GUIDE" != best ]; then echo $PLAN_GUIDE; return 0; fi
  $PY - $WORK/bme_t2_${NAMES[1]}.json $WORK/bme_t2_${NAMES[1]}_g*.json <<'PYEOF'
import json, sys
scores = {}
for path in sys.argv[1:]:
    try:
        line = json.load(open(path))
        scores[float(line.get("guidance", 1.0))] = line["steps_4"]["moved"]["position"]
    except (OSError, ValueError, KeyError):
        continue  # a run cut before its line: not a candidate
print(min(scores, key=scores.get) if scores else 1.0)
PYEOF
}

needs_teachers() {  # PREFIX: both teachers of the pair (and the store) left by the stage before, or exit 2:
  # WORK lives on the warm machine only, and a lost machine loses the pair (two teachers do not fit a carry
  # beside the wheels), so the study starts again at STAGE=1
  local name
  for name in "${NAMES[@]}"; do
    if ! [ -d $WORK/${1}_$name ] || ! [ -d $STORE ]; then
      echo "teacher_pair.sh: STAGE=$STAGE needs $WORK/${1}_$name and the store from the stage before; not found" \
          "(the warm machine was lost?): start again at STAGE=1" >&2
      exit 2
    fi
  done
}
case "${STAGE:?set STAGE=1, 2 or 3}" in
1) {
  if [ -n "${TESTS:-}" ]; then  # the GPU-marked tests (parity of the captured steps with eager) while data is made
    timeout 240 $PY -m pytest -q -m gpu tests/test_runtime.py tests/test_export.py -rs -p no:cacheprovider \
        > "$OUT/gpu_tests.log" 2>&1 &
  fi
  store_and_probe
  if [[ $PAIR == *=@probe* ]]; then  # a teacher that trains through the probe starts once it is made
    probe_ready
  fi
  teacher_budget $EVAL_S
  echo "two teachers side by side: $steps updates each, at most $minutes min"
  teacher teacher_${NAMES[0]} $minutes $steps 0 &
  teacher teacher_${NAMES[1]} $minutes $steps 1 &
  wait
  tail -1 $WORK/probe.log | cut -c1-300
  [ -n "${TESTS:-}" ] && tail -3 "$OUT/gpu_tests.log"
  teachers_pushed_block teacher
  guided_pushed_block teacher
  } 2>&1 | tee "$OUT/${STUDY}1.log"
  cp $WORK/teacher_*.log "$OUT"/ ;;
2) needs_teachers teacher; {
  for index in 0 1; do
    teacher t2_${NAMES[$index]} ${MORE_MIN:-8.1} ${MORE:-2700} $index init=$WORK/teacher_${NAMES[$index]} &
  done
  wait
  teachers_pushed_block t2
  guided_pushed_block t2
  } 2>&1 | tee "$OUT/${STUDY}2.log"
  cp $WORK/t2_*.log "$OUT"/ ;;
3) needs_teachers t2; {
  guide=$(plan_guidance)
  [ -n "$guide" ] && echo "${NAMES[1]} planned with guidance $guide"
  plan_arm t2_${NAMES[0]} $WORK/t2_${NAMES[0]} &
  plan_arm t2_${NAMES[1]} $WORK/t2_${NAMES[1]} ${guide:+guidance=$guide} &
  wait
  $PY scripts/plan_goal_pairs.py $WORK/plan_t2_*/*.goals.jsonl
  } 2>&1 | tee "$OUT/${STUDY}3.log"
  tar czf "$OUT/${STUDY}3.tgz" -C $WORK $(cd $WORK && ls -d plan_* 2>/dev/null) ;;
*) echo "teacher_pair.sh: unknown STAGE=$STAGE (expected 1, 2 or 3)" >&2; exit 2 ;;
esac
ls -la "$OUT"
