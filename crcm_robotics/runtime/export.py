"""Export the per-frame step (denoise + cache write) to files: ONNX (onnxruntime) or TensorRT (torch-tensorrt).

(``format=compiled`` instead fills the ``compile`` backend's artefact cache, ``CKPT/compile_cache`` by
default: see :mod:`crcm_robotics.runtime.backends.compile_cache`.)

One file per batch size (fixed shapes) in an export folder, plus ``manifest.json``::

    OUT/
      manifest.json                          format, fingerprint of the weights, model + sampler, files
      step_consistency2_b1.onnx              StepModule at batch 1 (inputs/outputs: runtime/step_module.py)
      step_consistency2_b64.onnx
      step_consistency2_b1.ep                TensorRT: torch_tensorrt.save(...) ExportedProgram

The ONNX graphs come from the TorchScript exporter (``torch.onnx.export(dynamo=False)``):
it needs no extra package (the dynamo exporter needs onnxscript) and handles the
cache's in-graph scatter. Exports are float32; onnxruntime's CUDA provider runs
them as such. ``crcm export CKPT format=onnx out=DIR batch=[1,64]`` writes a
folder that ``WorldModel.load(CKPT, backend="onnx", export_dir=DIR)`` reuses;
the fingerprint guards against pairing it with other weights.

A latent checkpoint (``model.codec``) exports the same step on its latent grid: the codec is not in the
files; ``WorldModel.load`` pairs them with ``CKPT/codec`` (docs/latent.md).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from crcm_robotics.model.checkpoint import CODEC_DIR
from crcm_robotics.model.dit import CausalDiT
from crcm_robotics.model.sampler import SamplerSpec
from crcm_robotics.runtime.backends.base import BackendUnavailable
from crcm_robotics.runtime.step_module import INPUT_NAMES, OUTPUT_NAMES, StepModule, example_inputs, export_copy

MANIFEST = "manifest.json"
FORMATS = {"onnx": "onnx", "tensorrt": "ep"}  # format -> file extension


class ExportError(ValueError):
    """An export folder does not match the model or cannot be written."""


def weights_fingerprint(model: CausalDiT) -> str:
    """sha256 (16 hex digits) of the network's float32 weights and config."""
    h = hashlib.sha256(json.dumps(model.cfg.key(), sort_keys=True, default=str).encode())
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def sampler_tag(spec: SamplerSpec) -> str:
    """File-name tag of a sampler; the times and the guidance are baked into an exported step, so other mid times
    or guidance get other files."""
    mids = "_mid" + "-".join(f"{t:g}" for t in spec.mid_times) if spec.mid_times else ""
    guide = f"_g{spec.guidance:g}" if spec.guided else ""
    return f"{spec.kind}{spec.steps}" + (f"_{spec.solver}" if spec.kind == "ode" else "") + mids + guide


def step_file(fmt: str, spec: SamplerSpec, batch: int) -> str:
    return f"step_{sampler_tag(spec)}_b{batch}.{FORMATS[fmt]}"


def require_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise BackendUnavailable(
            "backend onnx needs the onnxruntime package, which is not installed; "
            "pip install 'crcm-robotics[export]' (or onnxruntime-gpu for the CUDA provider)"
        ) from None
    return onnxruntime


def require_tensorrt():
    try:
        import torch_tensorrt
    except ImportError:
        raise BackendUnavailable(
            "backend tensorrt needs the torch_tensorrt package, which is not installed; "
            f"pip install torch-tensorrt built for torch {torch.__version__} (CUDA only)"
        ) from None
    return torch_tensorrt


def export_onnx(model: CausalDiT, spec: SamplerSpec, batch: int, path: str | Path, opset: int = 17) -> Path:
    """Write the batch-``batch`` step of ``model`` under sampler ``spec`` as an ONNX file."""
    if importlib.util.find_spec("onnx") is None:
        raise BackendUnavailable("exporting to ONNX needs the onnx package; pip install 'crcm-robotics[export]'")
    path = Path(path)
    module = StepModule(export_copy(model, "cpu"), spec).eval()
    inputs = example_inputs(module.model, spec, batch)
    tmp = path.with_name(path.name + ".tmp")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings on fixed-size unpacking; the legacy-exporter notice
        torch.onnx.export(module, inputs, str(tmp), dynamo=False, opset_version=opset,
                          input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES), do_constant_folding=True)
    tmp.replace(path)
    return path


