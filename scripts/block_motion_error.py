"""PushT: the block's pose in predicted frames, split by whether the true block moved.

A world model can render a block that stays put and still fail every push. This script rolls a
checkpoint out on held-out windows (as ``crcm eval`` does), reads the block's position and angle off the
predicted frames with a state probe, and reports the error separately for frames where the true block is still
(within 2 env units and 2 degrees of the last context frame) and where it moved; the probe on the real frames
and copy-last give the floor and the do-nothing reference. With several probes (for example one trained on
real frames and one also on the model's own imagined frames, ``crcm train probe imagined.ckpt=``) the same
predictions are read by each, under ``probes`` keyed by directory. ``--split train`` scores the same way on
episodes the checkpoint trained on instead: far smaller errors there than held out would mean it memorised
its episodes (more data would pay); alike, that it generalises as far as it fits. ``--split-from CKPT2`` takes
the split from another checkpoint trained on STORE (e.g. one fine-tuned on a few episodes, to score the
checkpoint it started from on the same windows). ``--weights last`` scores the run's final weights where
validation kept others (``CKPT/selected``, read by default): a run whose few validation windows kept an early
update can then be scored at its end too. One JSON line; ``weights`` names the directory read, ``update`` its
update. ``--errors-out FILE.npz`` also writes every frame's errors (as the first probe reads them), the true
states (and the last context frame's) and the moved mask, so that two checkpoints scored on the same windows can
be compared window by window (scripts/compare_block_errors.py).

    python scripts/block_motion_error.py CKPT STORE PROBE [PROBE ...] [--steps 1 4] [--episodes 20] \
        [--horizon 5] [--split val|train] [--split-from CKPT2] [--weights selected|last] [--errors-out FILE.npz]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from crcm_robotics.data.pusht_sim import block_errors, block_moved, still_moved_summary
from crcm_robotics.data.store import NormStats, TrajectoryStore
from crcm_robotics.eval.evaluate import cut_windows, predict_windows
from crcm_robotics.model.checkpoint import WEIGHTS, build_model, load_checkpoint
from crcm_robotics.model.sampler import sampler_from_meta
from crcm_robotics.model.tokenizer import make_codec
from crcm_robotics.plan.probe import load_probe

CONTEXT = 2


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ckpt")
    ap.add_argument("store")
    ap.add_argument("probes", nargs="+", metavar="probe")
    ap.add_argument("--steps", type=int, nargs="+", default=[4], help="sampler steps to compare")
    ap.add_argument("--episodes", type=int, default=20, help="episodes of the split (4 windows each)")
    ap.add_argument("--split", choices=("val", "train"), default="val",
                    help="the checkpoint's held-out episodes, or the first of those it trained on")
    ap.add_argument("--split-from", help="a checkpoint trained on STORE whose split to use (default: CKPT's)")
    ap.add_argument("--horizon", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--weights", choices=WEIGHTS, default="selected",
                    help="validation's kept weights (CKPT/selected, where the run kept some) or the run's last")
    ap.add_argument("--errors-out", help="FILE.npz: every frame's errors as the first probe reads them, the true "
                    "states and the moved mask (for scripts/compare_block_errors.py)")
    args = ap.parse_args(argv)
    if args.errors_out and not args.errors_out.endswith(".npz"):
        raise SystemExit(f"--errors-out {args.errors_out!r}: expected a path ending in .npz")
    device = torch.device(args.device)
    ckpt = load_checkpoint(args.ckpt, weights=args.weights)
    store = TrajectoryStore(args.store)
    if "pusht" not in store.attrs or store.state_dim < 5:
        raise SystemExit(f"{args.store}: a PushT store with logged states (agent x, y, block x, y, angle) "
                         "expected")
    model = build_model(ckpt, device)
    codec = make_codec(model.cfg, ckpt.path, device)
    split_from = args.split_from or args.ckpt
    split_meta = load_checkpoint(split_from).meta if args.split_from else ckpt.meta
    if split_meta.get("data_hash") not in (None, store.content_hash()):
        raise SystemExit(f"{split_from} was trained on another store than {args.store} (content hashes "
                         "differ): its split names other episodes")
    episodes = list(split_meta["split"][args.split])[: args.episodes]
    win = cut_windows(store, episodes, CONTEXT + args.horizon, int(ckpt.meta.get("frame_skip", 1)), 4,
                      NormStats.from_dict(ckpt.stats["action"]))
    probes = {p: load_probe(p, device) for p in args.probes}

    def read(probe, frames: np.ndarray) -> np.ndarray:
        n, h = frames.shape[:2]
        with torch.no_grad():
            state = probe.state_of(torch.from_numpy(frames.reshape(n * h, *frames.shape[2:])).to(device))
        return np.asarray(state).reshape(n, h, -1)

    true, last = win.states[:, CONTEXT:], win.states[:, CONTEXT - 1 : CONTEXT]
    moved = block_moved(last, true)
    rows = {"real_frames": win.frames[:, CONTEXT:],
            "copy_last": np.repeat(win.frames[:, CONTEXT - 1 : CONTEXT], args.horizon, axis=1)}
    for steps in args.steps:
        spec = sampler_from_meta(ckpt.meta, steps)
        rows[f"steps_{steps}"] = predict_windows(model, codec, spec, win.frames, win.actions, CONTEXT, device,
                                                 batch=40)
    errors = {p: {name: block_errors(read(probe, frames), true) for name, frames in rows.items()}
              for p, probe in probes.items()}
    per_probe = {p: {name: still_moved_summary(*pair, moved) for name, pair in by_row.items()}
                 for p, by_row in errors.items()}
    result: dict = {"ckpt": args.ckpt, "weights": str(ckpt.path), "update": ckpt.meta.get("step"),
                    "split": args.split, "split_from": split_from, "windows": len(win.frames), "horizon": args.horizon}
    if len(per_probe) == 1:
        result.update(next(iter(per_probe.values())))
    else:
        result["probes"] = per_probe
    if args.errors_out:
        first = errors[args.probes[0]]
        update = -1 if result["update"] is None else result["update"]
        np.savez_compressed(args.errors_out, true=true, last=last, moved=moved, episodes=np.asarray(win.episodes),
                            ckpt=np.asarray(args.ckpt), update=np.asarray(update), probe=np.asarray(args.probes[0]),
                            **{f"{name}_{kind}": value for name, (pos, deg) in first.items()
                               for kind, value in (("position", pos), ("angle", deg))})
        result["errors_out"] = args.errors_out
    print(json.dumps(result))


if __name__ == "__main__":
    main()
