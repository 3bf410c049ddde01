# Issue 12: does averaging each candidate's cost over several of the model's noise draws (planner.draws, never
# run with a pixel model: docs/results.md, "Shared noise") lift a student's goals, against spending the same
# compute on more candidates? A 2-step student's frames differ from draw to draw where it is unsure (the
# pushed block under contact, what every miss comes down to); a candidate's mean cost over draws prefers pushes
# whose outcome it is sure of. One student of the kept teacher, each arm on the 50 held-out goals (replanning
# every 10, as the benchmark), side by side on the one GPU, goal by goal on the same goals.
# Two calls on one warm machine (issue the second right after the first: it idles out in ~30 s):
#   STAGE=1  on a fresh machine the store and probe made again and the kept teacher (KEEP) unpacked; the student
#            distilled (METHOD tf_scm, seed SEED, DISTILL_MIN 1: validation kept the last sessions' students at
#            their 25th-75th update); then the ARMS side by side, cut before the call ends. On a warm machine
#            whatever is already there (store, probe, student) is used as it is.
#   STAGE=2  each cut arm resumed where it stopped (first_goal=), the parts joined and compared goal by goal
# Each arm's runs are plan_s<seed>_<arm>_<part>: stage 1 again with another SEED on the warm machine plans that
# seed's student beside the first's results and compares them all.
# ARMS ("n256_d1 n128_d2 n256_d2"): n<samples>_d<draws>, CEM with that many candidates a round (an
# eighth of them elites, as the benchmark's 32 of 256) each imagined under that many noise draws (cost × draws).
# Run in the twenty-seventh session (docs/results.md, "Each candidate's cost over two noise draws"): 256 x 1
# held 40 of 50, 128 x 2 and 256 x 2 36 each; the seed-0 student 38, the teacher alone 35.
# Carry .whl and KEEP. Env: CALL_S (570), KEEP (the kept teacher, pusht_study.sh), SEED (1), METHOD (tf_scm),
# DISTILL_MIN (1), WORK (/root/work). DRY=1 rehearses both stages on the CPU at toy sizes.
source scripts/gpu/setup.sh
STUDY=draws; RATE=1; METHOD=${METHOD:-tf_scm}; DISTILL_MIN=${DISTILL_MIN:-1}
source scripts/gpu/pusht_study.sh
ARMS=${ARMS:-"n256_d1 n128_d2 n256_d2"}
for arm in $ARMS; do
  if ! [[ $arm =~ ^n([0-9]+)_d([0-9]+)$ ]] || [ ${BASH_REMATCH[1]} -lt 8 ] || [ ${BASH_REMATCH[2]} -lt 1 ] \
      || [ ${BASH_REMATCH[2]} -gt 16 ]; then
    echo "draws.sh: arm '$arm': expected n<samples>_d<draws>, at least 8 samples and 1-16 draws" >&2; exit 2
  fi
done
SEED=${SEED:-1}
if ! [[ $SEED =~ ^[0-9]+$ ]]; then echo "draws.sh: SEED=$SEED: expected a whole number (the student's seed)" >&2; exit 2; fi
PLANNED=$(for arm in $ARMS; do echo s${SEED}_$arm; done)  # another seed's arms beside these
plan() {  # s<seed>_n<samples>_d<draws> FIRST_GOAL PART: that seed's student with the arm's candidates and
  # draws, from FIRST_GOAL
  local seed=${1%%_*} samples=${1#*_n}; samples=${samples%_d*}
  plan_arm $1_$3 $WORK/student_$seed first_goal=$2 planner.replan_every=10 planner.samples=$samples \
      planner.elites=$(( samples / 8 )) planner.draws=${1##*_d}
}
case "${STAGE:?set STAGE=1 or 2}" in
1) {
  restore_kept
  wait  # a restored probe
  if ! [ -d $WORK/teacher ]; then
    echo "draws.sh: no teacher in $WORK: expected KEEP=DIR with a kept teacher" >&2; exit 2
  fi
  [ -d $WORK/student_s$SEED ] || distil_student s$SEED $SEED
  for arm in $PLANNED; do plan $arm 0 a & done
  wait
  $PY scripts/plan_goal_pairs.py $WORK/plan_*_a/*.goals.jsonl
  } 2>&1 | tee "$OUT/draws1.log"
  [ "${PIPESTATUS[0]}" = 2 ] && exit 2
  tar czf "$OUT/draws1.tgz" -C $WORK $(cd $WORK && ls -d plan_* distill_*.log student_*_log.jsonl 2>/dev/null) ;;
2) {
  resume_and_join
  } 2>&1 | tee "$OUT/draws2.log"
  tar czf "$OUT/draws2.tgz" -C $WORK joined $(cd $WORK && ls -d plan_* distill_*.log student_*_log.jsonl 2>/dev/null) ;;
*) echo "draws.sh: unknown STAGE=$STAGE (expected 1 or 2)" >&2; exit 2 ;;
esac
ls -la "$OUT"
