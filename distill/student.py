"""What every distillation method shares: the frozen teacher, the student sampler, checkpoint meta, previews."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn as nn

from crcm_robotics.model.dit import CausalDiT
from crcm_robotics.model.sampler import SamplerSpec
from crcm_robotics.model.tokenizer import FrameCodec
from distill.teacher import preview_rollout
from distill.trainer import MethodDefaults


class StudentMethod(MethodDefaults):
    """Base of ``tf_scm``, ``tf_dcm``, ``sf_dmd`` and ``causal_rcm`` (each overrides ``loss``)."""

    name = "student"

    def __init__(self, student: CausalDiT, teacher: CausalDiT, sampler: SamplerSpec):
        self.student = student
        self.teacher = teacher.eval().requires_grad_(False)
        if sampler.kind != "consistency":
            raise ValueError(f"a student samples with the consistency sampler, got {sampler}")
        self.spec = sampler

    def loss(self, batch: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def meta(self) -> dict[str, Any]:
        return {"kind": "student", "method": self.name,
                "sampler": self.spec.to_meta()}

    def preview(self, net: nn.Module, batch: dict[str, torch.Tensor], codec: FrameCodec) -> np.ndarray:
        return preview_rollout(net, codec, batch, self.spec)
