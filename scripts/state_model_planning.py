"""PushT: how far the benchmark's planner gets with a learnt *state* model in place of the pixel world model.

The pixel models' planning misses are traced to the pushed block (docs/results.md, Planning), and an MLP
given exact states leaves a pushed block 15.6 units off one model frame ahead
(``scripts/block_predictability.py``). This asks what such a model is worth in the closed loop: an MLP
trained on the same store predicts the pusher's and the block's state at every 5th env step of a candidate
from what the pixel model gets (the states 5 env steps back and now, the 5 actions between them and the
candidate's actions). The planner, its settings and the goals are ``crcm bench plan``'s; candidates are ranked
by the predicted final state's distance to the goal state in the success rule's units (the ``oracle_state``
arm's cost). Arms, on the same goals in real gym-pusht:

- ``oracle_state``: the simulator's true states, the planner's ceiling with this cost;
- ``state_mlp``: the learnt model (``--obs-noise U``: its context read to ±U env units, as a 64×64 frame
  reads it). ``--model frames`` is the MLP above, every future frame at once; ``--model step`` a residual
  MLP for ``--step-size`` (1 or 5) env steps that reads contact in the block's frame, rolled out;
- ``oracle_<kind><size>`` (``--block-error KIND:SIZE[:ANGLE_SIZE]``, repeatable): the simulator with its pushed
  block made wrong by a set rule and amount (:class:`BlockErrorOracle`: damped, noisy, or a fixed function of
  the actions), so that success can be read against the block error a model makes on held-out pushes: how
  accurate the block must be for the planner to reach a success rate.

One JSON line: the model's held-out errors (pusher, and the block split by whether it moved) and per arm the
benchmark's figures; per-goal lines and the report under ``--out``. ``--save DIR`` keeps a fitted step model
and ``--load DIR`` plans with it again (e.g. under other planner settings: ``--planner``, ``--samples``,
``--horizon``, ``--hold``, ``--mode``). ``--train-episodes N`` fits on N of the training episodes and
``--extra-store`` adds every episode of stores of other seeds: the learnt model's data curve. ``--ensemble K``
fits K step models (seeds ``--seed`` .. ``--seed`` + K − 1; member 0 is the single model of ``--seed``) and
ranks candidates by the mean of their members' costs, plus ``--risk`` standard deviations (PETS-style: a
planner that no one member's error can steer); ``--save``/``--load`` keep them under ``DIR/member<i>``.
``--history H`` (step models) reads the last H states, ``--step-size`` env steps apart, instead of two: the
pixel model's context spans 4 frames, the step model's two states only a speed. ``--motion-sampling SHARE``
draws that share of each step model's batch in proportion to how far the block moves in the step (the teacher's
``data.motion_sampling``); the held-out errors include the last frame's block by how far it truly moved
(``last_frame_by_move``). ``--collect N --collect-out STORE`` then plans N goals of the training episodes with
the learnt model and writes every executed episode to a new PushT store: the planner's own visits (after the
few logged steps its context needs), which a model fitted after it reads with ``--extra-store`` (DAgger-style
aggregation, round after round; refused where the episodes came from ones held out in the later fit's split).

    python scripts/state_model_planning.py STORE [--goals-from CKPT] [--goals 50] [--steps 4000]
        [--arms oracle_state state_mlp] [--model frames|step] [--step-size 1|5] [--replan-every 10]
        [--obs-noise 0] [--horizon 25] [--train-episodes N] [--extra-store STORE ...] [--ensemble K]
        [--risk 0] [--motion-sampling SHARE] [--save DIR | --load DIR] [--collect N --collect-out STORE]
        [--out DIR]
    python scripts/state_model_planning.py STORE --goals-from CKPT --arms --block-error damp:0.5 \
        [--block-error noise:1 ...] [--out DIR]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from block_predictability import SKIP, UNIT, decode, features, fit, mlp, noisy, scores, targets, windows

from crcm_robotics.config import ConfigError, DataConfig, PlanBenchConfig, PlannerConfig
from crcm_robotics.data.dataset import split_episodes
from crcm_robotics.data.pusht import ACTION_NAMES, STATE_NAMES
from crcm_robotics.data.pusht_sim import block_errors, block_moved, wrap_angle
from crcm_robotics.data.store import TrajectoryStore, TrajectoryWriter
from crcm_robotics.eval.plan_bench import (Arm, _bounds, _write_report, check_planner, domain_of,
                                           history_needed, run_episode, summarize, with_domain_defaults)
from crcm_robotics.plan.planners import PlanError

FRAMES = 5  # model frames per candidate at most: the planner's default 25-step horizon at 5 env steps each
ARMS = ("oracle_state", "state_mlp")
BLOCK_ERRORS = ("damp", "noise", "fixed")  # --block-error kinds (BlockErrorOracle)
MOVE_BINS = (0.0, 1.0, 20.0, 40.0, 80.0, math.inf)  # env units the block moves over a held-out window


class StateModel:
    """An MLP from (context states [N, 2, 5], actions [N, (1 + FRAMES)·SKIP, 2]) to states [N, FRAMES, 5]."""

    def __init__(self, net: torch.nn.Module):
        self.net = net

    @torch.no_grad()
    def predict(self, ctx: np.ndarray, actions: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(features(ctx, actions), dtype=torch.float32)
        return decode(ctx, self.net(x).numpy(), FRAMES, first=0)


def _rot(xy: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """``xy`` [..., 2] turned by ``angle`` [...] (rad)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([c * xy[..., 0] - s * xy[..., 1], s * xy[..., 0] + c * xy[..., 1]], axis=-1)


def _moves(earlier: np.ndarray, later: np.ndarray, th: np.ndarray) -> list[np.ndarray]:
    """Both bodies' moves from ``earlier`` to ``later`` [N, 5]: the pusher's, the block's in the frame of the
    block's angle ``th`` now, and the block's turn."""
    return [(later[:, 0:2] - earlier[:, 0:2]) / 10.0, _rot(later[:, 2:4] - earlier[:, 2:4], -th) / 10.0,
            wrap_angle(later[:, 4] - earlier[:, 4])[:, None] * 10.0]


