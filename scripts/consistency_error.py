"""How close a student's one-jump consistency output is to its teacher's PF-ODE, per noise time (CPU is fine).

    python scripts/consistency_error.py TEACHER [STUDENT …] --store outputs/pusht64.zarr [--windows 6]

On held-out windows in the teacher-forcing layout (real clean context), for each time t:
x_t = cos t·x0 + sin t·ε; ``ode`` = the teacher's PF-ODE from (x_t, t) to 0 (Heun, 12 uniform steps);
each checkpoint's consistency output f(x_t, t) = cos t·x_t − sin t·F(x_t, t). Per checkpoint, one JSON
line of per-time mean squared errors in unit space:

- ``to_ode``: f vs the teacher's ODE endpoint. Consistency distillation drives this down.
- ``to_data``: f vs the real frame.
- ``ode_to_data``: the ODE endpoint vs the real frame, the same on every line. It is what a perfectly
  distilled student would score.

The teacher's own line is the starting point of a distillation (every student starts from its weights).
"""

from __future__ import annotations

import argparse
import json

import torch

from crcm_robotics.config import DataConfig
from crcm_robotics.model import trigflow as tf
from crcm_robotics.model.checkpoint import build_model, load_checkpoint
from crcm_robotics.model.tokenizer import make_codec
from distill.batches import MemoryWindows, load_split
from distill.layout import tf_forward


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("teacher")
    ap.add_argument("students", nargs="*")
    ap.add_argument("--store", required=True)
    ap.add_argument("--windows", type=int, default=6)
    ap.add_argument("--times", type=float, nargs="+", default=[0.7, 1.1, 1.4, 1.5, 1.5707963])
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)

    teacher_ck = load_checkpoint(args.teacher)
    teacher = build_model(teacher_ck, "cpu", torch.float32).eval()
    data = DataConfig(path=args.store, window=5)
    store, split, stats = load_split(data)
    codec = make_codec(teacher.cfg, teacher_ck.path)
    val = MemoryWindows(data, split.val, stats, codec, torch.device("cpu"), store)
    g = torch.Generator().manual_seed(args.seed)
    batch = val.window(val.starts[torch.randint(len(val.starts), (args.windows,), generator=g)])
    x0, x_prev, action = batch["x"].float(), batch["x_prev"].float(), batch["action"].float()
    b, frames = x0.shape[:2]
    clean_t = torch.zeros(b, frames)
    eps = torch.randn(x0.shape, generator=g)

    def f_net(net, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = t.reshape(b, 1).expand(b, frames) if t.ndim == 1 else t
        return tf_forward(net, x0, clean_t, x, t, action, x_prev)

    with torch.no_grad():
        cases = {}
        for t in args.times:
            x_t = tf.add_noise(x0, eps, torch.full((b, frames), t))
            grid = torch.linspace(t, 0, 13).tolist()
            cases[t] = (x_t, tf.ode_sample(lambda x, tt: f_net(teacher, x, tt), x_t, grid, "heun"))
        for path in [args.teacher, *args.students]:
            net = build_model(load_checkpoint(path), "cpu", torch.float32).eval()
            out = {}
            for t, (x_t, ode) in cases.items():
                tt = torch.full((b, frames), t)
                f = tf.x0_from_f(x_t, f_net(net, x_t, tt), tt)
                out[f"{t:.3f}"] = {"to_ode": round(float(((f - ode) ** 2).mean()), 5),
                                   "to_data": round(float(((f - x0) ** 2).mean()), 5),
                                   "ode_to_data": round(float(((ode - x0) ** 2).mean()), 5)}
            print(json.dumps({"checkpoint": path, "windows": b, "mse": out}))


if __name__ == "__main__":
    main()
