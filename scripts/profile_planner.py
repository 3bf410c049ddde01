"""Profile the planner query (``WorldModel.imagine``, N rollouts × H frames) per backend: where the time goes.

    python scripts/profile_planner.py CKPT [--backends cuda_graph compile] [--rollouts 64 --horizon 16]
                                      [--steps 2] [--device cuda] [--out DIR] [--patch 4] [--dim 512]

Per backend: the median wall time of the query, then one query under ``torch.profiler``
with the GPU kernels grouped by kind (GEMM, attention, fused Triton, other elementwise,
copies) — their summed device time against the wall time says whether the query is
bound by the GPU's arithmetic or by gaps between kernels. Also: network passes per
query, and the achieved matmul TFLOP/s (the network's FLOPs per pass, counted from
its layer shapes, over the measured time per pass). Prints ONE JSON line; writes the
top-kernel table and a Chrome trace (``trace_<backend>.json.gz``) under ``--out``.
Without a checkpoint it uses the ``small`` network with random weights (latency does
not depend on the weights' values), in ``--patch``-pixel patches if given (a finer token
grid's cost: 4 gives 256 tokens a 64×64 frame against the preset's 64), ``--dim`` wide if given (a wider
network's cost, with the preset's head size: 512 gives 8 heads against the preset's 320 and 5).
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from crcm_robotics.config import ModelConfig
from crcm_robotics.runtime.bench import random_student_checkpoint
from crcm_robotics.runtime.world_model import WorldModel

KINDS = (  # first match wins; names of cuBLAS/CUTLASS/cuDNN/flash/Triton kernels
    ("attention", ("fmha", "attention", "flash", "cudnn", "softmax")),
    ("gemm", ("gemm", "cutlass", "nvjet", "sm90_xmma", "cublas", "splitk", "addmm", "aten::mm", "bmm")),
    ("triton_fused", ("triton",)),
    ("copy", ("memcpy", "memset", "copy", "cat")),
)


def kind_of(name: str) -> str:
    low = name.lower()
    for kind, keys in KINDS:
        if any(k in low for k in keys):
            return kind
    return "elementwise_other"


def flops_per_pass(cfg: ModelConfig, batch: int) -> float:
    """Matmul FLOPs of one single-frame network pass at ``batch`` (linear layers + attention over the cache)."""
    p = (cfg.height // cfg.patch) * (cfg.width // cfg.patch)
    d, hidden = cfg.dim, int(cfg.dim * cfg.mlp_ratio)
    per_token_layer = 2 * (d * 3 * d + d * d + 2 * d * hidden)
    keys = (cfg.cache_frames + 1) * p
    attn_layer = 2 * 2 * p * keys * d  # QKᵀ and PV, all heads
    patch_dim = cfg.patch * cfg.patch * cfg.channels
    return batch * (cfg.depth * (p * per_token_layer + attn_layer) + 2 * p * patch_dim * d * 2)


def profile_backend(ckpt: str, backend: str, args: argparse.Namespace, out: Path) -> dict:
    from torch.profiler import ProfilerActivity, profile

    t0 = time.perf_counter()
    wm = WorldModel.load(ckpt, device=args.device, backend=backend, steps=args.steps, max_batch=args.rollouts)
    cfg = wm.model.cfg
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, *wm.image_shape), dtype=np.uint8)
    ctx_actions = rng.uniform(0, 512, (2, cfg.action_dim)).astype(np.float32)
    actions = rng.uniform(0, 512, (args.rollouts, args.horizon, cfg.action_dim)).astype(np.float32)
    wm.warmup([args.rollouts])

    def query() -> None:
        wm.imagine(actions, context=(frames, ctx_actions))
        if wm.device.type == "cuda":
            torch.cuda.synchronize(wm.device)

    for _ in range(3):
        query()
    setup_s = time.perf_counter() - t0
    walls = []
    for _ in range(args.repeats):
        s = time.perf_counter()
        query()
        walls.append((time.perf_counter() - s) * 1e3)
    wall_ms = statistics.median(walls)

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if wm.device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        s = time.perf_counter()
        query()
        profiled_wall_ms = (time.perf_counter() - s) * 1e3
    trace = out / f"trace_{backend}.json"
    prof.export_chrome_trace(str(trace))
    with open(trace, "rb") as src, gzip.open(f"{trace}.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    trace.unlink()

    on_gpu = wm.device.type == "cuda"
    by_kind: dict[str, float] = {}
    rows = []
    n_kernels = 0
    for ev in prof.key_averages():
        t_us = ev.self_device_time_total if on_gpu else ev.self_cpu_time_total
        if t_us <= 0 or (on_gpu and ev.device_type != torch.autograd.DeviceType.CUDA):
            continue
        if not on_gpu and not ev.key.startswith("aten::"):
            continue
        n_kernels += ev.count
        kind = kind_of(ev.key)
        by_kind[kind] = by_kind.get(kind, 0.0) + t_us / 1e3
        rows.append((t_us / 1e3, ev.count, kind, ev.key))
    rows.sort(reverse=True)
    busy_ms = sum(by_kind.values())
    passes = 1 + args.horizon * wm.sampler.network_passes  # context encode + every frame's passes
    per_pass_ms = wall_ms / passes
    flops = flops_per_pass(cfg, args.rollouts)
    table = [(f"{backend}: query {wall_ms:.2f} ms (profiled run {profiled_wall_ms:.2f} ms), "
              f"{'GPU kernel' if on_gpu else 'CPU op'} time {busy_ms:.2f} ms in {n_kernels} launches")]
    table += [f"{ms:9.3f} ms {n:6d}× {kind:18s} {name[:110]}" for ms, n, kind, name in rows[:25]]
    (out / f"top_kernels_{backend}.txt").write_text("\n".join(table) + "\n")
    print("\n".join(table[:12]), file=sys.stderr)
    return {
        "query_ms": round(wall_ms, 2), "profiled_query_ms": round(profiled_wall_ms, 2),
        "busy_ms": round(busy_ms, 2), "busy_fraction": round(busy_ms / profiled_wall_ms, 3),
        "by_kind_ms": {k: round(v, 2) for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])},
        "launches": n_kernels, "network_passes": passes, "ms_per_pass": round(per_pass_ms, 3),
        "matmul_tflops_achieved": round(flops / (per_pass_ms * 1e-3) / 1e12, 1),
        "tokens_per_frame": cfg.tokens_per_frame, "matmul_gflop_per_pass": round(flops / 1e9, 2),
        "setup_s": round(setup_s, 1),
        "top": [{"ms": round(ms, 3), "count": n, "kind": kind, "name": name[:90]} for ms, n, kind, name in rows[:8]],
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ckpt", nargs="?", default=None, help="student checkpoint (default: random `small` network)")
    ap.add_argument("--backends", nargs="+", default=["cuda_graph", "compile"])
    ap.add_argument("--rollouts", type=int, default=64)
    ap.add_argument("--horizon", type=int, default=16)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default="outputs/profile_planner")
    ap.add_argument("--patch", type=int, default=None,
                    help="the random network's patch side in pixels (default: the `small` preset's 8)")
    ap.add_argument("--dim", type=int, default=None,
                    help="the random network's width (default: the `small` preset's 320; heads keep its head size)")
    args = ap.parse_args(argv)
    if args.ckpt and (args.patch is not None or args.dim is not None):
        ap.error("--patch and --dim shape the random network; a checkpoint has its own")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    random_name = ("random small" + ("" if args.patch is None else f", patch {args.patch}")
                   + ("" if args.dim is None else f", dim {args.dim}"))
    result: dict = {"ckpt": args.ckpt or random_name, "rollouts": args.rollouts, "horizon": args.horizon,
                    "steps": args.steps, "torch": torch.__version__,
                    "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None, "backends": {}}
    with tempfile.TemporaryDirectory(prefix="profile_planner_") as tmp:  # a random network's checkpoint, gone after
        try:
            ckpt = args.ckpt or str(random_student_checkpoint(Path(tmp) / "small_random", "small", args.steps,
                                                              patch=args.patch, dim=args.dim))
        except ValueError as exc:
            given = " ".join(f"--{name} {value}" for name, value in (("patch", args.patch), ("dim", args.dim))
                             if value is not None)
            ap.error(f"{given}: {exc}")
        for backend in args.backends:
            result["backends"][backend] = profile_backend(ckpt, backend, args, out)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
