"""Teacher objective: TrigFlow F-prediction with diffusion forcing in the teacher-forcing layout.

Every noisy frame gets its own time t_i (log-normal σ), sees the clean frames
before it (the KV-cache view it will have at inference) and regresses
``F* = cos t·ε − sin t·x0``. Clean context frames may be lightly noised
(``context_noise_prob``) so long rollouts tolerate their own small errors.
With ``state_weight`` > 0 a frozen state probe also reads every predicted clean
frame, and its error against the logged state (PushT: pusher and block pose) is
added: the pixel MSE barely sees a small pushed block turn. With ``action_dropout`` > 0 a noisy frame's
command is sometimes the network's learnt null action, for classifier-free action guidance at sampling.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as Fn

from crcm_robotics.config import ConfigError, ModelConfig, TeacherObjectiveConfig, TeacherTrainConfig
from crcm_robotics.model import trigflow as tf
from crcm_robotics.model.dit import CausalDiT
from crcm_robotics.model.sampler import SamplerSpec, encode_context, rollout
from crcm_robotics.model.tokenizer import FrameCodec, PixelCodec
from crcm_robotics.plan.probe import StateProbe, load_probe
from distill.layout import tf_forward
from distill.trainer import MethodDefaults


def motion_weight_map(x0: torch.Tensor, x_prev: torch.Tensor, weight: float, threshold: float,
                      sigma_data: float, patch: int = 0) -> torch.Tensor:
    """Per-pixel loss weight [B, T, 1, H, W]: 1, plus ``weight`` where the frame differs from its previous one.

    A robot's end effector is a few dozen of the frame's pixels, so a plain MSE barely sees whether the
    model moved it; the mask (changed pixels, dilated by one pixel so the edges count) weights both where
    things went and where they left. Unit-space inputs; ``threshold`` is in [-1, 1] pixel units.
    With ``patch`` > 0 the mask grows to every ``patch``×``patch`` token patch it touches: weighting a few
    pixels of a patch made the model sharpen those and leave diffusion noise in the rest of the patch.
    """
    moved = ((x0 - x_prev).abs().amax(dim=2, keepdim=True) * sigma_data > threshold).float()  # [B, T, 1, H, W]
    b, t = moved.shape[:2]
    moved = Fn.max_pool2d(moved.flatten(0, 1), kernel_size=3, stride=1, padding=1)
    if patch > 0:
        moved = Fn.interpolate(Fn.max_pool2d(moved, kernel_size=patch, stride=patch), scale_factor=patch,
                               mode="nearest")
    return 1.0 + weight * moved.unflatten(0, (b, t))


def state_probe_loss(probe: StateProbe, x0_hat: torch.Tensor, state: torch.Tensor,
                     sigma_data: float) -> torch.Tensor:
    """Mean squared error, in the probe's embedding, between the state a frozen probe reads off predicted
    clean frames ``x0_hat`` [B, T, 3, H, W] (pixel unit space) and the logged ``state`` [B, T, S].

    The embedding puts every position in units of its spread in the store and an angle as (cos, sin), so a
    block turned 20° costs as much as one moved about a third of its spread. The pixels are not clamped, so
    every predicted pixel gets a gradient."""
    pixels = x0_hat.flatten(0, 1).float() * sigma_data  # [B*T, 3, H, W] in [-1, 1]
    target = probe.spec.embed_states(state.flatten(0, 1).float())
    return ((probe(pixels).float() - target) ** 2).mean()


def denoising_loss(
    net: nn.Module, x0: torch.Tensor, x_prev: torch.Tensor, action: torch.Tensor, cfg: TeacherObjectiveConfig,
    frame_weight: torch.Tensor | None = None, probe: StateProbe | None = None,
    state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """F-prediction MSE of every frame of x0 [B, T, C, H, W] in the teacher-forcing layout.

    Shared by the teacher and SF-DMD's fake score; ``frame_weight`` [T] selects
    which frames count (the fake score learns only the generated ones). With ``probe`` and the logged
    ``state`` [B, T, S] (the teacher, when ``cfg.state_weight`` > 0) the state-probe loss of the predicted
    clean frames is added, weighted by ``cfg.state_weight``.
    """
    b, t = x0.shape[:2]
    dev = x0.device
    pixel_w = None
    if cfg.motion_weight > 0:
        pixel_w = motion_weight_map(x0, x_prev, cfg.motion_weight, cfg.motion_threshold, net.cfg.sigma_data,
                                    net.cfg.patch if cfg.motion_region == "patch" else 0)
    times = tf.sample_time_lognormal((b, t), cfg.p_mean, cfg.p_std, device=dev)
    eps = torch.randn_like(x0)
    x_t = tf.add_noise(x0, eps, times)
    t_clean = torch.zeros(b, t, device=dev)
    x_clean = x0
    if cfg.context_noise_prob > 0:
        # Corrupt the clean context (and, consistently, each frame's previous frame): the model learns to
        # repair imperfect history, as its own rollouts will feed it. Labeled: the corruption's time is the
        # frame's conditioning; unlabeled: the frame still claims t = 0, as generated frames do at inference.
        seq = torch.cat([x_prev[:, :1], x0], dim=1)  # [B, T+1]: the window's leading frame is frame 0's prev
        pick = torch.rand(b, t + 1, device=dev) < cfg.context_noise_prob
        t_ctx = torch.rand(b, t + 1, device=dev) * cfg.context_noise_t * pick
        seq = tf.add_noise(seq, torch.randn_like(seq), t_ctx)
        x_clean, x_prev = seq[:, 1:], seq[:, :-1]
        if cfg.context_noise_labeled:
            t_clean = t_ctx[:, 1:]
    noisy_action = None
    if cfg.action_dropout > 0:  # the noisy frame learns the action-free prediction too (action guidance)
        drop = torch.rand(b, t, 1, device=dev) < cfg.action_dropout
        noisy_action = torch.where(drop, net.null_actions(action), action)
    f_pred = tf_forward(net, x_clean, t_clean, x_t, times, action, x_prev, noisy_action)
    sq_err = (f_pred.float() - tf.target_f(x0, eps, times)) ** 2  # [B, T, C, H, W]
    if pixel_w is None:
        per_frame = sq_err.mean(dim=(0, 2, 3, 4))  # [T]
    else:  # weighted mean over pixels: the moving ones count (1 + motion_weight)×
        per_frame = (sq_err * pixel_w).sum(dim=(0, 2, 3, 4)) / (pixel_w.sum(dim=(0, 2, 3, 4)) * sq_err.shape[2])
    w = torch.ones(t, device=dev) if frame_weight is None else frame_weight
    loss = (per_frame * w).sum() / w.sum()
    pf = per_frame.detach()
    logs = {"mse_first": float(pf[0]), "mse_rest": float(pf[1:].mean()) if t > 1 else float(pf[0])}
    if probe is not None and cfg.state_weight > 0:
        if state is None:
            raise ValueError("the state-probe loss needs the batch's logged states (batch['state'])")
        x0_hat = tf.x0_from_f(x_t, f_pred.float(), times)
        state_loss = state_probe_loss(probe, x0_hat, state, net.cfg.sigma_data)
        loss = loss + cfg.state_weight * state_loss
        logs["state_loss"] = float(state_loss.detach())
    return loss, logs


class TeacherDiffusion(MethodDefaults):
    name = "teacher"

    def __init__(self, model: CausalDiT, cfg: TeacherObjectiveConfig, probe: StateProbe | None = None):
        cfg.validate()
        self.student = model  # the network being trained (the trainer's name for it)
        self.cfg = cfg
        self.probe = probe  # frozen; not the trainer's (never optimised or saved with the teacher)

    def loss(self, batch: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        return denoising_loss(self.student, batch["x"], batch["x_prev"], batch["action"], self.cfg,
                              probe=self.probe, state=batch.get("state"))

    def sampler_spec(self) -> SamplerSpec:
        return SamplerSpec("ode", self.cfg.eval_steps, self.cfg.eval_solver)  # type: ignore[arg-type]

    def meta(self) -> dict[str, Any]:
        spec = self.sampler_spec()
        return {"kind": "teacher", "sampler": {"kind": spec.kind, "steps": spec.steps, "solver": spec.solver}}

    def preview(self, net: nn.Module, batch: dict[str, torch.Tensor], codec: FrameCodec) -> np.ndarray:
        return preview_rollout(net, codec, batch, self.sampler_spec())


def preview_rollout(net: CausalDiT, codec: FrameCodec, batch: dict[str, torch.Tensor], spec: SamplerSpec,
                    context: int = 2) -> np.ndarray:
    """GIF frames: real (top) over predicted (bottom), for each window in the batch side by side."""
    x, action = batch["x"], batch["action"]
    b, t = x.shape[:2]
    cache = net.new_cache(b, x.device)
    encode_context(net, cache, x[:, :context].float(), action[:, :context].float())
    gen = torch.Generator(device=x.device).manual_seed(0)
    pred = rollout(net, cache, action[:, context:].float(), spec, x[:, context - 1 : context].float(), generator=gen,
                   project=codec.quantize)
    real = codec.decode(x).cpu().numpy()  # [B, T, H, W, 3]
    fake = np.concatenate([real[:, :context], codec.decode(pred).cpu().numpy()], axis=1)
    pair = np.concatenate([real, fake], axis=2)  # stack vertically: [B, T, 2H, W, 3]
    return np.concatenate(list(pair), axis=2)  # windows side by side: [T, 2H, B*W, 3]


def load_state_probe(cfg: TeacherObjectiveConfig, codec: FrameCodec, model_cfg: ModelConfig,
                     state: torch.Tensor | None, device: torch.device) -> StateProbe | None:
    """The frozen probe of the state loss (None when ``cfg.state_weight`` is 0), checked against the run: it
    must read the frames the model predicts, and the store must log the states it reads."""
    if cfg.state_weight <= 0:
        return None
    if not isinstance(codec, PixelCodec):
        raise ConfigError("objective.state_weight > 0 reads predicted pixels; this run diffuses a latent "
                          "codec's grid (model.codec): use a pixel-space teacher or state_weight=0")
    probe = load_probe(cfg.state_probe, device)
    if probe.spec.image_hw != (model_cfg.height, model_cfg.width):
        ph, pw = probe.spec.image_hw
        raise ConfigError(f"objective.state_probe={cfg.state_probe} reads {ph}x{pw} frames; this model "
                          f"predicts {model_cfg.height}x{model_cfg.width}")
    n = len(probe.spec.state_names)
    if state is None or state.shape[-1] != n:
        got = "no states" if state is None else f"{state.shape[-1]} state columns"
        raise ConfigError(f"objective.state_probe={cfg.state_probe} reads {n} states "
                          f"({', '.join(probe.spec.state_names)}); the store logs {got}")
    probe.requires_grad_(False)
    return probe


def start_from(model: CausalDiT, path: str, model_cfg: ModelConfig) -> None:
    """``init=CKPT``: the checkpoint's weights in this run's network, which must be the same network."""
    from crcm_robotics.model.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    theirs, ours = dataclasses.asdict(ckpt.model_config), dataclasses.asdict(model_cfg)
    differ = [f"model.{k} ({theirs.get(k)} there, {v} here)" for k, v in ours.items() if theirs.get(k) != v]
    if differ:
        raise ConfigError(f"init={path}: its network is not this run's: {', '.join(differ)}")
    model.load_state_dict({k: v.float() for k, v in ckpt.state_dict.items()}, strict=True)


def train_teacher(cfg: TeacherTrainConfig):
    from distill.context import build_context, resolved_config
    from distill.trainer import Trainer
    from distill.validation import build_validator

    cfg.train.validate()  # before the store is loaded
    ctx = build_context(cfg.data, cfg.model, cfg.train, cfg.optim.batch_size)
    torch.manual_seed(cfg.train.seed)
    model = CausalDiT(ctx.model_cfg).to(ctx.device)
    if cfg.init:
        if cfg.train.resume:
            raise ConfigError("init= starts a new run from a checkpoint's weights and train.resume= continues "
                              "one exactly: give one")
        start_from(model, cfg.init, ctx.model_cfg)
    if cfg.train.compile:
        model.compile()
    cfg.objective.validate()
    if cfg.objective.action_dropout > 0 and not ctx.model_cfg.action_null:
        raise ConfigError(f"objective.action_dropout={cfg.objective.action_dropout} needs model.action_null=true "
                          "(the learnt null action it puts in place of a command)")
    probe = load_state_probe(cfg.objective, ctx.codec, ctx.model_cfg, ctx.windows.state, ctx.device)
    method = TeacherDiffusion(model, cfg.objective, probe)
    validator = build_validator(cfg.train.validation, cfg.data, ctx.split.val, ctx.stats["action"], method.meta(),
                                ctx.model_cfg, ctx.codec, ctx.device)
    meta = ctx.base_meta(cfg.data) | ({"init": cfg.init} if cfg.init else {})
    trainer = Trainer(
        method, ctx.sampler(cfg.train.seed), cfg.train, cfg.optim, resolved_config(cfg, ctx.model_cfg), ctx.stats,
        meta, ctx.env, ctx.device, preview_batch=ctx.preview_batch() if ctx.env.main else None,
        validator=validator, codec=ctx.codec,
    )
    return trainer.run()
