"""SF-DMD: self-forcing distribution matching (reverse divergence, on-policy).

The student rolls out autoregressively from ``context`` real frames under the
window's dataset actions, with its own few-step sampler and KV cache (the same
:func:`crcm_robotics.model.sampler.rollout` the runtime uses); gradients flow
only through one random exit step per frame and the cache always receives the
detached frame. The generated clip is noised, and the DMD gradient is

    (x0̂_fake − x0̂_teacher) / mean|x − x0̂_teacher|     (per sample)

where both critics see the clip in the teacher-forcing layout (noisy frame i
given the clean context + generated frames before it). The fake score starts
as a copy of the teacher and is trained online to denoise student rollouts,
``fake_updates`` times per student update (two time scales); the rollouts of
those updates run as one batch (``dmd.fake_rollouts_batched``).

With ``dmd.rollout_frames`` past the training window (Self-Forcing++), the
rollout runs on with its KV window rolling, and both critics see only its last
``train_window`` frames: the generated frames before them are their clean
history, and only the last ``train_window − context`` frames are scored (and
carry gradients).
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from crcm_robotics.config import DMDConfig, TeacherObjectiveConfig
from crcm_robotics.model import trigflow as tf
from crcm_robotics.model.dit import CausalDiT
from crcm_robotics.model.sampler import SamplerSpec, encode_context, rollout
from distill.layout import tf_forward
from distill.student import StudentMethod
from distill.teacher import denoising_loss
from distill.trainer import sync_grads


class SFDMD(StudentMethod):
    name = "sf_dmd"

    def __init__(self, student: CausalDiT, teacher: CausalDiT, cfg: DMDConfig, fake_objective: TeacherObjectiveConfig,
                 sampler: SamplerSpec, amp_dtype: torch.dtype | None = None, train_window: int | None = None):
        super().__init__(student, teacher, sampler)
        self.cfg = cfg
        self.train_window = train_window  # frames the critics see (None: the whole batch window)
        self.fake_objective = fake_objective
        self.amp_dtype = amp_dtype
        self.fake = copy.deepcopy(teacher).train().requires_grad_(True)
        self.fake_opt = torch.optim.AdamW(self.fake.parameters(), lr=cfg.fake_lr, betas=(0.0, 0.99),
                                          weight_decay=0.0)
        self.generator = torch.Generator(device=next(student.parameters()).device)

    # -- the student's own rollouts ------------------------------------------------------------------
    def scored_frames(self, window: int) -> int:
        """Generated frames the critics score in a batch window of ``window`` frames."""
        return min(window, self.train_window or window) - self.cfg.context

    def generate(self, batch: dict[str, torch.Tensor], step: int, train: bool) -> torch.Tensor:
        """Student frames after the real context: [B, T−K, C, H, W]. With ``train``, gradients flow through
        the exit step of each scored frame (the last ones; the frames before them are generated without)."""
        x, action = batch["x"], batch["action"]
        k = self.cfg.context
        if not 1 <= k < x.shape[1]:
            raise ValueError(f"dmd.context={k} must be in [1, window-1] for a window of {x.shape[1]} frames")
        self.generator.manual_seed((2 * step + int(train)) % 2**62)
        cache = self.student.new_cache(x.shape[0], x.device)
        with torch.no_grad():
            encode_context(self.student, cache, x[:, :k], action[:, :k])
        scored = self.scored_frames(x.shape[1])
        lead = x.shape[1] - k - scored  # frames generated before the scored ones (past the training window)
        prev, history = x[:, k - 1 : k], None
        if lead > 0:
            with torch.no_grad():
                history = rollout(self.student, cache, action[:, k : k + lead], self.spec, prev,
                                  generator=self.generator)
            prev = history[:, -1:]
        scored_actions = action[:, k + lead :]
        if train:
            exits = torch.randint(self.spec.steps, (scored,), generator=torch.Generator().manual_seed(step))
            last = rollout(self.student, cache, scored_actions, self.spec, prev, generator=self.generator,
                           exit_steps=exits.tolist(), grad_exit_only=True)
        else:
            with torch.no_grad():
                last = rollout(self.student, cache, scored_actions, self.spec, prev, generator=self.generator)
        return last if history is None else torch.cat([history, last], dim=1)  # no copy at the window length

    def _clip(self, batch: dict[str, torch.Tensor], gen: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What the critics see: the window with generated frames after the context (its last
        ``train_window`` frames), each frame's previous frame, and the actions producing them."""
        k = self.cfg.context
        full = torch.cat([batch["x"][:, :k], gen], dim=1)
        w = k + self.scored_frames(full.shape[1])
        if w == full.shape[1]:
            return full, torch.cat([batch["x_prev"][:, :1], full[:, :-1]], dim=1), batch["action"]
        return full[:, -w:], full[:, -w - 1 : -1], batch["action"][:, -w:]

    # -- fake score: two-time-scale updates -----------------------------------------------------------
    def fake_rollouts(self, batches: list[dict[str, torch.Tensor]], step: int) -> list[torch.Tensor]:
        """The student's frames for each critic batch. Batched: one rollout of all their windows, split back.
        Each row's frames depend only on its own window and noise, so the batched rollout has the distribution
        of separate ones, in one network pass per denoising step instead of one per batch."""
        n = len(batches)  # dmd.fake_updates: the seeds are those of one rollout per batch
        if not self.cfg.fake_rollouts_batched or n == 1:
            return [self.generate(batch, step * n + i, train=False) for i, batch in enumerate(batches)]
        joined = {key: torch.cat([b[key] for b in batches]) for key in batches[0]}
        return list(self.generate(joined, step * n, train=False).split([len(b["x"]) for b in batches]))

    def before_step(self, sample, step: int) -> dict[str, float]:
        n = self.cfg.fake_updates
        if n <= 0:
            return {}
        k = self.cfg.context
        losses, grad_norms = [], []
        self.student.eval()
        # fresh windows for every critic update, still a function of the step
        batches = [sample(-(step * n + i + 1)) for i in range(n)]
        for batch, gen in zip(batches, self.fake_rollouts(batches, step)):
            clip, prev, action = self._clip(batch, gen)
            t = clip.shape[1]
            weight = torch.cat([torch.zeros(k), torch.ones(t - k)]).to(clip.device)
            with torch.autocast(clip.device.type, dtype=self.amp_dtype or torch.float32,
                                enabled=self.amp_dtype is not None):
                loss, _ = denoising_loss(self.fake, clip, prev, action, self.fake_objective, weight)
            self.fake_opt.zero_grad(set_to_none=True)
            loss.backward()
            sync_grads(self.fake)
            grad_norms.append(torch.nn.utils.clip_grad_norm_(self.fake.parameters(), 1.0))
            self.fake_opt.step()
            losses.append(loss.detach())
        self.student.train()
        loss_mean, grad_mean = torch.stack([torch.stack(losses).mean(), torch.stack(grad_norms).mean()]).tolist()
        return {"fake_loss": loss_mean, "fake_grad_norm": grad_mean}

    # -- student: DMD gradient on its own rollouts ---------------------------------------------------
    def loss(self, batch: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        gen = self.generate(batch, step, train=True).float()
        k = self.cfg.context
        clip, prev, action = self._clip(batch, gen.detach())
        gen = gen[:, gen.shape[1] - (clip.shape[1] - k) :]  # the scored frames
        b, t = clip.shape[:2]
        times = self.cfg.t_min + (self.cfg.t_max - self.cfg.t_min) * torch.rand(b, t, device=clip.device)
        noisy = tf.add_noise(clip, torch.randn_like(clip), times)
        zeros = torch.zeros_like(times)
        with torch.no_grad():
            x0_real = tf.x0_from_f(noisy, tf_forward(self.teacher, clip, zeros, noisy, times, action, prev)
                                   .float(), times)[:, k:]
            x0_fake = tf.x0_from_f(noisy, tf_forward(self.fake, clip, zeros, noisy, times, action, prev)
                                   .float(), times)[:, k:]
            scale = (gen.detach() - x0_real).abs().mean(dim=(1, 2, 3, 4), keepdim=True).clamp_min(1e-6)
            grad = torch.nan_to_num((x0_fake - x0_real) / scale)
        loss = 0.5 * ((gen - (gen - grad).detach()) ** 2).mean()
        return loss, {"dmd": float(loss.detach()), "dmd_grad_abs": float(grad.abs().mean())}

    def extra_state(self) -> dict[str, Any]:
        return {"fake": self.fake.state_dict(), "fake_opt": self.fake_opt.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if state:
            self.fake.load_state_dict(state["fake"])
            self.fake_opt.load_state_dict(state["fake_opt"])
