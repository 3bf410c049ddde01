"""Meta-World as a planning simulator: replay a stored episode to any frame, snapshot it, roll candidates out.

``crcm data metaworld`` seeds episode ``e``'s env from (store seed, e) and stores the float32 actions it
applied, so replaying those actions from the same reset reproduces the episode exactly (checked against the
stored states: a store made by another MuJoCo or Meta-World version is refused). From a replayed frame,
:class:`ArmSim` takes an :class:`ArmSnapshot` (MuJoCo's integration state and the env's frame-stacking
observations) and restores it for every candidate, so a planner's oracle scores candidates on the true
physics. Rolling out needs no rendering; executing a step renders the camera frame.

Goals (:func:`arm_goal_pairs`) follow the PushT benchmark's recipe: a start in a held-out episode and the
state its logged actions reach ``ahead`` steps later, kept when the object moves at least ``min_move`` m.
Success is the object within ``SUCCESS_DISTANCE`` (0.05 m) of the goal's object position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from crcm_robotics.data.metaworld import (STATE_NAMES, acquire_scene, episode_seed, release_scene,
                                          state_of)

if TYPE_CHECKING:
    from crcm_robotics.data.store import TrajectoryStore

SUCCESS_DISTANCE = 0.05  # metres between the object and the goal's object position
HAND, OBJ, QUAT = slice(0, 3), slice(4, 7), slice(7, 11)
REPLAY_TOLERANCE = 1e-3  # metres: a replayed start further than this from the stored state is refused


def quat_angle(q1: np.ndarray, q2: np.ndarray) -> np.ndarray:
    """Rotation angle (rad, [0, π]) between unit quaternions [..., 4] (either sign convention)."""
    dot = np.abs(np.sum(np.asarray(q1, np.float64) * np.asarray(q2, np.float64), axis=-1))
    return 2.0 * np.arccos(np.clip(dot, 0.0, 1.0))


def arm_errors(state: np.ndarray, goal_state: np.ndarray) -> dict[str, Any]:
    """Errors of ``state`` [..., S] against ``goal_state`` (broadcast): object and hand position (m), object
    rotation (rad) and ``state_distance`` = ‖(hand, object) − goal‖ (m). Floats for single states."""
    s, g = np.asarray(state, np.float64), np.asarray(goal_state, np.float64)
    out = {
        "obj_pos_error": np.linalg.norm(s[..., OBJ] - g[..., OBJ], axis=-1),
        "obj_angle_error": quat_angle(s[..., QUAT], g[..., QUAT]),
        "hand_pos_error": np.linalg.norm(s[..., HAND] - g[..., HAND], axis=-1),
        "state_distance": np.sqrt(np.sum((s[..., HAND] - g[..., HAND]) ** 2, -1)
                                  + np.sum((s[..., OBJ] - g[..., OBJ]) ** 2, -1)),
    }
    if np.ndim(out["state_distance"]) == 0:
        return {k: float(v) for k, v in out.items()}
    return out


def arm_success(state: np.ndarray, goal_state: np.ndarray) -> Any:
    """The object within 5 cm of the goal's object position (bool, or bool array)."""
    ok = np.asarray(arm_errors(state, goal_state)["obj_pos_error"]) < SUCCESS_DISTANCE
    return bool(ok) if ok.ndim == 0 else ok


def arm_state_cost(states_NHzS: np.ndarray, goal_state: np.ndarray) -> np.ndarray:
    """The true-state planner's cost of each candidate's last state: (object error / 5 cm)² plus a tenth of
    (hand error / 5 cm)², which leads the hand to the object before the object moves."""
    e = arm_errors(states_NHzS[:, -1], goal_state)
    return (e["obj_pos_error"] / SUCCESS_DISTANCE) ** 2 + 0.1 * (e["hand_pos_error"] / SUCCESS_DISTANCE) ** 2


@dataclass(frozen=True)
class ArmSnapshot:
    """Everything a Meta-World step depends on: MuJoCo's integration state, the model arrays a task's reset
    moves (body and site poses: a drawer or button is placed there), and the env's plain Python attributes
    (goal ``_target_pos``, initial object pose, stacked observations), so it restores into any env of the
    task, also one in another process that never saw the episode."""

    mj_state: np.ndarray
    model_arrays: dict[str, np.ndarray]
    env_attrs: dict[str, Any]
    obs: np.ndarray  # the observation at this state (the scripted policies and success read it)
    success: float


MODEL_ARRAYS = ("body_pos", "body_quat", "site_pos", "site_quat")


def _plain_attrs(env: Any) -> dict[str, Any]:
    """The env's attributes that are plain values (arrays, numbers, booleans, None), copied."""
    out = {}
    for k, v in vars(env).items():
        if isinstance(v, np.ndarray):
            out[k] = v.copy()
        elif v is None or isinstance(v, (bool, int, float, np.floating, np.integer)):
            out[k] = v
    return out


