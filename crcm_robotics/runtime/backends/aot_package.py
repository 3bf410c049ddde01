"""AOTInductor packages of the per-frame step: a warm start of the ``compile`` backend with no tracing.

The saved Inductor artefacts (:mod:`.compile_cache`) spare code generation, not Dynamo: a
warm start still traced the step once per batch size, 10 of its 15.5 s on an H200
(``scripts/profile_compile_start.py``). ``crcm export CKPT format=compiled`` instead
exports the step (``torch.export``) and compiles it ahead of time with AOTInductor into
one ``.pt2`` package per batch size, beside the other artefacts in ``CKPT/compile_cache``.
Loading a package opens a shared library and its kernels; nothing is traced or compiled.

The exported step is the ``compile`` backend's own: the sampler's
:func:`predict_next_frame` on a :class:`DeferredWriteCache`, whose new keys/values come
back as outputs and are written into the cache outside (as with ``torch.compile``, an
in-graph write would copy the whole cache). AOTInductor compiles the network's weights in
as constants, so each package records a digest of the weights it holds: packages of
other weights (a retrained checkpoint) are reported and skipped, never run. Packages are
shared libraries: load only those you built (as with any checkpoint).

Opt-in (``crcm export CKPT format=compiled compiled=aoti``), because of what was measured:
on CPU (torch 2.13) a package loads and runs, matching eager, and a warm start took 8 s
against 26 s with the artefacts; on an H200 (torch 2.11, CUDA 13) building worked (114 s
for batch 1, 62 s for batch 64) but ``aoti_load_package`` crashed the process with a
segmentation fault inside torch's loader (``scripts/gpu/aoti_probe.py`` reproduces it).
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from crcm_robotics.model.dit import CausalDiT
from crcm_robotics.model.kv_cache import KVCache
from crcm_robotics.model.sampler import SamplerSpec, predict_next_frame
from crcm_robotics.runtime.backends.base import StepFn

PACKAGE_SUFFIX = ".pt2"


@dataclass
class DeferredWriteCache(KVCache):
    """A read-only view of a :class:`KVCache` whose writes and advances are recorded, not applied."""

    pending: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)  # (k, v) per layer
    index: torch.Tensor | None = None  # the cache rows they go to
    advanced: int = 0  # frames to advance by

    def write(self, layer: int, k_new: torch.Tensor, v_new: torch.Tensor, index: torch.Tensor) -> None:
        if layer != len(self.pending):
            raise RuntimeError(f"deferred cache writes must come layer by layer; got layer {layer} "
                               f"after {len(self.pending)}")
        self.pending.append((k_new, v_new))
        self.index = index

    def advance(self, n_frames: int = 1) -> None:
        self.advanced += n_frames


def deferred_predict(model: CausalDiT, spec: SamplerSpec, cache: KVCache, action: torch.Tensor,
                     noise: torch.Tensor, prev: torch.Tensor):
    """The step on a :class:`DeferredWriteCache` view of ``cache``: (x0, k_new, v_new, index, frames advanced),
    k_new/v_new [layers, B, heads, P, head_dim]. What ``torch.compile`` and ``torch.export`` both trace."""
    view = DeferredWriteCache(cache.k, cache.v, cache.frames_seen, cache.window, cache.tokens_per_frame)
    x0 = predict_next_frame(model, view, action, noise, spec, prev)
    k_new = torch.stack([k for k, _ in view.pending])
    v_new = torch.stack([v for _, v in view.pending])
    return x0, k_new, v_new, view.index, view.advanced


def apply_deferred(cache: KVCache, k_new: torch.Tensor, v_new: torch.Tensor, index: torch.Tensor,
                   advanced: int = 1) -> None:
    """Write a deferred step's keys/values into ``cache`` (a few rows, outside the compiled code)."""
    cache.k.index_copy_(3, index, k_new.to(cache.k.dtype))
    cache.v.index_copy_(3, index, v_new.to(cache.v.dtype))
    cache.advance(advanced)


class DeferredStepModule(nn.Module):
    """The per-frame step on flat tensors, for ``torch.export``.

    (k, v, frames_seen, action, noise, prev) -> (x0, k_new, v_new, index); shapes as in
    :mod:`crcm_robotics.runtime.step_module`. Half-precision weights run under autocast inside
    the module, as the backends run them, so the export records the same casts.
    """

    def __init__(self, model: CausalDiT, spec: SamplerSpec, weights: torch.dtype):
        super().__init__()
        self.model, self.spec, self.weights = model, spec, weights

    def forward(self, k: torch.Tensor, v: torch.Tensor, frames_seen: torch.Tensor, action: torch.Tensor,
                noise: torch.Tensor, prev: torch.Tensor):
        cache = KVCache(k, v, frames_seen, self.model.cfg.cache_frames, self.model.tokens_per_frame)
        with torch.autocast(k.device.type, dtype=self.weights, enabled=self.weights != torch.float32,
                            cache_enabled=False):
            x0, k_new, v_new, index, advanced = deferred_predict(self.model, self.spec, cache, action, noise, prev)
        if index is None or advanced != 1:
            raise RuntimeError(f"the step must write one frame into the cache; it advanced {advanced}")
        return x0, k_new, v_new, index


def weights_digest(model: nn.Module) -> str:
    """A digest of the network's weights (a package compiled them in; other weights need another)."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().contiguous().view(torch.uint8).cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def step_inputs(model: CausalDiT, spec: SamplerSpec, cache: KVCache) -> tuple[torch.Tensor, ...]:
    """Example inputs of :class:`DeferredStepModule` at ``cache``'s batch size."""
    cfg, b, dev = model.cfg, cache.batch, cache.k.device
    return (cache.k, cache.v, cache.frames_seen, torch.zeros(b, 1, cfg.action_dim, device=dev),
            torch.zeros(spec.noise_draws, b, 1, cfg.channels, cfg.height, cfg.width, device=dev),
            torch.zeros(b, 1, cfg.channels, cfg.height, cfg.width, device=dev))


def build_package(model: CausalDiT, spec: SamplerSpec, weights: torch.dtype, cache: KVCache,
                  path: Path) -> Path:
    """Export the step at ``cache``'s batch size and compile it with AOTInductor into ``path`` (.pt2)."""
    import torch._inductor

    module = DeferredStepModule(model, spec, weights).eval()
    with torch.no_grad(), warnings.catch_warnings():
        # torch.export's own pytree use trips torch's LeafSpec deprecation; nothing here to act on
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning)
        program = torch.export.export(module, step_inputs(model, spec, cache), strict=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp" + PACKAGE_SUFFIX)
        torch._inductor.aoti_compile_and_package(program, package_path=str(tmp))
        tmp.replace(path)  # readers see a whole package or none
    return path


def package_step(path: Path) -> StepFn:
    """The per-frame step from a package: run it, then write its keys/values into the cache."""
    import torch._inductor

    runner: Callable[..., list[torch.Tensor]] = torch._inductor.aoti_load_package(str(path))

    def step(cache: KVCache, action: torch.Tensor, noise: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        x0, k_new, v_new, index = runner(cache.k, cache.v, cache.frames_seen, action, noise, prev)
        apply_deferred(cache, k_new, v_new, index)
        return x0

    return step
