"""Load and run one AOTInductor package of the step, stage by stage, printing where it crashes.

    python -X faulthandler scripts/gpu/aoti_probe.py CKPT PACKAGE.pt2 [--device cuda]

Build the package first: ``crcm export CKPT format=compiled compiled=aoti device=cuda dtype=auto batch=[1]
out=DIR``. On an H200 with torch 2.11 (CUDA 13) the process died with a segmentation fault in
``torch._inductor.aoti_load_package`` (stage ``load``); on CPU with torch 2.13 every stage passes.
"""

from __future__ import annotations

import argparse
import faulthandler

import torch
import torch._inductor

from crcm_robotics.model.checkpoint import build_model, load_checkpoint
from crcm_robotics.model.sampler import sampler_from_meta
from crcm_robotics.runtime.backends.aot_package import DeferredStepModule, step_inputs
from crcm_robotics.runtime.device import resolve_dtype


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ckpt")
    ap.add_argument("package")
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    faulthandler.enable()
    dev = torch.device(args.device)
    half = resolve_dtype(None, dev)  # the dtype `crcm export … dtype=auto` built the package for
    ck = load_checkpoint(args.ckpt)
    spec = sampler_from_meta(ck.meta, 0, None)
    spec.times()
    model = build_model(ck, dev, half)
    inputs = step_inputs(model, spec, model.new_cache(1, dev, half))
    print("stage: load", flush=True)
    runner = torch._inductor.aoti_load_package(args.package)
    print("stage: call", flush=True)
    out = runner(*inputs)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    with torch.no_grad():
        ref = DeferredStepModule(model, spec, half)(*inputs)
    print("stage: done; max |x0 - eager x0| =", float((out[0].float() - ref[0].float()).abs().max()), flush=True)


if __name__ == "__main__":
    main()
