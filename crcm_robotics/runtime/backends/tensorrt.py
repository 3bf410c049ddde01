"""``tensorrt``: the per-frame step (:mod:`crcm_robotics.runtime.step_module`) compiled by torch-tensorrt.

Import-guarded: without the ``torch_tensorrt`` package (or without a CUDA device)
building the backend raises :class:`BackendUnavailable` naming what is missing.
One engine per batch size (fixed shapes, bucketed), compiled with the dynamo IR
from the float32 step module (``enabled_precisions`` adds the WorldModel's half
dtype), or loaded from ``export_dir`` when ``crcm export format=tensorrt`` wrote
it there. The KV cache stays a torch :class:`KVCache`; each step feeds it in and
copies the updated cache back.

Not verified on a GPU in this repository's CI (no TensorRT there); treat as experimental.
"""

from __future__ import annotations

from pathlib import Path

import torch

from crcm_robotics.model.dit import CausalDiT
from crcm_robotics.model.sampler import SamplerSpec
from crcm_robotics.runtime.backends.base import Backend, BackendUnavailable, Precision, log
from crcm_robotics.runtime.export import (
    compile_tensorrt, read_manifest, require_tensorrt, step_file, weights_fingerprint,
)


class TensorRTStepper:
    def __init__(self, module, backend: "TensorRTBackend", batch: int):
        self.module = module
        self.batch = batch
        self.cache = backend.model.new_cache(batch, backend.device, torch.float32)

    def __call__(self, action: torch.Tensor, noise: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            x0, k, v, seen = self.module(self.cache.k, self.cache.v, self.cache.frames_seen, action.contiguous(),
                                         noise.contiguous(), prev.contiguous())
        self.cache.k.copy_(k)
        self.cache.v.copy_(v)
        self.cache.frames_seen.copy_(seen)
        return x0


class TensorRTBackend(Backend):
    name = "tensorrt"
    fixed_shapes = True

    def __init__(self, model: CausalDiT, spec: SamplerSpec, precision: Precision, max_batch: int,
                 export_dir: str | Path | None = None, source: CausalDiT | None = None):
        super().__init__(model, spec, precision, max_batch)
        require_tensorrt()
        if self.device.type != "cuda":
            raise BackendUnavailable(f"backend tensorrt needs a CUDA device, got device={self.device}")
        self.source = source or model
        self.export_dir = Path(export_dir) if export_dir is not None else None

    def _saved(self, batch: int):
        """The engine ``crcm export format=tensorrt`` saved for this batch, if it matches these weights."""
        if self.export_dir is None:
            return None
        path = self.export_dir / step_file("tensorrt", self.spec, batch)
        manifest = read_manifest(self.export_dir)
        if not path.is_file() or manifest is None:
            return None
        if manifest.get("fingerprint") != weights_fingerprint(self.source):
            return None
        return torch.export.load(str(path)).module()

    def _make_stepper(self, batch: int) -> TensorRTStepper:
        module = self._saved(batch)
        if module is None:
            log.info("tensorrt backend: compiling the step at batch %d (minutes for large models)", batch)
            module, _ = compile_tensorrt(self.source, self.spec, batch, self.device, self.precision.weights)
        return TensorRTStepper(module, self, batch)
