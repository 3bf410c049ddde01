"""Training batches: windows of a trajectory store held on the training device.

A batch is ``x`` [B, T, C, H, W] (the codec's unit space: pixels or latents) with ``action`` [B, T, A]: the
normalized action that *produced* each frame (for frame j of a window starting
at s, the ``frame_skip`` commands applied between frames j-1 and j), and
``x_prev``: the frame before each one. So every window reads T+1 frames.

Batches are a pure function of (seed, step, rank): resuming at step n draws
exactly the batches an uninterrupted run would have drawn.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from crcm_robotics.config import DataConfig, key_map_from_config
from crcm_robotics.data.dataset import split_episodes, window_starts
from crcm_robotics.data.schema import StoreError
from crcm_robotics.data.store import NormStats, TrajectoryStore
from crcm_robotics.model.codec import LatentCodec
from crcm_robotics.model.tokenizer import FrameCodec


def encode_all(codec: LatentCodec, frames: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """Every frame's latent, once: a conv encoder pass over each window's frames at every update would cost
    more than the DiT's own (768 frames of 128x128 per batch of the arm preset); the codec is frozen."""
    with torch.no_grad():
        return torch.cat([codec.encode(frames[i:i + chunk]) for i in range(0, len(frames), chunk)])


@dataclass
class Split:
    train: list[int]
    val: list[int]


class MemoryWindows:
    """All frames of the chosen episodes as one uint8 tensor on ``device``; windows gathered by index."""

    def __init__(self, cfg: DataConfig, episodes: list[int], stats: NormStats, codec: FrameCodec,
                 device: torch.device, store: TrajectoryStore | None = None):
        store = store or TrajectoryStore(cfg.path, key_map_from_config(cfg.key_map, cfg.path))
        self.cfg = cfg
        self.codec = codec
        self.device = device
        span = cfg.window + 1  # one extra leading frame whose following commands produce frame 0
        starts = window_starts(store.episode_ends, episodes, span, cfg.frame_skip)
        if len(starts) == 0:
            raise StoreError(
                f"no episode among {len(episodes)} of {cfg.path} has {span * cfg.frame_skip} frames "
                f"for data.window={cfg.window}, data.frame_skip={cfg.frame_skip}"
            )
        n = store.num_frames
        self.frames = torch.from_numpy(store.frames(0, n)).to(device)  # uint8 [N, H, W, 3]
        self.actions = torch.from_numpy(stats.normalize(store.action())).to(device)  # [N, A]
        state = store.state()
        self.state = torch.from_numpy(state).to(device) if state is not None else None
        self.starts = torch.from_numpy(starts).to(device)
        self.action_dim = store.action_dim * cfg.frame_skip
        self.latents = encode_all(codec, self.frames) if isinstance(codec, LatentCodec) else None

    def subset(self, episodes: list[int], store: TrajectoryStore) -> "MemoryWindows":
        """Windows of other episodes of the same store, sharing this one's frame/action tensors (no second copy)."""
        other = copy.copy(self)
        starts = window_starts(store.episode_ends, episodes, self.cfg.window + 1, self.cfg.frame_skip)
        other.starts = torch.from_numpy(starts).to(self.device)
        return other

    def __len__(self) -> int:
        return len(self.starts)

    def window(self, starts: torch.Tensor) -> dict[str, torch.Tensor]:
        """Windows starting at global frame indices ``starts`` [B] (each one of ``self.starts``)."""
        k, t = self.cfg.frame_skip, self.cfg.window
        frame_idx = starts[:, None] + k * torch.arange(t + 1, device=self.device)[None]  # [B, T+1]
        act_idx = starts[:, None] + torch.arange(t * k, device=self.device)[None]  # [B, T*k]
        frames = self.frames[frame_idx]  # [B, T+1, H, W, 3]
        x = self.latents[frame_idx] if self.latents is not None else self.codec.encode(frames)
        frame_idx = frame_idx[:, 1:]
        batch = {
            "frames": frames[:, 1:],
            "x": x[:, 1:],  # [B, T, C, H, W]
            "x_prev": x[:, :-1],  # the clean frame before each of them
            "action": self.actions[act_idx].reshape(len(starts), t, -1),
        }
        if self.state is not None:
            batch["state"] = self.state[frame_idx]
        return batch

    def sample(self, batch_size: int, seed: int, step: int, rank: int = 0) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(hash((seed, step, rank)) & 0x7FFF_FFFF_FFFF)
        pick = torch.randint(len(self.starts), (batch_size,), generator=g).to(self.device)
        return self.window(self.starts[pick])


def first_frames(batch: dict[str, torch.Tensor], n: int) -> dict[str, torch.Tensor]:
    """The first ``n`` frames of every window of a batch (every entry is [B, T, ...])."""
    return {k: v[:, :n] for k, v in batch.items()}


def load_split(cfg: DataConfig) -> tuple[TrajectoryStore, Split, NormStats]:
    """The store, its episode split and the action normalization stats."""
    store = TrajectoryStore(cfg.path, key_map_from_config(cfg.key_map, cfg.path))
    train, val = split_episodes(store.num_episodes, cfg.val_fraction, cfg.split_seed)
    if not train:
        raise StoreError(f"store {cfg.path} has too few episodes ({store.num_episodes}) for a training split")
    return store, Split(train, val), store.stats()["action"]


def frame_skip_stats(stats: NormStats, frame_skip: int) -> dict[str, list[float]]:
    """Action stats of the concatenated k-command action the model sees (the store's stats repeated)."""
    return {k: list(np.tile(getattr(stats, k), frame_skip)) for k in ("mean", "std", "min", "max")}
