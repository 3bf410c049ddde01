"""``cuda_graph``: the per-frame step (every denoising pass + the cache write) as ONE CUDA graph per batch size.

Per batch size the stepper owns static buffers — the KV cache (k, v, frames_seen),
action, noise, prev — and the graph's output. Capture follows the PyTorch CUDA
Graphs recipe: a few warm-up iterations on a side stream (the same stream the
capture then uses, so cuBLAS workspaces and autotuning happen before capture),
with ``CRCM_SYNC_DEBUG=1`` the second of them under ``torch.cuda.set_sync_debug_mode("error")``
so any host synchronization in the step fails loudly there (a debugging aid: torch
warns that the mode is a prototype, so normal runs leave it off and a sync breaks
the capture instead, which falls back to eager with a log line);
then ``torch.cuda.graph`` capture; finally the cache is zeroed (warm-up wrote
into it). A call copies its inputs into the static buffers and replays: no
allocation, no host sync, one launch.

Context encoding (``Backend.encode``: K clean frames at batch 1, on every
``reset`` and every ``imagine(context=…)``) is captured too, one graph per K:
run eagerly it is ~500 small kernels whose launches left the GPU idle for a
fifth of a planner query.

Where capture is impossible (a CPU device, a capture error) the backend falls
back to eager with one log line and says so in ``status``.
"""

from __future__ import annotations

import os

import torch

from crcm_robotics.model.dit import CausalDiT
from crcm_robotics.model.kv_cache import KVCache
from crcm_robotics.model.sampler import SamplerSpec, encode_context
from crcm_robotics.runtime.backends.base import (
    Backend,
    EagerStepper,
    Precision,
    StepFn,
    Stepper,
    log,
    reference_denoise,
    reference_step,
)

WARMUP_ITERS = 3
SYNC_DEBUG_ENV = "CRCM_SYNC_DEBUG"  # "1": warm-up runs under torch's (prototype) sync debug mode


def sync_debug_enabled() -> bool:
    """Whether the capture warm-up should fail on host syncs (only when debugging, see module doc)."""
    return os.environ.get(SYNC_DEBUG_ENV, "") == "1"


def capture(run, backend: Backend) -> torch.cuda.CUDAGraph:
    """Warm ``run`` up on a side stream (``CRCM_SYNC_DEBUG=1``: host syncs fail in call 2), then capture it."""
    dev, precision = backend.device, backend.precision
    side = torch.cuda.Stream(dev)
    side.wait_stream(torch.cuda.current_stream(dev))
    with torch.cuda.stream(side), torch.no_grad(), precision.autocast():
        for i in range(WARMUP_ITERS):
            if i == 1 and sync_debug_enabled():  # call 1 may compile/allocate; call 2 must not sync
                previous = torch.cuda.get_sync_debug_mode()
                torch.cuda.set_sync_debug_mode("error")
                try:
                    run()
                finally:
                    torch.cuda.set_sync_debug_mode(previous)
            else:
                run()
    torch.cuda.current_stream(dev).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.no_grad(), precision.autocast(), torch.cuda.graph(graph, stream=side):
        run()
    return graph


