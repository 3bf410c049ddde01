"""What every distillation method shares: the frozen teacher, the student sampler, checkpoint meta, previews."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from crcm_robotics.model.dit import CausalDiT
from crcm_robotics.model.sampler import SamplerSpec
from crcm_robotics.model.tokenizer import FrameCodec
from distill.teacher import preview_rollout
from distill.trainer import MethodDefaults


def kept_blocks(teacher_depth: int, depth: int) -> list[int]:
    """The teacher's blocks a ``depth``-block student starts from: evenly spaced, the first and the last kept
    (one block: the first)."""
    if not 1 <= depth <= teacher_depth:
        raise ValueError(f"a student of {depth} blocks from a teacher of {teacher_depth}: expected "
                         f"1..{teacher_depth}")
    if depth == 1:
        return [0]
    return [round(j * (teacher_depth - 1) / (depth - 1)) for j in range(depth)]


def shallow_student(teacher: CausalDiT, depth: int) -> CausalDiT:
    """A copy of ``teacher`` with ``depth`` of its blocks (:func:`kept_blocks`); every other weight is the
    teacher's. With the teacher's own depth it is an exact copy."""
    blocks = kept_blocks(teacher.cfg.depth, depth)
    student = CausalDiT(dataclasses.replace(teacher.cfg, depth=depth))
    state = {}
    for key, value in teacher.state_dict().items():
        parts = key.split(".")
        if parts[0] == "blocks":
            i = int(parts[1])
            if i not in blocks:
                continue
            key = ".".join(["blocks", str(blocks.index(i)), *parts[2:]])
        state[key] = value.detach().clone()
    student.load_state_dict(state, strict=True)
    return student.to(next(teacher.parameters()).device)


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
