"""``crcm train probe``: fit a :class:`~crcm_robotics.plan.probe.StateProbe` (frames → logged state) on a store.

The probe gives planners a goal cost that is smooth in object position (``cost=probe``). It is trained on the
store's training episodes (the same episode split as the teacher's, from ``data.val_fraction`` and
``data.split_seed``) with pixel noise and blur, so that it also reads a world model's slightly soft imagined
frames, and it reports its held-out error per state in store units (angles in degrees). Save it as
``CKPT/probe`` and every ``WorldModel.load(CKPT)`` finds it.

With ``imagined.ckpt=CKPT`` part of every batch is CKPT's own predictions on windows of the training episodes,
labelled with the states the logged actions truly reached (:class:`Imaginer`). Such a probe
reads an imagined frame as the state the model means by it; it reports its held-out error on CKPT's
predictions too, for PushT split by whether the true block moved.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from crcm_robotics.config import ConfigError, ProbeImaginedConfig, ProbeTrainConfig, key_map_from_config
from crcm_robotics.data.store import TrajectoryStore
from crcm_robotics.plan.probe import ProbeSpec, StateProbe, save_probe
from crcm_robotics.runtime.world_model import resolve_device
from distill.batches import data_split


def load_frames_and_states(store: TrajectoryStore, episodes: list[int], max_frames: int,
                           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """uint8 frames [M, H, W, 3] and float32 states [M, S] of ``episodes``, evenly thinned to ≤ max_frames."""
    lengths = [store.episode_bounds(e)[1] - store.episode_bounds(e)[0] for e in episodes]
    stride = max(1, math.ceil(sum(lengths) / max_frames))
    frames, states = [], []
    for e in episodes:
        lo, hi = store.episode_bounds(e)
        offset = int(rng.integers(stride))
        frames.append(store.frames(lo + offset, hi, stride) if stride > 1 else store.frames(lo, hi))
        states.append(store.state(lo, hi)[offset::stride])
    return np.concatenate(frames), np.concatenate(states).astype(np.float32)


def augment(x_B3HW: torch.Tensor, cfg: ProbeTrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Blur half the batch a little and add pixel noise (imagined frames are soft and grainy)."""
    b = x_B3HW.shape[0]
    blurred = F.avg_pool2d(x_B3HW, 3, stride=1, padding=1, count_include_pad=False)
    mix = (torch.rand(b, 1, 1, 1, generator=gen, device=x_B3HW.device) < cfg.blur_prob).float()
    x = mix * blurred + (1 - mix) * x_B3HW
    return x + cfg.noise_std * torch.randn(x.shape, generator=gen, device=x.device)


