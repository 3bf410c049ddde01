"""Where a replan's time goes, for the teacher and for a shallow student: the network's blocks, the rest of
each network pass, each planning round's fixed cost, and the planner's own work.

    python scripts/plan_time_split.py [--device cuda] [--depths 1 2 4 8] [--samples 256] [--repeats 5]
                                      [--backend cuda_graph] [--preset small] [--out DIR] [--profile]

Random weights (latency does not depend on their values) of the ``--preset`` network at PushT's planning recipe
(frame skip 5: 2-D actions, 10 per model frame), bf16 on CUDA:
- per sampler (the teacher's DDIM 4: 5 passes a frame; the student's 2 consistency steps: 3) and per depth, a
  planning round's imagination (``WorldModel.imagine_tensor`` of ``--samples`` rollouts, only the last frame
  decoded) at 5 and 10 model frames: the slope is the per-frame step, the intercept the round's fixed cost
  (context encoding, the cache broadcast, the noise generator); per-frame ms against depth, fitted as
  ``passes × (depth × block_pass_ms + other_pass_ms)``;
- one CEM solve as ``crcm bench plan`` runs it (its ``PlannerConfig`` defaults: ``--samples`` × 6, delta
  waypoints held 5, 25 env steps, the probe cost on a random probe) with the teacher (8 blocks, DDIM 4) and the student (``--student-depth``
  blocks, 2 steps), split into its rounds' imagination, the probe cost, and the rest (sampling, elite
  selection); and the student's share of the teacher's time.
Prints ONE JSON line; ``--out`` also gets it as ``split.json`` and, with ``--profile``, each solve's device
kernels under ``torch.profiler`` summed by name (``kernels_<teacher|student>.txt``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from crcm_robotics import conf
from crcm_robotics.conf import compose_config
from crcm_robotics.config import PlannerConfig
from crcm_robotics.data.pusht import STATE_NAMES as PUSHT_STATE_NAMES
from crcm_robotics.eval.plan_bench import planner_from, space_from
from crcm_robotics.model.sampler import SamplerSpec
from crcm_robotics.plan.costs import make_cost
from crcm_robotics.plan.objective import imagined_score
from crcm_robotics.plan.probe import ProbeSpec, StateProbe, save_probe
from crcm_robotics.runtime.bench import median_ms, random_student_checkpoint
from crcm_robotics.runtime.device import resolve_device
from crcm_robotics.runtime.world_model import WorldModel

FRAME_SKIP = 5  # PushT's planning recipe (RECIPE in scripts/gpu/pusht_study.sh)
ENV_ACTION_DIM = 2
PUSHT_LOW, PUSHT_HIGH = np.zeros(ENV_ACTION_DIM), np.full(ENV_ACTION_DIM, 512.0)  # PushT's pusher targets
SAMPLERS = {"teacher": SamplerSpec("ode", 4, "ddim"), "student": SamplerSpec("consistency", 2)}
WARMUP = 2


def bench_planner(samples: int) -> PlannerConfig:
    """``crcm bench plan``'s own planner defaults (CEM, delta waypoints, the probe cost) at ``samples``."""
    cfg = PlannerConfig()
    return dataclasses.replace(cfg, samples=samples, elites=min(cfg.elites, samples))


def random_probe(out: Path, image_hw: tuple[int, int]) -> Path:
    """A PushT-shaped state probe with random weights (the probe cost's latency)."""
    angles = tuple(name.endswith("angle") for name in PUSHT_STATE_NAMES)
    spec = ProbeSpec(PUSHT_STATE_NAMES, angles, tuple(0.0 if a else 256.0 for a in angles),
                     tuple(1.0 if a else 100.0 for a in angles), image_hw)
    return save_probe(out, StateProbe(spec))


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares slope and intercept of ys against xs."""
    slope, intercept = np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)
    return float(slope), float(intercept)


class Case:
    """One random-weight network under one sampler, loaded for planning at ``samples`` rollouts."""

    def __init__(self, root: Path, depth: int, sampler: str, args: argparse.Namespace, probe: Path):
        self.depth, self.sampler, self.args = depth, sampler, args
        ckpt = random_student_checkpoint(root / f"d{depth}", args.preset, 2, env_action_dim=ENV_ACTION_DIM,
                                         frame_skip=FRAME_SKIP, depth=depth)
        self.wm = WorldModel.load(ckpt, device=args.device, backend=args.backend, max_batch=args.samples,
                                  sampler=SAMPLERS[sampler], probe=probe)
        self.wm.warmup([args.samples])
        self.device = self.wm.device
        rng = np.random.default_rng(0)
        k = self.wm.context_frames
        self.context = (rng.integers(0, 256, (k, *self.wm.image_shape), dtype=np.uint8),
                        rng.uniform(0, 512, (k, self.wm.action_dim)).astype(np.float32))
        self.env_context = (rng.integers(0, 256, (FRAME_SKIP * k, *self.wm.image_shape), dtype=np.uint8),
                            rng.uniform(0, 512, (FRAME_SKIP * k, ENV_ACTION_DIM)).astype(np.float32))
        self.goal = rng.integers(0, 256, self.wm.image_shape, dtype=np.uint8)

    def round_ms(self, frames: int) -> float:
        """One planning round's imagination: ``samples`` rollouts of ``frames`` model frames, last decoded."""
        actions = torch.rand(self.args.samples, frames, self.wm.action_dim, device=self.device) * 512
        return median_ms(lambda: self.wm.imagine_tensor(actions, context=self.context, seed=0, decode="last"),
                         self.device, WARMUP, self.args.repeats)

    def probe_ms(self) -> float:
        cost = make_cost("probe", torch.from_numpy(self.goal).to(self.device), self.wm.probe)
        frames = torch.randint(0, 256, (self.args.samples, 1, *self.wm.image_shape), dtype=torch.uint8,
                               device=self.device)
        return median_ms(lambda: cost(frames), self.device, WARMUP, self.args.repeats)

    def solve_ms(self) -> float:
        """One CEM solve as ``crcm bench plan`` runs it (its own clock: ``PlanResult.ms``), median."""
        cfg = bench_planner(self.args.samples)
        space, planner = space_from(cfg, PUSHT_LOW, PUSHT_HIGH, self.device), planner_from(cfg)
        score = imagined_score(self.wm, self.env_context, self.goal, cfg.cost)
        anchor = torch.full((ENV_ACTION_DIM,), 256.0, device=self.device)
        runs = [planner.solve(score, space, anchor).ms for _ in range(self.args.repeats + WARMUP)]
        if self.args.profile and self.args.out:
            self.write_kernels(lambda: planner.solve(score, space, anchor),
                               Path(self.args.out) / f"kernels_{self.sampler}.txt")
        return statistics.median(runs[WARMUP:])

    def write_kernels(self, fn: Callable[[], object], path: Path) -> None:
        """One run of ``fn`` under ``torch.profiler``: its kernels' summed time by name, largest first."""
        from torch.profiler import ProfilerActivity, profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.device.type == "cuda" else [])
        with profile(activities=acts) as prof:
            fn()
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
        rows = sorted(((ev.self_device_time_total if self.device.type == "cuda" else ev.self_cpu_time_total,
                        ev.count, ev.key) for ev in prof.key_averages()), reverse=True)
        total = sum(r[0] for r in rows if r[0] > 0)
        lines = [f"{self.sampler}, depth {self.depth}: {total / 1e3:.2f} ms of kernel time in one solve"]
        lines += [f"{us / 1e3:9.3f} ms {n:7d}x  {key[:140]}" for us, n, key in rows[:60] if us > 0]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")


