"""Precompiled steps: ``torch.compile(...).aot_compile`` of the per-frame step, one file per batch size.

The saved Inductor artefacts (:mod:`.compile_cache`) spare code generation, not Dynamo: a
warm start on an H200 still traced the unrolled step (8 blocks × 3 network passes) once per
batch size, 6.7 s at batch 1 and 4.1 s at batch 64 of a 15.5 s start. ``aot_compile`` runs
Dynamo and Inductor ahead of time and pickles both outputs (the rewritten bytecode, its
guards, the compiled graph with its kernels); ``torch.compiler.load_compiled_function``
gives a fresh process the callable back with nothing traced or generated.

What is compiled is :func:`flat_step`: the ``compile`` backend's own deferred-write step
(:func:`.aot_package.deferred_predict`, the cache rows are written outside) on flat tensors,
with the network and the sampler as *arguments*. A closed-over module would have to travel as
``external_data`` (``aot_compile`` refuses to pickle one); as an argument its parameters are
graph inputs read from the network passed at each call, so a retrained checkpoint of the same
architecture runs its own weights, never the ones present when the file was made.

The files are pickles. They are loaded only from the checkpoint's own ``compile_cache`` folder or
the folder the runtime is given (``export_dir``), only when the folder's ``<key>.json`` describes
this torch/device/dtype/sampler/architecture and names the file with its SHA-256 (see
:meth:`.compile_cache.CompileCache.read_precompiled`); treat the folder like the checkpoint itself.

torch: ``aot_compile`` came in August 2025 (pytorch PR 161383) behind
``torch._dynamo.config.enable_aot_compile``, which ``torch.compile`` reads when it builds its
wrapper (on by default in 2.13, so it is switched on here); vLLM relies on it with Inductor from
torch 2.10. :func:`unavailable_reason` says when this torch lacks it; the backend then traces as before.
"""

from __future__ import annotations

import ast
import contextlib
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import torch

from crcm_robotics.model.dit import CausalDiT
from crcm_robotics.model.kv_cache import KVCache
from crcm_robotics.model.sampler import SamplerSpec
from crcm_robotics.runtime.backends.aot_package import apply_deferred, deferred_predict
from crcm_robotics.runtime.backends.base import Precision, StepFn

PRECOMPILED_SUFFIX = ".aotc"


class PrecompiledFn(Protocol):
    """What ``aot_compile`` and ``load_compiled_function`` return: :func:`flat_step`, compiled."""

    def __call__(self, *args: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]: ...


def flat_step(model: CausalDiT, spec: SamplerSpec, k: torch.Tensor, v: torch.Tensor, frames_seen: torch.Tensor,
              action: torch.Tensor, noise: torch.Tensor, prev: torch.Tensor):
    """(x0, k_new, v_new, index, frames advanced) of one frame: what ``aot_compile`` traces (module doc)."""
    cache = KVCache(k, v, frames_seen, model.cfg.cache_frames, model.tokens_per_frame)
    return deferred_predict(model, spec, cache, action, noise, prev)


def unavailable_reason() -> str | None:
    """Why this torch cannot save or load precompiled steps, or None when it can."""
    if not hasattr(torch.compiler, "load_compiled_function"):
        return f"torch {torch.__version__} has no torch.compiler.load_compiled_function (aot_compile needs ≥ 2.10)"
    if not hasattr(torch._dynamo.config, "enable_aot_compile"):
        return f"torch {torch.__version__} has no torch._dynamo.config.enable_aot_compile"
    return None


@contextlib.contextmanager
def aot_compile_enabled() -> Iterator[None]:
    """``torch.compile`` attaches ``.aot_compile`` only under this flag (off by default before torch 2.13)."""
    with torch._dynamo.config.patch(enable_aot_compile=True):
        yield


def step_args(model: CausalDiT, spec: SamplerSpec, cache: KVCache, action: torch.Tensor, noise: torch.Tensor,
              prev: torch.Tensor) -> tuple[Any, ...]:
    return model, spec, cache.k, cache.v, cache.frames_seen, action, noise, prev


