"""Bars of the held-out pushed block's error, model by model: position (env units) and angle (degrees) of the
moved block after 25 env steps, as scripts/block_motion_error.py reads them, with copy-last and the probe on
real frames drawn as lines.

Each item is ``LABEL=FILE`` (a block_motion_error.py JSON line) or ``LABEL=POSITION/ANGLE`` (a figure recorded
in docs/results.md whose JSON is not kept). Copy-last and real frames come from the first FILE item.

    python scripts/plot_pushed_block.py "128, codec, seed 0=outputs/s29/call2/bme_teacher_c128.json" \\
        "64, pixels, seed 0=36.2/39.6" --out docs/img/plan/pushed_block_128.png

With ``--seconds`` (one figure per item: the GPU seconds its training took) the items are points against that
cost instead of bars, so models that cost differently an update (wider, finer) are set beside each other at equal
GPU time.

With ``--by-step`` the items are ``LABEL=FILE.npz`` (a block_motion_error.py ``--errors-out`` file) or
``LABEL=P1,P2,…/A1,A2,…`` (a recorded series, one figure a predicted frame), drawn as lines against the predicted
frame (5 env steps each): the mean error over the frames where the true block moved, copy-last's from the first
file. Whether the error is there at the first frame or builds up over the rollout.

    python scripts/plot_pushed_block.py --by-step "4x4=outputs/s46/call4/bme_teacher_p4_s0.npz" \
        "state model (other windows)=9.75,14.66,18.9,22.83,26.78/5.18,7.66,9.61,11.3,13.01" --out by_step.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

STEPS_KEY = "steps_4"  # the DDIM-4 sampler every teacher here is scored with


def parse_item(item: str) -> tuple[str, float, float, dict | None]:
    """LABEL=FILE or LABEL=POSITION/ANGLE → (label, position, angle, the JSON line or None)."""
    label, sep, value = item.rpartition("=")
    if not sep or not label:
        raise SystemExit(f"plot_pushed_block: item {item!r}: expected LABEL=FILE or LABEL=POSITION/ANGLE")
    if Path(value).is_file():
        line = json.loads(Path(value).read_text().strip().splitlines()[-1])
        if STEPS_KEY not in line or "moved" not in line[STEPS_KEY]:
            raise SystemExit(f"plot_pushed_block: {value}: no {STEPS_KEY}.moved figures (a block_motion_error.py "
                             f"line at --steps 4 expected)")
        moved = line[STEPS_KEY]["moved"]
        return label, float(moved["position"]), float(moved["angle_deg"]), line
    try:
        position, angle = (float(v) for v in value.split("/"))
    except ValueError:
        raise SystemExit(f"plot_pushed_block: item {item!r}: {value!r} is neither a file nor POSITION/ANGLE") from None
    return label, position, angle, None


def parse_step_item(item: str) -> tuple[str, list[float], list[float], tuple[list[float], list[float]] | None]:
    """LABEL=FILE.npz or LABEL=P1,P2,…/A1,A2,… → (label, position and angle per predicted frame, copy-last's
    two series or None), each the mean over the frames where the true block moved."""
    label, sep, value = item.rpartition("=")
    if not sep or not label:
        raise SystemExit(f"plot_pushed_block: item {item!r}: expected LABEL=FILE.npz or LABEL=P1,P2,…/A1,A2,…")
    if Path(value).is_file():
        from compare_block_errors import load_errors, step_means  # its npz reader and refusals

        errors = load_errors(value, STEPS_KEY)
        missing = [key for key in ("copy_last_position", "copy_last_angle") if key not in errors]
        if missing:
            raise SystemExit(f"plot_pushed_block: {value}: no {', '.join(missing)}; expected a "
                             f"block_motion_error.py --errors-out .npz with {STEPS_KEY} and copy_last rows")
        moved = errors["moved"]
        if not moved.any(axis=0).all():
            raise SystemExit(f"plot_pushed_block: {value}: a predicted frame where the block never moved")
        return (label, step_means(errors[f"{STEPS_KEY}_position"], moved),
                step_means(errors[f"{STEPS_KEY}_angle"], moved),
                (step_means(errors["copy_last_position"], moved), step_means(errors["copy_last_angle"], moved)))
    try:
        position, angle = ([float(v) for v in part.split(",")] for part in value.split("/"))
    except ValueError:
        raise SystemExit(f"plot_pushed_block: item {item!r}: {value!r} is neither a file nor "
                         "P1,P2,…/A1,A2,…") from None
    if len(position) != len(angle):
        raise SystemExit(f"plot_pushed_block: item {item!r}: {len(position)} positions and {len(angle)} angles; "
                         "expected one of each a predicted frame")
    return label, position, angle, None


def plot_by_step(plt, items: list[str], title: str, out: str) -> list[dict]:
    """Position and angle error against the predicted frame, a line an item, copy-last dashed."""
    rows = [parse_step_item(item) for item in items]
    reference = next((copy for *_, copy in rows if copy is not None), None)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    for ax, index, unit in ((axes[0], 1, "position error (env units)"), (axes[1], 2, "angle error (degrees)")):
        for row in rows:
            ax.plot(range(1, len(row[index]) + 1), row[index], marker="o" if row[3] is not None else "s",
                    ls="-" if row[3] is not None else ":", label=row[0])
        if reference is not None:
            ax.plot(range(1, len(reference[index - 1]) + 1), reference[index - 1], color="#c44e52", ls="--",
                    label="copy-last")
        ax.set_xticks(range(1, max(len(r[index]) for r in rows) + 1))
        ax.set_xlabel("predicted frame (5 env steps each)")
        ax.set_ylabel(unit)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=3)
    recorded = any(r[3] is None for r in rows)
    fig.suptitle(title + ("  (dotted, squares: figures recorded in docs/results.md)" if recorded else ""), fontsize=10)
    fig.tight_layout(rect=(0, 0.05 * ((len(labels) + 2) // 3), 1, 1))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return [{"label": r[0], "position": [round(v, 2) for v in r[1]], "angle_deg": [round(v, 2) for v in r[2]]}
            for r in rows]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("items", nargs="+", help="LABEL=FILE or LABEL=POSITION/ANGLE")
    parser.add_argument("--out", required=True, help="the PNG to write")
    parser.add_argument("--title", default="Held-out pushed block after 25 env steps (DDIM 4)")
    parser.add_argument("--seconds", type=float, nargs="+", metavar="S",
                        help="each item's training time in GPU seconds, in the items' order: points against it")
    parser.add_argument("--by-step", action="store_true",
                        help="lines against the predicted frame, from --errors-out .npz files (see above)")
    args = parser.parse_args(argv)
    if args.by_step:
        if args.seconds is not None:
            raise SystemExit("plot_pushed_block: --by-step and --seconds: expected one of them")
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        print(json.dumps({"out": args.out, "rows": plot_by_step(plt, args.items, args.title, args.out)}))
        return
    rows = [parse_item(item) for item in args.items]
    reference = next((line for *_, line in rows if line is not None), None)
    if args.seconds is not None and (len(args.seconds) != len(rows) or min(args.seconds) <= 0):
        raise SystemExit(f"plot_pushed_block: --seconds {' '.join(f'{v:g}' for v in args.seconds)}: expected "
                         f"{len(rows)} positive training times, one per item")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if args.seconds is not None:
        plot_against_seconds(plt, rows, args.seconds, reference, args.title, args.out)
        print(json.dumps({"out": args.out, "rows": [{"label": r[0], "position": r[1], "angle_deg": r[2], "seconds": t}
                                                    for r, t in zip(rows, args.seconds, strict=True)]}))
        return

    labels = [r[0] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.55 * len(rows) + 1.6), sharey=True)
    for ax, index, unit, key in ((axes[0], 1, "position error (env units)", "position"),
                                 (axes[1], 2, "angle error (degrees)", "angle_deg")):
        values = [r[index] for r in rows]
        bars = ax.barh(range(len(rows)), values, color=["#4c72b0" if r[3] is not None else "#a0a0a0" for r in rows])
        ax.bar_label(bars, fmt="%.1f", padding=3, fontsize=8)
        if reference is not None:
            ax.axvline(reference["copy_last"]["moved"][key], color="#c44e52", ls="--", label="copy-last")
            ax.axvline(reference["real_frames"]["moved"][key], color="#55a868", ls=":", label="probe on real frames")
        ax.set_xlabel(unit)
        ax.set_xlim(0, max(values + ([reference["copy_last"]["moved"][key]] if reference else [])) * 1.2)
    axes[0].set_yticks(range(len(rows)), labels, fontsize=8)
    axes[0].invert_yaxis()
    if reference is not None:
        fig.legend(*axes[1].get_legend_handles_labels(), fontsize=8, loc="lower center", ncol=2)  # off the bars
    recorded = any(r[3] is None for r in rows)  # the grey bars' key, only where there are grey bars
    fig.suptitle(args.title + ("  (grey: figures recorded in docs/results.md)" if recorded else ""), fontsize=10)
    fig.tight_layout(rect=(0, 0.05 if reference is not None else 0, 1, 1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(json.dumps({"out": args.out, "rows": [{"label": r[0], "position": r[1], "angle_deg": r[2]} for r in rows]}))


def plot_against_seconds(plt, rows: list, seconds: list[float], reference: dict | None, title: str, out: str) -> None:
    """Position and angle error of each item against its training GPU seconds: a marker and colour per item,
    named in one legend under the panels, each point labelled with its value (above or below in turn, so that
    points close together keep their labels apart)."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2 + 0.2 * len(rows)))
    colours = plt.get_cmap("tab10").colors
    for ax, index, unit, key in ((axes[0], 1, "position error (env units)", "position"),
                                 (axes[1], 2, "angle error (degrees)", "angle_deg")):
        for i, (row, t) in enumerate(zip(rows, seconds, strict=True)):
            recorded = row[3] is None
            ax.scatter(t, row[index], color=colours[i % len(colours)], marker="s" if recorded else "o", s=45,
                       zorder=3, label=row[0] + (" (recorded)" if recorded else ""))
            ax.annotate(f"{row[index]:.1f}", (t, row[index]), textcoords="offset points",
                        xytext=(6, 6 if i % 2 == 0 else -12), fontsize=8)
        if reference is not None:
            ax.axhline(reference["copy_last"]["moved"][key], color="#c44e52", ls="--", label="copy-last")
        ax.set_xlabel("training time (GPU seconds)")
        ax.set_ylabel(unit)
        ax.set_xlim(0, max(seconds) * 1.15)
        ax.set_ylim(0, max([r[index] for r in rows] + ([reference["copy_last"]["moved"][key]] if reference else []))
                    * 1.15)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=2)
    fig.suptitle(title + "  (squares: figures recorded in docs/results.md)", fontsize=10)
    fig.tight_layout(rect=(0, 0.06 * ((len(labels) + 1) // 2), 1, 1))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1:])
