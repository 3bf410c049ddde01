"""``crcm bench CKPT``: runtime latency per backend, printed as ONE JSON line (and saved under outputs/bench/).

Per backend (a :class:`WorldModel` each, same checkpoint, same sampler):

- ``stream_ms_per_frame`` / ``stream_fps``: batch-1 streaming, end to end —
  ``WorldModel.step(action)`` from a raw numpy action to a uint8 frame on the
  host (validation, normalization, noise, the step, decode, device→host copy);
- ``step_ms_per_frame``: the batch-1 per-frame step alone (the backend's
  stepper; on CUDA timed with events), i.e. what the GPU work costs;
- ``planner_ms``: one ``imagine`` query of ``planner_rollouts`` × ``planner_horizon``
  frames from a given context (context encoding included), end to end, every frame returned;
- ``planner_costs_ms``: the same query as a planner makes it, a goal image and costs only
  (``return_frames="none"``, ``final_mse``): with a latent codec only the last frames are decoded;
- ``planner_latent_costs_ms``: that query with the ``latent_mse`` cost, which decodes no frame;
- ``peak_gpu_mem_mb``: ``torch.cuda.max_memory_allocated`` over that backend's
  runs (onnxruntime's own CUDA memory is not counted);
- ``setup_s``: load + first use (CUDA graph capture / compilation / export); ``cache`` (compile): whether
  saved artefacts were loaded (a warm start) or it compiled cold.

Every figure is the median of ``repeats`` timed runs after ``warmup`` untimed ones,
with ``torch.cuda.synchronize`` around each timed run on CUDA.

Teacher vs student: the teacher checkpoint (``teacher=CKPT``) — or, without one,
*the same network* run with the teacher's ODE sampler (labelled so in
``teacher_vs_student.source``) — timed for batch-1 streaming with
``teacher_backend`` (default: the fastest student backend), against the
student's figure on that backend.

Also runnable as ``python -m crcm_robotics.runtime.bench CKPT key=value …``.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crcm_robotics.model.sampler import SamplerSpec, sampler_from_meta
from crcm_robotics.model.tokenizer import frame_hw, make_codec
from crcm_robotics.runtime.backends import BackendUnavailable, canonical_backend
from crcm_robotics.runtime.device import resolve_device, resolve_dtype
from crcm_robotics.runtime.world_model import WorldModel

GPU_BACKENDS = ("eager", "cuda_graph", "compile")
CPU_BACKENDS = ("eager", "onnx")


def random_student_checkpoint(out: str | Path, preset: str = "small", steps: int = 2,
                              codec: str | Path | None = None, env_action_dim: int = 2,
                              frame_skip: int = 1, depth: int | None = None, patch: int | None = None,
                              dim: int | None = None) -> Path:
    """Save a ``steps``-step student with random weights and the teacher ``preset``'s network: 64×64 PushT,
    or with ``codec`` (a ``crcm train codec`` directory) a latent student on that codec's frames, carrying it.

    Latency does not depend on the weights' values, so GPU benches and profiles need no trained checkpoint.
    ``env_action_dim`` × ``frame_skip`` is the network's action width (the arm: 4 × 5); ``depth``: that many
    blocks instead of the preset's (a shallow student's latency); ``patch``: that patch side in pixels instead of
    the preset's (a finer token grid's latency); ``dim``: that width instead of the preset's, its heads as many as
    keep the preset's head size (a wider network's latency).
    """
    from crcm_robotics.conf import compose_config
    from crcm_robotics.config import to_dict
    from crcm_robotics.model.checkpoint import save_checkpoint
    from crcm_robotics.model.dit import CausalDiT
    from crcm_robotics.model.tokenizer import fit_model_config

    model_cfg = compose_config("config", [f"preset={preset}"], "crcm_robotics.conf.teacher").model
    if depth is not None:
        if depth < 1:
            raise ValueError(f"depth must be ≥ 1 block, got {depth}")
        model_cfg = dataclasses.replace(model_cfg, depth=depth)
    if patch is not None:
        if patch < 1 or model_cfg.height % patch or model_cfg.width % patch:
            raise ValueError(f"patch must divide the {model_cfg.height}x{model_cfg.width} frame, got {patch}")
        model_cfg = dataclasses.replace(model_cfg, patch=patch)
    if dim is not None:
        head_size = model_cfg.dim // model_cfg.heads
        if dim < head_size or dim % head_size:
            raise ValueError(f"dim must be a multiple of the `{preset}` preset's head size {head_size}, got {dim}")
        model_cfg = dataclasses.replace(model_cfg, dim=dim, heads=dim // head_size)
    dims = env_action_dim * frame_skip
    carried = None
    if codec is not None:
        carried = make_codec(dataclasses.replace(model_cfg, codec=str(codec)))
        model_cfg = fit_model_config(model_cfg, carried, carried.image_hw, str(codec), dims)
    else:
        model_cfg = dataclasses.replace(model_cfg, action_dim=dims)
    pusht = codec is None and env_action_dim == 2  # PushT's pixel targets, else unit-scale actions
    mean, std, lo, hi = (256.0, 100.0, 0.0, 512.0) if pusht else (0.0, 1.0, -1.0, 1.0)
    stats = {"action": {"mean": [mean] * dims, "std": [std] * dims, "min": [lo] * dims, "max": [hi] * dims}}
    meta = {"kind": "student", "sampler": {"kind": "consistency", "steps": steps}, "frame_skip": frame_skip,
            "note": f"random weights, `{preset}` network: for latency only"}
    save_checkpoint(out, CausalDiT(model_cfg).state_dict(), {"model": to_dict(model_cfg)}, stats, meta,
                    codec=carried)
    return Path(out)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn: Callable[[], Any], device: torch.device, warmup: int, repeats: int, per: int = 1) -> float:
    """Median wall milliseconds of ``fn()`` (divided by ``per``) over ``repeats`` runs after ``warmup``."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1e3 / per)
    return statistics.median(times)