def zero_inputs(model: CausalDiT, spec: SamplerSpec, batch: int,
                device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(action, noise, prev) of zeros at ``batch``: example inputs with the stepper's shapes."""
    cfg = model.cfg
    return (torch.zeros(batch, 1, cfg.action_dim, device=device),
            torch.zeros(spec.noise_draws, batch, 1, cfg.channels, cfg.height, cfg.width, device=device),
            torch.zeros(batch, 1, cfg.channels, cfg.height, cfg.width, device=device))


def precompile(model: CausalDiT, spec: SamplerSpec, precision: Precision, cache: KVCache, compiler: str,
               mode: str) -> PrecompiledFn:
    """Trace and compile :func:`flat_step` at ``cache``'s batch size now (as the stepper runs it)."""
    options = {"mode": mode} if compiler == "inductor" else {}
    with aot_compile_enabled():
        compiled = torch.compile(flat_step, backend=compiler, fullgraph=True, dynamic=False, **options)
        if not hasattr(compiled, "aot_compile"):
            raise RuntimeError(f"torch {torch.__version__}'s torch.compile wrapper has no aot_compile")
        example = step_args(model, spec, cache, *zero_inputs(model, spec, cache.batch, cache.k.device))
        with torch.no_grad(), precision.autocast():
            return compiled.aot_compile((example, {}))


def save_precompiled(fn: PrecompiledFn, path: Path) -> int:
    """Write ``fn`` to ``path`` (whole or not at all); returns its size in bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fn.save_compiled_function(str(tmp))
    tmp.replace(path)
    return path.stat().st_size


def load_precompiled(blob: bytes) -> PrecompiledFn:
    """Unpickle a precompiled step; call only on bytes :meth:`CompileCache.read_precompiled` validated."""
    return torch.compiler.load_compiled_function(io.BytesIO(blob))


def row_major(x: torch.Tensor) -> torch.Tensor:
    """``x`` with the strides a fresh tensor of its shape has (a copy only when they differ)."""
    want, stride = [], 1
    for size in reversed(x.shape):
        want.append(stride)
        stride *= size
    return x if x.stride() == tuple(reversed(want)) else x.clone(memory_format=torch.contiguous_format)


def precompiled_step(fn: PrecompiledFn, model: CausalDiT, spec: SamplerSpec) -> StepFn:
    """The backend's step from a precompiled one: run it, then write its keys/values into the cache.

    Inputs get row-major strides: the saved guards check every stride (even of size-1 dimensions, which
    ``.contiguous()`` leaves alone), and callers pass slices (``actions[:, h:h+1]``) that ``torch.compile``
    would simply have recompiled for.
    """

    def step(cache: KVCache, action: torch.Tensor, noise: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        inputs = (row_major(action), row_major(noise), row_major(prev))
        x0, k_new, v_new, index, advanced = fn(*step_args(model, spec, cache, *inputs))
        apply_deferred(cache, k_new, v_new, index, advanced)
        return x0

    return step


# Process-wide settings in Dynamo's global-state guard that the compiled step reads when it runs, not when it
# is compiled: the intra-op thread count (a GPU step's kernels do not use it; CPU kernels read it per call)
# and the cuBLAS reduced-precision switches (extern matmuls read them per call).
RUNTIME_SETTINGS = frozenset({"num_threads", "allow_tf32", "allow_fp16_reduce", "allow_bf16_reduce"})
# The step's own tensor inputs (the KV cache, action, noise, previous frame): their guards check sizes,
# strides, dtype, device and dispatch keys; sizes, dtype and device are fixed by the cache key and the batch
# size.
_INPUT_GUARD = re.compile(r"^tensor 'L\['(k|v|frames_seen|action|noise|prev)'\]'")
_GUARD_PARTS = re.compile(r"verbose_code_parts=\[(.*)\],\s*num_guards_executed", re.S)


def failed_guards(exc: BaseException) -> list[str]:
    """The failing guards an ``AOTCompiledFunction`` names in its ``GuardManager check failed`` error."""
    found = _GUARD_PARTS.search(str(exc))
    if found is None:
        return []
    try:  # a list of string literals (ast.literal_eval evaluates literals only)
        parts = ast.literal_eval(f"[{found.group(1)}]")
    except (ValueError, SyntaxError):
        return [found.group(1).strip()]
    return [" ".join(str(part).split()) for part in parts]


def relaxable(guards: list[str]) -> bool:
    """Whether every failing guard is on :data:`RUNTIME_SETTINGS` or on one of the step's own tensor inputs:
    guards a numerical check against the uncompiled step can stand in for (:func:`probe`)."""
    for guard in guards:
        if guard.startswith("GLOBAL_STATE changed:"):
            if not set(guard.removeprefix("GLOBAL_STATE changed:").split()) <= RUNTIME_SETTINGS:
                return False
        elif not _INPUT_GUARD.match(guard):
            return False
    return bool(guards)


def _rel_error(got: torch.Tensor, want: torch.Tensor) -> float:
    want = want.float()
    return float((got.float() - want).norm() / want.norm().clamp_min(1e-6))


def probe(fn: PrecompiledFn, model: CausalDiT, spec: SamplerSpec, precision: Precision, batch: int,
          tolerance: float = 0.05) -> str | None:
    """Run ``fn`` once (the cache is not written): a loaded step whose guards fail raises here, at setup,
    where the backend can still fall back, not on the first frame.

    Where the failing guards are all :func:`relaxable`, the guards are switched off and the step is checked
    instead against the uncompiled step on random inputs (relative error ≤ ``tolerance`` in the frame and the
    new keys/values): the returned sentence says which guards were skipped. Any other failure raises, the
    failing guards named in the message.
    """
    cache = model.new_cache(batch, precision.device, precision.cache)
    gen = torch.Generator(precision.device).manual_seed(0)
    action, noise, prev = (torch.randn(t.shape, generator=gen, device=t.device)
                           for t in zero_inputs(model, spec, batch, precision.device))
    args = step_args(model, spec, cache, action, noise, prev)
    with torch.no_grad(), precision.autocast():
        try:
            fn(*args)
            return None
        except RuntimeError as exc:
            if not str(exc).startswith("GuardManager check failed"):
                raise
            guards = failed_guards(exc)
            if not relaxable(guards) or not hasattr(fn, "disable_guard_check"):
                raise RuntimeError(f"guards failed: {'; '.join(guards) or str(exc)[:300]}") from None
        fn.disable_guard_check()
        got = fn(*args)
        want = flat_step(*args)
    errors = [_rel_error(g, w) for g, w in zip(got[:3], want[:3])]
    if max(errors) > tolerance or not torch.equal(got[3], want[3]):
        raise RuntimeError(f"guards failed ({'; '.join(guards)}) and the step without them differs from the "
                           f"uncompiled one (relative errors {', '.join(f'{e:.3g}' for e in errors)})")
    return (f"guards skipped after a check against the uncompiled step (relative error {max(errors):.2g}): "
            f"{'; '.join(guards)}")