def step_features(prev: np.ndarray, cur: np.ndarray, actions: np.ndarray,
                  older: np.ndarray | None = None) -> np.ndarray:
    """One model step's inputs: where the pusher and each of its K commanded targets [N, K, 2] are in the
    block's frame (where contact happens), the targets from the pusher, both bodies' moves since ``prev``
    (K env steps back: their speeds), the angle and where they are in the workspace; with ``older`` states
    [N, H − 2, 5] (oldest first, each K env steps before the next, the last K before ``prev``), the moves between
    each of them and the next too, appended (``--history H``: more of the past than two states show)."""
    th = cur[:, 4]
    block = cur[:, 2:4]
    n = len(cur)
    past = [] if older is None else [*np.moveaxis(older, 1, 0), prev]  # no older states: no pair
    return np.concatenate([
        _rot(cur[:, 0:2] - block, -th) / 100.0,
        _rot(actions - block[:, None], -th[:, None]).reshape(n, -1) / 100.0,
        (actions - cur[:, None, 0:2]).reshape(n, -1) / 100.0, *_moves(prev, cur, th),
        np.sin(th)[:, None], np.cos(th)[:, None], block / UNIT, cur[:, 0:2] / UNIT,
        *(m for a, b in itertools.pairwise(past) for m in _moves(a, b, th))], axis=1)