def device_step_ms(wm: WorldModel, frames: int, warmup: int, repeats: int) -> float:
    """Median ms of the batch-1 stepper alone (inputs prepared once; CUDA events on GPU)."""
    st = wm._backend.stepper(1, "stream")
    cfg = wm.model.cfg
    dev = wm.device
    a = torch.zeros(1, 1, cfg.action_dim, device=dev)
    noise = torch.randn(wm.sampler.noise_draws, 1, 1, cfg.channels, cfg.height, cfg.width, device=dev)
    prev = torch.zeros(1, 1, cfg.channels, cfg.height, cfg.width, device=dev)
    saved = st.cache.clone()  # keep the stream's state as reset() left it

    def run() -> None:
        p = prev
        for _ in range(frames):
            p = st(a, noise, p)

    try:
        if dev.type != "cuda":
            return median_ms(run, dev, warmup, repeats, frames)
        for _ in range(warmup):
            run()
        times = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            run()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / frames)
        return statistics.median(times)
    finally:
        st.cache.copy_(saved)


def bench_backend(name: str, cfg, ckpt: str, device: torch.device, sampler: SamplerSpec | None,
                  ctx: tuple[np.ndarray, np.ndarray], actions: np.ndarray, plan: np.ndarray,
                  planner: bool = True) -> dict[str, Any]:
    """Figures of one backend (``status`` says why they are missing if it could not run)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    print(f"bench: {name} ({'teacher' if sampler else 'student'}) setting up", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    try:
        wm = WorldModel.load(ckpt, device=device, backend=name, steps=cfg.steps or None, max_batch=cfg.max_batch,
                             dtype=None if cfg.dtype == "auto" else cfg.dtype, seed=cfg.seed, sampler=sampler,
                             compile_precompiled=cfg.compile_precompiled, codec_dtype=cfg.codec_dtype)
        wm.reset(*ctx)
        wm.warmup([plan.shape[0]] if planner else [])
        wm.step(actions[0])
    except BackendUnavailable as exc:
        return {"status": f"unavailable: {exc}"}
    except Exception as exc:  # report and go on with the other backends
        return {"status": f"error: {type(exc).__name__}: {exc}"}
    setup_s = time.perf_counter() - t0
    f = cfg.stream_frames
    it = iter(range(10**9))

    def stream() -> None:
        for _ in range(f):
            wm.step(actions[next(it) % len(actions)])

    out: dict[str, Any] = {}
    ms = median_ms(stream, device, cfg.warmup, cfg.repeats, f)
    out["stream_ms_per_frame"] = round(ms, 4)
    out["stream_fps"] = round(1e3 / ms, 1)
    out["step_ms_per_frame"] = round(device_step_ms(wm, f, cfg.warmup, cfg.repeats), 4)
    if planner:
        pms = median_ms(lambda: wm.imagine(plan, context=ctx), device, cfg.warmup, cfg.repeats)
        out["planner_ms"] = round(pms, 3)
        out["planner_frames_per_s"] = round(plan.shape[0] * plan.shape[1] / pms * 1e3, 1)
        goal = ctx[0][-1]  # the query a planner makes: one cost per rollout, no frames returned
        cms = median_ms(lambda: wm.imagine(plan, context=ctx, goal=goal, return_frames="none"), device,
                        cfg.warmup, cfg.repeats)
        out["planner_costs_ms"] = round(cms, 3)
        # the same with the latent cost: no frame decoded (for a latent checkpoint, less the decoder's share)
        lms = median_ms(lambda: wm.imagine(plan, context=ctx, goal=goal, return_frames="none",
                                           cost="latent_mse"), device, cfg.warmup, cfg.repeats)
        out["planner_latent_costs_ms"] = round(lms, 3)
    if device.type == "cuda":
        out["peak_gpu_mem_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    out["setup_s"] = round(setup_s, 2)
    info = wm.info()
    out["status"] = info["backend_status"]
    if "codec_dtype" in info:  # a latent checkpoint's codec
        out["codec_dtype"] = info["codec_dtype"]
    if wm._backend.cache_status is not None:  # compile: cold or warm start (CKPT/compile_cache)
        out["cache"] = wm._backend.cache_status
    print(f"bench: {name} done ({setup_s:.0f} s setup): {out}", file=sys.stderr, flush=True)
    return out


def run_bench(cfg) -> dict[str, Any]:
    from crcm_robotics.model.checkpoint import load_checkpoint

    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    default = GPU_BACKENDS if device.type == "cuda" else CPU_BACKENDS
    names = [canonical_backend(b) for b in (cfg.backends or default)]
    ck = load_checkpoint(cfg.ckpt)
    spec = sampler_from_meta(ck.meta, cfg.steps)
    mcfg = ck.model_config
    k = cfg.context or mcfg.cache_frames
    if not 1 <= k <= mcfg.cache_frames:
        raise ValueError(f"context={cfg.context}; expected 1 to {mcfg.cache_frames} (the model's KV cache window)")
    rng = np.random.default_rng(cfg.seed)
    a_stats = ck.stats["action"]
    mean, std = np.asarray(a_stats["mean"]), np.asarray(a_stats["std"])

    def raw_actions(*shape: int) -> np.ndarray:
        return (mean + std * rng.standard_normal((*shape, mcfg.action_dim))).astype(np.float32)

    image_hw = frame_hw(mcfg, make_codec(mcfg, ck.path))  # pixels, also for a latent checkpoint
    ctx = (rng.integers(0, 256, (k, *image_hw, 3), dtype=np.uint8), raw_actions(k))
    actions = raw_actions(64)
    plan = raw_actions(cfg.planner_rollouts, cfg.planner_horizon)

    result: dict[str, Any] = {
        "bench": "runtime", "checkpoint": str(cfg.ckpt), "kind": ck.meta.get("kind", "unknown"),
        "sampler": _sampler(spec), "network_passes_per_frame": spec.network_passes,
        "image": list(image_hw), "model": {"dim": mcfg.dim, "depth": mcfg.depth, "heads": mcfg.heads,
                                                     "patch": mcfg.patch, "cache_frames": mcfg.cache_frames},
        "device": _device_name(device), "torch": torch.__version__,
        "dtype": str(resolve_dtype(None if cfg.dtype == "auto" else cfg.dtype, device)).removeprefix("torch."),
        "context_frames": k, "stream_frames": cfg.stream_frames, "warmup": cfg.warmup, "repeats": cfg.repeats,
        "planner": {"rollouts": cfg.planner_rollouts, "horizon": cfg.planner_horizon, "max_batch": cfg.max_batch},
        "backends": {},
    }
    for name in names:
        result["backends"][name] = bench_backend(name, cfg, cfg.ckpt, device, None, ctx, actions, plan)
    timed = {n: r for n, r in result["backends"].items() if "stream_ms_per_frame" in r}
    if timed:
        result["best"] = {"stream": min(timed, key=lambda n: timed[n]["stream_ms_per_frame"]),
                          "planner": min(timed, key=lambda n: timed[n].get("planner_ms", float("inf")))}
    result["teacher_vs_student"] = teacher_vs_student(cfg, ck, device, ctx, actions, plan, timed)
    if device.type == "cuda":
        peaks = [r["peak_gpu_mem_mb"] for r in result["backends"].values() if "peak_gpu_mem_mb" in r]
        result["peak_gpu_mem_mb"] = max(peaks) if peaks else None
    name = f"{Path(cfg.ckpt).name}_{spec.kind}{spec.steps}_{device.type}.json"
    out = Path(cfg.out or Path("outputs") / "bench" / name)
    out.parent.mkdir(parents=True, exist_ok=True)
    result["report"] = str(out)
    out.write_text(json.dumps(result, indent=1))
    return result


def teacher_vs_student(cfg, ck, device: torch.device, ctx, actions, plan,
                       timed: dict[str, dict]) -> dict[str, Any]:
    """Batch-1 streaming ms/frame of the teacher (checkpoint or ODE sampler on this network) vs the student."""
    from crcm_robotics.model.checkpoint import load_checkpoint

    if not timed:
        return {"status": "no student backend ran"}
    backend = canonical_backend(cfg.teacher_backend) if cfg.teacher_backend != "best" else \
        min(timed, key=lambda n: timed[n]["stream_ms_per_frame"])
    if cfg.teacher:
        t_ck = load_checkpoint(cfg.teacher)
        t_spec = sampler_from_meta(t_ck.meta, cfg.teacher_steps, cfg.teacher_solver or None)
        source, path = f"teacher checkpoint {cfg.teacher}", cfg.teacher
    else:
        own = ck.meta.get("sampler") or {}
        steps = cfg.teacher_steps or (int(own["steps"]) if own.get("kind") == "ode" else 16)
        solver = cfg.teacher_solver or own.get("solver") or "heun"
        t_spec = SamplerSpec("ode", steps, solver)  # type: ignore[arg-type]
        source = (f"same network as {cfg.ckpt} run with an ODE sampler ({t_spec.solver} x {t_spec.steps}); "
                  "no teacher= given, so this times the teacher's sampler, not a trained teacher")
        path = cfg.ckpt
    t = bench_backend(backend, cfg, path, device, t_spec, ctx, actions, plan, planner=False)
    student_ms = timed[backend]["stream_ms_per_frame"] if backend in timed else None
    out: dict[str, Any] = {
        "source": source, "backend": backend,
        "teacher": {"sampler": _sampler(t_spec), "network_passes_per_frame": t_spec.network_passes, **t},
        "student": {"stream_ms_per_frame": student_ms},
    }
    if student_ms and "stream_ms_per_frame" in t:
        out["speedup"] = round(t["stream_ms_per_frame"] / student_ms, 2)
    return out


def _sampler(spec: SamplerSpec) -> dict[str, Any]:
    return {"kind": spec.kind, "steps": spec.steps, "solver": spec.solver if spec.kind == "ode" else None}


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def main(argv: list[str] | None = None) -> int:
    """``python -m crcm_robotics.runtime.bench CKPT key=value …`` (same as ``crcm bench``).

    Composes the config itself rather than calling the CLI's ``main``: the CLI imports this module.
    """
    from crcm_robotics.conf import compose_config

    args = list(sys.argv[1:] if argv is None else argv)
    if args and "=" not in args[0]:
        args[0] = f"ckpt={args[0]}"
    print(json.dumps(run_bench(compose_config("config", args, "crcm_robotics.conf.bench"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
