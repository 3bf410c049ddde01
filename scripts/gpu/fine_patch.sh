# Issue 12, the pushed block's position at a finer token grid. The `small` teacher cuts a 64x64 frame into 8x8
# patches (64 tokens), so a token spans 64 env units while the planner needs the block within ~10 (docs/results.md,
# "The error plane"). Each of PATCHES (4: 4x4 patches, 256 tokens a frame, ~5x the compute of an update) is a
# 64x64 pixel teacher of the planning recipe trained alone on the GPU for STEPS updates (2,400: the length of the
# recorded 8x8-patch rows of the twenty-fourth and twenty-eighth sessions), across calls on one warm machine:
# a call cut by its time saves the run, and the next goes on exactly where it stopped (train.resume). A teacher
# with all its updates gets its held-out pushed block (scripts/block_motion_error.py, DDIM 4), to set beside
# those rows. Issue the next call at once (the machine idles out in ~30 s); one that lost the machine starts over.
#   thirty-eighth session: CALL_S=585 bash scripts/gpu/fine_patch.sh, repeated until it reports the block
#   thirty-ninth session (one H100, the budget's rest): PATCHES="4 8" STEPS=1500 CALL_S=585 (then 560) twice, and
#   PATCHES=8 SEED=1 STEPS=1500 CALL_S=250 (then 150) twice; figures in docs/results.md, "A finer token grid on the GPU"
#   forty-sixth session (one H200): STEPS=2800 PROBE_FROM=outputs/s39/probe EPISODES=50, CALL_S=585 then 580, then
#   KEEP_MODELS=0 STUDENTS=0 (29 goals); figures in docs/results.md, "A 4 x 4-patch teacher trained to 2,800 updates"
#   forty-seventh session (one H100): SIZE=128 PATCHES=8 EPISODES=50 (its own 128 x 128 probe), STEPS=2800 CALL_S=585
#   (1,128 updates at 2.5 a second), then STEPS=2200 (the budget's length), then KEEP_MODELS=0 STUDENTS=0 (37 goals);
#   figures in docs/results.md, "128 x 128 frames in 8 x 8 patches"
# DIMS sets the network's width instead (the fortieth session: a wider network at the preset's 64 tokens, against
# the finer grid's 4x compute an update): each patch is trained at each width, the heads as many as keep the
# preset's head size (64), named teacher_p<patch>_d<dim>_s<seed> (the preset's width keeps teacher_p<patch>_s<seed>).
#   fortieth session (one H100): PATCHES=8 STEPS=1500 PROBE_FROM=outputs/s39/probe EPISODES=50 KEEP_MODELS=0 with
#   DIMS=512, then DIMS="640 320", then DIMS=640 SEED=1 STEPS=2800 (two calls), carrying the thirty-ninth session's
#   CPU probe so that the errors pair with its files; figures in docs/results.md, "A wider network"
#   forty-first session (one H100): the same with DIMS=640 SEED=0 STEPS=5400 CALL_S=585 (lost: it ran past 600 s,
#   since fixed), again at CALL_S=540 (3,021 updates), then STEPS=4000 CALL_S=480 (a run resumed at a shorter
#   STEPS decays from there: optim.lr_schedule=wsd reads train.steps); figures in docs/results.md, "Width 640
#   trained on"
# STUDENTS (seeds, e.g. "0"; one patch and one width only) goes on from the scored teacher to its 2-step students
# (METHOD tf_scm and DISTILL_MIN 1.5 minutes, as the recorded full-depth students of the thirty-third session that
# held 0.78 / 0.70 / 0.74), each distilled and planned on the 50 held-out goals (the benchmark's
# planner, replanning every 10 env steps, the probe's cost), across calls: a call distils a student only with its
# minutes and 90 s to spare, plans the goals it has time for, and the next call plans on from the first goal not
# finished (first_goal=); PLAN_TEACHER=1 plans the teacher after them. Once a model has all its goals, the
# parts are joined into plan_<model>.goals.jsonl and compared (scripts/plan_goal_pairs.py). The chain for a wide
# teacher that cannot cross sessions (118 MiB at width 640): train, score, distil and plan on one warm machine,
# e.g. (forty-second session, one H100: 3,102 updates in the first call; the rest, the block, the student and its
# 50 goals in the second; STUDENTS=1 CALL_S=560 in the third; 1,531 device seconds; figures in docs/results.md,
# "Students of the 640-wide teacher")
#   PATCHES=8 DIMS=640 SEED=0 STEPS=4000 PROBE_FROM=outputs/s39/probe EPISODES=50 KEEP_MODELS=0 STUDENTS=0 CALL_S=585
#   forty-fourth session (one H100): the same with STEPS=5600, twice (3,039 updates, then the rest and the block;
#   the third call's machine was taken back before its student); figures in docs/results.md, "Width 640 trained to
#   5,600 updates"
# The teachers scored in a call come back as keep.tgz.part* (pusht_study.sh's keep_models; KEEP_MODELS=0: not,
# for widths whose weights would pass the device's 8 returned files; then their errors come back as
# bme_<name>.npz instead). Carry .whl.
# Env: PATCHES (4; "4 8" trains a patch-8 teacher of the same seed after it), DIMS (the preset's 320), SEED (0),
# STEPS (2400), CALL_S (570), WORK (/root/work), KEEP_MODELS (1), STUDENTS (none), PLAN_TEACHER (0), METHOD
# (tf_scm), DISTILL_MIN (1.5), and pusht_study.sh's PROBE_FROM and EPISODES (20). DRY=1 rehearses it on the CPU at
# toy sizes (tests/test_gpu_scripts.py), with STEPS (6) as given and DIMS in the tiny preset's head size (32).
source scripts/gpu/setup.sh
STUDY=fine_patch; RATE=2.5
PATCHES=${PATCHES:-4}; SEED=${SEED:-0}; STEPS=${STEPS:-$([ -n "${DRY:-}" ] && echo 6 || echo 2400)}
KEEP_MODELS=${KEEP_MODELS:-1}; STUDENTS=${STUDENTS:-}; PLAN_TEACHER=${PLAN_TEACHER:-0}
METHOD=${METHOD:-tf_scm}; DISTILL_MIN=${DISTILL_MIN:-1.5}
for setting in SEED STEPS; do
  if ! [[ ${!setting} =~ ^[0-9]+$ ]]; then
    echo "fine_patch.sh: $setting=${!setting}: expected a whole number" >&2; exit 2
  fi
