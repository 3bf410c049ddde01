# Sourced by the PushT planning studies (teacher_pair.sh, which augment.sh runs; replan.sh; shallow.sh) right
# after setup.sh, with STUDY (the study's name) and RATE (teacher updates/s) set: the settings they share,
# then the pieces they share.
# A study adds its own settings after (PLAN's replan interval, ARMS, ...); its functions may use the pieces.
# Env: CALL_S (seconds the call may take, 570, counted from setup.sh's start, CALL_T0), WORK (/root/work; with
# DRY=1 outputs/$STUDY_dry), SIZE (the frames' side in pixels, 64; a study at another size sets the teacher's
# model.patch to keep its token grid). DRY=1 swaps in toy sizes on the CPU; DRY_STORE (with DRY=1) copies in an
# earlier rehearsal's store and probe. GOALS_EVERY (20): whole seconds between the copies of the planned goals to
# $OUT (goals_so_far), for a call killed before its end.
# PROBE_FROM: a carried probe folder (`crcm train probe` out=) used in place of training one, so that the pushed
# block's errors pair with files read by that probe elsewhere (scripts/compare_block_errors.py).
# KEEP: a carried folder of keep.tgz.part* (what keep_models returned from an earlier call); a call that finds
# no store on its machine (the warm one was lost) makes the store and probe again and unpacks the kept models.
# STORE_EPISODES: the teachers and students train on a store grown to this many episodes of the same generator
# and seed (more than the planning store's 500); its first 500 are checked to be the planning store's, step for
# step, and the split is drawn over them alone (data.split_first_episodes), so the held-out episodes and the goals
# stay the 500-episode store's. The state probe is trained on the 500-episode store as before (the planner's cost
# and the pushed block's yardstick stay the earlier sessions' recipe). Give it to every call of a study: a call
# without it on a machine whose store was grown is refused (WORK/store_episodes says how far it was grown).
# The pieces expect PY (setup.sh); resume_and_join, the study's ARMS and `plan`; distil_student, METHOD
# (causal_rcm), DISTILL_MIN and DISTILL_ARGS if set.
set +e -o pipefail
T0=${CALL_T0:-$(date +%s)}; left() { echo $(( ${CALL_S:-570} - $(date +%s) + T0 )); }
WORK=${WORK:-$([ -n "${DRY:-}" ] && echo outputs/${STUDY:?}_dry || echo /root/work)}
DEV=cuda; PRESET=small; GOALS=50; EPISODES=${EPISODES:-20}  # EPISODES: held-out episodes for the pushed block
BASE_EPISODES=500; DATA="episodes=$BASE_EPISODES min_steps=180 max_steps=300"; PROBE_STEPS=4000
PLAN="planner.mode=delta planner.probe_position_unit=20 planner.probe_angle_unit=0.349"
if [ -n "${DRY:-}" ]; then
  DEV=cpu; PRESET=tiny; GOALS=2; RATE=2; EPISODES=2
  BASE_EPISODES=12; DATA="episodes=$BASE_EPISODES min_steps=80 max_steps=100 workers=2"; PROBE_STEPS=60
  PLAN="$PLAN planner.samples=16 planner.iterations=2 planner.elites=4 budget=10"
fi
SIZE=${SIZE:-64}
if ! [[ $SIZE =~ ^[1-9][0-9]*$ ]] || (( SIZE % 16 )); then
  echo "pusht_study.sh: SIZE=$SIZE: expected the frames' side in pixels, a multiple of 16 (64, 128)" >&2; exit 2
fi
GOALS_EVERY=${GOALS_EVERY:-20}
if ! [[ $GOALS_EVERY =~ ^[1-9][0-9]*$ ]]; then
  echo "pusht_study.sh: GOALS_EVERY=$GOALS_EVERY: expected whole seconds between the copies of the planned goals (20)" >&2
  exit 2
fi
STORE_EPISODES=${STORE_EPISODES:-}
if [ -n "$STORE_EPISODES" ] && ! { [[ $STORE_EPISODES =~ ^[1-9][0-9]*$ ]] && (( STORE_EPISODES > BASE_EPISODES )); }; then
  echo "pusht_study.sh: STORE_EPISODES=$STORE_EPISODES: expected a whole number of episodes above the planning" \
      "store's $BASE_EPISODES (or none)" >&2
  exit 2
