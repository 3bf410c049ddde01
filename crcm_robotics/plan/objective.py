"""Score functions for the planners: env-step action batches → goal costs, all on the model's device.

``imagined_score`` asks a :class:`~crcm_robotics.runtime.WorldModel` to imagine the candidates from a context
and scores the frames against a goal; a checkpoint trained with ``data.frame_skip=k`` predicts every k-th
frame from the k env actions between, so env-step candidates are grouped k at a time. Every round of a solve
draws the same noise (a fixed seed). Within a round each candidate draws its own (``noise="per_candidate"``)
or all share one draw (``"shared"``: common random numbers, so candidates differ by their actions only);
``draws`` > 1 averages each candidate's cost over that many draws.

``frames_score`` does the same for any function that renders candidates (the simulator oracle of
``crcm bench plan``), so the oracle and the models are scored by one code path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch

from crcm_robotics.plan.costs import FINAL_FRAME_COSTS, LATENT_COSTS, latent_cost, make_cost
from crcm_robotics.plan.planners import PlanError, Score

if TYPE_CHECKING:
    from crcm_robotics.plan.probe import StateProbe
    from crcm_robotics.runtime.world_model import WorldModel


def group_frame_skip(actions_NHzA: torch.Tensor, frame_skip: int) -> torch.Tensor:
    """Env-step actions [N, Hz, A] → model actions [N, Hz/k, k·A] (the k commands between two model frames)."""
    n, hz, a = actions_NHzA.shape
    if hz % frame_skip:
        raise PlanError(f"horizon {hz} is not a multiple of the model's frame_skip {frame_skip}")
    return actions_NHzA.reshape(n, hz // frame_skip, frame_skip * a)


def model_context(frames: np.ndarray, actions: np.ndarray, frame_skip: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The model's context from an env-step history: the newest frame and every ``frame_skip``-th before it
    (at most ``k``), each with the ``frame_skip`` env actions that produced it (the oldest padded by repeating
    the earliest action). ``frames`` uint8 [T, H, W, 3]; ``actions[i]`` produced ``frames[i]``."""
    t = len(frames)
    if t < 1 or len(actions) != t:
        raise PlanError(f"history needs ≥ 1 frame and one action per frame; got {t} frames, {len(actions)} actions")
    idx = np.arange(t - 1, -1, -frame_skip)[:k][::-1]
    acts = []
    for i in idx:
        lo = i - frame_skip + 1
        rows = [actions[max(j, 0)] for j in range(lo, i + 1)]
        acts.append(np.concatenate(rows))
    return np.ascontiguousarray(frames[idx]), np.stack(acts).astype(np.float32)


def frames_score(render: Callable[[torch.Tensor], torch.Tensor], goal_HW3: np.ndarray, cost: str,
                 device: torch.device, probe: StateProbe | None = None) -> Score:
    """Score candidates with a renderer: actions [N, Hz, A] → frames uint8 [N, T, H, W, 3] → costs [N]."""
    cost_fn = make_cost(cost, torch.from_numpy(np.ascontiguousarray(goal_HW3)).to(device), probe)
    return lambda actions: cost_fn(render(actions))


NOISE_MODES = ("per_candidate", "shared")
MAX_DRAWS = 16


def imagined_score(wm: WorldModel, context: tuple[np.ndarray, np.ndarray], goal_HW3: np.ndarray, cost: str,
                   seed: int = 0, noise: str = "per_candidate", draws: int = 1) -> Score:
    """Candidates scored on frames imagined by ``wm`` from an env-step ``context`` (frames, actions); a latent
    cost scores the model's final latents and decodes nothing. ``noise`` and ``draws``: see the module."""
    if noise not in NOISE_MODES:
        raise PlanError(f"planner.noise={noise!r} unknown; expected one of {', '.join(NOISE_MODES)}")
    if not 1 <= draws <= MAX_DRAWS:
        raise PlanError(f"planner.draws={draws} must be in [1, {MAX_DRAWS}]")
    ctx = model_context(context[0], context[1], wm.frame_skip, wm.context_frames)
    shared = noise == "shared"
    latent = cost in LATENT_COSTS
    decode = "latent" if latent else "last" if cost in FINAL_FRAME_COSTS else "all"  # only the frames scored
    goal = torch.from_numpy(np.ascontiguousarray(goal_HW3)).to(wm.device)
    cost_fn = latent_cost(goal, wm.codec.encode) if latent else make_cost(cost, goal, wm.probe)

    def score(actions_NHzA: torch.Tensor) -> torch.Tensor:
        grouped = group_frame_skip(actions_NHzA, wm.frame_skip)
        total = None
        for d in range(draws):
            frames = wm.imagine_tensor(grouped, context=ctx, seed=seed + d, decode=decode, shared_noise=shared)
            c = cost_fn(frames)
            total = c if total is None else total + c
        return total / draws

    return score
