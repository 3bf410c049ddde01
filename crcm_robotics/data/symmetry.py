"""PushT's eight symmetries (the square's dihedral group), for training-time data augmentation.

gym-pusht's physics has no preferred direction: no gravity, isotropic damping, a PD-controlled disc and a
T that is mirror-symmetric about its stem, inside square walls centred on the workspace. So a trajectory
turned by a multiple of 90° or mirrored about the workspace's centre, with its commanded targets moved the
same way, is a trajectory of the same simulator (``tests/test_symmetry.py`` checks it step by step). The
pixel world model is not built to know that; the state models that plan well are (they read contact in the
block's frame). Showing it every window in one of the 8 poses teaches the rule 8 times per window.

One thing in a frame does not move with the scene: the goal zone gym-pusht draws at a fixed pose. In an
augmented frame it is drawn where the symmetry puts it, a static backdrop the model learns to keep.

An element ``g`` in [0, 8) is three bits applied in this order to a world point (x, y):
bit 0 swaps x and y, bit 1 mirrors x about the centre, bit 2 mirrors y. Frames are stored row = y,
column = x (gym-pusht's pygame drawing), so the same bits transpose, then flip columns, then flip rows.
The block angle θ goes to −π/2 − θ under the swap, −θ under the x mirror and π − θ under the y mirror
(the T's own mirror symmetry makes a mirrored T a turned one).
"""

from __future__ import annotations

import math

import torch

DIHEDRAL = 8  # elements of the square's symmetry group
SWAP, FLIP_X, FLIP_Y = 1, 2, 4


def transform_xy(xy: torch.Tensor, g: torch.Tensor, center: float) -> torch.Tensor:
    """Points ``xy`` [B, ..., 2] (env units) moved by each window's element ``g`` [B] (int)."""
    g = g.view(-1, *([1] * (xy.dim() - 1)))
    x, y = xy[..., 0:1], xy[..., 1:2]
    swap = (g & SWAP) > 0
    x, y = torch.where(swap, y, x), torch.where(swap, x, y)
    x = torch.where((g & FLIP_X) > 0, 2 * center - x, x)
    y = torch.where((g & FLIP_Y) > 0, 2 * center - y, y)
    return torch.cat([x, y], dim=-1)


def transform_angle(theta: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Block angles ``theta`` [B, ...] (rad) under each window's element ``g`` [B], wrapped to (−π, π]."""
    g = g.view(-1, *([1] * (theta.dim() - 1)))
    theta = torch.where((g & SWAP) > 0, -math.pi / 2 - theta, theta)
    theta = torch.where((g & FLIP_X) > 0, -theta, theta)
    theta = torch.where((g & FLIP_Y) > 0, math.pi - theta, theta)
    return torch.atan2(torch.sin(theta), torch.cos(theta))


def transform_frames(frames: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Frames [B, ..., H, W, C] (H = W) under each window's element ``g`` [B]."""
    if frames.shape[-3] != frames.shape[-2]:
        raise ValueError(f"dihedral augmentation needs square frames, got {tuple(frames.shape[-3:-1])}")
    out = frames.clone()
    h, w = frames.dim() - 3, frames.dim() - 2
    for element in range(1, DIHEDRAL):
        rows = (g == element).nonzero().flatten()
        if len(rows) == 0:
            continue
        f = frames[rows]
        if element & SWAP:
            f = f.transpose(h, w)
        if element & FLIP_X:
            f = f.flip(w)
        if element & FLIP_Y:
            f = f.flip(h)
        out[rows] = f
    return out


def transform_state(state: torch.Tensor, g: torch.Tensor, center: float) -> torch.Tensor:
    """PushT states [B, ..., 5] (agent x, y, block x, y, block angle) under each window's element ``g``."""
    return torch.cat([transform_xy(state[..., 0:2], g, center), transform_xy(state[..., 2:4], g, center),
                      transform_angle(state[..., 4:5], g), state[..., 5:]], dim=-1)
