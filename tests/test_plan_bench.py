"""``crcm bench plan`` / ``crcm plan`` end to end on CPU: real gym-pusht, the tiny student, a tiny probe.

Guards the benchmark's JSON (every field, per arm), that the simulator oracle planning on the true state beats
random actions, the report and GIFs, ``crcm plan``'s JSON + GIF, and one-line config errors.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("gym_pusht", reason="needs the [sim] extra (gym-pusht)")

ARM_FIELDS = {"goals", "success_any", "success_end", "block_pos_error", "block_angle_error", "state_distance",
              "error_removed", "replan_ms_median", "replan_ms_p90", "plan_s_per_episode", "episode_s", "kind",
              "checkpoint", "arm_s"}


FIDELITY_FIELDS = {"goals", "candidates", "elites", "imagined_agent_error", "imagined_block_error",
                   "imagined_angle_error_deg", "probe_agent_error", "probe_block_error", "static_agent_error",
                   "static_block_error", "rank_corr_model", "rank_corr_oracle", "top_overlap"}


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


@pytest.fixture(scope="module")
def student_with_probe(tiny_student, pusht_store_32, tmp_path_factory) -> Path:
    from crcm_robotics.conf import compose_config
    from distill.probe import train_probe

    out = tmp_path_factory.mktemp("planbench") / "student"
    shutil.copytree(tiny_student, out)
    cfg = compose_config("train_probe", [f"data.path={pusht_store_32}", f"out={out / 'probe'}", "steps=30",
                                         "batch_size=16", "width=8", "progress=false", "data.val_fraction=0.25"])
    figures = train_probe(cfg)
    assert set(figures["val_mean_abs_error"]) == {"agent_pos", "block_pos", "agent_x", "agent_y", "block_x",
                                                  "block_y", "block_angle_deg"}
    return out


def bench(ckpt: Path, out: Path, *extra: str) -> dict:
    from crcm_robotics.conf import compose_config
    from crcm_robotics.eval.plan_bench import run_bench_plan_cfg

    overrides = [f"ckpt={ckpt}", f"out={out}", "goals=2", "ahead=10", "budget=10", "min_move=5", "min_turn=0.05",
                 "planner.samples=24", "planner.iterations=3", "planner.elites=6", "planner.horizon=10",
                 "planner.hold=5", "planner.replan_every=5", "planner.cost=pooled_mse", "gifs=1",
                 "oracle_workers=1", "device=cpu", "progress=false", "arms=[random,oracle,oracle_state,model]", *extra]
    return run_bench_plan_cfg(compose_config("bench_plan", overrides))


def test_bench_plan_reports_every_arm_and_the_oracle_beats_random(student_with_probe, tmp_path):
    report = bench(student_with_probe, tmp_path / "bench")
    assert report["goals"] == 2 and report["goal_block_move_mean"] > 0 and report["held_out_split"] is True
    assert list(report["arms"]) == ["random", "oracle", "oracle_state", "student"]
    for name, arm in report["arms"].items():
        assert ARM_FIELDS <= set(arm), (name, ARM_FIELDS - set(arm))
        assert 0.0 <= arm["success_any"] <= 1.0 and arm["success_end"] <= arm["success_any"]
    assert report["arms"]["random"]["replan_ms_median"] is None
    assert report["arms"]["student"]["replan_ms_median"] > 0
    assert report["arms"]["student"]["model"]["frame_skip"] == 1
    assert report["arms"]["student"]["model"]["guidance"] == 1.0  # no action guidance unless asked
    oracle, random = report["arms"]["oracle_state"], report["arms"]["random"]
    assert oracle["state_distance"] < 0.5 * random["state_distance"]
    assert oracle["error_removed"] > random["error_removed"]
    saved = json.loads((tmp_path / "bench" / "results.json").read_text())
    assert len(saved["per_goal"]["oracle"]) == 2 and saved["summary"]["arms"]["oracle_state"] == oracle
    assert "| oracle |" in (tmp_path / "bench" / "report.md").read_text()
    assert (tmp_path / "bench" / "student" / "goal00.gif").stat().st_size > 0
    fid = report["arms"]["student"]["fidelity"]
    assert FIDELITY_FIELDS <= set(fid), FIDELITY_FIELDS - set(fid)
    assert fid["goals"] == 2 and fid["candidates"] == 24 and fid["elites"] == 6
    assert json.loads((tmp_path / "bench" / "student.fidelity.json").read_text()) == fid  # before the goals
    assert all(-1.0 <= fid[k] <= 1.0 for k in ("rank_corr_model", "rank_corr_oracle"))
    assert 0.0 <= fid["top_overlap"] <= 1.0 and fid["static_block_error"] >= 0.0
    assert all(fid[k] >= 0.0 for k in FIDELITY_FIELDS if k.endswith("error") or k.endswith("deg"))
    assert "fidelity" not in report["arms"]["oracle"]
    report_md = (tmp_path / "bench" / "report.md").read_text()
    assert f"| student | {fid['rank_corr_model']} | {fid['rank_corr_oracle']} |" in report_md


def test_probe_cost_runs_through_the_bench(student_with_probe, tmp_path):
    report = bench(student_with_probe, tmp_path / "probe", "arms=[model]", "goals=1",
                   "planner.cost=probe_path", "planner.effort_weight=0.5", "planner.noise=shared",
                   "planner.draws=2")
    assert report["arms"]["student"]["goals"] == 1
    assert (report["planner"]["noise"], report["planner"]["draws"]) == ("shared", 2)
    assert report["arms"]["student"]["probe"] == str(student_with_probe / "probe")  # which probe read frames
    # a set effort weight wins; the unset effort settings take PushT's defaults
    assert (report["planner"]["effort_weight"], report["planner"]["effort_on"]) == (0.5, "moves")


def test_goals_from_plans_a_model_of_another_store_on_the_same_goals(student_with_probe, tmp_path):
    """A checkpoint trained on another store (here: its meta names a store that does not exist) is planned on
    the goals of goals_from's held-out episodes; naming the goals' store twice is a one-line error."""
    from crcm_robotics.config import ConfigError

    other = tmp_path / "other"
    shutil.copytree(student_with_probe, other)
    meta = json.loads((other / "meta.json").read_text())
    meta["data_path"], meta["split"]["val"] = str(tmp_path / "elsewhere.zarr"), []
    (other / "meta.json").write_text(json.dumps(meta))
    mine = bench(student_with_probe, tmp_path / "mine", "arms=[random,model]", "fidelity_goals=0")
    theirs = bench(other, tmp_path / "theirs", "arms=[random,model]", "fidelity_goals=0",
                   f"goals_from={student_with_probe}")
    assert theirs["goals_from"] == str(student_with_probe) and mine["goals_from"] == str(student_with_probe)
    assert theirs["goals"] == mine["goals"] == 2 and theirs["held_out_split"] is True
    assert (theirs["goal_block_move_mean"], theirs["goal_block_turn_mean"]) == (
        mine["goal_block_move_mean"], mine["goal_block_turn_mean"])
    timing = {"arm_s", "episode_s", "plan_s_per_episode", "replan_ms_median", "replan_ms_p90"}  # wall clock

    def outcome(arm: dict) -> dict:
        return {k: v for k, v in arm.items() if k not in timing}

    assert outcome(theirs["arms"]["random"]) == outcome(mine["arms"]["random"])
    assert theirs["arms"]["other"]["goals"] == 2 and theirs["arms"]["other"]["checkpoint"] == str(other)
    with pytest.raises(ConfigError, match="both name the goals' store"):
        bench(other, tmp_path / "both", f"goals_from={student_with_probe}", f"data.path={tmp_path}")


def test_first_goal_plans_the_rest_of_the_same_selection(student_with_probe, tmp_path):
    """first_goal=1 plans the second of the selected goals (the same start and goal as in the whole run), and
    only it: a cut arm resumes and its parts' per-goal lines concatenate. The planner's draws start afresh, so
    the resumed goal's outcome is another draw of the same planner, not the whole run's numbers."""
    whole = bench(student_with_probe, tmp_path / "whole", "arms=[model]", "fidelity_goals=0", "gifs=0")
    rest = bench(student_with_probe, tmp_path / "rest", "arms=[model]", "fidelity_goals=0", "gifs=2",
                 "first_goal=1")
    assert (whole["goals"], rest["goals"], rest["first_goal"]) == (2, 1, 1)
    lines = [json.loads(x) for x in (tmp_path / "whole" / "student.goals.jsonl").read_text().splitlines()]
    resumed = [json.loads(x) for x in (tmp_path / "rest" / "student.goals.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and len(resumed) == 1
    assert (resumed[0]["episode"], resumed[0]["start"]) == (lines[1]["episode"], lines[1]["start"])
    assert len(resumed[0]["replan_ms"]) == len(lines[1]["replan_ms"]) == 2  # budget 10, replanned every 5
    # each line names its goal: the block's move and turn as the bench's mean reports them, the goal state
    assert sum(x["goal_block_move"] for x in lines) / 2 == pytest.approx(whole["goal_block_move_mean"], abs=1e-3)
    assert sum(x["goal_block_turn"] for x in lines) / 2 == pytest.approx(whole["goal_block_turn_mean"], abs=1e-3)
    assert len(lines[1]["goal_state"]) == 5 and resumed[0]["goal_state"] == lines[1]["goal_state"]
    assert (tmp_path / "rest" / "student" / "goal01.gif").is_file()  # named by its index in the selection
    assert not (tmp_path / "rest" / "student" / "goal00.gif").exists()


def test_only_goals_plans_the_named_goals_of_the_same_selection(student_with_probe, tmp_path):
    """only_goals=[EPISODE:START] plans just those of the selected goals (the goal a whole run plans, its GIF
    named by its index in the selection); an entry that is not EPISODE:START, or a goal the selection lacks, is
    a one-line error."""
    from crcm_robotics.config import ConfigError

    whole = bench(student_with_probe, tmp_path / "whole", "arms=[random]", "fidelity_goals=0", "gifs=0")
    lines = [json.loads(x) for x in (tmp_path / "whole" / "random.goals.jsonl").read_text().splitlines()]
    second = f"{lines[1]['episode']}:{lines[1]['start']}"
    only = bench(student_with_probe, tmp_path / "only", "arms=[random]", "fidelity_goals=0", "gifs=2",
                 f"only_goals=[{second}]")
    planned = [json.loads(x) for x in (tmp_path / "only" / "random.goals.jsonl").read_text().splitlines()]
    assert whole["goals"] == 2 and only["goals"] == 1 and only["only_goals"] == [second]
    assert [(r["episode"], r["start"], r["goal_state"]) for r in planned] == [
        (lines[1]["episode"], lines[1]["start"], lines[1]["goal_state"])]
    assert only["goal_block_move_mean"] == pytest.approx(lines[1]["goal_block_move"], abs=1e-3)
    assert sorted(p.name for p in (tmp_path / "only" / "random").iterdir()) == ["goal01.gif"]
    for bad, message in (("only_goals=[3-4]", "expected EPISODE:START"),
                         ("only_goals=[99999:3]", "99999:3: not among this store's 2 selected goals")):
        with pytest.raises(ConfigError, match=message):
            bench(student_with_probe, tmp_path / "bad", "arms=[random]", "fidelity_goals=0", bad)


def test_latent_cost_plans_a_model_arm_and_ranks_in_its_fidelity(student_with_probe, tmp_path):
    report = bench(student_with_probe, tmp_path / "latent", "arms=[random,model]", "goals=1",
                   "planner.cost=latent_mse", "fidelity_goals=1")
    arm = report["arms"]["student"]
    assert arm["goals"] == 1 and arm["replan_ms_median"] > 0
    fid = arm["fidelity"]
    assert -1.0 <= fid["rank_corr_model"] <= 1.0 and -1.0 <= fid["rank_corr_oracle"] <= 1.0


def test_probe_mass_cost_plans_the_oracle_and_a_model_and_ranks_in_the_fidelity(student_with_probe, tmp_path):
    """planner.cost=probe_mass: the bench gives the probe PushT's block colour; the oracle and the model plan
    with it and the model's fidelity ranks candidates by it."""
    report = bench(student_with_probe, tmp_path / "mass", "arms=[oracle,model]", "goals=1",
                   "planner.cost=probe_mass", "fidelity_goals=1")
    assert report["planner"]["cost"] == "probe_mass"
    assert report["arms"]["oracle"]["goals"] == report["arms"]["student"]["goals"] == 1
    assert -1.0 <= report["arms"]["student"]["fidelity"]["rank_corr_oracle"] <= 1.0


