"""``crcm train codec``: the latent frame codec (``crcm_robotics.model.codec``) on a store's frames.

Objective: ``MSE(x̂, x) + edge_weight · L1(∇x̂, ∇x)`` on pixels in [-1, 1], where ∇ are
horizontal and vertical finite differences: MSE alone blurs the thin arm links and
the gripper, the gradient term keeps their edges. Trained by the shared trainer
(EMA, warm-up, checkpoints with safetensors + meta.json + resolved config, exact
resume with ``train.resume=CKPT``). When training ends, the EMA network's latent
statistics are measured on training frames and the held-out PSNR on frames of
validation episodes (uint8 round trip through :class:`LatentCodec`, what the
runtime sees); both go into the checkpoint and the final JSON line.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as Fn

from crcm_robotics.config import CodecTrainConfig, ConfigError, key_map_from_config, to_dict
from crcm_robotics.data.dataset import split_episodes
from crcm_robotics.data.schema import StoreError
from crcm_robotics.data.store import TrajectoryStore
from crcm_robotics.model.codec import FrameAutoencoder, LatentCodec
from crcm_robotics.model.tokenizer import FrameCodec
from distill.trainer import MethodDefaults, Trainer, TrainResult, setup_distributed


def edge_loss(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean L1 between the horizontal and vertical finite differences of ``x_hat`` and ``x`` [B, 3, H, W]."""
    dx = (x_hat.diff(dim=-1) - x.diff(dim=-1)).abs().mean()
    dy = (x_hat.diff(dim=-2) - x.diff(dim=-2)).abs().mean()
    return 0.5 * (dx + dy)


