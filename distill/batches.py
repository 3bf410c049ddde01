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

from crcm_robotics.config import ConfigError, DataConfig, key_map_from_config
from crcm_robotics.data.dataset import split_episodes, window_starts
from crcm_robotics.data.pusht import PUSHT_WORKSPACE
from crcm_robotics.data.schema import StoreError
from crcm_robotics.data.store import NormStats, TrajectoryStore
from crcm_robotics.data.symmetry import DIHEDRAL, transform_frames, transform_state, transform_xy
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
        cfg.validate()
        store = store or TrajectoryStore(cfg.path, key_map_from_config(cfg.key_map, cfg.path))
        self.cfg = cfg
        self.codec = codec
        self.device = device
        if cfg.augment == "dihedral":  # before any frame is read or encoded
            check_dihedral(cfg, store, codec)
        span = cfg.window + 1  # one extra leading frame whose following commands produce frame 0
        starts = window_starts(store.episode_ends, episodes, span, cfg.frame_skip)
        if len(starts) == 0:
            raise StoreError(
                f"no episode among {len(episodes)} of {cfg.path} has {span * cfg.frame_skip} frames "
                f"for data.window={cfg.window}, data.frame_skip={cfg.frame_skip}"
            )
        state = store.state()
        # each window's chance under data.motion_sampling, on the CPU beside the sampling generator; before the
        # frames are read, so that a setting the store cannot serve is refused at once
        self.motion_weights = (window_motion_weights(cfg, state, starts) if cfg.motion_sampling > 0 else None)
        n = store.num_frames
        self.frames = torch.from_numpy(store.frames(0, n)).to(device)  # uint8 [N, H, W, 3]
        raw_actions = store.action()
        self.actions = torch.from_numpy(stats.normalize(raw_actions)).to(device)  # [N, A]
        self.state = torch.from_numpy(state).to(device) if state is not None else None
        self.starts = torch.from_numpy(starts).to(device)
        self.action_dim = store.action_dim * cfg.frame_skip
        self.latents = encode_all(codec, self.frames) if isinstance(codec, LatentCodec) else None
        if cfg.augment == "dihedral":
            self._dihedral_tables(store, raw_actions, stats)

    def _dihedral_tables(self, store: TrajectoryStore, raw_actions: np.ndarray, stats: NormStats) -> None:
        """The store's actions (and states) under each of PushT's 8 symmetries, normalized with the store's
        stats: [8, N, A] (and [8, N, S]), so a sampled window gathers its element's row."""
        center = float(store.attrs["pusht"].get("workspace", PUSHT_WORKSPACE)) / 2
        n = store.num_frames
        raw = torch.from_numpy(raw_actions.astype(np.float32))[None].expand(DIHEDRAL, n, 2)
        moved = transform_xy(raw, torch.arange(DIHEDRAL), center).reshape(-1, 2).numpy()  # on the CPU: once
        self.actions_by_g = torch.from_numpy(stats.normalize(moved)).reshape(DIHEDRAL, n, 2).to(self.device)
        g = torch.arange(DIHEDRAL, device=self.device)
        self.state_by_g = None
        if self.state is not None:
            self.state_by_g = transform_state(self.state[None].expand(DIHEDRAL, *self.state.shape), g, center)

    def subset(self, episodes: list[int], store: TrajectoryStore) -> "MemoryWindows":
        """Windows of other episodes of the same store, sharing this one's frame/action tensors (no second copy)."""
        other = copy.copy(self)
        starts = window_starts(store.episode_ends, episodes, self.cfg.window + 1, self.cfg.frame_skip)
        other.starts = torch.from_numpy(starts).to(self.device)
        other.motion_weights = None  # held-out windows are read in order, never sampled
        return other

    def __len__(self) -> int:
        return len(self.starts)

    def window(self, starts: torch.Tensor, g: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Windows starting at global frame indices ``starts`` [B] (each one of ``self.starts``); with ``g``
        [B] (``data.augment=dihedral``), each turned or mirrored by its element of PushT's symmetries."""
        k, t = self.cfg.frame_skip, self.cfg.window
        frame_idx = starts[:, None] + k * torch.arange(t + 1, device=self.device)[None]  # [B, T+1]
        act_idx = starts[:, None] + torch.arange(t * k, device=self.device)[None]  # [B, T*k]
        frames = self.frames[frame_idx]  # [B, T+1, H, W, 3]
        if g is None:
            actions = self.actions[act_idx]
        else:  # the tables exist only for the pixel codec, so x is encoded from the turned frames below
            frames = transform_frames(frames, g)
            actions = self.actions_by_g[g[:, None], act_idx]
        x = self.latents[frame_idx] if self.latents is not None else self.codec.encode(frames)
        frame_idx = frame_idx[:, 1:]
        batch = {
            "frames": frames[:, 1:],
            "x": x[:, 1:],  # [B, T, C, H, W]
            "x_prev": x[:, :-1],  # the clean frame before each of them
            "action": actions.reshape(len(starts), t, -1),
        }
        if self.state is not None:
            batch["state"] = self.state[frame_idx] if g is None else self.state_by_g[g[:, None], frame_idx]
        return batch

    def sample(self, batch_size: int, seed: int, step: int, rank: int = 0) -> dict[str, torch.Tensor]:
        """A training batch, a pure function of (seed, step, rank); with ``data.augment=dihedral`` each
        window in one of PushT's 8 poses, drawn from the same generator."""
        g = torch.Generator().manual_seed(hash((seed, step, rank)) & 0x7FFF_FFFF_FFFF)
        pick = mixed_draw(len(self.starts), batch_size, self.motion_weights, self.cfg.motion_sampling, g)
        pick = pick.to(self.device)
        if self.cfg.augment == "dihedral":
            element = torch.randint(DIHEDRAL, (batch_size,), generator=g).to(self.device)
            return self.window(self.starts[pick], element)
        return self.window(self.starts[pick])


def mixed_draw(count: int, size: int, weights: torch.Tensor | None, share: float,
               generator: torch.Generator) -> torch.Tensor:
    """``size`` indices into ``count`` rows: ``round(share * size)`` of them drawn in proportion to ``weights``
    (with replacement) after the rest drawn uniformly, so that without weights, or at share 0, the draw is the
    plain uniform one (``data.motion_sampling``; the state model's ``--motion-sampling`` draws the same way)."""
    weighted = 0 if weights is None else round(share * size)
    pick = torch.randint(count, (size - weighted,), generator=generator)
    if weighted:
        pick = torch.cat([pick, torch.multinomial(weights, weighted, replacement=True, generator=generator)])
    return pick


def window_motion_weights(cfg: DataConfig, state: np.ndarray | None, starts: np.ndarray) -> torch.Tensor:
    """Each window's draw probability under ``data.motion_sampling`` [len(starts)], float64 on the CPU: the
    path the state's ``motion_dims`` travel from the window's leading frame to its last (summed over its model
    frames, so a push that comes back still counts), over the sum of every window's."""
    where = f"data.motion_sampling={cfg.motion_sampling} on {cfg.path}"
    if state is None:
        raise StoreError(f"{where}: the store logs no state, so no window's motion can be read (expected a "
                         "state array, or data.motion_sampling=0)")
    dims = list(cfg.motion_dims)
    if max(dims) >= state.shape[1]:
        raise StoreError(f"{where}: data.motion_dims={dims} index a state of {state.shape[1]} values")
    frame_idx = starts[:, None] + cfg.frame_skip * np.arange(cfg.window + 1)[None]  # [W, T+1], as window()
    path = state[frame_idx][..., dims].astype(np.float64)
    travel = np.linalg.norm(np.diff(path, axis=1), axis=-1).sum(1)
    if not np.isfinite(travel).all() or travel.sum() <= 0:
        raise StoreError(f"{where}: the state's dims {dims} never move (or are not finite) in the training "
                         "windows, so there is nothing to weight by")
    return torch.from_numpy(travel / travel.sum())


def check_dihedral(cfg: DataConfig, store: TrajectoryStore, codec: FrameCodec) -> None:
    """``data.augment=dihedral`` needs what PushT's symmetries act on: a PushT store (its physics is what is
    symmetric) with 2-D targets and PushT states, and pixel frames (a latent codec's latents do not turn
    with the frame)."""
    where = f"data.augment=dihedral on {cfg.path}"
    if "pusht" not in store.attrs:
        raise StoreError(f"{where}: a PushT store expected (its physics is what is symmetric)")
    if isinstance(codec, LatentCodec):
        raise StoreError(f"{where}: the pixel codec expected (a latent codec's latents do not turn with the "
                         "frame)")
    if store.action_dim != 2:
        raise StoreError(f"{where}: 2-D target actions expected, the store's are {store.action_dim}-D")
    if store.state_dim and store.state_dim < 5:
        raise StoreError(f"{where}: PushT states (agent x, y, block x, y, angle) expected, the store's have "
                         f"{store.state_dim} values")


def first_frames(batch: dict[str, torch.Tensor], n: int) -> dict[str, torch.Tensor]:
    """The first ``n`` frames of every window of a batch (every entry is [B, T, ...])."""
    return {k: v[:, :n] for k, v in batch.items()}


def data_split(cfg: DataConfig, store: TrajectoryStore) -> tuple[list[int], list[int]]:
    """The store's (train, held-out) episodes under ``cfg``'s fraction, seed and ``split_first_episodes``."""
    cfg.validate()
    if cfg.split_first_episodes > store.num_episodes:
        raise ConfigError(f"data.split_first_episodes={cfg.split_first_episodes}: more than the "
                          f"{store.num_episodes} episodes of {cfg.path}")
    return split_episodes(store.num_episodes, cfg.val_fraction, cfg.split_seed, cfg.split_first_episodes)


def load_split(cfg: DataConfig) -> tuple[TrajectoryStore, Split, NormStats]:
    """The store, its episode split and the action normalization stats."""
    store = TrajectoryStore(cfg.path, key_map_from_config(cfg.key_map, cfg.path))
    train, val = data_split(cfg, store)
    if not train:
        raise StoreError(f"store {cfg.path} has too few episodes ({store.num_episodes}) for a training split")
    return store, Split(train, val), store.stats()["action"]


def frame_skip_stats(stats: NormStats, frame_skip: int) -> dict[str, list[float]]:
    """Action stats of the concatenated k-command action the model sees (the store's stats repeated)."""
    return {k: list(np.tile(getattr(stats, k), frame_skip)) for k in ("mean", "std", "min", "max")}
