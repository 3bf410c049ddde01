"""``compile``: the per-frame step through ``torch.compile`` (Inductor fuses the many small kernels).

On CUDA the compiled step is then captured as one CUDA graph per batch size
(:mod:`.cuda_graph`) — compile removes kernels, the graph removes launch
overhead; ``mode="default"`` leaves graph capture to us. Modes that bring their
own CUDA graphs (``reduce-overhead``, ``max-autotune``) run the compiled step
directly. Shapes are static (``dynamic=False``): one compilation per batch size,
batch sizes bucketed to powers of two. The first call of each batch size pays
the compilation (tens of seconds on a CPU).

The compiled region does not write the KV cache. Inductor turns an in-place
write into a graph input into "clone the whole buffer, scatter, copy it all
back" — on an H100 that was two full-cache copies per frame, ~15% of a
planner query's GPU time (``scripts/profile_planner.py``). So the step runs
on a :class:`DeferredWriteCache` that collects the new frame's keys/values,
returns them, and the few-row ``index_copy_`` happens outside (still inside
the CUDA graph).

With a cache folder (default ``CKPT/compile_cache``, see :mod:`.compile_cache`)
the backend loads the artefacts saved for this torch/GPU/dtype/sampler before it
compiles, and on CUDA saves what it compiled for a new batch size, so the next
start is warm. ``crcm export CKPT format=compiled`` fills the folder ahead of time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from crcm_robotics.model.dit import CausalDiT
from crcm_robotics.model.kv_cache import KVCache
from crcm_robotics.model.sampler import SamplerSpec
from crcm_robotics.runtime.backends.base import (
    Backend,
    EagerStepper,
    Precision,
    StepFn,
    Stepper,
    bucket_sizes,
)
from crcm_robotics.runtime.backends.aot_package import (
    apply_deferred,
    build_package,
    deferred_predict,
    package_step,
    weights_digest,
)
from crcm_robotics.runtime.backends.compile_cache import CompileCache, cache_key
from crcm_robotics.runtime.backends.cuda_graph import GraphedEncode, graph_or_eager, log

OWN_GRAPH_MODES = ("reduce-overhead", "max-autotune")


def deferred_write_step(model: CausalDiT, spec: SamplerSpec, compile_fn) -> StepFn:
    """The per-frame step with ``compile_fn`` applied to everything but the cache write."""

    def pure_step(cache: KVCache, action: torch.Tensor, noise: torch.Tensor, prev: torch.Tensor):
        return deferred_predict(model, spec, cache, action, noise, prev)

    compiled = compile_fn(pure_step)

    def step(cache: KVCache, action: torch.Tensor, noise: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        x0, k_new, v_new, index, advanced = compiled(cache, action, noise, prev)
        apply_deferred(cache, k_new, v_new, index, advanced)
        return x0

    return step


class CompileBackend(GraphedEncode, Backend):
    name = "compile"
    fixed_shapes = True  # bounded recompilations

    def __init__(self, model: CausalDiT, spec: SamplerSpec, precision: Precision, max_batch: int,
                 mode: str = "default", compiler: str = "inductor", cache_dir: str | Path | None = None,
                 checkpoint: str = ""):
        super().__init__(model, spec, precision, max_batch)
        self.mode, self.compiler, self.checkpoint = mode, compiler, checkpoint
        self.cache: CompileCache | None = None
        self.cache_status = "no compile cache folder (no checkpoint path): compiling cold"
        self.packages: dict[int, Path] = {}  # batch -> AOTInductor package (aot_package.py): no tracing
        self._package_steps: dict[int, StepFn] = {}
        self._artefacts_loaded = False
        if cache_dir is not None:
            self.cache = CompileCache(cache_dir, cache_key(model, spec, self.device, precision.weights, mode,
                                                           compiler))
            self.packages, self.cache_status = self.cache.packages(lambda: weights_digest(model))
            if not self.packages:  # otherwise Inductor's artefacts load with the first batch size lacking one
                self._load_artefacts()
            log.info("compile backend: %s", self.cache_status)
        import torch._dynamo

        dynamo = torch._dynamo.config
        need = len(bucket_sizes(max_batch)) + 2
        for knob in ("recompile_limit", "cache_size_limit"):  # renamed across torch versions
            if hasattr(dynamo, knob) and getattr(dynamo, knob) < need:
                setattr(dynamo, knob, need)
        options = {"mode": mode} if compiler == "inductor" else {}
        self.fn = deferred_write_step(
            model, spec, lambda fn: torch.compile(fn, backend=compiler, dynamic=False, **options))
        self.graph = self.device.type == "cuda" and mode not in OWN_GRAPH_MODES
        log.info("compile backend: torch.compile(backend=%s, mode=%s)%s", compiler, mode,
                 " + one CUDA graph per batch size" if self.graph else "")

    def _load_artefacts(self) -> None:
        """Put the saved Inductor artefacts into this process's caches, once (before torch.compile runs)."""
        if self.cache is not None and not self._artefacts_loaded:
            self._artefacts_loaded = True
            loaded = self.cache.load()
            self.cache_status = loaded if not self.packages else f"{self.cache_status}; {loaded}"

    def step_fn(self, batch: int) -> StepFn:
        """The step at ``batch``: its AOTInductor package when there is one, else ``torch.compile``'s."""
        if batch not in self.packages:
            return self.fn
        if batch not in self._package_steps:
            self._package_steps[batch] = package_step(self.packages[batch])
        return self._package_steps[batch]

    def _make_stepper(self, batch: int) -> Stepper:
        if batch in self.packages:
            fn = self.step_fn(batch)
            if self.graph:
                return graph_or_eager(self, fn, batch, "AOTInductor package")
            return EagerStepper(fn, self.new_cache(batch), self.precision)
        self._load_artefacts()
        if self.graph:
            stepper = graph_or_eager(self, self.fn, batch, "compiled")  # compiles: the capture runs the step
            if self.cache is not None and batch not in self.cache.loaded_batches:
                self.save_cache([batch])
            return stepper
        return EagerStepper(self.fn, self.new_cache(batch), self.precision)  # compiles on its first call

    def save_cache(self, batches: list[int]) -> Path | None:
        """Save what this process compiled (after the steps of ``batches`` ran) into the cache folder.

        Nothing when the folder already holds every one of ``batches`` (cache hits re-record artefacts).
        """
        if self.cache is None or set(batches) <= set(self.cache.loaded_batches):
            return None
        path = self.cache.save(batches, self.checkpoint)
        if path is not None:
            self.cache.loaded_batches = sorted(set(self.cache.loaded_batches) | set(batches))
            log.info("compile backend: saved compiled artefacts for batch sizes %s to %s", batches, path)
        return path


