"""Plan with imagination: CEM (crcm_robotics.plan) over action sequences, scored against a goal image.

The same flow a ROS planner runs through ``~/imagine`` (crcm_interfaces/srv/ImagineRollouts), here against
the msgpack server directly:

    1. ask the server for the model's shapes (``info``);
    2. take K context frames + the commands in force at them (from a trajectory store, or PNGs);
    3. repeat ``--iterations`` times: sample ``--samples`` action sequences of ``--horizon`` steps from a
       Gaussian, ``imagine`` them from the context with the goal image (costs only: no frames come back),
       keep the ``--elites`` lowest-cost ones, refit the Gaussian (one iteration = random shooting);
    4. print the chosen action sequence (and, with a store, the logged actions that really led there).

    # with the msgpack server (crcm_robotics.serve) running on 127.0.0.1:5555
    python examples/plan_with_imagination.py --store outputs/pusht.zarr --episode 3 --start 20 \
        --horizon 8 --samples 64 --iterations 4
    python examples/plan_with_imagination.py --context ctx0.png ctx1.png ctx2.png ctx3.png --goal goal.png \
        --action-low -1 -1 --action-high 1 1

Prints a human table and, last, one JSON line with the plan.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np


def field(obj: Any, name: str) -> Any:
    """``obj.name`` or ``obj[name]``: replies may be objects or plain msgpack maps."""
    return obj[name] if isinstance(obj, dict) else getattr(obj, name)


def load_png(path: str, size_HW: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    from crcm_robotics.ros.images import fit_frame

    with Image.open(path) as img:
        return fit_frame(np.asarray(img.convert("RGB"), dtype=np.uint8), size_HW, center_crop=True)


def context_from_store(args, k: int, horizon: int):
    """K frames ending at --start, their actions, the frame --horizon steps later (goal), logged actions."""
    from crcm_robotics.data import TrajectoryStore

    store = TrajectoryStore(args.store)
    lo, hi = store.episode_bounds(args.episode)
    t = lo + args.start
    if t - k + 1 < lo or t + horizon >= hi:
        raise SystemExit(
            f"--start {args.start} needs {k - 1} frames before it and {horizon} after it inside episode "
            f"{args.episode} (length {hi - lo})"
        )
    frames = store.frames(t - k + 1, t + 1)
    actions = store.action(t - k + 1, t + 1).astype(np.float32)
    goal = store.frames(t + horizon, t + horizon + 1)[0]
    logged = store.action(t, t + horizon).astype(np.float32)  # action[i] leads from frame i to frame i+1
    stats = store.stats()["action"]
    return frames, actions, goal, logged, stats.min.astype(np.float32), stats.max.astype(np.float32)


def cem(client, context, goal, *, horizon, action_dim, low, high, samples, iterations, elites, alpha, rng,
        cost=None, hold=1):
    """CEM of crcm_robotics.plan over [horizon, action_dim] sequences, each round one costs-only ``imagine``
    on the server (the reply carries no frames); returns (best sequence, its cost, log)."""
    import torch

    from crcm_robotics.plan import ActionSpace, SamplingPlanner

    log: list[dict[str, Any]] = []

    def score(actions: torch.Tensor) -> torch.Tensor:
        actions_NHzA = actions.numpy().astype(np.float32)
        start = time.perf_counter()
        extra = {"return_frames": "none"} | ({"cost": cost} if cost else {})
        result = client.imagine(actions_NHzA, context=context, goal=goal, **extra)
        wall_ms = (time.perf_counter() - start) * 1e3
        costs = field(result, "costs")
        if costs is None:
            raise SystemExit("the server returned no costs; it must score rollouts against the goal image")
        costs = np.asarray(costs, dtype=np.float64)
        elite = np.sort(costs)[:elites]
        log.append({"iteration": len(log), "best_cost": round(float(elite[0]), 5),
                    "elite_mean_cost": round(float(elite.mean()), 5),
                    "model_ms": round(float(field(result, "latency_ms")), 1), "wall_ms": round(wall_ms, 1)})
        print(f"iter {len(log) - 1}: best cost {elite[0]:.4f}, elite mean {elite.mean():.4f}, "
              f"{len(costs)} x {horizon} rollouts in {log[-1]['model_ms']} ms (wall {wall_ms:.0f} ms)")
        return torch.from_numpy(costs)

    space = ActionSpace(torch.from_numpy(low), torch.from_numpy(high), horizon, hold=hold)
    planner = SamplingPlanner("cem", samples=samples, iterations=iterations, elites=elites,
                              momentum=1 - alpha, seed=int(rng.integers(2**31)))
    result = planner.solve(score, space, anchor_A=torch.from_numpy((low + high) / 2))
    return result.actions.numpy(), result.cost, log


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5555)
    ap.add_argument("--token", default=None, help="server auth token, if it was started with one")
    ap.add_argument("--store", help="trajectory store to take the context (and default goal) from")
    ap.add_argument("--episode", type=int, default=0)
    ap.add_argument("--start", type=int, default=10, help="index in the episode of the newest context frame")
    ap.add_argument(
        "--context", nargs="+", metavar="PNG", help="K context images, oldest first (instead of --store)"
    )
    ap.add_argument(
        "--context-action",
        nargs="+",
        type=float,
        metavar="A",
        help="with --context: the command in force at every context frame (default zeros)",
    )
    ap.add_argument(
        "--goal", metavar="PNG", help="goal image (default with --store: the frame --horizon steps ahead)"
    )
    ap.add_argument("--horizon", type=int, default=8)
    ap.add_argument("--samples", type=int, default=64, help="action sequences per iteration")
    ap.add_argument("--iterations", type=int, default=4, help="CEM iterations; 1 = random shooting")
    ap.add_argument("--elites", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=0.8, help="CEM smoothing of the refitted mean/std")
    ap.add_argument("--hold", type=int, default=1, help="env steps each waypoint is held")
    ap.add_argument("--cost", default=None, help="goal cost by name (the server's info lists them)")
    ap.add_argument(
        "--action-low", nargs="+", type=float, help="per-dimension lower bound (default: store min)"
    )
    ap.add_argument(
        "--action-high", nargs="+", type=float, help="per-dimension upper bound (default: store max)"
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if not (args.store or args.context):
        ap.error("give --store (context and goal from a trajectory store) or --context PNG … with --goal")
    if args.samples < 1 or args.iterations < 1 or not 1 <= args.elites <= args.samples or args.horizon < 1:
        ap.error("need --samples >= 1, --iterations >= 1, 1 <= --elites <= --samples, --horizon >= 1")

    from crcm_robotics.serve.client import WorldModelClient

    client = WorldModelClient(host=args.host, port=args.port, token=args.token)
    info = client.info()
    h, w, _ = (int(s) for s in field(info, "image_shape"))
    a_dim, k = int(field(info, "action_dim")), int(field(info, "context_frames"))
    print(f"server {args.host}:{args.port}: {h}x{w} images, action_dim {a_dim}, context {k} frames")

    logged = None
    low = np.full(a_dim, -1.0, np.float32)
    high = np.full(a_dim, 1.0, np.float32)
    if args.store:
        frames, ctx_actions, goal, logged, low, high = context_from_store(args, k, args.horizon)
    else:
        if len(args.context) != k:
            ap.error(f"the model takes {k} context images, got {len(args.context)}")
        if not args.goal:
            ap.error("--context needs --goal")
        frames = np.stack([load_png(p, (h, w)) for p in args.context])
        ctx_action = (
            np.zeros(a_dim, np.float32)
            if args.context_action is None
            else np.asarray(args.context_action, np.float32)
        )
        if ctx_action.shape != (a_dim,):
            ap.error(f"--context-action needs {a_dim} values")
        ctx_actions = np.repeat(ctx_action[None], k, axis=0)
        goal = None
    if args.goal:
        goal = load_png(args.goal, (h, w))
    for name, given in (("low", args.action_low), ("high", args.action_high)):
        if given is not None:
            if len(given) != a_dim:
                ap.error(f"--action-{name} needs {a_dim} values")
            (low if name == "low" else high)[:] = given
    if np.any(high <= low):
        high = np.where(high <= low, low + 1e-3, high).astype(np.float32)

    rng = np.random.default_rng(args.seed)
    plan, cost, log = cem(
        client,
        (frames, ctx_actions),
        goal,
        horizon=args.horizon,
        action_dim=a_dim,
        low=low,
        high=high,
        samples=args.samples,
        iterations=args.iterations,
        elites=args.elites,
        alpha=args.alpha,
        rng=rng,
        cost=args.cost,
        hold=args.hold,
    )

    print(f"\nchosen actions (cost {cost:.4f}):")
    for step, action in enumerate(plan):
        row = f"  step {step:2d}: " + " ".join(f"{v:+.3f}" for v in action)
        if logged is not None:
            row += "    logged: " + " ".join(f"{v:+.3f}" for v in logged[step])
        print(row)
    out: dict[str, Any] = {"cost": round(cost, 6), "actions": plan.round(5).tolist(), "iterations": log}
    if logged is not None:
        logged_cost = np.asarray(
            field(client.imagine(logged[None], context=(frames, ctx_actions), goal=goal), "costs")
        )
        out["logged_cost"] = round(float(logged_cost[0]), 6)
        out["logged_actions"] = logged.round(5).tolist()
        print(
            f"logged actions' cost: {out['logged_cost']:.4f} (lower than the plan's means the planner missed)"
        )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
