# Issue 12: does a student of half the teacher's blocks plan as well as a full-depth one, at a third of the
# teacher's time? A 2-step student makes 3 network passes per frame to the DDIM-4 teacher's 5 (0.61 of its
# time, docs/results.md); `student_depth=4` keeps 4 of the `small` teacher's 8 blocks (0.29 of its time on the
# CPU). One teacher of the 13,000-update recipe (as long as one call allows beside its students), three 2-step
# Causal-rCM students of it side by side: full depth (seed 0) and 4 blocks (seeds 0, 1); the teacher and two
# students each timed alone, then the three planned on the 50 held-out goals (replanning every 10, the
# benchmark's default), goal by goal on the same goals.
# Run in the seventeenth session (docs/results.md, "A 4-block student on the GPU"): 0.33 of the teacher's
# time, and none of the 50 goals held: the 4-block student's block never moves.
# ARMS="d0_s0 i4_s0 i4_s1" (eighteenth session): the shallow students start instead from a 4-block model
# trained on the store beside the teacher (`student_init=`), so that distillation starts from a network that
# already predicts the frames; teacher and 4-block model then share the GPU, each with its rate decayed over
# the time it has (optim.lr_schedule=wsd_time).
# ALONE=1 (nineteenth session): the teacher and the shallow model each alone on the GPU, one after the other
# (TEACHER_SHARE, 0.58, of stage 1's training time to the teacher; without an i-arm the teacher has all of it,
# twenty-second session); the students are then distilled at the start of stage 2, which the call no longer
# has room for. PLAN_TEACHER=1 (with or without ALONE) plans the teacher on the 50 goals beside the students
# (arm `teacher`), so that every arm's success is measured on the same goals in the same session.
# Run in the nineteenth session (docs/results.md): the students at 0.334 of the teacher's time, level with it
# (2 / 1 against 2 of 42 goals held), both models short of training.
# Run again in the twentieth session with last-frame writes skipped, the context encoded once and FrameTerms:
# the students at 0.319 / 0.318 of the teacher's time; none plans (0 / 0 against 1 of 50 held).
# ARMS="d0_s0 d0_s1" METHOD=tf_scm PLAN_TEACHER=1 (twenty-second session): full-depth TF-sCM students of the
# p_mean 0.4 teacher, kept by validation at their 25th update, held 9 / 9 of the 23 goals the teacher (9)
# reached before the call's end.
# The same with RATE=10.5 (twenty-fifth session), the p_mean 1.6 recipe, stage 2 on a fresh machine (KEEP):
# the students, kept at their 25th update, held 34 / 35 of the 50 goals against the teacher's 36.
# Two or three calls on one warm machine (issue each right after the last: it idles out in ~30 s):
#   STAGE=1  the store (mixed, 500 episodes), the state probe beside the teacher, the teacher alone on the
#            GPU (with i-arms: beside the 4-block model; ALONE=1: before it); without i-arms the teacher is
#            returned (below); then the students side by side (DISTILL_MIN; with ALONE=1 at the start of stage 2;
#            validation, PSNR plus the pusher, keeps the weights: by PSNR alone, the seventeenth session's run
#            kept a 12.7-px pusher over a 2-px one)
#   STAGE=2  (with ALONE=1 the students distilled first; on a fresh machine given KEEP, those stage 1 made)
#            the teacher and the first two arms' students each planned alone on TIME_GOALS
#            goals (ms per replan at the same settings); then the three arms side by side, cut before the call
#            ends, and what they finished compared goal by goal
#   STAGE=3  each cut arm resumed where it stopped (first_goal=), the parts joined and compared goal by goal;
#            with the time left, the held-out pushed block of the first two arms (and of the 4-block model,
#            or without i-arms of the teacher). It needs stage 2's machine (refused on a fresh one: run stage 2
#            again there)
# Carry .whl. Env: CALL_S (seconds this call may take, 570), RATE (teacher updates/s alone, 11.5; since the
# sixtieth session the teacher's rate decays by the clock, and RATE sizes nothing here), DISTILL_MIN
# (2), METHOD (the students' distillation method, causal_rcm; tf_scm kept the p_mean 0.4 teacher's gain at toy
# size where SF-DMD lost it, docs/results.md), DISTILL_ARGS (more `crcm distill` settings), TIME_GOALS (2; 0
# skips the timing), WORK (/root/work; with DRY=1 outputs/shallow_dry), ARMS (d0_s0 d4_s0 d4_s1: d<blocks>
# from the teacher's blocks, 0 = all of them; i<blocks> from the model of that many blocks; _s<seed>).
# With no i-arm, stage 1 returns the teacher (keep.tgz.part*, pusht_study.sh's keep_models): with ALONE=1 at the
# call's end; without, before its students are distilled (fifty-eighth session). Carried back as KEEP=DIR, stage
# 2 on a fresh machine makes the store and probe again and goes on from it (distilling again the students that
# stage 1 made on the lost machine). Stage 1's logs and metas come back in shallow1.tgz.
# While the teacher trains, what its validations keep is returned on the way (pusht_study.sh's keep_while_training,
# fifty-ninth session): a call the device kills before its end still brings the teacher back that far.
# KEEP=DIR in stage 1 (twenty-sixth session; no i-arms): the kept teacher trained on from its weights (init=,
# the recipe run again with a new optimizer and rate schedule) instead of a new one, for a teacher twice as long
# as one call allows; it is kept again as above. Run in the twenty-sixth session on the twenty-fifth's teacher
# (10,362 updates in all, kept at 9,747): the teacher held 38 of 50 goals, its students 32 / 38.
# KEEP_STUDENTS=1 (thirtieth session; ALONE=1 with i-arms): stage 1 also distils the students after the two
# models (DISTILL_MIN; the models' held-out pushed block beside them) and returns the students, not the models: a
# call carries 64 MiB, two 4-block students ~30 MB, the 8-block teacher alone 29. Stage 2 on a fresh machine
# (KEEP=DIR) plans them; with no teacher there, the teacher's time at the same settings is its solve with random
# weights (scripts/plan_time_split.py: latency does not depend on the weights; 1,080.6 ms there against 1,080.8 in
# closed loop, twentieth session), beside each student's own solve in it and alone in closed loop. Run in the
# thirtieth session (METHOD=tf_scm DISTILL_MIN=1 TEACHER_SHARE=0.45): the students at 0.319 of the teacher's time
# held 0.38 / 0.36 of the 50 goals (docs/results.md, "A third of the teacher's time with students that plan").
# KEEP_STUDENTS=1 with KEEP=DIR in stage 1: DIR holds a shallow model kept earlier (keep_models base_i4, as the
# thirtieth session's 5,070-update one); the teacher alone has the call's training time, the students start from
# the kept model, and are kept as above. Run in the thirty-first session (DISTILL_MIN=1.5, the thirtieth's 5,070-update
# model): a 3,903-update teacher; the students at 0.32 of its time held 0.52 / 0.42 of 50 goals, the teacher 0.62.
# On a warm machine (the calls issued back to back) stage 2 finds the teacher of stage 1 and times it with its weights.
# Stages 2 and 3 with ALONE=1 and i-arms on a warm machine that holds a kept 4-block model trained on (pusht_study.sh's
# model_on) and a kept teacher unpacked into WORK (thirty-second session: the 13,096-update 4-block model, the
# 9,768-update teacher): the students, distilled there, held 0.64 / 0.54 at 0.32 of the teacher's time, the teacher 0.68.
# REPLAN_EVERY (10, the benchmark's default; fifty-fifth session: 5, every model frame; sixty-fourth: any, 1 or 2
# off the model's frames too): the env steps between replans of every arm planned in stages 2 and 3 (give the same
# in both: a resumed arm must plan as it began). A goal's planning time grows as 50 / REPLAN_EVERY replans.
# ONLY_GOALS (stage 2; EPISODE:START,...): the arms plan only those of the 50 goals (`crcm bench plan only_goals=`),
# e.g. the 14 the strongest runs miss; stage 2 issued again on the warm machine (without ALONE, so that it keeps
# the students) plans the next ones.
# STATE_MODEL=1 (stage 2): the exact-state step model fitted and planned on the CPU beside the GPU's arms, on the
# same goals (state_models, below; 8 of the machine's CPU cores, so give TIME_GOALS=0 or read the timings with that).
# DRY=1 rehearses every stage on the CPU at toy sizes (tests/test_gpu_scripts.py; i4 arms become i1).
source scripts/gpu/setup.sh
STUDY=shallow; RATE=${RATE:-11.5}
source scripts/gpu/pusht_study.sh
REPLAN_EVERY=${REPLAN_EVERY:-10}
if ! [[ $REPLAN_EVERY =~ ^[1-9][0-9]*$ ]]; then
  echo "shallow.sh: REPLAN_EVERY=$REPLAN_EVERY: expected a whole number of env steps between replans (10, 5, 1)" >&2
  exit 2
