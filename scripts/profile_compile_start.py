"""Where a warm start of the ``compile`` backend spends its time (issue 15: warm setup ≤ 10 s).

    python scripts/profile_compile_start.py --ckpt CKPT [--batches 1 64] [--device cuda] [--cprofile FILE]
        [--no-precompiled]

Run it in a fresh process whose Inductor/Triton caches are empty, after a cold run saved
``CKPT/compile_cache`` (``crcm export CKPT format=compiled batch=[1,64]``). It loads the
checkpoint on the ``compile`` backend as the node and server do and times each phase:
imports, CUDA initialisation, ``WorldModel.load`` (which loads the saved artefacts),
each batch size's stepper (a precompiled step loaded, or Dynamo's trace + cache hits;
then the CUDA graph capture), the context encoder and the first frame. Per stepper it
counts the frames Dynamo traced (0 for a loaded precompiled step); Dynamo's own
per-phase totals come along (``torch._dynamo.utils.compile_times``). ``--no-precompiled``
times the path without precompiled steps (trace + Inductor artefacts). Prints one JSON
line; ``--cprofile`` writes the top functions by cumulative time to a text file.
"""

from __future__ import annotations

import argparse
import json
import time

T_START = time.perf_counter()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--cprofile", default="", help="write cProfile's top functions here")
    ap.add_argument("--no-precompiled", action="store_true", help="trace every batch size (artefacts only)")
    args = ap.parse_args()

    profiler = None
    if args.cprofile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    phases: dict[str, float] = {}
    t = time.perf_counter()

    def mark(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        phases[name] = round(now - t, 3)
        t = now

    import numpy as np
    import torch

    mark("import_torch")
    from crcm_robotics.runtime import WorldModel

    mark("import_crcm")
    import torch._dynamo  # noqa: F401
    import torch._inductor.config  # noqa: F401

    mark("import_inductor")
    dev = torch.device(args.device)
    if dev.type == "cuda":
        torch.zeros(1, device=dev)
        torch.cuda.synchronize(dev)
    mark("device_init")
    from torch._dynamo.utils import counters

    wm = WorldModel.load(args.ckpt, device=dev, backend="compile", max_batch=max(args.batches),
                         compile_precompiled=not args.no_precompiled)
    mark("load_with_artefacts")
    backend = wm._backend
    frames: dict[str, int] = {}
    for b in args.batches:
        before = counters["frames"]["total"]
        backend.stepper(backend.bucket(b), "stream" if b == 1 else "imagine")
        mark(f"stepper_b{b}")
        frames[f"stepper_b{b}"] = counters["frames"]["total"] - before
    h, w = wm.image_shape[:2]
    k = wm.context_frames
    wm.reset(np.zeros((k, h, w, 3), np.uint8), np.zeros((k, wm.env_action_dim), np.float32))
    mark("reset_encode_graph")
    wm.step(np.zeros(wm.env_action_dim, np.float32))
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    mark("first_frame")
    total = time.perf_counter() - T_START
    if profiler is not None:
        import io
        import pstats

        profiler.disable()
        buf = io.StringIO()
        pstats.Stats(profiler, stream=buf).sort_stats("cumulative").print_stats(60)
        with open(args.cprofile, "w") as f:
            f.write(buf.getvalue())
    from torch._dynamo.utils import compile_times

    dynamo = compile_times(repr="csv", aggregate=True)
    print(json.dumps({"profile": "compile_start", "device": str(dev), "batches": args.batches,
                      "total_s": round(total, 2), "phases_s": phases, "cache": backend.cache_status,
                      "precompiled_used": backend.precompiled_used, "dynamo_frames": frames,
                      "dynamo_compile_times": {"names": list(dynamo[0]), "values": [str(x) for x in dynamo[1]]}}))


if __name__ == "__main__":
    main()
