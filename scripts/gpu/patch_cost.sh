# Issue 12: what a finer token grid costs on the GPU, in one short call, before fine_patch.sh spends a session's
# budget training one. For each of PATCHES (8 4): the planner's query (scripts/profile_planner.py --patch: a random
# `small` student, ROLLOUTS (256: one CEM round of the benchmark's planner) x 5 model frames, cuda_graph) and
# the teacher's training rate (UPDATES updates of the planning recipe on the PushT store, validation off). Ends
# with ONE JSON line: per patch its tokens a frame, query ms, matmul GFLOP a pass and updates/s, and each one's
# ratio to the first patch's.
#   thirty-eighth session: CALL_S=420 bash scripts/gpu/patch_cost.sh
# Carry .whl. Env: PATCHES ("8 4"), UPDATES (300), ROLLOUTS (256), CALL_S (570), WORK (/root/work). DRY=1
# rehearses it on the CPU at toy sizes (tests/test_gpu_scripts.py).
source scripts/gpu/setup.sh
STUDY=patch_cost; RATE=2.5
PATCHES=${PATCHES:-"8 4"}; UPDATES=${UPDATES:-$([ -n "${DRY:-}" ] && echo 4 || echo 300)}
ROLLOUTS=${ROLLOUTS:-$([ -n "${DRY:-}" ] && echo 2 || echo 256)}
for setting in UPDATES ROLLOUTS; do
  if ! [[ ${!setting} =~ ^[1-9][0-9]*$ ]]; then
    echo "patch_cost.sh: $setting=${!setting}: expected a whole number above 0" >&2; exit 2
  fi
done
source scripts/gpu/pusht_study.sh
check_patches patch_cost.sh "$PATCHES" || exit 2
BACKEND=$([ $DEV = cuda ] && echo cuda_graph || echo eager)
# the rehearsal profiles a narrow random network (width 64, two repeats): the figures' plumbing, in seconds
PROFILE_ARGS=$([ -n "${DRY:-}" ] && echo "--dim 64 --repeats 2" || echo "--repeats 5")
{
[ -d $STORE ] || make_store
for patch in $PATCHES; do
  $PY scripts/profile_planner.py --backends $BACKEND --device $DEV --rollouts $ROLLOUTS --horizon 5 $PROFILE_ARGS \
      --patch $patch --out $WORK/prof_p$patch > $WORK/prof_p$patch.json 2> $WORK/prof_p$patch.err
  echo "query, patch $patch: exit $? at $(( $(date +%s) - T0 )) s"
  train_model rate_p$patch model.patch=$patch train.steps=$UPDATES train.validation.every=0 train.sample_every=0
done
$PY - $WORK $BACKEND $PATCHES <<'EOF'
import json, sys
from pathlib import Path
work, backend, patches = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
rows = {}
for patch in patches:
    try:
        query = json.loads((work / f"prof_p{patch}.json").read_text().splitlines()[-1])["backends"][backend]
        trained = json.loads((work / f"rate_p{patch}.log").read_text().strip().splitlines()[-1])
    except (OSError, IndexError, KeyError, ValueError) as exc:
        sys.exit(f"patch_cost.sh: no figures for patch {patch} ({type(exc).__name__}: {exc}): "
                 f"see {work}/prof_p{patch}.err and {work}/rate_p{patch}.log")
    rows[patch] = {"tokens_per_frame": query["tokens_per_frame"], "query_ms": query["query_ms"],
                   "matmul_gflop_per_pass": query["matmul_gflop_per_pass"],
                   "updates_per_s": round(trained["steps"] / trained["seconds"], 2)}
first = rows[patches[0]]
for row in rows.values():
    row["query_ratio"] = round(row["query_ms"] / first["query_ms"], 2)
    row["update_time_ratio"] = round(first["updates_per_s"] / row["updates_per_s"], 2)
print(json.dumps({"backend": backend, "patches": rows}))
EOF
} 2>&1 | tee "$OUT/patch_cost.log"
cp $WORK/prof_p*.json $WORK/rate_p*.log "$OUT"/ 2>/dev/null
