# GPU runs for the planning issue (12), in three calls on one warm machine (outputs persist in $WORK; issue each
# stage right after the last one: the machine idles out in ~30 s). Carry .whl, built with the PushT simulator:
#   bash /work/shared/tools/gpu_wheels.sh gym-pusht pymunk pygame shapely gymnasium farama-notifications \
#     cloudpickle cffi pycparser
#   STAGE=1  PushT store (scripted + exploration) -> state probe + frame-skip teacher; then how well the teacher
#            ranks the planner's candidates (bench plan's fidelity figures) with absolute and with delta
#            waypoints; the better mode goes to $WORK/mode for stages 2-3. Returns the teacher and probe.
#   STAGE=2  two 2-step Causal-rCM students (seeds 0, 1), the teacher's arm beside them on the GPU, while the
#            CPU cores run the random and oracle arms. Returns the students. TEACHER_FROM=DIR (a carried copy
#            of stage 1's teacher) rebuilds the store first when the machine is a fresh one.
#   STAGE=3  the students' arms, one process each, side by side on the GPU
#   STAGE=units  one call: store, probe, then the teacher trains on the GPU while the CPU runs the random and
#            oracle arms with the probe cost in the success rule's units (UNITS); then the teacher's fidelity
#            and its closed-loop arm on MODEL_GOALS goals with the same units, for what is left of CALL_S
#            seconds.
#   STAGE=long1, long2, long3  a longer teacher, in three calls (issue each right after the last): long1 builds
#            the store and probe and trains the teacher for TEACHER_MIN minutes of a STEPS-update run with the
#            wsd learning rate (constant, then decayed over the last quarter); long2 keeps those weights as
#            teacher_mid and resumes to STEPS (or TEACHER_MIN more minutes); long3 scores both on held-out
#            windows and with the planner's candidates (fidelity), runs the final teacher's closed loop on
#            MODEL_GOALS goals while a 2-step student distils (DISTILL_MIN), then the student's closed loop.
#            The probe cost is in the success rule's units (UNITS) throughout. REUSE=1: long1 keeps a
#            store and probe already in $WORK. RECIPE: extra teacher overrides for long1 and long2 (default:
#            $WORK/recipe).
#            TRAIN_MIN: with $WORK/recipe.rate and no STEPS, the run's length in minutes (long1 + long2).
#   STAGE=readout1, readout2  the probe cost read off the model's own imagination, in two calls: readout1
#            builds the store, takes the teacher TEACHER_FROM (a carried long teacher; DRY trains a tiny one),
#            distils a 2-step student (seed SEED, 0) beside a probe trained on real frames, then a probe
#            also trained on the student's imagined frames (`crcm train probe imagined.ckpt=`), and reads the
#            student's held-out predictions with both (scripts/block_motion_error.py); readout2 runs the
#            student's closed loop with each probe side by side on MODEL_GOALS goals (fidelity on 10).
#   STAGE=explore1, explore2, explore3  exploration data with and without, in three calls:
#            explore1 builds the mixed store (goals, probe) and a scripted-only store of as many episodes
#            (same seed and split: the exploring episodes become scripted ones), trains the probe on the
#            mixed store, then starts a teacher on the scripted store with the long recipe (STEPS, wsd) for
#            TEACHER_MIN minutes; explore2 resumes it to STEPS and returns it, then distils a 1-step student
#            from TEACHER_FROM (the carried long teacher, trained on the mixed store with the same recipe; DRY
#            trains a tiny one) for what is left of CALL_S; explore3 plans both teachers on the same goals
#            (goals_from: the mixed teacher's held-out episodes) with the 1-step student beside them, for
#            CALL_S seconds (a cut arm keeps its finished goals).
# Env: WORK (/root/work), EPISODES (500), FS (frame skip, 5), TEACHER_MIN (6.3), DISTILL_MIN (4), GOALS (50),
#      MODEL_GOALS (GOALS), BEHAVIOR (mixed), PLAN (extra planner overrides), BACKEND (cuda_graph), MODE (skip
#      the choice: absolute | delta), OW (oracle simulator processes, 12), LIMIT (seconds per model arm, 540).
# DRY=1 rehearses every stage on the CPU at toy sizes.
source scripts/gpu/setup.sh
set -o pipefail
$PY -c "import gym_pusht" 2>/dev/null || { echo "plan.sh: gym_pusht does not import: build .whl as above" >&2; exit 1; }
WORK=${WORK:-/root/work}; FS=${FS:-5}; GOALS=${GOALS:-50}; BACKEND=${BACKEND:-cuda_graph}; OW=${OW:-12}
LIMIT=${LIMIT:-540}; DEV=cuda
if [ -n "${DRY:-}" ]; then
  WORK=outputs/plan_dry; DEV=cpu; BACKEND=eager; OW=1
  DATA="episodes=12 min_steps=80 max_steps=100 workers=2"; PROBE="steps=60 batch_size=32 width=8"
  TEACH="preset=tiny train.steps=30"; DIST="preset=tiny train.steps=4"; GOALS=2
  PLAN=${PLAN:-"planner.samples=16 planner.iterations=2 planner.elites=4 budget=10 planner.replan_every=5"}
  FID="fidelity_goals=2 goals=2"
