"""Pictures people would rather look at than read: contact sheets, real-vs-predicted strips, GIFs, plots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def grid(rows: Sequence[np.ndarray], scale: int = 1, pad: int = 2, pad_value: int = 200) -> np.ndarray:
    """Tile ``rows`` (each uint8 [n, H, W, 3], same H, W) into one image with ``pad``-pixel gutters."""
    if not rows:
        raise ValueError("grid needs at least one row")
    h, w = rows[0].shape[1:3]
    n = max(len(r) for r in rows)
    out = np.full((len(rows) * (h + pad) + pad, n * (w + pad) + pad, 3), pad_value, dtype=np.uint8)
    for i, row in enumerate(rows):
        for j, frame in enumerate(row):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            out[y : y + h, x : x + w] = frame
    if scale > 1:
        out = np.kron(out, np.ones((scale, scale, 1), dtype=np.uint8))
    return out


def save_png(image: np.ndarray, path: str | Path, labels: Sequence[tuple[int, str]] = ()) -> Path:
    """Save an RGB uint8 image; ``labels`` are (y, text) written at the left edge."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(image)
    if labels:
        draw = ImageDraw.Draw(img)
        for y, text in labels:
            draw.text((3, y), text, fill=(200, 0, 0))
    img.save(path)
    return path


def save_gif(frames: np.ndarray, path: str | Path, fps: float = 10.0, scale: int = 1) -> Path:
    """Save uint8 [n, H, W, 3] as a looping GIF."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if scale > 1:
        frames = np.kron(frames, np.ones((1, scale, scale, 1), dtype=np.uint8))
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return path


def store_contact_sheet(store, out: str | Path, episodes: int = 6, frames_per_row: int = 10, scale: int = 2) -> Path:
    """One row per sampled episode, frames evenly spaced through it."""
    chosen = np.unique(np.linspace(0, store.num_episodes - 1, min(episodes, store.num_episodes)).round().astype(int))
    rows = []
    for e in chosen:
        s, t = store.episode_bounds(int(e))
        idx = np.unique(np.linspace(s, t - 1, min(frames_per_row, t - s)).round().astype(int))
        rows.append(np.stack([store.frames(int(i), int(i) + 1)[0] for i in idx]))
    return save_png(grid(rows, scale=scale), out)


def line_plot(
    series: dict[str, Sequence[float]], path: str | Path, xlabel: str, ylabel: str, title: str = "",
    x: Sequence[float] | dict[str, Sequence[float]] | None = None,
) -> Path:
    """A small line plot (matplotlib, Agg backend); ``x`` is shared, or per series when a dict."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
    for name, ys in series.items():
        xs_of = x.get(name) if isinstance(x, dict) else x
        xs = list(xs_of) if xs_of is not None else list(range(1, len(ys) + 1))
        ax.plot(xs, list(ys), marker="o", markersize=3, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
