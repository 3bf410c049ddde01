"""The embedded default dataset: PushT (``gym-pusht``: pymunk physics, a pusher and a T block).

A scripted collector drives the pusher like a clumsy teleoperator: it picks a
push direction (towards the goal or random), walks round the block to a point
behind it, pushes through it for a while, then re-approaches from another side;
now and then it wanders to a random point; every command carries Gaussian noise.
Commands move the target at most ``max_speed`` env units per step so motion
is smooth and the data is full of contacts.

``behavior=explore`` swaps the scripted pusher for :class:`ExplorePusher`: noisy and
random targets mixed with pushes (like DINO-WM's ``pusht_noise`` data), so that a
planner's proposals (far waypoints held a few steps, jittery targets) are in the
training distribution; ``behavior=mixed`` makes an evenly spread ``explore_fraction``
of the episodes exploratory and leaves the others exactly as ``scripted`` writes them.
``behavior=orbit`` (:class:`OrbitPusher`) circles the block instead: a policy no preset trains on, for
held-out evaluation of how a model carries over to unseen behaviour.
The store's ``pusht`` attr records the behaviour and which episodes explored.

Recorded per step ``i`` (DESIGN §2 step convention: ``frame[i+1]`` results from
``action[i]`` applied at ``frame[i]``):

- ``frames``: RGB uint8 [size, size, 3] rendered by the env;
- ``action``: the 2-D target position the env's PD controller tracks, in env
  units [0, 512] (pixel ≈ unit · size / 512);
- ``state``: agent x, y, block x, y, block angle (rad, wrapped to (-π, π]);
- ``timestamp``: i / 10 s (the env runs at 10 Hz).

Generation is deterministic for a seed whatever the number of workers: episode
``e`` uses its own seed derived from (seed, e), and episodes are written in order.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crcm_robotics.data.schema import StoreError

PUSHT_FPS = 10.0
PUSHT_WORKSPACE = 512.0
STATE_NAMES = ("agent_x", "agent_y", "block_x", "block_y", "block_angle")
ACTION_NAMES = ("target_x", "target_y")
BLOCK_RADIUS = 95.0  # clearance (env units) from the block's centre of mass when walking round it


@dataclass(frozen=True)
class EpisodeData:
    frames: np.ndarray  # uint8 [T, H, W, 3]
    action: np.ndarray  # float32 [T, 2]
    state: np.ndarray  # float32 [T, 5]
    contacts: int  # steps with pusher/block contact


def episode_seed(seed: int, episode: int) -> int:
    return int(np.random.SeedSequence([seed, episode]).generate_state(1)[0])


def make_env(size: int):
    """A headless PushT env rendering ``size``×``size`` RGB frames."""
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    try:
        import gym_pusht  # noqa: F401  (registers the env)
        import gymnasium as gym
    except ImportError as exc:
        raise ImportError(
            "PushT generation needs the simulator extra: pip install 'crcm-robotics[sim]' (gym-pusht)"
        ) from exc
    return gym.make(
        "gym_pusht/PushT-v0",
        obs_type="pixels_agent_pos",
        render_mode="rgb_array",
        observation_width=size,
        observation_height=size,
        max_episode_steps=None,
        disable_env_checker=True,
    )


def _toward(agent: np.ndarray, waypoint: np.ndarray, max_speed: float, noise: float,
            rng: np.random.Generator) -> np.ndarray:
    """The next commanded target: at most ``max_speed`` units towards ``waypoint``, plus Gaussian noise,
    inside the workspace."""
    step = waypoint - agent
    dist = np.linalg.norm(step)
    if dist > max_speed:
        step = step * (max_speed / dist)
    target = agent + step + rng.normal(0.0, noise, size=2)
    return np.clip(target, 10.0, PUSHT_WORKSPACE - 10.0).astype(np.float32)


class ScriptedPusher:
    """Approach → push through → re-approach, with exploration noise (see module docstring)."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.max_speed = float(rng.uniform(18.0, 40.0))  # env units per step
        self.noise = float(rng.uniform(2.0, 8.0))
        self.phase = "approach"
        self.phase_steps = 0
        self.direction = np.zeros(2)
        self.wander_target = np.zeros(2)
        self._new_push()

    def _new_push(self, block_com: np.ndarray | None = None) -> None:
        goal = np.array([256.0, 256.0])
        if block_com is not None and self.rng.random() < 0.5 and np.linalg.norm(goal - block_com) > 20:
            d = goal - block_com  # push towards the goal
        else:
            a = self.rng.uniform(-math.pi, math.pi)
            d = np.array([math.cos(a), math.sin(a)])
        self.direction = d / np.linalg.norm(d)
        self.push_length = int(self.rng.integers(6, 25))
        self.phase = "approach"
        self.phase_steps = 0

    def __call__(self, agent: np.ndarray, block_com: np.ndarray) -> np.ndarray:
        self.phase_steps += 1
        if self.phase == "approach":
            pre_contact = block_com - self.direction * BLOCK_RADIUS
            waypoint = _detour(agent, pre_contact, block_com)
            if np.linalg.norm(agent - pre_contact) < 15.0 or self.phase_steps > 60:
                self.phase, self.phase_steps = "push", 0
        elif self.phase == "push":
            waypoint = agent + self.direction * self.max_speed * 1.5
            if self.phase_steps >= self.push_length:
                if self.rng.random() < 0.15:
                    self.phase, self.phase_steps = "wander", 0
                    self.wander_target = self.rng.uniform(60.0, 452.0, size=2)
                else:
                    self._new_push(block_com)
        else:  # wander
            waypoint = self.wander_target
            if np.linalg.norm(agent - waypoint) < 15.0 or self.phase_steps > 25:
                self._new_push(block_com)
        return _toward(agent, waypoint, self.max_speed, self.noise, self.rng)