fi
BASE_STORE=$WORK/pusht$SIZE.zarr; PROBE=$WORK/probe
# the store every model trains on, and the override that holds out the base store's episodes of it
STORE=$BASE_STORE; SPLIT=
if [ -n "$STORE_EPISODES" ]; then
  STORE=$WORK/pusht${SIZE}_${STORE_EPISODES}ep.zarr; SPLIT=data.split_first_episodes=$BASE_EPISODES
fi
if [ -f $WORK/store_episodes ] && [ "$(cat $WORK/store_episodes)" != "$STORE_EPISODES" ]; then
  echo "pusht_study.sh: STORE_EPISODES=${STORE_EPISODES:-(none)}, but this machine's study trained on a store grown" \
      "to $(cat $WORK/store_episodes) episodes: expected STORE_EPISODES=$(cat $WORK/store_episodes) (or remove" \
      "$WORK/store_episodes to start another study)" >&2
  exit 2
fi
# the 64x64 planning store's content hash (store.content_hash) as every GPU planning run since the eleventh
# session built it, and the CPU copies of it (outputs/s38/pusht64.zarr); none to check against at other sizes or
# in a rehearsal, unless given
PLANNING_STORE_HASH=${PLANNING_STORE_HASH-$([ $SIZE = 64 ] && [ -z "${DRY:-}" ] && echo cb876890e4644991)}
check_patches() {  # SCRIPT PATCHES: every patch side (of a study that sets model.patch) a whole number of pixels
  # that divides the frames' SIZE, else the SCRIPT's one-line refusal and status 2
  local patch
  for patch in $2; do
    if ! [[ $patch =~ ^[1-9][0-9]*$ ]] || (( SIZE % patch )); then
      echo "$1: PATCHES=\"$2\": expected patch sides in pixels that divide the frames' $SIZE" >&2; return 2
    fi
  done
}
if [ -n "${DRY:-}" ] && [ -n "${DRY_STORE:-}" ] && ! { [ -d "$DRY_STORE/pusht$SIZE.zarr" ] && [ -d "$DRY_STORE/probe" ]; }; then
  echo "pusht_study.sh: DRY_STORE=$DRY_STORE: expected an earlier rehearsal's WORK (pusht$SIZE.zarr and probe in it)" >&2
  exit 2
fi
if [ -n "${KEEP:-}" ] && ! ls "$KEEP"/keep.tgz.part* >/dev/null 2>&1; then
  echo "pusht_study.sh: KEEP=$KEEP: expected a carried folder of keep.tgz.part* from an earlier call's keep_models" >&2
  exit 2
fi
# The 13,000-update teacher's recipe, with the training noise moved up: objective.p_mean=0.4 (the preset's
# -0.8 before the twenty-first session) held 0.48 of 50 goals against 0.32 at the same 5,100 updates, +1.2 dB;
# 1.0 (twenty-third session, one seed) held 0.64 against 0.4's 0.48, +0.9 dB; 1.6 (twenty-fourth session)
# held 0.66 against 1.0's 0.56 at seed 0 (1.0 held 0.64 at seed 1), its pushed block 34° off in angle against
# 47° (teacher_pair.sh, docs/results.md). A later setting of the same key wins.
RECIPE="data.frame_skip=5 optim.lr_schedule=wsd optim.decay_fraction=0.25 objective.p_mean=1.6"
if [ -n "${PROBE_FROM:-}" ] && ! [ -f "$PROBE_FROM/probe.safetensors" ]; then
  echo "pusht_study.sh: PROBE_FROM=$PROBE_FROM: expected a carried state probe folder (probe.safetensors in it)" >&2
  exit 2
fi
mkdir -p $WORK

json_value() {  # FILE KEY: the top-level KEY of the JSON FILE, or nothing where the file or key is missing
  $PY -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2" 2>/dev/null
}

