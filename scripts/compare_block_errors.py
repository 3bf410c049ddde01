"""PushT: two checkpoints' pushed-block errors compared window by window, with a bootstrap interval.

Two ``block_motion_error.py --errors-out`` files scored on the same held-out windows (the same store, split and
episodes: refused otherwise) hold every predicted frame's block error. The mean over the frames where the true
block moved differs between two models partly by which windows happen to be hard; pairing the frames removes that
part. The interval resamples whole windows (a window's frames are not independent), so it says how far the
difference could move with other held-out windows of the same kind. It does not say how far it could move with
another training seed: that takes a second model of each kind.

One JSON line: per measure (position in env units, angle in degrees) the two means, B − A, its interval and the
share of windows where B is nearer. ``--move-bins 20 40 80`` adds the same per range of how far the true block
moved from the last context frame (0-20, 20-40, 40-80, 80 and more env units): where a gain lies, small pushes or
large ones. ``--by-step`` adds the same per predicted frame of the horizon (frame 1 is the first model frame after
the context), with copy-last's mean on that frame's moved frames where A's file has it: whether the error is there
at the first frame (a one-frame prediction short of the push) or builds up over the rollout.

    python scripts/compare_block_errors.py A.npz B.npz [--row steps_4] [--resamples 10000] [--seed 0] \\
        [--level 0.95] [--move-bins EDGE ...] [--by-step]
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np

from crcm_robotics.data.pusht_sim import block_errors, moved_by_step

MEASURES = ("position", "angle")


def load_errors(path: str, row: str) -> dict[str, Any]:
    """The true states, moved mask and ROW's errors (arrays) of one --errors-out file, and its checkpoint's name
    (no pickles read)."""
    if not Path(path).is_file():
        raise SystemExit(f"compare_block_errors: {path}: no such file (a block_motion_error.py --errors-out .npz)")
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:  # not an .npz: empty, cut short, or another format
        raise SystemExit(f"compare_block_errors: {path}: not a block_motion_error.py --errors-out .npz "
                         f"(numpy could not open it as one: {type(err).__name__})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise SystemExit(f"compare_block_errors: {path}: a single array, not a block_motion_error.py --errors-out .npz")
    with archive as data:
        needed = ["true", "moved", *(f"{row}_{m}" for m in MEASURES)]
        missing = [key for key in needed if key not in data.files]
        if missing:
            raise SystemExit(f"compare_block_errors: {path}: no {', '.join(missing)}; expected a block_motion_error.py "
                             f"--errors-out file with row {row!r} (rows in it: "
                             f"{sorted({k.rsplit('_', 1)[0] for k in data.files if k.endswith('_position')})})")
        optional = {key: data[key] for key in ("last", *(f"copy_last_{m}" for m in MEASURES)) if key in data.files}
        return {key: data[key] for key in needed} | optional | {
            "ckpt": str(data["ckpt"]) if "ckpt" in data.files else path}


def step_means(errors: np.ndarray, moved: np.ndarray) -> list[float]:
    """Each predicted frame's mean error over the windows where the true block moved at that frame
    (``errors``, ``moved`` [windows, horizon]); NaN for a frame where it never moved."""
    return [float(errors[moved[:, k], k].mean()) if moved[:, k].any() else float("nan")
            for k in range(moved.shape[1])]


def paired_difference(a: np.ndarray, b: np.ndarray, moved: np.ndarray, resamples: int, level: float,
                      rng: np.random.Generator) -> dict[str, Any]:
    """Mean of ``b − a`` over the moved frames, and its interval from resampling whole windows.

    ``a``, ``b``, ``moved`` are [windows, horizon]; windows without a moved frame carry no weight."""
    diff_sum = np.where(moved, b - a, 0.0).sum(axis=1)
    counts = moved.sum(axis=1)
    used = counts > 0
    if not used.any():
        raise SystemExit("compare_block_errors: no frame where the true block moved: nothing to compare")
    diff_sum, counts = diff_sum[used], counts[used]
    pick = rng.integers(0, len(counts), size=(resamples, len(counts)))
    boot = diff_sum[pick].sum(axis=1) / counts[pick].sum(axis=1)
    tail = (1 - level) / 2
    per_window_a = np.where(moved, a, 0.0).sum(axis=1)[used] / counts
    per_window_b = np.where(moved, b, 0.0).sum(axis=1)[used] / counts
    return {"a": round(float(a[moved].mean()), 2), "b": round(float(b[moved].mean()), 2),
            "b_minus_a": round(float(diff_sum.sum() / counts.sum()), 2),
            "interval": [round(float(np.quantile(boot, tail)), 2), round(float(np.quantile(boot, 1 - tail)), 2)],
            "b_nearer_windows": round(float((per_window_b < per_window_a).mean()), 3)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", help="the reference's --errors-out file")
    ap.add_argument("b", help="the other checkpoint's, on the same windows")
    ap.add_argument("--row", default="steps_4", help="the row to compare (steps_N, or copy_last, real_frames)")
    ap.add_argument("--resamples", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--level", type=float, default=0.95)
    ap.add_argument("--move-bins", type=float, nargs="+", metavar="EDGE",
                    help="inner edges (env units, rising) of the ranges of the true block's move to compare apart")
    ap.add_argument("--by-step", action="store_true", help="compare each predicted frame of the horizon apart too")
    args = ap.parse_args(argv)
    if args.resamples < 100:
        raise SystemExit(f"--resamples {args.resamples}: expected at least 100")
    if not 0.5 <= args.level < 1:
        raise SystemExit(f"--level {args.level}: expected a coverage in [0.5, 1)")
    edges = args.move_bins or []
    if any(e <= 0 for e in edges) or any(b <= a for a, b in itertools.pairwise(edges)):
        raise SystemExit(f"--move-bins {edges}: expected rising edges above 0 (env units)")
    a, b = load_errors(args.a, args.row), load_errors(args.b, args.row)
    if a["true"].shape != b["true"].shape or not np.array_equal(a["true"], b["true"]):
        raise SystemExit(f"compare_block_errors: {args.a} and {args.b} were scored on other windows (their true states "
                         "differ): score both on the same store, split and --episodes")
    rng = np.random.default_rng(args.seed)
    moved = a["moved"]
    result = {"a": a["ckpt"], "b": b["ckpt"], "row": args.row, "windows": len(moved),
              "moved_frames": int(moved.sum()), "level": args.level, "resamples": args.resamples}

    def both_measures(mask: np.ndarray) -> dict[str, Any]:
        return {measure: paired_difference(a[f"{args.row}_{measure}"], b[f"{args.row}_{measure}"], mask,
                                           args.resamples, args.level, rng) for measure in MEASURES}

    result.update(both_measures(moved))
    if edges:
        if "last" not in a:
            raise SystemExit(f"compare_block_errors: {args.a} has no last context state (written by an older "
                             "block_motion_error.py): score it again to compare by the block's move")
        move = block_errors(np.broadcast_to(a["last"], a["true"].shape), a["true"])[0]
        bounds = [0.0, *edges, float("inf")]
        result["by_move"] = []
        for low, high in itertools.pairwise(bounds):
            in_range = moved & (move >= low) & (move < high)
            row = {"move": [low, high if high != float("inf") else None], "moved_frames": int(in_range.sum())}
            result["by_move"].append(row | (both_measures(in_range) if in_range.any() else {}))
    if args.by_step:
        result["by_step"] = []
        for step, at_step in enumerate(moved_by_step(moved)):
            row = {"step": step + 1, "moved_frames": int(at_step.sum())}
            if at_step.any():
                row |= both_measures(at_step)
                row |= {f"copy_last_{m}": round(float(a[f"copy_last_{m}"][at_step].mean()), 2)
                        for m in MEASURES if f"copy_last_{m}" in a}
            result["by_step"].append(row)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