class ExplorePusher:
    """Noisy and random targets mixed with pushes: segments of one of three kinds.

    - ``push`` (40 %): the scripted pusher's next commands plus heavy noise (σ 5–25 units);
    - ``hold`` (35 %): one target held 1–8 steps, near the block (60 %) or anywhere: what
      a planner's waypoint-held-k-steps proposal commands, including far jumps;
    - ``jitter`` (25 %): targets scattered round the pusher (σ 10–60 units) for 3–10 steps.
    """

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.pusher = ScriptedPusher(rng)
        self.kind = "push"
        self.steps_left = 0
        self.noise = 0.0
        self.hold_target = np.zeros(2)

    def _next_segment(self, block_com: np.ndarray) -> None:
        r = self.rng.random()
        if r < 0.40:
            self.kind, self.steps_left = "push", int(self.rng.integers(5, 21))
            self.noise = float(self.rng.uniform(5.0, 25.0))
        elif r < 0.75:
            self.kind, self.steps_left = "hold", int(self.rng.integers(1, 9))
            near = self.rng.random() < 0.6
            self.hold_target = (block_com + self.rng.normal(0.0, 80.0, size=2) if near
                                else self.rng.uniform(10.0, PUSHT_WORKSPACE - 10.0, size=2))
        else:
            self.kind, self.steps_left = "jitter", int(self.rng.integers(3, 11))
            self.noise = float(self.rng.uniform(10.0, 60.0))

    def __call__(self, agent: np.ndarray, block_com: np.ndarray) -> np.ndarray:
        if self.steps_left <= 0:
            self._next_segment(block_com)
        self.steps_left -= 1
        if self.kind == "push":
            target = self.pusher(agent, block_com) + self.rng.normal(0.0, self.noise, size=2)
        elif self.kind == "hold":
            target = self.hold_target
        else:
            target = agent + self.rng.normal(0.0, self.noise, size=2)
        return np.clip(target, 10.0, PUSHT_WORKSPACE - 10.0).astype(np.float32)