make_store() {  # the mixed 500-episode store (seed 0: the planning store's episodes on most machines, not all,
  # below); its summary line kept as $WORK/store.json; then, with STORE_EPISODES, the grown store
  if [ -n "${DRY:-}" ] && [ -n "${DRY_STORE:-}" ]; then  # a rehearsal's store made once, copied in
    rm -rf $BASE_STORE && cp -r $DRY_STORE/pusht$SIZE.zarr $BASE_STORE && echo "store copied from $DRY_STORE"
    [ -z "$STORE_EPISODES" ] || grow_store
    return
  fi
  local hash
  crcm data pusht out=$BASE_STORE size=$SIZE seed=0 behavior=mixed overwrite=true $DATA | tail -1 \
      | tee $WORK/store.json
  echo "store at $(( $(date +%s) - T0 )) s"
  # The same generator and seed build other episodes on some machines (the forty-fourth and forty-fifth
  # sessions' H100s: contact fraction 0.453 against 0.448; the forty-fifth's content hash f27e6a5ac21a5575; the
  # CPU's name does not tell which: the forty-sixth session's H200 named the same CPU and built the planning
  # store): said at once, since such a call's held-out blocks and goals do not pair with earlier sessions'
  # (compare_block_errors.py and plan_goal_pairs.py refuse them)
  hash=$(json_value $WORK/store.json content_hash)
  if [ -z "$hash" ]; then  # not a mismatch to report: the generator failed (its error is above)
    echo "store: crcm data gave no summary line with a content hash ($WORK/store.json); see its error above" >&2
  elif [ -n "$PLANNING_STORE_HASH" ] && [ "$hash" != "$PLANNING_STORE_HASH" ]; then
    echo "store: content hash $hash, not the planning store's $PLANNING_STORE_HASH ($(cpu_model)): its held-out" \
        "windows and goals are other episodes than earlier sessions'; compare this call's figures unpaired"
  fi
  [ -z "$STORE_EPISODES" ] || grow_store
}

grow_store() {  # the store of STORE_EPISODES episodes (the generator writes episode e from its own seed, so its
  # first ones are the base store's), its summary line kept as $WORK/store_grown.json; exit 2 unless it was made
  # and its first BASE_EPISODES episodes are the base store's: episode ends, actions and states step for step
  # (the frames are renders of the states) and their last frame (their held-out episodes would not be the goals'
  # otherwise)
  if ! crcm data pusht out=$STORE size=$SIZE seed=0 behavior=mixed overwrite=true $DATA episodes=$STORE_EPISODES \
      | tail -1 | tee $WORK/store_grown.json || [ -z "$(json_value $WORK/store_grown.json content_hash)" ]; then
    echo "pusht_study.sh: growing the store to $STORE_EPISODES episodes at $STORE failed (see above)" >&2; exit 2
  fi
  echo "grown store at $(( $(date +%s) - T0 )) s"
  $PY - $BASE_STORE $STORE $BASE_EPISODES <<'PY'
import sys

import numpy as np

from crcm_robotics.data.store import TrajectoryStore

base, grown, n = TrajectoryStore(sys.argv[1]), TrajectoryStore(sys.argv[2]), int(sys.argv[3])
if base.num_episodes != n:
    sys.exit(f"grown store: the base store has {base.num_episodes} episodes, not {n}")
end = int(base.episode_ends[-1])
same = (grown.num_episodes > n and np.array_equal(grown.episode_ends[:n], base.episode_ends)
        and np.array_equal(grown.action(0, end), base.action()) and np.array_equal(grown.state(0, end), base.state())
        and np.array_equal(grown.frames(end - 1, end), base.frames(end - 1, end)))
print(f"grown store: its first {n} episodes {'are' if same else 'are NOT'} the base store's")
sys.exit(0 if same else 3)
PY
  local status=$?
  if [ $status = 3 ]; then
    echo "pusht_study.sh: $STORE: its first $BASE_EPISODES episodes differ from $BASE_STORE's; not training on it" >&2
    exit 2
  elif [ $status != 0 ]; then
    echo "pusht_study.sh: could not compare $STORE with $BASE_STORE (exit $status, above)" >&2; exit 2
  fi
  echo $STORE_EPISODES > $WORK/store_episodes
}

store_and_probe() {  # the store, then the state probe started in the background (or PROBE_FROM's copied)
  make_store
  if [ -n "${PROBE_FROM:-}" ]; then
    rm -rf $PROBE && cp -r "$PROBE_FROM" $PROBE && echo "probe copied from $PROBE_FROM" > $WORK/probe.log
    cat $WORK/probe.log; return
  fi
  if [ -n "${DRY:-}" ] && [ -n "${DRY_STORE:-}" ]; then  # and the rehearsal's probe
    rm -rf $PROBE && cp -r $DRY_STORE/probe $PROBE && cp $DRY_STORE/probe.log $WORK/probe.log
    echo "probe copied from $DRY_STORE"; return
  fi
  train_probe $PROBE 0
  PROBE_PID=$!
}

