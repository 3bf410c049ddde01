"""``compile``: the per-frame step through ``torch.compile`` (Inductor fuses the many small kernels).

On CUDA the compiled step is then captured as one CUDA graph per batch size
(:mod:`.cuda_graph`) — compile removes kernels, the graph removes launch
overhead; ``mode="default"`` leaves graph capture to us. Modes that bring their
own CUDA graphs (``reduce-overhead``, ``max-autotune``) run the compiled step
directly. Shapes are static (``dynamic=False``): one compilation per batch size,
batch sizes bucketed to powers of two. The first call of each batch size pays
the compilation (tens of seconds on a CPU).
"""

from __future__ import annotations


from crcm_robotics.model.dit import CausalDiT
from crcm_robotics.model.sampler import SamplerSpec
from crcm_robotics.runtime.backends.base import (
    Backend, EagerStepper, Precision, Stepper, bucket_sizes, reference_step,
)
from crcm_robotics.runtime.backends.cuda_graph import graph_or_eager, log

OWN_GRAPH_MODES = ("reduce-overhead", "max-autotune")


class CompileBackend(Backend):
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
        self.fn = torch.compile(reference_step(model, spec), backend=compiler, dynamic=False, **options)
        self.graph = self.device.type == "cuda" and mode not in OWN_GRAPH_MODES
        log.info("compile backend: torch.compile(backend=%s, mode=%s)%s", compiler, mode,
                 " + one CUDA graph per batch size" if self.graph else "")

    def _make_stepper(self, batch: int) -> Stepper:
        if self.graph:
            return graph_or_eager(self, self.fn, batch, "compiled")
        return EagerStepper(self.fn, self.new_cache(batch), self.precision)
