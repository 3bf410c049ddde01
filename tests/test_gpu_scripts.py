"""The GPU study scripts rehearsed on the CPU (DRY=1), as before spending device time: a script that breaks
here would waste a session's GPU budget. scripts/gpu/shallow.sh covers the pieces the PushT planning studies
share (scripts/gpu/pusht_study.sh: store and probe, the teacher's time budget, the planning arm, resuming cut
arms and joining them).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _dry_env(work: Path, out: Path, **extra: str) -> dict[str, str]:
    """The environment of a rehearsal (DRY=1) writing to WORK and OUT with this interpreter."""
    return {**os.environ, "DRY": "1", "WORK": str(work), "OUT": str(out), "PY": sys.executable,
            "OMP_NUM_THREADS": "1", **extra}


@pytest.fixture(scope="module")
def dry_store(tmp_path_factory) -> Path:
    """The rehearsals' PushT store and state probe, made once by pusht_study.sh's own store_and_probe; each
    rehearsal's stage 1 copies them in (DRY_STORE) instead of making its own (~15 s each on two cores)."""
    work = tmp_path_factory.mktemp("dry_store")
    env = _dry_env(work, work / "out", PLANNING_STORE_HASH="0000000000000000")  # a hash no store has
    script = ("source scripts/gpu/setup.sh; STUDY=store; RATE=2; source scripts/gpu/pusht_study.sh; "
              "store_and_probe; wait")
    run = subprocess.run(["bash", "-c", script], check=False, cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0 and (work / "probe").is_dir(), f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    summary, built_at, mismatch = run.stdout.splitlines()[-3:]  # the store's summary, its time, the check
    assert json.loads(summary)["episodes"] == 12 and built_at.startswith("store at ")
    # a store other than the one expected is said at once, with its hash and the CPU that built it
    store_hash = json.loads(summary)["content_hash"]
    assert mismatch.startswith(f"store: content hash {store_hash}, not the planning store's 0000000000000000 (")
    return work


def _shallow(env: dict[str, str], timeout: int = 120) -> subprocess.CompletedProcess:
    """scripts/gpu/shallow.sh run once in ENV, its output captured (the refusals' runs)."""
    return subprocess.run(["bash", "scripts/gpu/shallow.sh"], check=False, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _stage1_files(out: Path) -> dict[str, bytes]:
    """The files stage 1 returned in OUT/shallow1.tgz by name (its logs, metas and pushed-block figures, packed:
    the device returns 8 files of OUT)."""
    with tarfile.open(out / "shallow1.tgz") as tar:
        return {Path(m.name).name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def _stage(stage: int, work: Path, out: Path, call_s: int, **extra: str) -> str:
    env = _dry_env(work, out, STAGE=str(stage), CALL_S=str(call_s), DISTILL_MIN="0.2", **extra)
    run = _shallow(env, timeout=600)
    tails = f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    assert run.returncode == 0, f"stage {stage}: exit {run.returncode}\n{tails}"
    return run.stdout


@pytest.mark.skipif(sys.platform != "linux", reason="the GPU scripts are bash for the Linux device machine")
def test_shallow_study_rehearses_every_stage(tmp_path, dry_store):
    """The default arms through every stage; DISTILL_ARGS reaches `crcm distill`, whose method is Causal-rCM
    unless METHOD says otherwise; REPLAN_EVERY reaches the planner of stage 2 and of stage 3's resumed arms;
    PLAN_TEACHER=1 plans the teacher beside the students, and stage 3 joins it under its own name."""
    import yaml

    from crcm_robotics.model.checkpoint import load_checkpoint

    work, out = tmp_path / "work", tmp_path / "out"
    log1 = _stage(1, work, out, call_s=40, DRY_STORE=str(dry_store), DISTILL_ARGS="scm.p_std=1.4")
    assert "teacher: exit 0" in log1 and "store copied from" in log1 and "probe copied from" in log1
    arms = ("d0_s0", "d1_s0", "d1_s1")
    depths = {arm: load_checkpoint(work / f"student_{arm}").model_config.depth for arm in arms}
    assert depths == {"d0_s0": 2, "d1_s0": 1, "d1_s1": 1}, depths  # the tiny teacher's 2 blocks, and 1
    configs = [yaml.safe_load((work / f"student_{arm}" / "config.yaml").read_text()) for arm in arms]
    assert {(c["method"], c["scm"]["p_std"]) for c in configs} == {("causal_rcm", 1.4)}
    returned = _stage1_files(out)
    assert "teacher.meta.json" in returned and len({n for n in returned if n.startswith("distill_")}) == 3, returned
    # the teacher's run log (on the GPU every validation is a line of it; the tiny rehearsal validates never)
    run_log = [json.loads(line) for line in returned["teacher_log.jsonl"].decode().splitlines()]
    assert run_log and run_log[-1]["step"] >= 1, run_log
    # besides the kept parts, two files: the call's log and the archive
    assert {p.name for p in out.iterdir() if not p.name.startswith("keep.tgz.part")} == {
        "shallow1.log", "shallow1.tgz"}, list(out.iterdir())
    # the teacher is returned before its students are distilled: a call cut while they distil still brings it back
    assert sorted(out.glob("keep.tgz.part*")) and log1.index("kept teacher") < log1.index("student_d0_s0: exit"), log1

    # replanning every 3 env steps, off the models' 5-step frames (data.frame_skip=5)
    log2 = _stage(2, work, out, call_s=300, REPLAN_EVERY="3", GOALS_EVERY="1", STATE_MODEL="1", PLAN_TEACHER="1")
    for seed in (0, 1):  # the exact-state step model on the same goals, replanning as the arms do
        state = json.loads((work / f"plan_state_s{seed}" / "results.json").read_text())
        assert state["arms"]["state_mlp"]["goals"] == 2 and state["state_mlp"]["model"] == "step", state
        assert f"plan_state_s{seed}: " in log2
    state_goals = [json.loads(line) for line in (work / "plan_state_s0" / "state_mlp.goals.jsonl").open()]
    pixel_goals = [json.loads(line) for line in next((work / "plan_d1_s1_a").glob("*.goals.jsonl")).open()]
    assert [(g["episode"], g["start"]) for g in state_goals] == [(g["episode"], g["start"]) for g in pixel_goals]
    # every 3 env steps: the pixel arms' budget of 10 has 4 solves (steps 0, 3, 6, 9), the state model's 50 has 17
    assert [len(g["replan_ms"]) for g in pixel_goals + state_goals] == [4, 4, 17, 17]
    with tarfile.open(out / "zz_goals_so_far.tgz") as tar:  # the goals as they were planned, for a killed call
        assert any(name.startswith("plan_d1_s1_a/") for name in tar.getnames()), tar.getnames()
    for name in ("teacher", "student_d0_s0", "student_d1_s0"):
        [arm] = json.loads((work / f"plan_time_{name}.json").read_text())["arms"].values()
        assert arm["goals"] == 2 and arm["replan_ms_median"] > 0, (name, arm)
    assert json.loads((work / "plan_d1_s1_a.json").read_text())["planner"]["replan_every"] == 3
    assert "sign test" in log2 and (out / "shallow2.tgz").stat().st_size > 0
    assert "distilled again" not in log2  # a warm machine: stage 1's students planned as they are

    # a cut arm: drop its second goal, so stage 3 resumes it from the first goal it lacks
    for arm in ("d1_s1", "teacher"):
        cut = next((work / f"plan_{arm}_a").glob("*.goals.jsonl"))
        cut.write_text(cut.read_text().splitlines(keepends=True)[0])
    log3 = _stage(3, work, out, call_s=300, REPLAN_EVERY="3", PLAN_TEACHER="1")
    assert "plan_d1_s1_b: exit 0" in log3 and "plan_teacher_b: exit 0" in log3, log3
    assert json.loads((work / "plan_d1_s1_b.json").read_text())["planner"]["replan_every"] == 3
    # each arm joined under its model's name, so the comparison says teacher (the sixtieth session's read
    # "teacher/student")
    for arm, kind in (("d0_s0", "student"), ("d1_s0", "student"), ("d1_s1", "student"), ("teacher", "teacher")):
        lines = (work / "joined" / arm / f"{kind}.goals.jsonl").read_text().splitlines()
        assert len(lines) == 2, (arm, lines)
    assert "teacher/teacher vs d0_s0/student" in log3 and "teacher/student" not in log3, log3
    bme = json.loads((work / "bme_d1_s0.json").read_text())
    assert "steps_2" in bme and bme["split"] == "val"
    assert "steps_4" in json.loads((work / "bme_teacher.json").read_text())  # the model the students came from

    # stage 2 on a fresh machine given stage 1's kept teacher: the students stage 1 distilled there are made again
    fresh = tmp_path / "fresh"
    # ONLY_GOALS: of the 2 goals, only the second one planned
    second = json.loads(next((work / "plan_d0_s0_a").glob("*.goals.jsonl")).read_text().splitlines()[1])
    log_fresh = _stage(2, fresh, tmp_path / "out_fresh", call_s=300, KEEP=str(out), DRY_STORE=str(dry_store),
                       ARMS="d0_s0", TIME_GOALS="0", ONLY_GOALS=f"{second['episode']}:{second['start']}")
    assert "kept models restored" in log_fresh and "student_d0_s0: not in" in log_fresh, log_fresh
    [line] = next((fresh / "plan_d0_s0_a").glob("*.goals.jsonl")).read_text().splitlines()
    assert (json.loads(line)["episode"], json.loads(line)["start"]) == (second["episode"], second["start"])


@pytest.mark.skipif(sys.platform != "linux", reason="the GPU scripts are bash for the Linux device machine")
def test_shallow_study_trains_the_shallow_model_its_i_arms_start_from(tmp_path, dry_store):
    """ARMS with i<blocks> arms: a model of that depth trained beside the teacher (by the clock), and the
    i-arm students start from it (student_init); DRY turns i4 into i1, the tiny teacher having 2 blocks."""
    from crcm_robotics.model.checkpoint import load_checkpoint

    work, out = tmp_path / "work", tmp_path / "out"
    log1 = _stage(1, work, out, call_s=40, ARMS="d0_s0 i4_s0", DRY_STORE=str(dry_store))
    assert "teacher: exit 0" in log1 and "base_i1: exit 0" in log1
    assert load_checkpoint(work / "base_i1").model_config.depth == 1
    student = load_checkpoint(work / "student_i1_s0")
    assert student.model_config.depth == 1 and student.meta["student_init"] == str(work / "base_i1")
    assert load_checkpoint(work / "student_d0_s0").model_config.depth == 2
    assert "base_i1.meta.json" in _stage1_files(out)


# The shallow study's ALONE and KEEP_STUDENTS variants (a finished study, sessions 17-33) rehearse at ~30-45 s each
# on 2 cores; the suite runs near its 15-minute line, so they are opt-in beside the default's full rehearsal
# (test_shallow_study_rehearses_every_stage) and its i-arm test.
SHALLOW_VARIANT = pytest.mark.skipif(
    not os.environ.get("CRCM_SLOW_TESTS"),
    reason="a variant of shallow.sh's rehearsal (ALONE / KEEP_STUDENTS of a finished study), ~30-45 s on 2 CPU "
           "cores; set CRCM_SLOW_TESTS=1 to run it")


ALONE_I_ARMS = {"ARMS": "i4_s0 i4_s1", "ALONE": "1", "PLAN_TEACHER": "1"}


@pytest.fixture(scope="module")
def alone_stage1(tmp_path_factory, dry_store) -> tuple[Path, Path, str]:
    """Stage 1 with ALONE=1 and i-arms, run once: (WORK, OUT, its log). The ALONE test goes on from it to stage 2;
    the KEEP_STUDENTS test takes its 4-block model (DRY: 1 block) as the kept one."""
    root = tmp_path_factory.mktemp("alone_stage1")
    log1 = _stage(1, root / "work", root / "out", call_s=125, DRY_STORE=str(dry_store), **ALONE_I_ARMS)
    return root / "work", root / "out", log1


@pytest.mark.skipif(sys.platform != "linux", reason="the GPU scripts are bash for the Linux device machine")
@pytest.mark.slow
@SHALLOW_VARIANT
def test_shallow_study_alone_trains_one_model_after_the_other_and_plans_the_teacher(alone_stage1):
    """ALONE=1: stage 1 trains the teacher, then the shallow model, and no student; stage 2 distils the
    students, times them, and plans the teacher beside them (PLAN_TEACHER=1) on the same goals."""
    from crcm_robotics.model.checkpoint import load_checkpoint

    work, out, log1 = alone_stage1
    assert "teacher alone" in log1 and "base_i1: exit 0" in log1, log1
    assert log1.index("teacher: exit 0") < log1.index("base_i1: exit 0")  # one after the other
    assert not list(work.glob("student_*")) and "teacher.log" in _stage1_files(out)

    log2 = _stage(2, work, out, call_s=300, **ALONE_I_ARMS)
    for arm in ("i1_s0", "i1_s1"):
        assert load_checkpoint(work / f"student_{arm}").meta["student_init"] == str(work / "base_i1")
    for arm in ("teacher", "i1_s0", "i1_s1"):
        lines = next((work / f"plan_{arm}_a").glob("*.goals.jsonl")).read_text().splitlines()
        assert len(lines) == 2, (arm, lines)
    assert "sign test" in log2


@pytest.mark.skipif(sys.platform != "linux", reason="the GPU scripts are bash for the Linux device machine")
@pytest.mark.slow
@SHALLOW_VARIANT
def test_shallow_study_alone_without_i_arms_gives_the_teacher_all_of_stage_one(tmp_path, dry_store):
    """ALONE=1 with full-depth arms only: stage 1 trains the teacher alone until the call's end and no
    student, and returns the teacher; stage 2, on a fresh machine (an empty WORK) given it as KEEP, makes the
    store and probe again, distils the students with the given method and plans them beside the teacher."""
    import yaml

    work1, work, out = tmp_path / "work1", tmp_path / "work", tmp_path / "out"
    extra = {"ARMS": "d0_s0 d0_s1", "ALONE": "1", "PLAN_TEACHER": "1", "METHOD": "tf_scm"}
    log1 = _stage(1, work1, out, call_s=40, DRY_STORE=str(dry_store), **extra)
    assert "teacher: exit 0" in log1 and "base_" not in log1, log1
    assert not list(work1.glob("student_*"))
    parts = sorted(out.glob("keep.tgz.part*"))
    assert parts and all(part.stat().st_size <= 15 * 2**20 for part in parts), parts
    # stage 1 again on a fresh machine given the kept teacher: it trains on from its weights and is kept again
    work_on, out_on = tmp_path / "work_on", tmp_path / "out_on"
    log_on = _stage(1, work_on, out_on, call_s=40, KEEP=str(out), DRY_STORE=str(dry_store), **extra)
    assert f"init={work_on / 'teacher_before'}" in log_on and "teacher: exit 0" in log_on, log_on
    meta_on = json.loads((work_on / "teacher" / "meta.json").read_text())
    assert meta_on["init"] == str(work_on / "teacher_before"), meta_on
    assert sorted(out_on.glob("keep.tgz.part*")), list(out_on.iterdir())
    log2 = _stage(2, work, out_on, call_s=300, TIME_GOALS="0", KEEP=str(out_on), DRY_STORE=str(dry_store), **extra)
    assert "kept models restored" in log2 and (work / "probe").is_dir(), log2
    assert not (work / "teacher" / "train_state.pt").exists()  # the loaded weights only travel
    meta = json.loads((work / "teacher" / "meta.json").read_text())
    assert meta["kind"] == "teacher" and meta["init"] == meta_on["init"], meta  # the teacher trained on
    assert not list(work.glob("plan_time_*"))  # TIME_GOALS=0: no timing
    for arm in ("d0_s0", "d0_s1"):
        assert yaml.safe_load((work / f"student_{arm}" / "config.yaml").read_text())["method"] == "tf_scm"
    for arm in ("teacher", "d0_s0", "d0_s1"):
        lines = next((work / f"plan_{arm}_a").glob("*.goals.jsonl")).read_text().splitlines()
        assert len(lines) == 2, (arm, lines)
    assert "sign test" in log2


def _kept_folder(folder: Path, model: Path) -> Path:
    """FOLDER holding MODEL as keep_models returns it (keep.tgz.part00, without train_state.pt): a KEEP folder."""
    folder.mkdir()
    with tarfile.open(folder / "keep.tgz.part00", "w:gz") as tar:
        tar.add(model, arcname=f"./{model.name}", filter=lambda i: None if i.name.endswith("train_state.pt") else i)
    return folder


@pytest.mark.skipif(sys.platform != "linux", reason="the GPU scripts are bash for the Linux device machine")
@pytest.mark.slow
@SHALLOW_VARIANT
def test_shallow_study_keeps_the_students_and_times_the_teacher_by_random_weights(tmp_path, dry_store, alone_stage1):
    """KEEP_STUDENTS=1 with a kept shallow model (KEEP, here the ALONE stage 1's): stage 1 trains the teacher
    alone, distils the students from it started from the kept model, scores both models' pushed block and
    returns the students only; stage 2 on a fresh machine given them as KEEP plans them without distilling again
    and times the teacher's solve with random weights. (Without KEEP, stage 1 trains the shallow model after the
    teacher first, as the ALONE test's, then the same.)"""
    from crcm_robotics.model.checkpoint import load_checkpoint

    kept_base, out, work1, work = tmp_path / "kept_base", tmp_path / "out", tmp_path / "work1", tmp_path / "work"
    _kept_folder(kept_base, alone_stage1[0] / "base_i1")
    extra = {"ARMS": "i4_s0 i4_s1", "ALONE": "1", "KEEP_STUDENTS": "1"}
    log1 = _stage(1, work1, out, call_s=320, KEEP=str(kept_base), DRY_STORE=str(dry_store), **extra)
    assert "base_i1 kept" in log1 and "base_i1: exit" not in log1, log1
    assert log1.index("teacher: exit 0") < log1.index("student_i1_s0: exit 0")
    assert load_checkpoint(work1 / "student_i1_s1").meta["student_init"] == str(work1 / "base_i1")
    assert "kept student_i1_s0 student_i1_s1" in log1, log1
    for name in ("teacher", "base_i1"):
        assert "steps_4" in json.loads(_stage1_files(out)[f"bme_{name}.json"]), name
    parts = sorted(out.glob("keep.tgz.part*"))
    assert parts and "student_i1_s0_log.jsonl" in _stage1_files(out)

    log2 = _stage(2, work, out, call_s=400, KEEP=str(out), DRY_STORE=str(dry_store), **extra)
    assert "kept models restored" in log2 and "distill_" not in " ".join(p.name for p in work.iterdir()), log2
    assert not (work / "teacher").exists() and not (work / "base_i1").exists()  # the students only travelled
    for arm in ("i1_s0", "i1_s1"):
        assert load_checkpoint(work / f"student_{arm}").model_config.depth == 1
        lines = next((work / f"plan_{arm}_a").glob("*.goals.jsonl")).read_text().splitlines()
        assert len(lines) == 2, (arm, lines)
    split = json.loads((work / "time_split.json").read_text())
    assert split["solve"]["teacher"]["depth"] == 2 and split["solve"]["student"]["depth"] == 1, split
    assert 0 < split["student_over_teacher"] < 1.5, split
    for name in ("student_i1_s0", "student_i1_s1"):
        [arm] = json.loads((work / f"plan_time_{name}.json").read_text())["arms"].values()
        assert arm["goals"] == 2 and arm["replan_ms_median"] > 0, (name, arm)
    assert "sign test" in log2


def test_shallow_study_refuses_a_kept_folder_without_the_shallow_model(tmp_path, dry_store):
    (tmp_path / "keep").mkdir()
    with tarfile.open(tmp_path / "keep" / "keep.tgz.part00", "w:gz") as tar:
        tar.add(dry_store / "probe", arcname="./probe")  # a kept folder, but not of base_i1
    env = _dry_env(tmp_path / "work", tmp_path / "out", STAGE="1", ARMS="i4_s0 i4_s1", ALONE="1",
                   KEEP_STUDENTS="1", KEEP=str(tmp_path / "keep"), DRY_STORE=str(dry_store))
    run = _shallow(env, timeout=300)
    assert run.returncode == 2 and "no base_i1 in" in run.stdout and "kept 1-block model" in run.stdout, run.stdout
    assert not (tmp_path / "work" / "teacher").exists()


def test_shallow_study_refuses_to_train_a_kept_teacher_on_beside_a_shallow_model(tmp_path):
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "keep.tgz.part00").write_bytes(b"")
    env = _dry_env(tmp_path / "work", tmp_path, STAGE="1", ARMS="i4_s0", KEEP=str(tmp_path / "keep"))
    run = _shallow(env)
    assert run.returncode == 2 and "KEEP with STAGE=1 trains the kept teacher on" in run.stderr, run.stderr
    assert not (tmp_path / "work" / "pusht64.zarr").exists()


@pytest.mark.parametrize("replan_every", ["0", "five", "-5"])
def test_shallow_study_refuses_a_replan_interval_that_is_not_a_whole_number_of_steps(tmp_path, replan_every):
    env = _dry_env(tmp_path / "work", tmp_path / "out", STAGE="2", REPLAN_EVERY=replan_every)
    run = _shallow(env)
    assert run.returncode == 2 and f"REPLAN_EVERY={replan_every}: expected a whole number" in run.stderr, run.stderr
    assert not (tmp_path / "work" / "plan_d0_s0_a").exists()


def test_shallow_study_refuses_to_train_on_without_a_teacher(tmp_path):
    """KEEP on a warm machine (a store already in WORK, so nothing is unpacked) without a teacher there: one
    line and exit 2, not a study that goes on without its teacher."""
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "keep.tgz.part00").write_bytes(b"")
    (tmp_path / "work" / "pusht64.zarr").mkdir(parents=True)
    env = _dry_env(tmp_path / "work", tmp_path / "out", STAGE="1", ARMS="d0_s0", ALONE="1",
                   KEEP=str(tmp_path / "keep"))
    run = _shallow(env)
    assert run.returncode == 2 and "no teacher in" in run.stdout and "expected KEEP=DIR" in run.stdout, run.stdout
    assert not (tmp_path / "work" / "teacher_before").exists()


@pytest.mark.skipif(sys.platform != "linux", reason="the GPU scripts are bash for the Linux device machine")
def test_model_on_trains_a_kept_shallow_model_on_from_its_weights(tmp_path, dry_store, alone_stage1):
    """pusht_study.sh's model_on on a fresh machine given a kept shallow model (the ALONE stage 1's): the store and
    probe made again, the model unpacked, moved aside and trained on from its weights (init=) with the depth
    given; its pushed block scored and the model kept on validation's weights or, with NAME@last, on the run's
    final ones; asked for a model the kept folder lacks, one line and exit 2 before any training."""
    kept = _kept_folder(tmp_path / "kept", alone_stage1[0] / "base_i1")
    study = "source scripts/gpu/setup.sh; STUDY=on; RATE=2; CALL_S=60; source scripts/gpu/pusht_study.sh; "
    work = tmp_path / "work"
    env = _dry_env(work, tmp_path / "out", KEEP=str(kept), DRY_STORE=str(dry_store))
    run = subprocess.run(["bash", "-c", study + "model_on base_i1 20 model.depth=1"], check=False, cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "kept models restored" in run.stdout, run.stdout[-3000:] + run.stderr[-3000:]
    assert "base_i1 on:" in run.stdout and "base_i1: exit 0" in run.stdout, run.stdout
    meta = json.loads((work / "base_i1" / "meta.json").read_text())
    assert meta["init"] == str(work / "base_i1_before"), meta
    assert (work / "base_i1_before").is_dir() and (work / "probe").is_dir()
    # the pushed block on the weights validation kept and, with @last, on the run's final ones (here a copy of
    # the run standing in for kept weights, as a short rehearsal keeps none)
    shutil.copytree(work / "base_i1", work / "base_i1" / "selected", ignore=shutil.ignore_patterns("train_state.pt"))
    (work / "base_i1" / "selected" / "meta.json").write_text(json.dumps({**meta, "step": 7}))
    both = subprocess.run(["bash", "-c", study + "pushed_block 1 kept=$WORK/base_i1 last=$WORK/base_i1@last"],
                          check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert both.returncode == 0, both.stdout[-3000:] + both.stderr[-3000:]
    kept, last = (json.loads((work / f"bme_{name}.json").read_text()) for name in ("kept", "last"))
    assert kept["weights"] == str(work / "base_i1" / "selected") and last["weights"] == str(work / "base_i1")
    assert kept["ckpt"] == last["ckpt"] == str(work / "base_i1") and "steps_1" in last
    assert kept["update"] == 7 and last["update"] == meta["step"] != 7
    # kept for a later call: by default the weights validation kept, with @last the run's final ones
    for item, expected in (("base_i1", work / "base_i1" / "selected"), ("base_i1@last", work / "base_i1")):
        out = tmp_path / f"keep_{item}"  # the call's own $OUT, as keep_models is run with OUT=$REAL
        out.mkdir()
        kept_run = subprocess.run(["bash", "-c", study + f"OUT={out} keep_models {item}"], check=False, cwd=ROOT,
                                  env=env, capture_output=True, text=True, timeout=120)
        assert kept_run.returncode == 0 and f"kept {item}:" in kept_run.stdout, kept_run.stdout + kept_run.stderr
        unpacked = tmp_path / f"unpacked_{item}"
        unpacked.mkdir()
        subprocess.run(["bash", "-c", f"cat {out}/keep.tgz.part* | tar xzf - -C {unpacked}"], check=True)
        model = unpacked / "base_i1"
        assert not (model / "selected").exists() and not (model / "train_state.pt").exists()
        assert (model / "meta.json").read_text() == (expected / "meta.json").read_text()
        assert (model / "model.safetensors.index.json").is_file()
    # a name with no model behind it: one line, exit 2, and the keep made before it is still there
    out = tmp_path / "keep_base_i1@last"
    typo = subprocess.run(["bash", "-c", study + f"OUT={out} keep_models base_i1 base_il@last"], check=False,
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert typo.returncode == 2 and "keep_models: no base_il in" in typo.stderr, typo.stdout + typo.stderr
    assert sorted(out.glob("keep.tgz.part*")) and "kept" not in typo.stdout

    missing = subprocess.run(["bash", "-c", study + "model_on base_i2 20 model.depth=2"], check=False, cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "no base_i2 in" in missing.stderr, missing.stderr
    assert not (work / "base_i2_before").exists()


@pytest.mark.parametrize("script, setting, message", [
    ("shallow.sh", {"METHOD": "tf-scm"}, "METHOD=tf-scm: expected one of causal_rcm tf_scm tf_dcm sf_dmd"),
    ("shallow.sh", {"TIME_GOALS": "two"}, "TIME_GOALS=two: expected a whole number of goals"),
    ("shallow.sh", {"GOALS_EVERY": "0"}, "GOALS_EVERY=0: expected whole seconds between the copies"),
    ("shallow.sh", {"DRY_STORE": "/nonexistent"}, "DRY_STORE=/nonexistent: expected an earlier rehearsal's WORK"),
    ("shallow.sh", {"KEEP": "/nonexistent"}, "KEEP=/nonexistent: expected a carried folder of keep.tgz.part*"),
    ("shallow.sh", {"ARMS": "i4_s0", "ALONE": "1", "TEACHER_SHARE": "1.5"},
     "TEACHER_SHARE=1.5: expected a number between 0 and 1"),
    ("shallow.sh", {"ARMS": "d0_s0 d0_s1", "ALONE": "1", "KEEP_STUDENTS": "1"},  # KEEP_STUDENTS without a shallow model
     "KEEP_STUDENTS=1 distils the students of a shallow model"),
    ("shallow.sh", {"STAGE": "3", "ARMS": "d0_s0"},  # stage 3 on a fresh machine: nothing of stage 2 to resume
     "no stage-2 goals of arm d0_s0 in"),
    ("shallow.sh", {"ONLY_GOALS": "15:265,71"}, "ONLY_GOALS=15:265,71: expected EPISODE:START goals"),
    ("shallow.sh", {"STAGE": "3", "ONLY_GOALS": "15:265"}, "ONLY_GOALS with STAGE=3: a resumed arm counts"),
    ("draws.sh", {"ARMS": "n256_d1 n256"}, "arm 'n256': expected n<samples>_d<draws>"),
    ("draws.sh", {"ARMS": "n4_d1"}, "arm 'n4_d1': expected n<samples>_d<draws>, at least 8 samples and 1-16 draws"),
    ("draws.sh", {"ARMS": "n64_d17"}, "arm 'n64_d17'"),
    ("draws.sh", {"SEED": "x"}, "SEED=x: expected a whole number"),
    ("codec_teacher.sh", {"SEED": "x"}, "SEED=x: expected a whole number"),
    ("codec_teacher.sh", {"STEPS": "2e3"}, "STEPS=2e3: expected a whole number"),
    ("codec_teacher.sh", {"CODEC_MIN": "0"}, "CODEC_MIN=0: expected the codec's minutes, a positive number"),
    ("codec_teacher.sh", {"CODEC_MIN": "two"}, "CODEC_MIN=two: expected the codec's minutes"),
    ("codec_teacher.sh", {"SIZE": "100"}, "SIZE=100: expected the frames' side in pixels, a multiple of 16"),
    ("teacher_pair.sh", {"SIZE": "96px", "PAIR": "a=train.seed=0 b=train.seed=1"}, "SIZE=96px: expected"),
    ("fine_patch.sh", {"STEPS": "2.4k"}, "STEPS=2.4k: expected a whole number"),
    ("patch_cost.sh", {"UPDATES": "0"}, "UPDATES=0: expected a whole number above 0"),
    ("patch_cost.sh", {"PATCHES": "8 5"}, 'PATCHES="8 5": expected patch sides in pixels that divide the frames\' 64'),
    ("fine_patch.sh", {"PATCHES": "4 6"}, 'PATCHES="4 6": expected patch sides in pixels that divide the frames\' 64'),
    ("fine_patch.sh", {"DIMS": "64 80"}, 'DIMS="64 80": expected widths that are whole heads of 32'),
    ("fine_patch.sh", {"KEEP_MODELS": "yes"}, "KEEP_MODELS=yes: expected 1 or 0"),
    ("fine_patch.sh", {"PROBE_FROM": "/nonexistent"}, "PROBE_FROM=/nonexistent: expected a carried state probe"),
    ("fine_patch.sh", {"STUDENTS": "0 x"}, 'STUDENTS="0 x": expected student seeds'),
    ("fine_patch.sh", {"PLAN_TEACHER": "1"}, "PLAN_TEACHER=1 plans the teacher after its students: expected STUDENTS"),
    ("fine_patch.sh", {"STUDENTS": "0", "DIMS": "64 96"}, "STUDENTS distils one teacher: expected one patch and one"),
    ("fine_patch.sh", {"STUDENTS": "0", "DISTILL_MIN": "2m"}, "DISTILL_MIN=2m: expected minutes"),
    ("fine_patch.sh", {"STUDENTS": "0", "METHOD": "rcm"}, "fine_patch.sh: METHOD=rcm: expected one of causal_rcm"),
    ("shallow.sh", {"STORE_EPISODES": "12"}, "STORE_EPISODES=12: expected a whole number of episodes above the"),
    ("shallow.sh", {"STORE_EPISODES": "1.5k"}, "STORE_EPISODES=1.5k: expected a whole number of episodes above"),
    ("codec_teacher.sh", {"STORE_EPISODES": "13"}, "STORE_EPISODES=13: a grown store is for shallow.sh's teachers"),
])
def test_study_refuses_a_bad_setting_before_any_work(tmp_path, script, setting, message):
    env = _dry_env(tmp_path / "work", tmp_path, **{"STAGE": "1", **setting})
    run = subprocess.run(["bash", f"scripts/gpu/{script}"], check=False, cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and message in run.stderr, run.stderr
    assert not list((tmp_path / "work").glob("*.zarr"))  # refused before the store (at any SIZE) was made


@pytest.mark.skipif(sys.platform != "linux", reason="the GPU scripts are bash for the Linux device machine")
def test_call_time_counts_from_setup_not_from_the_study(tmp_path):
    """CALL_S is the device call's time, so the wheel install in setup.sh counts: left() starts at setup.sh's start
    (CALL_T0), or at a CALL_T0 the caller gives."""
    study = "source scripts/gpu/setup.sh; sleep 2; STUDY=clock; RATE=2; source scripts/gpu/pusht_study.sh; left"
    own = subprocess.run(["bash", "-c", study], check=False, cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env=_dry_env(tmp_path / "work", tmp_path / "out", CALL_S="570"))
    assert own.returncode == 0, own.stderr
    assert 560 <= int(own.stdout.split()[-1]) <= 568  # the 2 s after setup.sh's start are spent
    given = subprocess.run(["bash", "-c", "CALL_T0=$(( $(date +%s) - 100 )); " + study], check=False, cwd=ROOT,
                           capture_output=True, text=True, timeout=60,
                           env=_dry_env(tmp_path / "work", tmp_path / "out", CALL_S="570"))
    assert given.returncode == 0, given.stderr
    assert 460 <= int(given.stdout.split()[-1]) <= 470


@pytest.mark.skipif(sys.platform != "linux", reason="the GPU scripts are bash for the Linux device machine")
def test_planned_goals_come_back_from_a_call_killed_before_its_end(tmp_path):
    """plan_arm starts goals_so_far once a call, however many arms: every goal line planned so far reaches $OUT
    while the call runs, so a call the device kills (SIGKILL: no trap runs) still returns them; the copy stops
    with the call."""
    work, out = tmp_path / "work", tmp_path / "out"
    (work / "plan_old_a").mkdir(parents=True)
    goals = work / "plan_old_a" / "teacher.goals.jsonl"
    goals.write_text('{"episode": 3, "start": 40}\n')
    # plan_arm's bench fails at once (no checkpoint); the copy it started goes on, then the call is killed
    study = ("source scripts/gpu/setup.sh; STUDY=kill; RATE=2; source scripts/gpu/pusht_study.sh; "
             "plan_arm t1 /nonexistent; plan_arm t2 /nonexistent; "
             f"echo '{{\"episode\": 7, \"start\": 9}}' >> {goals}; sleep 3; kill -9 $$")
    run = subprocess.run(["bash", "-c", study], check=False, cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env=_dry_env(work, out, GOALS_EVERY="1"))
    assert run.returncode == -9, (run.returncode, run.stderr[-2000:])
    time.sleep(1.5)  # a copy begun before the kill ends: the archive is whole and no longer changes
    with tarfile.open(out / "zz_goals_so_far.tgz") as tar:
        assert tar.getnames() == ["plan_old_a/teacher.goals.jsonl"]
        lines = tar.extractfile("plan_old_a/teacher.goals.jsonl").read().decode().splitlines()
    assert [json.loads(line)["episode"] for line in lines] == [3, 7]  # the line written after the arms, too
    assert len(list(work.glob("goals_so_far_*.tgz"))) == 1  # each copy writes its own archive: one for two arms
    assert not list(out.glob("*.part"))
    copied = (out / "zz_goals_so_far.tgz").stat().st_mtime_ns
    time.sleep(2.5)  # the killed call's copy has stopped: nothing is written after it
    assert (out / "zz_goals_so_far.tgz").stat().st_mtime_ns == copied


@pytest.mark.skipif(sys.platform != "linux", reason="the GPU scripts are bash for the Linux device machine")
def test_a_teacher_killed_while_it_trains_is_returned_as_far_as_its_last_kept_validation(tmp_path):
    """KEEP_WHILE_TRAINING=1: teacher_until returns what each validation keeps on the way (the fifty-ninth session's
    call was killed by the device before its end-of-run keep, and its teacher was lost). Here the run's validations
    are stood in for by a train_model that writes selected/ twice, then the whole call is killed."""
    work, out = tmp_path / "work", tmp_path / "out"
    out.mkdir()
    (out / "keep.tgz.part07").write_text("an earlier keep's stray part")  # a kept set replaces the earlier one
    (out / "keep.tgz.next03").write_text("a copy cut by an earlier kill")
    selected = "$WORK/teacher/selected"

    def validation(step: int) -> str:
        """A validation's weights written as the trainer writes them: a folder beside, then renamed in."""
        return (f"mkdir -p {selected}.tmp && echo w > {selected}.tmp/weights && "
                f"echo '{{\"step\": {step}}}' > {selected}.tmp/meta.json && rm -rf {selected} && "
                f"mv {selected}.tmp {selected}; ")

    # on a warm machine an earlier run's selected/ is there when the keeper starts: it is not returned
    stale = f"mkdir -p {selected} && echo '{{\"step\": 9}}' > {selected}/meta.json; "
    fake_run = f"{stale}train_model() {{ sleep 1.5; {validation(500)}sleep 2.5; {validation(1000)}"
    study = "source scripts/gpu/setup.sh; STUDY=keepwhile; RATE=2; source scripts/gpu/pusht_study.sh; "
    killed = subprocess.run(  # its own process group, killed whole as the device kills a call
        ["bash", "-c", study + fake_run + "sleep 2.5; kill -9 0; }; KEEP_WHILE_TRAINING=1 teacher_until 5"],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=60, env=_dry_env(work, out),
        start_new_session=True)
    assert killed.returncode == -9, (killed.returncode, killed.stderr[-2000:])
    assert "update 9 " not in killed.stdout, killed.stdout
    assert "kept teacher while it trains: update 500" in killed.stdout, killed.stdout
    assert "kept teacher while it trains: update 1000" in killed.stdout, killed.stdout
    assert [p.name for p in out.iterdir()] == ["keep.tgz.part00"]
    with tarfile.open(out / "keep.tgz.part00") as tar:
        assert json.loads(tar.extractfile("./teacher/meta.json").read()) == {"step": 1000}

    # a run that ends: the keeper is stopped before the caller's own keep, and nothing is left running
    work, out = tmp_path / "work2", tmp_path / "out2"
    out.mkdir()
    ended = subprocess.run(
        ["bash", "-c", study + fake_run + "}; KEEP_WHILE_TRAINING=1 teacher_until 5; keep_models teacher; "
         "sleep 2; jobs -r | wc -l"],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=60, env=_dry_env(work, out))
    assert ended.returncode == 0, ended.stderr[-2000:]
    assert "update 500" in ended.stdout and ended.stdout.splitlines()[-1].strip() == "0", ended.stdout
    assert (work / ".stop_keeping_teacher").exists()
    # without KEEP_WHILE_TRAINING nothing is returned on the way
    work, out = tmp_path / "work3", tmp_path / "out3"
    out.mkdir()
    work.mkdir()
    (work / "probe.log").write_text("the probe's last line\n")  # teacher_until ends by reading it
    plain = subprocess.run(["bash", "-c", study + fake_run + "}; teacher_until 5"], check=False, cwd=ROOT,
                           capture_output=True, text=True, timeout=60, env=_dry_env(work, out))
    assert plain.returncode == 0 and "while it trains" not in plain.stdout and not list(out.iterdir())


@pytest.mark.skipif(sys.platform != "linux", reason="the GPU scripts are bash for the Linux device machine")
def test_teacher_until_decays_its_rate_by_the_clock_not_by_an_update_count(tmp_path):
    """The teacher's rate decays over the last part of its minutes (wsd_time), whatever its update rate: sized by
    RATE, the sixtieth session's teacher ran slower than RATE said and was stopped before its decay had ended."""
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    out.mkdir()
    (work / "probe.log").write_text("the probe's last line\n")
    study = ("source scripts/gpu/setup.sh; STUDY=clock; RATE=2; CALL_S=125; source scripts/gpu/pusht_study.sh; "
             "train_model() { echo \"train_model $*\"; }; teacher_until 5 init=somewhere")
    run = subprocess.run(["bash", "-c", study], check=False, cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env=_dry_env(work, out))
    assert run.returncode == 0, run.stderr[-2000:]
    [call] = [line for line in run.stdout.splitlines() if line.startswith("train_model ")]
    args = call.split()[1:]
    assert args[0] == "teacher" and "optim.lr_schedule=wsd_time" in args and "init=somewhere" in args, args
    [minutes] = [float(a.split("=")[1]) for a in args if a.startswith("train.max_minutes=")]
    assert 1.8 <= minutes <= 2.0, minutes  # what the call has left but the margin
    # the same minutes as a wall-clock end, so that the teacher's setup (a store loaded) counts toward them
    [stop_at] = [float(a.split("=")[1]) for a in args if a.startswith("train.stop_at=")]
    assert abs(stop_at - (time.time() + minutes * 60)) < 30, (stop_at, minutes)


@pytest.mark.skipif(sys.platform != "linux", reason="the GPU scripts are bash for the Linux device machine")
def test_a_grown_store_trains_every_model_and_keeps_the_base_stores_held_out_episodes(tmp_path, dry_store):
    """STORE_EPISODES: the store is grown past the base store's episodes, checked to begin with them, and the
    teacher and students train on it with the split drawn over the base episodes alone; the state probe stays the
    base store's (the planner's cost and the pushed block's yardstick as in earlier sessions). A later call of the
    study without STORE_EPISODES is refused before any work."""
    work, out = tmp_path / "work", tmp_path / "out"
    out.mkdir()
    study = ("source scripts/gpu/setup.sh; STUDY=grow; RATE=2; source scripts/gpu/pusht_study.sh; make_store; "
             "crcm() { echo \"$*\" >> $WORK/crcm_calls.txt; }; train_model teacher; train_probe $WORK/probe_grown 0; "
             "wait; distil_student s0 0")
    run = subprocess.run(["bash", "-c", study], check=False, cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env=_dry_env(work, out, STORE_EPISODES="13", DRY_STORE=str(dry_store)))
    assert run.returncode == 0, f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    grown = work / "pusht64_13ep.zarr"
    assert "grown store: its first 12 episodes are the base store's" in run.stdout
    assert json.loads((work / "store_grown.json").read_text())["episodes"] == 13
    calls = [c.split() for c in (work / "crcm_calls.txt").read_text().splitlines()]  # not make_store's
    assert [c[:2] for c in calls] == [["train", "teacher"], ["train", "probe"], ["distill", "causal_rcm"]]
    for call in (calls[0], calls[2]):
        assert f"data.path={grown}" in call and "data.split_first_episodes=12" in call, call
    assert f"data.path={work / 'pusht64.zarr'}" in calls[1] and not any("split_first" in a for a in calls[1])
    assert (work / "store_episodes").read_text().strip() == "13"
    later = subprocess.run(["bash", "-c", "source scripts/gpu/setup.sh; STUDY=grow; RATE=2; "
                            "source scripts/gpu/pusht_study.sh; echo sourced"], check=False, cwd=ROOT,
                           capture_output=True, text=True, timeout=60, env=_dry_env(work, out))
    assert later.returncode == 2 and "sourced" not in later.stdout, later.stdout
    assert "STORE_EPISODES=(none), but this machine's study trained on a store grown to 13 episodes" in later.stderr


@pytest.mark.skipif(sys.platform != "linux", reason="the GPU scripts are bash for the Linux device machine")
def test_a_grown_store_whose_first_episodes_are_not_the_base_stores_is_refused(tmp_path):
    """The check grow_store makes: a base store of other episodes (another seed here) stops the call before any
    model trains on a store whose held-out episodes would not be the goals', and so does a base store of another
    size; neither leaves the mark that a later call checks."""
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    out.mkdir()
    env = _dry_env(work, out, STORE_EPISODES="13")
    study = "source scripts/gpu/setup.sh; STUDY=grow; RATE=2; source scripts/gpu/pusht_study.sh; grow_store"
    for episodes, said in (("12", "grown store: its first 12 episodes are NOT the base store's"),
                           ("2", "grown store: the base store has 2 episodes, not 12")):
        subprocess.run([sys.executable, "-m", "crcm_robotics.cli", "data", "pusht", f"out={work / 'pusht64.zarr'}",
                        "size=64", "seed=1", f"episodes={episodes}", "min_steps=80", "max_steps=100", "workers=2",
                        "progress=false", "overwrite=true"], check=True, cwd=ROOT, env=env, capture_output=True,
                       timeout=120)
        run = subprocess.run(["bash", "-c", study], check=False, cwd=ROOT, capture_output=True, text=True,
                             timeout=300, env=env)
        assert run.returncode == 2, f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
        assert said in run.stdout + run.stderr, run.stdout + run.stderr
        assert ("its first 12 episodes differ from" if episodes == "12" else "could not compare") in run.stderr
        assert not (work / "store_episodes").exists()


@pytest.mark.skipif(sys.platform != "linux", reason="the GPU scripts are bash for the Linux device machine")
def test_a_model_trained_on_starts_its_own_run_log(tmp_path):
    """set_aside moves the earlier run's log (which the trainer appends to) beside its weights, so that the log
    stage 1 returns is the run on's alone, on a warm machine too."""
    work, out = tmp_path / "work", tmp_path / "out"
    (work / "teacher").mkdir(parents=True)
    out.mkdir()
    (work / "teacher_log.jsonl").write_text('{"step": 500, "validation": "the earlier run"}\n')
    study = "source scripts/gpu/setup.sh; STUDY=aside; RATE=2; source scripts/gpu/pusht_study.sh; set_aside teacher"
    run = subprocess.run(["bash", "-c", study], check=False, cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env=_dry_env(work, out))
    assert run.returncode == 0, run.stderr[-2000:]
    assert (work / "teacher_before").is_dir() and not (work / "teacher").exists()
    assert not (work / "teacher_log.jsonl").exists()
    assert "the earlier run" in (work / "teacher_before_log.jsonl").read_text()


@pytest.mark.skipif(sys.platform != "linux", reason="the GPU scripts are bash for the Linux device machine")
def test_codec_teacher_trains_a_teacher_on_the_codec_latents_and_scores_its_pushed_block(tmp_path, dry_store):
    """The rehearsal at the fixture store's 64x64 (the GPU call runs at 128): a codec, then a teacher with the
    seed asked for on its latents in 2x2 patches, then the pushed block of the held-out split."""
    import yaml

    work, out = tmp_path / "work", tmp_path / "out"
    env = _dry_env(work, out, SIZE="64", SEED="3", CALL_S="200", DRY_STORE=str(dry_store))
    run = subprocess.run(["bash", "scripts/gpu/codec_teacher.sh"], check=False, cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    config = yaml.safe_load((work / "teacher_c64" / "config.yaml").read_text())
    assert config["model"]["codec"] == "codec" and (work / "teacher_c64" / "codec").is_dir()  # carried along
    assert config["model"]["patch"] == 2
    assert config["train"]["seed"] == 3 and config["objective"]["p_mean"] == 1.6  # the planning recipe
    bme = json.loads((out / "bme_teacher_c64_s3.json").read_text())
    assert bme["split"] == "val" and bme["steps_4"]["moved"]["frames"] > 0
    assert "codec at" in (out / "codec_teacher_s3.log").read_text()


@pytest.mark.skipif(sys.platform != "linux", reason="the GPU scripts are bash for the Linux device machine")
def test_fine_patch_trains_on_across_calls_then_scores_each_teachers_pushed_block_once(tmp_path, dry_store):
    """A teacher in 4x4 patches trained to STEPS, then (the next call, more STEPS) resumed exactly where it stopped
    and scored again; its pushed block is not scored twice for the same weights; a patch-8 teacher follows it."""
    import yaml

    work, out = tmp_path / "work", tmp_path / "out"

    def call(steps: int, patches: str) -> str:
        env = _dry_env(work, out, STEPS=str(steps), PATCHES=patches, SEED="2", CALL_S="300",
                       DRY_STORE=str(dry_store))
        run = subprocess.run(["bash", "scripts/gpu/fine_patch.sh"], check=False, cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        return run.stdout

    first = call(4, "4")
    assert "teacher_p4_s2: from update 0 to 4" in first and "bme_teacher_p4_s2" in first
    config = yaml.safe_load((work / "teacher_p4_s2" / "config.yaml").read_text())
    assert config["model"]["patch"] == 4 and config["train"]["seed"] == 2 and config["objective"]["p_mean"] == 1.6
    assert json.loads((out / "bme_teacher_p4_s2.json").read_text())["update"] == 4
    parts = b"".join(part.read_bytes() for part in sorted(out.glob("keep.tgz.part*")))
    with tarfile.open(fileobj=io.BytesIO(parts)) as kept:
        assert "./teacher_p4_s2/config.yaml" in kept.getnames()  # the scored teacher comes back
    assert not list(out.glob("*.npz"))  # its weights come back, not its errors: the 8 returned files keep the parts

    second = call(6, "4 8")
    assert "teacher_p4_s2: from update 4 (resumed) to 6" in second and "teacher_p8_s2: from update 0 to 6" in second
    assert [json.loads(line)["step"] for line in (out / "teacher_p4_s2_log.jsonl").read_text().splitlines()
            if "loss" in line] == [4, 6]  # one run, its log appended by the resumed call
    for patch in (4, 8):
        assert json.loads((out / f"bme_teacher_p{patch}_s2.json").read_text())["update"] == 6

    # the block's "update" is the selected checkpoint's, which may be before the last (the forty-sixth session's
    # 4x4 teacher selected 2,500 of 2,800): the weights with all their updates still count as scored
    scored = work / "bme_teacher_p4_s2.json"
    scored.write_text(json.dumps({**json.loads(scored.read_text()), "update": 5}))
    third = call(6, "4 8")  # every teacher has its updates and its block: nothing trained or scored again
    assert "from update" not in third and '"ckpt"' not in third  # (the pushed block prints its JSON)


@pytest.mark.skipif(sys.platform != "linux", reason="the GPU scripts are bash for the Linux device machine")
def test_fine_patch_trains_each_width_with_a_carried_probe_and_returns_errors_not_weights(tmp_path, dry_store):
    """DIMS: a teacher at each width (the preset's keeps its old name; a wider one has the heads that keep the
    preset's head size), its pushed block read by the carried PROBE_FROM (not trained here), every frame's errors
    returned as .npz for compare_block_errors.py; KEEP_MODELS=0 returns no weights."""
    import numpy as np
    import yaml

    work, out = tmp_path / "work", tmp_path / "out"
    env = _dry_env(work, out, STEPS="4", PATCHES="8", DIMS="64 96", SEED="1", CALL_S="300", KEEP_MODELS="0",
                   PROBE_FROM=str(dry_store / "probe"), DRY_STORE=str(dry_store))
    run = subprocess.run(["bash", "scripts/gpu/fine_patch.sh"], check=False, cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "probe copied from" in run.stdout
    for name, dim, heads in (("teacher_p8_s1", 64, 2), ("teacher_p8_d96_s1", 96, 3)):
        model = yaml.safe_load((work / name / "config.yaml").read_text())["model"]
        assert (model["dim"], model["heads"]) == (dim, heads)
        bme = json.loads((out / f"bme_{name}.json").read_text())
        assert bme["update"] == 4
        with np.load(out / f"bme_{name}.npz") as errors:
            assert str(errors["probe"]) == str(work / "probe")
            assert bme["windows"] == len(errors["episodes"]) == len(errors["moved"]) > 0
            assert errors["steps_4_position"].shape == errors["moved"].shape and errors["moved"].any()
    assert not list(out.glob("keep.tgz.part*"))


@pytest.mark.skipif(sys.platform != "linux", reason="the GPU scripts are bash for the Linux device machine")
def test_fine_patch_distils_and_plans_the_students_of_its_teacher_across_calls(tmp_path, dry_store):
    """STUDENTS: after the teacher is scored, its 2-step student is distilled from it and planned on the held-out
    goals, then the teacher (PLAN_TEACHER=1); a call that finds a model's goals cut short plans on from the first
    unfinished one, neither training nor distilling again, and joins the parts for plan_goal_pairs.py."""
    import yaml

    work, out = tmp_path / "work", tmp_path / "out"

    def call() -> str:
        env = _dry_env(work, out, STEPS="4", PATCHES="8", DIMS="96", SEED="0", CALL_S="400", KEEP_MODELS="0",
                       STUDENTS="1", PLAN_TEACHER="1", DISTILL_MIN="0.1", PROBE_FROM=str(dry_store / "probe"),
                       DRY_STORE=str(dry_store))
        run = subprocess.run(["bash", "scripts/gpu/fine_patch.sh"], check=False, cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        return run.stdout

    def lines(path: Path) -> list[dict]:
        return [json.loads(line) for line in path.read_text().splitlines()]

    student, teacher = "student_p8_d96_s0_seed1", "teacher_p8_d96_s0"
    first = call()
    meta = json.loads((work / student / "meta.json").read_text())
    assert meta["teacher"] == str(work / teacher) and meta["kind"] == "student"
    assert yaml.safe_load((work / student / "config.yaml").read_text())["train"]["seed"] == 1
    assert meta["method"] == "tf_scm"  # the recorded full-depth students' method, by default
    goals = lines(work / f"plan_{student}.goals.jsonl")
    assert len(goals) == 2 and len(lines(work / f"plan_{teacher}.goals.jsonl")) == 2  # DRY: 2 goals
    assert (out / f"plan_{student}_from0.goals.jsonl").is_file() and (out / "plan_pairs.txt").is_file()
    assert f"{student}: exit 0" in first and "2 goals" in first
    assert json.loads((out / f"plan_{student}_from0.json").read_text().splitlines()[-1])["planner"][
        "replan_every"] == 10

    # a cut: the student's part kept its first goal only, nothing joined yet
    part = next((work / f"plan_{student}_from0").glob("*.goals.jsonl"))
    part.write_text(json.dumps(goals[0]) + "\n")
    (work / f"plan_{student}.goals.jsonl").unlink()
    scored = work / f"bme_{teacher}.json"  # a teacher whose selected checkpoint is before its last update
    scored.write_text(json.dumps({**json.loads(scored.read_text()), "update": 3}))
    second = call()
    assert "from update" not in second and f"{student}: exit" not in second  # neither trained nor distilled
    assert '"ckpt"' not in second  # nor its block scored again (the pushed block prints its JSON line)
    assert f"plan_{student}_from1: exit 0" in second and f"plan_{teacher}_from0: exit" not in second
    again = lines(work / f"plan_{student}.goals.jsonl")
    assert [(g["episode"], g["start"]) for g in again] == [(g["episode"], g["start"]) for g in goals]


@pytest.mark.skipif(sys.platform != "linux", reason="the GPU scripts are bash for the Linux device machine")
def test_fine_patch_scores_again_a_teacher_whose_pushed_block_failed(tmp_path, dry_store):
    """A pushed-block run that fails (here: an unreadable probe) leaves its teacher unscored, so the next call
    scores it, without training it again."""
    work, out = tmp_path / "work", tmp_path / "out"

    def call(steps: int) -> str:
        env = _dry_env(work, out, STEPS=str(steps), PATCHES="8", CALL_S="300", KEEP_MODELS="0",
                       DRY_STORE=str(dry_store))
        run = subprocess.run(["bash", "scripts/gpu/fine_patch.sh"], check=False, cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        return run.stdout

    assert '"ckpt"' in call(2)
    marker = work / "bme_teacher_p8_s0.steps"
    assert marker.read_text().strip() == "2"
    (work / "probe" / "probe.safetensors").write_bytes(b"not a probe")
    failed = call(3)
    assert "from update 2 (resumed) to 3" in failed and '"ckpt"' not in failed
    assert marker.read_text().strip() == "2"  # not marked as scored at 3
    shutil.copy(dry_store / "probe" / "probe.safetensors", work / "probe" / "probe.safetensors")
    again = call(3)
    assert "from update" not in again and '"ckpt"' in again and marker.read_text().strip() == "3"


@pytest.mark.skipif(sys.platform != "linux", reason="the GPU scripts are bash for the Linux device machine")
def test_fine_patch_at_128_pixels_makes_its_own_store_and_probe_and_scores_the_block(tmp_path):
    """SIZE=128 (the next lever for the block's position: 128x128 frames in 8x8 patches, 4x4's 256 tokens): the
    call builds a 128x128 store and trains a probe on its frames (a 64x64 probe cannot read them), then the teacher
    in 8x8 patches and its pushed block, with no planning-store hash to compare against."""
    import yaml

    work, out = tmp_path / "work", tmp_path / "out"
    env = _dry_env(work, out, SIZE="128", PATCHES="8", STEPS="2", CALL_S="300", KEEP_MODELS="0")
    run = subprocess.run(["bash", "scripts/gpu/fine_patch.sh"], check=False, cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert json.loads((work / "store.json").read_text())["image_shape"] == [128, 128, 3]
    assert "not the planning store" not in run.stdout and "probe copied" not in run.stdout
    assert (work / "probe" / "probe.safetensors").is_file()  # trained here, on the 128x128 frames
    config = yaml.safe_load((work / "teacher_p8_s0" / "config.yaml").read_text())
    assert config["model"]["patch"] == 8 and config["data"]["path"].endswith("pusht128.zarr")
    bme = json.loads((out / "bme_teacher_p8_s0.json").read_text())
    assert bme["update"] == 2 and bme["steps_4"]["moved"]["frames"] + bme["steps_4"]["still"]["frames"] > 0


@pytest.mark.skipif(sys.platform != "linux", reason="the GPU scripts are bash for the Linux device machine")
def test_patch_cost_times_the_query_and_the_training_of_each_patch(tmp_path, dry_store):
    """One JSON line at the end: per patch its tokens a frame, query time and training rate, and their ratios to
    the first patch's (4x4 patches: 4 times the tokens, more compute than 8x8 on every count)."""
    work, out = tmp_path / "work", tmp_path / "out"
    shutil.copytree(dry_store / "pusht64.zarr", work / "pusht64.zarr")  # the call makes one only where none is
    run = subprocess.run(["bash", "scripts/gpu/patch_cost.sh"], check=False, cwd=ROOT, env=_dry_env(work, out),
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    coarse, fine = result["patches"]["8"], result["patches"]["4"]
    assert (coarse["tokens_per_frame"], fine["tokens_per_frame"]) == (64, 256)
    assert coarse["query_ratio"] == 1.0 == coarse["update_time_ratio"]
    assert fine["matmul_gflop_per_pass"] > 4 * coarse["matmul_gflop_per_pass"]  # attention grows with tokens²
    assert fine["query_ms"] > coarse["query_ms"] and fine["updates_per_s"] > 0
    assert "store at" not in run.stdout and (out / "rate_p4.log").is_file() and (out / "prof_p4.json").is_file()


def _pair_stage(stage: int, tmp_path: Path, call_s: int, **extra: str) -> subprocess.CompletedProcess:
    env = _dry_env(tmp_path / "work", tmp_path / "out", STAGE=str(stage), CALL_S=str(call_s),
                   **{"PAIR": "base=objective.p_mean=-0.8 high=objective.p_mean=0.4,objective.p_std=1.2,"
                                "data.motion_sampling=0.5,objective.state_weight=0.3,objective.state_probe=@probe,"
                                "model.action_null=true,objective.action_dropout=0.2",
                      **extra})
    return subprocess.run(["bash", "scripts/gpu/teacher_pair.sh"], check=False, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(sys.platform != "linux", reason="the GPU scripts are bash for the Linux device machine")
def test_teacher_pair_trains_each_teacher_with_its_own_settings_then_trains_on_and_plans(tmp_path, dry_store):
    import yaml

    work, out = tmp_path / "work", tmp_path / "out"

    def config(name: str) -> dict:
        return yaml.safe_load((work / name / "config.yaml").read_text())

    guide = {"GUIDE": "2", "PLAN_GUIDE": "best"}  # the second teacher also sampled with action guidance 2
    run = _pair_stage(1, tmp_path, call_s=60, DRY_STORE=str(dry_store), **guide)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    objective = {name: config(f"teacher_{name}")["objective"] for name in ("base", "high")}
    assert (objective["base"]["p_mean"], objective["base"]["p_std"]) == (-0.8, 1.6)  # the preset's p_std
    assert (objective["high"]["p_mean"], objective["high"]["p_std"]) == (0.4, 1.2)
    # windows drawn by the block's travel (data.motion_sampling), trained through `crcm train teacher`
    assert [config(f"teacher_{name}")["data"]["motion_sampling"] for name in ("base", "high")] == [0.0, 0.5]
    # a state-probe loss read through the study's own probe (@probe), the other teacher without one
    assert (objective["high"]["state_weight"], objective["high"]["state_probe"]) == (0.3, str(work / "probe"))
    assert (objective["base"]["state_weight"], objective["base"]["state_probe"]) == (0.0, None)
    scored = json.loads((out / "bme_teacher_high.json").read_text())
    assert scored["split"] == "val" and scored["render_check"]["real_frames"]["still"]["block_pixels"] == 1.0
    paired = json.loads((out / "cmp_teacher.json").read_text())  # high against base on the same windows
    assert paired["a"] == str(work / "teacher_base") and paired["b"] == str(work / "teacher_high")
    assert paired["moved_frames"] > 0 and len(paired["by_move"]) == 4
    assert sum(row["moved_frames"] for row in paired["by_step"]) == paired["moved_frames"]  # by predicted frame
    assert "cmp_teacher (high - base)" in run.stdout and (out / "bme_teacher_base.npz").is_file()
    assert config("teacher_high")["objective"]["action_dropout"] == 0.2
    assert json.loads((out / "bme_teacher_high_g2.json").read_text())["guidance"] == 2.0
    assert json.loads((out / "bme_teacher_high.json").read_text())["guidance"] == 1.0
    assert json.loads((out / "cmp_teacher_g2.json").read_text())["b"] == str(work / "teacher_high")
    assert "cmp_teacher_g2 (high at guidance 2 - base)" in run.stdout

    run = _pair_stage(2, tmp_path, call_s=130, MORE="6", MORE_MIN="0.2", **guide)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    t2 = config("t2_high")
    assert t2["objective"]["p_mean"] == 0.4 and t2["init"] == str(work / "teacher_high")
    assert t2["objective"]["state_probe"] == str(work / "probe")
    assert json.loads((out / "cmp_t2.json").read_text())["b"] == str(work / "t2_high")

    assert (out / "cmp_t2_g2.json").is_file()
    moved = {w: json.loads((work / f"bme_t2_high{tag}.json").read_text())["steps_4"]["moved"]["position"]
             for w, tag in ((1.0, ""), (2.0, "_g2"))}

    run = _pair_stage(3, tmp_path, call_s=200, **guide)
    assert run.returncode == 0 and "sign test" in run.stdout, run.stdout[-3000:] + run.stderr[-3000:]
    best = min(moved, key=moved.get)  # PLAN_GUIDE=best: the weight whose stage-2 block was nearest
    assert f"high planned with guidance {best}" in run.stdout
    for name in ("base", "high"):
        assert len(next((work / f"plan_t2_{name}").glob("*.goals.jsonl")).read_text().splitlines()) == 2
    planned = json.loads((work / "plan_t2_high" / "results.json").read_text())["summary"]["arms"]
    assert next(iter(planned.values()))["model"]["guidance"] == best


@pytest.mark.skipif(sys.platform != "linux", reason="the GPU scripts are bash for the Linux device machine")
def test_teacher_pair_waits_for_its_own_probe_before_a_teacher_trains_through_it(tmp_path):
    """On a fresh machine the probe trains in the background beside the teachers; a teacher whose state-probe
    loss reads it (@probe) must start only once it is written (the forty-eighth session's first call started
    it at once and it exited at 46 s: "probe ... needs meta.json and probe.safetensors")."""
    run = _pair_stage(1, tmp_path, call_s=90)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    log = run.stdout
    assert "teacher_high: exit 0" in log and "teacher_base: exit 0" in log, log[-3000:]
    assert "probe ready at" in log and log.index("probe ready at") < log.index("two teachers side by side")
    assert (tmp_path / "out" / "cmp_teacher.json").is_file()


@pytest.mark.skipif(sys.platform != "linux", reason="the GPU scripts are bash for the Linux device machine")
def test_probe_ready_refuses_where_no_probe_was_written(tmp_path):
    work = tmp_path / "work"
    (work / "probe").mkdir(parents=True)
    (work / "probe.log").write_text("crcm: error: the store has no state\n")
    script = "source scripts/gpu/setup.sh; STUDY=p; source scripts/gpu/pusht_study.sh; probe_ready; echo after"
    run = subprocess.run(["bash", "-c", script], check=False, cwd=ROOT, env=_dry_env(work, tmp_path / "out"),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "after" not in run.stdout, run.stdout + run.stderr
    assert f"no state probe at {work / 'probe'} after its training: crcm: error: the store has no state" in run.stderr


@pytest.mark.parametrize("pair, message", [
    ("base=objective.p_mean=-0.8", "PAIR needs two NAME=OVERRIDES items, got 1"),
    ("a=objective.p_mean=0 a=objective.p_mean=1", "PAIR names the same teacher twice: a"),
    ("a=objective.p_mean=0 b", "PAIR item 'b': expected NAME=KEY=VALUE"),
    ("a=objective.p_mean=0 b=objective.p_mean=1,p_std", "PAIR item 'b=objective.p_mean=1,p_std': expected"),
])
def test_teacher_pair_refuses_a_bad_pair(tmp_path, pair, message):
    run = _pair_stage(1, tmp_path, call_s=60, PAIR=pair)
    assert run.returncode == 2 and message in run.stderr, run.stderr


@pytest.mark.parametrize("extra, message", [
    ({"GUIDE": "2 x"}, 'GUIDE="2 x": expected guidance weights'),
    ({"GUIDE": "2", "PLAN_GUIDE": "most"}, "PLAN_GUIDE=most: expected a guidance weight or best"),
    ({"PLAN_GUIDE": "best"}, "PLAN_GUIDE=best picks among GUIDE's weights; set GUIDE"),
])
def test_teacher_pair_refuses_bad_guidance_settings(tmp_path, extra, message):
    run = _pair_stage(1, tmp_path, call_s=60, **extra)
    assert run.returncode == 2 and message in run.stderr, run.stderr
    assert not (tmp_path / "work").exists() or not list((tmp_path / "work").glob("teacher_*"))


@pytest.mark.skipif(sys.platform != "linux", reason="the GPU scripts are bash for the Linux device machine")
def _tiny_teacher(dry_store: Path, out: Path, steps: int) -> Path:
    """A tiny teacher of STEPS updates on the rehearsals' store, for a study that plans a carried one."""
    train = subprocess.run([sys.executable, "-m", "crcm_robotics.cli", "train", "teacher", "preset=tiny",
                            f"data.path={dry_store / 'pusht64.zarr'}", "data.frame_skip=5", f"train.steps={steps}",
                            f"train.out={out}", "train.progress=false"],
                           check=False, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert train.returncode == 0, train.stderr[-2000:]
    return out


def test_cost_pair_plans_one_teacher_under_two_costs_with_their_fidelity(tmp_path, dry_store):
    """STAGE=put moves a carried teacher and probe into WORK; STAGE=plan plans it under each cost side by side,
    each with its fidelity figures, and pairs the two goal by goal; a bad COSTS or a lost WORK is refused."""
    teacher = _tiny_teacher(dry_store, tmp_path / "teacher", steps=4)
    work, out = tmp_path / "work", tmp_path / "out"

    def stage(name: str, **extra: str) -> subprocess.CompletedProcess:
        env = _dry_env(work, out, STAGE=name, CALL_S="200", DRY_STORE=str(dry_store), **extra)
        return subprocess.run(["bash", "scripts/gpu/cost_pair.sh"], check=False, cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=600)

    lost = stage("plan")
    assert lost.returncode == 2 and "run STAGE=put again" in lost.stderr, lost.stderr
    run = stage("put", TEACHER=str(tmp_path / "nowhere"), PROBE_FROM=str(dry_store / "probe"))
    assert run.returncode == 2 and "expected a carried checkpoint or probe folder" in run.stderr
    run = stage("put", TEACHER=str(teacher))  # no probe carried: STAGE=plan makes the study's own
    assert run.returncode == 0 and (work / "teacher" / "meta.json").is_file(), run.stderr
    assert not (work / "probe").exists()
    bad = stage("plan", COSTS="probe probe")
    assert bad.returncode == 2 and 'COSTS="probe probe": expected two different' in bad.stderr
    run = stage("plan", FIDELITY="1")
    assert run.returncode == 0 and "sign test" in run.stdout, run.stdout[-3000:] + run.stderr[-3000:]
    assert "probe copied from" in run.stdout and "probe ready at" in run.stdout  # the rehearsal's probe
    run = stage("put", TEACHER=str(teacher), PROBE_FROM=str(dry_store / "probe"))  # a carried probe goes in too
    assert run.returncode == 0 and (work / "probe" / "probe.safetensors").is_file(), run.stderr
    for cost in ("probe", "probe_mass"):
        assert len(next((work / f"plan_{cost}").glob("*.goals.jsonl")).read_text().splitlines()) == 2
        fidelity = json.loads(next((work / f"plan_{cost}").glob("*.fidelity.json")).read_text())
        assert fidelity["goals"] == 1 and -1.0 <= fidelity["rank_corr_model"] <= 1.0
        summary = json.loads((work / f"plan_{cost}" / "results.json").read_text())["summary"]
        assert summary["planner"]["cost"] == cost and summary["planner"]["replan_every"] == 10
    assert (out / "cost_plan.tgz").is_file()
    with tarfile.open(out / "cost_probe.tgz") as returned:  # the study's own probe, made here, comes back
        assert "probe/probe.safetensors" in returned.getnames()


def test_cost_pair_arms_and_a_cut_arm_resumed(tmp_path, dry_store):
    """ARMS names each arm's planner settings (replanning every 10 where an arm sets none); STUDENT=SEED plans a
    student distilled from the put teacher in its place; PROBE_SEEDS trains a probe at each seed beside the
    study's own, which an arm reads through probe=$WORK/..., and every probe's weights come back; STAGE=more
    resumes an arm cut short where it stopped, with the same model, joins its parts and pairs the arms; bad
    ARMS, STUDENT or PROBE_SEEDS and a lost probe are refused in one line."""
    teacher = _tiny_teacher(dry_store, tmp_path / "teacher", steps=2)
    work, out = tmp_path / "work", tmp_path / "out"
    arms = "r10=planner.cost=probe_mass,probe=$WORK/probe_s1 r5=planner.cost=probe_mass,planner.replan_every=5"

    def stage(name: str, **extra: str) -> subprocess.CompletedProcess:
        env = _dry_env(work, out, STAGE=name, CALL_S="200", DRY_STORE=str(dry_store), DISTILL_MIN="0.2",
                       **{"PROBE_SEEDS": "1", **extra})
        return subprocess.run(["bash", "scripts/gpu/cost_pair.sh"], check=False, cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=600)

    assert stage("put", TEACHER=str(teacher), PROBE_FROM=str(dry_store / "probe")).returncode == 0
    early = stage("more", ARMS=arms)  # nothing planned yet on this machine
    assert early.returncode == 2 and "run STAGE=plan again" in early.stderr, early.stderr
    for bad, said in (
            ("r10=planner.cost=probe r10=planner.cost=probe_mass", "different names (got 2, named twice: r10)"),
            ("a=planner.seed=1 b=planner.seed=2 a=planner.seed=3", "different names (got 3, named twice: a)"),
            ("a=planner.seed=1", "expected two or more items with different names (got 1)"),
            ("r10 r5=planner.replan_every=5", "ARMS item 'r10': expected NAME=KEY=VALUE"),
            ("a=planner.seed=1 b=probe=$WORK/probe_s2", "ARMS item 'b' reads probe_s2: expected its seed in")):
        run = stage("plan", ARMS=bad)
        assert run.returncode == 2 and said in run.stderr, run.stderr
    for bad, said in (("1 0", "seed '0': expected whole-number seeds other than 0"),
                      ("one", "seed 'one': expected whole-number"),
                      ("1 2 1", "expected at most four different seeds"), ("1 2 3 4 5", "at most four different")):
        run = stage("plan", ARMS=arms, PROBE_SEEDS=bad)
        assert run.returncode == 2 and said in run.stderr, run.stderr
    run = stage("plan", ARMS=arms, STUDENT="s0")
    assert run.returncode == 2 and "STUDENT=s0: expected a seed" in run.stderr, run.stderr
    failed = stage("plan", ARMS=arms, STUDENT="1", DISTILL_ARGS="train.no_such_setting=1")  # distillation fails
    assert failed.returncode == 2 and "the student's distillation wrote no checkpoint" in failed.stdout, failed.stdout
    assert not list(work.glob("plan_r*")) and not (work / "student_s1").exists()  # nothing to resume from
    run = stage("plan", ARMS=arms, FIDELITY="0", STUDENT="0")
    assert run.returncode == 0 and "sign test" in run.stdout, run.stdout[-3000:] + run.stderr[-3000:]
    assert "student_s0: exit 0" in run.stdout and (work / "student_s0" / "meta.json").is_file()
    assert "probe_s1: " in run.stdout and (work / "probe_s1" / "probe.safetensors").is_file()
    for name, every, probe in (("r10", 10, work / "probe_s1"), ("r5", 5, work / "probe")):
        results = json.loads((work / f"plan_{name}" / "results.json").read_text())
        summary = results["summary"]
        assert summary["planner"]["replan_every"] == every and summary["planner"]["cost"] == "probe_mass"
        assert summary["arms"]["student_s0"]["probe"] == str(probe), f"plan_{name} read another probe"
    with tarfile.open(out / "cost_plan.tgz") as returned:
        assert "distill_s0.log" in returned.getnames()
    with tarfile.open(out / "cost_probe_s1.tgz") as returned:  # each probe trained here in a tarball of its own
        assert "probe_s1/probe.safetensors" in returned.getnames()
    assert not (out / "cost_probe.tgz").exists()  # the put probe came from elsewhere: not sent back
    (work / "probe_s1").rename(work / "probe_s1_away")  # as if the machine had lost it
    lost = stage("more", ARMS=arms, STUDENT="0")
    assert lost.returncode == 2 and "needs the probe at seed 1 that STAGE=plan trained" in lost.stderr, lost.stderr
    (work / "probe_s1_away").rename(work / "probe_s1")
    student_less = stage("more", ARMS=arms, STUDENT="1")  # a student this machine never distilled
    assert student_less.returncode == 2 and "needs the student that STAGE=plan planned" in student_less.stderr
    cut = next((work / "plan_r5").glob("*.goals.jsonl"))  # as if the call had ended after r5's first goal
    first, second = cut.read_text().splitlines()
    cut.write_text(first + "\n")
    run = stage("more", ARMS=arms, STUDENT="0")
    assert run.returncode == 0 and "sign test" in run.stdout, run.stdout[-3000:] + run.stderr[-3000:]
    assert (work / "plan_r5_from1").is_dir() and not list(work.glob("plan_r10_from*"))
    assert "student_s0" in (work / "plan_r5_from1" / "results.json").read_text()
    resumed = json.loads(next((work / "plan_r5_from1").glob("*.goals.jsonl")).read_text())
    assert (resumed["episode"], resumed["start"]) == (json.loads(second)["episode"], json.loads(second)["start"])
    for name in ("r10", "r5"):
        assert len((work / "joined" / name / "student.goals.jsonl").read_text().splitlines()) == 2
    assert "r10: 2 of 2 goals" in run.stdout and (out / "cost_more.tgz").is_file()


@pytest.mark.parametrize("stage, missing", [(2, "teacher_base"), (3, "t2_base")])
def test_teacher_pair_refuses_a_later_stage_without_the_pair(tmp_path, stage, missing):
    """A later stage on a machine that lost WORK (a fresh one) says so in one line and trains nothing."""
    run = _pair_stage(stage, tmp_path, call_s=60)
    assert run.returncode == 2, run.stdout[-2000:] + run.stderr[-2000:]
    assert f"{missing} and the store from the stage before; not found" in run.stderr
    assert "start again at STAGE=1" in run.stderr
    assert not list((tmp_path / "work").glob("t2_*")) and not list((tmp_path / "work").glob("plan_*"))


def _draws_stage(stage: int, work: Path, out: Path, **extra: str) -> subprocess.CompletedProcess:
    env = _dry_env(work, out, STAGE=str(stage), CALL_S="300", DISTILL_MIN="0.2", **extra)
    return subprocess.run(["bash", "scripts/gpu/draws.sh"], check=False, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(sys.platform != "linux", reason="the GPU scripts are bash for the Linux device machine")
def test_draws_study_plans_each_arm_with_its_candidates_and_draws(tmp_path, dry_store):
    """Stage 1 on a fresh machine (an empty WORK) given a kept teacher: the store and probe made again, one
    TF-sCM student distilled, each arm planned with its own candidates, elites (an eighth) and noise draws;
    stage 1 again with SEED=0 plans that seed's student beside them; stage 2 resumes a cut arm from the first
    goal it lacks and joins the parts."""
    import yaml

    kept, work, out = tmp_path / "kept", tmp_path / "work", tmp_path / "out"
    script = ("source scripts/gpu/setup.sh; STUDY=keep; RATE=2; source scripts/gpu/pusht_study.sh; "
              "make_store; train_model teacher train.steps=2; keep_models teacher")
    run = subprocess.run(["bash", "-c", script], check=False, cwd=ROOT, capture_output=True, text=True,
                         env=_dry_env(tmp_path / "teacher_work", kept, DRY_STORE=str(dry_store)), timeout=300)
    assert run.returncode == 0 and sorted(kept.glob("keep.tgz.part*")), run.stdout[-3000:] + run.stderr[-3000:]

    run = _draws_stage(1, work, out, ARMS="n16_d1 n8_d2", KEEP=str(kept), DRY_STORE=str(dry_store))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "kept models restored" in run.stdout and "student_s1: exit 0" in run.stdout, run.stdout
    assert yaml.safe_load((work / "student_s1" / "config.yaml").read_text())["method"] == "tf_scm"
    for arm, expected in {"s1_n16_d1": (16, 2, 1), "s1_n8_d2": (8, 1, 2)}.items():
        planner = json.loads((work / f"plan_{arm}_a.json").read_text())["planner"]
        assert (planner["samples"], planner["elites"], planner["draws"]) == expected, (arm, planner)
    assert "sign test" in run.stdout and (out / "draws1.tgz").stat().st_size > 0

    # the seed-0 student on the same warm machine: its own student and runs, compared beside seed 1's
    run = _draws_stage(1, work, out, ARMS="n8_d2", SEED="0")
    assert run.returncode == 0 and "student_s0: exit 0" in run.stdout, run.stdout[-3000:] + run.stderr[-3000:]
    assert json.loads((work / "plan_s0_n8_d2_a.json").read_text())["ckpt"] == str(work / "student_s0")
    assert "plan_s0_n8_d2_a/student_s0 vs plan_s1_n8_d2_a/student_s1" in run.stdout, run.stdout

    cut = next((work / "plan_s1_n8_d2_a").glob("*.goals.jsonl"))
    cut.write_text(cut.read_text().splitlines(keepends=True)[0])
    run = _draws_stage(2, work, out, ARMS="n16_d1 n8_d2")
    assert run.returncode == 0 and "plan_s1_n8_d2_b: exit 0" in run.stdout, run.stdout[-3000:] + run.stderr[-3000:]
    assert json.loads((work / "plan_s1_n8_d2_b.json").read_text())["first_goal"] == 1
    for arm in ("s1_n16_d1", "s1_n8_d2"):
        assert len((work / "joined" / arm / "student.goals.jsonl").read_text().splitlines()) == 2, arm


def test_draws_study_refuses_to_plan_without_a_teacher(tmp_path):
    """A warm machine's store (nothing to unpack) and no teacher there: one line and exit 2, no student."""
    (tmp_path / "work" / "pusht64.zarr").mkdir(parents=True)
    run = _draws_stage(1, tmp_path / "work", tmp_path / "out")
    assert run.returncode == 2 and "no teacher in" in run.stdout and "expected KEEP=DIR" in run.stdout, run.stdout
    assert not list((tmp_path / "work").glob("student_*"))