train_probe() {  # OUT SEED: the study's state probe recipe (PROBE_STEPS updates on the store) at SEED into OUT,
  # in the background, its log OUT.log; the caller takes the PID from $!
  crcm train probe data.path=$BASE_STORE out=$1 device=$DEV steps=$PROBE_STEPS seed=$2 progress=false \
      $([ -n "${DRY:-}" ] && echo batch_size=32 width=8) > $1.log 2>&1 &
}

probe_ready() {  # the probe store_and_probe started in the background waited for, before anything that reads
  # it while training (a teacher's state-probe loss: objective.state_probe), or exit 2 where none was made
  [ -n "${PROBE_PID:-}" ] && wait $PROBE_PID
  if ! [ -f $PROBE/probe.safetensors ]; then
    echo "pusht_study.sh: no state probe at $PROBE after its training: $(tail -1 $WORK/probe.log 2>/dev/null)" >&2
    exit 2
  fi
  echo "probe ready at $(( $(date +%s) - T0 )) s"
}

teacher_budget() {  # MARGIN: sets minutes (what the call has left but MARGIN seconds) and steps (at RATE)
  minutes=$($PY -c "print(round(max(0.2, ($(left) - $1) / 60), 2))")
  steps=$($PY -c "print(max(4, int($minutes * 60 * $RATE)))")
}

train_model() {  # NAME [OVERRIDES...]: a model of the recipe on the store into $WORK/NAME, its log beside it
  local name=$1; shift
  crcm train teacher preset=$PRESET data.path=$STORE $SPLIT $RECIPE train.out=$WORK/$name train.progress=false \
      train.device=$DEV "$@" > $WORK/$name.log 2>&1
  echo "$name: exit $? at $(( $(date +%s) - T0 )) s; $(tail -1 $WORK/$name.log | cut -c1-600)"
}

teacher_alone() {  # [MARGIN]: store, probe beside it, then one teacher (RECIPE) alone on the GPU until MARGIN
  # seconds (25) are left
  store_and_probe
  teacher_until ${1:-25}
}

teacher_until() {  # MARGIN [OVERRIDES...]: the teacher (RECIPE) alone on the GPU until MARGIN seconds are left,
  # then the probe training beside it waited for; with KEEP_WHILE_TRAINING=1 (a study that returns the teacher)
  # what its validations keep returned on the way (start_keeping). Its rate decays by the clock (train_timed): the
  # sixtieth session's teacher, sized by RATE=10.5 to 3,263 updates, ran 9.8 a second beside the probe and was
  # stopped by its minutes at 3,053, before its decay had ended
  local margin=$1; shift
  teacher_budget $margin
  echo "teacher: at most $minutes min, its rate decayed by the clock${*:+, $*}"
  [ -n "${KEEP_WHILE_TRAINING:-}" ] && start_keeping teacher
  train_timed teacher $minutes "$@"
  [ -n "${KEEP_WHILE_TRAINING:-}" ] && stop_keeping teacher
  wait
  tail -1 $WORK/probe.log | cut -c1-300
}

set_aside() {  # NAME: the kept model NAME (restore_kept; on a warm machine, the one already in WORK) moved to
  # NAME_before, for a run that trains on from its weights
  restore_kept
  if ! [ -d $WORK/$1 ]; then
    echo "pusht_study.sh: no $1 in $WORK to train on: expected KEEP=DIR with a kept $1" >&2; return 2
  fi
  rm -rf $WORK/${1}_before && mv $WORK/$1 $WORK/${1}_before
  # and its run log, which the trainer appends to: the run on starts its own (the one stage 1 returns)
  if [ -f $WORK/${1}_log.jsonl ]; then mv $WORK/${1}_log.jsonl $WORK/${1}_before_log.jsonl; fi
}

teacher_on() {  # [MARGIN]: the kept teacher trained on from its weights (init=: a new optimizer and rate
  # schedule, the recipe run again) alone on the GPU until MARGIN seconds (25) are left; the earlier teacher stays
  # as teacher_before
  set_aside teacher || return 2
  teacher_until ${1:-25} init=$WORK/teacher_before
}

