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

With a cache folder (default ``CKPT/compile_cache``, see :mod:`.compile_cache`) a batch size
is served, in this order of preference, by: an AOTInductor package (opt-in, :mod:`.aot_package`);
a precompiled step (``torch.compile(...).aot_compile``, :mod:`.precompiled`: nothing traced);
``torch.compile`` with the Inductor artefacts saved for this torch/GPU/dtype/sampler (Dynamo
traces, Inductor's code generation is skipped). On CUDA a batch size the folder lacks is
precompiled and saved (or, where ``aot_compile`` fails, compiled and its artefacts saved), so the
next start is warm; a failure at any step is one log line and the next way in the list, never a
crash. ``crcm export CKPT format=compiled`` fills the folder ahead of time.
"""

from __future__ import annotations

import time
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
from crcm_robotics.runtime.backends.cuda_graph import GraphedEncode, capture_or_reason, graph_or_eager, log
from crcm_robotics.runtime.backends.precompiled import (
    PrecompiledFn,
    load_precompiled,
    precompile,
    precompiled_step,
    probe,
    save_precompiled,
    unavailable_reason,
)

OWN_GRAPH_MODES = ("reduce-overhead", "max-autotune")
EXPORT_KINDS = ("precompiled", "cache", "aoti")  # what `crcm export format=compiled compiled=…` makes


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
                 checkpoint: str = "", precompiled: bool = True):
        super().__init__(model, spec, precision, max_batch)
        self.mode, self.compiler, self.checkpoint = mode, compiler, checkpoint
        self.graph = self.device.type == "cuda" and mode not in OWN_GRAPH_MODES
        self.cache: CompileCache | None = None
        self.cache_status = "no compile cache folder (no checkpoint path): compiling cold"
        self.packages: dict[int, Path] = {}  # batch -> AOTInductor package (aot_package.py): no tracing
        self._package_steps: dict[int, StepFn] = {}
        self._artefacts_loaded = False
        # precompiled steps (precompiled.py): used where the folder has one; made for a new batch size
        # where today's artefacts are saved (CUDA), or by `crcm export` (which sets write_precompiled)
        self.precompiled = precompiled and cache_dir is not None
        self.write_precompiled = self.graph
        self.precompiled_used: list[int] = []  # batch sizes served by a precompiled step so far
        if cache_dir is not None:
            self.cache = CompileCache(cache_dir, cache_key(model, spec, self.device, precision.weights, mode,
                                                           compiler))
            self.packages, packages = self.cache.packages(lambda: weights_digest(model))
            self.cache_status = "" if packages.startswith("no AOTInductor packages") else packages
            why_not = unavailable_reason() if precompiled else None
            if why_not is None and precompiled and mode in OWN_GRAPH_MODES:
                why_not = f"mode {mode!r} brings its own CUDA graphs"
            if why_not is not None:
                self.precompiled = False
                self._add_status(f"no precompiled steps: {why_not}")
            found = self.cache.precompiled_batches() if self.precompiled else []
            if found:
                self._add_status(f"precompiled steps for batch sizes {found} in {self.cache.folder}")
            if not self.packages and not found:  # else the artefacts load with the first batch size lacking one
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
        log.info("compile backend: torch.compile(backend=%s, mode=%s)%s", compiler, mode,
                 " + one CUDA graph per batch size" if self.graph else "")

    def _add_status(self, sentence: str) -> None:
        self.cache_status = f"{self.cache_status}; {sentence}" if self.cache_status else sentence

    def _note(self, sentence: str, warn: bool = False) -> None:
        """Log what happened to one batch size and add it to ``cache_status`` (bench reports it)."""
        (log.warning if warn else log.info)("compile backend: %s", sentence)
        self._add_status(sentence)

    def _load_artefacts(self) -> None:
        """Put the saved Inductor artefacts into this process's caches, once (before torch.compile runs)."""
        if self.cache is not None and not self._artefacts_loaded:
            self._artefacts_loaded = True
            self._add_status(self.cache.load())

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
        if self.precompiled:
            stepper = self._precompiled_stepper(batch)
            if stepper is not None:
                return stepper
        self._load_artefacts()
        if self.graph:
            stepper = graph_or_eager(self, self.fn, batch, "compiled")  # compiles: the capture runs the step
            if self.cache is not None and batch not in self.cache.loaded_batches:
                self.save_cache([batch])
            return stepper
        return EagerStepper(self.fn, self.new_cache(batch), self.precision)  # compiles on its first call

    def _precompiled_stepper(self, batch: int) -> Stepper | None:
        """The stepper of ``batch`` from its precompiled step (loaded, or made and saved), or None: trace."""
        assert self.cache is not None
        fn = None
        if batch in self.cache.precompiled_batches():
            fn = self._load_precompiled(batch)
        if fn is None and self.write_precompiled:
            fn = self._make_precompiled(batch)
        if fn is None:
            return None
        step = precompiled_step(fn, self.model, self.spec)
        if not self.graph:
            self.precompiled_used.append(batch)
            return EagerStepper(step, self.new_cache(batch), self.precision)
        stepper = capture_or_reason(self, step, batch, "precompiled")
        if isinstance(stepper, str):
            self._note(f"batch {batch}: {stepper}; tracing it with torch.compile instead", warn=True)
            return None
        self.precompiled_used.append(batch)
        return stepper

    def _load_precompiled(self, batch: int) -> PrecompiledFn | None:
        """The saved step of ``batch``, checked (key, file name, SHA-256) before unpickling and run once."""
        assert self.cache is not None
        t0 = time.perf_counter()
        try:
            fn = load_precompiled(self.cache.read_precompiled(batch))
            relaxed = probe(fn, self.model, self.spec, self.precision, batch)
        except Exception as exc:  # a rejected or unloadable file: trace as before, never fail the node
            self._note(f"batch {batch}: precompiled step not used ({type(exc).__name__}: {first_line(exc)}); "
                       "tracing it", warn=True)
            return None
        if relaxed:
            self._note(f"batch {batch}: {relaxed[:400]}", warn=True)
        self._note(f"batch {batch}: precompiled step loaded in {time.perf_counter() - t0:.2f} s")
        return fn

    def _make_precompiled(self, batch: int) -> PrecompiledFn | None:
        """``aot_compile`` the step at ``batch`` and save it; None (logged) when torch cannot."""
        assert self.cache is not None
        t0 = time.perf_counter()
        try:
            fn = precompile(self.model, self.spec, self.precision, self.new_cache(batch), self.compiler,
                            self.mode)
        except Exception as exc:
            self._note(f"batch {batch}: aot_compile failed ({type(exc).__name__}: {first_line(exc)}); "
                       "tracing it with torch.compile", warn=True)
            return None
        seconds = time.perf_counter() - t0
        path = self.cache.precompiled_path(batch)
        try:
            size = save_precompiled(fn, path)
            self.cache.add_precompiled(batch, self.checkpoint)
        except Exception as exc:  # a read-only folder, an unpicklable piece: run it now, compile next time
            self._note(f"batch {batch}: precompiled in {seconds:.1f} s but not saved to {self.cache.folder} "
                       f"({type(exc).__name__}: {first_line(exc)})", warn=True)
            return fn
        self._note(f"batch {batch}: precompiled in {seconds:.1f} s, saved {path.name} ({size / 1e6:.1f} MB)")
        return fn

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


def first_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's first line, cut to ``limit`` characters (guard failures print whole guard trees)."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else "")[:limit]


def export_compiled(ckpt: str, out: str | None, batches: list[int], device: str = "auto", dtype: str = "auto",
                    steps: int = 0, solver: str | None = None, mode: str = "default",
                    kind: str = "precompiled", weights: str = "selected",
                    compiler: str = "inductor") -> dict[str, Any]:
    """``crcm export CKPT format=compiled``: build the ``compile`` backend's warm start now, per batch size.

    ``kind``: ``precompiled`` (default) saves one ``aot_compile``-d step per batch size, loaded later with
    no tracing (:mod:`.precompiled`; where this torch cannot, the Inductor artefacts instead, with a log
    line); ``cache`` compiles with ``torch.compile`` and saves its Inductor artefacts (what a cold start
    saved before precompiled steps); ``aoti`` exports the step and compiles one AOTInductor package per
    batch size (opt-in, see :mod:`.aot_package`). ``dtype`` must be the one the runtime will use (``auto``:
    bf16 on CUDA, float32 on CPU), as must the device type, the sampler and ``compiler`` (``aot_eager``
    skips Inductor, for tests): each is in the key.
    """
    from crcm_robotics.model.checkpoint import build_model, load_checkpoint
    from crcm_robotics.model.sampler import sampler_from_meta
    from crcm_robotics.runtime.backends.compile_cache import CACHE_DIR_NAME
    from crcm_robotics.runtime.device import resolve_device, resolve_dtype

    if kind not in EXPORT_KINDS:
        raise ValueError(f"compiled kind {kind!r} unknown; expected one of {', '.join(EXPORT_KINDS)}")
    ck = load_checkpoint(ckpt, weights=weights)
    spec = sampler_from_meta(ck.meta, steps, solver)
    spec.times()
    dev = resolve_device(device)
    half = resolve_dtype(None if dtype == "auto" else dtype, dev)
    model = build_model(ck, dev, half)
    folder = Path(out) if out else Path(ck.path) / CACHE_DIR_NAME
    t0 = time.perf_counter()
    backend = CompileBackend(model, spec, Precision(dev, half), max(batches), mode=mode, compiler=compiler,
                             cache_dir=folder, checkpoint=str(ck.path), precompiled=kind == "precompiled")
    backend.write_precompiled = kind == "precompiled"
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
        traced = [b for b in buckets if b not in backend.precompiled_used]
        if traced:  # CPU: the first calls above compiled; CUDA: each capture saved already
            backend.save_cache(traced)
    meta = backend.cache.read_meta() or {}
    packages, precompiled = meta.get("packages", {}), meta.get("precompiled", {})
    return {"format": "compiled", "kind": kind, "out": str(folder), "key": backend.cache.digest, "batch": buckets,
            "sampler": spec.to_meta(), "device": str(dev), "dtype": str(half).removeprefix("torch."),
            "checkpoint": str(ck.path), "loaded": backend.cache_status,
            "seconds": round(time.perf_counter() - t0, 2), "seconds_per_batch": seconds,
            "cache_batches": meta.get("batches", []), "cache_bytes": meta.get("bytes", 0),
            "packages": {b: p["file"] for b, p in packages.items()},
            "package_bytes": sum(p["bytes"] for p in packages.values()),
            "precompiled": {b: p["file"] for b, p in precompiled.items()},
            "precompiled_bytes": sum(p["bytes"] for p in precompiled.values())}
