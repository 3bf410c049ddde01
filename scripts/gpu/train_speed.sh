# Teacher training throughput: updates/s and samples/s for several recipes, so a time-limited run picks the one
# that trains most per device-minute. Measured on an H200 (fifth session, frame skip 5): `small` 12.2
# updates/s at batch 128; batch 256 6.9 (1.13x the samples/s); dim 512, depth 12, batch 256: 3.05. So it is
# not launch-bound: a larger batch or a wider network costs wall time in proportion. `train.compile`: not
# measured.
# Usage (device tool, carry .whl): bash scripts/gpu/train_speed.sh   -> one JSON line on stdout (and $OUT)
# Env: STORE (outputs/pusht64.zarr, built when missing), STEPS (400 per recipe; the rate is read after step
#      WARM=150, past compilation), FS (frame skip, 5), RECIPES (;-separated override lists, below).
#      CHOOSE=FILE writes to FILE the last recipe (list them smallest first) that keeps at least RATIO (0.7)
#      of the first recipe's updates/s: more model or batch only where the GPU trains it at little cost.
#      Its rate goes to FILE.rate (plan.sh long1 sizes its run from it).
# DRY=1 rehearses on the CPU: DRY=1 STEPS=12 WARM=4 RECIPES="preset=tiny;preset=tiny optim.batch_size=4" \
#      STORE=outputs/plan_dry/pusht64.zarr bash scripts/gpu/train_speed.sh
source scripts/gpu/setup.sh
set -o pipefail
STORE=${STORE:-outputs/pusht64.zarr}; STEPS=${STEPS:-400}; WARM=${WARM:-150}; FS=${FS:-5}
RECIPES=${RECIPES:-"preset=small;preset=small train.compile=true;preset=small optim.batch_size=256;\
preset=small model.dim=512 model.heads=8 model.depth=12;\
preset=small model.dim=512 model.heads=8 model.depth=12 train.compile=true"}
[ -d $STORE ] || crcm data pusht out=$STORE episodes=500 size=64 seed=0 behavior=mixed min_steps=180 \
    max_steps=300 overwrite=true >&2
DEVICE=cuda; [ -n "${DRY:-}" ] && DEVICE=cpu
rows=()
IFS=';' read -ra list <<< "$RECIPES"
for i in "${!list[@]}"; do
  out=outputs/speed/r$i; rm -rf $out ${out}_log.jsonl; mkdir -p outputs/speed
  # shellcheck disable=SC2086
  crcm train teacher ${list[$i]} data.path=$STORE data.frame_skip=$FS train.out=$out train.steps=$STEPS \
      train.max_minutes=0 train.validation.every=0 train.sample_every=0 train.log_every=$WARM \
      train.device=$DEVICE train.progress=false > ${out}.log 2>&1 || { tail -3 ${out}.log >&2; continue; }
  rows+=("$($PY - "${out}_log.jsonl" "$out" "${list[$i]}" <<'PYEOF'
import json, sys
import yaml
from crcm_robotics.model.checkpoint import load_checkpoint
log = [json.loads(line) for line in open(sys.argv[1]) if '"loss"' in line]
a, b = log[0], log[-1]
rate = (b["step"] - a["step"]) / (b["seconds"] - a["seconds"])
batch = yaml.safe_load(open(f"{sys.argv[2]}/config.yaml"))["optim"]["batch_size"]
params = sum(v.numel() for v in load_checkpoint(sys.argv[2]).state_dict.values())
print(json.dumps({"recipe": sys.argv[3], "updates_per_s": round(rate, 2), "batch": batch,
                  "samples_per_s": round(rate * batch, 1), "params_m": round(params / 1e6, 2),
                  "seconds_to_first_log": a["seconds"], "first_log_step": a["step"]}))
PYEOF
)")
done
line=$(printf '%s\n' "${rows[@]}" | $PY -c "import json, sys; print(json.dumps({'bench': 'train_speed', \
'frame_skip': $FS, 'steps': $STEPS, 'recipes': [json.loads(l) for l in sys.stdin if l.strip()]}))")
echo "$line" | tee "$OUT/train_speed.json"
if [ -n "${CHOOSE:-}" ]; then
  echo "$line" | $PY -c "
import json, sys
rows = json.load(sys.stdin)['recipes']
if not rows or rows[0]['recipe'] != '''${list[0]}''':
    sys.exit('train_speed: the first recipe (the base rate) did not run; nothing chosen')
base = rows[0]['updates_per_s']
best = [r for r in rows if r['updates_per_s'] >= ${RATIO:-0.7} * base][-1]
open('$CHOOSE.rate', 'w').write(str(best['updates_per_s']))
print(best['recipe'])" > "$CHOOSE" || { rm -f "$CHOOSE"; exit 1; }
  echo "train_speed: chose \"$(cat "$CHOOSE")\" at $(cat "$CHOOSE.rate") updates/s ($CHOOSE, .rate)" >&2
fi
