"""PushT: how well the block's pushed pose can be predicted from states and actions alone.

The pixel world model loses the pushed block (``scripts/block_motion_error.py``). This asks whether the
information is there: a small MLP gets what the model gets (two context states, 5 env steps apart, and the
commanded actions from the first of them to ``frames`` × 5 env steps ahead) and predicts the block's pose at
each of those frames. ``--obs-noise U`` adds uniform noise of ±U env units (and the matching angle) to the
context states, for the precision a 64×64 frame gives (1 px = 8 units). ``--context 1 5`` adds the state
one env step back (the pusher's and the block's speed, which two states 5 steps apart blur). Scored on the
store's held-out episodes (the training split), split by whether the true block moved (as in
``block_motion_error.py``; the moved block also by horizon step), beside copy-last. One JSON line.

    python scripts/block_predictability.py STORE [--frames 5] [--obs-noise 0 4] [--steps 4000] [--context 5]
        [--train-fraction 1]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from crcm_robotics.data.dataset import split_episodes
from crcm_robotics.data.pusht_sim import block_errors, block_moved, still_moved_summary
from crcm_robotics.data.store import TrajectoryStore
from distill.batches import mixed_draw

SKIP = 5  # env steps per model frame (the planning teacher's frame skip)
UNIT = 512.0  # PushT's workspace, env units
MOVE_UNIT = 50.0  # the target's scale for the block's move: a typical 5-step push, so moves weigh like turns
BLOCK_HALF_LENGTH = 60.0  # env units from the T's centre to its far end: turns the angle noise into units


def windows(store: TrajectoryStore, episodes: list[int], frames: int, back: tuple[int, ...] = (SKIP,)
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Context states [N, len(back) + 1, 5] (``back`` env steps before the current one, then the current),
    actions [N, (frames + 1)·SKIP, 2] from SKIP steps back (the actions between the model's context frames
    come with them) and future states [N, frames, 5]."""
    ctx, act, fut = [], [], []
    rows = [-b for b in sorted(back, reverse=True)] + [0]
    for e in episodes:
        ep = store.episode(e)
        state, action = ep["state"].astype(np.float64), ep["action"].astype(np.float64)
        for t in range(max(*back, SKIP), len(state) - frames * SKIP):  # same windows for any back ≤ SKIP
            ctx.append(state[[t + r for r in rows]])
            act.append(action[t - SKIP:t + frames * SKIP])  # the model also has the context's actions
            fut.append(state[t + SKIP:t + (frames + 1) * SKIP:SKIP])
    if not ctx:
        raise SystemExit(f"no window of {frames} frames fits in episodes {episodes[:5]}…")
    return np.stack(ctx), np.stack(act), np.stack(fut)


def features(ctx: np.ndarray, act: np.ndarray) -> np.ndarray:
    """Positions over the workspace, the angle as sin/cos, actions relative to the current agent position."""
    pos = ctx[..., :4] / UNIT
    ang = ctx[..., 4:5]
    rel = (act - ctx[:, -1:, 0:2]) / UNIT
    return np.concatenate([pos.reshape(len(ctx), -1), np.sin(ang).reshape(len(ctx), -1),
                           np.cos(ang).reshape(len(ctx), -1), rel.reshape(len(ctx), -1)], axis=1)


def targets(ctx: np.ndarray, fut: np.ndarray, first: int = 2) -> np.ndarray:
    """The block's move from the current frame (in MOVE_UNITs) and its turn as sin/cos, per future frame;
    ``first=0`` moves the pusher's position too (state columns ``first``..3 move)."""
    move = (fut[..., first:4] - ctx[:, -1:, first:4]) / MOVE_UNIT
    turn = fut[..., 4] - ctx[:, -1:, 4]
    out = np.concatenate([move, np.sin(turn)[..., None], np.cos(turn)[..., None]], axis=-1)
    return out.reshape(len(ctx), -1)


def decode(ctx: np.ndarray, out: np.ndarray, frames: int, first: int = 2) -> np.ndarray:
    """Predicted state columns ``first``..4 [N, frames, 5 − first] (the block's x, y, angle by default) from
    the network's output of :func:`targets`."""
    n = 4 - first  # positions that move
    o = out.reshape(len(ctx), frames, n + 2)
    xy = ctx[:, -1:, first:4] + o[..., :n] * MOVE_UNIT
    ang = ctx[:, -1:, 4] + np.arctan2(o[..., n], o[..., n + 1])
    return np.concatenate([xy, ang[..., None]], axis=-1)


def noisy(ctx: np.ndarray, units: float, rng: np.random.Generator) -> np.ndarray:
    """Context states read to ±units (positions) and ±units / BLOCK_HALF_LENGTH rad (the angle)."""
    if units <= 0:
        return ctx
    out = ctx.copy()
    out[..., :4] += rng.uniform(-units, units, out[..., :4].shape)
    out[..., 4] += rng.uniform(-1, 1, out[..., 4].shape) * units / BLOCK_HALF_LENGTH
    return out