def export_compiled(ckpt: str, out: str | None, batches: list[int], device: str = "auto", dtype: str = "auto",
                    steps: int = 0, solver: str | None = None, mode: str = "default",
                    kind: str = "cache", weights: str = "selected") -> dict[str, Any]:
    """``crcm export CKPT format=compiled``: build the ``compile`` backend's warm start now, per batch size.

    ``kind``: ``cache`` (default) compiles with ``torch.compile`` and saves its Inductor artefacts (what a
    cold start saves by itself); ``aoti`` exports the step and compiles one AOTInductor package per batch
    size, which a later start loads without tracing (opt-in, see :mod:`.aot_package`). ``dtype`` must be the one the runtime will use
    (``auto``: bf16 on CUDA, float32 on CPU), as must the device type and the sampler: each is in the key.
    """
    import time

    from crcm_robotics.model.checkpoint import build_model, load_checkpoint
    from crcm_robotics.model.sampler import sampler_from_meta
    from crcm_robotics.runtime.backends.compile_cache import CACHE_DIR_NAME
    from crcm_robotics.runtime.device import resolve_device, resolve_dtype

    if kind not in ("aoti", "cache"):
        raise ValueError(f"compiled kind {kind!r} unknown; expected 'aoti' or 'cache'")
    ck = load_checkpoint(ckpt, weights=weights)
    spec = sampler_from_meta(ck.meta, steps, solver)
    spec.times()
    dev = resolve_device(device)
    half = resolve_dtype(None if dtype == "auto" else dtype, dev)
    model = build_model(ck, dev, half)
    folder = Path(out) if out else Path(ck.path) / CACHE_DIR_NAME
    t0 = time.perf_counter()
    backend = CompileBackend(model, spec, Precision(dev, half), max(batches), mode=mode, cache_dir=folder,
                             checkpoint=str(ck.path))
    assert backend.cache is not None
    cfg = model.cfg
    buckets = sorted({backend.bucket(b) for b in batches})
    seconds: dict[int, float] = {}
    if kind == "aoti":
        digest = weights_digest(model)
        for b in buckets:
            tb = time.perf_counter()
            build_package(model, spec, half, backend.new_cache(b), backend.cache.package_path(b))
            backend.cache.add_package(b, digest, str(ck.path))
            seconds[b] = round(time.perf_counter() - tb, 2)
            log.info("compile backend: AOTInductor package for batch %d built in %.1f s", b, seconds[b])
    else:
        for b in buckets:
            tb = time.perf_counter()
            stepper = backend.stepper(b, "imagine")
            stepper(torch.zeros(b, 1, cfg.action_dim, device=dev),
                    torch.zeros(spec.noise_draws, b, 1, cfg.channels, cfg.height, cfg.width, device=dev),
                    torch.zeros(b, 1, cfg.channels, cfg.height, cfg.width, device=dev))
            seconds[b] = round(time.perf_counter() - tb, 2)
        backend.save_cache(buckets)  # CPU: the first calls above compiled; CUDA: each capture saved already
    meta = backend.cache.read_meta() or {}
    packages = meta.get("packages", {})
    return {"format": "compiled", "kind": kind, "out": str(folder), "key": backend.cache.digest, "batch": buckets,
            "sampler": spec.to_meta(), "device": str(dev), "dtype": str(half).removeprefix("torch."),
            "checkpoint": str(ck.path), "loaded": backend.cache_status,
            "seconds": round(time.perf_counter() - t0, 2), "seconds_per_batch": seconds,
            "cache_batches": meta.get("batches", []), "cache_bytes": meta.get("bytes", 0),
            "packages": {b: p["file"] for b, p in packages.items()},
            "package_bytes": sum(p["bytes"] for p in packages.values())}