class ArmSim:
    """One Meta-World scene that replays store episodes, snapshots, restores, steps and rolls out."""

    def __init__(self, task: str, size: int):
        import mujoco

        self.scene = acquire_scene(task, size)
        self.task, self.size = task, size
        self._mj = mujoco
        self._spec = mujoco.mjtState.mjSTATE_INTEGRATION
        self._obs = np.zeros(39)
        self._success = 0.0

    @property
    def state(self) -> np.ndarray:
        """The current state as the store logs it (``STATE_NAMES``)."""
        return state_of(self.task, self._obs, self._success)

    def replay(self, env_seed: int, actions: np.ndarray) -> np.ndarray:
        """Reset with ``env_seed`` and apply ``actions`` [T, 4] without rendering; the state reached."""
        self._obs = self.scene.reset(env_seed)
        self._success = self.scene.success(self._obs, np.zeros(4, dtype=np.float32))
        for a in actions:
            self.physics_step(a)
        return self.state

    def physics_step(self, action: np.ndarray) -> None:
        """Apply one action without rendering (replays and candidate rollouts)."""
        self._obs, info = self.scene.step(np.asarray(action, dtype=np.float32))
        self._success = float(info["success"])

    def snapshot(self) -> ArmSnapshot:
        env = self.scene.env
        st = np.empty(self._mj.mj_stateSize(env.model, self._spec))
        self._mj.mj_getState(env.model, env.data, st, self._spec)
        arrays = {k: getattr(env.model, k).copy() for k in MODEL_ARRAYS}
        return ArmSnapshot(st, arrays, _plain_attrs(env), self._obs.copy(), self._success)

    def restore(self, snap: ArmSnapshot) -> None:
        env = self.scene.env
        for k, v in snap.model_arrays.items():
            getattr(env.model, k)[:] = v
        for k, v in snap.env_attrs.items():
            setattr(env, k, v.copy() if isinstance(v, np.ndarray) else v)
        env.curr_path_length = 0  # only Meta-World's 500-step truncation reads it
        self._mj.mj_setState(env.model, env.data, snap.mj_state, self._spec)
        self._mj.mj_forward(env.model, env.data)
        self._obs, self._success = snap.obs.copy(), snap.success

    def reset_to(self, snap: ArmSnapshot) -> np.ndarray:
        """Restore ``snap``; the camera frame there."""
        self.restore(snap)
        return self.scene.render()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Apply one action; (the camera frame, the state as the store logs it)."""
        self.physics_step(action)
        return self.scene.render(), self.state

    def rollout(self, snap: ArmSnapshot, actions: np.ndarray,
                frames: str = "last") -> tuple[np.ndarray, np.ndarray]:
        """Each of ``actions`` [N, Hz, 4] from ``snap``: (frames uint8 [N, F, H, W, 3] with F = 1 for "last",
        Hz for "all", 0 for "none"; states float32 [N, Hz, S] after each action)."""
        a = np.asarray(actions)
        if a.ndim != 3 or a.shape[2] != 4 or 0 in a.shape or not np.isfinite(a).all():
            raise ValueError(f"actions must be finite [N ≥ 1, Hz ≥ 1, 4]; got {list(a.shape)}")
        n, hz = a.shape[:2]
        n_frames = {"last": 1, "all": hz, "none": 0}[frames]
        out_frames = np.empty((n, n_frames, self.size, self.size, 3), dtype=np.uint8)
        out_states = np.empty((n, hz, len(STATE_NAMES)), dtype=np.float32)
        for i in range(n):
            self.restore(snap)
            for t in range(hz):
                self.physics_step(a[i, t])
                out_states[i, t] = self.state
                if frames == "all":
                    out_frames[i, t] = self.scene.render()
            if frames == "last":
                out_frames[i, 0] = self.scene.render()
        self.restore(snap)
        return out_frames, out_states

    def close(self) -> None:
        """Hand the scene back for reuse (renderers are never freed: see ``metaworld.acquire_scene``)."""
        release_scene(self.scene)


@dataclass(frozen=True)
class ArmGoalPair:
    """A start in a logged arm episode and the state its logged actions reach ``ahead`` steps later."""

    episode: int
    start: int
    context_frames: np.ndarray  # uint8 [K, H, W, 3]
    context_actions: np.ndarray  # float32 [K, 4]
    start_state: np.ndarray  # float32 [S]: the replayed state at ``start`` (equal to the store's)
    start_snapshot: ArmSnapshot
    goal_state: np.ndarray
    goal_frame: np.ndarray
    logged_actions: np.ndarray  # float32 [ahead, 4]
    block_move: float  # metres the object moved, start -> goal (the PushT pair's field name)
    block_turn: float  # rad the object turned


def env_seed_of(store: TrajectoryStore, episode: int) -> int:
    """The env seed ``crcm data metaworld`` reset episode ``episode`` with (first draw of its generator)."""
    meta = store.attrs.get("metaworld") or {}
    if "seed" not in meta:
        raise ValueError(f"store {store.path} is not a Meta-World store (attrs lack metaworld.seed)")
    rng = np.random.default_rng(episode_seed(int(meta["seed"]), episode))
    return int(rng.integers(0, 2**31 - 1))


def arm_goal_pair_at(store: TrajectoryStore, sim: ArmSim, episode: int, start: int, ahead: int,
                     context: int) -> ArmGoalPair:
    """Replay ``episode`` to ``start`` (checked against the store), snapshot, replay ``ahead`` more."""
    s, t = store.episode_bounds(episode)
    if not context <= start < (t - s) - ahead:
        raise ValueError(f"start {start} of episode {episode} needs {context} frames before it and {ahead} "
                         f"actions after it (the episode has {t - s} frames)")
    i = s + start
    actions = np.asarray(store.action(s, i + ahead), dtype=np.float32)
    reached = sim.replay(env_seed_of(store, episode), actions[:start])
    logged = np.asarray(store.state(i, i + 1)[0], dtype=np.float32)
    drift = float(np.abs(reached[:11] - logged[:11]).max())
    if drift > REPLAY_TOLERANCE:
        raise ValueError(f"episode {episode} of {store.path} does not replay: the state at frame {start} is "
                         f"{drift:.4f} m off the stored one (a store from another MuJoCo or Meta-World "
                         "version?)")
    snap = sim.snapshot()
    for a in actions[start:]:
        sim.physics_step(a)
    goal_state = sim.state
    goal_frame = sim.scene.render()
    sim.restore(snap)
    return ArmGoalPair(
        episode=episode, start=start,
        context_frames=store.frames(i - context + 1, i + 1),
        context_actions=np.asarray(store.action(i - context, i), dtype=np.float32),
        start_state=reached, start_snapshot=snap, goal_state=goal_state, goal_frame=goal_frame,
        logged_actions=actions[start:],
        block_move=float(np.linalg.norm(goal_state[OBJ] - reached[OBJ])),
        block_turn=float(quat_angle(goal_state[QUAT], reached[QUAT])),
    )


def arm_goal_pairs(store: TrajectoryStore, episodes: list[int], n: int, ahead: int = 25, context: int = 4,
                   min_move: float = SUCCESS_DISTANCE, min_turn: float = math.inf, seed: int = 0,
                   *, sim: ArmSim) -> list[ArmGoalPair]:
    """``n`` start/goal pairs from ``episodes``, round-robin over them, kept when the object moves ≥
    ``min_move`` m (or turns ≥ ``min_turn`` rad) in ``ahead`` logged steps. Raises when fewer qualify."""
    if n < 1 or ahead < 1 or context < 1 or not episodes:
        raise ValueError(f"need n ≥ 1, ahead ≥ 1, context ≥ 1 and episodes; got n={n}, ahead={ahead}, "
                         f"context={context}, {len(episodes)} episodes")
    from crcm_robotics.data.goals import draw_goal_pairs

    pairs = draw_goal_pairs(store, episodes, n, ahead, context, seed,
                            lambda e, i: arm_goal_pair_at(store, sim, e, i, ahead, context),
                            lambda p: p.block_move >= min_move or p.block_turn >= min_turn)
    if len(pairs) < n:
        raise ValueError(f"only {len(pairs)} of the {n} goals asked for move the object ≥ {min_move} m in "
                         f"{ahead} steps in episodes {episodes} of {store.path}")
    return pairs


_WORKER_SIM: ArmSim | None = None


def _init_worker(task: str, size: int) -> None:
    global _WORKER_SIM
    _WORKER_SIM = ArmSim(task, size)


def _worker_rollout(job: tuple[ArmSnapshot, np.ndarray, str]) -> tuple[np.ndarray, np.ndarray]:
    assert _WORKER_SIM is not None
    return _WORKER_SIM.rollout(*job)


class ArmRolloutPool:
    """Candidate rollouts from one snapshot over ``workers`` spawned processes (0 = all cores, 1 = in this
    process). Results depend only on the snapshot and the actions, never on the number of workers."""

    def __init__(self, task: str, size: int, workers: int = 0):
        import multiprocessing as mp
        import os

        from crcm_robotics.data.metaworld import choose_gl_backend

        if workers < 0:
            raise ValueError(f"workers must be ≥ 0 (0 = all cores), got {workers}")
        choose_gl_backend()  # spawned workers inherit MUJOCO_GL
        self.workers = workers or os.cpu_count() or 1
        self._sim = ArmSim(task, size) if self.workers == 1 else None
        self._pool = None
        if self._sim is None:
            self._pool = mp.get_context("spawn").Pool(self.workers, initializer=_init_worker, initargs=(task, size))

    def rollout(self, snap: ArmSnapshot, actions: np.ndarray,
                frames: str = "last") -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`ArmSim.rollout`, split over the workers."""
        if self._sim is not None:
            return self._sim.rollout(snap, actions, frames)
        if self._pool is None:
            raise RuntimeError("ArmRolloutPool is closed")
        chunks = [c for c in np.array_split(np.asarray(actions), min(self.workers, len(actions))) if len(c)]
        parts = self._pool.map(_worker_rollout, [(snap, c, frames) for c in chunks])
        return np.concatenate([f for f, _ in parts]), np.concatenate([s for _, s in parts])

    def close(self) -> None:
        if self._sim is not None:
            self._sim.close()
            self._sim = None
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None
