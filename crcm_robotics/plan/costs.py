"""Goal costs over imagined frames, computed on the frames' device (no host copy).

Every cost compares a batch of rollouts ``frames`` uint8 [N, T, H, W, 3] with one goal image uint8
[H, W, 3] and returns float32 [N], lower is better:

- ``final_mse``   mean over pixels of ``((last frame − goal) / 255)²``, in [0, 1] (WorldModel's original cost);
- ``pooled_mse``  multi-scale: the mean of the final-frame MSE after average pooling by 1, 2, 4 and 8 px, so an
                  object that moved a few pixels still shows up as near (a plain MSE sees the 12-px pusher of
                  PushT as 0.3 % of the image);
- ``path_mse``    pooled MSE of every frame, weighted linearly up to the last (reaching the goal early and
                  staying there beats passing through it);
- ``probe``       squared distance between learned embeddings of the last frame and the goal
                  (:class:`~crcm_robotics.plan.probe.StateProbe`: a small CNN trained on the store to read the
                  logged state, angles as cos/sin, in units of each state's spread), which is smooth in object
                  position by construction;
- ``probe_path``  the probe distance of every frame, weighted as ``path_mse``;
- ``probe_mass``  ``probe``, with two positions (PushT: the block's) read off a colour's pixel centroid in
                  both frames (:class:`~crcm_robotics.plan.probe.MassReading`, set by the benchmark): a model
                  that draws a pushed block as a cloud puts its mass nearer the truth than the probe reads it;
- ``latent_mse``  mean squared distance between the last frame's latent and the goal's, in a world model's
                  codec (unit-space latents: each channel about N(0, 1) on the training frames). A planner
                  scores the model's own final latents (:func:`latent_mse`: nothing is decoded); on frames it
                  encodes them first, so it needs the model's ``encode``.

``make_cost(name, goal, probe=…, encode=…)`` binds a cost to its goal once (the goal's pooled pyramid,
embedding or latent is computed once per solve) and returns ``frames -> costs``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from crcm_robotics.plan.probe import StateProbe

CostFn = Callable[[torch.Tensor], torch.Tensor]
COSTS = ("final_mse", "pooled_mse", "path_mse", "probe", "probe_path", "probe_mass", "latent_mse")
FINAL_FRAME_COSTS = ("final_mse", "pooled_mse", "probe", "probe_mass")  # read the last frame only (the only one decoded)
LATENT_COSTS = ("latent_mse",)  # read the model's final latent: no frame is decoded
POOLS = (1, 2, 4, 8)


class CostError(ValueError):
    """An unknown cost name, a cost that needs a probe without one, or a goal of the wrong shape."""


def _unit(frames_u8: torch.Tensor) -> torch.Tensor:
    """uint8 [..., H, W, 3] → float [..., 3, H, W] in [0, 1]."""
    return frames_u8.movedim(-1, -3).float() / 255.0


def _pyramid(img_B3HW: torch.Tensor) -> list[torch.Tensor]:
    return [img_B3HW if p == 1 else F.avg_pool2d(img_B3HW, p) for p in POOLS if img_B3HW.shape[-1] % p == 0]


def pooled_mse(frames_B3HW: torch.Tensor, goal_pyramid: list[torch.Tensor]) -> torch.Tensor:
    """Mean over scales of the per-image MSE against the goal's pooled images; float [B]."""
    levels = _pyramid(frames_B3HW)
    per_scale = [(f - g).square().mean(dim=(1, 2, 3)) for f, g in zip(levels, goal_pyramid)]
    return torch.stack(per_scale).mean(0)


def latent_mse(latents_NChw: torch.Tensor, goal_latent_1Chw: torch.Tensor) -> torch.Tensor:
    """Mean squared latent distance per rollout, float [N]: final latents [N, C, h, w] against the goal's."""
    if latents_NChw.ndim != 4 or latents_NChw.shape[1:] != goal_latent_1Chw.shape[1:]:
        raise CostError(f"latents must be [N, {', '.join(map(str, goal_latent_1Chw.shape[1:]))}]; got "
                        f"{tuple(latents_NChw.shape)}")
    return (latents_NChw.float() - goal_latent_1Chw.float()).square().mean(dim=(1, 2, 3))


def latent_cost(goal_HW3: torch.Tensor, encode: CostFn) -> CostFn:
    """``latent_mse`` bound to a goal image (encoded once): final latents [N, C, h, w] → float [N]."""
    goal_latent = encode(goal_HW3[None])
    return lambda latents: latent_mse(latents, goal_latent)


