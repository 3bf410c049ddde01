"""What every training run sets up the same way: device/DDP, data split, batches, stats, seeds."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crcm_robotics.config import ConfigError, DataConfig, ModelConfig, TrainLoopConfig, to_dict
from crcm_robotics.model.tokenizer import FrameCodec, fit_model_config, make_codec
from distill.batches import MemoryWindows, Split, frame_skip_stats, load_split
from distill.trainer import DistEnv, setup_distributed


@dataclass
class RunContext:
    env: DistEnv
    device: torch.device
    split: Split
    windows: MemoryWindows
    val_windows: MemoryWindows | None
    model_cfg: ModelConfig  # its diffusion grid (image or codec latents) and action_dim fitted to the data
    codec: FrameCodec  # frames ↔ diffusion space (pixels, or the latent codec the checkpoints will carry)
    stats: dict[str, Any]
    data_hash: str
    batch_size: int  # per rank

    def sampler(self, seed: int):
        """step -> batch, a pure function of (seed, step, rank)."""
        return lambda step: self.windows.sample(self.batch_size, seed, step, self.env.rank)

    def preview_batch(self, n: int = 2) -> dict[str, torch.Tensor]:
        src = self.val_windows or self.windows
        idx = torch.linspace(0, len(src) - 1, n).round().long().to(src.starts.device)
        return src.window(src.starts[idx])

    def base_meta(self, data_cfg: DataConfig) -> dict[str, Any]:
        return {"data_path": data_cfg.path, "data_hash": self.data_hash, "split": dataclasses.asdict(self.split),
                "window": data_cfg.window, "frame_skip": data_cfg.frame_skip}


def build_context(data: DataConfig, model: ModelConfig, loop: TrainLoopConfig, batch_size: int,
                  ckpt_dir: str | Path | None = None, split_of: dict[str, Any] | None = None) -> RunContext:
    """Device, split, batches and the fitted model config; ``ckpt_dir``: the checkpoint whose codec to use
    (distillation uses its teacher's), else ``model.codec`` names it (or pixels). ``split_of``: a checkpoint's
    meta (distillation passes its teacher's) whose recorded split is used when it was trained on this same store,
    so that a student never trains on the episodes its teacher held out (validation and planning goals)."""
    if not data.path:
        raise ConfigError("data.path=STORE is required (a trajectory store, e.g. from `crcm data pusht`)")
    env, device = setup_distributed(loop.device)
    torch.manual_seed(loop.seed)
    np.random.seed(loop.seed)
    store, split, action_stats = load_split(data)
    data_hash = store.content_hash()  # reads the store's first actions: once
    split = inherited_split(split, split_of, data_hash, data.path, env.main)
    codec = make_codec(model, ckpt_dir, device)
    action_dim = store.action_dim * data.frame_skip
    model_cfg = fit_model_config(model, codec, store.image_shape[:2], data.path, action_dim)
    if model_cfg.cache_frames > data.window - 1:
        raise ConfigError(
            f"model.cache_frames={model_cfg.cache_frames} exceeds the {data.window - 1} frames of history a "
            f"training window of data.window={data.window} shows; inference would meet unseen time offsets"
        )
    windows = MemoryWindows(data, split.train, action_stats, codec, device, store)
    val = windows.subset(split.val, store) if split.val else None
    stats = {"action": frame_skip_stats(action_stats, data.frame_skip), "store_action": action_stats.to_dict()}
    if env.world > 1 and batch_size % env.world:
        raise ValueError(f"optim.batch_size {batch_size} is not divisible by the {env.world} DDP ranks")
    return RunContext(env, device, split, windows, val, model_cfg, codec, stats, data_hash, batch_size // env.world)


def inherited_split(split: Split, split_of: dict[str, Any] | None, data_hash: str, path: str,
                    say: bool = True) -> Split:
    """``split_of``'s recorded split where it was trained on the store of ``data_hash`` and held episodes out,
    else ``split`` (a teacher that held out none has nothing to keep from the student, whose own held-out
    episodes then serve its validation); a one-line note on stderr when the two differ (``say``: the main rank)."""
    meta = split_of or {}
    recorded = meta.get("split") or {}
    if meta.get("data_hash") != data_hash or "train" not in recorded or not recorded.get("val"):
        return split
    theirs = Split([int(e) for e in recorded["train"]], [int(e) for e in recorded["val"]])
    if say and (sorted(theirs.train), sorted(theirs.val)) != (sorted(split.train), sorted(split.val)):
        print(f"split: {path} is the teacher's store, so its split is used ({len(theirs.val)} episodes held out, "
              f"not the {len(split.val)} that data.val_fraction / split_seed / split_first_episodes give)",
              file=sys.stderr)
    return theirs


def resolved_config(cfg: Any, model_cfg: ModelConfig) -> dict[str, Any]:
    """The run's config as plain data, with the model section as actually built."""
    d = to_dict(cfg)
    d["model"] = to_dict(model_cfg)
    return d