def compile_tensorrt(model: CausalDiT, spec: SamplerSpec, batch: int, device: torch.device,
                     weights: torch.dtype = torch.float32):
    """torch-tensorrt (dynamo IR) module of the batch-``batch`` step; inputs as :func:`example_inputs`."""
    torch_tensorrt = require_tensorrt()
    if device.type != "cuda":
        raise BackendUnavailable(f"backend tensorrt needs a CUDA device, got {device}")
    module = StepModule(export_copy(model, device), spec).eval()
    inputs = list(example_inputs(module.model, spec, batch, device))
    kwargs: dict[str, Any] = {"ir": "dynamo", "inputs": inputs}
    if weights != torch.float32:
        kwargs["enabled_precisions"] = {torch.float32, weights}
    with torch.no_grad():
        return torch_tensorrt.compile(module, **kwargs), inputs


def export_tensorrt(model: CausalDiT, spec: SamplerSpec, batch: int, path: str | Path, device: torch.device,
                    weights: torch.dtype = torch.float32) -> Path:
    torch_tensorrt = require_tensorrt()
    trt_module, inputs = compile_tensorrt(model, spec, batch, device, weights)
    torch_tensorrt.save(trt_module, str(path), inputs=inputs)
    return Path(path)


def read_manifest(folder: Path) -> dict[str, Any] | None:
    f = folder / MANIFEST
    return json.loads(f.read_text()) if f.is_file() else None


