"""Planning success against planning time per replan, model by model: what a faster model gives up.

Each item is ``LABEL=FILE`` (a ``crcm bench plan`` JSON line or ``results.json`` with one arm: its held success
and median ms per replan), ``LABEL=FILE@MS`` (the same, with the ms per replan measured alone elsewhere: a run
side by side with others on one GPU reports its shared time), or ``LABEL=SUCCESS/MS`` (figures recorded in
docs/results.md whose JSON is not kept). ``--teacher-ms`` draws the teacher's time and a third of it (issue 12's
time target), ``--target`` the success target.

    python scripts/plot_plan_tradeoff.py "4-block student s0=outputs/s30/call2/plan_i4_s0_a.json@343.3" \\
        "full-depth student s1 (27th session)=0.80/642" --teacher-ms 1075.85 --out docs/img/plan/tradeoff.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from plot_planning_models import load  # a planning run's JSON (a line, a file, or results.json's summary)


def _positive(value: str, what: str, item: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not number > 0:
        raise SystemExit(f"plot_plan_tradeoff: item {item!r}: {what} {value!r} is not a positive number")
    return number


def parse_item(item: str) -> tuple[str, float, float, bool]:
    """LABEL=FILE[@MS] or LABEL=SUCCESS/MS → (label, held success, ms per replan, whether read from a file)."""
    label, sep, value = item.partition("=")
    if not sep or not label:
        raise SystemExit(f"plot_plan_tradeoff: item {item!r}: expected LABEL=FILE[@MS] or LABEL=SUCCESS/MS")
    path, at, ms_text = value.partition("@")
    if Path(path).is_file():
        arms = load(path)["arms"]
        if len(arms) != 1:
            raise SystemExit(f"plot_plan_tradeoff: {path}: a planning run's JSON with one arm expected")
        [arm] = arms.values()
        ms = _positive(ms_text, "MS", item) if at else float(arm["replan_ms_median"])
        return label, float(arm["success_end"]), ms, True
    if at:
        raise SystemExit(f"plot_plan_tradeoff: item {item!r}: {path!r} is not a file")
    success, slash, ms_text = value.partition("/")
    if not slash:
        raise SystemExit(f"plot_plan_tradeoff: item {item!r}: {value!r} is neither a file nor SUCCESS/MS")
    try:
        held = float(success)
    except ValueError:
        held = float("nan")
    if not 0 <= held <= 1:
        raise SystemExit(f"plot_plan_tradeoff: item {item!r}: success {success!r} is not a fraction in [0, 1]")
    return label, held, _positive(ms_text, "MS", item), False


def label_heights(points: list[tuple[float, float]], x_near: float, gap: float) -> list[float]:
    """The height of each point's label: points whose x lie within ``x_near`` of each other get labels at least
    ``gap`` apart in y (pushed up from the lowest), so that two runs of one model at one time stay readable."""
    heights = [y for _, y in points]
    order = sorted(range(len(points)), key=lambda i: (points[i][1], points[i][0]))
    for rank, i in enumerate(order):
        for j in order[:rank]:  # every lower label near in x, already placed
            if abs(points[i][0] - points[j][0]) <= x_near and heights[i] < heights[j] + gap:
                heights[i] = heights[j] + gap
    return heights


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("items", nargs="+", help="LABEL=FILE, LABEL=FILE@MS or LABEL=SUCCESS/MS")
    parser.add_argument("--out", required=True, help="the PNG to write")
    parser.add_argument("--teacher-ms", type=float, default=None, help="the teacher's ms per replan")
    parser.add_argument("--target", type=float, default=0.90, help="the success target (issue 12: 0.90)")
    parser.add_argument("--title", default="PushT, 50 held-out goals: success held against ms per replan")
    args = parser.parse_args(argv)
    if args.teacher_ms is not None and not args.teacher_ms > 0:
        parser.error(f"--teacher-ms {args.teacher_ms}: expected a positive number of milliseconds")
    rows = [parse_item(item) for item in args.items]

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 5))
    x_max = max([r[2] for r in rows] + [args.teacher_ms or 0]) * 1.35
    heights = label_heights([(ms, held) for _, held, ms, _ in rows], x_near=0.25 * x_max, gap=0.04)
    for (label, held, ms, from_file), height in zip(rows, heights):
        ax.scatter(ms, held, s=50, color="#4c72b0" if from_file else "#a0a0a0", zorder=3)
        moved = height != held  # a label lifted off its point gets a thin line back to it
        ax.annotate(label, (ms, held), xytext=(ms + 0.012 * x_max, height + 0.01), fontsize=8,
                    arrowprops={"arrowstyle": "-", "color": "#b0b0b0", "lw": 0.6} if moved else None)
    ax.axhline(args.target, color="#55a868", ls=":", label=f"success target {args.target:.2f}")
    if args.teacher_ms is not None:
        ax.axvline(args.teacher_ms, color="#8c8c8c", ls="--", label=f"teacher {args.teacher_ms:.0f} ms")
        ax.axvline(args.teacher_ms / 3, color="#c44e52", ls="--", label=f"a third of it ({args.teacher_ms / 3:.0f} ms)")
    ax.set_xlim(0, x_max)
    ax.set_ylim(0, 1)
    ax.set_xlabel("median ms per replan, alone on the GPU")
    ax.set_ylabel("success held at the end")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(args.title + "\n(grey: figures recorded in docs/results.md)", fontsize=10)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(json.dumps({"out": args.out, "rows": [{"label": r[0], "success_end": r[1], "replan_ms": r[2]} for r in rows]}))


if __name__ == "__main__":
    main(sys.argv[1:])
