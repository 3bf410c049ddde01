"""PushT: what a teacher's one-jump clean-frame prediction says about the block, by noise time and by probe.

``block_motion_error.py`` reads the block off sampled rollouts. This reads it off the quantity a training loss
sees: the teacher's clean-frame estimate x̂0 from one network pass, in the teacher-forcing layout of training
(every frame of held-out windows noised to the same TrigFlow time t, clean history before it). Each probe
given reads the block off x̂0; the error against the logged state is split by whether the block moved since
the previous frame. A teacher trained with the state-probe loss (``objective.state_weight``) can please the
probe it was trained against without rendering the block: then that probe reads x̂0 right and an
independently trained one does not. One JSON line.

    python scripts/x0_readout.py CKPT STORE PROBE [PROBE ...] [--times 0.3 0.8 1.2 1.5] [--episodes 20] \
        [--png OUT.png]

``previous_frame`` reads the frame before each one (what a prediction that moves nothing would give);
``--png`` writes, for the first windows whose block moved, the real frame above x̂0 at each noise time.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from crcm_robotics.config import DataConfig
from crcm_robotics.data.pusht_sim import block_errors, block_moved, still_moved_summary
from crcm_robotics.data.store import NormStats, TrajectoryStore
from crcm_robotics.eval.report import grid, save_png
from crcm_robotics.model import trigflow as tf
from crcm_robotics.model.checkpoint import build_model, load_checkpoint
from crcm_robotics.model.tokenizer import PixelCodec, make_codec
from crcm_robotics.plan.probe import load_probe
from distill.batches import MemoryWindows
from distill.layout import tf_forward


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ckpt")
    ap.add_argument("store")
    ap.add_argument("probes", nargs="+", metavar="probe")
    ap.add_argument("--times", type=float, nargs="+", default=[0.3, 0.8, 1.2, 1.5],
                    help="TrigFlow noise times in (0, π/2)")
    ap.add_argument("--episodes", type=int, default=20, help="held-out episodes")
    ap.add_argument("--windows", type=int, default=8, help="windows per episode")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--png", default=None, help="write real frames over x̂0 at each time here")
    args = ap.parse_args(argv)
    if not all(0 < t < tf.HALF_PI for t in args.times):
        raise SystemExit(f"--times must lie in (0, π/2); got {args.times}")
    device = torch.device(args.device)
    ckpt = load_checkpoint(args.ckpt)
    store = TrajectoryStore(args.store)
    if store.state_dim < 5:
        raise SystemExit(f"{args.store}: a PushT store with logged states (agent x, y, block x, y, angle) "
                         "expected")
    model = build_model(ckpt, device).float().eval()
    codec = make_codec(model.cfg, ckpt.path, device)
    if not isinstance(codec, PixelCodec):
        raise SystemExit(f"{args.ckpt} diffuses a latent codec's grid; this script reads pixel-space "
                         "teachers")
    data = DataConfig(path=args.store, window=int(ckpt.meta["window"]),
                      frame_skip=int(ckpt.meta["frame_skip"]))
    held_out = list(ckpt.meta["split"]["val"])[: args.episodes]
    stats = NormStats.from_dict(ckpt.stats["store_action"])
    windows = MemoryWindows(data, held_out, stats, codec, device, store)
    pick = torch.linspace(0, len(windows) - 1, min(len(windows), args.episodes * args.windows)).round().long()
    batch = windows.window(windows.starts[pick.to(windows.starts.device)])
    k, t_len = data.frame_skip, data.window
    prev_idx = windows.starts[pick][:, None] + k * torch.arange(t_len, device=device)[None]
    true = batch["state"].double().cpu().numpy()  # [N, T, S]
    moved = block_moved(windows.state[prev_idx].double().cpu().numpy(), true)
    probes = {p: load_probe(p, device) for p in args.probes}
    n = len(pick)

    def read(frames_u8: torch.Tensor) -> dict[str, dict]:
        flat = frames_u8.reshape(-1, *frames_u8.shape[2:])
        return {p: still_moved_summary(*block_errors(probe.state_of(flat).reshape(n, t_len, -1), true), moved)
                for p, probe in probes.items()}

    result: dict = {"ckpt": args.ckpt, "windows": n, "frames_per_window": t_len,
                    "real_frames": read(batch["frames"]),
                    "previous_frame": read(codec.decode(batch["x_prev"]))}
    # the picture's columns: up to 8 frames whose block moved (the first frames if none did)
    picked = np.argwhere(moved) if moved.any() else np.argwhere(np.ones_like(moved))
    shown = [(int(i), int(j)) for i, j in picked[:: max(1, len(picked) // 8)][:8]]
    rows = [np.stack([batch["frames"][i, j].cpu().numpy() for i, j in shown])]
    gen = torch.Generator(device=device).manual_seed(args.seed)
    x0 = batch["x"].float()
    for t in args.times:
        times = torch.full((n, t_len), t, device=device)
        eps = torch.randn(x0.shape, generator=gen, device=device)
        x_t = tf.add_noise(x0, eps, times)
        with torch.no_grad():
            f = torch.cat([tf_forward(model, x0[i:i + 32], torch.zeros_like(times[i:i + 32]), x_t[i:i + 32],
                                      times[i:i + 32], batch["action"][i:i + 32].float(),
                                      batch["x_prev"][i:i + 32].float()) for i in range(0, n, 32)])
        x0_hat = codec.decode(tf.x0_from_f(x_t, f, times))
        result[f"t_{t:g}"] = read(x0_hat)
        rows.append(np.stack([x0_hat[i, j].cpu().numpy() for i, j in shown]))
    if args.png:
        h = int(batch["frames"].shape[2])
        names = ["real", *(f"t={t:g}" for t in args.times)]
        labels = [(4 + r * 2 * (h + 2), name) for r, name in enumerate(names)]
        result["png"] = str(save_png(grid(rows, scale=2), args.png, labels))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
