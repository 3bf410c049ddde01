"""Causal-rCM: TF-sCM initialisation, then SF-DMD with the TF-sCM loss kept as a regulariser.

Stage 1 (``rcm.scm_steps`` updates) is pure teacher-forcing sCM: forward
divergence, offline, covers every mode of the teacher. Stage 2 adds the
on-policy self-forcing DMD loss (reverse divergence: sharp, and trained on the
student's own rollouts so errors do not compound), with the sCM term weighted
by ``rcm.scm_weight`` so the student does not drift from the teacher.

Two candidate fixes for students that end up below their teacher (issue 14), both off by default:
``rcm.scm_stage_patience`` ends stage 1 early once held-out validation (``train.validation``) stops
improving, and ``rcm.scm_weight_schedule`` fades the sCM regulariser to 0 over ``rcm.scm_fade_steps``
stage-2 updates (linear or cosine).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from crcm_robotics.config import DMDConfig, RCMConfig, SCMConfig, TeacherObjectiveConfig
from crcm_robotics.model.dit import CausalDiT
from crcm_robotics.model.sampler import SamplerSpec
from distill.batches import first_frames
from distill.sf_dmd import SFDMD
from distill.student import StudentMethod
from distill.tf_scm import TFsCM


class CausalRCM(StudentMethod):
    name = "causal_rcm"

    def __init__(self, student: CausalDiT, teacher: CausalDiT, scm: SCMConfig, dmd: DMDConfig, rcm: RCMConfig,
                 fake_objective: TeacherObjectiveConfig, sampler: SamplerSpec,
                 amp_dtype: torch.dtype | None = None, train_window: int | None = None):
        super().__init__(student, teacher, sampler)
        rcm.validate()
        self.cfg = rcm
        self.train_window = train_window  # TF-sCM's window; batches may be longer (dmd.rollout_frames)
        self.stage2_from = rcm.scm_steps  # the first stage-2 update; validation may bring it forward
        self.stage1_best = -math.inf  # best held-out figure of stage 1, and validations since it improved
        self.stage1_stale = 0
        self.scm = TFsCM(student, teacher, scm, sampler)
        self.dmd = SFDMD(student, teacher, dmd, fake_objective, sampler, amp_dtype, train_window)

    def _stage2(self, step: int) -> bool:
        return step >= self.stage2_from

    def scm_weight(self, step: int) -> float:
        """λ of the sCM regulariser at stage-2 update ``step``: constant, or fading to 0 over scm_fade_steps."""
        if self.cfg.scm_weight_schedule == "constant":
            return self.cfg.scm_weight
        u = min(1.0, max(0.0, (step - self.stage2_from) / self.cfg.scm_fade_steps))
        fade = 1.0 - u if self.cfg.scm_weight_schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * u))
        return self.cfg.scm_weight * fade

    def on_validation(self, step: int, figures: dict[str, float]) -> None:
        """With scm_stage_patience: end stage 1 once that many validations in a row did not beat its best."""
        from distill.validation import SCORE

        if self.cfg.scm_stage_patience <= 0 or self._stage2(step):
            return
        if figures[SCORE] > self.stage1_best:
            self.stage1_best, self.stage1_stale = figures[SCORE], 0
        else:
            self.stage1_stale += 1
        if self.stage1_stale >= self.cfg.scm_stage_patience:
            self.stage2_from = step  # ``step`` updates are done: the next one is the first of stage 2

    def before_step(self, sample, step: int) -> dict[str, float]:
        return self.dmd.before_step(sample, step) if self._stage2(step) else {}

    def loss(self, batch: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        weight = self.scm_weight(step) if self._stage2(step) else 1.0
        if weight == 0.0:  # a faded regulariser costs no JVP
            scm_loss, metrics = torch.zeros((), device=batch["x"].device), {}
        else:  # the sCM term first, as before the schedule existed: the same random draws per step
            tf_batch = batch if self.train_window is None else first_frames(batch, self.train_window)
            scm_loss, metrics = self.scm.loss(tf_batch, step)
        if not self._stage2(step):
            return scm_loss, {**metrics, "stage": 1}
        dmd_loss, dmd_metrics = self.dmd.loss(batch, step)
        loss = self.cfg.dmd_weight * dmd_loss + weight * scm_loss
        return loss, {**metrics, **dmd_metrics, "stage": 2, "scm_weight": weight}

    def meta(self) -> dict[str, Any]:
        return {**super().meta(), "scm_stage_updates": self.stage2_from}

    def extra_state(self) -> dict[str, Any]:
        stage = {"stage2_from": self.stage2_from, "stage1_best": self.stage1_best, "stage1_stale": self.stage1_stale}
        return {**self.dmd.extra_state(), **self.scm.extra_state(), "rcm_stage": stage}

    def extra_parameters(self) -> list[torch.nn.Parameter]:
        return self.scm.extra_parameters()

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.dmd.load_extra_state(state)
        self.scm.load_extra_state(state)
        if "rcm_stage" in state:
            self.stage2_from = int(state["rcm_stage"]["stage2_from"])
            self.stage1_best = float(state["rcm_stage"]["stage1_best"])
            self.stage1_stale = int(state["rcm_stage"]["stage1_stale"])