class Imaginer:
    """``imagined.ckpt`` loaded once and checked against the store: its predictions on windows of given
    episodes, each frame labelled with the true state it stands for."""

    def __init__(self, cfg: ProbeImaginedConfig, store: TrajectoryStore, device: torch.device):
        from crcm_robotics.data.store import NormStats
        from crcm_robotics.model.checkpoint import build_model, load_checkpoint
        from crcm_robotics.model.sampler import sampler_from_meta
        from crcm_robotics.model.tokenizer import frame_hw, make_codec

        ckpt = load_checkpoint(str(cfg.ckpt))
        self.cfg, self.store, self.device = cfg, store, device
        self.model = build_model(ckpt, device)
        self.codec = make_codec(self.model.cfg, ckpt.path, device)
        if frame_hw(self.model.cfg, self.codec) != tuple(store.image_shape[:2]):
            raise ConfigError(f"imagined.ckpt={cfg.ckpt} predicts {frame_hw(self.model.cfg, self.codec)} "
                              f"frames; the store {store.path} holds {tuple(store.image_shape[:2])}")
        self.skip = int(ckpt.meta.get("frame_skip", 1))
        if self.model.cfg.action_dim != store.action_dim * self.skip:
            raise ConfigError(f"imagined.ckpt={cfg.ckpt} takes {self.model.cfg.action_dim} action values per "
                              f"frame; the store {store.path} logs {store.action_dim} per step (× frame skip "
                              f"{self.skip})")
        self.spec = sampler_from_meta(ckpt.meta, cfg.sampler_steps)
        self.norm = NormStats.from_dict(ckpt.stats["action"])
        self.trained_on = ckpt.meta.get("split", {}).get("train")  # None: the checkpoint records no split

    def split(self, train_eps: list[int], val_eps: list[int]) -> tuple[list[int], list[int]]:
        """The episodes to imagine on: the probe's training episodes the checkpoint also trained on, and
        held-out episodes neither saw (a model's predictions on its own training windows are not what a
        planner sees)."""
        seen = set(int(e) for e in (train_eps if self.trained_on is None else self.trained_on))
        train = [e for e in train_eps if e in seen]
        val = [e for e in val_eps if e not in seen]
        if not train or not val:
            raise ConfigError(f"imagined.ckpt={self.cfg.ckpt} and the probe share {len(train)} training and "
                              f"{len(val)} held-out episodes; both must be ≥ 1 (train them on the same store "
                              "and split)")
        return train, val

    def frames_and_states(self, episodes: list[int], per_episode: int,
                          progress: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Predicted frames uint8 [M, H, W, 3] on windows of ``episodes``, the true states they stand for
        float32 [M, S], and each frame's last real state [M, S] (for the still/moved split)."""
        from crcm_robotics.eval.evaluate import cut_windows, predict_windows

        cfg = self.cfg
        win = cut_windows(self.store, episodes, cfg.context + cfg.horizon, self.skip, per_episode, self.norm)
        if win.states is None:
            raise ConfigError(f"store {self.store.path} logs no states: imagined frames need true states as "
                              "labels")
        last_log = time.perf_counter()

        def report(done: int) -> None:
            nonlocal last_log
            if progress and (time.perf_counter() - last_log > 10 or done == len(win.frames)):
                print(f"probe: imagined {done}/{len(win.frames)} windows ({cfg.horizon} frames each)",
                      flush=True)
                last_log = time.perf_counter()

        pred = predict_windows(self.model, self.codec, self.spec, win.frames, win.actions, cfg.context,
                               self.device, cfg.batch, on_batch=report)
        n, h = pred.shape[:2]
        true = win.states[:, cfg.context:]
        last = np.repeat(win.states[:, cfg.context - 1: cfg.context], h, axis=1)
        return (pred.reshape(n * h, *pred.shape[2:]), true.reshape(n * h, -1).astype(np.float32),
                last.reshape(n * h, -1).astype(np.float32))


def imagined_errors(probe: StateProbe, frames: np.ndarray, states: np.ndarray, last: np.ndarray,
                    pusht: bool) -> dict[str, Any]:
    """Held-out error on imagined frames: per state, and for PushT the block split by whether it moved."""
    out: dict[str, Any] = {"mean_abs_error": held_out_errors(probe, frames, states)}
    if pusht:
        from crcm_robotics.data.pusht_sim import block_errors, block_moved, still_moved_summary

        device = next(probe.parameters()).device
        read = probe.state_of(torch.from_numpy(frames).to(device))
        out["block"] = still_moved_summary(*block_errors(read, states.astype(np.float64)),
                                           block_moved(last.astype(np.float64), states.astype(np.float64)))
    return out


def train_probe(cfg: ProbeTrainConfig) -> dict[str, Any]:
    if not cfg.data.path:
        raise ConfigError("data.path=STORE is required (a trajectory store with data/state)")
    if cfg.steps < 1 or cfg.batch_size < 2:
        raise ConfigError(f"need steps ≥ 1 and batch_size ≥ 2; got {cfg.steps} and {cfg.batch_size}")
    store = TrajectoryStore(cfg.data.path, key_map_from_config(cfg.data.key_map, cfg.data.path))
    if store.state_dim == 0:
        raise ConfigError(f"store {cfg.data.path} has no data/state: a state probe needs logged states")
    names = tuple(store.attrs.get("state_names") or [f"s{i}" for i in range(store.state_dim)])
    train_eps, val_eps = data_split(cfg.data, store)
    val_eps = val_eps or train_eps[-1:]
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    start = time.perf_counter()
    frames, states = load_frames_and_states(store, train_eps, cfg.max_frames, rng)
    val_frames, val_states = load_frames_and_states(store, val_eps, max(cfg.max_frames // 8, 256), rng)
    stats = store.stats().get("state")
    std = stats.std if stats is not None else states.std(0)
    mean = stats.mean if stats is not None else states.mean(0)
    angles = tuple("angle" in n for n in names)
    scale = tuple(cfg.angle_scale if a else float(cfg.position_scale or max(s, 1e-6))
                  for a, s in zip(angles, std))
    spec = ProbeSpec(names, angles, tuple(float(m) for m in mean), scale, store.image_shape[:2], cfg.width)
    probe = StateProbe(spec).to(device)
    opt = torch.optim.AdamW(probe.parameters(), lr=cfg.lr, weight_decay=1e-4)
    # one-cycle needs ≥ 2 warm-up steps (fewer divide by zero inside torch): short runs keep a constant rate
    sched: torch.optim.lr_scheduler.LRScheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    if cfg.steps >= 4:
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.steps,
                                                    pct_start=max(0.1, 2 / cfg.steps))
    frames_t = torch.from_numpy(frames).to(device)
    target_t = spec.embed_states(torch.from_numpy(states).to(device))
    imagined = None
    if cfg.imagined.ckpt:
        cfg.imagined.validate()
        imaginer = Imaginer(cfg.imagined, store, device)
        imag_train, imag_val = imaginer.split(train_eps, val_eps)
        im_frames, im_states, _ = imaginer.frames_and_states(imag_train, cfg.imagined.windows_per_episode,
                                                             cfg.progress)
        imagined = (torch.from_numpy(im_frames).to(device),
                    spec.embed_states(torch.from_numpy(im_states).to(device)))
        imagined_val = imaginer.frames_and_states(imag_val, 4, cfg.progress)
        del imaginer  # the world model is not needed while the probe trains
    n_imagined = round(cfg.batch_size * cfg.imagined.share) if imagined is not None else 0
    gen = torch.Generator(device).manual_seed(cfg.seed)
    last_log = time.perf_counter()
    step, loss = 0, torch.tensor(0.0)
    for step in range(1, cfg.steps + 1):
        idx = torch.randint(len(frames_t), (cfg.batch_size - n_imagined,), generator=gen, device=device)
        batch, target = frames_t[idx], target_t[idx]
        if imagined is not None:  # real frames keep it reading goal images; imagined ones say what they mean
            jdx = torch.randint(len(imagined[0]), (n_imagined,), generator=gen, device=device)
            batch, target = torch.cat([batch, imagined[0][jdx]]), torch.cat([target, imagined[1][jdx]])
        x = augment(StateProbe.to_input(batch), cfg, gen)
        loss = F.smooth_l1_loss(probe(x), target, beta=0.05)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if cfg.progress and (time.perf_counter() - last_log > 10 or step == cfg.steps):
            if not torch.isfinite(loss):
                raise RuntimeError(f"probe training diverged at step {step} (loss {float(loss.detach())})")
            print(f"probe: step {step}/{cfg.steps} loss {float(loss.detach()):.4f}", flush=True)
            last_log = time.perf_counter()
        if cfg.max_minutes and time.perf_counter() - start > cfg.max_minutes * 60:
            break
    probe.eval()
    val = held_out_errors(probe, val_frames, val_states)
    figures = {"probe": cfg.out, "store": cfg.data.path, "steps": step, "train_frames": len(frames),
               "val_frames": len(val_frames), "val_episodes": len(val_eps), "final_loss": round(float(loss.detach()), 5),
               "val_mean_abs_error": val, "seconds": round(time.perf_counter() - start, 1)}
    if imagined is not None:
        figures["imagined"] = {"ckpt": cfg.imagined.ckpt, "train_frames": len(imagined[0]),
                               "val_frames": len(imagined_val[0]), "share": cfg.imagined.share,
                               "val": imagined_errors(probe, *imagined_val, pusht="pusht" in store.attrs)}
        figures["seconds"] = round(time.perf_counter() - start, 1)
    save_probe(cfg.out, probe.cpu(), figures)
    return figures


def held_out_errors(probe: StateProbe, frames: np.ndarray, states: np.ndarray) -> dict[str, float]:
    """Mean absolute error per state in store units (angles: wrapped, in degrees)."""
    from crcm_robotics.eval.evaluate import probe_scores

    device = next(probe.parameters()).device
    return probe_scores(probe, frames[:, None], states[:, None], device)["probe_err_mean"]


def run_train_probe(cfg: ProbeTrainConfig) -> int:
    print(json.dumps(train_probe(cfg)))
    return 0
