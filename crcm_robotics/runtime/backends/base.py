"""What every backend implements: run the per-frame step for a batch against a KV cache it owns.

A *stepper* is one batch size's runner. It owns a :class:`KVCache` of that
batch (``stepper.cache``); the caller loads context into it (``Backend.encode``,
which CUDA backends run as a captured graph, or ``cache.copy_``), then each call

    x0 = stepper(action [B, 1, A], noise [S, B, 1, C, H, W], prev [B, 1, C, H, W])

denoises the next frame and writes it into the cache, exactly as
:func:`crcm_robotics.model.sampler.predict_next_frame` does (the reference every
backend is tested against). All inputs are float32 in the model's unit space;
the returned ``x0`` may be a buffer the stepper reuses, valid until its next call.
A stepper may also have ``denoise`` (same inputs and output, no cache write): a
rollout's last frame is never read back, so its clean-frame pass is wasted work
(:func:`last_frame_step` picks it; the eager and ``cuda_graph`` steppers have it).

A backend hands out steppers per ``(slot, batch)`` and keeps them: a slot
("stream", "imagine") keeps the streaming state apart from planner queries, and
keeping steppers lets fixed-shape backends (CUDA graphs, ONNX, TensorRT) build
once per batch size. Those backends run only the batch sizes :meth:`Backend.bucket`
rounds to (powers of two up to ``max_batch``); callers pad rows up to it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from crcm_robotics.model.dit import CausalDiT
from crcm_robotics.model.kv_cache import KVCache
from crcm_robotics.model.sampler import SamplerSpec, denoise_frame, encode_context, predict_next_frame

log = logging.getLogger("crcm_robotics.runtime")

# (cache, action, noise, prev) -> x0
StepFn = Callable[[KVCache, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class BackendUnavailable(RuntimeError):
    """A backend cannot run here (a missing package, no CUDA device); the message says which and why."""


@dataclass(frozen=True)
class Precision:
    """Weights (and KV cache) in ``weights``; activations, noise and sampler maths stay float32.

    With half weights the network runs under ``torch.autocast`` (as it was trained): the
    TrigFlow times and the sampler's arithmetic keep float32 precision, matmuls and the
    cache run in bf16/fp16. ``cache_enabled=False`` so the step can be captured in a CUDA graph.
    """

    device: torch.device
    weights: torch.dtype = torch.float32

    @property
    def cache(self) -> torch.dtype:
        return self.weights

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.weights == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.weights, cache_enabled=False)


class Stepper(Protocol):
    batch: int
    cache: KVCache

    def __call__(self, action: torch.Tensor, noise: torch.Tensor, prev: torch.Tensor) -> torch.Tensor: ...


def reference_step(model: CausalDiT, spec: SamplerSpec) -> StepFn:
    """The per-frame step as a function of (cache, action, noise, prev): the sampler's own code."""

    def step(cache: KVCache, action: torch.Tensor, noise: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        return predict_next_frame(model, cache, action, noise, spec, prev)

    return step


def reference_denoise(model: CausalDiT, spec: SamplerSpec) -> StepFn:
    """The step without its cache write (the sampler's ``denoise_frame``): for a rollout's last frame."""

    def denoise(cache: KVCache, action: torch.Tensor, noise: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        return denoise_frame(model, cache, action, noise, spec, prev)

    return denoise


def last_frame_step(stepper: Stepper) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """How to run a rollout's last frame: the stepper's ``denoise`` (no cache write) where it has one, else
    its full step (same frame; the write is only wasted)."""
    return getattr(stepper, "denoise", stepper)


class EagerStepper:
    """Runs a step function directly (PyTorch eager, or a ``torch.compile``-d function); ``denoise_fn``, the
    step without its cache write, makes :meth:`denoise` skip that pass."""

    def __init__(self, fn: StepFn, cache: KVCache, precision: Precision, denoise_fn: StepFn | None = None):
        self.fn = fn
        self.denoise_fn = denoise_fn
        self.cache = cache
        self.batch = cache.batch
        self.precision = precision

    def __call__(self, action: torch.Tensor, noise: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), self.precision.autocast():
            return self.fn(self.cache, action, noise, prev)

    def denoise(self, action: torch.Tensor, noise: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        """The next frame without writing it to the cache (the full step where no ``denoise_fn`` was given)."""
        with torch.no_grad(), self.precision.autocast():
            return (self.denoise_fn or self.fn)(self.cache, action, noise, prev)


def bucket_sizes(max_batch: int) -> list[int]:
    """Batch sizes fixed-shape backends build: 1, 2, 4, … below ``max_batch``, then ``max_batch``."""
    sizes, b = [], 1
    while b < max_batch:
        sizes.append(b)
        b *= 2
    return [*sizes, max_batch]


class Backend:
    """Hands out one stepper per (slot, batch); subclasses say how a stepper is built."""

    name = "base"
    fixed_shapes = False  # True: steppers exist only for bucket sizes, callers pad to them

    def __init__(self, model: CausalDiT, spec: SamplerSpec, precision: Precision, max_batch: int):
        self.model = model
        self.spec = spec
        self.precision = precision
        self.device = precision.device
        self.max_batch = max_batch
        self.status = "ok"  # a sentence when the backend runs degraded (e.g. eager fallback)
        self.cache_status: str | None = None  # backends with a warm-start cache: what its load found
        self._steppers: dict[tuple[str, int], Stepper] = {}

    def bucket(self, n: int) -> int:
        """Batch size a query of ``n`` rows (n ≤ max_batch) runs at."""
        if not self.fixed_shapes:
            return n
        return next(b for b in bucket_sizes(self.max_batch) if b >= n)

    def stepper(self, batch: int, slot: str = "stream") -> Stepper:
        key = (slot, batch)
        if key not in self._steppers:
            self._steppers[key] = self._make_stepper(batch)
        return self._steppers[key]

    def new_cache(self, batch: int) -> KVCache:
        return self.model.new_cache(batch, self.device, self.precision.cache)

    def encode(self, cache: KVCache, x: torch.Tensor, action: torch.Tensor) -> None:
        """Reset ``cache`` and write clean context frames x [B, K, C, H, W] (actions [B, K, A]) into it."""
        with torch.no_grad(), self.precision.autocast():
            cache.reset()
            encode_context(self.model, cache, x, action)

    def _make_stepper(self, batch: int) -> Stepper:
        raise NotImplementedError

    def eager_stepper(self, batch: int) -> EagerStepper:
        return EagerStepper(reference_step(self.model, self.spec), self.new_cache(batch), self.precision,
                            reference_denoise(self.model, self.spec))
