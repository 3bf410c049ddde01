# The long frame-skip-5 teacher recipe and its call clock, shared by teacher_long.sh and state_loss.sh
# (sourced after setup.sh). Sets STORE (outputs/pusht64.zarr; DRY: $DRY_DIR/pusht.zarr), DEV, H, PRESET,
# RECIPE (the train overrides: `small` at frame skip 5, the wsd rate decayed over the last quarter, validation
# every 500 updates on VAL_WINDOWS (32) held-out windows read by the state probe PROBE_DIR), PLAN (the
# planner and cost of every model arm), and defines left / minutes_left (seconds and minutes of CALL_S (570)
# left) and store_and_probe (the mixed 500-episode store and the probe, each built once per machine).
T0=$(date +%s); left() { echo $(( ${CALL_S:-570} - $(date +%s) + T0 )); }
minutes_left() { $PY -c "print(round(max(0.2, ($(left) - ${1:-40}) / 60), 2))"; }
STORE=${STORE:-outputs/pusht64.zarr}; DEV=cuda; H=16; PRESET=small
VAL="train.validation.every=500 train.validation.episodes=$(( ${VAL_WINDOWS:-32} / 2 )) \
train.validation.windows_per_episode=2"
DATA="episodes=500 min_steps=180 max_steps=300"; PROBE="steps=4000"
PLAN="planner.mode=delta planner.replan_every=10 planner.probe_position_unit=20 \
planner.probe_angle_unit=0.349"
if [ -n "${DRY:-}" ]; then
  STORE=${DRY_DIR:?DRY=1 needs DRY_DIR}/pusht.zarr; DEV=cpu; PRESET=tiny; H=4
  VAL="train.validation.every=20 train.validation.episodes=2 train.validation.windows_per_episode=2 \
train.validation.horizon=4"
  DATA="episodes=12 min_steps=80 max_steps=100 workers=2"; PROBE="steps=60 batch_size=32 width=8"
  PLAN="${PLAN/replan_every=10/replan_every=5} planner.samples=16 planner.iterations=2 planner.elites=4 \
budget=10"
fi
PROBE_DIR=$(dirname $STORE)/probe_long
RECIPE="data.frame_skip=5 optim.lr_schedule=wsd optim.decay_fraction=0.25 \
train.validation.probe=$PROBE_DIR $VAL"
store_and_probe() {
  [ -d $STORE ] || crcm data pusht out=$STORE size=64 seed=0 behavior=mixed overwrite=true $DATA | tail -1
  [ -f $PROBE_DIR/meta.json ] || crcm train probe data.path=$STORE out=$PROBE_DIR device=$DEV progress=false \
      $PROBE | tail -1
  echo "store and probe at $(( $(date +%s) - T0 )) s"
}
