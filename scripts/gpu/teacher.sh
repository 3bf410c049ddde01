# GPU run for the teacher issue: PushT store (500 episodes) -> train `small` -> evaluate on held-out episodes.
# Usage (device tool, carry .whl):  bash scripts/gpu/teacher.sh
# Env: EPISODES (500), MINUTES (training budget, 6.0), STEPS (30000), EXTRA (more train overrides)
source scripts/gpu/setup.sh
EPISODES=${EPISODES:-500}; MINUTES=${MINUTES:-6.0}; STEPS=${STEPS:-30000}
set -o pipefail
{
crcm data pusht out=outputs/pusht64.zarr episodes=$EPISODES size=64 seed=0 min_steps=180 max_steps=300 overwrite=true
crcm train teacher preset=small data.path=outputs/pusht64.zarr train.max_minutes=$MINUTES train.steps=$STEPS \
    train.progress=false ${EXTRA:-}
crcm eval outputs/teacher_small horizon=16 context=2 out=outputs/eval/teacher_default_h16   # preset sampler: DDIM 4
crcm eval outputs/teacher_small horizon=16 context=2 steps=16 solver=heun time_batch1=false out=outputs/eval/teacher_heun16_h16
} 2>&1 | tee outputs/teacher_run.log
tar cf - --exclude train_state.pt -C outputs teacher_small | split -b 15M - "$OUT/teacher_small.tar.part-"
tar czf "$OUT/reports.tgz" -C outputs eval teacher_small_samples teacher_small_log.jsonl teacher_run.log
ls -la "$OUT"
