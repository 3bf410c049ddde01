"""Score functions for the planners: env-step action batches → goal costs, all on the model's device.

``imagined_score`` asks a :class:`~crcm_robotics.runtime.WorldModel` to imagine the candidates from a context
and scores the frames against a goal; a checkpoint trained with ``data.frame_skip=k`` predicts every k-th
frame from the k env actions between, so env-step candidates are grouped k at a time. Every candidate of one
solve sees the same noise (a fixed seed): the planner compares actions, not noise draws.

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


def imagined_score(wm: WorldModel, context: tuple[np.ndarray, np.ndarray], goal_HW3: np.ndarray, cost: str,
                   seed: int = 0) -> Score:
    """Candidates scored on frames imagined by ``wm`` from an env-step ``context`` (frames, actions); a latent
    cost scores the model's final latents and decodes nothing."""
    ctx = model_context(context[0], context[1], wm.frame_skip, wm.context_frames)
    if cost in LATENT_COSTS:
        to_goal = latent_cost(torch.from_numpy(np.ascontiguousarray(goal_HW3)).to(wm.device), wm.codec.encode)

        def latent_score(actions: torch.Tensor) -> torch.Tensor:
            return to_goal(wm.imagine_tensor(group_frame_skip(actions, wm.frame_skip), context=ctx, seed=seed,
                                             decode="latent"))
        return latent_score
    decode = "last" if cost in FINAL_FRAME_COSTS else "all"  # a latent model decodes only the frames scored

    def render(actions_NHzA: torch.Tensor) -> torch.Tensor:
        return wm.imagine_tensor(group_frame_skip(actions_NHzA, wm.frame_skip), context=ctx, seed=seed,
                                 decode=decode)

    return frames_score(render, goal_HW3, cost, wm.device, wm.probe)