def test_fidelity_alone_skips_the_closed_loop(student_with_probe, tmp_path):
    from crcm_robotics.config import ConfigError

    out = tmp_path / "fid"
    report = bench(student_with_probe, out, "arms=[model]", "closed_loop=false", "fidelity_goals=1")
    arm = report["arms"]["student"]
    assert arm["goals"] == 0 and "success_any" not in arm and arm["fidelity"]["goals"] == 1
    assert (out / "student.goals.jsonl").read_text() == ""
    assert f"| student | {arm['fidelity']['rank_corr_model']} |" in (out / "report.md").read_text()
    bare = tmp_path / "bare"  # the same student without its probe: nothing to read states with
    shutil.copytree(student_with_probe, bare, ignore=shutil.ignore_patterns("probe"))
    with pytest.raises(ConfigError, match="closed_loop=false: the fidelity figures of .* with a probe"):
        bench(bare, tmp_path / "bare_out", "arms=[model]", "closed_loop=false", "fidelity_goals=1")


def test_fidelity_costs_the_candidates_with_a_second_probe_run(student_with_probe, pusht_store_32, tmp_path):
    """fidelity_other_probe: the same imagined candidates costed with a second probe. The first probe again
    reads them exactly as itself; a run at another seed reads and ranks them otherwise."""
    from crcm_robotics.conf import compose_config
    from crcm_robotics.config import ConfigError
    from distill.probe import train_probe

    fid = ("arms=[model]", "closed_loop=false", "fidelity_goals=1", "planner.cost=probe_mass")
    same = bench(student_with_probe, tmp_path / "same", *fid,
                 f"fidelity_other_probe={student_with_probe / 'probe'}")["arms"]["student"]["fidelity"]
    assert same["other_probe_rank_corr"] == same["other_probe_top_overlap"] == 1.0
    assert same["other_probe_rank_corr_model"] == same["rank_corr_model"]
    assert all(same[f"{p}_{k}"] == 0.0 for p in ("other_probe_apart", "other_probe_sim_apart")
               for k in ("agent_error", "block_error", "angle_error_deg"))
    other = tmp_path / "probe_seed1"
    train_probe(compose_config("train_probe", [f"data.path={pusht_store_32}", f"out={other}", "steps=30",
                                               "batch_size=16", "width=8", "progress=false", "seed=1",
                                               "data.val_fraction=0.25"]))
    apart = bench(student_with_probe, tmp_path / "apart", *fid,
                  f"fidelity_other_probe={other}")["arms"]["student"]["fidelity"]
    assert apart["other_probe_apart_angle_error_deg"] > 0 and apart["other_probe_sim_apart_agent_error"] > 0
    assert -1.0 <= apart["other_probe_rank_corr"] < 1.0
    assert {k: apart[k] for k in FIDELITY_FIELDS} == {k: same[k] for k in FIDELITY_FIELDS}  # the first probe's
    for bad, message in ((f"fidelity_other_probe={tmp_path / 'none'}", "expected a state probe directory"),
                         ("planner.cost=pooled_mse", "give arms with model, fidelity_goals ≥ 1 and a probe cost")):
        with pytest.raises(ConfigError, match=message):
            bench(student_with_probe, tmp_path / "bad", "arms=[model]", "closed_loop=false", "fidelity_goals=1",
                  "planner.cost=probe_mass", f"fidelity_other_probe={other}", bad)