else
  DATA="episodes=${EPISODES:-500} min_steps=180 max_steps=300"; PROBE="steps=4000"
  TEACH="preset=small train.max_minutes=${TEACHER_MIN:-6.3} train.steps=30000"
  # keep the student whose pusher follows too (PSNR alone kept update 25 of ~165, pusher worse than copy-last)
  DIST="preset=small train.max_minutes=${DISTILL_MIN:-4} train.validation.select=${SELECT:-psnr_pusher}"
  PLAN=${PLAN:-"planner.replan_every=10"}
  FID="fidelity_goals=10 goals=10"
fi
mkdir -p "$WORK"
STORE=$WORK/pusht64.zarr; TEACHER=$WORK/teacher_fs$FS
mode() { cat $WORK/mode 2>/dev/null || echo absolute; }
# extra teacher overrides for long1/long2 (a wider network, a larger batch); by default the recipe that
# train_speed.sh CHOOSE=$WORK/recipe picked on this machine, if any
RECIPE=${RECIPE:-$(cat $WORK/recipe 2>/dev/null || true)}
UNITS=${UNITS:-"planner.probe_position_unit=20 planner.probe_angle_unit=0.349"}
# the longer teacher's recipe: the `small` preset's, for STEPS updates, the rate decayed over the last
# quarter.
# Without STEPS, a chosen recipe's measured rate sizes the run to TRAIN_MIN minutes (long1 + long2; 7% for
# validations), so that the decay fits inside the time limits.
[ -z "${STEPS:-}" ] && [ -f $WORK/recipe.rate ] && [ -n "${TRAIN_MIN:-}" ] && \
  STEPS=$($PY -c "print(int($(cat $WORK/recipe.rate) * $TRAIN_MIN * 60 * 0.93))")