fi
ONLY_GOALS=${ONLY_GOALS:-}
if [ -n "$ONLY_GOALS" ] && ! [[ $ONLY_GOALS =~ ^[0-9]+:[0-9]+(,[0-9]+:[0-9]+)*$ ]]; then
  echo "shallow.sh: ONLY_GOALS=$ONLY_GOALS: expected EPISODE:START goals, comma-separated (15:265,71:16)" >&2
  exit 2
fi
if [ -n "$ONLY_GOALS" ] && [ "${STAGE:-}" = 3 ]; then
  echo "shallow.sh: ONLY_GOALS with STAGE=3: a resumed arm counts its goals by their place in the 50; run stage 2" \
      "again with the goals it lacks" >&2
  exit 2
fi
PLAN="$PLAN planner.replan_every=$REPLAN_EVERY"; DEPTH=$([ -n "${DRY:-}" ] && echo 1 || echo 4)
ARMS=${ARMS:-"d0_s0 d${DEPTH}_s0 d${DEPTH}_s1"}; [ -n "${DRY:-}" ] && ARMS=${ARMS//i4_/i1_}
BASE=$(for arm in $ARMS; do [ "${arm:0:1}" = i ] && echo ${arm%_s*}; done | sort -u)  # i<blocks> models
if [ $(echo $BASE | wc -w) -gt 1 ]; then
  echo "shallow.sh: one i<blocks> depth at a time, got" $BASE >&2; exit 2
fi
distil() {  # ARM (d<depth>_s<seed>; depth 0 = the teacher's; i<depth>_s<seed>): its 2-step student
  local depth=${1%_s*}
  distil_student $1 ${1#*_s} $([ "${depth:0:1}" = i ] && echo student_init=$WORK/base_$depth || echo student_depth=${depth:1})
}
distil_arms() {  # [missing]: every arm's student, side by side; with `missing` only those not in WORK (a fresh
  # machine given the kept teacher; meta.json is written by the final save alone, so a student cut while it
  # distilled counts as missing)
  local arm
  for arm in $ARMS; do
    if [ "${1:-}" = missing ]; then
      [ -f $WORK/student_$arm/meta.json ] && continue
      echo "student_$arm: not in $WORK, distilled again"
    fi
    distil $arm &
  done
  wait
}
plan() {  # ARM FIRST_GOAL PART: the arm's student (or, for arm `teacher`, the teacher) from FIRST_GOAL, cut 15 s
  # before the end; with ONLY_GOALS, those of the 50 alone
  plan_arm $1_$3 $WORK/$([ $1 = teacher ] && echo teacher || echo student_$1) first_goal=$2 \
      ${ONLY_GOALS:+only_goals=[$ONLY_GOALS]}
}
PLANNED="$([ -n "${PLAN_TEACHER:-}" ] && echo "teacher ")$ARMS"  # the arms planned on the 50 goals
state_models() {  # STATE_MODEL=1: the learnt state model's guide on this call's goals. The exact-state step model
  # (scripts/state_model_planning.py: 5 env steps a model step, 8,000 updates on the teacher's training episodes:
  # 450, or with STORE_EPISODES the grown store's rest too, where the fifty-fourth session's 0.76 on the planning
  # store's goals no longer applies) fitted and planned at model seeds 0 and 1, on the
  # CPU in the background beside the GPU's arms, replanning as they do, cut with them. The fifty-seventh session's
  # students planned a goal set the guide was never planned on. The teacher gives the goals (its split and
  # context), so it must have been trained on this store: a teacher of the other store is refused (its log says so)
  local seed
  for seed in 0 1; do
    OMP_NUM_THREADS=4 timeout $(( $(left) - 15 )) $PY scripts/state_model_planning.py $STORE \
        --goals-from $WORK/teacher --model step --step-size 5 --arms state_mlp --seed $seed --goal-seed 0 \
        --replan-every $REPLAN_EVERY --goals $GOALS --out $WORK/plan_state_s$seed \
        $([ -n "${DRY:-}" ] && echo "--steps 20 --samples 16 --iterations 2 --elites 4" || echo "--steps 8000") \
        > $WORK/plan_state_s$seed.log 2>&1 &
  done
}
check_method shallow.sh || exit 2
if ! [[ ${TIME_GOALS:-2} =~ ^[0-9]+$ ]]; then
  echo "shallow.sh: TIME_GOALS=$TIME_GOALS: expected a whole number of goals (0 skips the timing)" >&2; exit 2
fi
share=${TEACHER_SHARE:-0.58}  # with ALONE=1, the teacher's share of stage 1's training time
if [ "${STAGE:-}" = 1 ] && [ -n "${KEEP:-}" ] && [ -n "$BASE" ] && [ -z "${KEEP_STUDENTS:-}" ]; then
  echo "shallow.sh: KEEP with STAGE=1 trains the kept teacher on; ARMS=\"$ARMS\" also asks for a model of" \
      "${BASE:1} blocks: give full-depth (d) arms only" >&2; exit 2
fi
if [ -n "${KEEP_STUDENTS:-}" ] && { [ -z "${ALONE:-}" ] || [ -z "$BASE" ] || [ -n "${PLAN_TEACHER:-}" ]; }; then
  echo "shallow.sh: KEEP_STUDENTS=1 distils the students of a shallow model in stage 1 and returns them without" \
      "the teacher: expected ALONE=1, i-arms (ARMS=\"$ARMS\") and no PLAN_TEACHER" >&2; exit 2
fi
if ! $PY -c "import sys; sys.exit(not 0 < float('$share') < 1)" 2>/dev/null; then
  echo "shallow.sh: TEACHER_SHARE=$share: expected a number between 0 and 1" >&2
  exit 2
fi
[ -z "$BASE" ] && KEEP_WHILE_TRAINING=1  # the teacher is returned: then also on the way (teacher_until)
case "${STAGE:?set STAGE=1, 2 or 3}" in
1) {
  margin=$($PY -c "print(int(${DISTILL_MIN:-2} * 60 + 60))")  # the students' minutes and their start
  if [ -n "${KEEP:-}" ] && [ -n "$BASE" ]; then  # KEEP_STUDENTS with a kept shallow model: the teacher has the
    # training time alone, the students start from the kept model
    restore_kept
    if ! [ -d $WORK/base_$BASE ]; then
      echo "shallow.sh: no base_$BASE in $WORK: expected KEEP=DIR with a kept ${BASE:1}-block model" \
          "(keep_models base_$BASE)"; exit 2
    fi
    teacher_budget $(( margin + 30 ))
    echo "teacher alone $minutes min; base_$BASE kept"
    train_timed teacher $minutes
    wait
    tail -1 $WORK/probe.log | cut -c1-300
  elif [ -n "${KEEP:-}" ]; then  # the kept teacher trained on (a longer teacher over two calls; no i-arm, above)
    teacher_on $([ -n "${ALONE:-}" ] && echo 25 || echo $(( margin + 30 ))) || exit 2  # 30 s: keep_models
  elif [ -z "$BASE" ]; then  # with ALONE=1 the teacher has the whole call, the students wait for stage 2
    teacher_alone $([ -n "${ALONE:-}" ] && echo 25 || echo $(( margin + 30 )))
  else
    store_and_probe
    if [ -n "${ALONE:-}" ]; then  # one after the other, each alone; the students wait for stage 2
      # (KEEP_STUDENTS: distilled at the end of this call, then kept)
      # two starts and two final validations (~20 s each); with KEEP_STUDENTS the students' minutes and start
      # and the keep (the thirtieth session ended 70 s early with 80 s for the two starts, the keep and slack)
      teacher_budget $([ -n "${KEEP_STUDENTS:-}" ] && echo $(( margin + 30 )) || echo 70)
      first=$($PY -c "print(round($minutes * $share, 2))"); second=$($PY -c "print(round($minutes * (1 - $share), 2))")
      echo "teacher alone $first min, then base_$BASE (${BASE:1} blocks) alone $second min"
      train_timed teacher $first
      train_timed base_$BASE $second model.depth=${BASE:1}
    else  # the teacher and the shallow model side by side, each decaying its rate over the minutes left
      teacher_budget $margin
      echo "teacher and base_$BASE (${BASE:1} blocks): $minutes min side by side"
      train_timed teacher $minutes &
      train_timed base_$BASE $minutes model.depth=${BASE:1} &
    fi
    wait
    tail -1 $WORK/probe.log | cut -c1-300
  fi
  # the teacher, should stage 2 get a fresh machine (kept before the students: a call cut while they distil
  # still returns it)
  [ -z "$BASE" ] && keep_models teacher
  [ -z "${ALONE:-}" ] && distil_arms
  if [ -n "${KEEP_STUDENTS:-}" ]; then  # the students now, the models' pushed block beside them; then kept
    distil_arms &
    pushed_block 4 teacher=$WORK/teacher base_$BASE=$WORK/base_$BASE
    keep_models $(for arm in $ARMS; do echo student_$arm; done)
  fi
  } 2>&1 | tee "$OUT/shallow1.log"
  [ "${PIPESTATUS[0]}" = 2 ] && exit 2  # teacher_on found no teacher to train on
  # the models' metas, the logs (the models', the probe's, without ALONE the students'), the teacher's and the
  # shallow model's run logs (every validation: which update it kept and why; the sixtieth session's kept its
  # 1,000th of 3,053 and the curve stayed on the machine), the stores' summary lines and the pushed block in one
  # archive: the device returns 8 files of $OUT in name order, and the kept parts take two or three
  cp $WORK/teacher/meta.json $WORK/teacher.meta.json
  [ -n "$BASE" ] && cp $WORK/base_$BASE/meta.json $WORK/base_$BASE.meta.json
  tar czf "$OUT/shallow1.tgz" -C $WORK \
      $(cd $WORK && ls *.meta.json *.log bme_*.json teacher_log.jsonl base_*_log.jsonl store*.json 2>/dev/null) \
      $({ [ -z "${ALONE:-}" ] || [ -n "${KEEP_STUDENTS:-}" ]; } && cd $WORK && ls student_*_log.jsonl) ;;
2) {
  restore_kept  # a fresh machine: then the probe trains beside the students (distil_arms waits for it)
  # with ALONE the students stage 1 had no room for; without, those it distilled on a machine since lost
  [ -z "${KEEP_STUDENTS:-}" ] && distil_arms $([ -z "${ALONE:-}" ] && echo missing)
  wait  # a restored probe
  set -- $ARMS
  [ -n "${STATE_MODEL:-}" ] && state_models  # on the CPU, beside what follows (the wait after the arms takes them)
  if [ "${TIME_GOALS:-2}" != 0 ]; then  # TIME_GOALS=0: no timing, the call's time all to the 50 goals
    if ! [ -d $WORK/teacher ]; then  # KEEP_STUDENTS: the teacher's solve (and a student's) with random weights
      $PY scripts/plan_time_split.py --device $DEV --out $WORK/time_split --student-depth ${BASE:1} \
          $([ -n "${DRY:-}" ] && echo "--preset tiny --teacher-depth 2 --depths 1 2 --samples 4 --repeats 1 \
--backend eager" || echo "--depths ${BASE:1} 8") > $WORK/time_split.json 2> $WORK/time_split.err
      echo "time_split: exit $?; $(cut -c1-1500 $WORK/time_split.json)"
    fi
    for name in $([ -d $WORK/teacher ] && echo teacher) student_$1 student_$2; do  # alone, one after the other
      plan_arm time_$name $WORK/$name goals=${TIME_GOALS:-2}
      $PY -c "import json; [a] = json.load(open('$WORK/plan_time_$name.json'))['arms'].values(); \
print('$name', {k: a.get(k) for k in ('goals', 'replan_ms_median', 'replan_ms_p90', 'model')})"
    done
  fi
  for arm in $PLANNED; do plan $arm 0 a & done
  wait
  $PY scripts/plan_goal_pairs.py $(for arm in $PLANNED; do echo $WORK/plan_${arm}_a/*.goals.jsonl; done)
  if [ -n "${STATE_MODEL:-}" ]; then
    for seed in 0 1; do echo "plan_state_s$seed: $(tail -1 $WORK/plan_state_s$seed.log | cut -c1-400)"; done
  fi
  } 2>&1 | tee "$OUT/shallow2.log"
  tar czf "$OUT/shallow2.tgz" -C $WORK $(cd $WORK && ls -d plan_* distill_*.log student_*_log.jsonl time_split* \
      2>/dev/null) ;;
3) for arm in $PLANNED; do  # stage 2's part of every arm, on this machine: a fresh one has none to resume
    if ! ls $WORK/plan_${arm}_a/*.goals.jsonl >/dev/null 2>&1; then
      echo "shallow.sh: no stage-2 goals of arm $arm in $WORK (a fresh machine?): stage 3 resumes stage 2's" \
          "arms on its machine; run stage 2 again" >&2
      exit 2
    fi
  done
  {
  resume_and_join
  set -- $ARMS
  if [ $(left) -gt 90 ]; then  # the held-out pushed block of the first two arms, while time allows
    pushed_block 2 $1=$WORK/student_$1 $2=$WORK/student_$2
  fi
  if [ $(left) -gt 60 ]; then  # and of the model the students started from: the shallow one, or the teacher
    if [ -n "${KEEP_STUDENTS:-}" ]; then :  # measured in stage 1, and not kept
    elif [ -n "$BASE" ]; then pushed_block 4 base_$BASE=$WORK/base_$BASE; else pushed_block 4 teacher=$WORK/teacher; fi
  fi
  } 2>&1 | tee "$OUT/shallow3.log"
  tar czf "$OUT/shallow3.tgz" -C $WORK joined $(cd $WORK && ls -d plan_* bme_*.json 2>/dev/null) ;;
*) echo "shallow.sh: unknown STAGE=$STAGE (expected 1, 2 or 3)" >&2; exit 2 ;;
esac
ls -la "$OUT"