def psnr_uint8(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-frame PSNR (dB) of uint8 frames [N, H, W, 3]; identical frames count as 100 dB."""
    mse = ((a.float() - b.float()) ** 2).flatten(1).mean(1)
    psnr = 10 * torch.log10(255.0**2 / mse.clamp_min(1e-10))
    return torch.where(mse > 0, psnr, torch.full_like(mse, 100.0))


class CodecObjective(MethodDefaults):
    name = "codec"

    def __init__(self, net: FrameAutoencoder, edge_weight: float):
        if edge_weight < 0:
            raise ConfigError(f"edge_weight must be ≥ 0, got {edge_weight}")
        self.student = net  # the trainer's name for the network being trained
        self.edge_weight = edge_weight
        self.final_metrics: dict[str, float] = {}

    def loss(self, batch: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        x = batch["x"]
        x_hat = self.student(x).float()
        mse = Fn.mse_loss(x_hat, x)
        edge = edge_loss(x_hat, x)
        psnr = 10 * math.log10(4.0 / max(float(mse.detach()), 1e-10))  # peak-to-peak 2 in [-1, 1]
        return mse + self.edge_weight * edge, {"mse": float(mse.detach()), "edge": float(edge.detach()),
                                               "psnr": psnr}

    def preview(self, net: nn.Module, batch: dict[str, torch.Tensor], codec: FrameCodec) -> np.ndarray:
        raise NotImplementedError("the codec trainer passes no preview batch")

    def meta(self) -> dict[str, Any]:
        cfg = self.student.cfg
        latent_shape = [cfg.latent_channels, cfg.height // cfg.stride, cfg.width // cfg.stride]
        return {"kind": "codec", "stride": cfg.stride, "latent_shape": latent_shape,
                "metrics": self.final_metrics}


def _frames_of(store: TrajectoryStore, episodes: list[int]) -> torch.Tensor:
    parts = [store.frames(*store.episode_bounds(e)) for e in episodes]
    return torch.from_numpy(np.concatenate(parts))  # uint8 [N, H, W, 3]


def _evenly(n_total: int, n: int) -> torch.Tensor:
    return torch.linspace(0, n_total - 1, min(n, n_total)).round().long()


@torch.no_grad()
def held_out_psnr(codec: LatentCodec, frames: torch.Tensor, batch: int = 64) -> dict[str, float]:
    """Mean per-frame PSNR and the PSNR of the mean squared error, uint8 round trip through ``codec``."""
    device = codec.net.latent_shift.device
    psnrs, sq = [], []
    for i in range(0, len(frames), batch):
        real = frames[i : i + batch].to(device)
        recon = codec.decode(codec.encode(real))
        psnrs.append(psnr_uint8(recon, real))
        sq.append(((recon.float() - real.float()) ** 2).flatten(1).mean(1))
    mse = float(torch.cat(sq).mean())
    return {"val_psnr": round(float(torch.cat(psnrs).mean()), 3),
            "val_psnr_of_mean_mse": round(10 * math.log10(255.0**2 / max(mse, 1e-10)), 3),
            "val_frames": len(frames)}


def train_codec(cfg: CodecTrainConfig) -> tuple[TrainResult, dict[str, float]]:
    """Train, then measure latent statistics and held-out PSNR; returns the run and its final metrics."""
    if not cfg.data.path:
        raise ConfigError("data.path=STORE is required (a trajectory store, e.g. from `crcm data metaworld`)")
    cfg.train.validate()
    env, device = setup_distributed(cfg.train.device)
    store = TrajectoryStore(cfg.data.path, key_map_from_config(cfg.data.key_map, cfg.data.path))
    h, w, _ = store.image_shape
    codec_cfg = dataclasses.replace(cfg.codec, height=h, width=w)
    codec_cfg.validate()  # an image size the stride does not divide is a one-line error here
    train_eps, val_eps = split_episodes(store.num_episodes, cfg.data.val_fraction, cfg.data.split_seed)
    if not train_eps:
        raise StoreError(f"store {cfg.data.path} has too few episodes ({store.num_episodes}) for a "
                         "training split")
    frames = _frames_of(store, train_eps).to(device)
    val_frames = _frames_of(store, val_eps) if val_eps else None
    torch.manual_seed(cfg.train.seed)
    net = FrameAutoencoder(codec_cfg).to(device)
    method = CodecObjective(net, cfg.edge_weight)
    per_rank = cfg.optim.batch_size // env.world
    if env.world > 1 and cfg.optim.batch_size % env.world:
        raise ConfigError(f"optim.batch_size {cfg.optim.batch_size} is not divisible by the {env.world} "
                          "DDP ranks")

    def sample(step: int) -> dict[str, torch.Tensor]:  # a pure function of (seed, step, rank)
        g = torch.Generator().manual_seed(hash((cfg.train.seed, step, env.rank)) & 0x7FFF_FFFF_FFFF)
        pick = torch.randint(len(frames), (per_rank,), generator=g).to(device)
        return {"x": frames[pick].movedim(-1, 1).float() / 127.5 - 1.0}

    config = to_dict(cfg)
    config["codec"] = to_dict(codec_cfg)
    meta = {"data_path": cfg.data.path, "data_hash": store.content_hash(),
            "split": {"train": train_eps, "val": val_eps}}
    trainer = Trainer(method, sample, cfg.train, cfg.optim, config, {}, meta, env, device)
    result = trainer.run()
    if env.main:
        ema: FrameAutoencoder = trainer.ema.module
        with torch.no_grad():
            picked = frames[_evenly(len(frames), cfg.stats_frames).to(device)]
            stats_x = picked.movedim(-1, 1).float() / 127.5 - 1.0
            ema.set_latent_stats(torch.cat([ema.encoder(b) for b in stats_x.split(64)]))
        codec = LatentCodec(ema.eval())
        train_sample = frames[_evenly(len(frames), cfg.eval_frames).to(device)]
        final: dict[str, float] = {"train_psnr": held_out_psnr(codec, train_sample)["val_psnr"]}
        if val_frames is not None:
            final.update(held_out_psnr(codec, val_frames[_evenly(len(val_frames), cfg.eval_frames)]))
        method.final_metrics = final
        trainer.save(result.steps, result.last_metrics, result.seconds)  # now with latent stats and metrics
        return result, final
    return result, {}


def run_train_codec(cfg: CodecTrainConfig) -> int:
    result, final = train_codec(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        last = {k: round(v, 5) for k, v in result.last_metrics.items()}
        print(json.dumps({"checkpoint": str(result.out), "steps": result.steps,
                          "seconds": round(result.seconds, 1), **last, **final}))
    return 0
