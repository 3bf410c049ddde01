"""``crcm bench plan`` and ``crcm plan``: closed-loop goal reaching in a real simulator with imagined rollouts.

The simulator follows the store: gym-pusht for PushT stores, Meta-World for arm stores (``domain_of``; the
arm's goals are replayed from the store, its oracle restores MuJoCo snapshots, success is the object within
5 cm of the goal's object position: ``crcm_robotics.data.metaworld_sim``). Below, PushT's terms.

Goals follow DINO-WM (arXiv 2411.04983): a start state from a held-out episode of the store and the state its
logged actions reach ``ahead`` env steps later (replayed in the simulator); only goals where the block moves
≥ ``min_move`` env units or turns ≥ ``min_turn`` rad count. Success = ‖(agent x, y, block x, y) − goal‖ < 20
env units and block angle error < π/9. Each goal gets ``budget`` env steps of MPC: solve, execute
``replan_every`` steps in the simulator, solve again from the real frames (warm-started).

Arms, all with the same planner and cost:
- ``random``: random waypoints (no model);
- ``oracle``: the simulator renders every candidate (a perfect model: the planner's and cost's own ceiling);
- one arm per checkpoint (``CKPT`` and ``models=[…]``): candidates imagined by the world model.

Reported per arm: success reached at any executed step and held at the end, final block position/angle and
state-distance errors, the fraction of the initial block error removed, planning ms per replan (median, p90)
and per episode; for model arms, how well imagination ranks the planner's candidates against the simulator
(:func:`model_fidelity`). One JSON line; ``OUT/report.md``, ``OUT/results.json``, ``OUT/<arm>.goals.jsonl``
(each goal as it finishes) and GIFs (executed | imagined best rollout | goal) under ``OUT/<arm>/``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from crcm_robotics.config import ConfigError, PlanBenchConfig, PlannerConfig, PlanRunConfig, key_map_from_config
from crcm_robotics.plan.costs import LATENT_COSTS, make_cost
from crcm_robotics.plan.objective import MAX_DRAWS, NOISE_MODES, frames_score, imagined_score
from crcm_robotics.plan.planners import MPC, ActionSpace, SamplingPlanner
from crcm_robotics.plan.probe import MassReading, StateProbe, load_probe


@dataclass
class EpisodeResult:
    episode: int
    start: int
    success_any: bool
    success_end: bool
    first_success_step: int | None
    block_pos_error: float  # final, env units (PushT's T) or metres (the arm's object)
    block_angle_error: float  # final, rad
    state_distance: float  # final ‖(agent or hand, block or object) − goal‖
    error_removed: float  # 1 − final block error / initial (PushT: position + 100·angle; arm: position)
    replan_ms: list[float] = field(default_factory=list)
    episode_s: float = 0.0
    # the goal itself, so that a goal every arm misses can be looked at (None in lines of older benches)
    goal_block_move: float | None = None  # how far its logged actions moved the block (object), start -> goal
    goal_block_turn: float | None = None  # rad they turned it
    goal_state: list[float] | None = None  # the goal's state (PushT: agent x, y, block x, y, angle)


def planner_from(cfg: PlannerConfig) -> SamplingPlanner:
    """The planner of ``cfg``; effort settings left unset are PushT's (off) unless
    :func:`with_domain_defaults` filled them first."""
    cfg = with_domain_defaults(cfg, PushTDomain)
    assert cfg.effort_weight is not None and cfg.effort_on is not None and cfg.effort_dims is not None
    return SamplingPlanner(cfg.kind, cfg.samples, cfg.iterations, cfg.elites, cfg.momentum, cfg.temperature,
                           time_budget_s=cfg.time_budget_s or None, seed=cfg.seed,
                           effort_weight=cfg.effort_weight, effort_on=cfg.effort_on,
                           effort_dims=tuple(int(d) for d in cfg.effort_dims))


def with_domain_defaults(cfg: PlannerConfig, domain: Any) -> PlannerConfig:
    """``cfg`` with every effort setting left unset (None) taken from ``domain.planner_defaults``."""
    unset = {k: v for k, v in domain.planner_defaults.items() if getattr(cfg, k) is None}
    return replace(cfg, **unset) if unset else cfg


def space_from(cfg: PlannerConfig, low: np.ndarray, high: np.ndarray, device: torch.device) -> ActionSpace:
    t = lambda v: torch.as_tensor(np.asarray(v, dtype=np.float32), device=device)  # noqa: E731
    return ActionSpace(t(low), t(high), cfg.horizon, cfg.hold, cfg.mode)


def check_planner(cfg: PlannerConfig, frame_skips: tuple[int, ...] | list[int] = ()) -> None:
    """Every planner setting, before anything is loaded (one-line errors naming the setting)."""
    from crcm_robotics.plan import ACTION_MODES, COSTS, PlanError

    planner_from(cfg)  # kind, samples, iterations, elites, momentum, temperature
    if cfg.cost not in COSTS:
        raise PlanError(f"planner.cost={cfg.cost!r} unknown; expected one of {', '.join(COSTS)}")
    if cfg.mode not in ACTION_MODES:
        raise PlanError(f"planner.mode={cfg.mode!r} unknown; expected one of {', '.join(ACTION_MODES)}")
    if not 1 <= cfg.horizon <= 1000 or not 1 <= cfg.hold <= cfg.horizon:
        raise PlanError(f"need 1 ≤ planner.hold ≤ planner.horizon ≤ 1000; got hold {cfg.hold}, "
                        f"horizon {cfg.horizon}")
    if not (cfg.probe_position_unit >= 0 and cfg.probe_angle_unit >= 0):  # NaN fails too
        raise ConfigError(f"planner.probe_position_unit={cfg.probe_position_unit} and planner.probe_angle_unit="
                          f"{cfg.probe_angle_unit} must be ≥ 0 (0 = the probe's own scale)")
    if cfg.noise not in NOISE_MODES or not 1 <= cfg.draws <= MAX_DRAWS:
        raise PlanError(f"planner.noise={cfg.noise!r} and planner.draws={cfg.draws}: expected noise one of "
                        f"{', '.join(NOISE_MODES)} and 1 ≤ draws ≤ {MAX_DRAWS}")
    if cfg.replan_every < 1 or cfg.replan_every > cfg.horizon:
        raise ConfigError(f"planner.replan_every={cfg.replan_every} must be in [1, horizon={cfg.horizon}]")
    for k in frame_skips:  # replan_every need not be: the context is cut from the env-step history
        if cfg.horizon % k:
            raise ConfigError(f"planner.horizon={cfg.horizon} must be a multiple of the model's frame_skip {k}")


def block_error(errors: dict[str, float]) -> float:
    """Position error plus the angle error weighted so that π/9 counts like 35 env units."""
    return errors["block_pos_error"] + 100.0 * errors["block_angle_error"]


class PushTDomain:
    """gym-pusht: goals, simulator, rollout pool, errors and success (DINO-WM's rule) for the benchmark."""

    name, units = "pusht", "units"
    # the planner's effort settings where PlannerConfig leaves them unset: off (the oracle is at its ceiling
    # either way, and the models' PushT misses are not ones of pushing on past the goal)
    planner_defaults: dict[str, Any] = {"effort_weight": 0.0, "effort_on": "moves", "effort_dims": ()}

    def __init__(self, store: Any = None):
        self.size = store.image_shape[0] if store is not None else 64  # frames its simulator renders

    def make_sim(self) -> Any:
        from crcm_robotics.data.pusht_sim import PushTSim

        return PushTSim(self.size)

    def make_pool(self, workers: int) -> Any:
        from crcm_robotics.data.pusht_sim import PushTRolloutPool

        return PushTRolloutPool(self.size, workers)

    def goal_pairs(self, store: Any, episodes: list[int], cfg: PlanBenchConfig, context: int, sim: Any) -> list:
        from crcm_robotics.data.pusht_sim import goal_pairs

        return goal_pairs(store, episodes, cfg.goals, ahead=cfg.ahead, context=context,
                          min_move=15.0 if cfg.min_move is None else cfg.min_move,
                          min_turn=0.15 if cfg.min_turn is None else cfg.min_turn, seed=cfg.seed, sim=sim)

    def pair_at(self, store: Any, episode: int, start: int, ahead: int, context: int, sim: Any) -> Any:
        from crcm_robotics.data.pusht_sim import goal_pair_at

        return goal_pair_at(store, episode, start, ahead=ahead, context=context, sim=sim)

    def start_of(self, pair: Any) -> Any:
        """What the rollout pool starts a pair's candidates from (PushT: the state vector)."""
        return np.asarray(pair.start_state, dtype=np.float64)

    def reset(self, sim: Any, pair: Any) -> tuple[np.ndarray, Any]:
        """Put ``sim`` at the pair's start: (its frame, :meth:`start_of`)."""
        start = self.start_of(pair)
        return sim.reset_to(start), start

    def sim_state(self, sim: Any, state: np.ndarray) -> Any:
        return state

    def errors(self, state: np.ndarray, goal_state: np.ndarray) -> dict[str, float]:
        from crcm_robotics.data.pusht_sim import pusht_errors

        return pusht_errors(state, goal_state)

    def success(self, state: np.ndarray, goal_state: np.ndarray) -> bool:
        from crcm_robotics.data.pusht_sim import pusht_success

        return bool(pusht_success(state, goal_state))

    def progress(self, errors: dict[str, float]) -> float:
        return block_error(errors)

    def state_cost(self, states_NHzS: np.ndarray, goal_state: np.ndarray) -> torch.Tensor:
        return state_cost(states_NHzS, goal_state)

    def mass_reading(self, probe: StateProbe) -> MassReading:
        """``probe_mass``: the block's position read off its colour's pixel centroid (its cloud's mass)."""
        from crcm_robotics.data.pusht import PUSHT_WORKSPACE
        from crcm_robotics.data.pusht_sim import BLOCK_COLOUR_TOL, BLOCK_RGB

        names = probe.spec.state_names
        if "block_x" not in names or "block_y" not in names:
            raise ConfigError(f"planner.cost=probe_mass reads the block's position; the probe reads "
                              f"{', '.join(names)}")
        return MassReading(tuple(float(c) for c in BLOCK_RGB), BLOCK_COLOUR_TOL,  # type: ignore[arg-type]
                           (names.index("block_x"), names.index("block_y")), PUSHT_WORKSPACE / self.size)

    def fidelity_errors(self, seen: np.ndarray, true: np.ndarray) -> dict[str, np.ndarray]:
        """Per-candidate errors of states read off frames against the true ones (names kept short)."""
        return {"agent_error": np.linalg.norm(seen[..., :2] - true[..., :2], axis=-1),
                "block_error": np.linalg.norm(seen[..., 2:4] - true[..., 2:4], axis=-1),
                "angle_error_deg": np.degrees(np.abs(np.angle(np.exp(1j * (seen[..., 4] - true[..., 4])))))}


class ArmDomain(PushTDomain):
    """Meta-World: goals replayed from the store, MuJoCo snapshots for the oracle, success = object within
    5 cm of the goal's object position (``crcm_robotics.data.metaworld_sim``)."""

    name, units = "metaworld", "m"
    # the models reach the goal, then push on (their rollouts do not show the next push moving the puck): an
    # effort on the end-effector velocity, gripper left out, keeps the arm still there (success held at the
    # end 0.40 → 0.95 for the student, 0.55 → 0.90 for the teacher, 20 goals: docs/results.md, issue 16)
    planner_defaults: dict[str, Any] = {"effort_weight": 1.0, "effort_on": "magnitude",
                                        "effort_dims": (0, 1, 2)}

    def __init__(self, store: Any):
        super().__init__(store)
        self.task = str(store.attrs["metaworld"]["task"])

    def make_sim(self) -> Any:
        from crcm_robotics.data.metaworld_sim import ArmSim

        return ArmSim(self.task, self.size)

    def make_pool(self, workers: int) -> Any:
        from crcm_robotics.data.metaworld_sim import ArmRolloutPool

        return ArmRolloutPool(self.task, self.size, workers)

    def goal_pairs(self, store: Any, episodes: list[int], cfg: PlanBenchConfig, context: int, sim: Any) -> list:
        from crcm_robotics.data.metaworld_sim import SUCCESS_DISTANCE, arm_goal_pairs

        return arm_goal_pairs(store, episodes, cfg.goals, ahead=cfg.ahead, context=context,
                              min_move=SUCCESS_DISTANCE if cfg.min_move is None else cfg.min_move,
                              min_turn=math.inf if cfg.min_turn is None else cfg.min_turn, seed=cfg.seed, sim=sim)

    def pair_at(self, store: Any, episode: int, start: int, ahead: int, context: int, sim: Any) -> Any:
        from crcm_robotics.data.metaworld_sim import arm_goal_pair_at

        return arm_goal_pair_at(store, sim, episode, start, ahead, context)

    def start_of(self, pair: Any) -> Any:
        return pair.start_snapshot

    def sim_state(self, sim: Any, state: np.ndarray) -> Any:
        return sim.snapshot()

    def errors(self, state: np.ndarray, goal_state: np.ndarray) -> dict[str, float]:
        from crcm_robotics.data.metaworld_sim import arm_errors

        e = arm_errors(state, goal_state)
        return {"block_pos_error": e["obj_pos_error"], "block_angle_error": e["obj_angle_error"],
                "agent_pos_error": e["hand_pos_error"], "state_distance": e["state_distance"]}

    def success(self, state: np.ndarray, goal_state: np.ndarray) -> bool:
        from crcm_robotics.data.metaworld_sim import arm_success

        return bool(arm_success(state, goal_state))

    def progress(self, errors: dict[str, float]) -> float:
        return errors["block_pos_error"]

    def state_cost(self, states_NHzS: np.ndarray, goal_state: np.ndarray) -> torch.Tensor:
        from crcm_robotics.data.metaworld_sim import arm_state_cost

        return torch.from_numpy(arm_state_cost(states_NHzS, goal_state))

    def fidelity_errors(self, seen: np.ndarray, true: np.ndarray) -> dict[str, np.ndarray]:
        from crcm_robotics.data.metaworld_sim import HAND, OBJ

        return {"hand_error": np.linalg.norm(seen[..., HAND] - true[..., HAND], axis=-1),
                "obj_error": np.linalg.norm(seen[..., OBJ] - true[..., OBJ], axis=-1)}


def domain_of(store: Any) -> PushTDomain:
    """The benchmark's simulator side for a store: gym-pusht or Meta-World, from the store's attrs."""
    if "pusht" in store.attrs:
        return PushTDomain(store)
    if "metaworld" in store.attrs:
        return ArmDomain(store)
    raise ConfigError(f"store {store.path} is neither a PushT nor a Meta-World store (attrs lack 'pusht' and "
                      "'metaworld'): the planning benchmark needs its simulator")


class Arm:
    """How one arm proposes actions for a replan: random, the simulator oracle, or a world model."""

    def __init__(self, name: str, kind: str, cfg: PlannerConfig, device: torch.device, low: np.ndarray,
                 high: np.ndarray, wm: Any = None, pool: Any = None, probe: StateProbe | None = None,
                 domain: PushTDomain | None = None):
        self.name, self.kind, self.cfg, self.device, self.wm, self.pool, self.probe = (
            name, kind, cfg, device, wm, pool, probe)
        self.domain = domain or PushTDomain()
        self.low, self.high = low, high
        self.space = space_from(cfg, low, high, device)
        self.mpc = MPC(planner_from(cfg), self.space)
        self.rng = np.random.default_rng(cfg.seed)

    def reset(self) -> None:
        self.mpc.reset()

    def scored_steps(self, remaining: int) -> int:
        """Env steps of each candidate the cost looks at: the horizon, or (``cost_at_budget_end``) up to the
        budget's end when that comes first, rounded up to whole model frames."""
        horizon = self.cfg.horizon
        if not self.cfg.cost_at_budget_end or remaining >= horizon:
            return horizon
        k = self.frame_skip
        return min(horizon, -(-max(remaining, 1) // k) * k)

    @property
    def frame_skip(self) -> int:
        """Env steps per step of the arm's model of the world (the simulator's: 1)."""
        return self.wm.frame_skip if self.wm is not None else 1

    def propose(self, state: np.ndarray, history: tuple[np.ndarray, np.ndarray], goal: np.ndarray,
                anchor: np.ndarray, goal_state: np.ndarray, remaining: int | None = None
                ) -> tuple[np.ndarray, float]:
        """Env-step actions [horizon, A] for the next steps, and the planning ms.

        ``remaining``: env steps left in the episode's budget (see :meth:`scored_steps`); None = no end.
        """
        if self.kind == "random":
            z = self.rng.uniform(self.low, self.high, (self.space.decisions, len(self.low))).astype(np.float32)
            return np.repeat(z, self.cfg.hold, axis=0)[: self.cfg.horizon], 0.0
        anchor_t = torch.as_tensor(anchor, dtype=torch.float32, device=self.device)
        score = self.scorer(state, history, goal, goal_state)
        steps = self.scored_steps(self.cfg.horizon if remaining is None else remaining)
        if steps < self.cfg.horizon:
            full_score = score

            def score(actions: torch.Tensor) -> torch.Tensor:  # the steps after the budget's end do not count
                return full_score(actions[:, :steps])
        result = self.mpc.plan(score, anchor_t)
        return result.actions.cpu().numpy(), result.ms

    def scorer(self, state: np.ndarray, history: tuple[np.ndarray, np.ndarray], goal: np.ndarray,
               goal_state: np.ndarray) -> Callable[[torch.Tensor], torch.Tensor]:
        """The cost of candidate env-step actions [N, L, A] from ``state`` under the arm's model of the world
        (a subclass may bring another model: ``scripts/state_model_planning.py``)."""
        if self.kind == "oracle":
            frames_mode = "all" if self.cfg.cost.endswith("path") else "last"

            def render(actions: torch.Tensor) -> torch.Tensor:
                frames, _ = self.pool.rollout(state, actions.cpu().numpy(), frames=frames_mode)
                return torch.from_numpy(frames).to(self.device)

            return frames_score(render, goal, self.cfg.cost, self.device, self.probe)
        if self.kind == "oracle_state":
            def score(actions: torch.Tensor) -> torch.Tensor:
                states = self.pool.rollout(state, actions.cpu().numpy(), frames="none")[1]
                return self.domain.state_cost(states, goal_state)

            return score
        return imagined_score(self.wm, history, goal, self.cfg.cost, seed=self.cfg.seed, noise=self.cfg.noise,
                              draws=self.cfg.draws)

    def advance(self, executed: int) -> None:
        self.mpc.advance(executed)

    def imagined(self, history: tuple[np.ndarray, np.ndarray], actions: np.ndarray) -> np.ndarray | None:
        """The frames the model imagines for ``actions`` (for the GIFs), uint8 [T, H, W, 3]."""
        if self.wm is None:
            return None
        from crcm_robotics.plan.objective import group_frame_skip, model_context

        ctx = model_context(history[0], history[1], self.wm.frame_skip, self.wm.context_frames)
        acts = group_frame_skip(torch.from_numpy(actions[None]), self.wm.frame_skip)
        return self.wm.imagine_tensor(acts, context=ctx, seed=self.cfg.seed,
                                      shared_noise=self.cfg.noise == "shared")[0].cpu().numpy()


def run_episode(arm: Arm, pair: Any, sim: Any, budget: int, record: bool = False
                ) -> tuple[EpisodeResult, dict[str, list[np.ndarray]] | None]:
    """MPC towards ``pair``'s goal for ``budget`` env steps in ``sim`` (the arm's domain's simulator);
    optional frames for a GIF."""
    domain = arm.domain
    t0 = time.perf_counter()
    arm.reset()
    frame, sim_state = domain.reset(sim, pair)
    frames = [*pair.context_frames[:-1], frame]
    actions = [*pair.context_actions]
    initial = domain.progress(domain.errors(pair.start_state, pair.goal_state))
    replan_ms: list[float] = []
    first_success: int | None = None
    state = np.asarray(pair.start_state, dtype=np.float64)
    shown: dict[str, list[np.ndarray]] | None = {"executed": [], "imagined": []} if record else None
    step = 0
    while step < budget:
        history = (np.stack(frames[-64:]), np.stack(actions[-64:]).astype(np.float32))
        plan, ms = arm.propose(sim_state, history, pair.goal_frame, actions[-1], pair.goal_state, budget - step)
        if arm.kind != "random":
            replan_ms.append(ms)
        n = min(arm.cfg.replan_every, budget - step)
        dream = arm.imagined(history, plan) if record else None
        for i in range(n):
            frame, state = sim.step(plan[i])
            frames.append(frame)
            actions.append(np.asarray(plan[i], dtype=np.float32))
            step += 1
            if first_success is None and domain.success(state, pair.goal_state):
                first_success = step
            if shown is not None:
                shown["executed"].append(frame)
                k = arm.frame_skip
                shown["imagined"].append(dream[min(i // k, len(dream) - 1)] if dream is not None else frame)
        arm.advance(n)
        sim_state = domain.sim_state(sim, state)
    final = domain.errors(state, pair.goal_state)
    removed = 1.0 - domain.progress(final) / max(initial, 1e-6)
    result = EpisodeResult(int(pair.episode), int(pair.start), first_success is not None,
                           domain.success(state, pair.goal_state), first_success,
                           round(float(final["block_pos_error"]), 4), round(float(final["block_angle_error"]), 4),
                           round(float(final["state_distance"]), 4), round(float(removed), 4),
                           [round(m, 1) for m in replan_ms], round(time.perf_counter() - t0, 2),
                           round(float(pair.block_move), 4), round(float(pair.block_turn), 4),
                           [round(float(v), 4) for v in np.asarray(pair.goal_state).ravel()])
    return result, shown


def summarize(results: list[EpisodeResult]) -> dict[str, Any]:
    ms = [m for r in results for m in r.replan_ms]
    per_episode = [sum(r.replan_ms) for r in results]
    return {
        "goals": len(results),
        "success_any": round(float(np.mean([r.success_any for r in results])), 4),
        "success_end": round(float(np.mean([r.success_end for r in results])), 4),
        "block_pos_error": round(float(np.mean([r.block_pos_error for r in results])), 4),
        "block_angle_error": round(float(np.mean([r.block_angle_error for r in results])), 4),
        "state_distance": round(float(np.mean([r.state_distance for r in results])), 4),
        "error_removed": round(float(np.mean([r.error_removed for r in results])), 4),
        "replan_ms_median": round(float(np.median(ms)), 1) if ms else None,
        "replan_ms_p90": round(float(np.percentile(ms, 90)), 1) if ms else None,
        "plan_s_per_episode": round(float(np.mean(per_episode)) / 1e3, 2) if ms else None,
        "episode_s": round(float(np.mean([r.episode_s for r in results])), 2),
    }


def _store_and_split(ckpt_path: str | None, data_path: str | None, key_map) -> tuple[Any, list[int], bool]:
    """The store and the episodes goals come from: the checkpoint's held-out split of its own store; every
    episode of another store; without a checkpoint, the split training would make of data.path by default."""
    from crcm_robotics.config import DataConfig
    from crcm_robotics.data.dataset import split_episodes
    from crcm_robotics.data.store import TrajectoryStore
    from crcm_robotics.model.checkpoint import load_checkpoint

    if ckpt_path is None:
        if not data_path:
            raise ConfigError("give a checkpoint (crcm bench plan CKPT) or data.path=STORE for simulator-only arms")
        store = TrajectoryStore(data_path, key_map_from_config(key_map, data_path))
        domain_of(store)
        default = DataConfig()
        return store, split_episodes(store.num_episodes, default.val_fraction, default.split_seed)[1], True
    meta = load_checkpoint(ckpt_path).meta
    path = data_path or meta.get("data_path")
    if not path:
        raise ConfigError(f"checkpoint {ckpt_path} names no training store; give data.path=STORE")
    store = TrajectoryStore(path, key_map_from_config(key_map, path))
    same = data_path is None or Path(data_path).resolve() == Path(str(meta.get("data_path"))).resolve()
    episodes = list(meta["split"]["val"]) if same else list(range(store.num_episodes))
    if not episodes:
        raise ConfigError(f"checkpoint {ckpt_path} held out no episodes of {path}; give another data.path")
    domain_of(store)
    return store, episodes, same


def state_cost(states_NHz5: np.ndarray, goal_state: np.ndarray) -> torch.Tensor:
    """The oracle_state arm's cost: (state distance / 20)² + (angle error / (π/9))² of each final state,
    DINO-WM's success rule made smooth (below 2 when both parts are inside their tolerance)."""
    s = states_NHz5[:, -1].astype(np.float64)
    d = np.linalg.norm(s[:, :4] - goal_state[:4], axis=1) / 20.0
    ang = np.abs(np.angle(np.exp(1j * (s[:, 4] - goal_state[4])))) / (np.pi / 9)
    return torch.from_numpy(d**2 + ang**2)


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 0..n−1, tied values sharing their mean rank."""
    order = np.argsort(x, kind="stable")
    _, first, counts = np.unique(x[order], return_index=True, return_counts=True)
    r = np.empty(len(x))
    r[order] = np.repeat(first + (counts - 1) / 2.0, counts)
    return r


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two cost vectors (tied ranks averaged; 0 when either is constant or not
    finite: such costs rank nothing)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return 0.0
    ra, rb = _ranks(a), _ranks(b)
    if np.std(ra) == 0 or np.std(rb) == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def model_fidelity(arm: Arm, pairs: list[Any], pool: Any, probe: StateProbe, n_goals: int,
                   other_probe: StateProbe | None = None) -> dict[str, Any]:
    """How well a model arm's imagination stands in for the simulator on the candidates a planner proposes.

    At the start of each of the first ``n_goals`` goals, one round of the planner's first search distribution
    (``samples`` candidates) is rolled out in the simulator and imagined by the model. Reported: the probe's
    state read off the imagined last frames against the simulator's true last states (``imagined_*``: the
    domain's ``fidelity_errors``, e.g. PushT's agent / block position error and block angle), the same probe
    on the simulator's own frames (``probe_*``, the probe's floor), what a model that never moved anything
    would score (``static_*``), and the Spearman correlation between each cost and the true state cost: how
    well the model ranks candidates, which is all a sampling planner uses. With ``other_probe`` (a second run
    of the probe, prepared as ``probe`` is) the same imagined candidates are costed with it too:
    ``other_probe_apart_*`` is how far it reads the imagined last frames from ``probe`` (``other_probe_sim_apart_*``
    the simulator's frames), ``other_probe_rank_corr`` the Spearman correlation of its model cost with
    ``probe``'s, ``other_probe_top_overlap`` the elites the two share and ``other_probe_rank_corr_model`` its
    model cost against the true cost.
    """
    from crcm_robotics.plan.objective import group_frame_skip, model_context

    wm, cfg = arm.wm, arm.cfg
    domain = arm.domain
    gen = torch.Generator(arm.device).manual_seed(cfg.seed + 1)
    rows: dict[str, list[float]] = {"rank_corr_model": [], "rank_corr_oracle": [], "top_overlap": []}
    elites = max(1, min(cfg.elites, cfg.samples))
    for pair in pairs[:n_goals]:
        anchor = torch.as_tensor(pair.context_actions[-1], dtype=torch.float32, device=arm.device)
        mean, std = arm.space.initial(anchor)
        z = arm.space.clamp(mean + std * torch.randn(cfg.samples, *mean.shape, generator=gen, device=arm.device))
        actions = arm.space.actions(z, anchor)
        true_frames, true_states = pool.rollout(domain.start_of(pair), actions.cpu().numpy(), frames="last")
        true_final = true_states[:, -1].astype(np.float64)
        ctx = model_context(pair.context_frames, pair.context_actions, wm.frame_skip, wm.context_frames)
        with torch.no_grad():
            dream = wm.imagine_tensor(group_frame_skip(actions, wm.frame_skip), context=ctx, seed=cfg.seed,
                                      shared_noise=cfg.noise == "shared")
        seen = probe.state_of(dream[:, -1])
        on_sim = probe.state_of(torch.from_numpy(true_frames[:, 0]).to(arm.device))
        start = np.broadcast_to(np.asarray(pair.start_state, np.float64), true_final.shape)
        for prefix, read in (("imagined", seen), ("probe", on_sim), ("static", start)):
            for k, v in domain.fidelity_errors(read, true_final).items():
                rows.setdefault(f"{prefix}_{k}", []).append(float(np.mean(v)))
        truth = domain.state_cost(true_states, pair.goal_state).numpy()
        goal = torch.from_numpy(np.ascontiguousarray(pair.goal_frame)).to(arm.device)
        # the decoded frames under the cost (a latent cost re-encodes them: the same ranking up to the
        # codec's round trip); the simulator's frames under the same cost (latent: in the model's codec)
        encode = wm.codec.encode if cfg.cost in LATENT_COSTS else None
        model_cost = make_cost(cfg.cost, goal, probe, encode)(dream).float().cpu().numpy()
        # the simulator gave last frames only: a path cost ranks the oracle's by the last-frame probe cost
        oracle_name = "probe" if cfg.cost.endswith("path") else cfg.cost
        sim_frames = torch.from_numpy(true_frames).to(arm.device)
        oracle_cost = make_cost(oracle_name, goal, probe, encode)(sim_frames)
        oracle_cost = oracle_cost.float().cpu().numpy()
        rows["rank_corr_model"].append(spearman(model_cost, truth))
        rows["rank_corr_oracle"].append(spearman(oracle_cost, truth))
        best_true = set(np.argsort(truth, kind="stable")[:elites].tolist())
        best_model = set(np.argsort(model_cost, kind="stable")[:elites].tolist())
        rows["top_overlap"].append(len(best_true & best_model) / elites)
        if other_probe is not None:
            for prefix, read, first in (("other_probe_apart", other_probe.state_of(dream[:, -1]), seen),
                                        ("other_probe_sim_apart", other_probe.state_of(sim_frames[:, 0]), on_sim)):
                for k, v in domain.fidelity_errors(read, first).items():
                    rows.setdefault(f"{prefix}_{k}", []).append(float(np.mean(v)))
            other_cost = make_cost(cfg.cost, goal, other_probe, encode)(dream).float().cpu().numpy()
            rows.setdefault("other_probe_rank_corr", []).append(spearman(other_cost, model_cost))
            rows.setdefault("other_probe_rank_corr_model", []).append(spearman(other_cost, truth))
            best_other = set(np.argsort(other_cost, kind="stable")[:elites].tolist())
            rows.setdefault("other_probe_top_overlap", []).append(len(best_other & best_model) / elites)
    out: dict[str, Any] = {"goals": min(n_goals, len(pairs)), "candidates": cfg.samples, "elites": elites}
    out |= {k: round(float(np.mean(v)), 4) for k, v in rows.items()}
    return out


def parse_goal_keys(entries: tuple[str, ...] | list[str], what: str = "only_goals") -> set[tuple[int, int]]:
    """EPISODE:START entries as (episode, start) keys; a malformed entry is a one-line error naming WHAT (the
    setting that gave them)."""
    keys = set()
    for entry in entries:
        parts = str(entry).split(":")
        if len(parts) != 2 or not all(x.strip().isdigit() for x in parts):
            raise ConfigError(f"{what} entry {entry!r}: expected EPISODE:START (two whole numbers, as a "
                              "per-goal line names its goal)")
        keys.add((int(parts[0]), int(parts[1])))
    return keys


def only_goal_keys(only_goals: tuple[str, ...] | list[str], selection: list[tuple[int, int]]) -> set[tuple[int, int]]:
    """``only_goals``' (episode, start) keys, each one of the selection's goals; a malformed entry or a goal
    the selection lacks is a one-line error."""
    keys = parse_goal_keys(only_goals)
    missing = sorted(keys - set(selection))
    if missing:
        raise ConfigError(f"only_goals {', '.join(f'{e}:{s}' for e, s in missing)}: not among this store's "
                          f"{len(selection)} selected goals (goals=, goals_from= and the store choose them)")
    return keys


def history_needed(ckpts: list[str]) -> int:
    """Env frames of history the models' contexts span: (cache_frames − 1) × frame_skip + 1, at least 2."""
    import yaml

    need = 2
    for ck in ckpts:
        cfg = yaml.safe_load((Path(ck) / "config.yaml").read_text())
        skip = int(json.loads((Path(ck) / "meta.json").read_text()).get("frame_skip", 1))
        need = max(need, (int(cfg["model"]["cache_frames"]) - 1) * skip + 1)
    return need


def _bounds(store) -> tuple[np.ndarray, np.ndarray]:
    a = store.stats()["action"]
    return a.min.astype(np.float32), a.max.astype(np.float32)


def _load_model(ckpt: str, cfg: Any, device: torch.device, probe: str | None, domain: PushTDomain):
    from crcm_robotics.runtime import WorldModel

    wm = WorldModel.load(ckpt, device=device, backend=cfg.backend, steps=cfg.steps or None,
                         max_batch=max(cfg.planner.samples, 1), seed=cfg.seed, probe=probe, guidance=cfg.guidance)
    if wm.probe is not None:
        wm.probe = in_cost_units(wm.probe, cfg.planner, domain)
    return wm


def in_cost_units(probe: StateProbe, planner: PlannerConfig, domain: PushTDomain) -> StateProbe:
    """``probe`` with the planner's probe-cost units (unchanged when both are 0) and, for ``probe_mass``, the
    domain's colour-mass reading."""
    if planner.cost == "probe_mass":
        probe = probe.with_mass(domain.mass_reading(probe))
    if planner.probe_position_unit == 0 and planner.probe_angle_unit == 0:
        return probe
    return probe.with_cost_units(planner.probe_position_unit, planner.probe_angle_unit)


def probe_dir(cfg: Any, ckpt: str | None = None) -> Path:
    """Where an arm's state probe is: ``cfg.probe``, else ``ckpt``/probe (default: the bench's CKPT)."""
    return Path(cfg.probe) if cfg.probe else Path(ckpt or cfg.ckpt or ".") / "probe"


def _probe_for(cfg: Any, device: torch.device, domain: PushTDomain, used: bool = True) -> StateProbe | None:
    """The state probe a probe cost needs (``cfg.probe``, else CKPT/probe), when an arm ``used`` the cost."""
    path = probe_dir(cfg)
    if cfg.planner.cost.startswith("probe") and used:
        if not path.is_dir():
            raise ConfigError(f"cost {cfg.planner.cost} needs a state probe at {path}: run `crcm train probe "
                              f"data.path=STORE out={path}` (or choose planner.cost=pooled_mse)")
        return in_cost_units(load_probe(path, device), cfg.planner, domain)
    return None


def wm_probe(cfg: Any, device: torch.device) -> StateProbe | None:
    """The state probe for fidelity figures when the cost does not load one: ``cfg.probe`` or CKPT/probe."""
    path = probe_dir(cfg)
    return load_probe(path, device) if path.is_dir() else None


def _save_gif(shown: dict[str, list[np.ndarray]], goal: np.ndarray, path: Path) -> None:
    from crcm_robotics.eval.report import grid, save_gif

    frames = [grid([np.stack([e, i, goal])], pad=2) for e, i in zip(shown["executed"], shown["imagined"])]
    save_gif(np.stack(frames), path, fps=5, scale=3)


def run_bench_plan_cfg(cfg: PlanBenchConfig) -> dict[str, Any]:
    from crcm_robotics.runtime.world_model import resolve_device

    check_planner(cfg.planner)
    device = resolve_device(cfg.device)
    known = {"random", "oracle", "oracle_state", "model"}
    if not cfg.arms or set(cfg.arms) - known:
        raise ConfigError(f"arms={list(cfg.arms)}; expected a non-empty subset of {sorted(known)}")
    if cfg.planner.cost in LATENT_COSTS and "oracle" in cfg.arms:
        raise ConfigError(f"planner.cost={cfg.planner.cost} compares a world model's latents; the oracle arm "
                          "renders frames only: give it another cost (e.g. probe) or leave it out of arms")
    if cfg.fidelity_goals < 0:
        raise ConfigError(f"fidelity_goals={cfg.fidelity_goals} must be ≥ 0 (0 skips the fidelity figures)")
    if not cfg.closed_loop and (set(cfg.arms) != {"model"} or cfg.fidelity_goals < 1):
        raise ConfigError(f"closed_loop=false reports model arms' fidelity only: give arms=[model] and "
                          f"fidelity_goals ≥ 1 (got arms={list(cfg.arms)}, "
                          f"fidelity_goals={cfg.fidelity_goals})")
    if cfg.fidelity_other_probe is not None and not (cfg.fidelity_goals >= 1 and "model" in cfg.arms
                                                     and cfg.planner.cost.startswith("probe")):
        raise ConfigError(f"fidelity_other_probe={cfg.fidelity_other_probe} costs a model arm's fidelity "
                          f"candidates with a second probe: give arms with model, fidelity_goals ≥ 1 and a probe "
                          f"cost (got arms={list(cfg.arms)}, fidelity_goals={cfg.fidelity_goals}, "
                          f"planner.cost={cfg.planner.cost})")
    if cfg.goals < 1 or cfg.budget < 1 or cfg.ahead < 1:
        raise ConfigError(f"goals ({cfg.goals}), budget ({cfg.budget}) and ahead ({cfg.ahead}) must be ≥ 1")
    if not 0 <= cfg.first_goal < cfg.goals:
        raise ConfigError(f"first_goal={cfg.first_goal} must be in [0, goals={cfg.goals}): the index of the "
                          "first of the selected goals to plan")
    if cfg.goals_from and cfg.data.path:
        raise ConfigError(f"goals_from={cfg.goals_from} and data.path={cfg.data.path} both name the goals' "
                          "store; give one")
    if cfg.goals_from and not Path(cfg.goals_from, "meta.json").is_file():
        raise ConfigError(f"goals_from={cfg.goals_from}: expected a checkpoint directory (with meta.json) "
                          "whose held-out episodes give the goals")
    store, episodes, held_out = _store_and_split(cfg.goals_from or cfg.ckpt, cfg.data.path, cfg.data.key_map)
    domain = domain_of(store)
    cfg = replace(cfg, planner=with_domain_defaults(cfg.planner, domain))
    low, high = _bounds(store)
    probe = _probe_for(cfg, device, domain, used=bool({"oracle", "model"} & set(cfg.arms)))
    other_probe = None
    if cfg.fidelity_other_probe is not None:
        if not Path(cfg.fidelity_other_probe).is_dir():
            raise ConfigError(f"fidelity_other_probe={cfg.fidelity_other_probe}: expected a state probe directory "
                              "(`crcm train probe ... out=DIR`); not found")
        other_probe = in_cost_units(load_probe(cfg.fidelity_other_probe, device), cfg.planner, domain)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    sim = domain.make_sim()
    try:
        # Every arm gets the same goals: starts leave room for the longest model history, model arm or not.
        context = history_needed([cfg.ckpt, *cfg.models] if cfg.ckpt else [])
        pairs = domain.goal_pairs(store, episodes, cfg, context, sim)
        # each kept goal with its index in the whole selection (GIFs and progress name goals by it)
        indexed = [(i, p) for i, p in enumerate(pairs) if i >= cfg.first_goal]
        if cfg.only_goals:
            wanted = only_goal_keys(cfg.only_goals, [(int(p.episode), int(p.start)) for p in pairs])
            indexed = [(i, p) for i, p in indexed if (int(p.episode), int(p.start)) in wanted]
    except ValueError as exc:  # ConfigError is one too
        sim.close()
        raise ConfigError(str(exc)) from None
    pairs = [p for _, p in indexed]
    arms: list[tuple[str, str, str | None]] = []
    if "random" in cfg.arms:
        arms.append(("random", "random", None))
    for sim_arm in ("oracle", "oracle_state"):
        if sim_arm in cfg.arms:
            arms.append((sim_arm, sim_arm, None))
    if "model" in cfg.arms:
        if cfg.ckpt is None:
            raise ConfigError("arm 'model' needs a checkpoint: crcm bench plan CKPT")
        for ck in (cfg.ckpt, *cfg.models):
            arms.append((Path(ck).name, "model", ck))
    report: dict[str, Any] = {
        "bench": "plan", "domain": domain.name, "ckpt": cfg.ckpt, "store": str(store.path),
        "goals_from": cfg.goals_from or cfg.ckpt, "held_out_split": held_out, "goals": len(pairs),
        "first_goal": cfg.first_goal, "only_goals": list(cfg.only_goals),
        "goal_block_move_mean": round(float(np.mean([p.block_move for p in pairs])), 4),
        "goal_block_turn_mean": round(float(np.mean([p.block_turn for p in pairs])), 3),
        "ahead": cfg.ahead, "budget": cfg.budget, "planner": asdict(cfg.planner), "device": str(device),
        "backend": cfg.backend, "arms": {},
    }
    per_goal: dict[str, list[dict[str, Any]]] = {}
    pool = None
    try:
        for name, kind, ck in arms:
            wm = _load_model(ck, cfg, device, cfg.probe, domain) if ck else None
            if wm is not None:
                check_planner(cfg.planner, [wm.frame_skip])
            fidelity_probe = (probe or wm_probe(cfg, device)) if wm is not None and cfg.fidelity_goals > 0 else None
            if not cfg.closed_loop and fidelity_probe is None:
                raise ConfigError(f"closed_loop=false: the fidelity figures of {ck} read states with a "
                                  f"probe; none at {probe_dir(cfg, ck)} (give probe=DIR)")
            if (kind.startswith("oracle") or fidelity_probe is not None) and pool is None:
                pool = domain.make_pool(cfg.oracle_workers)
            arm = Arm(name, kind, cfg.planner, device, low, high, wm=wm, pool=pool, probe=probe, domain=domain)
            fidelity = None
            if fidelity_probe is not None:
                fidelity = model_fidelity(arm, pairs, pool, fidelity_probe, cfg.fidelity_goals, other_probe)
                (out / f"{name}.fidelity.json").write_text(json.dumps(fidelity))  # kept if the arm is cut
                if cfg.progress:
                    print(f"bench plan [{name}] fidelity: {json.dumps(fidelity)}", flush=True)
            results = []
            t_arm = time.perf_counter()
            partial = out / f"{name}.goals.jsonl"  # one line per finished goal: nothing lost if the run is cut
            partial.write_text("")
            for g, (index, pair) in enumerate(indexed if cfg.closed_loop else []):
                res, shown = run_episode(arm, pair, sim, cfg.budget, record=g < cfg.gifs)
                results.append(res)
                with partial.open("a") as f:
                    f.write(json.dumps(asdict(res)) + "\n")
                if shown is not None:
                    (out / name).mkdir(exist_ok=True)
                    _save_gif(shown, pair.goal_frame, out / name / f"goal{index:02d}.gif")
                if cfg.progress:
                    print(f"bench plan [{name}] goal {index + 1}/{cfg.goals}: success "
                          f"{res.success_any} (end {res.success_end}), block error {res.block_pos_error:.3g} "
                          f"{domain.units} / {np.degrees(res.block_angle_error):.1f} deg, {res.episode_s:.1f} s",
                          flush=True)
            figures = summarize(results) if cfg.closed_loop else {"goals": 0}
            report["arms"][name] = figures | {"kind": kind, "checkpoint": ck,
                                              "arm_s": round(time.perf_counter() - t_arm, 1)}
            if cfg.planner.cost.startswith("probe") and kind in ("oracle", "model"):  # which probe read it
                report["arms"][name]["probe"] = str(probe_dir(cfg, ck))
            if wm is not None:
                report["arms"][name]["model"] = {k: wm.info()[k] for k in ("kind", "steps", "backend", "frame_skip")}
                report["arms"][name]["model"]["guidance"] = wm.sampler.guidance
                report["arms"][name]["fidelity"] = fidelity or "skipped (fidelity_goals=0 or no state probe)"
            per_goal[name] = [asdict(r) for r in results]
            del wm
    finally:
        if pool is not None:
            pool.close()
        sim.close()
    (out / "results.json").write_text(json.dumps({"summary": report, "per_goal": per_goal}, indent=1))
    _write_report(report, out / "report.md")
    report["report"] = str(out / "report.md")
    return report


def _write_report(report: dict[str, Any], path: Path) -> None:
    arm_domain = report.get("domain") == "metaworld"
    sim, units, thing = ("Meta-World", "m", "object") if arm_domain else ("gym-pusht", "units", "block")
    lines = [f"# Closed-loop planning in {sim} ({report['goals']} goals, {report['ahead']} steps ahead, "
             f"budget {report['budget']})", "",
             f"Store `{report['store']}` (held-out split: {report['held_out_split']}); mean goal {thing} move "
             f"{report['goal_block_move_mean']} {units}, turn {report['goal_block_turn_mean']} rad. Planner: "
             f"`{json.dumps(report['planner'])}`.", "",
             f"| arm | success (any) | success (end) | {thing} err ({units}) | angle err (rad) | error removed | "
             "ms/replan median | p90 | plan s/episode |", "|---|---|---|---|---|---|---|---|---|"]
    for name, a in report["arms"].items():
        if "success_any" not in a:  # closed_loop=false: fidelity only
            continue
        lines.append(f"| {name} | {a['success_any']:.2f} | {a['success_end']:.2f} | {a['block_pos_error']} | "
                     f"{a['block_angle_error']} | {a['error_removed']:.2f} | {a['replan_ms_median']} | "
                     f"{a['replan_ms_p90']} | {a['plan_s_per_episode']} |")
    fid = {n: a["fidelity"] for n, a in report["arms"].items() if isinstance(a.get("fidelity"), dict)}
    if fid:
        first = next(iter(fid.values()))
        errors = [k for k in first if k.startswith("imagined_")]
        still = [k for k in first if k.startswith("static_")]
        lines += ["", f"Fidelity: one round of the planner's first candidates ({first['candidates']}) at the start of "
                  f"{first['goals']} goals, imagined and simulated. States are the probe's reading of the last "
                  "frame; rank correlation (Spearman) is with the true state cost; 'still' is a model that moves "
                  "nothing.", "",
                  "| arm | rank corr. model | rank corr. simulator frames | top-elite overlap | "
                  + " | ".join(k.removeprefix("imagined_").replace("_", " ") for k in errors) + " | "
                  + " | ".join(k.removeprefix("static_").replace("_", " ") + ", still" for k in still) + " |",
                  "|---" * (4 + len(errors) + len(still)) + "|"]
        for name, f in fid.items():
            lines.append(f"| {name} | {f['rank_corr_model']} | {f['rank_corr_oracle']} | {f['top_overlap']} | "
                         + " | ".join(str(f[k]) for k in errors + still) + " |")
    lines += ["", "GIFs per arm: executed | imagined best rollout at each replan | goal."]
    path.write_text("\n".join(lines) + "\n")


def run_bench_plan(cfg: PlanBenchConfig) -> int:
    print(json.dumps(run_bench_plan_cfg(cfg)))
    return 0


def run_plan(cfg: PlanRunConfig) -> int:
    """One episode: the start at (episode, start) of the store, the goal ``ahead`` logged steps later."""
    from crcm_robotics.runtime.world_model import resolve_device

    check_planner(cfg.planner)
    device = resolve_device(cfg.device)
    store, episodes, _ = _store_and_split(cfg.ckpt, cfg.data.path, cfg.data.key_map)
    episode = episodes[0] if cfg.episode < 0 else cfg.episode
    if not 0 <= episode < store.num_episodes:
        raise ConfigError(f"episode={cfg.episode}: the store has episodes 0..{store.num_episodes - 1}")
    domain = domain_of(store)
    cfg = replace(cfg, planner=with_domain_defaults(cfg.planner, domain))
    sim = domain.make_sim()
    try:
        try:
            pairs = [domain.pair_at(store, episode, cfg.start, cfg.ahead, history_needed([cfg.ckpt]), sim)]
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        wm = _load_model(cfg.ckpt, cfg, device, cfg.probe, domain)
        check_planner(cfg.planner, [wm.frame_skip])
        low, high = _bounds(store)
        arm = Arm(Path(cfg.ckpt).name, "model", cfg.planner, device, low, high, wm=wm,
                  probe=_probe_for(cfg, device, domain), domain=domain)
        result, shown = run_episode(arm, pairs[0], sim, cfg.budget, record=True)
    finally:
        sim.close()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    gif = out / f"plan_ep{episode}_t{cfg.start}.gif"
    assert shown is not None
    _save_gif(shown, pairs[0].goal_frame, gif)
    print(json.dumps(asdict(result) | {"gif": str(gif), "block_move": round(float(pairs[0].block_move), 4)}))
    return 0
