"""Runtime backends: each runs the per-frame step (denoise + KV-cache write) for a batch (see :mod:`.base`).

    eager       PyTorch eager (the reference)
    cuda_graph  the whole step as one CUDA graph per batch size; eager fallback with a log line
    compile     torch.compile (Inductor) of the step; on CUDA also one CUDA graph per batch size
    onnx        exported step run by onnxruntime (CUDA provider when present, else CPU); alias onnxruntime
    tensorrt    step compiled by torch-tensorrt (import-guarded; CUDA only)
"""

from __future__ import annotations

from pathlib import Path

from crcm_robotics.model.dit import CausalDiT
from crcm_robotics.model.sampler import SamplerSpec
from crcm_robotics.runtime.backends.base import Backend, BackendUnavailable, Precision, Stepper, bucket_sizes

BACKENDS = ("eager", "cuda_graph", "compile", "onnx", "tensorrt")
ALIASES = {"onnxruntime": "onnx", "ort": "onnx", "trt": "tensorrt", "torch_tensorrt": "tensorrt",
           "cudagraph": "cuda_graph", "cuda_graphs": "cuda_graph", "torch_compile": "compile"}

__all__ = ["BACKENDS", "Backend", "BackendUnavailable", "Precision", "Stepper", "bucket_sizes",
           "canonical_backend", "make_backend"]


def canonical_backend(name: str) -> str:
    """The backend's canonical name (``onnxruntime`` → ``onnx``); ValueError naming the choices otherwise."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in BACKENDS:
        raise ValueError(f"backend {name!r} unknown; expected one of {', '.join(BACKENDS)} "
                         f"(aliases: {', '.join(sorted(ALIASES))})")
    return key


def make_backend(
    name: str, model: CausalDiT, spec: SamplerSpec, precision: Precision, max_batch: int, *,
    export_dir: str | Path | None = None, checkpoint: str = "", source: CausalDiT | None = None,
    compile_mode: str = "default", compiler: str = "inductor", compile_precompiled: bool = True,
) -> Backend:
    """Build backend ``name``; ``source`` is a float32 copy of the network for exporters (default: ``model``).

    ``export_dir``: onnx/tensorrt step files, or the ``compile`` backend's artefact cache (default for
    ``compile``: ``CHECKPOINT/compile_cache``; the only folders its pickled precompiled steps load from).
    """
    name = canonical_backend(name)
    if name == "eager":
        from crcm_robotics.runtime.backends.eager import EagerBackend

        return EagerBackend(model, spec, precision, max_batch)
    if name == "cuda_graph":
        from crcm_robotics.runtime.backends.cuda_graph import CudaGraphBackend

        return CudaGraphBackend(model, spec, precision, max_batch)
    if name == "compile":
        from crcm_robotics.runtime.backends.compile_cache import CACHE_DIR_NAME
        from crcm_robotics.runtime.backends.compiled import CompileBackend

        cache_dir = export_dir or (Path(checkpoint) / CACHE_DIR_NAME if checkpoint else None)
        return CompileBackend(model, spec, precision, max_batch, mode=compile_mode, compiler=compiler,
                              cache_dir=cache_dir, checkpoint=checkpoint, precompiled=compile_precompiled)
    if name == "onnx":
        from crcm_robotics.runtime.backends.onnx import OnnxBackend

        return OnnxBackend(model, spec, precision, max_batch, export_dir=export_dir, checkpoint=checkpoint,
                           source=source)
    from crcm_robotics.runtime.backends.tensorrt import TensorRTBackend

    return TensorRTBackend(model, spec, precision, max_batch, export_dir=export_dir, source=source)
