"""Causal-rCM: TF-sCM initialisation, then SF-DMD with the TF-sCM loss kept as a regulariser.

Stage 1 (``rcm.scm_steps`` updates) is pure teacher-forcing sCM: forward
divergence, offline, covers every mode of the teacher. Stage 2 adds the
on-policy self-forcing DMD loss (reverse divergence: sharp, and trained on the
student's own rollouts so errors do not compound), with the sCM term weighted
by ``rcm.scm_weight`` so the student does not drift from the teacher.
"""

from __future__ import annotations

from typing import Any

import torch

from crcm_robotics.config import DMDConfig, RCMConfig, SCMConfig, TeacherObjectiveConfig
from crcm_robotics.model.dit import CausalDiT
from crcm_robotics.model.sampler import SamplerSpec
from distill.sf_dmd import SFDMD
from distill.student import StudentMethod
from distill.tf_scm import TFsCM


class CausalRCM(StudentMethod):
    name = "causal_rcm"

    def __init__(self, student: CausalDiT, teacher: CausalDiT, scm: SCMConfig, dmd: DMDConfig, rcm: RCMConfig,
                 fake_objective: TeacherObjectiveConfig, sampler: SamplerSpec, amp_dtype: torch.dtype | None = None):
        super().__init__(student, teacher, sampler)
        self.cfg = rcm
        self.scm = TFsCM(student, teacher, scm, sampler)
        self.dmd = SFDMD(student, teacher, dmd, fake_objective, sampler, amp_dtype)

    def _stage2(self, step: int) -> bool:
        return step >= self.cfg.scm_steps

    def before_step(self, sample, step: int) -> dict[str, float]:
        return self.dmd.before_step(sample, step) if self._stage2(step) else {}

    def loss(self, batch: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        scm_loss, metrics = self.scm.loss(batch, step)
        if not self._stage2(step):
            return scm_loss, {**metrics, "stage": 1}
        dmd_loss, dmd_metrics = self.dmd.loss(batch, step)
        loss = self.cfg.dmd_weight * dmd_loss + self.cfg.scm_weight * scm_loss
        return loss, {**metrics, **dmd_metrics, "stage": 2}

    def extra_state(self) -> dict[str, Any]:
        return self.dmd.extra_state()

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.dmd.load_extra_state(state)
