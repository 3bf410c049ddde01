"""How smooth is a checkpoint's F in the TrigFlow time t? (The sCM tangent needs dF/dt.)

For a few training windows, prints one JSON line per t: the norm of dF/dt from a
JVP (the sCM path) and from central differences with steps 1e-3 and 1e-2. If
the three agree, F is smooth at the 0.01-rad scale; if the 1e-2 difference
departs, F wiggles in t and the sCM tangent is dominated by the wiggles.

    python scripts/time_smoothness.py CKPT STORE [--times 0.2 0.8 1.3] [--windows 2]
"""

from __future__ import annotations

import argparse
import json

import torch
from torch.func import jvp

from crcm_robotics.config import DataConfig
from crcm_robotics.data.store import NormStats
from crcm_robotics.model import trigflow as tf
from crcm_robotics.model.checkpoint import build_model, load_checkpoint
from crcm_robotics.model.tokenizer import make_codec
from distill.batches import MemoryWindows, load_split
from distill.layout import tf_forward


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ckpt")
    ap.add_argument("store")
    ap.add_argument("--times", type=float, nargs="+", default=[0.2, 0.8, 1.3])
    ap.add_argument("--windows", type=int, default=2)
    args = ap.parse_args()
    torch.manual_seed(0)
    ck = load_checkpoint(args.ckpt)
    model = build_model(ck, "cpu").float().eval()
    model.set_attention("math")
    data = DataConfig(path=args.store, window=int(ck.meta.get("window", 5)))
    store, split, _ = load_split(data)
    windows = MemoryWindows(data, split.train, NormStats.from_dict(ck.stats["action"]),
                            make_codec(model.cfg, ck.path), torch.device("cpu"), store)
    b = windows.sample(args.windows, 0, 0)
    x0, x_prev, action = b["x"], b["x_prev"], b["action"]
    for t_val in args.times:
        times = torch.full(x0.shape[:2], t_val)
        x_t = tf.add_noise(x0, torch.randn_like(x0), times)
        zeros = torch.zeros_like(times)

        def f(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return tf_forward(model, x0, zeros, x, t, action, x_prev)

        with torch.no_grad():
            _, df_dt = jvp(f, (x_t, times), (torch.zeros_like(x_t), torch.ones_like(times)))
            fd = {h: float(((f(x_t, times + h) - f(x_t, times - h)) / (2 * h)).norm()) for h in (1e-3, 1e-2)}
        print(json.dumps({"t": t_val, "jvp_dF_dt": round(float(df_dt.norm()), 1),
                          "fd_1e-3": round(fd[1e-3], 1), "fd_1e-2": round(fd[1e-2], 1)}))


if __name__ == "__main__":
    main()