class OrbitPusher:
    """A held-out behaviour: the pusher circles the block's centre instead of pushing through it.

    It orbits at a radius of 25–120 units (inside ~95 the arc sweeps into the block and turns or drags it)
    at 0.06–0.22 rad per step, and every 15–45 steps draws a new radius, speed and direction. Training
    sees straight pushes (scripted) and held or jittered targets (explore), never arcs round the block: a
    store of these episodes scores how a model carries over to a policy it has not seen (no preset trains
    on it).
    """

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.max_speed = float(rng.uniform(18.0, 40.0))  # env units per step, as the scripted pusher's
        self.noise = float(rng.uniform(2.0, 6.0))
        self.steps_left = 0
        self.radius = self.omega = 0.0

    def _next_arc(self) -> None:
        self.radius = float(self.rng.uniform(25.0, 120.0))
        self.omega = float(self.rng.uniform(0.06, 0.22)) * (1.0 if self.rng.random() < 0.5 else -1.0)
        self.steps_left = int(self.rng.integers(15, 46))

    def __call__(self, agent: np.ndarray, block_com: np.ndarray) -> np.ndarray:
        if self.steps_left <= 0:
            self._next_arc()
        self.steps_left -= 1
        rel = agent - block_com
        angle = math.atan2(rel[1], rel[0]) + self.omega
        waypoint = block_com + self.radius * np.array([math.cos(angle), math.sin(angle)])
        return _toward(agent, waypoint, self.max_speed, self.noise, self.rng)


POLICIES = {"scripted": ScriptedPusher, "explore": ExplorePusher, "orbit": OrbitPusher}
BEHAVIORS = ("scripted", "explore", "mixed", "orbit")


def explore_episodes(behavior: str, explore_fraction: float, episodes: int) -> list[int]:
    """Which episodes explore: all (explore), none (scripted), or an evenly spread fraction (mixed)."""
    if behavior not in BEHAVIORS:
        raise StoreError(f"behavior must be one of {BEHAVIORS}, got {behavior!r}")
    if not 0.0 <= explore_fraction <= 1.0:
        raise StoreError(f"explore_fraction must be in [0, 1], got {explore_fraction}")
    if behavior in ("scripted", "orbit"):
        return []
    if behavior == "explore":
        return list(range(episodes))
    return [e for e in range(episodes)
            if math.floor((e + 1) * explore_fraction) > math.floor(e * explore_fraction)]


def _detour(agent: np.ndarray, target: np.ndarray, obstacle: np.ndarray) -> np.ndarray:
    """Next waypoint from ``agent`` to ``target`` that walks round a disc at ``obstacle``."""
    to_target = target - agent
    length = np.linalg.norm(to_target)
    if length < 1e-6:
        return target
    u = to_target / length
    proj = np.clip(np.dot(obstacle - agent, u), 0.0, length)
    closest = agent + u * proj
    if np.linalg.norm(obstacle - closest) >= BLOCK_RADIUS:
        return target
    away = agent - obstacle  # step sideways round the disc, on the agent's side
    r = np.linalg.norm(away)
    if r < 1e-6:
        away, r = np.array([1.0, 0.0]), 1.0
    tangent = np.array([-away[1], away[0]]) / r
    if np.dot(tangent, to_target) < 0:
        tangent = -tangent
    return obstacle + away / r * BLOCK_RADIUS * 1.15 + tangent * BLOCK_RADIUS


_WORKER_ENV = None


def _worker_env(size: int):
    global _WORKER_ENV
    if _WORKER_ENV is None or _WORKER_ENV[0] != size:
        _WORKER_ENV = (size, make_env(size))
    return _WORKER_ENV[1]


def collect_episode(task: tuple) -> EpisodeData:
    """Roll out one episode; ``task = (seed, episode, size, min_steps, max_steps[, policy])``, ``policy`` a
    key of :data:`POLICIES` (default ``scripted``)."""
    seed, episode, size, min_steps, max_steps = task[:5]
    policy_name = task[5] if len(task) > 5 else "scripted"
    rng = np.random.default_rng(episode_seed(seed, episode))
    env = _worker_env(size)
    obs, info = env.reset(seed=int(rng.integers(0, 2**31 - 1)))
    unwrapped = env.unwrapped
    policy = POLICIES[policy_name](rng)
    n = int(rng.integers(min_steps, max_steps + 1))
    frames = np.empty((n, size, size, 3), dtype=np.uint8)
    action = np.empty((n, 2), dtype=np.float32)
    state = np.empty((n, 5), dtype=np.float32)
    contacts = 0
    for i in range(n):
        agent = np.asarray(info["pos_agent"], dtype=np.float64)
        block = unwrapped.block
        com = np.asarray(block.local_to_world(block.center_of_gravity), dtype=np.float64)
        bx, by, angle = info["block_pose"]
        frames[i] = obs["pixels"]
        state[i] = (agent[0], agent[1], bx, by, math.atan2(math.sin(angle), math.cos(angle)))
        action[i] = policy(agent, com)
        obs, _, _, _, info = env.step(action[i])
        contacts += int(info["n_contacts"] > 0)
    return EpisodeData(frames, action, state, contacts)