done
[[ $KEEP_MODELS =~ ^[01]$ ]] || { echo "fine_patch.sh: KEEP_MODELS=$KEEP_MODELS: expected 1 or 0" >&2; exit 2; }
[[ $PLAN_TEACHER =~ ^[01]$ ]] || { echo "fine_patch.sh: PLAN_TEACHER=$PLAN_TEACHER: expected 1 or 0" >&2; exit 2; }
for seed in $STUDENTS; do
  [[ $seed =~ ^[0-9]+$ ]] || { echo "fine_patch.sh: STUDENTS=\"$STUDENTS\": expected student seeds" >&2; exit 2; }
done
if ! [[ $DISTILL_MIN =~ ^[0-9]+(\.[0-9]+)?$ ]]; then
  echo "fine_patch.sh: DISTILL_MIN=$DISTILL_MIN: expected minutes (a number)" >&2; exit 2
fi
DISTILL_NEED=$(awk "BEGIN { print int($DISTILL_MIN * 60) + 90 }")  # a student's minutes and 90 s to spare
if [ $PLAN_TEACHER = 1 ] && [ -z "$STUDENTS" ]; then
  echo "fine_patch.sh: PLAN_TEACHER=1 plans the teacher after its students: expected STUDENTS too" >&2; exit 2
