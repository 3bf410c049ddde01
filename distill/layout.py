"""The teacher-forcing sequence layout (DESIGN §3) shared by every training objective.

    [x^0 … x^{T-2} clean | x_t^0 … x_t^{T-1} noisy]

Clean frame i sees clean frames ≤ i (exactly what the KV cache holds at
inference); noisy frame i sees clean frames < i and itself only. Temporal
positions: clean i and noisy i both sit at position i.
"""

from __future__ import annotations

import torch

from crcm_robotics.model import trigflow as tf


def teacher_forcing_mask(frames: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Frame-level bool mask [2T-1, 2T-1] for ``frames`` = T noisy frames (row may attend to column)."""
    t = frames
    nc = t - 1
    mask = torch.zeros(nc + t, nc + t, dtype=torch.bool, device=device)
    mask[:nc, :nc] = torch.ones(nc, nc, dtype=torch.bool, device=device).tril()
    mask[nc:, :nc] = torch.ones(t, nc, dtype=torch.bool, device=device).tril(-1)
    mask[nc:, nc:] = torch.eye(t, dtype=torch.bool, device=device)
    return mask


def teacher_forcing_positions(frames: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """int64 [2T-1]: clean frames 0..T-2 then noisy frames 0..T-1."""
    ar = torch.arange(frames, device=device)
    return torch.cat([ar[:-1], ar])


def tf_forward(model, x_clean: torch.Tensor, t_clean: torch.Tensor, x_noisy: torch.Tensor, t_noisy: torch.Tensor,
               action: torch.Tensor, x_prev: torch.Tensor, noisy_action: torch.Tensor | None = None) -> torch.Tensor:
    """Run the network on the layout; returns F for the noisy frames [B, T, C, H, W].

    x_clean [B, T, ...] (its last frame is not needed and is dropped), t_clean [B, T],
    x_noisy [B, T, ...], t_noisy [B, T], action [B, T, A] (producing actions), x_prev [B, T, ...]
    the clean frame before each noisy one (used when the model diffuses frame-to-frame changes;
    see ``sampler.frame_f``). ``noisy_action`` [B, T, A]: the noisy frames' actions where they differ from
    the clean frames' (action dropout puts the null action there and leaves the context's commands).
    """
    t = x_noisy.shape[1]
    residual = model.cfg.residual
    noisy_in = tf.residual_input(x_noisy, t_noisy, x_prev) if residual else x_noisy
    seq = torch.cat([x_clean[:, : t - 1], noisy_in], dim=1)
    times = torch.cat([t_clean[:, : t - 1], t_noisy], dim=1)
    actions = torch.cat([action[:, : t - 1], action if noisy_action is None else noisy_action], dim=1)
    out = model(seq, times, actions, positions=teacher_forcing_positions(t, x_noisy.device),
                frame_mask=teacher_forcing_mask(t, x_noisy.device))
    out = out[:, t - 1 :]
    return tf.residual_output(out, t_noisy, x_prev) if residual else out
