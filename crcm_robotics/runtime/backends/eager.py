"""``eager``: the sampler's own per-frame step in PyTorch eager mode (the reference for every other backend)."""

from __future__ import annotations

from crcm_robotics.runtime.backends.base import Backend, EagerStepper


class EagerBackend(Backend):
    name = "eager"

    def _make_stepper(self, batch: int) -> EagerStepper:
        return self.eager_stepper(batch)
