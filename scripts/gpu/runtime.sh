# GPU run for the runtime issue (5): GPU-marked runtime/export tests, then `crcm bench` JSON lines.
# Usage (device tool, carry .whl):  bash scripts/gpu/runtime.sh
# Env: CKPT    student checkpoint on the machine; default: a `small`-sized network with random weights,
#              saved here as a 2-step student (latency does not depend on the weights' values)
#      TEACHER teacher checkpoint for teacher-vs-student (default: CKPT's network with a 16-step Heun ODE)
#      BACKENDS bench backends (default [eager,cuda_graph,compile]); TESTS=0 skips pytest
# DRY=1 rehearses on the CPU (tiny network, backends [eager,cuda_graph], few repeats).
source scripts/gpu/setup.sh
set -o pipefail
if [ -z "${CKPT:-}" ]; then
  CKPT=outputs/runtime_small_random
  $PY -c "import sys; from crcm_robotics.runtime.bench import random_student_checkpoint as r; print('saved', r(*sys.argv[1:]))" \
      "$CKPT" "$([ -n "${DRY:-}" ] && echo tiny || echo small)"
fi
if [ -n "${DRY:-}" ]; then
  BACKENDS=${BACKENDS:-[eager,cuda_graph]}; REP="warmup=1 repeats=2 stream_frames=8 planner_rollouts=8 planner_horizon=4"
else
  BACKENDS=${BACKENDS:-[compile]}; REP=""
fi
# The teacher is timed on CUDA graphs: Inductor would compile its whole unrolled 31-pass step (many minutes)
TEACH="${TEACHER:+teacher=$TEACHER} teacher_backend=${TEACHER_BACKEND:-cuda_graph}"
{
if [ "${TESTS:-1}" = 1 ]; then $PY -m pytest -q -m gpu tests/test_runtime.py tests/test_export.py -rs || true; fi
# Backends that compile nothing first; torch.compile (minutes per batch size on a cold cache) last, under a time limit.
# The teacher is timed at its best sampler from the study (DDIM 4) and at a 16-step Heun ODE.
crcm bench "$CKPT" steps=1 backends=[eager,cuda_graph] $TEACH teacher_steps=4 teacher_solver=ddim $REP \
    out="$OUT/bench_steps1.json"
crcm bench "$CKPT" steps=2 backends=[eager,cuda_graph] $TEACH teacher_steps=16 teacher_solver=heun $REP \
    out="$OUT/bench_steps2.json"
timeout ${COMPILE_LIMIT:-360} $PY -m crcm_robotics.cli bench "$CKPT" steps=2 backends="$BACKENDS" $REP \
    teacher_backend=cuda_graph teacher_steps=4 teacher_solver=ddim out="$OUT/bench_steps2_compile.json" \
    || echo "compile bench stopped (exit $?)"
} 2>&1 | tee "$OUT/runtime_run.log"
ls -la "$OUT"
