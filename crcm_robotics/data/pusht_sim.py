"""PushT as a settable simulator: the closed-loop planning benchmark's environment and its oracle.

- :class:`PushTSim`: one headless gym-pusht env that can be put in any state of the
  store's layout (agent x, y, block x, y, block angle; optionally + velocities) and
  stepped; it renders the same frames as the generator (``data/pusht.py``).
- :class:`PushTRolloutPool`: the oracle "world model": batched candidate rollouts from
  one start state, spread over spawned worker processes, each holding a ``PushTSim``.
  Physics steps do not render; only the frames asked for are drawn.
- :func:`pusht_errors`, :func:`pusht_success`: DINO-WM's PushT success rule
  (‖(agent x, y, block x, y) − goal‖ < 20 env units and block angle error < π/9).
- :func:`goal_pairs`: DINO-WM-style goals from a store: set the sim to a logged state,
  replay the logged actions ``ahead`` steps; the state reached is the goal.

Setting a state (what gym-pusht's ``reset_to_state`` gets wrong): the env sets the
block's position *then* its angle, and pymunk rotates about the centre of gravity, so
the block lands away from the state asked for. ``reset_to`` sets the angle first, so
the state read back is the state given (to ~1e-13), on a fresh pymunk space (no
contact cache from an earlier rollout: a rollout depends on its start state only).
Velocities are not in the store: a 5-value state starts at rest, which is why
replaying logged actions from a logged state does not reproduce the log exactly
(``replay_mismatch`` measures it). ``snapshot()`` / a 10-value state carries them.

Nothing here imports torch; gym-pusht is imported lazily (``make_env``).
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from crcm_robotics.data.pusht import PUSHT_WORKSPACE, make_env

if TYPE_CHECKING:
    from crcm_robotics.data.store import TrajectoryStore

STATE_DIM = 5  # agent x, y, block x, y, block angle (the store's layout)
SNAPSHOT_DIM = 10  # + agent vx, vy, block vx, vy, block angular velocity
SUCCESS_DISTANCE = 20.0  # env units (DINO-WM)
SUCCESS_ANGLE = math.pi / 9  # rad (DINO-WM)
FRAME_MODES = ("last", "all", "none")


def wrap_angle(angle: np.ndarray | float) -> np.ndarray | float:
    """Angle(s) wrapped to (-π, π] the way the store records them."""
    return np.arctan2(np.sin(angle), np.cos(angle))


def check_state(state: Any, name: str = "state",
                dims: tuple[int, ...] = (STATE_DIM, SNAPSHOT_DIM)) -> np.ndarray:
    """A finite float64 vector of one of the lengths ``dims``, else a ValueError naming what was found."""
    arr = np.asarray(state)
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if arr.ndim != 1 or arr.shape[0] not in dims:
        want = " or ".join(f"[{d}]" for d in dims)
        raise ValueError(f"{name} must have shape {want} (agent x, y, block x, y, block angle"
                         f"[, velocities]), got {list(arr.shape)}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} has non-finite values: {arr.tolist()}")
    return arr


def check_action(action: Any, name: str = "action") -> np.ndarray:
    """A finite float64 [2] target in env units, else a ValueError naming what was found."""
    arr = np.asarray(action)
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.shape != (2,):
        raise ValueError(f"{name} must have shape [2] (target x, y in env units), got {list(arr.shape)}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} has non-finite values: {arr.tolist()}")
    return arr


class PushTSim:
    """One headless PushT env at ``size``×``size`` that can be put in any state and stepped.

    ``step`` runs exactly gym-pusht's PD-control physics (10 substeps of 10 ms) without
    its coverage computation or rendering; ``render`` draws the current state.
    """

    def __init__(self, size: int = 64):
        if not 8 <= size <= 512:
            raise ValueError(f"size must be in [8, 512], got {size}")
        self.size = size
        self._env = make_env(size)
        self._env.reset(seed=0)
        self._pusht = self._env.unwrapped
        self._substeps = int(1 / (self._pusht.dt * self._pusht.control_hz))
        self._background, self._draw_moving = _static_canvas(self._pusht)

    def reset_to(self, state: np.ndarray, render: bool = True) -> np.ndarray:
        """Put the sim in ``state`` ([5], or [10] with velocities); returns its frame uint8 [H, W, 3]."""
        s = check_state(state)
        env = self._pusht
        env._setup()  # a fresh space: no contact cache carried over from an earlier state
        env.collision_handeler.post_solve = _ignore_contact  # gym-pusht counts contacts there: costly, unused
        env._last_action = None
        block, agent = env.block, env.agent
        block.angle = float(s[4])  # angle first: pymunk rotates about the CoG, moving the position
        block.position = (float(s[2]), float(s[3]))
        agent.position = (float(s[0]), float(s[1]))
        if len(s) == SNAPSHOT_DIM:
            agent.velocity = (float(s[5]), float(s[6]))
            block.velocity = (float(s[7]), float(s[8]))
            block.angular_velocity = float(s[9])
        env.space.reindex_shapes_for_body(block)  # the drawing reads the shapes' cached world vertices
        env.space.reindex_shapes_for_body(agent)
        return self.render() if render else np.empty((0,), np.uint8)

    def step(self, action: np.ndarray, render: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Apply a target ``action`` [2] (env units) for one 100 ms control step -> (frame, state [5])."""
        self.physics_step(check_action(action))
        return (self.render() if render else np.empty((0,), np.uint8)), self.state

    def physics_step(self, action: np.ndarray) -> None:
        """gym-pusht's ``PushTEnv.step`` physics (no checks, no rendering): its PD update
        ``v += (k_p (a − p) + k_v (0 − v)) dt`` per 10 ms substep, the same float64 operations
        in the same order on Python floats instead of numpy/Vec2d (a test checks bit-equality)."""
        env = self._pusht
        ax, ay = float(action[0]), float(action[1])
        agent, space_step, dt, k_p, k_v = env.agent, env.space.step, env.dt, env.k_p, env.k_v
        for _ in range(self._substeps):
            px, py = agent.position
            vx, vy = agent.velocity
            agent.velocity = (vx + (k_p * (ax - px) + k_v * (0 - vx)) * dt,
                              vy + (k_p * (ay - py) + k_v * (0 - vy)) * dt)
            space_step(dt)

    def render(self) -> np.ndarray:
        """The current state drawn as the generator draws it: uint8 [size, size, 3].

        Pixel-identical to gym-pusht's ``_render`` (tests check) and several times faster: the
        goal zone and walls come from a canvas drawn once (unless the pusher or block is near a
        wall, where draw order matters), and the 512² canvas is resized straight from its pixel
        buffer instead of numpy's strided copy of ``surfarray``.
        """
        import cv2
        import pygame

        env = self._pusht
        far = PUSHT_WORKSPACE - _MARGIN
        moving = (sh.bb for sh in env.space.shapes if sh.body.body_type != sh.body.STATIC)
        if all(_MARGIN < bb.left and bb.right < far and _MARGIN < bb.bottom and bb.top < far
               for bb in moving):
            canvas = self._background.copy()
            env.space.debug_draw(self._draw_moving(canvas))
        else:
            canvas = env._draw()
        small = (env.observation_width, env.observation_height)
        if canvas.get_bytesize() != 4 or canvas.get_pitch() != 4 * canvas.get_width():
            rgb = np.frombuffer(pygame.image.tobytes(canvas, "RGB"), np.uint8)
            return cv2.resize(rgb.reshape(canvas.get_height(), canvas.get_width(), 3), small)
        # resize the canvas's own 4-byte pixels, then pick R, G, B: channels resize independently
        raw = np.frombuffer(canvas.get_buffer(), np.uint8).reshape(canvas.get_height(), canvas.get_width(), 4)
        return np.ascontiguousarray(cv2.resize(raw, small)[:, :, [s // 8 for s in canvas.get_shifts()[:3]]])

    @property
    def state(self) -> np.ndarray:
        """float64 [5]: agent x, y, block x, y, block angle wrapped to (-π, π] (the store's layout)."""
        agent, block = self._pusht.agent.position, self._pusht.block
        angle = block.angle
        return np.array([agent[0], agent[1], block.position[0], block.position[1],
                         math.atan2(math.sin(angle), math.cos(angle))], dtype=np.float64)

    def snapshot(self) -> np.ndarray:
        """float64 [10]: ``state`` + agent vx, vy, block vx, vy, block angular velocity (for ``reset_to``)."""
        agent, block = self._pusht.agent, self._pusht.block
        return np.concatenate([self.state, [agent.velocity[0], agent.velocity[1], block.velocity[0],
                                            block.velocity[1], block.angular_velocity]])

    def close(self) -> None:
        self._env.close()

    def __enter__(self) -> "PushTSim":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ignore_contact(arbiter: Any, space: Any, data: Any) -> None:
    return None


_MARGIN = 16.0  # env units: the walls are drawn within 8 of the border; nearer than this, draw everything


def _static_canvas(env: Any) -> tuple[Any, Any]:
    """The goal zone and walls drawn once (bodies moved off the canvas), and a DrawOptions
    class that then draws everything but the walls: gym-pusht's ``_draw`` in two parts."""
    from gym_pusht.envs.pymunk_override import DrawOptions

    agent, block = env.agent, env.block
    saved = [(b, b.position) for b in (agent, block)]
    for b in (agent, block):
        b.position = (-10_000.0, -10_000.0)
        env.space.reindex_shapes_for_body(b)
    background = env._draw()
    for b, position in saved:
        b.position = position
        env.space.reindex_shapes_for_body(b)
    walls = {(tuple(sh.a), tuple(sh.b)) for sh in env.space.static_body.shapes}

    class DrawMoving(DrawOptions):
        def draw_fat_segment(self, a, b, radius, outline_color, fill_color):  # noqa: ANN001
            if (tuple(a), tuple(b)) not in walls:
                super().draw_fat_segment(a, b, radius, outline_color, fill_color)

    return background, DrawMoving


# --- the oracle: batched rollouts over worker processes -------------------------------------------

_WORKER_SIM: PushTSim | None = None


def _init_worker(size: int) -> None:
    global _WORKER_SIM
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _WORKER_SIM = PushTSim(size)


def _rollout_chunk(task: tuple[np.ndarray, np.ndarray, str]) -> tuple[np.ndarray, np.ndarray]:
    assert _WORKER_SIM is not None, "worker not initialised"
    return rollout_candidates(_WORKER_SIM, *task)


def rollout_candidates(sim: PushTSim, state: np.ndarray, actions: np.ndarray,
                       frames: str) -> tuple[np.ndarray, np.ndarray]:
    """Roll each of ``actions`` [n, Hz, 2] out from ``state`` on one sim.

    Returns (frames uint8 [n, F, H, W, 3], states float32 [n, Hz, 5])."""
    n, horizon = actions.shape[:2]
    size = sim.size
    n_frames = {"last": 1, "all": horizon, "none": 0}[frames]
    out_frames = np.empty((n, n_frames, size, size, 3), dtype=np.uint8)
    out_states = np.empty((n, horizon, STATE_DIM), dtype=np.float32)
    for i in range(n):
        sim.reset_to(state, render=False)
        for t in range(horizon):
            sim.physics_step(actions[i, t])
            out_states[i, t] = sim.state
            if frames == "all":
                out_frames[i, t] = sim.render()
        if frames == "last":
            out_frames[i, 0] = sim.render()
    return out_frames, out_states


class PushTRolloutPool:
    """Batched PushT rollouts from one start state over ``workers`` spawned processes (0 = all cores).

    ``workers=1`` runs in this process (no transfer cost). Results depend only on the
    start state and the actions, never on the number of workers.
    """

    def __init__(self, size: int = 64, workers: int = 0):
        if workers < 0:
            raise ValueError(f"workers must be ≥ 0 (0 = all cores), got {workers}")
        self.size = size
        self.workers = workers or os.cpu_count() or 1
        self._sim: PushTSim | None = None
        self._pool: Any = None
        if self.workers == 1:
            self._sim = PushTSim(size)
        else:
            self._pool = mp.get_context("spawn").Pool(self.workers, initializer=_init_worker,
                                                      initargs=(size,))

    def rollout(self, state: np.ndarray, actions: np.ndarray,
                frames: str = "last") -> tuple[np.ndarray, np.ndarray]:
        """Roll out ``actions`` [N, Hz, 2] from ``state`` [5] (or [10] with velocities).

        Returns (frames uint8 [N, F, H, W, 3] with F = 1 for ``"last"``, Hz for ``"all"``,
        0 for ``"none"``; states float32 [N, Hz, 5], the state after each action).
        """
        if self._sim is None and self._pool is None:
            raise RuntimeError("PushTRolloutPool is closed")
        s = check_state(state)
        if frames not in FRAME_MODES:
            raise ValueError(f"frames must be one of {FRAME_MODES}, got {frames!r}")
        a = np.asarray(actions)
        if a.dtype.kind not in "fiu" or a.ndim != 3 or a.shape[2] != 2 or a.shape[0] < 1 or a.shape[1] < 1:
            raise ValueError(f"actions must be numeric with shape [N ≥ 1, Hz ≥ 1, 2], "
                             f"got {list(a.shape)} {a.dtype}")
        a = a.astype(np.float64)
        if not np.isfinite(a).all():
            bad = np.argwhere(~np.isfinite(a))[0]
            raise ValueError(f"actions has a non-finite value at candidate {bad[0]}, step {bad[1]}")
        if self._sim is not None:
            return rollout_candidates(self._sim, s, a, frames)
        chunks = [c for c in np.array_split(a, min(self.workers, len(a))) if len(c)]
        parts = self._pool.map(_rollout_chunk, [(s, c, frames) for c in chunks], chunksize=1)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None
        if self._sim is not None:
            self._sim.close()
            self._sim = None

    def __enter__(self) -> "PushTRolloutPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- success ----------------------------------------------------------------------------------------


def _states(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim < 1 or arr.shape[-1] not in (STATE_DIM, SNAPSHOT_DIM):
        raise ValueError(f"{name} must have shape [..., 5] (agent x, y, block x, y, block angle), "
                         f"got {list(arr.shape)}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} has non-finite values")
    return arr[..., :STATE_DIM]


def pusht_errors(state: np.ndarray, goal_state: np.ndarray) -> dict[str, Any]:
    """Errors of ``state`` [..., 5] against ``goal_state`` [..., 5] (broadcast): floats for single states.

    ``block_pos_error``, ``agent_pos_error`` (env units), ``block_angle_error`` (rad, wrapped to
    [0, π]), ``state_distance`` = ‖(agent x, y, block x, y) − goal‖ (DINO-WM's position term).
    """
    s, g = _states(state, "state"), _states(goal_state, "goal_state")
    out = {
        "block_pos_error": np.linalg.norm(s[..., 2:4] - g[..., 2:4], axis=-1),
        "block_angle_error": np.abs(wrap_angle(s[..., 4] - g[..., 4])),
        "agent_pos_error": np.linalg.norm(s[..., 0:2] - g[..., 0:2], axis=-1),
        "state_distance": np.linalg.norm(s[..., 0:4] - g[..., 0:4], axis=-1),
    }
    if np.ndim(out["state_distance"]) == 0:
        return {k: float(v) for k, v in out.items()}
    return out


BLOCK_STILL = (2.0, 2.0)  # env units, degrees: a block within both of its earlier pose has not moved


def block_errors(state: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The block's position error (env units) and angle error (degrees, wrapped) of ``state`` vs ``true``."""
    e = pusht_errors(state, true)
    return e["block_pos_error"], np.degrees(e["block_angle_error"])


def block_moved(last: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Whether the true block moved from ``last`` (broadcast) by more than :data:`BLOCK_STILL`."""
    pos, deg = block_errors(np.broadcast_to(last, true.shape), true)
    return (pos > BLOCK_STILL[0]) | (deg > BLOCK_STILL[1])


def moved_by_step(moved: np.ndarray) -> list[np.ndarray]:
    """``moved`` [windows, horizon] split into one mask a predicted frame: the k-th keeps column k's moved
    frames and no others (so a per-frame figure is a mean over a mask like any other)."""
    columns = np.arange(moved.shape[1])
    return [moved & (columns == k) for k in range(moved.shape[1])]


def still_moved_summary(pos: np.ndarray, deg: np.ndarray, moved: np.ndarray) -> dict[str, dict[str, float]]:
    """Mean block errors over the frames where the true block stayed put and where it moved."""
    return {name: {"frames": int(mask.sum()), "position": round(float(pos[mask].mean()), 2),
                   "angle_deg": round(float(deg[mask].mean()), 2)}
            for name, mask in (("still", ~moved), ("moved", moved))}


BLOCK_RGB = (119, 136, 153)  # gym-pusht's T block (LightSlateGray)
BLOCK_COLOUR_TOL = 40.0  # RGB distance: the block's solid pixels at 64x64, not its antialiased rim


def block_mask(frames: np.ndarray, tol: float = BLOCK_COLOUR_TOL) -> np.ndarray:
    """Which pixels of uint8 frames [..., H, W, 3] are drawn in the block's colour (bool [..., H, W])."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim < 3 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 [..., H, W, 3], got {frames.dtype} {list(frames.shape)}")
    return np.linalg.norm(frames.astype(np.float32) - np.float32(BLOCK_RGB), axis=-1) < tol


def block_at(true: np.ndarray, read: np.ndarray) -> np.ndarray:
    """The states ``true`` [..., 5] with the block (x, y, angle) where ``read`` [..., 5] puts it, the pusher
    kept: the pose a probe read off a frame, drawn with nothing else changed."""
    at_read = np.array(true, dtype=np.float64, copy=True)
    at_read[..., 2:] = np.asarray(read, np.float64)[..., 2:]
    return at_read


def block_render_check(sim: PushTSim, frames: np.ndarray, read: np.ndarray,
                       true: np.ndarray) -> dict[str, np.ndarray]:
    """Does a frame show a solid block where a probe read it, or a faded one?

    ``frames`` uint8 [N, T, H, W, 3] (predicted, real or copied), ``read`` [N, T, 5] the states a probe read
    off them, ``true`` [N, T, 5] the logged states. Each frame's true state is rendered, and the same state
    with the block where the probe read it (the pusher kept true). Per frame [N, T]: ``block_pixels``, the
    frame's block-coloured pixels over the true render's (about 1 for a block drawn solid, below 1 for a
    faded or smeared one); ``iou_true`` and ``iou_read``, the overlap of the frame's block pixels with each
    render's. A solid block at a wrong pose has ``iou_read`` well above ``iou_true``; a faded one has both
    low.
    """
    frames, read, true = np.asarray(frames), np.asarray(read, np.float64), np.asarray(true, np.float64)
    if frames.ndim != 5 or read.shape != true.shape or read.shape[:2] != frames.shape[:2] \
            or read.shape[-1] != 5:
        raise ValueError(f"expected frames [N, T, H, W, 3] and read, true [N, T, 5] alike, got "
                         f"{list(frames.shape)}, {list(read.shape)}, {list(true.shape)}")
    if frames.shape[2] != sim.size:
        raise ValueError(f"frames are {frames.shape[2]} pixels high; the sim renders {sim.size}")
    shown, at_read = block_mask(frames), block_at(true, read)
    out = {key: np.zeros(frames.shape[:2]) for key in ("block_pixels", "iou_true", "iou_read")}
    for i, j in np.ndindex(*frames.shape[:2]):
        renders = {"true": block_mask(sim.reset_to(true[i, j])),
                   "read": block_mask(sim.reset_to(at_read[i, j]))}
        m = shown[i, j]
        out["block_pixels"][i, j] = m.sum() / max(1, renders["true"].sum())
        for name, r in renders.items():
            out[f"iou_{name}"][i, j] = (m & r).sum() / max(1, (m | r).sum())
    return out


def pusht_success(state: np.ndarray, goal_state: np.ndarray) -> Any:
    """DINO-WM's rule: state_distance < 20 env units and block angle error < π/9 (bool, or bool array)."""
    e = pusht_errors(state, goal_state)
    ok = ((np.asarray(e["state_distance"]) < SUCCESS_DISTANCE)
          & (np.asarray(e["block_angle_error"]) < SUCCESS_ANGLE))
    return bool(ok) if ok.ndim == 0 else ok


# --- goals -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GoalPair:
    """A start in a logged episode and the goal its logged actions reach ``ahead`` steps later."""

    episode: int
    start: int  # frame index inside the episode
    context_frames: np.ndarray  # uint8 [K, H, W, 3]: the episode's frames start-K+1 … start
    context_actions: np.ndarray  # float32 [K, 2]: the action that produced each context frame
    start_state: np.ndarray  # float32 [5]: the store's state at ``start``
    goal_state: np.ndarray  # float32 [5]: the sim's state after replaying ``logged_actions``
    goal_frame: np.ndarray  # uint8 [H, W, 3]: its render
    logged_actions: np.ndarray  # float32 [ahead, 2]: the episode's actions from ``start``
    block_move: float  # env units the block moved, start -> goal
    block_turn: float  # rad the block turned, start -> goal


def goal_pairs(
    store: "TrajectoryStore",
    episodes: list[int],
    n: int,
    ahead: int = 25,
    context: int = 4,
    min_move: float = 15.0,
    min_turn: float = 0.15,
    seed: int = 0,
    sim: PushTSim | None = None,
) -> list[GoalPair]:
    """``n`` start/goal pairs from ``episodes`` of a PushT store, DINO-WM style (see module docstring).

    Starts are drawn with ``seed``, round-robin over the (shuffled) episodes so the
    pairs spread over them; a start qualifies when the replayed goal moves the block
    ≥ ``min_move`` env units or turns it ≥ ``min_turn`` rad. Raises when fewer than
    ``n`` qualify.
    """
    if n < 1 or ahead < 1 or context < 1:
        raise ValueError(f"need n ≥ 1, ahead ≥ 1, context ≥ 1, got n={n}, ahead={ahead}, context={context}")
    if not episodes:
        raise ValueError("goal_pairs needs at least one episode, got none")
    if store.state_dim != STATE_DIM or store.action_dim != 2:
        raise ValueError(f"store {store.path} is not a PushT store: expected state_dim 5 and action_dim 2, "
                         f"got {store.state_dim} and {store.action_dim}")
    size = store.image_shape[0]
    own_sim = sim is None
    sim = sim or PushTSim(size)
    if sim.size != size:
        raise ValueError(f"sim renders {sim.size}×{sim.size} but store {store.path} holds "
                         f"{size}×{size} frames")
    from crcm_robotics.data.goals import draw_goal_pairs

    try:
        pairs = draw_goal_pairs(store, episodes, n, ahead, context, seed,
                                lambda e, i: _goal_pair(store, sim, e, i, ahead, context),
                                lambda p: p.block_move >= min_move or p.block_turn >= min_turn)
    finally:
        if own_sim:
            sim.close()
    if len(pairs) < n:
        raise ValueError(f"only {len(pairs)} of the {n} goals asked for move the block ≥ {min_move} "
                         f"env units or ≥ {min_turn} rad in {ahead} steps in episodes {episodes} "
                         f"of {store.path}")
    return pairs


def _goal_pair(store: "TrajectoryStore", sim: PushTSim, episode: int, start: int, ahead: int,
               context: int) -> GoalPair:
    s, _ = store.episode_bounds(episode)
    i = s + start
    start_state = np.asarray(store.state(i, i + 1)[0], dtype=np.float32)
    logged = np.asarray(store.action(i, i + ahead), dtype=np.float32)
    sim.reset_to(start_state, render=False)
    for a in logged:
        sim.physics_step(a.astype(np.float64))
    goal_state = sim.state.astype(np.float32)
    return GoalPair(
        episode=episode,
        start=start,
        context_frames=store.frames(i - context + 1, i + 1),
        context_actions=np.asarray(store.action(i - context, i), dtype=np.float32),
        start_state=start_state,
        goal_state=goal_state,
        goal_frame=sim.render(),
        logged_actions=logged,
        block_move=float(np.linalg.norm(goal_state[2:4] - start_state[2:4])),
        block_turn=float(abs(wrap_angle(float(goal_state[4]) - float(start_state[4])))),
    )


def goal_pair_at(store: "TrajectoryStore", episode: int, start: int, ahead: int = 25, context: int = 4,
                 sim: PushTSim | None = None) -> GoalPair:
    """The start/goal pair at frame ``start`` of ``episode`` (for one chosen episode, as ``crcm plan`` runs)."""
    s, t = store.episode_bounds(episode)
    if not context <= start < (t - s) - ahead:
        raise ValueError(f"start {start} of episode {episode} needs {context} frames before it and {ahead} "
                         f"actions after it (the episode has {t - s} frames: start in [{context}, "
                         f"{t - s - ahead - 1}])")
    own_sim = sim is None
    sim = sim or PushTSim(store.image_shape[0])
    try:
        return _goal_pair(store, sim, episode, start, ahead, context)
    finally:
        if own_sim:
            sim.close()


def replay_mismatch(store: "TrajectoryStore", episodes: list[int], ahead: int = 25, stride: int = 10,
                    sim: PushTSim | None = None) -> dict[str, float]:
    """How far set-state + replaying logged actions drifts from the log (velocities are not stored).

    For starts every ``stride`` frames: after ``ahead`` replayed steps, the mean/p90 block
    position error (env units), block angle error (rad) and agent error against the logged state.
    """
    own_sim = sim is None
    sim = sim or PushTSim(store.image_shape[0])
    block, angle, agent = [], [], []
    try:
        for e in episodes:
            s, t = store.episode_bounds(e)
            states, actions = store.state(s, t), store.action(s, t)
            for k in range(0, (t - s) - ahead, stride):
                sim.reset_to(states[k], render=False)
                for a in actions[k : k + ahead]:
                    sim.physics_step(a.astype(np.float64))
                err = pusht_errors(sim.state, states[k + ahead])
                block.append(err["block_pos_error"])
                angle.append(err["block_angle_error"])
                agent.append(err["agent_pos_error"])
    finally:
        if own_sim:
            sim.close()
    if not block:
        raise ValueError(f"episodes {episodes} of {store.path} have no start with {ahead} steps after it")
    return {
        "starts": len(block), "ahead": ahead,
        "block_pos_error_mean": round(float(np.mean(block)), 3),
        "block_pos_error_p90": round(float(np.percentile(block, 90)), 3),
        "block_angle_error_mean": round(float(np.mean(angle)), 4),
        "agent_pos_error_mean": round(float(np.mean(agent)), 3),
        "agent_pos_error_p90": round(float(np.percentile(agent, 90)), 3),
    }


__all__ = [
    "GoalPair", "PUSHT_WORKSPACE", "PushTRolloutPool", "PushTSim", "goal_pair_at", "goal_pairs", "pusht_errors", "pusht_success",
    "BLOCK_STILL", "block_errors", "block_moved", "moved_by_step", "still_moved_summary",
    "BLOCK_RGB", "block_at", "block_mask", "block_render_check",
    "replay_mismatch", "wrap_angle",
]


def bench_pool(n: int = 192, horizon: int = 25, workers: tuple[int, ...] = (1, 2), repeats: int = 2,
               size: int = 64, seed: int = 0) -> dict[str, Any]:
    """Rollout throughput (env steps/s) of :class:`PushTRolloutPool` per frames mode and worker count.

    Candidates are random targets held 5 steps round a start where the pusher is near the
    block (so many rollouts touch it); best of ``repeats`` after one warm-up call.
    """
    import time

    rng = np.random.default_rng(seed)
    state = np.array([200.0, 250.0, 256.0, 256.0, 0.3])
    waypoints = rng.uniform(100.0, 412.0, size=(n, -(-horizon // 5), 2))
    actions = np.repeat(waypoints, 5, axis=1)[:, :horizon]
    figures: dict[str, Any] = {"n": n, "horizon": horizon, "size": size, "cpus": os.cpu_count()}
    for w in workers:
        with PushTRolloutPool(size, workers=w) as pool:
            pool.rollout(state, actions[: max(w, 1)], frames="last")  # warm-up: workers started
            for mode in ("none", "last", "all"):
                best = math.inf
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    pool.rollout(state, actions, frames=mode)
                    best = min(best, time.perf_counter() - t0)
                figures[f"steps_per_s_{mode}_w{w}"] = round(n * horizon / best, 1)
                figures[f"ms_per_query_{mode}_w{w}"] = round(best * 1000, 1)
    return figures


if __name__ == "__main__":  # python -m crcm_robotics.data.pusht_sim [N] [HZ] [WORKERS,...]: one JSON line
    import json
    import sys

    args = sys.argv[1:]
    print(json.dumps(bench_pool(
        n=int(args[0]) if args else 192, horizon=int(args[1]) if len(args) > 1 else 25,
        workers=tuple(int(w) for w in args[2].split(",")) if len(args) > 2 else (1, 2),
    )))
