"""Meta-World (Sawyer arm, MuJoCo) trajectories at camera resolution: ``crcm data metaworld``.

A fixed camera frames the arm, the object and the goal. It is Meta-World's
``corner2`` camera moved to a look-at pose (``CAMERA_POS`` → ``CAMERA_TARGET``,
world z up): ``corner2`` itself renders upside down and frames the table
rather than the workspace. Shadows and reflections are switched off: they
cost 3-5x the render time under OSMesa and carry nothing a planner needs.

Behaviour is Meta-World's bundled scripted policy for the task, with per-episode
Gaussian action noise, interrupted by exploration segments (the hand goes to
a random end-effector target, the gripper toggles now and then), so the data
covers what a planner will propose, not only expert motion.

Recorded per step ``i`` (DESIGN §2: ``frame[i+1]`` results from ``action[i]``
applied at ``frame[i]``):

- ``frames``: RGB uint8 [size, size, 3];
- ``action``: the 4-D command the env gets, in [-1, 1]: end-effector delta
  x, y, z (× 1 cm per step, Meta-World's ``action_scale``) and gripper effort
  (+1 closes);
- ``state``: ``STATE_NAMES``: hand position, gripper opening (0..1), object
  position and quaternion (w, x, y, z), goal position, and ``success``
  (Meta-World's ``info["success"]`` at this frame, 0 or 1) as the last column;
- ``timestamp``: i · env.dt (80 Hz: 5 MuJoCo steps of 2.5 ms per env step).

Generation is deterministic for a seed whatever the number of workers:
episode ``e`` seeds its env and policy from (seed, e), MuJoCo's data is reset
before each episode (no solver warm start leaks from the previous one), and
episodes are written in order.

Rendering backend: ``MUJOCO_GL`` as set, else ``egl`` when an NVIDIA device
is present and ``osmesa`` otherwise (Debian ``libosmesa6``).
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crcm_robotics.data.parallel import ordered_results
from crcm_robotics.data.schema import StoreError

# task -> the bundled scripted policy's class name in metaworld.policies
TASK_POLICIES: dict[str, str] = {
    "push-v3": "SawyerPushV3Policy",
    "button-press-v3": "SawyerButtonPressV3Policy",
    "drawer-open-v3": "SawyerDrawerOpenV3Policy",
}
# tasks whose observation gives the object quaternion scalar-last (scipy's as_quat), not MuJoCo's w, x, y, z
QUAT_SCALAR_LAST = frozenset({"push-v3"})
CAMERA = "corner2"  # the model camera we re-pose (every Meta-World scene has it)
CAMERA_POS = (1.0, 0.2, 0.85)  # metres, world frame (the arm's base is near the origin, the table along +y)
CAMERA_TARGET = (-0.05, 0.68, 0.15)
CAMERA_FOVY = 50.0  # degrees
STORE_CAMERA = "front"  # data/frames/<STORE_CAMERA>
MIN_SIZE, MAX_SIZE = 16, 480  # MuJoCo's default offscreen buffer is 640x480
MAX_PATH_LENGTH = 500  # Meta-World truncates episodes here
STATE_NAMES = (
    "hand_x", "hand_y", "hand_z", "gripper_open",
    "obj_x", "obj_y", "obj_z", "obj_qw", "obj_qx", "obj_qy", "obj_qz",
    "goal_x", "goal_y", "goal_z", "success",
)
ACTION_NAMES = ("dx", "dy", "dz", "grip")
SUCCESS_COLUMN = len(STATE_NAMES) - 1
# random end-effector targets of exploration segments (metres; inside every task's hand limits)
EXPLORE_LOW = np.array([-0.25, 0.45, 0.06])
EXPLORE_HIGH = np.array([0.25, 0.85, 0.30])


@dataclass(frozen=True)
class BehaviourConfig:
    """How far the recorded behaviour strays from the scripted expert (all per step unless said)."""

    noise_min: float = 0.05  # per-episode std of Gaussian action noise, drawn from [noise_min, noise_max]
    noise_max: float = 0.3
    explore_prob: float = 0.015  # chance per expert step that an exploration segment starts (~20% of steps)
    explore_min_steps: int = 8
    explore_max_steps: int = 30
    grip_toggle_prob: float = 0.1  # chance per exploration step that the gripper command flips


@dataclass(frozen=True)
class EpisodeData:
    frames: np.ndarray  # uint8 [T, H, W, 3]
    action: np.ndarray  # float32 [T, 4]
    state: np.ndarray  # float32 [T, len(STATE_NAMES)]
    explore_steps: int  # steps spent in exploration segments


def choose_gl_backend() -> str:
    """Set ``MUJOCO_GL`` (before mujoco is imported) unless the user did; returns the backend in force."""
    if not os.environ.get("MUJOCO_GL"):
        nvidia = os.path.exists("/dev/nvidiactl") or os.path.exists("/dev/nvidia0")
        os.environ["MUJOCO_GL"] = "egl" if nvidia else "osmesa"
    if os.environ["MUJOCO_GL"] == "egl":
        os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    elif os.environ["MUJOCO_GL"] == "osmesa":
        os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
    return os.environ["MUJOCO_GL"]


def check_task(task: str) -> None:
    if task not in TASK_POLICIES:
        raise StoreError(f"unknown Meta-World task {task!r}; expected one of {', '.join(TASK_POLICIES)}")


def check_size(size: int) -> None:
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise StoreError(f"size must be in [{MIN_SIZE}, {MAX_SIZE}] pixels, got {size}")


def episode_seed(seed: int, episode: int) -> int:
    return int(np.random.SeedSequence([seed, episode]).generate_state(1)[0])


def lookat_quat(pos: np.ndarray, target: np.ndarray) -> np.ndarray:
    """MuJoCo camera quaternion (w, x, y, z) looking from ``pos`` at ``target`` with world z up.

    A MuJoCo camera looks along its frame's -z with +y up, so the frame's axes are
    (right, up, -forward).
    """
    import mujoco

    forward = (target - pos) / np.linalg.norm(target - pos)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.stack([right, up, -forward], axis=1).ravel())
    return quat


class ArmScene:
    """One Meta-World env of ``task`` with its own offscreen renderer at ``size``×``size``."""

    def __init__(self, task: str, size: int):
        check_task(task)
        check_size(size)
        choose_gl_backend()
        try:
            import mujoco
            from metaworld import policies
            from metaworld.env_dict import ALL_V3_ENVIRONMENTS
        except ImportError as exc:
            raise ImportError(
                "Meta-World generation needs the metaworld extra: pip install 'crcm-robotics[metaworld]'"
            ) from exc
        self.task, self.size = task, size
        env = ALL_V3_ENVIRONMENTS[task]()
        # what Meta-World's goal-observable constructor does, with reset positions drawn from env.np_random
        env._partially_observable = False
        env._freeze_rand_vec = False
        env.seeded_rand_vec = True
        env._set_task_called = True
        del env.sawyer_observation_space  # cached for the partially observable case
        self.env = env
        self.policy = getattr(policies, TASK_POLICIES[task])()
        model = env.model
        cam = model.camera(CAMERA).id
        model.cam_pos[cam] = CAMERA_POS
        model.cam_quat[cam] = lookat_quat(np.array(CAMERA_POS), np.array(CAMERA_TARGET))
        model.cam_fovy[cam] = CAMERA_FOVY
        self.camera_id = cam
        try:
            self.renderer = mujoco.Renderer(model, height=size, width=size)
        except Exception as exc:  # mujoco.FatalError and friends: no usable offscreen GL
            raise RuntimeError(
                f"MuJoCo could not render offscreen with MUJOCO_GL={os.environ.get('MUJOCO_GL')}: install "
                "Debian's libosmesa6 (CPU) or use MUJOCO_GL=egl on a GPU, and set MUJOCO_GL before mujoco is "
                "first imported"
            ) from exc
        self.renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        self.renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        self._mujoco = mujoco

    @property
    def dt(self) -> float:
        return float(self.env.dt)

    def reset(self, seed: int) -> np.ndarray:
        """Fresh MuJoCo data, object/goal placed from ``seed``; returns the 39-D observation."""
        self._mujoco.mj_resetData(self.env.model, self.env.data)
        self.env.seed(seed)
        obs, _ = self.env.reset()
        return obs

    def render(self) -> np.ndarray:
        self.renderer.update_scene(self.env.data, camera=self.camera_id)
        return self.renderer.render()

    def success(self, obs: np.ndarray, action: np.ndarray) -> float:
        """Meta-World's ``success`` of the current configuration (as ``info`` reports it after a step)."""
        _, info = self.env.evaluate_state(obs, action)
        return float(info["success"])

    def expert_action(self, obs: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():  # the policies warn whenever their P-gain saturates
            warnings.simplefilter("ignore")
            return np.asarray(self.policy.get_action(obs), dtype=np.float64)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        obs, _, _, _, info = self.env.step(action)
        return obs, info


def state_of(task: str, obs: np.ndarray, success: float) -> np.ndarray:
    """``STATE_NAMES`` from a 39-D goal-observable observation (first object; quaternion made w, x, y, z)."""
    quat = obs[7:11]
    if task in QUAT_SCALAR_LAST:
        quat = np.roll(quat, 1)
    return np.concatenate([obs[0:4], obs[4:7], quat, obs[36:39], [success]]).astype(np.float32)


class ExploringExpert:
    """The scripted expert with action noise, interrupted by exploration segments (module docstring)."""

    def __init__(self, scene: ArmScene, rng: np.random.Generator, cfg: BehaviourConfig):
        self.scene, self.rng, self.cfg = scene, rng, cfg
        self.noise = float(rng.uniform(cfg.noise_min, cfg.noise_max))
        self.explore_left = 0
        self.target = np.zeros(3)
        self.grip = -1.0

    def __call__(self, obs: np.ndarray) -> tuple[np.ndarray, bool]:
        """The 4-D action for ``obs`` and whether it came from an exploration segment."""
        cfg, rng = self.cfg, self.rng
        if self.explore_left == 0 and rng.random() < cfg.explore_prob:
            self.explore_left = int(rng.integers(cfg.explore_min_steps, cfg.explore_max_steps + 1))
            self.target = rng.uniform(EXPLORE_LOW, EXPLORE_HIGH)
            self.grip = float(rng.choice([-1.0, 1.0]))
        exploring = self.explore_left > 0
        if exploring:
            self.explore_left -= 1
            if rng.random() < cfg.grip_toggle_prob:
                self.grip = -self.grip
            action = np.concatenate([10.0 * (self.target - obs[:3]), [self.grip]])
        else:
            action = self.scene.expert_action(obs)
        action = action + rng.normal(0.0, self.noise, size=4)
        return np.clip(action, -1.0, 1.0).astype(np.float32), exploring


_WORKER_SCENE: ArmScene | None = None
# Every scene this process made, kept alive: freeing a MuJoCo renderer under OSMesa leaves the process's other
# renderers drawing garbage (measured: a 64 px scene rendered noise after a 32 px one was collected). Idle ones
# are handed out again by ``acquire_scene``.
_ALL_SCENES: list[ArmScene] = []
_IDLE_SCENES: list[ArmScene] = []


def acquire_scene(task: str, size: int) -> ArmScene:
    """A scene of ``task`` at ``size`` for exclusive use until :func:`release_scene` (reused, never freed)."""
    for i, scene in enumerate(_IDLE_SCENES):
        if (scene.task, scene.size) == (task, size):
            return _IDLE_SCENES.pop(i)
    scene = ArmScene(task, size)
    _ALL_SCENES.append(scene)
    return scene


def release_scene(scene: ArmScene) -> None:
    if scene not in _IDLE_SCENES:
        _IDLE_SCENES.append(scene)


def _worker_scene(task: str, size: int) -> ArmScene:
    global _WORKER_SCENE
    if _WORKER_SCENE is None or (_WORKER_SCENE.task, _WORKER_SCENE.size) != (task, size):
        if _WORKER_SCENE is not None:
            release_scene(_WORKER_SCENE)
        _WORKER_SCENE = acquire_scene(task, size)
    return _WORKER_SCENE


def collect_episode(job: tuple[str, int, int, int, int, int, BehaviourConfig]) -> EpisodeData:
    """Roll out one episode; ``job = (task, seed, episode, size, min_steps, max_steps, behaviour)``."""
    task, seed, episode, size, min_steps, max_steps, behaviour = job
    rng = np.random.default_rng(episode_seed(seed, episode))
    scene = _worker_scene(task, size)
    obs = scene.reset(int(rng.integers(0, 2**31 - 1)))
    policy = ExploringExpert(scene, rng, behaviour)
    n = int(rng.integers(min_steps, max_steps + 1))
    frames = np.empty((n, size, size, 3), dtype=np.uint8)
    action = np.empty((n, 4), dtype=np.float32)
    state = np.empty((n, len(STATE_NAMES)), dtype=np.float32)
    success = scene.success(obs, np.zeros(4, dtype=np.float32))
    explore_steps = 0
    for i in range(n):
        frames[i] = scene.render()
        state[i] = state_of(task, obs, success)
        action[i], exploring = policy(obs)
        explore_steps += int(exploring)
        obs, info = scene.step(action[i])
        success = float(info["success"])
    return EpisodeData(frames, action, state, explore_steps)


def generate_metaworld(
    out: str | Path,
    episodes: int,
    task: str = "push-v3",
    size: int = 128,
    seed: int = 0,
    workers: int = 0,
    min_steps: int = 100,
    max_steps: int = 150,
    behaviour: BehaviourConfig | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Write ``episodes`` episodes of ``task`` to a new store at ``out``; returns timing figures."""
    from crcm_robotics.progress import progress as progress_bar

    check_task(task)
    check_size(size)
    if episodes < 1:
        raise StoreError(f"episodes must be ≥ 1, got {episodes}")
    if not 2 <= min_steps <= max_steps <= MAX_PATH_LENGTH:
        raise StoreError(f"need 2 ≤ min_steps ≤ max_steps ≤ {MAX_PATH_LENGTH}, got {min_steps}, {max_steps}")
    behaviour = behaviour or BehaviourConfig()
    backend = choose_gl_backend()  # before any worker starts: spawned workers inherit the environment
    workers = min(workers or min(os.cpu_count() or 1, 16), episodes)
    scene = _worker_scene(task, size)  # missing packages fail here, not in a worker; reused when workers == 1
    writer = _create_store(out, task, size, seed, scene.dt, backend, behaviour, overwrite)
    jobs = [(task, seed, e, size, min_steps, max_steps, behaviour) for e in range(episodes)]
    t0 = time.perf_counter()
    frames = explore = successes = 0
    bar = progress_bar(total=episodes, desc=f"Meta-World {task} → {out}", unit="ep", enabled=progress)
    try:
        with ordered_results(collect_episode, jobs, workers) as results:
            for ep in results:
                timestamp = np.arange(len(ep.action), dtype=np.float64) * scene.dt
                writer.append_episode(ep.frames, ep.action, ep.state, timestamp)
                frames += len(ep.action)
                explore += ep.explore_steps
                successes += int(ep.state[:, SUCCESS_COLUMN].max() > 0)
                bar.update(1)
    finally:
        bar.close()
    writer.write_stats()
    seconds = time.perf_counter() - t0
    return {
        "task": task,
        "episodes": episodes,
        "frames": frames,
        "seconds": round(seconds, 2),
        "steps_per_s": round(frames / seconds, 1),
        "explore_fraction": round(explore / max(frames, 1), 3),
        "episodes_with_success": successes,
        "workers": workers,
        "gl": backend,
    }


def _create_store(out: str | Path, task: str, size: int, seed: int, dt: float, backend: str,
                  behaviour: BehaviourConfig, overwrite: bool):
    from dataclasses import asdict

    from crcm_robotics.data.store import TrajectoryWriter

    return TrajectoryWriter.create(
        out,
        image_shape=(size, size, 3),
        action_dim=4,
        state_dim=len(STATE_NAMES),
        cameras=(STORE_CAMERA,),
        fps=1.0 / dt,
        action_names=ACTION_NAMES,
        action_units="[-1, 1]; dx, dy, dz x 1 cm per step (end-effector delta), grip effort (+1 closes)",
        state_names=STATE_NAMES,
        state_units="metres; gripper_open 0..1; quaternion w, x, y, z; "
                    "success 0/1 (Meta-World info['success'])",
        source=f"Meta-World {task} (metaworld 3.1.1, MuJoCo), scripted policy + exploration, seed={seed}",
        extra_attrs={"metaworld": {
            "task": task, "size": size, "seed": seed, "gl": backend, "success_column": SUCCESS_COLUMN,
            "camera": {"pos": list(CAMERA_POS), "target": list(CAMERA_TARGET), "fovy": CAMERA_FOVY},
            "behaviour": asdict(behaviour),
        }},
        overwrite=overwrite,
    )