model_on() {  # NAME MARGIN [OVERRIDES...]: the kept model NAME (a shallow one: model.depth=... among the
  # OVERRIDES) trained on from its weights alone on the GPU until MARGIN seconds are left, its rate decayed by the
  # clock (train_timed: its update rate is not RATE); the earlier one stays as NAME_before; a restored probe waited for
  local name=$1 margin=$2; shift 2
  set_aside $name || return 2
  teacher_budget $margin
  echo "$name on: $minutes min from ${name}_before${*:+, $*}"
  train_timed $name $minutes init=$WORK/${name}_before "$@"
  wait
}

train_timed() {  # NAME MINUTES [OVERRIDES...]: a model of the recipe trained for MINUTES, its rate decayed
  # over the last quarter of them by the clock (wsd_time: runs sharing the GPU do not know their update rate).
  # The MINUTES count from now, its setup included (train.stop_at): the sixty-third session's teacher, 2.23 min
  # on a 3,000-episode store, spent about 80 s loading it before its clock started; the call was killed at 600 s
  local name=$1 minutes=$2; shift 2
  train_model $name optim.lr_schedule=wsd_time train.steps=$([ -n "${DRY:-}" ] && echo 4 || echo 1000000) \
      train.max_minutes=$minutes train.stop_at=$($PY -c "import time; print(round(time.time() + $minutes * 60))") \
      "$@"
}

check_method() {  # SCRIPT: METHOD (causal_rcm where unset) one of distill's methods, else the SCRIPT's one-line
  # refusal and status 2 (one interpreter start)
  $PY -c "import sys; from distill.run import METHODS; m = '${METHOD:-causal_rcm}'; m in METHODS or \
sys.exit(f'$1: METHOD={m}: expected one of {\" \".join(METHODS)}')" || return 2
}

distil_student() {  # NAME SEED [OVERRIDES...]: a 2-step student (METHOD, Causal-rCM by default) of $WORK/teacher
  # (or DISTIL_TEACHER) into $WORK/student_NAME for DISTILL_MIN minutes (2), validation (PSNR plus the pusher)
  # keeping its weights; its log distill_NAME.log
  local name=$1 seed=$2; shift 2
  crcm distill ${METHOD:-causal_rcm} teacher=${DISTIL_TEACHER:-$WORK/teacher} preset=$PRESET data.path=$STORE $SPLIT \
      train.seed=$seed train.validation.select=psnr_pusher ${DISTILL_ARGS:-} "$@" \
      train.max_minutes=${DISTILL_MIN:-2} train.out=$WORK/student_$name train.progress=false \
      $([ -n "${DRY:-}" ] && echo train.steps=4) \
      > $WORK/distill_$name.log 2>&1
  echo "student_$name: exit $? at $(( $(date +%s) - T0 )) s; $(tail -1 $WORK/distill_$name.log | cut -c1-500)"
}

