"""Data-loading benchmark: random training windows per second from a trajectory store.

    python -m crcm_robotics.eval.bench_data [--store PATH] [--episodes N] [--window 8] [--sweep]

Without ``--store`` a small PushT store is generated in a temporary folder.
Reads ``--windows`` random windows (seeded, with replacement) through
:class:`~crcm_robotics.data.WindowDataset` + ``DataLoader`` with 0 and 2 workers
and reports windows/s and MB/s of decoded frames (uint8 bytes handed to the
model); the first batch (worker start-up) is not timed. ``--sweep`` copies the
store once per frames chunk size × codec (plus sharded rows) and measures
bytes on disk per frame, files, write time, milliseconds per random window read
in-process (best of rounds that interleave the layouts, the figure least moved
by other load on a shared machine) and the DataLoader throughput for each.

Prints ONE JSON line; writes it (and the sweep as a Markdown table) under ``--out``.
Reads come from the OS page cache after the write, so the figures measure
decoding and Zarr overhead, not the disk.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crcm_robotics.data.dataset import WindowDataset
from crcm_robotics.data.store import FRAMES_CODEC, FRAMES_CODECS, TrajectoryStore, TrajectoryWriter

SWEEP_CHUNKS = (1, 8, 32)
SWEEP_SHARDED = ((8, FRAMES_CODEC, 256), (1, FRAMES_CODEC, 256))  # (chunk, codec, frames per shard)


def dir_size(path: Path) -> tuple[int, int]:
    """(bytes, files) under ``path``."""
    total = files = 0
    for root, _, names in os.walk(path):
        for name in names:
            total += os.path.getsize(os.path.join(root, name))
            files += 1
    return total, files


def frames_footprint(store_path: Path, camera: str) -> tuple[int, int]:
    """(bytes, files) of one camera's frame array on disk."""
    return dir_size(store_path / "data" / "frames" / camera)


def read_throughput(
    path: Path, window: int, windows: int, workers: int, repeats: int = 1, batch_size: int = 16, seed: int = 0
) -> dict:
    """Random windows/s and decoded MB/s through WindowDataset + DataLoader; the best of ``repeats`` runs."""
    if windows <= batch_size:
        raise ValueError(f"--windows must exceed the batch size {batch_size} (the first batch is not timed)")
    ds = WindowDataset(path, window=window)
    best = 0.0
    for r in range(repeats):
        sampler = torch.utils.data.RandomSampler(
            ds, replacement=True, num_samples=windows, generator=torch.Generator().manual_seed(seed + r)
        )
        loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=workers)
        it = iter(loader)
        first = next(it)  # worker start-up is not timed
        n, t0 = 0, time.perf_counter()
        for batch in it:
            n += len(batch["frames"])
        best = max(best, n / (time.perf_counter() - t0))
    frame_bytes = int(np.prod(first["frames"].shape[1:]))  # window × H × W × 3
    return {"windows_per_s": round(best, 1), "mb_per_s": round(best * frame_bytes / 1e6, 1)}


def copy_store(src: TrajectoryStore, dst: Path, chunk: int, codec: str, shard: int | None) -> float:
    """Rewrite ``src`` at ``dst`` with another frames layout; returns the write time in seconds."""
    camera = (src.attrs.get("cameras") or ["rgb"])[0]
    t0 = time.perf_counter()
    writer = TrajectoryWriter.create(
        dst, image_shape=src.image_shape, action_dim=src.action_dim, state_dim=src.state_dim,
        cameras=(camera,), fps=src.fps, source=f"copy of {src.path}", frames_chunk=chunk,
        frames_codec_name=codec, frames_shard=shard, overwrite=True,
    )
    for e in range(src.num_episodes):
        ep = src.episode(e)
        writer.append_episode(ep["frames"], ep["action"], ep.get("state"), ep["timestamp"])
    writer.write_stats()
    return time.perf_counter() - t0


def window_ms(datasets: dict[str, WindowDataset], windows: int, rounds: int, seed: int = 0) -> dict[str, float]:
    """Milliseconds per random window read in-process, best of ``rounds`` rounds that interleave the
    datasets (so load from other processes on a shared machine hits every layout alike)."""
    n = min(len(ds) for ds in datasets.values())
    idx = np.random.default_rng(seed).integers(0, n, windows)
    best = {name: float("inf") for name in datasets}
    for _ in range(rounds):
        for name, ds in datasets.items():
            t0 = time.perf_counter()
            for i in idx:
                ds[int(i)]
            best[name] = min(best[name], (time.perf_counter() - t0) / windows * 1e3)
    return best


