# Teacher sweep on a multi-GPU machine: one PushT store, one `small` teacher per GPU (each a single-GPU run,
# as the teacher issue asks), each evaluated on held-out episodes with several samplers; optionally the
# runtime bench (random `small` weights: latency does not depend on them) on the last GPU meanwhile.
# Usage (device tool, carry .whl):  bash scripts/gpu/teacher_sweep.sh
# Env: ARMS     "name:override override …;name:…" one arm per GPU (default below)
#      EPISODES (500) MINUTES (6.8) PRESET (small) EVALS (samplers "steps/solver …") BENCH (1: runtime bench on
#      the GPU after the arms). The last measured run (docs/results.md) used these default arms, spelled out
#      in full (model.time_scale=10 objective.motion_weight=… objective.motion_region=patch) before they
#      became the preset, with EVALS="2/ddim 4/ddim" MINUTES=6.8 PROFILE=1 BENCH=1.
#      PROFILE (1: scripts/profile_planner.py on the GPU after the arms, before the bench; random `small` weights)
# DRY=1 rehearses on the CPU with tiny sizes.
source scripts/gpu/setup.sh
set -o pipefail
EPISODES=${EPISODES:-500}; MINUTES=${MINUTES:-6.8}; PRESET=${PRESET:-small}
EVALS=${EVALS:-"1/ddim 2/ddim 4/ddim"}
ARMS=${ARMS:-"pw10:;pw30:objective.motion_weight=30;pw10cn:objective.context_noise_prob=0.5 objective.context_noise_t=0.2"}  # vs the small preset (= pw10)
GEN=${GEN:-"size=64 min_steps=180 max_steps=300"}
STORE=${STORE:-outputs/pusht64.zarr}
LOG=outputs/sweep_logs; EVAL=outputs/sweep_eval
rm -rf $LOG $EVAL; mkdir -p $LOG  # a warm machine keeps outputs/ from the previous call
[ -d $STORE ] || crcm data pusht out=$STORE episodes=$EPISODES seed=0 $GEN overwrite=true 2>&1 | tail -3
IFS=';' read -ra arm_list <<< "$ARMS"
gpu=0
for arm in "${arm_list[@]}"; do
  name=${arm%%:*}; over=${arm#*:}
  ( export CUDA_VISIBLE_DEVICES=$gpu
    crcm train teacher preset=$PRESET data.path=$STORE train.out=outputs/teacher_$name train.max_minutes=$MINUTES \
        train.progress=false $over > $LOG/train_$name.log 2>&1
    for ev in $EVALS; do
      crcm eval outputs/teacher_$name horizon=16 context=2 steps=${ev%/*} solver=${ev#*/} time_batch1=false \
          out=$EVAL/${name}_${ev%/*}${ev#*/}_h16 2>&1 | grep '^{' > $LOG/eval_${name}_${ev%/*}${ev#*/}.json
    done ) &
  gpu=$((gpu + 1))
done
# The spare GPU: the planner profile, then the runtime bench (one after the other, so neither disturbs the
# other), each under a time limit so the arms' results are never lost to the call's 10-minute limit
( export CUDA_VISIBLE_DEVICES=$gpu
  if [ "${PROFILE:-0}" = 1 ]; then
    timeout ${PROFILE_LIMIT:-200} $PY scripts/profile_planner.py --backends ${PROFILE_BACKENDS:-cuda_graph compile} \
        ${PROFILE_ARGS:-} --out $LOG/profile > $LOG/profile.json 2> $LOG/profile.log || echo "profile exit $?" >> $LOG/profile.log
  fi
  if [ "${BENCH:-0}" = 1 ]; then
    OUT=outputs/bench_out TESTS=1 timeout ${BENCH_LIMIT:-330} bash scripts/gpu/runtime.sh > $LOG/bench.log 2>&1 \
        || echo "bench exit $?" >> $LOG/bench.log
  fi ) &
wait
# One line per (arm, sampler): mean PSNR, PSNR h1/h16, agent error h16; the baseline once.
$PY - $LOG <<'PY'
import json, pathlib, sys
rows = []
for p in sorted(pathlib.Path(sys.argv[1]).glob("eval_*.json")):
    txt = p.read_text().strip()
    if not txt:
        print(p.name, "no result"); continue
    r = json.loads(txt.splitlines()[-1])
    rows.append((r["psnr_mean"], p.stem, r))
    print(f"{p.stem:28s} psnr_mean {r['psnr_mean']:.2f} h1 {r['psnr'][0]:.2f} h16 {r['psnr'][-1]:.2f} "
          f"agent16 {r['agent_err_px'][-1]:.2f} ssim_mean {r['ssim_mean']:.3f}")
if rows:
    b = rows[0][2]["baseline_copy_last"]
    print(f"{'baseline':28s} psnr_mean {b['psnr_mean']:.2f} h1 {b['psnr'][0]:.2f} h16 {b['psnr'][-1]:.2f} agent16 {b['agent_err_px'][-1]:.2f}")
    # the teacher to keep: among arms whose sampler beats copy-last on PSNR at every step, the lowest
    # pusher error at step 16; if none does, the best mean PSNR
    beats = [r for r in rows if all(p > q for p, q in zip(r[2]["psnr"], b["psnr"]))]
    pick = min(beats, key=lambda r: r[2]["agent_err_px"][-1]) if beats else max(rows)
    best = pick[1].split("_")[1]
    pathlib.Path("outputs/best_arm").write_text(best)
    print("best arm", best)
PY
best=$(cat outputs/best_arm 2>/dev/null || echo none)
tar czf "$OUT/sweep_logs.tgz" -C outputs sweep_logs
tar czf - --exclude rollout.gif -C outputs sweep_eval \
    $(cd outputs && ls -d teacher_*_samples teacher_*_log.jsonl bench_out 2>/dev/null) | split -b 15M - "$OUT/reports.tgz.part-"
[ -d outputs/teacher_$best ] && tar cf - --exclude train_state.pt -C outputs teacher_$best | split -b 15M - "$OUT/teacher_best.tar.part-"
ls -la "$OUT"