LONG="train.steps=${STEPS:-8500} optim.lr_schedule=wsd optim.decay_fraction=0.25 train.validation.every=500"
[ -n "${DRY:-}" ] && LONG="train.steps=40 optim.lr_schedule=wsd optim.decay_fraction=0.25 train.validation.every=20"
LONG="$LONG train.validation.probe=$WORK/probe"
plan_arm() {  # SECONDS CKPT OUT_NAME GOALS EXTRA...: one model arm, probe cost in success units, logs in $WORK
  local limit=$1 ck=$2 name=$3 goals=$4; shift 4
  timeout $limit $PY -m crcm_robotics.cli bench plan $ck arms=[model] goals=$goals device=$DEV backend=$BACKEND \
      gifs=1 progress=false planner.mode=${MODE:-delta} out=$WORK/bench_$name $PLAN $UNITS "$@" \
      > $WORK/$name.json 2> $WORK/$name.err || true  # a timed-out arm keeps its per-goal lines
}
SSTORE=$WORK/pusht64_scripted.zarr; SCRIPTED=$WORK/teacher_scripted
carried_teacher() {  # $TEACHER from TEACHER_FROM (a carried long teacher); DRY without it trains a tiny one
  [ -d $TEACHER ] && return
  if [ -n "${DRY:-}" ] && [ -z "${TEACHER_FROM:-}" ]; then
    crcm train teacher $TEACH data.path=$STORE data.frame_skip=$FS train.out=$TEACHER train.progress=false \
        | tail -1
  else cp -r "${TEACHER_FROM:?STAGE=$STAGE needs TEACHER_FROM=DIR, a carried teacher}" $TEACHER; fi
}
scripted_teacher() {  # the long recipe on the scripted-only store; extra overrides (a resume) after
  crcm train teacher $TEACH $RECIPE $LONG data.path=$SSTORE data.frame_skip=$FS train.out=$SCRIPTED \
      train.progress=false "$@"
}
case "${STAGE:?set STAGE=1, 2, 3, units, long1..3, readout1..2 or explore1..3}" in
explore1) {
  for b in mixed scripted; do
    s=$STORE; [ $b = scripted ] && s=$SSTORE
    [ -d $s ] || crcm data pusht out=$s size=64 seed=0 behavior=$b overwrite=true $DATA | tail -1 &
  done
  wait
  carried_teacher
  crcm train probe data.path=$STORE out=$WORK/probe device=$DEV progress=false $PROBE | tail -1
  scripted_teacher > $WORK/teacher_scripted.log 2>&1
  tail -2 $WORK/teacher_scripted.log
  } 2>&1 | tee "$OUT/plan_explore1.log"
  cp $WORK/teacher_scripted_log.jsonl "$OUT/" 2>/dev/null || true ;;
explore2) {
  T0=$(date +%s); left() { echo $(( ${CALL_S:-570} - $(date +%s) + T0 )); }
  [ -f $SCRIPTED/train_state.pt ] || { echo "plan.sh explore2: no $SCRIPTED/train_state.pt (machine lost?)"
                                       exit 1; }
  scripted_teacher train.resume=$SCRIPTED >> $WORK/teacher_scripted.log 2>&1
  tail -2 $WORK/teacher_scripted.log
  echo "explore2: scripted teacher done at $(( $(date +%s) - T0 )) s"
  MIN=$($PY -c "print(round(max(0.0, ($(left) - 60) / 60), 2))")
  [ -n "${DRY:-}" ] && MIN=0.2
  if [ "$MIN" != "0.0" ]; then
    crcm distill causal_rcm teacher=$TEACHER ${DIST%% *} train.max_minutes=$MIN student_steps=1 \
        student_mid_times=[] \
        train.validation.select=psnr_pusher train.validation.probe=$WORK/probe train.out=$WORK/student1 \
        train.progress=false > $WORK/distill1.log 2>&1 || true
    tail -1 $WORK/distill1.log
  fi
  } 2>&1 | tee "$OUT/plan_explore2.log"
  cp $WORK/teacher_scripted_log.jsonl "$OUT/" 2>/dev/null || true
  tar czf $WORK/teacher_scripted.tgz -C $WORK --exclude=train_state.pt teacher_scripted
  split -b 15M $WORK/teacher_scripted.tgz "$OUT/teacher_scripted.tgz.part-" ;;
