# Warm-start profile of the `compile` backend (issue 15): where the seconds of a warm start go. Device tool, carry .whl.
# Run after scripts/gpu/compile_cache.sh on the same machine (it leaves CKPT with a filled compile_cache/).
source scripts/gpu/setup.sh
set +e +o pipefail
CKPT=${CKPT:-outputs/compile_cache_small_random}
$PY -c "import torch, os, glob; d = os.path.dirname(torch.__file__); print('torch dir writable', os.access(d, os.W_OK), 'pyc files', len(glob.glob(d + '/**/__pycache__/*.pyc', recursive=True)), 'PYTHONPYCACHEPREFIX', os.environ.get('PYTHONPYCACHEPREFIX'))"
for i in 1 2; do
  TORCHINDUCTOR_CACHE_DIR=$(mktemp -d) TRITON_CACHE_DIR=$(mktemp -d) timeout 120 $PY scripts/profile_compile_start.py --ckpt "$CKPT" --batches 1 64 > "$OUT/profile_warm_$i.json"
  $PY -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['total_s'], d['phases_s'], d['cache'])" "$OUT/profile_warm_$i.json"
done
TORCHINDUCTOR_CACHE_DIR=$(mktemp -d) TRITON_CACHE_DIR=$(mktemp -d) timeout 120 $PY scripts/profile_compile_start.py --ckpt "$CKPT" --batches 1 64 --cprofile "$OUT/cprofile_warm.txt" > "$OUT/profile_warm_cprof.json"