class CudaGraphStepper:
    """One captured per-frame step at a fixed batch size; with ``denoise_fn`` (the step without its cache
    write) a second graph on the same buffers, replayed by :meth:`denoise` for a rollout's last frame."""

    def __init__(self, fn: StepFn, backend: Backend, batch: int, denoise_fn: StepFn | None = None):
        model, spec, dev = backend.model, backend.spec, backend.device
        cfg = model.cfg
        self.batch = batch
        self.cache = backend.new_cache(batch)
        self.action = torch.zeros(batch, 1, cfg.action_dim, device=dev)
        self.noise = torch.zeros(spec.noise_draws, batch, 1, cfg.channels, cfg.height, cfg.width, device=dev)
        self.prev = torch.zeros(batch, 1, cfg.channels, cfg.height, cfg.width, device=dev)
        outputs: list[torch.Tensor] = []

        def run() -> None:
            outputs[:] = [fn(self.cache, self.action, self.noise, self.prev)]

        self.graph = capture(run, backend)
        self.out = outputs[0]
        self.denoise_graph: torch.cuda.CUDAGraph | None = None
        if denoise_fn is not None:
            def run_denoise() -> None:
                outputs[:] = [denoise_fn(self.cache, self.action, self.noise, self.prev)]

            self.denoise_graph = capture(run_denoise, backend)
            self.denoise_out = outputs[0]
        self.cache.reset()  # warm-up wrote frames into the static cache

    def _load(self, action: torch.Tensor, noise: torch.Tensor, prev: torch.Tensor) -> None:
        self.action.copy_(action)
        self.noise.copy_(noise)
        if prev.data_ptr() != self.prev.data_ptr():
            self.prev.copy_(prev)

    def __call__(self, action: torch.Tensor, noise: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        self._load(action, noise, prev)
        self.graph.replay()
        return self.out

    def denoise(self, action: torch.Tensor, noise: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        """The next frame without the cache write (the full step where no denoise graph was captured)."""
        if self.denoise_graph is None:
            return self(action, noise, prev)
        self._load(action, noise, prev)
        self.denoise_graph.replay()
        return self.denoise_out


class CudaGraphEncoder:
    """Context encoding of K frames at batch 1 as one CUDA graph (into its own cache, then copied out)."""

    def __init__(self, backend: Backend, frames: int):
        cfg = backend.model.cfg
        dev = backend.device
        self.cache = backend.new_cache(1)
        self.x = torch.zeros(1, frames, cfg.channels, cfg.height, cfg.width, device=dev)
        self.action = torch.zeros(1, frames, cfg.action_dim, device=dev)

        def run() -> None:
            self.cache.reset()
            encode_context(backend.model, self.cache, self.x, self.action)

        self.graph = capture(run, backend)

    def __call__(self, cache: KVCache, x: torch.Tensor, action: torch.Tensor) -> None:
        self.x.copy_(x)
        self.action.copy_(action)
        self.graph.replay()
        cache.copy_(self.cache)


class GraphedEncode:
    """Backend mixin: ``encode`` of a batch-1 context through a captured graph per K (eager elsewhere)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._encoders: dict[int, CudaGraphEncoder | None] = {}  # per context length; None = capture failed

    def encode(self, cache: KVCache, x: torch.Tensor, action: torch.Tensor) -> None:
        if self.device.type != "cuda" or cache.batch != 1 or x.shape[0] != 1:
            return super().encode(cache, x, action)
        encoders = self._encoders
        k = x.shape[1]
        if k not in encoders:
            try:
                encoders[k] = CudaGraphEncoder(self, k)
            except Exception as exc:  # best effort, like the step: eager encoding is correct, only slower
                log.warning("%s backend: CUDA graph capture of %d-frame context encoding failed (%s: %s); "
                            "encoding eagerly", self.name, k, type(exc).__name__, exc)
                encoders[k] = None
        if encoders[k] is None:
            return super().encode(cache, x, action)
        encoders[k](cache, x, action)


def capture_or_reason(backend: Backend, fn: StepFn, batch: int, what: str,
                      denoise_fn: StepFn | None = None) -> CudaGraphStepper | str:
    """A captured stepper, or a sentence saying why the capture failed."""
    try:
        return CudaGraphStepper(fn, backend, batch, denoise_fn)
    except Exception as exc:  # capture is best effort: the caller picks the fallback
        try:
            torch.cuda.synchronize(backend.device)
        except Exception:  # a broken capture can leave an error pending; the eager path reports real faults
            pass
        return f"CUDA graph capture of the {what} step at batch {batch} failed ({type(exc).__name__}: {exc})"


def graph_or_eager(backend: Backend, fn: StepFn, batch: int, what: str,
                   denoise_fn: StepFn | None = None) -> Stepper:
    """A captured stepper, or — with one log line and ``backend.status`` set — an eager one."""
    if backend.device.type != "cuda":
        return EagerStepper(fn, backend.new_cache(batch), backend.precision, denoise_fn)
    stepper = capture_or_reason(backend, fn, batch, what, denoise_fn)
    if isinstance(stepper, str):
        log.warning("%s backend: %s; running it eagerly", backend.name, stepper)
        backend.status = f"eager fallback: {stepper}"
        return EagerStepper(fn, backend.new_cache(batch), backend.precision, denoise_fn)
    return stepper


class CudaGraphBackend(GraphedEncode, Backend):
    name = "cuda_graph"

    def __init__(self, model: CausalDiT, spec: SamplerSpec, precision: Precision, max_batch: int):
        super().__init__(model, spec, precision, max_batch)
        if self.device.type == "cuda":
            self.fixed_shapes = True
        else:
            self.status = f"eager fallback: device {self.device} has no CUDA graphs"
            log.warning("cuda_graph backend: device %s has no CUDA graphs; falling back to eager", self.device)

    def _make_stepper(self, batch: int) -> Stepper:
        return graph_or_eager(self, reference_step(self.model, self.spec), batch, "eager",
                              reference_denoise(self.model, self.spec))
