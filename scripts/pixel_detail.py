"""Pixel detail of predicted frames against the real ones, on held-out windows.

The mean absolute difference between neighbouring pixels (horizontal plus vertical, in uint8 units) of each
checkpoint's predicted frames, beside the same figure for the real frames. A prediction with less detail
than the real frames is blurred; one with more carries pixel noise. PSNR cannot tell which: it favours blur
and punishes noise, so a student whose PSNR falls may be sharpening or degrading. Prints one JSON line.

    python scripts/pixel_detail.py CKPT[:WEIGHTS[:STEPS]] ... [--horizon 8] [--context 2] [--windows 2]

WEIGHTS is ``selected`` (the run's validation pick, the default) or ``last``; STEPS the sampler's step count
(0, the default: the checkpoint's own). Windows are cut as ``crcm eval`` cuts them, from the first
checkpoint's held-out episodes of its training store.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from crcm_robotics.data.store import NormStats, TrajectoryStore
from crcm_robotics.eval.evaluate import cut_windows, predict_windows
from crcm_robotics.model.checkpoint import build_model, load_checkpoint
from crcm_robotics.model.sampler import sampler_from_meta
from crcm_robotics.model.tokenizer import make_codec


def detail(frames: np.ndarray) -> float:
    """Mean absolute neighbour difference of uint8 frames [..., H, W, C], horizontal plus vertical."""
    x = frames.astype(np.float32)
    return float(np.abs(np.diff(x, axis=-2)).mean() + np.abs(np.diff(x, axis=-3)).mean())


def parse_spec(spec: str) -> tuple[Path, str, int]:
    """CKPT[:WEIGHTS[:STEPS]] -> (path, weights, steps); a one-line error for anything else."""
    parts = spec.split(":")
    path, weights, steps = parts[0], parts[1] if len(parts) > 1 else "selected", parts[2] if len(parts) > 2 else "0"
    if len(parts) > 3 or not path or weights not in ("selected", "last") or not steps.isdigit():
        raise ValueError(f"{spec!r}: expected CKPT[:selected|last[:STEPS]]")
    return Path(path), weights, int(steps)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+", help="CKPT[:WEIGHTS[:STEPS]]")
    ap.add_argument("--horizon", type=int, default=8, help="predicted frames per window")
    ap.add_argument("--context", type=int, default=2, help="real frames each rollout starts from")
    ap.add_argument("--windows", type=int, default=2, help="windows per held-out episode")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    try:
        specs = [parse_spec(s) for s in args.checkpoints]
        if args.horizon < 1 or args.context < 1 or args.windows < 1:
            raise ValueError("--horizon, --context and --windows must be at least 1")
        device = torch.device(args.device)
        first = load_checkpoint(specs[0][0], weights=specs[0][1])
        store = TrajectoryStore(first.meta["data_path"])
        frame_skip = int(first.meta.get("frame_skip", 1))
        win = cut_windows(store, list(first.meta["split"]["val"]), args.context + args.horizon, frame_skip,
                          args.windows, NormStats.from_dict(first.stats["action"]))
        result = {"windows": len(win.frames), "horizon": args.horizon,
                  "real": round(detail(win.frames[:, args.context:]), 3), "models": {}}
        for i, ((path, weights, steps), spec) in enumerate(zip(specs, args.checkpoints)):
            ckpt = first if i == 0 else load_checkpoint(path, weights=weights)  # the first is loaded already
            if int(ckpt.meta.get("frame_skip", 1)) != frame_skip:
                raise ValueError(f"{path}: frame skip {ckpt.meta.get('frame_skip', 1)}, the first checkpoint's "
                                 f"is {frame_skip}")
            model = build_model(ckpt, device)
            sampler = sampler_from_meta(ckpt.meta, steps)
            pred = predict_windows(model, make_codec(model.cfg, ckpt.path, device), sampler, win.frames,
                                   win.actions, args.context, device, batch=32)
            result["models"][spec] = {"update": ckpt.meta.get("step"), "sampler": sampler.to_meta(),
                                      "detail": round(detail(pred), 3)}
    except (ValueError, OSError, KeyError) as exc:
        print(f"pixel_detail: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