def mlp(d_in: int, d_out: int, width: int) -> nn.Module:
    """The regressor: three hidden SiLU layers of ``width``."""
    return nn.Sequential(nn.Linear(d_in, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(),
                         nn.Linear(width, width), nn.SiLU(), nn.Linear(width, d_out))


def fit(x: np.ndarray, y: np.ndarray, steps: int, seed: int, width: int = 512,
        weights: np.ndarray | None = None, share: float = 0.0) -> nn.Module:
    """An MLP fitted on batches of 1024 rows; ``share`` of each batch drawn in proportion to ``weights`` (as
    the teacher's ``data.motion_sampling`` draws windows), the rest uniformly."""
    torch.manual_seed(seed)
    net = mlp(x.shape[1], y.shape[1], width)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    xt, yt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    w = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
    for _ in range(steps):
        i = mixed_draw(len(xt), 1024, w, share, gen)
        loss = nn.functional.mse_loss(net(xt[i]), yt[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


def scores(pred_block: np.ndarray, ctx: np.ndarray, true: np.ndarray) -> dict[str, dict[str, Any]]:
    """Block position (units) and angle (deg) errors, split by whether the true block moved; copy-last's."""
    predicted = true.copy()
    predicted[..., 2:5] = pred_block
    copy = np.broadcast_to(ctx[:, -1:], true.shape)
    moved = block_moved(copy, true)
    out: dict[str, dict[str, Any]] = {}
    for name, states in (("mlp", predicted), ("copy_last", copy)):
        pos, ang = block_errors(states, true)
        out[name] = still_moved_summary(pos, ang, moved)
        # the moved block by horizon step (k × 5 env steps ahead)
        out[name]["moved_by_frame"] = {
            "position": [round(float(pos[:, k][moved[:, k]].mean()), 2) for k in range(true.shape[1])],
            "angle_deg": [round(float(ang[:, k][moved[:, k]].mean()), 2) for k in range(true.shape[1])]}
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")
    ap.add_argument("--frames", type=int, default=5, help="future model frames (×5 env steps)")
    ap.add_argument("--obs-noise", type=float, nargs="+", default=[0.0, 4.0],
                    help="± env units on the context")
    ap.add_argument("--steps", type=int, default=4000, help="MLP updates (batch 1024)")
    ap.add_argument("--width", type=int, default=512, help="the MLP's hidden width (3 hidden layers)")
    ap.add_argument("--context", type=int, nargs="+", default=[SKIP],
                    help="env steps back of the earlier context states (the model's: 5)")
    ap.add_argument("--train-fraction", type=float, default=1.0,
                    help="train on this share of the training episodes (a data-size curve)")
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.frames < 1 or args.steps < 1 or args.width < 1 or min(args.context) < 1:
        raise SystemExit(f"--frames, --steps, --width and --context must be ≥ 1 (got {args.frames}, "
                         f"{args.steps}, {args.width}, {args.context})")
    store = TrajectoryStore(args.store)
    if "pusht" not in store.attrs or store.state_dim < 5:
        raise SystemExit(f"{args.store}: a PushT store with logged states (agent x, y, block x, y, angle) "
                         "expected")
    train_eps, val_eps = split_episodes(store.num_episodes, args.val_fraction, args.seed)
    if not 0 < args.train_fraction <= 1:
        raise SystemExit(f"--train-fraction must be in (0, 1] (got {args.train_fraction})")
    train_eps = train_eps[:max(1, round(len(train_eps) * args.train_fraction))]
    back = tuple(sorted(set(args.context)))
    tr, va = windows(store, train_eps, args.frames, back), windows(store, val_eps, args.frames, back)
    rng = np.random.default_rng(args.seed)
    result: dict = {"store": args.store, "frames": args.frames, "env_steps_per_frame": SKIP,
                    "context_back": list(back), "steps": args.steps, "width": args.width,
                    "train_episodes": len(train_eps),
                    "train_windows": len(tr[0]), "held_out_windows": len(va[0]), "runs": {}}
    for units in args.obs_noise:
        t0 = time.time()
        tr_ctx, va_ctx = noisy(tr[0], units, rng), noisy(va[0], units, rng)
        net = fit(features(tr_ctx, tr[1]), targets(tr_ctx, tr[2]), args.steps, args.seed, args.width)
        with torch.no_grad():
            out = net(torch.as_tensor(features(va_ctx, va[1]), dtype=torch.float32)).numpy()
        # moves from the block as read (noisy), as a model reading frames must; copy-last copies the true one
        result["runs"][f"noise_{units:g}"] = {**scores(decode(va_ctx, out, args.frames), va[0], va[2]),
                                              "seconds": round(time.time() - t0, 1)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