def path_weights(t: int, device: torch.device) -> torch.Tensor:
    """Linearly rising weights over T frames, summing to 1 (the last frame counts most)."""
    w = torch.arange(1, t + 1, device=device, dtype=torch.float32)
    return w / w.sum()


def make_cost(name: str, goal_HW3: torch.Tensor, probe: StateProbe | None = None,
              encode: CostFn | None = None) -> CostFn:
    """``frames`` uint8 [N, T, H, W, 3] → float32 [N] against ``goal_HW3`` (uint8, on the frames' device).
    ``encode`` (uint8 frames [B, H, W, 3] → latents [B, C, h, w]): a world model's codec (``latent_mse``)."""
    if name not in COSTS:
        raise CostError(f"cost {name!r} unknown; expected one of {', '.join(COSTS)}")
    if goal_HW3.dtype != torch.uint8 or goal_HW3.ndim != 3 or goal_HW3.shape[-1] != 3:
        raise CostError(f"goal must be uint8 [H, W, 3]; got {goal_HW3.dtype} {tuple(goal_HW3.shape)}")
    goal = _unit(goal_HW3)[None]  # [1, 3, H, W]

    def check(frames: torch.Tensor) -> tuple[int, int]:
        if frames.dtype != torch.uint8 or frames.ndim != 5 or frames.shape[2:] != goal_HW3.shape:
            raise CostError(f"frames must be uint8 [N, T, {', '.join(map(str, goal_HW3.shape))}]; got "
                            f"{frames.dtype} {tuple(frames.shape)}")
        return frames.shape[0], frames.shape[1]

    if name == "final_mse":
        def final_mse(frames: torch.Tensor) -> torch.Tensor:
            check(frames)
            return (_unit(frames[:, -1]) - goal).square().mean(dim=(1, 2, 3))
        return final_mse

    if name in ("pooled_mse", "path_mse"):
        goal_pyr = _pyramid(goal)
        if name == "pooled_mse":
            def pooled(frames: torch.Tensor) -> torch.Tensor:
                check(frames)
                return pooled_mse(_unit(frames[:, -1]), goal_pyr)
            return pooled

        def path(frames: torch.Tensor) -> torch.Tensor:
            n, t = check(frames)
            per_frame = pooled_mse(_unit(frames.flatten(0, 1)), goal_pyr).view(n, t)
            return per_frame @ path_weights(t, frames.device)
        return path

    if name == "latent_mse":
        if encode is None:
            raise CostError("cost 'latent_mse' compares latents of a world model's codec and needs that "
                            "model (the simulator oracle renders frames only: give it probe or pooled_mse)")
        to_goal = latent_cost(goal_HW3, encode)

        def latent_final(frames: torch.Tensor) -> torch.Tensor:
            check(frames)
            return to_goal(encode(frames[:, -1]))
        return latent_final

    if probe is None:
        raise CostError(f"cost {name!r} needs a state probe (train one with `crcm train probe data.path=STORE "
                        "out=CKPT/probe`, or pass probe=PATH)")
    weight = probe.cost_weight.to(goal_HW3.device)  # the cost's units (StateProbe.with_cost_units)
    if name == "probe_mass":
        if probe.mass is None:
            raise CostError("cost 'probe_mass' needs a probe with a colour-mass reading (StateProbe.with_mass; "
                            "`crcm bench plan` and `crcm plan` set PushT's block): use probe here")
        goal_mass = probe.embed_mass(goal_HW3[None]) * weight

        def probe_mass(frames: torch.Tensor) -> torch.Tensor:
            check(frames)
            return (probe.embed_mass(frames[:, -1]) * weight - goal_mass).square().sum(-1)
        return probe_mass
    goal_emb = probe.embed(goal_HW3[None]) * weight  # [1, E]
    if name == "probe":
        def probe_final(frames: torch.Tensor) -> torch.Tensor:
            check(frames)
            return (probe.embed(frames[:, -1]) * weight - goal_emb).square().sum(-1)
        return probe_final

    def probe_path(frames: torch.Tensor) -> torch.Tensor:
        n, t = check(frames)
        d = (probe.embed(frames.flatten(0, 1)) * weight - goal_emb).square().sum(-1).view(n, t)
        return d @ path_weights(t, frames.device)
    return probe_path