def generate_pusht(
    out: str | Path,
    episodes: int,
    size: int = 64,
    seed: int = 0,
    workers: int = 0,
    min_steps: int = 100,
    max_steps: int = 200,
    overwrite: bool = False,
    progress: bool = True,
    behavior: str = "scripted",
    explore_fraction: float = 0.5,
) -> dict[str, float]:
    """Write ``episodes`` PushT episodes to a new store at ``out``; returns timing figures.

    ``behavior``: ``scripted`` (default), ``explore``, ``mixed`` (``explore_fraction`` of the
    episodes explore; see the module docstring) or ``orbit`` (:class:`OrbitPusher`, a held-out policy).
    """
    from crcm_robotics.data.store import TrajectoryWriter
    from crcm_robotics.data.parallel import ordered_results
    from crcm_robotics.progress import progress as progress_bar

    if episodes < 1:
        raise StoreError(f"episodes must be ≥ 1, got {episodes}")
    if not 8 <= size <= 512:
        raise StoreError(f"size must be in [8, 512], got {size}")
    if not 2 <= min_steps <= max_steps:
        raise StoreError(f"need 2 ≤ min_steps ≤ max_steps, got {min_steps}, {max_steps}")
    exploring = explore_episodes(behavior, explore_fraction, episodes)
    workers = min(workers or min(os.cpu_count() or 1, 16), episodes)  # no idle processes
    writer = TrajectoryWriter.create(
        out,
        image_shape=(size, size, 3),
        action_dim=2,
        state_dim=5,
        cameras=("top",),
        fps=PUSHT_FPS,
        action_names=ACTION_NAMES,
        action_units="env units (0..512), pixel = unit * size / 512",
        state_names=STATE_NAMES,
        state_units="env units; block_angle in rad",
        source=f"gym-pusht PushT-v0, {behavior} pusher, seed={seed}",
        extra_attrs={"pusht": {
            "size": size, "seed": seed, "workspace": PUSHT_WORKSPACE, "behavior": behavior,
            "explore_fraction": explore_fraction if behavior == "mixed" else float(bool(exploring)),
            "explore_episodes": exploring,
        }},
        overwrite=overwrite,
    )
    explore_set = set(exploring)
    plain = "orbit" if behavior == "orbit" else "scripted"  # the policy of the episodes that do not explore
    tasks = [(seed, e, size, min_steps, max_steps, "explore" if e in explore_set else plain)
             for e in range(episodes)]
    t0 = time.perf_counter()
    frames = contacts = 0
    bar = progress_bar(total=episodes, desc=f"PushT → {out}", unit="ep", enabled=progress)
    try:
        with ordered_results(collect_episode, tasks, workers) as results:
            for ep in results:
                writer.append_episode(ep.frames, ep.action, ep.state)
                frames += len(ep.action)
                contacts += ep.contacts
                bar.update(1)
    finally:
        bar.close()
    writer.write_stats()
    seconds = time.perf_counter() - t0
    return {
        "episodes": episodes,
        "frames": frames,
        "seconds": round(seconds, 2),
        "episodes_per_s": round(episodes / seconds, 2),
        "frames_per_s": round(frames / seconds, 1),
        "contact_fraction": round(contacts / max(frames, 1), 3),
        "workers": workers,
        "behavior": behavior,
        "explore_episodes": len(exploring),
    }
