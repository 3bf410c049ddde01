"""PushT: the block's pose in predicted frames, split by whether the true block moved.

A world model can render a block that stays put and still fail every push. This script rolls a
checkpoint out on held-out windows (as ``crcm eval`` does), reads the block's position and angle off the
predicted frames with a state probe, and reports the error separately for frames where the true block is still
(within 2 env units and 2 degrees of the last context frame) and where it moved; the probe on the real frames
and copy-last give the floor and the do-nothing reference. With several probes (for example one trained on
real frames and one also on the model's own imagined frames, ``crcm train probe imagined.ckpt=``, or two runs
of one recipe at other seeds) the same predictions are read by each, under ``probes`` keyed by directory, and
``probe_agreement`` gives how far each later probe's readings lie from the first's on the same frames.
``--split train`` scores the same way on episodes the checkpoint trained on instead: far smaller errors there
than held out would mean it memorised its episodes (more data would pay); alike, that it generalises as far as
it fits. ``--split-from CKPT2`` takes
the split from another checkpoint trained on STORE (e.g. one fine-tuned on a few episodes, to score the
checkpoint it started from on the same windows). ``--weights last`` scores the run's final weights where
validation kept others (``CKPT/selected``, read by default): a run whose few validation windows kept an early
update can then be scored at its end too. One JSON line; ``weights`` names the directory read, ``update`` its
update. ``--errors-out FILE.npz`` also writes every frame's errors (as the first probe reads them), the true
states (and the last context frame's) and the moved mask, so that two checkpoints scored on the same windows can
be compared window by window (scripts/compare_block_errors.py). ``--render-check`` asks whether a wrong
block is a wrong pose drawn solid or a faded one: each frame's true state is rendered, and again with the
block where the first probe read it, and the frame's block-coloured pixels are compared with both
(``render_check``, by row, still and moved, and moved by predicted frame; ``pusht_sim.block_render_check``).
Real frames give the solid-and-right reference, copy-last the solid-and-wrong one. ``--strip-out FILE.png``
draws it for held-out windows from the one whose block moves farthest to the median one: each window's real
frames, the model's (the largest ``--steps``) and the true state rendered with the block where the probe read
the model's frame. ``--context K`` gives the model K real frames before it predicts (default 2; the planner gives
it its whole window, ``cache_frames``); ``--window-context C`` cuts the windows with C (≥ K) so that runs at
several K score the same true frames and pair in compare_block_errors.py.

    python scripts/block_motion_error.py CKPT STORE PROBE [PROBE ...] [--steps 1 4] [--episodes 20] \
        [--horizon 5] [--context 2] [--window-context C] [--split val|train] [--split-from CKPT2] [--weights selected|last] \
        [--errors-out FILE.npz] [--render-check] [--strip-out FILE.png [--strip-windows 4]]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from crcm_robotics.config import ConfigError
from crcm_robotics.data.pusht import PUSHT_WORKSPACE
from crcm_robotics.data.pusht_sim import (
    BLOCK_COLOUR_TOL,
    BLOCK_RGB,
    PushTSim,
    block_at,
    block_errors,
    block_moved,
    block_render_check,
    moved_by_step,
    pusht_errors,
    still_moved_summary,
)
from crcm_robotics.data.store import NormStats, TrajectoryStore
from crcm_robotics.eval.evaluate import cut_windows, predict_windows
from crcm_robotics.model.checkpoint import WEIGHTS, build_model, load_checkpoint
from crcm_robotics.model.sampler import check_guidance, sampler_from_meta
from crcm_robotics.model.tokenizer import make_codec
from crcm_robotics.plan.probe import ProbeError, colour_centroid, load_probe

CONTEXT = 2


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ckpt")
    ap.add_argument("store")
    ap.add_argument("probes", nargs="+", metavar="probe")
    ap.add_argument("--steps", type=int, nargs="+", default=[4], help="sampler steps to compare")
    ap.add_argument("--guidance", type=float, default=None,
                    help="classifier-free action guidance w (default: the checkpoint's; needs model.action_null)")
    ap.add_argument("--episodes", type=int, default=20, help="episodes of the split (4 windows each)")
    ap.add_argument("--split", choices=("val", "train"), default="val",
                    help="the checkpoint's held-out episodes, or the first of those it trained on")
    ap.add_argument("--split-from", help="a checkpoint trained on STORE whose split to use (default: CKPT's)")
    ap.add_argument("--horizon", type=int, default=5)
    ap.add_argument("--context", type=int, default=CONTEXT,
                    help="real frames the model is given before it predicts (1 … its cache_frames)")
    ap.add_argument("--window-context", type=int, default=None,
                    help="frames of context each window is cut with (default: --context; ≥ --context): runs at "
                         "several --context with the same value score the same predicted frames")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--weights", choices=WEIGHTS, default="selected",
                    help="validation's kept weights (CKPT/selected, where the run kept some) or the run's last")
    ap.add_argument("--errors-out", help="FILE.npz: every frame's errors as the first probe reads them, the true "
                    "states and the moved mask (for scripts/compare_block_errors.py)")
    ap.add_argument("--render-check", action="store_true",
                    help="also compare each frame's block pixels with renders at the true and the "
                    "probe-read pose")
    ap.add_argument("--mass-check", action="store_true",
                    help="also read the block's position off its colour's pixel centroid (the probe_mass "
                         "cost's reading), against the real frame's centroid: whether the cloud's mass sits "
                         "nearer the truth than the probe reads it")
    ap.add_argument("--strip-out", help="FILE.png: real, predicted and read-pose frames of windows from the "
                    "farthest-moving block's to the median's")
    ap.add_argument("--strip-windows", type=int, default=4, help="windows in --strip-out")
    args = ap.parse_args(argv)
    if args.strip_out and not args.strip_out.endswith(".png"):
        raise SystemExit(f"--strip-out {args.strip_out!r}: expected a path ending in .png")
    if args.strip_windows < 1:
        raise SystemExit(f"--strip-windows {args.strip_windows}: expected at least 1")
    if args.errors_out and not args.errors_out.endswith(".npz"):
        raise SystemExit(f"--errors-out {args.errors_out!r}: expected a path ending in .npz")
    window_context = args.context if args.window_context is None else args.window_context
    if args.context < 1 or window_context < args.context:
        raise SystemExit(f"--context {args.context} --window-context {window_context}: expected 1 ≤ context ≤ "
                         "window context")
    device = torch.device(args.device)
    ckpt = load_checkpoint(args.ckpt, weights=args.weights)
    if args.context > ckpt.model_config.cache_frames:
        raise SystemExit(f"--context {args.context}: {args.ckpt} sees at most {ckpt.model_config.cache_frames} "
                         "frames (model.cache_frames)")
    store = TrajectoryStore(args.store)
    if "pusht" not in store.attrs or store.state_dim < 5:
        raise SystemExit(f"{args.store}: a PushT store with logged states (agent x, y, block x, y, angle) "
                         "expected")
    if args.guidance is not None and not 0 <= args.guidance <= 20:
        raise SystemExit(f"--guidance {args.guidance}: expected a value in [0, 20] (1 = no guidance)")
    try:
        first_spec = sampler_from_meta(ckpt.meta, args.steps[0], guidance=args.guidance)
        check_guidance(first_spec, ckpt.model_config, args.ckpt)
    except ConfigError as e:
        raise SystemExit(f"--guidance: {e}") from None
    model = build_model(ckpt, device)
    codec = make_codec(model.cfg, ckpt.path, device)
    split_from = args.split_from or args.ckpt
    split_meta = load_checkpoint(split_from).meta if args.split_from else ckpt.meta
    if split_meta.get("data_hash") not in (None, store.content_hash()):
        raise SystemExit(f"{split_from} was trained on another store than {args.store} (content hashes "
                         "differ): its split names other episodes")
    episodes = list(split_meta["split"][args.split])[: args.episodes]
    win = cut_windows(store, episodes, window_context + args.horizon, int(ckpt.meta.get("frame_skip", 1)), 4,
                      NormStats.from_dict(ckpt.stats["action"]))
    try:
        probes = {p: load_probe(p, device) for p in args.probes}
    except ProbeError as e:
        raise SystemExit(f"block_motion_error.py: {e}") from None

    def read(probe, frames: np.ndarray) -> np.ndarray:
        n, h = frames.shape[:2]
        with torch.no_grad():
            state = probe.state_of(torch.from_numpy(frames.reshape(n * h, *frames.shape[2:])).to(device))
        return np.asarray(state).reshape(n, h, -1)

    c, cut = window_context, window_context - args.context  # the model is given the window's last `context`
    true, last = win.states[:, c:], win.states[:, c - 1 : c]
    moved = block_moved(last, true)
    rows = {"real_frames": win.frames[:, c:],
            "copy_last": np.repeat(win.frames[:, c - 1 : c], args.horizon, axis=1)}
    for steps in args.steps:
        spec = sampler_from_meta(ckpt.meta, steps, guidance=args.guidance)
        rows[f"steps_{steps}"] = predict_windows(model, codec, spec, win.frames[:, cut:], win.actions[:, cut:],
                                                 args.context, device,
                                                 batch=40)
    reads = {p: {name: read(probe, frames) for name, frames in rows.items()} for p, probe in probes.items()}
    errors = {p: {name: block_errors(states, true) for name, states in by_row.items()}
              for p, by_row in reads.items()}
    per_probe = {p: {name: still_moved_summary(*pair, moved) for name, pair in by_row.items()}
                 for p, by_row in errors.items()}
    result: dict = {"ckpt": args.ckpt, "weights": str(ckpt.path), "update": ckpt.meta.get("step"),
                    "split": args.split, "split_from": split_from, "windows": len(win.frames), "horizon": args.horizon,
                    "context": args.context, "window_context": window_context,
                    "guidance": first_spec.guidance}
    if len(per_probe) == 1:
        result.update(next(iter(per_probe.values())))
    else:
        result["probes"] = per_probe
        result["probe_agreement"] = probe_agreement(reads, args.probes, moved)
    if args.render_check:
        result["render_check"] = render_check(rows, reads[args.probes[0]], true, moved)
    if args.mass_check:
        result["mass_check"] = mass_check(rows, moved)
    if args.strip_out:
        model_row = f"steps_{max(args.steps)}"
        result["strip"] = save_strip(args.strip_out, rows["real_frames"], rows[model_row],
                                     reads[args.probes[0]][model_row], true, last, args.strip_windows,
                                     model_row)
    if args.errors_out:
        first = errors[args.probes[0]]
        update = -1 if result["update"] is None else result["update"]
        np.savez_compressed(args.errors_out, true=true, last=last, moved=moved, episodes=np.asarray(win.episodes),
                            ckpt=np.asarray(args.ckpt), update=np.asarray(update), probe=np.asarray(args.probes[0]),
                            **{f"{name}_{kind}": value for name, (pos, deg) in first.items()
                               for kind, value in (("position", pos), ("angle", deg))})
        result["errors_out"] = args.errors_out
    print(json.dumps(result))


def probe_agreement(reads: dict[str, dict[str, np.ndarray]], probes: list[str],
                    moved: np.ndarray) -> dict[str, dict]:
    """Each later probe's reading of every row's frames against the first probe's reading of the same frames:
    the block's position and angle apart, and the agent's position apart (still and moved frames). Two probe
    runs that agree on real frames may read a model's cloud-drawn block apart; a planner's probe cost then
    moves with the probe run."""
    first = reads[probes[0]]
    out = {}
    for p in probes[1:]:
        rows = {}
        for name, states in reads[p].items():
            apart = pusht_errors(states, first[name])
            summary = still_moved_summary(apart["block_pos_error"], np.degrees(apart["block_angle_error"]), moved)
            for part, mask in (("still", ~moved), ("moved", moved)):
                agent = apart["agent_pos_error"][mask]
                summary[part]["agent_position"] = round(float(agent.mean()), 2) if mask.any() else float("nan")
            rows[name] = summary
        out[p] = rows
    return out


def render_check(rows: dict[str, np.ndarray], reads: dict[str, np.ndarray], true: np.ndarray,
                 moved: np.ndarray) -> dict[str, dict]:
    """Each row's mean ``block_render_check`` figures over still and moved frames, and over moved frames by
    predicted frame."""
    def means(check: dict[str, np.ndarray], mask: np.ndarray) -> dict:
        return {"frames": int(mask.sum()), **{k: round(float(v[mask].mean()), 3) for k, v in check.items()}}

    out: dict[str, dict] = {}
    with PushTSim(size=int(next(iter(rows.values())).shape[2])) as sim:
        for name, frames in rows.items():
            check = block_render_check(sim, frames, reads[name], true)
            out[name] = {kind: means(check, mask) for kind, mask in (("still", ~moved), ("moved", moved))
                         if mask.any()}
            out[name]["moved_by_step"] = [{"step": step + 1, **means(check, mask)}
                                          for step, mask in enumerate(moved_by_step(moved)) if mask.any()]
    return out


def mass_check(rows: dict[str, np.ndarray], moved: np.ndarray) -> dict[str, dict]:
    """Each row's block position read off the block colour's pixel centroid (``plan.probe.colour_centroid``,
    what ``probe_mass`` reads), its distance in env units from the real frame's centroid: mean over still and
    moved frames and over moved frames by predicted frame. A frame with no block-coloured pixel counts at the
    real frame's centroid's distance from the image corner (it names no position)."""
    frames = rows["real_frames"]
    n, h, size = frames.shape[:3]
    units = PUSHT_WORKSPACE / size

    def centroids(x: np.ndarray) -> np.ndarray:
        flat = torch.from_numpy(x.reshape(-1, *x.shape[2:]))
        c, _ = colour_centroid(flat, BLOCK_RGB, BLOCK_COLOUR_TOL, units)
        return c.numpy().reshape(n, h, 2)

    truth = centroids(frames)
    out: dict[str, dict] = {}
    for name, x in rows.items():  # the real frames' own row is 0 by construction: their centroids read once
        err = np.linalg.norm((truth if x is frames else centroids(x)) - truth, axis=-1)
        out[name] = {kind: {"frames": int(mask.sum()), "position": round(float(err[mask].mean()), 2)}
                     for kind, mask in (("still", ~moved), ("moved", moved)) if mask.any()}
        out[name]["moved_by_step"] = [{"step": step + 1, "position": round(float(err[mask].mean()), 2)}
                                      for step, mask in enumerate(moved_by_step(moved)) if mask.any()]
    return out


def save_strip(path: str, real: np.ndarray, predicted: np.ndarray, read: np.ndarray, true: np.ndarray,
               last: np.ndarray, windows: int, label: str) -> dict:
    """Three rows a window (real frames; the model's; the true state with the block where the probe read the
    model's frame) for ``windows`` windows spread from the one whose block moves farthest over the horizon to
    the median one, as one PNG."""
    from crcm_robotics.eval.report import grid, save_png

    travel = np.linalg.norm(true[:, -1, 2:4] - last[:, 0, 2:4], axis=-1)
    by_travel = np.argsort(-travel, kind="stable")
    ranks = np.unique(np.linspace(0, len(travel) // 2, windows).round().astype(int))
    chosen = [int(by_travel[k]) for k in ranks]
    rows, labels = [], []
    size = real.shape[2]
    with PushTSim(size=int(size)) as sim:
        for i in chosen:
            at_read = np.stack([sim.reset_to(s) for s in block_at(true[i], read[i])])
            for name, frames in (("real", real[i]), (label, predicted[i]), ("read pose", at_read)):
                labels.append(name)
                rows.append(frames)
    scale, pad = 4, 2
    image = grid(rows, scale=scale, pad=pad)
    side = np.full((image.shape[0], 90, 3), 255, np.uint8)  # a margin for the row names
    step = (size + pad) * scale
    save_png(np.concatenate([side, image], axis=1), path,
             labels=[(pad * scale + k * step + step // 3, name) for k, name in enumerate(labels)])
    return {"path": path, "windows": chosen, "travel": [round(float(travel[i]), 1) for i in chosen]}


if __name__ == "__main__":
    main()