def test_crcm_plan_prints_json_and_writes_a_gif(student_with_probe, tmp_path):
    cmd = [sys.executable, "-m", "crcm_robotics.cli", "plan", str(student_with_probe), "ahead=10", "budget=10",
           "start=12", "planner.samples=16", "planner.iterations=2", "planner.elites=4", "planner.horizon=10",
           "planner.replan_every=5", "device=cpu", f"out={tmp_path}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    line = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"success_any", "success_end", "block_pos_error", "replan_ms", "gif"} <= set(line)
    assert len(line["replan_ms"]) == 2 and Path(line["gif"]).stat().st_size > 0


@pytest.mark.parametrize("override, message", [
    ("planner.cost=l2", "planner.cost='l2' unknown"),
    ("planner.cost=latent_mse", "planner.cost=latent_mse compares a world model's latents; the oracle arm"),
    ("planner.replan_every=30", "replan_every=30 must be in"),
    ("arms=[robot]", "expected a non-empty subset"),
    ("fidelity_goals=-1", "fidelity_goals=-1 must be ≥ 0"),
    ("closed_loop=false", "closed_loop=false reports model arms' fidelity only: give arms=[model]"),
    ("goals_from=/nonexistent", "goals_from=/nonexistent: expected a checkpoint directory"),
    ("first_goal=50", "first_goal=50 must be in [0, goals=50)"),
    ("planner.probe_position_unit=nan", "planner.probe_position_unit=nan and planner.probe_angle_unit=0.0 must"),
    ("planner.probe_angle_unit=-1", "planner.probe_position_unit=0.0 and planner.probe_angle_unit=-1.0 must"),
    ("planner.noise=common", "planner.noise='common' and planner.draws=1: expected noise one of "
                             "per_candidate, shared and 1 ≤ draws ≤ 16"),
    ("planner.draws=0", "planner.noise='per_candidate' and planner.draws=0: expected"),
])
def test_bad_bench_settings_are_one_line_errors(student_with_probe, override, message, tmp_path, capsys):
    """In-process: the CLI's own error path, without a 3-s interpreter start per case."""
    from crcm_robotics.cli import main

    assert main(["bench", "plan", str(student_with_probe), override, f"out={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_near_the_budgets_end_candidates_are_scored_where_the_budget_ends():
    """With 3 env steps of budget left, a 10-step candidate is scored on its state after 3 steps."""
    from types import SimpleNamespace

    import numpy as np
    import torch

    from crcm_robotics.config import PlannerConfig
    from crcm_robotics.eval.plan_bench import Arm

    rolled: list[int] = []

    class Pool:  # the simulator's rollout pool, recording how many steps each query rolled out
        def rollout(self, state, actions, frames):
            rolled.append(actions.shape[1])
            return np.zeros((len(actions), 0, 8, 8, 3), np.uint8), np.zeros((*actions.shape[:2], 5), np.float32)

    def arm(**planner) -> Arm:
        cfg = PlannerConfig(samples=8, iterations=1, elites=2, horizon=10, hold=5, replan_every=5, **planner)
        return Arm("o", "oracle_state", cfg, torch.device("cpu"), np.zeros(2, np.float32),
                   np.full(2, 512, np.float32), pool=Pool())

    state, goal_state = np.zeros(5), np.ones(5)
    history = (np.zeros((1, 8, 8, 3), np.uint8), np.zeros((1, 2), np.float32))
    for remaining, planner, expected in [(3, {}, 3), (20, {}, 10), (None, {}, 10),
                                         (3, {"cost_at_budget_end": False}, 10)]:
        rolled.clear()
        plan, _ = arm(**planner).propose(state, history, history[0][0], np.zeros(2), goal_state, remaining)
        assert plan.shape == (10, 2) and set(rolled) == {expected}, (remaining, planner, rolled)
    with_model = arm()
    with_model.wm = SimpleNamespace(frame_skip=5)  # a model frame covers 5 env steps: round up to whole frames
    assert [with_model.scored_steps(r) for r in (1, 3, 5, 6, 10, 40)] == [5, 5, 5, 10, 10, 10]


def test_a_model_of_5_env_steps_replans_every_3_from_the_env_step_history(pusht_store_32):
    """Replanning off the model's frame grid: each solve's context is the newest env frame and every
    frame_skip-th before it, with the actions that produced them; the loop replans every 3 steps; a
    horizon off the grid is still refused."""
    import numpy as np
    import torch

    from crcm_robotics.config import ConfigError, PlannerConfig
    from crcm_robotics.data.pusht_sim import PushTSim, goal_pairs
    from crcm_robotics.data.store import TrajectoryStore
    from crcm_robotics.eval.plan_bench import Arm, check_planner, run_episode

    cfg = PlannerConfig(samples=8, iterations=1, elites=2, horizon=10, hold=5, replan_every=3, cost="pooled_mse")
    check_planner(cfg, frame_skips=[5])
    with pytest.raises(ConfigError, match="planner.horizon=12 must be a multiple of the model's frame_skip 5"):
        check_planner(PlannerConfig(horizon=12, hold=4, replan_every=3), frame_skips=[5])
    seen: list[tuple[np.ndarray, np.ndarray]] = []

    class StillModel:  # imagines nothing moving; keeps each solve's context
        frame_skip, context_frames, device, probe = 5, 2, torch.device("cpu"), None

        def imagine_tensor(self, actions, context, seed, decode="all", shared_noise=False):
            assert actions.shape[2] == 2 * 5  # five env actions per model frame
            seen.append(context)
            return torch.from_numpy(context[0][-1]).expand(*actions.shape[:2], -1, -1, -1).clone()

    store = TrajectoryStore(pusht_store_32)
    sim = PushTSim(32)
    pair = goal_pairs(store, list(range(store.num_episodes)), 1, ahead=10, context=6, min_move=5,
                      min_turn=0.05, sim=sim)[0]
    arm = Arm("m", "model", cfg, torch.device("cpu"), np.full(2, 10, np.float32), np.full(2, 502, np.float32),
              wm=StillModel())
    executed: list[np.ndarray] = []
    seen_frames: list[np.ndarray] = []
    step = sim.step

    def recording_step(action):
        frame, state = step(action)
        executed.append(np.asarray(action, np.float32))
        seen_frames.append(frame)
        return frame, state

    reset_to = sim.reset_to

    def recording_reset(start):
        seen_frames.append(reset_to(start))  # the simulator's frame at the goal's start
        return seen_frames[-1]

    sim.step, sim.reset_to = recording_step, recording_reset
    result, _ = run_episode(arm, pair, sim, budget=12)
    assert len(result.replan_ms) == 4 and len(executed) == 12  # solves at steps 0, 3, 6 and 9
    contexts = list({id(c): c for c in seen}.values())  # every candidate of a solve shares its context
    assert len(contexts) == 4 and len(seen_frames) == 13
    frames = [*pair.context_frames[:-1], *seen_frames]
    actions = [*pair.context_actions, *executed]
    for solve, (ctx_frames, ctx_actions) in enumerate(contexts):
        now = len(pair.context_frames) - 1 + 3 * solve  # the newest frame's index in the history
        np.testing.assert_array_equal(ctx_frames, np.stack([frames[now - 5], frames[now]]))
        np.testing.assert_array_equal(ctx_actions[-1], np.concatenate(actions[now - 4:now + 1]))
        np.testing.assert_array_equal(ctx_actions[0], np.concatenate(actions[now - 9:now - 4]) if now >= 9
                                      else np.concatenate([actions[max(j, 0)] for j in range(now - 9, now - 4)]))


def test_spearman_ranks():
    import numpy as np

    from crcm_robotics.eval.plan_bench import spearman

    a = np.array([3.0, 1.0, 2.0, 5.0])
    assert spearman(a, a**3) == pytest.approx(1.0) and spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(a, np.ones(4)) == 0.0 and spearman(a, np.array([1.0, np.nan, 2.0, 3.0])) == 0.0


def test_fidelity_of_a_model_that_is_the_simulator_matches_the_oracle(student_with_probe, pusht_store_32):
    """A "model" that renders candidates with the simulator itself ranks them as the oracle does, and its
    imagined-state errors are the probe's own; a model that never moves anything scores the static errors."""
    import numpy as np
    import torch

    from crcm_robotics.config import PlannerConfig
    from crcm_robotics.data.pusht_sim import PushTRolloutPool, PushTSim, goal_pairs
    from crcm_robotics.data.store import TrajectoryStore
    from crcm_robotics.eval.plan_bench import Arm, model_fidelity
    from crcm_robotics.plan.probe import load_probe

    store = TrajectoryStore(pusht_store_32)
    sim = PushTSim(32)
    pool = PushTRolloutPool(32, 1)
    try:
        pairs = goal_pairs(store, list(range(store.num_episodes)), 2, ahead=10, context=2, min_move=5,
                           min_turn=0.05, sim=sim)
        probe = load_probe(student_with_probe / "probe")
        cur = {"state": pairs[0].start_state}

        class SimModel:  # WorldModel's imagine_tensor, answered by the simulator from the current goal's start
            frame_skip, context_frames, device = 1, 2, torch.device("cpu")

            def imagine_tensor(self, actions, context, seed, shared_noise=False):  # noise: none here
                return torch.from_numpy(pool.rollout(cur["state"], actions.numpy(), frames="all")[0])

        class StillModel(SimModel):  # nothing moves: every imagined frame is the start frame
            def imagine_tensor(self, actions, context, seed, shared_noise=False):  # noise: none here
                return torch.from_numpy(context[0][-1]).expand(*actions.shape[:2], -1, -1, -1).clone()

        cfg = PlannerConfig(samples=16, elites=4, horizon=10, hold=5, cost="probe")
        low, high = np.full(2, 10, np.float32), np.full(2, 502, np.float32)
        for pair in pairs:
            cur["state"] = pair.start_state
            sim_fid = model_fidelity(Arm("m", "model", cfg, torch.device("cpu"), low, high, wm=SimModel()),
                                     [pair], pool, probe, 1)
            assert sim_fid["rank_corr_model"] == pytest.approx(sim_fid["rank_corr_oracle"], abs=1e-6)
            assert sim_fid["imagined_agent_error"] == pytest.approx(sim_fid["probe_agent_error"], abs=1e-3)
            assert sim_fid["imagined_block_error"] == pytest.approx(sim_fid["probe_block_error"], abs=1e-3)
            still = model_fidelity(Arm("m", "model", cfg, torch.device("cpu"), low, high, wm=StillModel()),
                                   [pair], pool, probe, 1)
            assert still["rank_corr_model"] == 0.0  # every candidate looks the same: no ranking at all
    finally:
        pool.close()
        sim.close()


def test_a_store_without_a_simulator_is_a_one_line_error(tmp_path):
    from crcm_robotics.data.synthetic import write_synthetic_store

    store = tmp_path / "synthetic.zarr"
    write_synthetic_store(store)
    proc = subprocess.run([sys.executable, "-m", "crcm_robotics.cli", "bench", "plan", f"data.path={store}",
                           "arms=[random]", f"out={tmp_path / 'o'}"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "is neither a PushT nor a Meta-World store" in proc.stderr