def measure(args: argparse.Namespace, root: Path) -> dict:
    """Every sampler's rows by depth and the teacher's and student's whole solve, with random-weight
    checkpoints written under ROOT."""
    model_cfg = compose_config("config", [f"preset={args.preset}"], "crcm_robotics.conf.teacher").model
    probe = random_probe(root / "probe", (model_cfg.height, model_cfg.width))
    planner = bench_planner(args.samples)
    frames, rounds = planner.horizon // FRAME_SKIP, planner.iterations
    result: dict = {"device": torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device,
                    "torch": torch.__version__, "preset": args.preset, "backend": args.backend, "samples": args.samples,
                    "model_frames_per_round": frames, "rounds": rounds, "samplers": {}, "solve": {}}
    for name, spec in SAMPLERS.items():
        rows = []
        for depth in sorted(set(args.depths) | {args.teacher_depth if name == "teacher" else args.student_depth}):
            case = Case(root, depth, name, args, probe)
            short, long = case.round_ms(frames), case.round_ms(2 * frames)
            per_frame = (long - short) / frames
            rows.append({"depth": depth, "round_ms": round(short, 3), "frame_ms": round(per_frame, 3),
                         "round_fixed_ms": round(short - frames * per_frame, 3)})
            print(json.dumps({"sampler": name, **rows[-1]}), flush=True, file=sys.stderr)
            if depth == (args.teacher_depth if name == "teacher" else args.student_depth):
                solve, probe_cost = case.solve_ms(), case.probe_ms()
                result["solve"][name] = {
                    "depth": depth, "passes_per_frame": spec.network_passes, "solve_ms": round(solve, 2),
                    "rounds_imagination_ms": round(rounds * short, 2),
                    "rounds_probe_ms": round(rounds * probe_cost, 2),
                    "planner_rest_ms": round(solve - rounds * (short + probe_cost), 2)}
            del case
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
        slope, intercept = fit_line([r["depth"] for r in rows], [r["frame_ms"] for r in rows])
        p = spec.network_passes
        result["samplers"][name] = {"passes_per_frame": p, "rows": rows,
                                    "block_pass_ms": round(slope / p, 4), "other_pass_ms": round(intercept / p, 4)}
    t, s = result["solve"]["teacher"], result["solve"]["student"]
    result["student_over_teacher"] = round(s["solve_ms"] / t["solve_ms"], 4)
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--backend", default="cuda_graph")
    ap.add_argument("--depths", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--student-depth", type=int, default=4)
    ap.add_argument("--teacher-depth", type=int, default=8)
    ap.add_argument("--preset", default="small", help="the teacher preset whose network is timed")
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=None)
    ap.add_argument("--profile", action="store_true", help="with --out: each solve's kernels, summed by name")
    args = ap.parse_args(argv)
    if args.repeats < 1 or args.samples < 2 or min(*args.depths, args.student_depth, args.teacher_depth) < 1:
        ap.error("need --repeats ≥ 1, --samples ≥ 2 and every depth (--depths, --student-depth, --teacher-depth) ≥ 1")
    presets = sorted(p.stem for p in (Path(conf.__file__).parent / "teacher" / "preset").glob("*.yaml"))
    if args.preset not in presets:
        ap.error(f"--preset {args.preset!r} unknown; expected one of {', '.join(presets)}")
    args.device = str(resolve_device(args.device))
    with tempfile.TemporaryDirectory(prefix="plan_time_split_") as tmp:  # the random-weight checkpoints, gone after
        result = measure(args, Path(tmp))
    line = json.dumps(result)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "split.json").write_text(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