fi
source scripts/gpu/pusht_study.sh
check_patches fine_patch.sh "$PATCHES" || exit 2
[ -z "$STUDENTS" ] || check_method fine_patch.sh || exit 2
# the preset's width and head size, read from the preset itself (small: 320 in heads of 64; tiny: 64 in 32)
read -r PRESET_DIM HEAD_SIZE < <($PY -c "from crcm_robotics.conf import compose_config
model = compose_config('config', ['preset=$PRESET'], 'crcm_robotics.conf.teacher').model
print(model.dim, model.dim // model.heads)")
DIMS=${DIMS:-$PRESET_DIM}
for dim in $DIMS; do
  if ! [[ $dim =~ ^[1-9][0-9]*$ ]] || (( dim % HEAD_SIZE )); then
    echo "fine_patch.sh: DIMS=\"$DIMS\": expected widths that are whole heads of $HEAD_SIZE" >&2; exit 2
  fi
done
if [ -n "$STUDENTS" ] && { [ $(echo $PATCHES | wc -w) != 1 ] || [ $(echo $DIMS | wc -w) != 1 ]; }; then
  echo "fine_patch.sh: STUDENTS distils one teacher: expected one patch and one width, got PATCHES=\"$PATCHES\"" \
      "DIMS=\"$DIMS\"" >&2; exit 2
fi
arm_name() {  # PATCH DIM: the teacher's name (the preset's width keeps the name it had before DIMS)
  if [ "$2" = "$PRESET_DIM" ]; then echo teacher_p$1_s$SEED; else echo teacher_p$1_d$2_s$SEED; fi
}
updates_done() {  # NAME: the updates the run in $WORK/NAME has saved (0 where there is none)
  local step; step=$(json_value $WORK/$1/meta.json step); echo ${step:-0}
}
model_goals() {  # MODEL: the per-goal lines of every call's part planned with $WORK/MODEL so far
  cat $WORK/plan_$1_from*/*.goals.jsonl 2>/dev/null
}
plan_model() {  # MODEL: the model planned from its first unfinished goal, as long as the call lasts; joined
  # once every goal is in
  local model=$1 done_goals; done_goals=$(model_goals $1 | wc -l)
  if [ "$done_goals" -lt $GOALS ]; then
    (( $(left) < 90 )) && { echo "$model: $done_goals of $GOALS goals; no time left in this call"; return 1; }
    plan_arm ${model}_from$done_goals $WORK/$model first_goal=$done_goals planner.replan_every=10
    done_goals=$(model_goals $model | wc -l)
  fi
  if [ "$done_goals" -lt $GOALS ]; then echo "$model: $done_goals of $GOALS goals: call again at once"; return 1; fi
  model_goals $model > $WORK/plan_$model.goals.jsonl
}
students_of() {  # TEACHER: its STUDENTS distilled and planned, then (PLAN_TEACHER=1) the teacher planned
  local teacher=$1 seed student planned=""
  for seed in $STUDENTS; do
    student=student_${teacher#teacher_}_seed$seed
    if ! [ -f $WORK/$student/meta.json ]; then
      if (( $(left) < DISTILL_NEED )); then echo "$student: not distilled; no time left in this call"; return; fi
      rm -rf $WORK/$student  # a distillation cut with its call
      DISTIL_TEACHER=$WORK/$teacher distil_student ${student#student_} $seed
    fi
    plan_model $student || return
    planned="$planned $WORK/plan_$student.goals.jsonl"
  done
  if [ $PLAN_TEACHER = 1 ]; then plan_model $teacher || return; planned="$planned $WORK/plan_$teacher.goals.jsonl"; fi
  $PY scripts/plan_goal_pairs.py $planned | tee $WORK/plan_pairs.txt
}
STAMP=$(date +%H%M%S); SCORED=$WORK/scored_$STAMP
scored_at() { cat $WORK/bme_$1.steps 2>/dev/null; }  # NAME: the updates its pushed block was scored at, if any
{
[ -d $STORE ] && [ -d $PROBE ] || store_and_probe
for arm in $(for patch in $PATCHES; do for dim in $DIMS; do echo $patch:$dim; done; done); do
  patch=${arm%:*}; dim=${arm#*:}; name=$(arm_name $patch $dim); done_steps=$(updates_done $name)
  if [ "$done_steps" -lt "$STEPS" ]; then
    (( $(left) < 60 )) && { echo "$name: $done_steps of $STEPS updates; no time left in this call"; break; }
    resume=""; [ "$done_steps" -gt 0 ] && [ -f $WORK/$name/train_state.pt ] && resume=train.resume=$WORK/$name
    teacher_budget 40  # the trainer's own start and save (15-25 s past its minutes), then the returns
    echo "$name: from update $done_steps${resume:+ (resumed)} to $STEPS, at most $minutes min"
    train_model $name model.patch=$patch model.dim=$dim model.heads=$(( dim / HEAD_SIZE )) train.seed=$SEED \
        train.steps=$STEPS train.max_minutes=$minutes $resume
    cat $WORK/$name.log >> $WORK/${name}_calls.log
    wait  # the probe, in the call that made it
    done_steps=$(updates_done $name)
  fi
  if [ "$done_steps" -lt "$STEPS" ]; then
    echo "$name: $done_steps of $STEPS updates: call again at once (the warm machine keeps the run)"; break
  fi
  if (( $(left) < 100 )); then echo "$name: all $STEPS updates; its pushed block in the next call"; break; fi
  # once a model: the updates it was scored at (not the block's "update", which is the selected checkpoint's)
  if [ "$(scored_at $name)" != "$done_steps" ]; then
    pushed_block 4 $name=$WORK/$name && echo $name >> $SCORED && echo $done_steps > $WORK/bme_$name.steps
  fi
done
if [ -n "$STUDENTS" ] && [ "$(scored_at $name)" = "$STEPS" ]; then students_of $name; fi
# the teachers scored in this call returned as keep.tgz.part* (carried back as KEEP=DIR, a later call plans them)
[ -f $SCORED ] && [ $KEEP_MODELS = 1 ] && keep_models $(cat $SCORED)
tail -1 $WORK/probe.log | cut -c1-300
} 2>&1 | tee "$OUT/fine_patch_$STAMP.log"
cp $WORK/bme_*.json $WORK/teacher_p*_calls.log $WORK/teacher_p*_log.jsonl "$OUT"/ 2>/dev/null
if [ -n "$STUDENTS" ]; then  # the students' logs and every plan part's lines (a cut part keeps its finished goals)
  (cd $WORK && cp distill_*.log plan_*.json plan_*.err plan_*.goals.jsonl plan_pairs.txt "$OUT"/ 2>/dev/null)
  for part in $WORK/plan_*_from*/; do
    [ -d "$part" ] && cat "$part"*.goals.jsonl > "$OUT/$(basename "$part").goals.jsonl" 2>/dev/null
  done
fi
# the errors only where no weights come back: the device returns 8 files, alphabetically, and two teachers' .npz
# beside their .json would push the kept parts out (the kept weights can be scored again elsewhere instead)
[ $KEEP_MODELS = 0 ] && cp $WORK/bme_*.npz "$OUT"/ 2>/dev/null
ls -la "$OUT"