def step_targets(cur: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    """One model step's change [N, 5]: the pusher's move, the block's move in its own frame, its turn."""
    th = cur[:, 4]
    turn = wrap_angle(nxt[:, 4] - cur[:, 4])
    return np.concatenate([(nxt[:, 0:2] - cur[:, 0:2]) / 10.0, _rot(nxt[:, 2:4] - cur[:, 2:4], -th) / 10.0,
                           turn[:, None] * 10.0], axis=1)


def apply_step(cur: np.ndarray, change: np.ndarray) -> np.ndarray:
    """The next state [N, 5] from :func:`step_targets`' change."""
    nxt = cur.copy()
    nxt[:, 0:2] += change[:, 0:2] * 10.0
    nxt[:, 2:4] += _rot(change[:, 2:4] * 10.0, cur[:, 4])
    nxt[:, 4] += change[:, 4] / 10.0
    return nxt


Sources = list[tuple[TrajectoryStore, list[int]]]  # the training episodes, store by store


def step_pairs(sources: Sources, k: int, history: int = 2) -> tuple[np.ndarray, ...]:
    """Every (the ``history`` − 1 states k, 2k, … env steps back [n, history − 1, 5], oldest first; state now;
    the k actions from now [k, 2]; state k steps on) of every source's episodes."""
    past, cur, act, nxt = [], [], [], []
    back = k * np.arange(history - 1, 0, -1)
    for store, episodes in sources:
        for e in episodes:
            ep = store.episode(e)
            state, action = ep["state"].astype(np.float64), ep["action"].astype(np.float64)
            t = np.arange(k * (history - 1), len(state) - k)
            past.append(state[t[:, None] - back])
            cur.append(state[t])
            act.append(action[t[:, None] + np.arange(k)])
            nxt.append(state[t + k])
    return tuple(np.concatenate(x) for x in (past, cur, act, nxt))


class StepModel:
    """A residual MLP for K env steps, rolled out step by step: (the last H states, K env steps apart, now
    last [N, ≥ H, 5], actions [N, SKIP + L, 2] from SKIP steps back) to the states every SKIP steps
    [N, L / SKIP, 5] (the same call as :class:`StateModel`, which predicts every model frame at once). K = 1:
    one env step at a time; K = SKIP: the pixel world model's frame skip. H (``history``) = 2: a state back
    and now, the speeds; more reads the moves before them too."""

    def __init__(self, net: torch.nn.Module, y_mean: np.ndarray, y_std: np.ndarray, k: int, history: int = 2):
        if SKIP % k:
            raise ValueError(f"a step of {k} env steps must divide the model frame's {SKIP}")
        if history < 2:
            raise ValueError(f"a step model reads ≥ 2 states (a speed), got history {history}")
        self.net, self.y_mean, self.y_std, self.k, self.history = net, y_mean, y_std, k, history

    @torch.no_grad()
    def rollout(self, ctx: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """States [N, L / K, 5] after each K of the actions [N, L, 2], from the last H states ``ctx``
        [N, H, 5] (K env steps apart, now last)."""
        window, out = ctx[:, -self.history:], []
        for j in range(0, actions.shape[1], self.k):
            x = step_features(window[:, -2], window[:, -1], actions[:, j:j + self.k], window[:, :-2])
            change = self.net(torch.as_tensor(x, dtype=torch.float32)).numpy() * self.y_std + self.y_mean
            window = np.concatenate([window[:, 1:], apply_step(window[:, -1], change)[:, None]], axis=1)
            out.append(window[:, -1])
        return np.stack(out, axis=1)

    def predict(self, ctx: np.ndarray, actions: np.ndarray) -> np.ndarray:
        if ctx.shape[1] < self.history:
            raise ValueError(f"the step model reads {self.history} context states, got {ctx.shape[1]}")
        per_frame = SKIP // self.k
        return self.rollout(ctx, actions[:, SKIP:])[:, per_frame - 1::per_frame]


def save_step_model(model: StepModel, out: Path, meta: dict[str, Any]) -> None:
    """The step model's weights (safetensors) and what rebuilds it (JSON) under ``out``."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    weights = {k: v.contiguous() for k, v in model.net.state_dict().items()}
    save_file(weights, str(out / "step_model.safetensors"))
    first, last = model.net[0], model.net[-1]
    (out / "step_model.json").write_text(json.dumps(meta | {
        "k": model.k, "history": model.history, "d_in": first.in_features, "d_out": last.out_features,
        "width": first.out_features,
        "y_mean": model.y_mean.tolist(), "y_std": model.y_std.tolist()}))


def member_dirs(path: Path, members: int) -> list[Path]:
    """Where ``--save``/``--load`` keep an ensemble's members: ``path`` itself for one model, else
    ``path/member<i>``."""
    return [path] if members == 1 else [path / f"member{i}" for i in range(members)]


def load_step_model(path: Path) -> tuple[StepModel, dict[str, Any]]:
    """A step model saved by :func:`save_step_model` (no pickle), and its saved description."""
    from safetensors.torch import load_file

    meta_file, weights = path / "step_model.json", path / "step_model.safetensors"
    if not (meta_file.is_file() and weights.is_file()):
        raise SystemExit(f"--load {path}: step_model.json and step_model.safetensors expected there")
    meta = json.loads(meta_file.read_text())
    net = mlp(meta["d_in"], meta["d_out"], meta["width"])
    net.load_state_dict(load_file(str(weights)))
    model = StepModel(net.eval(), np.asarray(meta["y_mean"]), np.asarray(meta["y_std"]), meta["k"],
                      meta.get("history", 2))  # models kept before --history read two states
    return model, meta


class Ensemble:
    """Step models fitted alike at different seeds, planned with together (as PETS plans with an ensemble):
    a candidate's cost is the mean over members of the cost of each member's own rollout, plus ``risk`` ×
    their standard deviation. Where the members disagree about a candidate (contact they learnt
    differently), the mean stops any one member's error from picking it, and ``risk`` > 0 avoids it."""

    def __init__(self, members: list[StepModel], risk: float = 0.0):
        if not members:
            raise ValueError("an ensemble needs at least one member")
        if len({(m.k, m.history) for m in members}) > 1:
            raise ValueError("an ensemble's members must step alike (one step size and history)")
        self.members, self.risk, self.k, self.history = members, risk, members[0].k, members[0].history

    def predict(self, ctx: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Every member's states [K, N, FRAMES, 5]."""
        return np.stack([m.predict(ctx, actions) for m in self.members])

    def combine(self, costs: torch.Tensor) -> torch.Tensor:
        """Members' costs [K, N] -> the candidates' [N]."""
        return costs.mean(0) + self.risk * costs.std(0, unbiased=False)  # one member: no spread


def block_travel(cur: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    """How far the block moves over each step pair (env units): the weight ``--motion-sampling`` draws by."""
    return np.linalg.norm(nxt[:, 2:4] - cur[:, 2:4], axis=1)


def fit_step_model(sources: Sources, k: int, steps: int, seed: int, width: int, units: float,
                   rng: np.random.Generator, motion_share: float = 0.0,
                   history: int = 2) -> tuple[StepModel, int]:
    """The step model of K env steps reading ``history`` states fitted on the sources' episodes, and how many
    steps it saw; ``motion_share`` of each batch drawn in proportion to how far the block moves in the step."""
    past, cur, act, nxt = step_pairs(sources, k, history)
    y = step_targets(cur, nxt)  # the change is the true one; only what the model reads is noisy
    travel = block_travel(cur, nxt) if motion_share else None  # the true move, before the reading noise
    past, cur = noisy(past, units, rng), noisy(cur[:, None], units, rng)[:, 0]
    y_mean, y_std = y.mean(0), y.std(0) + 1e-6
    x = step_features(past[:, -1], cur, act, past[:, :-1])
    net = fit(x, (y - y_mean) / y_std, steps, seed, width,
              weights=None if travel is None else travel / travel.sum(), share=motion_share)
    return StepModel(net, y_mean, y_std, k, history), len(cur)


class RecordingSim:
    """The benchmark's simulator, keeping the states an episode passes through: the state model's context
    needs the ones up to ``back`` env steps back (SKIP; more with ``--history``). Before each goal,
    :meth:`begin` seeds it with the logged states before the start (and their actions and frames, so that
    :meth:`episode` can hand the whole episode to a store: ``--collect``)."""

    def __init__(self, sim: Any, store: TrajectoryStore, back: int = SKIP):
        self.sim, self.store, self.states, self.back = sim, store, [], back
        self.actions: list[np.ndarray] = []
        self.frames: list[np.ndarray | None] = []

    def begin(self, pair: Any) -> None:
        s, _ = self.store.episode_bounds(pair.episode)
        i = s + pair.start
        if pair.start < self.back:
            raise ValueError(f"goal at episode {pair.episode}, frame {pair.start}: the state model needs the "
                             f"state {self.back} env steps before the start")
        self.states = list(np.asarray(self.store.state(i - self.back, i + 1), dtype=np.float64))
        self.actions = list(np.asarray(self.store.action(i - self.back, i), dtype=np.float32))
        self.frames = list(self.store.frames(i - self.back, i + 1))

    def reset_to(self, state: np.ndarray, render: bool = True) -> np.ndarray:
        return self.sim.reset_to(state, render=render)

    def step(self, action: np.ndarray, render: bool = True) -> tuple[np.ndarray, np.ndarray]:
        frame, state = self.sim.step(action, render=render)
        self.states.append(np.asarray(state, dtype=np.float64))
        self.actions.append(np.asarray(action, dtype=np.float32))
        self.frames.append(frame if render else None)  # a store needs every frame: episode() refuses gaps
        return frame, state

    def episode(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The episode since :meth:`begin` as a store holds one (frames uint8, actions, states; the state and
        frame at step i are before action i): the last state, which no action leaves, is dropped. The first
        ``back`` steps are the logged ones; at step ``back`` the simulator was reset to the logged start state
        with the bodies at rest (velocities are not logged), as the benchmark starts every goal."""
        n = len(self.actions)
        if len(self.states) != n + 1 or len(self.frames) != n + 1:
            raise RuntimeError("RecordingSim: states, frames and actions out of step (begin not called?)")
        if any(f is None for f in self.frames):
            raise RuntimeError("RecordingSim: a step ran without rendering; a stored episode needs every "
                               "frame")
        return (np.stack(self.frames[:n]).astype(np.uint8), np.stack(self.actions).astype(np.float32),
                np.stack(self.states[:n]).astype(np.float32))

    def close(self) -> None:
        self.sim.close()


class StateModelArm(Arm):
    """The benchmark's arm with a state model: candidates scored on the predicted final state."""

    def __init__(self, name: str, model: StateModel | StepModel | Ensemble, recorder: RecordingSim,
                 obs_noise: float, **kw: Any):
        super().__init__(name, "state_mlp", **kw)
        self.model, self.recorder, self.obs_noise = model, recorder, obs_noise
        self.noise_rng = np.random.default_rng(self.cfg.seed)

    @property
    def frame_skip(self) -> int:
        return SKIP

    def scorer(self, state: np.ndarray, history: tuple[np.ndarray, np.ndarray], goal: np.ndarray,
               goal_state: np.ndarray) -> Callable[[torch.Tensor], torch.Tensor]:
        stepped = isinstance(self.model, (StepModel, Ensemble))
        back, states = (self.model.k, self.model.history) if stepped else (SKIP, 2)
        ctx = np.stack([self.recorder.states[-1 - j * back] for j in range(states - 1, -1, -1)])[None]
        if not np.allclose(ctx[0, -1], state, atol=1e-6):
            raise RuntimeError("the recorded state is not the simulator's: RecordingSim.begin was not called")
        ctx = noisy(ctx, self.obs_noise, self.noise_rng)
        before = np.asarray(history[1][-SKIP:], dtype=np.float64)  # the actions applied from SKIP steps back
        horizon = FRAMES * SKIP

        def score(actions: torch.Tensor) -> torch.Tensor:
            a = actions.detach().cpu().numpy().astype(np.float64)
            n, steps = a.shape[:2]
            pad = np.repeat(a[:, -1:], horizon - steps, axis=1)  # only frames up to `steps` are read
            acts = np.concatenate([np.broadcast_to(before, (n, SKIP, 2)), a, pad], axis=1)
            pred = self.model.predict(np.repeat(ctx, n, axis=0), acts)
            frames = math.ceil(steps / SKIP)
            if isinstance(self.model, Ensemble):
                costs = torch.stack([self.domain.state_cost(p[:, :frames], goal_state) for p in pred])
                return self.model.combine(costs).to(actions.device)
            return self.domain.state_cost(pred[:, :frames], goal_state).to(actions.device)

        return score


def parse_block_error(text: str) -> tuple[str, float, float]:
    """``KIND:SIZE[:ANGLE_SIZE]`` of ``--block-error`` (e.g. ``damp:0.5``, ``noise:0.5:2``), checked: the
    kind, the size of the position error and of the angle error (the same size unless given)."""
    kind, *sizes = text.split(":")
    try:
        values = [float(v) for v in sizes]
    except ValueError:
        values = []
    if (kind not in BLOCK_ERRORS or len(values) not in (1, 2)
            or not all(math.isfinite(v) and v >= 0 and (kind != "damp" or v <= 1) for v in values)):
        raise SystemExit(f"--block-error {text!r}: KIND:SIZE[:ANGLE_SIZE] expected, KIND one of {BLOCK_ERRORS}, "
                         "sizes ≥ 0 (fractions ≤ 1 for damp), e.g. damp:0.5, fixed:0.25 or noise:0.5:2")
    return kind, values[0], values[-1]


def block_error_arm_name(kind: str, size: float, angle_size: float) -> str:
    """``oracle_damp0.5``, or ``oracle_noise0.5_a2`` where the angle's size differs."""
    return f"oracle_{kind}{size:g}" + (f"_a{angle_size:g}" if angle_size != size else "")


class BlockErrorOracle(Arm):
    """The simulator as the model, its pushed block made wrong by a set amount: how much block error the
    benchmark's planner can take and still reach the goals. The pusher stays exact, as it nearly is in the
    pixel models (every miss of the strongest pixel runs is the block's). Each candidate's final block
    pose, relative to where the block is when the solve starts (its true move ``d`` and turn ``t``), is
    made wrong in one of three ways (a third field sizes the angle's error apart from the position's:
    ``noise:0.5:2`` is R = 0.5 in position and 2 in angle):

    - ``damp:A``: the model moves the block (1 − A) of the way: ``d`` and ``t`` scaled by 1 − A. A = 1 is
      copy-last's block (the pixel models' angle error is at or above copy-last's).
    - ``noise:R``: a Gaussian error of standard deviation R·|d| in position (R·|d|/√2 on each axis) and R·|t|
      in angle, drawn anew for every candidate: error the planner cannot steer by, as a model's noise.
    - ``fixed:R``: the same size, but a fixed smooth function of the candidate's actions within a solve
      (random projections of its waypoints, drawn anew at each replan): error a planner can exploit, as a
      learnt model's systematic error, where some action sequences look better than they are.

    The arm also keeps what it injected: the mean block error (units, degrees) over the scored candidates
    whose true block moved (``block_moved``'s rule), the quantity the pixel models are measured by."""

    def __init__(self, name: str, error: tuple[str, float, float], pool: Any, **kw: Any):
        super().__init__(name, "oracle_state", pool=pool, **kw)
        self.error, self.size, self.angle_size = error
        self.error_rng = np.random.default_rng([self.cfg.seed, 2])
        self.injected = np.zeros(3)  # sum of position error, angle error (deg), count: moved blocks
        # a candidate's env-step actions in units of their bounds: [-1, 1] over the action box
        self.mid = np.tile((self.high + self.low) / 2.0, self.cfg.horizon)
        self.half = np.tile((self.high - self.low) / 2.0, self.cfg.horizon)

    def projection(self, rng: np.random.Generator) -> np.ndarray:
        """The ``fixed`` rule's random projection [horizon · A, 3] of a candidate's actions (in units of their
        bounds): a uniform action in [-1, 1] has variance 1/3, so z has unit spread over the action box."""
        dims = len(self.mid)
        return rng.standard_normal((dims, 3)) * math.sqrt(3.0 / dims)

    def wrong(self, start: np.ndarray, final: np.ndarray, actions: np.ndarray,
              projection: np.ndarray | None, keep: bool = True) -> np.ndarray:
        """``final`` states [N, 5] with their block made wrong (see the class), from ``start`` [5] or [N, 5];
        ``actions`` [N, horizon, 2]. ``keep``: count the error in :meth:`injected_error`."""
        move = final[:, 2:4] - start[..., 2:4]
        turn = wrap_angle(final[:, 4] - start[..., 4])
        out = final.copy()
        if self.error == "damp":
            out[:, 2:4] = start[..., 2:4] + (1.0 - self.size) * move
            out[:, 4] = start[..., 4] + (1.0 - self.angle_size) * turn
        else:
            if self.error == "noise":
                z = self.error_rng.standard_normal((len(final), 3))
            else:  # fixed: the waypoints in units of their bounds, projected; ~unit spread over the box
                assert projection is not None
                a = (actions.reshape(len(actions), -1) - self.mid) / self.half
                z = a @ projection
            out[:, 2:4] += self.size * np.linalg.norm(move, axis=1, keepdims=True) * z[:, :2] / math.sqrt(2)
            out[:, 4] += self.angle_size * np.abs(turn) * z[:, 2]
        out[:, 4] = wrap_angle(out[:, 4])
        if keep:
            moved = block_moved(start, final)
            pos, deg = block_errors(out, final)
            self.injected += (pos[moved].sum(), deg[moved].sum(), moved.sum())
        return out

    def held_out_error(self, va: tuple[np.ndarray, np.ndarray, np.ndarray]) -> dict[str, Any]:
        """The error this arm's rule gives the logged pushes of held-out windows (``windows``: context
        states, actions from SKIP steps back, the true states every SKIP steps), scored as
        ``block_predictability.scores`` scores a model, so that it reads beside the pixel models' and the
        state models' moved-block errors (the mean over the frames where the true block moved)."""
        ctx, actions, true = va
        start = ctx[:, -1]
        candidate = actions[:, SKIP:SKIP + self.cfg.horizon]
        projection = self.projection(np.random.default_rng([self.cfg.seed, 3]))
        pred = np.stack([self.wrong(start, true[:, k], candidate, projection, keep=False)
                         for k in range(true.shape[1])], axis=1)
        both = scores(pred[..., 2:5], ctx, true)
        return {"this_rule": both["mlp"], "copy_last": both["copy_last"], "windows": len(ctx)}

    def injected_error(self) -> dict[str, Any]:
        """The mean injected block error over scored candidates whose block moved."""
        n = max(self.injected[2], 1.0)
        return {"kind": self.error, "size": self.size, "angle_size": self.angle_size,
                "moved_candidates": int(self.injected[2]),
                "position": round(float(self.injected[0] / n), 2),
                "angle_deg": round(float(self.injected[1] / n), 2)}

    def scorer(self, state: np.ndarray, history: tuple[np.ndarray, np.ndarray], goal: np.ndarray,
               goal_state: np.ndarray) -> Callable[[torch.Tensor], torch.Tensor]:
        start = np.asarray(state, dtype=np.float64)
        projection = self.projection(self.error_rng) if self.error == "fixed" else None

        def score(actions: torch.Tensor) -> torch.Tensor:
            a = actions.detach().cpu().numpy().astype(np.float64)
            states = np.array(self.pool.rollout(start, a, frames="none")[1], dtype=np.float64)
            full = a
            if self.error == "fixed" and a.shape[1] < self.cfg.horizon:  # the budget's end cut the candidate
                full = np.concatenate([a, np.repeat(a[:, -1:], self.cfg.horizon - a.shape[1], axis=1)], axis=1)
            states[:, -1] = self.wrong(start, states[:, -1], full, projection)
            return self.domain.state_cost(states, goal_state)

        return score


def held_out_errors(model: StateModel | StepModel, va: tuple[np.ndarray, np.ndarray, np.ndarray],
                    read: np.ndarray | None = None) -> dict[str, Any]:
    """The model on held-out windows: pusher error by frame, the block as block_predictability scores it.
    ``read``: the context as the model reads it (noisy); copy-last and the moved/still split use the true
    one."""
    pred = model.predict(va[0] if read is None else read, va[1])
    agent = np.linalg.norm(pred[..., :2] - va[2][..., :2], axis=-1)
    block = scores(pred[..., 2:5], va[0], va[2])
    # the last frame's block by how far the block truly moves over the window (the planner's goals move ~83)
    move = np.linalg.norm(va[2][:, -1, 2:4] - va[0][:, -1, 2:4], axis=1)
    which = np.digitize(move, MOVE_BINS) - 1
    final = block_errors(pred[:, -1], va[2][:, -1])[0]
    by_move = {"bins": [f"{lo:g}-{hi:g}" for lo, hi in itertools.pairwise(MOVE_BINS)],
               "windows": [int((which == b).sum()) for b in range(len(MOVE_BINS) - 1)],
               "position": [round(float(final[which == b].mean()), 2) if (which == b).any() else None
                            for b in range(len(MOVE_BINS) - 1)]}
    return {"pusher_by_frame": [round(float(v), 2) for v in agent.mean(0)],
            "block_mlp": block["mlp"] | {"last_frame_by_move": by_move}, "block_copy_last": block["copy_last"]}


def plan_goals(arm: Arm, pairs: list, recorder: RecordingSim, budget: int, lines: Path,
               after: Callable[[int, Any], None]) -> list:
    """Every goal of ``pairs`` planned in turn by ``arm`` in the recording simulator: each result as a JSON
    line in ``lines`` (written as it ends, so a cut run keeps the goals it finished), then
    ``after(g, result)`` while the recorder still holds that episode."""
    lines.write_text("")
    results = []
    for g, pair in enumerate(pairs):
        recorder.begin(pair)
        res, _ = run_episode(arm, pair, recorder, budget)
        results.append(res)
        with lines.open("a") as f:
            f.write(json.dumps(asdict(res)) + "\n")
        after(g, res)
    return results


def collect_episodes(args: argparse.Namespace, store: TrajectoryStore, train_eps: list[int],
                     bench: PlanBenchConfig, recorder: RecordingSim, model: StepModel | Ensemble, domain: Any,
                     common: dict[str, Any], context: int, goal_seed: int, out: Path) -> dict[str, Any]:
    """``--collect N``: the state model plans N goals drawn from the training episodes (with goal seed + 1),
    and every executed episode (its ``back`` logged steps, then the planner's) goes to a new PushT store at
    ``--collect-out``: data where this planner takes this model, for a model fitted after it
    (``--extra-store``, as DAgger aggregates a policy's own visits). The store's ``pusht`` attrs name the
    store, its content hash and the training episodes it came from, each stored episode's source (episode,
    start), the model and the planner; per-goal lines go to ``OUT/collect.goals.jsonl``. The goals are the
    same in every round of one goal seed: each round plans them with its own model."""
    t0 = time.time()
    goals = replace(bench, goals=args.collect, seed=goal_seed + 1)
    try:
        pairs = domain.goal_pairs(store, train_eps, goals, context, recorder.sim)
    except ValueError as exc:
        raise SystemExit(f"--collect {args.collect}: {exc}") from None
    source = str(Path(args.store).resolve())
    writer = TrajectoryWriter.create(
        args.collect_out, image_shape=store.image_shape, action_dim=store.action_dim,
        state_dim=store.state_dim, cameras=(store.attrs["cameras"][0],), fps=store.fps,
        action_names=ACTION_NAMES, action_units=store.attrs["action_units"], state_names=STATE_NAMES,
        state_units=store.attrs["state_units"],
        source=f"state_model_planning.py --collect: the planner's episodes on {source}'s training goals",
        extra_attrs={"pusht": {
            "size": store.attrs["pusht"]["size"], "workspace": store.attrs["pusht"]["workspace"],
            "behavior": "planner", "collected_from": source, "collected_from_hash": store.content_hash(),
            "training_episodes": [int(e) for e in train_eps], "goal_seed": goal_seed + 1,
            "sources": [[int(p.episode), int(p.start)] for p in pairs], "reset_at": recorder.back,
            "model": args.load or f"fitted here, seed {args.seed}", "planner": asdict(common["cfg"])}})
    arm = StateModelArm("state_mlp", model, recorder, args.obs_noise, **common)
    lines = out / "collect.goals.jsonl"
    held = steps = 0

    def stored(g: int, res: Any) -> None:  # each episode to the store as it ends
        nonlocal held, steps
        frames, actions, states = recorder.episode()
        writer.append_episode(frames, actions, states)
        held += int(res.success_end)
        steps += len(actions)
        if (g + 1) % 25 == 0 or g + 1 == len(pairs):
            print(f"[collect] {g + 1}/{len(pairs)} training goals planned, {held} held", flush=True)

    results = plan_goals(arm, pairs, recorder, bench.budget, lines, stored)
    writer.write_stats()
    return {"store": args.collect_out, "episodes": len(pairs), "steps": steps,
            "success_end_on_training_goals": round(held / len(results), 4), "goal_seed": goal_seed + 1,
            "goal_block_move_mean": round(float(np.mean([p.block_move for p in pairs])), 4),
            "goals": str(lines), "collect_s": round(time.time() - t0, 1)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")
    ap.add_argument("--goals-from", help="a checkpoint: its held-out episodes give the goals (its training "
                    "ones train the MLP) and its context sets where goals may start, as for its model arm")
    ap.add_argument("--goals", type=int, default=50)
    ap.add_argument("--arms", nargs="*", default=list(ARMS), choices=ARMS,
                    help="none (`--arms` alone): only the --block-error arms")
    ap.add_argument("--block-error", action="append", default=[], metavar="KIND:SIZE[:ANGLE_SIZE]",
                    help=f"one more arm: the simulator with its pushed block made wrong, KIND one of "
                    f"{BLOCK_ERRORS} (BlockErrorOracle), e.g. damp:0.5; repeatable")
    ap.add_argument("--model", choices=("frames", "step"), default="frames",
                    help="frames: an MLP for the states every 5 env steps at once; step: --step-size env "
                    "steps at a time, rolled out")
    ap.add_argument("--step-size", type=int, default=1, choices=(1, SKIP),
                    help="--model step: env steps per model step (and back to its earlier context state)")
    ap.add_argument("--history", type=int, default=2,
                    help="--model step: the states it reads, --step-size env steps apart, now last (2: a "
                    "speed; the pixel model's context spans 4 frames)")
    ap.add_argument("--steps", type=int, default=4000, help="MLP updates (batch 1024)")
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--obs-noise", type=float, default=0.0, help="± env units on the MLP's context states")
    ap.add_argument("--replan-every", type=int, default=10)
    ap.add_argument("--motion-sampling", type=float, default=0.0, metavar="SHARE",
                    help="--model step: the share of each batch drawn in proportion to how far the block "
                         "moves in the step (the teacher's data.motion_sampling), the rest uniformly")
    ap.add_argument("--planner", default="cem", help="cem | mppi | random (crcm_robotics.plan)")
    ap.add_argument("--hold", type=int, default=5, help="env steps each waypoint is held")
    ap.add_argument("--horizon", type=int, default=FRAMES * SKIP,
                    help=f"env steps each candidate looks ahead (a multiple of {SKIP}, at most "
                    f"{FRAMES * SKIP}); the cost reads the state where it ends")
    ap.add_argument("--mode", default="delta", help="delta | absolute waypoints")
    ap.add_argument("--train-episodes", type=int, default=0,
                    help="fit on this many of the split's training episodes (a fixed order: nested subsets)")
    ap.add_argument("--extra-store", action="append",
                    help="--model step: every episode of this PushT store (another seed: none held out) "
                         "trains the model too; repeatable")
    ap.add_argument("--save", help="--model step: keep the fitted model here (safetensors + JSON)")
    ap.add_argument("--load", help="plan with a step model kept by --save (same store and split) instead of "
                    "fitting one")
    ap.add_argument("--ensemble", type=int, default=1,
                    help="--model step: fit this many members (seeds --seed, --seed + 1, ...) and rank a "
                    "candidate by the mean of their costs (PETS-style)")
    ap.add_argument("--risk", type=float, default=0.0,
                    help="--ensemble: add this many standard deviations of the members' costs")
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--iterations", type=int, default=6)
    ap.add_argument("--elites", type=int, default=32)
    ap.add_argument("--workers", type=int, default=0, help="simulator processes for oracle_state (0: all)")
    ap.add_argument("--seed", type=int, default=0,
                    help="the model's, the planner's and the block-error rules' seed; also the goal draw's unless "
                    "--goal-seed is given")
    ap.add_argument("--goal-seed", type=int, default=None,
                    help="the goal draw's seed (default: --seed, as before this option): another --seed on the "
                    "same goals")
    ap.add_argument("--collect", type=int, default=0, metavar="N",
                    help="after the held-out goals, plan N goals drawn from the training episodes with the "
                         "state model and write every executed episode to --collect-out (on-policy data)")
    ap.add_argument("--collect-out", help="--collect: a new PushT store for the planner's episodes, to fit a "
                                          "later model on with --extra-store")
    ap.add_argument("--out", default="outputs/state_model_plan")
    args = ap.parse_args(argv)
    block_errors_asked = [parse_block_error(e) for e in args.block_error]
    if not args.arms and not block_errors_asked:
        raise SystemExit("no arm: give --arms and/or --block-error")
    if min(args.goals, args.steps, args.width, args.replan_every, args.samples, args.iterations) < 1:
        raise SystemExit("--goals, --steps, --width, --replan-every, --samples and --iterations must be "
                         "≥ 1")
    if args.ensemble < 1 or args.risk < 0 or not math.isfinite(args.risk):
        raise SystemExit(f"--ensemble {args.ensemble} --risk {args.risk}: ≥ 1 members and a finite risk "
                         "≥ 0 expected")
    if not (math.isfinite(args.obs_noise) and args.obs_noise >= 0):
        raise SystemExit(f"--obs-noise {args.obs_noise}: a reading error of ≥ 0 env units expected (0: exact states)")
    if not 0.0 <= args.motion_sampling <= 1.0:
        raise SystemExit(f"--motion-sampling {args.motion_sampling}: a share of the batch in [0, 1] expected")
    if args.history < 2 or (args.history != 2 and (args.model != "step" or args.load)):
        raise SystemExit(f"--history {args.history}: ≥ 2 states, and other than 2 only for a step model being "
                         "fitted (--model step; a --load model reads what it was fitted with)")
    if args.motion_sampling and (args.model != "step" or args.load):
        raise SystemExit("--motion-sampling draws a step model's training batches (--model step, not --load)")
    if args.ensemble > 1 and args.model != "step" and not args.load:
        raise SystemExit("--ensemble fits step models (--model step)")
    if args.train_episodes < 0:
        raise SystemExit(f"--train-episodes {args.train_episodes}: ≥ 1 expected (0: every training episode)")
    if args.extra_store and args.model != "step":
        raise SystemExit("--extra-store adds training episodes to a step model (--model step)")
    if args.load and (args.extra_store or args.train_episodes):
        raise SystemExit("--load plans a kept model: --extra-store and --train-episodes choose what a "
                         "model is fitted on (give them with --save)")
    if args.horizon % SKIP or not SKIP <= args.horizon <= FRAMES * SKIP:
        raise SystemExit(f"--horizon {args.horizon}: a multiple of {SKIP} from {SKIP} to {FRAMES * SKIP} "
                         "(the models' frames) expected")
    if args.replan_every > args.horizon:
        raise SystemExit(f"--replan-every {args.replan_every}: at most the horizon ({args.horizon}) expected")
    store = TrajectoryStore(args.store)
    if "pusht" not in store.attrs or store.state_dim < 5:
        raise SystemExit(f"{args.store}: a PushT store with logged states (agent x, y, block x, y, angle) "
                         "expected")
    if args.collect < 0:
        raise SystemExit(f"--collect {args.collect}: a number of goals ≥ 1 expected")
    if bool(args.collect) != bool(args.collect_out):
        given, missing = (("--collect", "--collect-out STORE") if args.collect
                          else ("--collect-out", "--collect N"))
        raise SystemExit(f"{given} needs {missing}: give both or neither")
    if args.collect and ("state_mlp" not in args.arms or args.model != "step" and not args.load):
        raise SystemExit("--collect plans with the learnt step model: --arms state_mlp and --model step "
                         f"(or --load) expected, got --arms {' '.join(args.arms) or '(none)'} "
                         f"--model {args.model}")
    if args.collect_out and Path(args.collect_out).exists():
        raise SystemExit(f"--collect-out {args.collect_out} exists: the planner's episodes go to a new store")
    if args.save and args.model != "step":
        raise SystemExit("--save keeps a step model (--model step); the frames model is refitted each run")
    if args.save and args.load:
        raise SystemExit("--save and --load: give one")
    store_hash = store.content_hash()
    if args.goals_from:
        meta_path = Path(args.goals_from, "meta.json")
        if not meta_path.is_file():
            raise SystemExit(f"--goals-from {args.goals_from}: a checkpoint directory with meta.json "
                             "expected")
        meta = json.loads(meta_path.read_text())
        if meta.get("data_hash") != store_hash:
            raise SystemExit(f"--goals-from {args.goals_from} was trained on another store than {args.store} "
                             "(content hashes differ): its split would not be held out here")
        train_eps, val_eps = list(meta["split"]["train"]), list(meta["split"]["val"])
        context = history_needed([args.goals_from])
    else:
        d = DataConfig()
        train_eps, val_eps = split_episodes(store.num_episodes, d.val_fraction, d.split_seed)
        context = SKIP + 1
    if args.train_episodes:
        if args.train_episodes > len(train_eps):
            raise SystemExit(f"--train-episodes {args.train_episodes}: the split has {len(train_eps)} "
                             "training episodes")
        order = np.random.default_rng(0).permutation(len(train_eps))  # one fixed order: nested subsets
        train_eps = sorted(train_eps[i] for i in order[: args.train_episodes])
    extra, extra_hashes = [], []
    for path in args.extra_store or []:
        x = TrajectoryStore(path)
        if "pusht" not in x.attrs or x.state_dim < 5:
            raise SystemExit(f"--extra-store {path}: a PushT store with logged states expected")
        h = x.content_hash()
        if h == store_hash or h in extra_hashes:
            raise SystemExit(f"--extra-store {path} is {args.store} or another extra store again (same "
                             "content hash): its episodes would count twice, the held-out ones among them")
        collected = x.attrs["pusht"]
        if collected.get("collected_from_hash") == store_hash:  # --collect's planner episodes of this store
            leaked = sorted({e for e, _ in collected["sources"]} & set(val_eps))
            if leaked:
                raise SystemExit(f"--extra-store {path} holds the planner's episodes from episodes "
                                 f"{leaked[:5]} of {args.store}, held out here: collected under another "
                                 "split")
        extra.append(x)
        extra_hashes.append(h)
    context = max(context, SKIP + 1)
    domain = domain_of(store)
    planner = with_domain_defaults(PlannerConfig(kind=args.planner, samples=args.samples,
                                                 iterations=args.iterations, elites=args.elites,
                                                 hold=args.hold, mode=args.mode, horizon=args.horizon,
                                                 replan_every=args.replan_every, seed=args.seed), domain)
    try:
        check_planner(planner, [SKIP])
    except (PlanError, ConfigError) as exc:
        raise SystemExit(f"planner settings: {exc}") from None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    report: dict[str, Any] = {"store": args.store, "goals_from": args.goals_from, "arms": {}}
    model: StateModel | StepModel | Ensemble | None = None
    if "state_mlp" in args.arms:
        t0 = time.time()
        rng = np.random.default_rng(args.seed)  # the training contexts' reading noise
        read_rng = np.random.default_rng([args.seed, 1])  # the held-out contexts': the same fitted or loaded
        if args.load:
            dirs = member_dirs(Path(args.load), args.ensemble)
            loaded = [load_step_model(d) for d in dirs]
            for d, (_, saved) in zip(dirs, loaded):
                if saved.get("store_hash") != store_hash or saved.get("train_episodes") != list(train_eps):
                    raise SystemExit(f"--load {d}: fitted on another store or split than {args.store}'s "
                                     "training episodes here")
            members = [m for m, _ in loaded]
            saved = loaded[0][1]
            args.model, args.step_size, trained_on = "step", members[0].k, saved["trained_on"]
            args.history = members[0].history
            args.steps, args.width = saved["steps"], saved["width"]
            args.motion_sampling = saved.get("motion_sampling", 0.0)  # how the kept model was fitted
            fitted_noise = saved.get("obs_noise", 0.0)
            if fitted_noise != args.obs_noise:  # allowed (a model planned from another reading), but said
                print(f"state_model_planning: --load {args.load} was fitted with --obs-noise {fitted_noise}; "
                      f"scored and planned here with --obs-noise {args.obs_noise}", file=sys.stderr, flush=True)
            report["loaded"] = args.load
        elif args.model == "frames":
            tr = windows(store, train_eps, FRAMES)
            tr_ctx = noisy(tr[0], args.obs_noise, rng)
            net = fit(features(tr_ctx, tr[1]), targets(tr_ctx, tr[2], first=0), args.steps, args.seed,
                      args.width)
            model = StateModel(net)
            trained_on = len(tr[0])
        else:
            sources = [(store, train_eps)] + [(x, list(range(x.num_episodes))) for x in extra]
            members = []
            save_dirs = member_dirs(Path(args.save), args.ensemble) if args.save else []
            for i in range(args.ensemble):  # member i: seed + i (member 0 is the single model of --seed)
                member, trained_on = fit_step_model(sources, args.step_size, args.steps, args.seed + i,
                                                    args.width, args.obs_noise,
                                                    np.random.default_rng(args.seed + i),
                                                    args.motion_sampling, args.history)
                members.append(member)
                if args.save:
                    save_step_model(member, save_dirs[i], {
                        "store_hash": store_hash, "train_episodes": list(train_eps), "trained_on": trained_on,
                        "extra_store_hashes": extra_hashes, "steps": args.steps, "obs_noise": args.obs_noise,
                        "motion_sampling": args.motion_sampling,
                        "seed": args.seed + i})  # the history is the model's own (save_step_model)
        if args.model == "step":
            model = members[0] if len(members) == 1 else Ensemble(members, args.risk)
        back = tuple(args.step_size * j for j in range(1, args.history)) if args.model == "step" else (SKIP,)
        va = windows(store, val_eps, FRAMES, back=back)
        step_size = args.step_size if args.model == "step" else None
        single = model.members[0] if isinstance(model, Ensemble) else model
        read = noisy(va[0], args.obs_noise, read_rng)
        report["state_mlp"] = {"model": args.model, "step_size": step_size,
                               "history": args.history if args.model == "step" else None,
                               "ensemble": args.ensemble, "risk": args.risk,
                               "train_episodes": len(train_eps) + sum(x.num_episodes for x in extra),
                               "extra_stores": args.extra_store or [], "trained_on": trained_on,
                               "held_out_windows": len(va[0]),
                               "steps": args.steps, "width": args.width, "obs_noise": args.obs_noise,
                               "motion_sampling": args.motion_sampling,
                               "fit_s": round(time.time() - t0, 1),
                               **held_out_errors(single, va, read)}
        if isinstance(model, Ensemble):  # each member's held-out errors (the fields above are member 0's)
            report["state_mlp"]["members"] = [held_out_errors(m, va, read) for m in model.members]
        print(f"state_mlp fitted in {report['state_mlp']['fit_s']} s", flush=True)

    goal_seed = args.seed if args.goal_seed is None else args.goal_seed
    bench = PlanBenchConfig(goals=args.goals, planner=planner, seed=goal_seed)
    low, high = _bounds(store)
    device = torch.device("cpu")
    recorder = RecordingSim(domain.make_sim(), store,
                            max(SKIP, args.step_size * (args.history - 1)) if args.model == "step" else SKIP)
    pool = None
    try:
        try:
            # goals start late enough for the model's context (a --load model's history is known only now)
            pairs = domain.goal_pairs(store, val_eps, bench, max(context, recorder.back + 1), recorder.sim)
        except ValueError as exc:
            raise SystemExit(str(exc)) from None
        report |= {"bench": "plan", "domain": domain.name, "held_out_split": True, "goals": len(pairs),
                   "seed": args.seed, "goal_seed": goal_seed,
                   "goal_block_move_mean": round(float(np.mean([p.block_move for p in pairs])), 4),
                   "goal_block_turn_mean": round(float(np.mean([p.block_turn for p in pairs])), 3),
                   "ahead": bench.ahead, "budget": bench.budget, "planner": asdict(planner)}
        errors_by_arm = {block_error_arm_name(*e): e for e in block_errors_asked}
        arm_names = list(args.arms) + list(errors_by_arm)
        if len(set(args.arms)) < len(args.arms) or len(errors_by_arm) < len(block_errors_asked):
            raise SystemExit(f"arms {args.arms} and --block-error {args.block_error}: each once")
        held_out = windows(store, val_eps, FRAMES) if errors_by_arm else None  # read once for every rule
        common = {"cfg": planner, "device": device, "low": low, "high": high, "domain": domain}
        for name in arm_names:
            if name in errors_by_arm:
                pool = pool or domain.make_pool(args.workers)
                arm: Arm = BlockErrorOracle(name, errors_by_arm[name], pool=pool, **common)
            elif name == "oracle_state":
                pool = pool or domain.make_pool(args.workers)
                arm = Arm(name, "oracle_state", pool=pool, **common)
            else:
                assert model is not None
                arm = StateModelArm(name, model, recorder, args.obs_noise, **common)
            t_arm = time.time()

            def said(g: int, res: Any, name: str = name) -> None:
                print(f"[{name}] goal {g + 1}/{len(pairs)}: success {res.success_any} "
                      f"(end {res.success_end}), block {res.block_pos_error:.1f} units / "
                      f"{np.degrees(res.block_angle_error):.1f} deg", flush=True)

            results = plan_goals(arm, pairs, recorder, bench.budget, out / f"{name}.goals.jsonl", said)
            report["arms"][name] = summarize(results) | {"kind": arm.kind,
                                                         "arm_s": round(time.time() - t_arm, 1)}
            if isinstance(arm, BlockErrorOracle):
                report["arms"][name]["injected_block_error"] = arm.injected_error()
                report["arms"][name]["held_out_block_error"] = arm.held_out_error(held_out)
        if args.collect:  # the held-out report first: a collection cut short leaves it
            (out / "results.json").write_text(json.dumps(report, indent=1))
            report["collected"] = collect_episodes(args, store, train_eps, bench, recorder, model, domain,
                                                   common, max(context, recorder.back + 1), goal_seed, out)
    finally:
        if pool is not None:
            pool.close()
        recorder.close()
    (out / "results.json").write_text(json.dumps(report, indent=1))
    _write_report(report, out / "report.md")
    report["report"] = str(out / "report.md")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
