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
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from crcm_robotics.model.dit import CausalDiT
from crcm_robotics.model.kv_cache import KVCache
from crcm_robotics.model.sampler import SamplerSpec, predict_next_frame
from crcm_robotics.runtime.backends.base import (
    Backend,
    EagerStepper,
    Precision,
    StepFn,
    Stepper,
    bucket_sizes,
)
from crcm_robotics.runtime.backends.cuda_graph import GraphedEncode, graph_or_eager, log

OWN_GRAPH_MODES = ("reduce-overhead", "max-autotune")


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


def deferred_write_step(model: CausalDiT, spec: SamplerSpec, compile_fn) -> StepFn:
    """The per-frame step with ``compile_fn`` applied to everything but the cache write."""

    def pure_step(cache: KVCache, action: torch.Tensor, noise: torch.Tensor, prev: torch.Tensor):
        view = DeferredWriteCache(cache.k, cache.v, cache.frames_seen, cache.window, cache.tokens_per_frame)
        x0 = predict_next_frame(model, view, action, noise, spec, prev)
        k_new = torch.stack([k for k, _ in view.pending])  # [layers, B, heads, P, head_dim]
        v_new = torch.stack([v for _, v in view.pending])
        return x0, k_new, v_new, view.index, view.advanced

    compiled = compile_fn(pure_step)

    def step(cache: KVCache, action: torch.Tensor, noise: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        x0, k_new, v_new, index, advanced = compiled(cache, action, noise, prev)
        cache.k.index_copy_(3, index, k_new.to(cache.k.dtype))
        cache.v.index_copy_(3, index, v_new.to(cache.v.dtype))
        cache.advance(advanced)
        return x0

    return step


class CompileBackend(GraphedEncode, Backend):
    name = "compile"
    fixed_shapes = True  # bounded recompilations

    def __init__(self, model: CausalDiT, spec: SamplerSpec, precision: Precision, max_batch: int,
                 mode: str = "default", compiler: str = "inductor"):
        super().__init__(model, spec, precision, max_batch)
        self.mode, self.compiler = mode, compiler
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

    def _make_stepper(self, batch: int) -> Stepper:
        if self.graph:
            return graph_or_eager(self, self.fn, batch, "compiled")
        return EagerStepper(self.fn, self.new_cache(batch), self.precision)