def ensure_exported(fmt: str, model: CausalDiT, spec: SamplerSpec, batch: int, folder: str | Path,
                    checkpoint: str = "", fingerprint: str | None = None, opset: int = 17,
                    device: torch.device | None = None, weights: torch.dtype = torch.float32) -> Path:
    """Path of the ``fmt`` step file for (spec, batch) in ``folder``, exporting it when absent.

    Raises :class:`ExportError` when the folder holds an export of other weights.
    """
    if fmt not in FORMATS:
        raise ExportError(f"export format {fmt!r} unknown; expected one of {', '.join(FORMATS)}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fingerprint = fingerprint or weights_fingerprint(model)
    manifest = read_manifest(folder) or {
        "format": "crcm-step-export", "version": 1, "fingerprint": fingerprint, "checkpoint": checkpoint,
        "model": model.cfg.key(), "inputs": list(INPUT_NAMES), "outputs": list(OUTPUT_NAMES), "files": [],
    }
    if manifest.get("fingerprint") != fingerprint:
        raise ExportError(
            f"export folder {folder} holds a step exported from other weights "
            f"(fingerprint {manifest.get('fingerprint')}, checkpoint {manifest.get('checkpoint') or '?'}); "
            f"this model's fingerprint is {fingerprint}: use another folder"
        )
    name = step_file(fmt, spec, batch)
    path = folder / name
    if not path.is_file():
        t0 = time.perf_counter()
        if fmt == "onnx":
            export_onnx(model, spec, batch, path, opset)
        else:
            export_tensorrt(model, spec, batch, path, device or torch.device("cuda"), weights)
        manifest["files"] = [e for e in manifest["files"] if e["file"] != name] + [{
            "file": name, "format": fmt, "batch": batch, "sampler": spec.to_meta(),
            "seconds": round(time.perf_counter() - t0, 2),
        }]
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return path


def parity(model: CausalDiT, spec: SamplerSpec, batch: int, path: Path, frames: int = 3) -> dict[str, float]:
    """Max |onnxruntime − eager| over a ``frames``-frame rollout on random inputs (x0 and the KV cache)."""
    ort = require_onnxruntime()
    ref = StepModule(export_copy(model, "cpu"), spec).eval()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    k, v, seen, action, noise, prev = example_inputs(ref.model, spec, batch)
    diff = {"x0": 0.0, "kv": 0.0}
    with torch.no_grad():
        for _ in range(frames):
            x0, k2, v2, seen2 = ref(k, v, seen, action, noise, prev)
            o = session.run(None, dict(zip(INPUT_NAMES, (t.numpy() for t in (k, v, seen, action, noise, prev)))))
            diff["x0"] = max(diff["x0"], float((torch.from_numpy(o[0]) - x0).abs().max()))
            diff["kv"] = max(diff["kv"], float((torch.from_numpy(o[1]) - k2).abs().max()),
                             float((torch.from_numpy(o[2]) - v2).abs().max()))
            if int(o[3]) != int(seen2):
                raise ExportError(f"{path}: frames_seen_next is {int(o[3])}, eager says {int(seen2)}")
            k, v, seen, prev = k2, v2, seen2, x0  # continue from eager's state
    return {name: float(f"{d:.3g}") for name, d in diff.items()}


def run_export(cfg) -> dict[str, Any]:
    """``crcm export``: write the step files for each batch size; returns the JSON summary."""
    from crcm_robotics.model.checkpoint import build_model, load_checkpoint
    from crcm_robotics.model.sampler import sampler_from_meta
    from crcm_robotics.runtime.device import resolve_device, resolve_dtype

    if cfg.format not in (*FORMATS, "compiled"):
        raise ExportError(f"format={cfg.format!r}; expected one of {', '.join(FORMATS)} or compiled")
    batches = [int(b) for b in cfg.batch]
    if not batches or min(batches) < 1:
        raise ExportError(f"batch={list(cfg.batch)}; expected a list of sizes ≥ 1, e.g. batch=[1,64]")
    if cfg.format == "compiled":  # torch.compile artefacts for the `compile` backend's warm start
        from crcm_robotics.runtime.backends.compiled import EXPORT_KINDS, export_compiled

        if cfg.compiled not in EXPORT_KINDS:
            raise ExportError(f"compiled={cfg.compiled!r}; expected precompiled (aot_compile-d steps), cache "
                              "(torch.compile's artefacts) or aoti (AOTInductor packages)")

        return export_compiled(cfg.ckpt, cfg.out, batches, cfg.device, cfg.dtype, cfg.steps, cfg.solver,
                               kind=cfg.compiled, weights=cfg.weights)
    ck = load_checkpoint(cfg.ckpt, weights=cfg.weights)
    spec = sampler_from_meta(ck.meta, cfg.steps, cfg.solver)
    spec.times()
    model = build_model(ck, "cpu", torch.float32)
    out = Path(cfg.out or Path("outputs") / "export" / f"{Path(cfg.ckpt).name}_{sampler_tag(spec)}")
    device = resolve_device(cfg.device) if cfg.format == "tensorrt" else torch.device("cpu")
    weights = resolve_dtype(cfg.dtype, device) if cfg.format == "tensorrt" else torch.float32
    files, checks = [], {}
    t0 = time.perf_counter()
    for b in batches:
        path = ensure_exported(cfg.format, model, spec, b, out, str(ck.path), opset=cfg.opset, device=device,
                               weights=weights)
        files.append(str(path))
        if cfg.format == "onnx" and cfg.check:
            checks[str(b)] = parity(model, spec, b, path)
    result: dict[str, Any] = {
        "format": cfg.format, "out": str(out), "files": files, "batch": batches, "sampler": spec.to_meta(),
        "network_passes_per_frame": spec.network_passes, "checkpoint": str(ck.path), "kind": ck.meta.get("kind"),
        "fingerprint": read_manifest(out)["fingerprint"], "seconds": round(time.perf_counter() - t0, 2),
        "inputs": list(INPUT_NAMES), "outputs": list(OUTPUT_NAMES),
        # latent checkpoints: the step's frames are the codec's latents; the decoder stays in CKPT/codec
        "codec": str(ck.path / CODEC_DIR) if model.cfg.codec else None,
    }
    if checks:
        result["max_abs_diff_vs_eager"] = checks
    return result