explore3) {
  T0=$(date +%s); left() { echo $(( ${CALL_S:-570} - $(date +%s) + T0 )); }
  L=$(( $(left) - 25 ))
  plan_arm $L $TEACHER plan_teacher_mixed $GOALS probe=$WORK/probe fidelity_goals=10 oracle_workers=4 &
  plan_arm $L $SCRIPTED plan_teacher_scripted $GOALS probe=$WORK/probe goals_from=$TEACHER \
      fidelity_goals=10 oracle_workers=4 &
  if [ -f $WORK/student1/meta.json ]; then
    plan_arm $L $WORK/student1 plan_student1 $GOALS probe=$WORK/probe fidelity_goals=10 oracle_workers=4 &
  fi
  wait
  for f in plan_teacher_mixed plan_teacher_scripted plan_student1; do
    [ -f $WORK/$f.json ] || continue
    echo "$f: $(tail -c 1500 $WORK/$f.json)"; tail -2 $WORK/$f.err
    echo "$f: $(cat $WORK/bench_$f/*.goals.jsonl | wc -l) goals done"
  done
  } 2>&1 | tee "$OUT/plan_explore3.log"
  tar czf "$OUT/plan_explore.tgz" -C $WORK $(cd $WORK && ls -d bench_plan_teacher_* bench_plan_student1 \
      plan_*.json plan_*.err teacher_scripted.log distill1.log probe/meta.json student1/*_log.jsonl \
      student1/meta.json 2>/dev/null) ;;
readout1) {
  T0=$(date +%s); left() { echo $(( ${CALL_S:-570} - $(date +%s) + T0 )); }
  [ -d $STORE ] || crcm data pusht out=$STORE size=64 seed=0 behavior=${BEHAVIOR:-mixed} overwrite=true \
      $DATA | tail -1
  carried_teacher
  crcm distill causal_rcm teacher=$TEACHER $DIST train.seed=${SEED:-0} train.out=$WORK/student \
      train.progress=false > $WORK/distill.log 2>&1 &
  DP=$!
  crcm train probe data.path=$STORE out=$WORK/probe device=$DEV progress=false $PROBE | tail -1
  wait $DP; tail -1 $WORK/distill.log
  echo "readout1: student done at $(( $(date +%s) - T0 )) s"
  crcm train probe data.path=$STORE out=$WORK/probe_imagined device=$DEV progress=false $PROBE \
      imagined.ckpt=$WORK/student imagined.batch=256 | tail -1
  $PY scripts/block_motion_error.py $WORK/student $STORE $WORK/probe $WORK/probe_imagined --steps 2 \
      --device $DEV > $WORK/block_motion.json
  cat $WORK/block_motion.json
  echo "readout1: probes done at $(( $(date +%s) - T0 )) s"
  } 2>&1 | tee "$OUT/plan_readout1.log"
  tar czf "$OUT/readout1.tgz" -C $WORK distill.log block_motion.json probe/meta.json \
      probe_imagined/meta.json \
      $(cd $WORK && ls student_log.jsonl 2>/dev/null) ;;
readout2) {
  T0=$(date +%s); left() { echo $(( ${CALL_S:-570} - $(date +%s) + T0 )); }
  [ -f $WORK/probe_imagined/meta.json ] || { echo "plan.sh readout2: run readout1 first (machine lost?)"
                                               exit 1; }
  for p in probe probe_imagined; do
    plan_arm $(( $(left) - 25 )) $WORK/student plan_$p ${MODEL_GOALS:-20} probe=$WORK/$p fidelity_goals=10 &
  done
  wait
  for p in probe probe_imagined; do
    echo "plan_$p: $(tail -c 1500 $WORK/plan_$p.json)"; grep -c " goal " $WORK/plan_$p.err || true
  done
  } 2>&1 | tee "$OUT/plan_readout2.log"
  tar czf "$OUT/readout2.tgz" -C $WORK \
      $(cd $WORK && ls -d bench_plan_probe* plan_probe*.json plan_probe*.err) ;;
long1) {
  if [ -n "${REUSE:-}" ] && [ -d $STORE ]; then echo "long1: reusing $STORE"; else
    crcm data pusht out=$STORE size=64 seed=0 behavior=${BEHAVIOR:-mixed} overwrite=true $DATA | tail -1; fi
  # the probe first: validation reads the block's pose off the teacher's predictions with it (the curve)
  if [ -n "${REUSE:-}" ] && [ -f $WORK/probe/meta.json ]; then echo "long1: reusing $WORK/probe"; else
    crcm train probe data.path=$STORE out=$WORK/probe device=$DEV progress=false $PROBE | tail -1; fi
  echo "long1: teacher recipe: $TEACH $RECIPE"
  crcm train teacher $TEACH $RECIPE $LONG data.path=$STORE data.frame_skip=$FS train.out=$TEACHER \
      train.progress=false > $WORK/teacher.log 2>&1
  tail -2 $WORK/teacher.log
  } 2>&1 | tee "$OUT/plan_long1.log"
  cp $WORK/*_log.jsonl "$OUT/" ;;
long2) {
  [ -f $TEACHER/train_state.pt ] || { echo "plan.sh long2: no $TEACHER/train_state.pt (machine lost?)"; exit 1; }
  rm -rf $WORK/teacher_mid; cp -r $TEACHER $WORK/teacher_mid; rm -f $WORK/teacher_mid/train_state.pt
  crcm train teacher $TEACH $RECIPE $LONG data.path=$STORE data.frame_skip=$FS train.out=$TEACHER \
      train.progress=false train.resume=$TEACHER >> $WORK/teacher.log 2>&1
  tail -2 $WORK/teacher.log
  } 2>&1 | tee "$OUT/plan_long2.log"
  cp $WORK/*_log.jsonl "$OUT/" 2>/dev/null || true
  # the teacher comes back too, so a machine lost before long3 loses no training
  tar czf $WORK/teacher.tgz -C $WORK --exclude=train_state.pt teacher_fs$FS
  split -b 15M $WORK/teacher.tgz "$OUT/teacher.tgz.part-" ;;
long3) {
  T0=$(date +%s); left() { echo $(( ${CALL_S:-570} - $(date +%s) + T0 )); }
  for ck in teacher_mid teacher_fs$FS; do cp -r $WORK/probe $WORK/$ck/probe; done
  crcm distill causal_rcm teacher=$TEACHER $DIST train.validation.probe=$WORK/probe train.out=$WORK/student \
      train.progress=false > $WORK/distill.log 2>&1 &
  DP=$!
  for ck in teacher_mid teacher_fs$FS; do
    crcm eval $WORK/$ck horizon=5 context=2 episodes=20 out=$WORK/eval/$ck time_batch1=false 2>&1 | tail -1
    plan_arm 300 $WORK/$ck fid_$ck 10 fidelity_goals=10 budget=5 planner.replan_every=5 gifs=0
    echo "$ck fidelity: $(tail -c 700 $WORK/fid_$ck.json)"
  done
  plan_arm $(( $(left) - 200 )) $TEACHER plan_teacher ${MODEL_GOALS:-20} fidelity_goals=0
  wait $DP; tail -2 $WORK/distill.log; cp -r $WORK/probe $WORK/student/probe
  plan_arm $(( $(left) - 25 )) $WORK/student plan_student ${MODEL_GOALS:-20} fidelity_goals=10
  for f in plan_teacher plan_student; do
    echo "$f: $(tail -c 1500 $WORK/$f.json)"; grep -c " goal " $WORK/$f.err || true; tail -2 $WORK/$f.err
  done
  } 2>&1 | tee "$OUT/plan_long3.log"
  tar czf "$OUT/plan_long.tgz" -C $WORK $(cd $WORK && ls -d bench_* fid_* plan_*.json plan_*.err eval teacher.log \
      distill.log *_log.jsonl student/*_log.jsonl 2>/dev/null) ;;
units) {
  T0=$(date +%s); left() { echo $(( ${CALL_S:-570} - $(date +%s) + T0 )); }
  crcm data pusht out=$STORE size=64 seed=0 behavior=${BEHAVIOR:-mixed} overwrite=true $DATA | tail -1
  crcm train teacher $TEACH data.path=$STORE data.frame_skip=$FS train.out=$TEACHER train.progress=false \
      > $WORK/teacher.log 2>&1 &
  TP=$!
  crcm train probe data.path=$STORE out=$WORK/probe device=$DEV progress=false $PROBE | tail -1
  timeout $(( $(left) - 30 )) $PY -m crcm_robotics.cli bench plan data.path=$STORE probe=$WORK/probe \
      arms=[random,oracle] goals=$GOALS device=$DEV oracle_workers=$OW planner.mode=${MODE:-delta} gifs=1 \
      progress=false out=$WORK/bench_plan_sim_units $PLAN $UNITS > $WORK/plan_sim_units.json \
      2> $WORK/plan_sim_units.err &
  wait $TP
  tail -1 $WORK/teacher.log; cp -r $WORK/probe $TEACHER/probe
  echo "teacher done at $(( $(date +%s) - T0 )) s"
  timeout $(( $(left) - 25 )) $PY -m crcm_robotics.cli bench plan $TEACHER arms=[model] \
      goals=${MODEL_GOALS:-20} fidelity_goals=10 device=$DEV backend=$BACKEND gifs=1 progress=false \
      planner.mode=${MODE:-delta} out=$WORK/bench_plan_teacher_units $PLAN $UNITS \
      > $WORK/plan_teacher_units.json 2> $WORK/plan_teacher_units.err
  wait
  for f in plan_sim_units plan_teacher_units; do
    echo "$f: $(tail -c 1500 $WORK/$f.json)"; grep -c " goal " $WORK/$f.err || true; tail -2 $WORK/$f.err
  done
  } 2>&1 | tee "$OUT/plan_units.log"
  tar czf "$OUT/plan_units.tgz" -C $WORK $(cd $WORK && ls -d bench_plan_*units plan_*units.json \
    plan_*units.err teacher.log probe/meta.json 2>/dev/null)
  tar czf $WORK/teacher.tgz -C $WORK --exclude=train_state.pt teacher_fs$FS
  split -b 15M $WORK/teacher.tgz "$OUT/teacher.tgz.part-" ;;
1) {
  crcm data pusht out=$STORE size=64 seed=0 behavior=${BEHAVIOR:-mixed} overwrite=true $DATA
  crcm train probe data.path=$STORE out=$WORK/probe device=$DEV progress=false $PROBE > $WORK/probe.log 2>&1 &
  crcm train teacher $TEACH data.path=$STORE data.frame_skip=$FS train.out=$TEACHER train.progress=false
  wait
  tail -1 $WORK/probe.log
  cp -r $WORK/probe $TEACHER/probe
  # One closed-loop replan per goal (budget = replan_every): the call is for the fidelity figures.
  for m in absolute delta; do
    timeout 150 $PY -m crcm_robotics.cli bench plan $TEACHER arms=[model] $FID device=$DEV backend=$BACKEND gifs=0 \
        progress=false oracle_workers=$OW out=$WORK/fidelity_$m planner.mode=$m budget=5 planner.replan_every=5 \
        > $WORK/fidelity_$m.json 2> $WORK/fidelity_$m.err &
  done
  wait
  for m in absolute delta; do echo "fidelity $m: $(tail -c 900 $WORK/fidelity_$m.json)"; tail -2 $WORK/fidelity_$m.err; done
  if [ -n "${MODE:-}" ]; then echo $MODE > $WORK/mode; else
    $PY - "$WORK" <<'PYEOF' > $WORK/mode
import json, sys
r = {}
for m in ("absolute", "delta"):
    try:
        arm = next(iter(json.loads(open(f"{sys.argv[1]}/fidelity_{m}.json").read().strip().splitlines()[-1])["arms"].values()))
        r[m] = arm["fidelity"]["rank_corr_model"]
    except Exception:
        r[m] = -2.0
print(max(r, key=r.get))
PYEOF
  fi
  echo "planner.mode for stages 2-3: $(mode)"
  } 2>&1 | tee "$OUT/plan_stage1.log"
  tar czf $WORK/teacher.tgz -C $WORK --exclude=train_state.pt teacher_fs$FS
  split -b 15M $WORK/teacher.tgz "$OUT/teacher.tgz.part-"
  tar czf "$OUT/stage1.tgz" -C $WORK fidelity_absolute fidelity_delta probe/meta.json mode ;;
2) {
  if [ -n "${TEACHER_FROM:-}" ] && [ ! -d $TEACHER ]; then  # a fresh machine: the teacher stage 1 returned
    crcm data pusht out=$STORE size=64 seed=0 behavior=${BEHAVIOR:-mixed} overwrite=true $DATA
    cp -r $TEACHER_FROM $TEACHER; cp -r $TEACHER/probe $WORK/probe
  fi
  [ -n "${MODE:-}" ] && echo $MODE > $WORK/mode
  echo "planner.mode: $(mode)"
  timeout $LIMIT $PY -m crcm_robotics.cli bench plan $TEACHER arms=[model] goals=${MODEL_GOALS:-$GOALS} \
      device=$DEV backend=$BACKEND oracle_workers=2 out=$WORK/bench_plan_teacher_fs$FS progress=true \
      planner.mode=$(mode) $PLAN > $WORK/bench_teacher_fs$FS.log 2>&1 &
  for s in 0 1; do
    crcm distill causal_rcm teacher=$TEACHER $DIST train.seed=$s train.out=$WORK/student_s$s \
        train.progress=false > $WORK/distill_s$s.log 2>&1 &
  done
  crcm eval $TEACHER horizon=5 context=2 episodes=20 out=$WORK/eval/teacher time_batch1=false > $WORK/eval_teacher.log 2>&1 &
  crcm bench plan $TEACHER arms=[random,oracle] goals=$GOALS device=$DEV oracle_workers=$OW planner.mode=$(mode) \
      out=$WORK/bench_plan_sim progress=true $PLAN
  wait
  tail -1 $WORK/eval_teacher.log
  for s in 0 1; do tail -1 $WORK/distill_s$s.log; cp -r $WORK/probe $WORK/student_s$s/probe; done
  echo "teacher arm: $(tail -1 $WORK/bench_teacher_fs$FS.log)"
  } 2>&1 | tee "$OUT/plan_stage2.log"
  # the students come back too (validation's selected weights when kept), so a lost machine loses no training
  for s in 0 1; do
    d=$WORK/student_s$s; [ -d $d/selected ] && d=$d/selected
    mkdir -p $WORK/ret/student_s$s; cp $d/*.json $d/*.yaml $d/*.safetensors $WORK/ret/student_s$s/
    cp -r $WORK/probe $WORK/ret/student_s$s/probe
  done
  tar czf $WORK/students.tgz -C $WORK/ret student_s0 student_s1
  split -b 15M $WORK/students.tgz "$OUT/students.tgz.part-"
  tar czf "$OUT/bench_plan_sim.tgz" -C $WORK bench_plan_sim eval bench_plan_teacher_fs$FS ;;
3) {
  STUDENTS=${STUDENTS:-student_s0 student_s1}
  for ck in $STUDENTS; do  # a fresh machine: the students stage 2 returned (FROM=DIR holding them)
    if [ -n "${FROM:-}" ] && [ ! -d $WORK/$ck ]; then
      [ -d $STORE ] || crcm data pusht out=$STORE size=64 seed=0 behavior=${BEHAVIOR:-mixed} overwrite=true $DATA
      cp -r $FROM/$ck $WORK/$ck
    fi
  done
  [ -n "${MODE:-}" ] && echo $MODE > $WORK/mode
  for ck in $STUDENTS; do
    timeout $LIMIT $PY -m crcm_robotics.cli bench plan $WORK/$ck arms=[model] goals=${MODEL_GOALS:-$GOALS} \
        device=$DEV backend=$BACKEND oracle_workers=4 out=$WORK/bench_plan_$ck progress=true planner.mode=$(mode) \
        $PLAN > $WORK/bench_$ck.log 2>&1 &
  done
  for s in ${EVAL_SEEDS-0 1}; do
    crcm eval $WORK/student_s$s horizon=5 context=2 episodes=20 out=$WORK/eval/student_s$s time_batch1=false \
        > $WORK/eval_s$s.log 2>&1
    tail -1 $WORK/eval_s$s.log
  done
  wait
  for ck in $STUDENTS; do
    echo "$ck: $(grep -c '^bench plan .* goal ' $WORK/bench_$ck.log) goals done"; tail -1 $WORK/bench_$ck.log
  done
  } 2>&1 | tee "$OUT/plan_stage3.log"
  tar czf "$OUT/bench_plan_models.tgz" -C $WORK $(cd $WORK && ls -d bench_plan_student_s* eval 2>/dev/null) ;;
esac
ls -la "$OUT"