goals_so_far() {  # every goal line under $WORK/plan_*/ so far, as $OUT/zz_goals_so_far.tgz, each GOALS_EVERY
  # seconds until the call's shell ($$) ends. The device kills a call at its own limit, which is less than CALL_S
  # where the session's device time runs low: the fifty-seventh session's last call (CALL_S=470) was killed at
  # 404 s with a teacher's planned goals in $WORK, and none came back. What is under $OUT comes back even then.
  # (A killed shell stays a zombie until its parent reaps it, so the shell counts as ended at Z too. The copy
  # holds none of the call's output open, or a parent that reads it to the end would wait on the copy. The
  # archive is renamed into place, so a kill mid-copy leaves the last whole one; its name sorts last, as the
  # device returns 8 files of $OUT in name order and a study's own files come first.)
  local files own=$WORK/goals_so_far_$BASHPID.tgz  # this copy's archive (one copy a call: plan_arm's mark)
  while sleep $GOALS_EVERY && [ -r /proc/$$/status ] \
      && ! grep -q '^State:[[:space:]]*Z' /proc/$$/status 2>/dev/null; do
    files=$(cd $WORK && ls plan_*/*.goals.jsonl 2>/dev/null) || continue
    tar czf $own -C $WORK $files && cp $own "$OUT"/zz_goals_so_far.part \
        && mv -f "$OUT"/zz_goals_so_far.part "$OUT"/zz_goals_so_far.tgz
  done
}
rm -rf $WORK/.goals_so_far_$$  # a mark left by an earlier shell of this PID (WORK outlives a call on a warm machine)

plan_arm() {  # NAME CKPT [OVERRIDES...]: the model arm on the held-out goals, cut 15 s before the call ends;
  # FIDELITY: its fidelity figures on that many first goals (0: none). The first arm of a call starts
  # goals_so_far (arms run side by side: the mark, made once, says it runs)
  local name=$1 ckpt=$2; shift 2
  mkdir $WORK/.goals_so_far_$$ 2>/dev/null && ( goals_so_far > /dev/null 2>&1 & )  # not a child: `wait` skips it
  timeout $(( $(left) - 15 )) $PY -m crcm_robotics.cli bench plan $ckpt arms=[model] goals=$GOALS probe=$PROBE \
      device=$DEV backend=$([ $DEV = cuda ] && echo cuda_graph || echo eager) gifs=0 progress=false \
      fidelity_goals=${FIDELITY:-0} $PLAN "$@" out=$WORK/plan_$name > $WORK/plan_$name.json 2> $WORK/plan_$name.err
  echo "plan_$name: exit $? at $(( $(date +%s) - T0 )) s, $(cat $WORK/plan_$name/*.goals.jsonl 2>/dev/null | wc -l) goals"
}

resume_and_join() {  # each arm of PLANNED (or ARMS) cut in part a resumed as part b (the caller's
  # `plan ARM FIRST_GOAL PART`), the parts joined (one arm, one file, in $WORK/joined: the arm `teacher` as
  # teacher.goals.jsonl, any other as student.goals.jsonl, so the comparison names the model) and compared goal by goal
  local kind
  for arm in ${PLANNED:-$ARMS}; do
    done_goals=$(cat $WORK/plan_${arm}_a/*.goals.jsonl 2>/dev/null | wc -l)
    [ "$done_goals" -lt $GOALS ] && plan $arm $done_goals b &
  done
  wait
  for arm in ${PLANNED:-$ARMS}; do  # an earlier study's joined arm on a warm machine is not this one's
    kind=$([ $arm = teacher ] && echo teacher || echo student)
    rm -rf $WORK/joined/$arm && mkdir -p $WORK/joined/$arm \
        && cat $WORK/plan_${arm}_*/*.goals.jsonl > $WORK/joined/$arm/$kind.goals.jsonl
  done
  $PY scripts/plan_goal_pairs.py $(for arm in ${PLANNED:-$ARMS}; do echo $WORK/joined/$arm/*.goals.jsonl; done)
}

pushed_block() {  # STEPS NAME=CKPT[@last][+gW]...: each checkpoint's held-out pushed block side by side
  # (scripts/block_motion_error.py at STEPS sampler steps, with --render-check: whether the block is drawn solid
  # or as a cloud, forty-eighth session) into $WORK/bme_NAME.json, every frame's errors into
  # $WORK/bme_NAME.npz (for compare_block_errors.py), cut 5 s before the end; on the weights validation kept
  # (CKPT/selected, where it kept some), with @last on the run's final ones; +gW samples with classifier-free
  # action guidance W (a teacher trained with model.action_null). Status 1 where a run failed or was
  # cut (no JSON line). The bare `wait` also waits for the caller's own background jobs (shallow.sh's students)
  local steps=$1 item ckpt guide status=0; shift
  for item in "$@"; do
    ckpt=${item#*=}; guide=
    if [[ $ckpt == *+g* ]]; then guide=${ckpt##*+g}; ckpt=${ckpt%+g*}; fi
    timeout $(( $(left) - 5 )) $PY scripts/block_motion_error.py ${ckpt%@last} $STORE $PROBE --steps $steps \
        --episodes $EPISODES --split val --device $DEV $([ "$ckpt" != "${ckpt%@last}" ] && echo --weights last) \
        ${guide:+--guidance $guide} --errors-out $WORK/bme_${item%%=*}.npz --render-check \
        > $WORK/bme_${item%%=*}.json &
  done
  wait
  for item in "$@"; do
    echo "bme_${item%%=*}: $(cut -c1-900 $WORK/bme_${item%%=*}.json)"
    [ -n "$(json_value $WORK/bme_${item%%=*}.json update)" ] || status=1
  done
  return $status
}

keep_models() {  # NAME[@last]...: each model's loaded weights (selected/ where validation kept some, else, or
  # with @last, the run's final ones; no train_state.pt) as $OUT/keep.tgz.part00... of at most 15 MiB (the device
  # returns 8 files of 16 MiB): carried back as KEEP, they let a later call go on where the warm machine was
  # lost. Not the probe (4 MiB, made again in 44 s): a call carries 64 MiB, and the tracked tree, the wheels and
  # a `small` teacher come to ~67 MB (docs/results.md, twenty-fifth session)
  local item name keep=$WORK/keep
  for item in "$@"; do  # every name checked before an earlier keep is removed: a typo loses nothing
    if ! [ -d $WORK/${item%@last} ]; then
      echo "pusht_study.sh: keep_models: no ${item%@last} in $WORK: expected the name of a model trained there" >&2
      return 2
    fi
  done
  rm -rf $keep && mkdir -p $keep
  for item in "$@"; do
    name=${item%@last}
    if [ "$item" = "$name" ] && [ -d $WORK/$name/selected ]; then cp -r $WORK/$name/selected $keep/$name || return 1
    else { mkdir -p $keep/$name && cp -r $WORK/$name/. $keep/$name && rm -rf $keep/$name/selected; } || return 1; fi
    rm -f $keep/$name/train_state.pt
  done
  # packed into $OUT under other names, then renamed over the earlier keep (no part of which is left to join this
  # one), as goals_so_far renames its archive: a call killed while it packs still returns the last whole keep, and
  # one killed between the earlier keep's removal and the renames (a few milliseconds) returns none
  local part
  rm -f "$OUT"/keep.tgz.next* && tar czf - -C $keep . | split -b 15M -d - "$OUT/keep.tgz.next" || return 1
  rm -f "$OUT"/keep.tgz.part* || return 1
  for part in "$OUT"/keep.tgz.next*; do mv $part "$OUT/keep.tgz.part${part##*.next}" || return 1; done
  echo "kept $*: $(du -sh $keep | cut -f1) in $(ls "$OUT"/keep.tgz.part* | wc -l) parts"
}

start_keeping() {  # NAME: keep_while_training NAME in the background (KEEPER_PID), only weights validation keeps
  # from now on counting (on a warm machine an earlier run's selected/ is there until the new run removes it)
  rm -f $WORK/.stop_keeping_$1 && touch $WORK/.kept_while_training_$1
  keep_while_training $1 & KEEPER_PID=$!
}

keep_while_training() {  # NAME: until stop_keeping NAME, the weights validation keeps in NAME's run
  # ($WORK/NAME/selected) returned as keep_models returns them, each time a validation keeps new ones (looked for
  # every second; start it with start_keeping). The device's limit counts the machine's start: the fifty-ninth
  # session's call, 560 s asked with 614 s of budget, was killed at 527 s, before the teacher it had trained on for
  # about 7.5 minutes was kept, and the teacher was lost. With this, a killed call returns the run as far as its
  # last kept validation (its meta.json says the update)
  local name=$1 mark=$WORK/.kept_while_training_$1 meta=$WORK/$1/selected/meta.json
  while sleep 1 && ! [ -e $WORK/.stop_keeping_$name ]; do
    if [ -f $meta ] && [ $meta -nt $mark ]; then
      touch $mark
      if keep_models $name > /dev/null 2>&1; then
        echo "kept $name while it trains: update $($PY -c \
"import json; print(json.load(open('$WORK/keep/$name/meta.json'))['step'])" 2>/dev/null) at $(( $(date +%s) - T0 )) s"
      else  # a copy cut by the run's own save (it moves selected/ aside for a moment): tried again
        touch -d @0 $mark
      fi
    fi
  done
}

stop_keeping() {  # NAME: keep_while_training NAME stopped, waited for (a keep under way is finished)
  touch $WORK/.stop_keeping_$1
  wait $KEEPER_PID 2>/dev/null
}

restore_kept() {  # with KEEP and no store here (a fresh machine): the store made again, the probe trained
  # again in the background (the caller waits), the kept models unpacked into WORK; else nothing
  [ -z "${KEEP:-}" ] || [ -d $STORE ] && return 0
  store_and_probe
  cat "$KEEP"/keep.tgz.part* | tar xzf - -C $WORK
  echo "kept models restored from $KEEP"
}