def sweep(
    src_path: Path, workdir: Path, window: int, windows: int, repeats: int,
    chunks: tuple[int, ...] = SWEEP_CHUNKS, codecs: tuple[str, ...] = FRAMES_CODECS,
) -> list[dict[str, Any]]:
    """One row per frames layout: every chunk × codec, plus the sharded layouts among them."""
    src = TrajectoryStore(src_path)
    camera = (src.attrs.get("cameras") or ["rgb"])[0]
    raw = int(np.prod(src.image_shape))
    configs = [(c, codec, None) for c in chunks for codec in codecs]
    configs += [(c, codec, s) for c, codec, s in SWEEP_SHARDED if c in chunks and codec in codecs]
    rows, paths = [], []
    for chunk, codec, shard in configs:
        dst = workdir / f"sweep_c{chunk}_{codec}_s{shard or 0}.zarr"
        write_s = copy_store(src, dst, chunk, codec, shard)
        nbytes, files = frames_footprint(dst, camera)
        rows.append({
            "chunk": chunk, "codec": codec, "shard": shard,
            "bytes_per_frame": round(nbytes / src.num_frames), "ratio": round(raw * src.num_frames / nbytes, 2),
            "files": files, "write_s": round(write_s, 2),
        })
        paths.append(dst)
    ms = window_ms({str(p): WindowDataset(p, window=window) for p in paths}, windows, rounds=max(repeats, 3))
    for row, path in zip(rows, paths):
        w0 = read_throughput(path, window, windows, workers=0, repeats=repeats)
        w2 = read_throughput(path, window, windows, workers=2, repeats=repeats)
        row.update({
            "ms_per_window": round(ms[str(path)], 3),
            "windows_per_s_w0": w0["windows_per_s"], "windows_per_s_w2": w2["windows_per_s"],
            "mb_per_s_w0": w0["mb_per_s"], "mb_per_s_w2": w2["mb_per_s"],
        })
        print(json.dumps(row), flush=True, file=sys.stderr)  # progress
    return rows


def sweep_markdown(rows: list[dict[str, Any]]) -> str:
    head = ("| frames chunk | codec | shard | bytes/frame | ratio | files | write s | ms/window | "
            "windows/s (0 w) | windows/s (2 w) |")
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        lines.append(
            f"| {r['chunk']} | {r['codec']} | {r['shard'] or '-'} | {r['bytes_per_frame']} | {r['ratio']} | "
            f"{r['files']} | {r['write_s']} | {r['ms_per_window']} | {r['windows_per_s_w0']} | {r['windows_per_s_w2']} |"
        )
    return "\n".join(lines)


def bench(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    generation = None
    store_path = args.store
    if store_path is None:
        from crcm_robotics.data.pusht import generate_pusht

        store_path = tmp / "pusht.zarr"
        generation = generate_pusht(store_path, args.episodes, size=args.size, seed=0, workers=0, progress=False)
    store = TrajectoryStore(store_path)
    nbytes, files = frames_footprint(Path(store_path), (store.attrs.get("cameras") or ["rgb"])[0])
    result: dict[str, Any] = {
        "bench": "data",
        "store": str(args.store) if args.store else f"generated PushT, {args.episodes} episodes",
        "episodes": store.num_episodes,
        "frames": store.num_frames,
        "image_shape": list(store.image_shape),
        "window": args.window,
        "windows": args.windows,
        "repeats": args.repeats,
        "bytes_per_frame": round(nbytes / store.num_frames),
        "raw_bytes_per_frame": int(np.prod(store.image_shape)),
        "frames_files": files,
        "read_w0": read_throughput(Path(store_path), args.window, args.windows, 0, args.repeats),
        "read_w2": read_throughput(Path(store_path), args.window, args.windows, 2, args.repeats),
        "cpu": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_avg_1m": round(os.getloadavg()[0], 2),  # other processes on the machine skew the figures
    }
    if generation is not None:
        result["generation"] = generation
    if args.sweep:
        result["sweep"] = sweep(
            Path(store_path), tmp, args.window, args.windows, args.repeats, tuple(args.chunks), tuple(args.codecs)
        )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, help="existing store; default: generate PushT in a temp dir")
    parser.add_argument("--episodes", type=int, default=20, help="episodes of the generated store")
    parser.add_argument("--size", type=int, default=64, help="frame size of the generated store")
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--windows", type=int, default=1000, help="random windows read per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per figure; the best is reported")
    parser.add_argument("--sweep", action="store_true", help="also sweep frames chunk × codec")
    parser.add_argument("--chunks", type=int, nargs="+", default=list(SWEEP_CHUNKS), help="sweep: frames per chunk")
    parser.add_argument("--codecs", nargs="+", default=list(FRAMES_CODECS), choices=FRAMES_CODECS, help="sweep: codecs")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench_data"))
    args = parser.parse_args(argv)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the loader's decode is what is measured, not intra-op threads
    try:
        with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
            result = bench(args, Path(tmp))
    finally:
        torch.set_num_threads(threads)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    if args.sweep:
        (args.out / "sweep.md").write_text(sweep_markdown(result["sweep"]) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
