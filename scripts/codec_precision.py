"""What decoding in half precision costs a latent codec, and what it saves: one JSON line.

For each compute dtype (``LatentCodec.run_in``): the held-out uint8 round-trip PSNR (the store's default
validation split, as ``crcm train codec`` reports it), the PSNR of that dtype's decode against the float32
decode of the same latents, and the median milliseconds to decode a batch (CUDA events on a GPU).

    python scripts/codec_precision.py --codec CODEC_DIR --store STORE [--device cuda] [--batches 1 64 1024]

``--variants`` also times the decoder's other ways to run on a GPU (layout, cuDNN autotuning, torch.compile),
and ``--random PRESET`` times them on a random-weight codec of a ``crcm train codec`` preset instead (speed
does not depend on the weights; no store, so no PSNR):

    python scripts/codec_precision.py --random arm_small --size 128 --variants --dtypes float32
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time

import torch

from crcm_robotics.data.dataset import split_episodes
from crcm_robotics.data.store import TrajectoryStore
from crcm_robotics.model.codec import load_codec
from distill.codec import _evenly, _frames_of, held_out_psnr

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def decode_ms(codec, z: torch.Tensor, repeats: int = 5) -> float:
    """Median milliseconds of ``codec.decode(z)`` after two untimed runs."""
    cuda = z.device.type == "cuda"
    times = []
    for i in range(repeats + 2):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            codec.decode(z)
            end.record()
            end.synchronize()
            ms = start.elapsed_time(end)
        else:
            t0 = time.perf_counter()
            codec.decode(z)
            ms = (time.perf_counter() - t0) * 1e3
        if i >= 2:
            times.append(ms)
    return statistics.median(times)


VARIANTS = {  # name: (dtype, channels_last, cudnn.benchmark, torch.compile)
    "float32": (torch.float32, False, False, False),
    "float16": (torch.float16, False, False, False),
    "float16_channels_last": (torch.float16, True, False, False),
    "float16_cudnn_benchmark": (torch.float16, False, True, False),
    "float16_channels_last_cudnn_benchmark": (torch.float16, True, True, False),
    "float16_compile": (torch.float16, False, False, True),
    "float16_channels_last_compile": (torch.float16, True, False, True),
}


def time_variants(codec, z: torch.Tensor, batches: list[int]) -> dict[str, dict]:
    """Decode time per batch size for each of :data:`VARIANTS` (a compiled one also reports its compile
    time)."""
    out = {}
    for name, (dtype, channels_last, benchmark, compiled) in VARIANTS.items():
        torch.backends.cudnn.benchmark = benchmark
        codec.run_in(dtype, channels_last=channels_last)
        row: dict = {}
        if compiled:
            codec._decoder = torch.compile(codec._decoder, dynamic=False)
            t0 = time.perf_counter()
            for b in batches:
                codec.decode(z[torch.arange(b) % len(z)])
            if z.device.type == "cuda":
                torch.cuda.synchronize()
            row["compile_s"] = round(time.perf_counter() - t0, 1)
        row["decode_ms"] = {str(b): round(decode_ms(codec, z[torch.arange(b) % len(z)]), 3) for b in batches}
        out[name] = row
        print(name, row, file=sys.stderr, flush=True)
    torch.backends.cudnn.benchmark = False
    codec.run_in(torch.float32)
    return out


def random_codec(preset: str, size: int, device: torch.device):
    """A random-weight codec of ``crcm train codec preset=PRESET`` for ``size``×``size`` frames."""
    import dataclasses

    from crcm_robotics.conf import compose_config
    from crcm_robotics.model.codec import FrameAutoencoder, LatentCodec

    cfg = compose_config("config", [f"preset={preset}"], "crcm_robotics.conf.codec").codec
    net = FrameAutoencoder(dataclasses.replace(cfg, height=size, width=size))
    return LatentCodec(net.to(device).eval().requires_grad_(False))


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--codec", help="a `crcm train codec` checkpoint directory")
    ap.add_argument("--store", help="the trajectory store it was trained on")
    ap.add_argument("--random", metavar="PRESET", help="time a random codec of this codec preset (no store)")
    ap.add_argument("--size", type=int, default=128, help="frame size of the --random codec")
    ap.add_argument("--variants", action="store_true",
                    help="also time layouts, cuDNN autotuning, torch.compile")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--frames", type=int, default=512, help="held-out frames scored (evenly spaced)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 64, 1024], help="decode batch sizes timed")
    ap.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    args = ap.parse_args()
    device = torch.device(args.device)
    if args.random:
        codec = random_codec(args.random, args.size, device)
        h = args.size // codec.stride
        z = torch.randn(max(args.batches), codec.channels, h, h, device=device)
        print(json.dumps({"codec": f"random {args.random} at {args.size}", "device": str(device),
                          "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                          "variants": time_variants(codec, z, args.batches)}))
        return
    if not (args.codec and args.store):
        ap.error("--codec and --store are required (or --random PRESET)")
    codec = load_codec(args.codec, device)
    store = TrajectoryStore(args.store)
    _, val_eps = split_episodes(store.num_episodes, 0.1, 0)
    if not val_eps:
        raise SystemExit(f"store {args.store} has no held-out episodes (needs ≥ 10)")
    frames = _frames_of(store, val_eps)
    frames = frames[_evenly(len(frames), args.frames)]
    z = torch.cat([codec.encode(frames[i:i + 64].to(device)) for i in range(0, len(frames), 64)])
    reference = torch.cat([codec.decode(z[i:i + 64]) for i in range(0, len(z), 64)]).float()
    out: dict[str, dict] = {}
    for name in args.dtypes:
        codec.run_in(DTYPES[name])
        decoded = torch.cat([codec.decode(z[i:i + 64]) for i in range(0, len(z), 64)]).float()
        mse = float(((decoded - reference) ** 2).mean())
        timing = {}
        for b in args.batches:
            zb = z[torch.arange(b) % len(z)]
            timing[str(b)] = round(decode_ms(codec, zb), 3)
        out[name] = {**held_out_psnr(codec, frames),
                     "psnr_vs_float32_decode": round(10 * math.log10(255.0**2 / max(mse, 1e-10)), 2),
                     "decode_ms": timing}
    variants = time_variants(codec, z, args.batches) if args.variants else None
    print(json.dumps({"codec": args.codec, "device": str(device),
                      "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                      "dtypes": out, "variants": variants}))


if __name__ == "__main__":
    main()
