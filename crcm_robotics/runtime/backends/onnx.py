"""``onnx``: the exported per-frame step (:mod:`crcm_robotics.runtime.step_module`) run by onnxruntime.

One session per batch size (fixed shapes; batch sizes bucketed to powers of two).
The KV cache stays a torch :class:`KVCache` owned by the stepper — context
encoding (once per reset/imagine) runs the torch network — and each step feeds
k, v, frames_seen in and copies k_next, v_next, frames_seen_next back.

Providers: ``CUDAExecutionProvider`` when onnxruntime has it and the device is
CUDA — inputs and outputs are bound to torch CUDA memory with IO binding, no
host copies — else ``CPUExecutionProvider`` (a CUDA device then round-trips
through host memory, logged once). Exports are float32 whatever ``dtype`` the
WorldModel's torch network uses.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from crcm_robotics.model.dit import CausalDiT
from crcm_robotics.model.sampler import SamplerSpec
from crcm_robotics.runtime.backends.base import Backend, Precision, log
from crcm_robotics.runtime.export import ensure_exported, require_onnxruntime, weights_fingerprint
from crcm_robotics.runtime.step_module import INPUT_NAMES, OUTPUT_NAMES

NP_DTYPES = {torch.float32: np.float32, torch.int64: np.int64}


class OnnxStepper:
    def __init__(self, session, backend: "OnnxBackend", batch: int):
        self.session = session
        self.batch = batch
        self.device = backend.device
        self.cache = backend.model.new_cache(batch, self.device, torch.float32)
        self.iobinding = backend.cuda_provider
        if self.iobinding:
            self._outs = {
                "x0": torch.empty(batch, 1, *backend.frame_shape, device=self.device),
                "k_next": torch.empty_like(self.cache.k), "v_next": torch.empty_like(self.cache.v),
                "frames_seen_next": torch.empty_like(self.cache.frames_seen),
            }

    def __call__(self, action: torch.Tensor, noise: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        feeds = dict(zip(INPUT_NAMES, (self.cache.k, self.cache.v, self.cache.frames_seen, action, noise, prev)))
        if self.iobinding:
            return self._run_bound(feeds)
        outs = self.session.run(list(OUTPUT_NAMES), {
            name: t.detach().cpu().contiguous().numpy() for name, t in feeds.items()})  # keeps 0-d arrays 0-d
        x0, k, v, seen = (torch.from_numpy(np.asarray(o)) for o in outs)
        self.cache.k.copy_(k)
        self.cache.v.copy_(v)
        self.cache.frames_seen.copy_(seen)
        return x0.to(self.device)

    def _run_bound(self, feeds: dict[str, torch.Tensor]) -> torch.Tensor:
        binding = self.session.io_binding()
        index = self.device.index if self.device.index is not None else torch.cuda.current_device()
        keep = []  # contiguous copies must outlive the run
        for name, t in feeds.items():
            t = t.detach().contiguous()
            keep.append(t)
            binding.bind_input(name, "cuda", index, NP_DTYPES[t.dtype], tuple(t.shape), t.data_ptr())
        for name, t in self._outs.items():
            binding.bind_output(name, "cuda", index, NP_DTYPES[t.dtype], tuple(t.shape), t.data_ptr())
        torch.cuda.current_stream(self.device).synchronize()  # torch's writes visible to ORT's stream
        self.session.run_with_iobinding(binding)  # returns once ORT's stream is done
        self.cache.k.copy_(self._outs["k_next"])
        self.cache.v.copy_(self._outs["v_next"])
        self.cache.frames_seen.copy_(self._outs["frames_seen_next"])
        return self._outs["x0"].clone()  # the caller may feed it back as prev: never alias an output buffer


class OnnxBackend(Backend):
    name = "onnx"
    fixed_shapes = True

    def __init__(self, model: CausalDiT, spec: SamplerSpec, precision: Precision, max_batch: int,
                 export_dir: str | Path | None = None, checkpoint: str = "", opset: int = 17,
                 source: CausalDiT | None = None):
        super().__init__(model, spec, precision, max_batch)
        self.source = source or model  # float32 weights the export is made from (the runtime net may be bf16)
        ort = require_onnxruntime()
        self.ort = ort
        self.checkpoint = checkpoint
        self.opset = opset
        self._tmp = None
        if export_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="crcm_onnx_")
            export_dir = self._tmp.name
        self.export_dir = Path(export_dir)
        self.fingerprint = weights_fingerprint(self.source)
        cfg = model.cfg
        self.frame_shape = (cfg.channels, cfg.height, cfg.width)
        available = ort.get_available_providers()
        self.cuda_provider = self.device.type == "cuda" and "CUDAExecutionProvider" in available
        if self.cuda_provider:
            index = self.device.index if self.device.index is not None else torch.cuda.current_device()
            self.providers = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
        else:
            self.providers = ["CPUExecutionProvider"]
            if self.device.type == "cuda":
                self.status = (f"onnxruntime has no CUDAExecutionProvider (providers: {', '.join(available)}); "
                               "running on CPU with host copies")
                log.warning("onnx backend: %s", self.status)

    def _make_stepper(self, batch: int) -> OnnxStepper:
        path = ensure_exported("onnx", self.source, self.spec, batch, self.export_dir, self.checkpoint,
                               self.fingerprint, self.opset)
        options = self.ort.SessionOptions()
        options.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only
        options.intra_op_num_threads = torch.get_num_threads()  # the same CPU budget as the torch network
        session = self.ort.InferenceSession(str(path), options, providers=self.providers)
        log.info("onnx backend: %s on %s", path.name, session.get_providers()[0])
        return OnnxStepper(session, self, batch)
