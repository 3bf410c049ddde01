"""Plot closed-loop planning success by model, and the state models' pushed-block error by model frame.

Reads the JSON a planning run writes: ``crcm bench plan``'s line (or its ``results.json``) and
``scripts/state_model_planning.py``'s ``results.json``. Each ``LABEL=PATH`` adds every arm of that file
(named ``LABEL`` when the file has one arm, ``LABEL/arm`` otherwise) to the success chart, and
``LABEL=PATH#ARM`` that arm alone; a state model's run (its ``state_mlp`` arm) also adds its moved-block error
by frame to the second panel, beside copy-last's (``--bars-only``: the success chart alone).

    python scripts/plot_planning_models.py "frames MLP=outputs/smp/main/results.json#state_mlp" \\
        "step 5=outputs/smp/step5/results.json" \\
        "2-step student s0=outputs/hold_s13/call2/plan/plan_s0.json" \\
        --out docs/img/plan/state_models.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def load(path: str) -> dict[str, Any]:
    """The run's JSON object (the last line of a file of JSON lines, or a whole JSON file)."""
    text = Path(path).read_text().strip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = json.loads(text.splitlines()[-1]) if text else None
        except json.JSONDecodeError:
            data = None
    if isinstance(data, dict) and "summary" in data:  # crcm bench plan's results.json
        data = data["summary"]
    if not isinstance(data, dict) or not isinstance(data.get("arms"), dict) or not data["arms"]:
        raise SystemExit(f"{path}: a planning run's JSON with an 'arms' object expected")
    return data


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="LABEL=PATH of a planning run's JSON")
    ap.add_argument("--out", required=True, help="PNG to write")
    ap.add_argument("--bars-only", action="store_true",
                    help="only the success chart (runs of one model family, whose error curves coincide)")
    args = ap.parse_args(argv)
    bars: list[tuple[str, float, float, int | None]] = []  # name, held at the end, reached, goals planned
    curves: dict[str, list[float]] = {}
    for item in args.runs:
        label, sep, path = item.partition("=")
        path, _, only = path.partition("#")
        if not sep or not label or not path:
            raise SystemExit(f"{item!r}: LABEL=PATH or LABEL=PATH#ARM expected")
        data = load(path)
        if only and only not in data["arms"]:
            raise SystemExit(f"{item!r}: no arm {only!r} in {path} (arms: {', '.join(data['arms'])})")
        arms = {only: data["arms"][only]} if only else data["arms"]
        for arm, fig in arms.items():
            name = label if len(arms) == 1 else f"{label}/{arm}"
            goals = fig.get("goals")
            bars.append((name, float(fig["success_end"]), float(fig["success_any"]),
                         int(goals) if type(goals) in (int, float) else None))  # not a bool
        model = data.get("state_mlp")
        if isinstance(model, dict) and "block_mlp" in model and "state_mlp" in arms and not args.bars_only:
            curves[label] = model["block_mlp"]["moved_by_frame"]["position"]
            curves.setdefault("copy last", model["block_copy_last"]["moved_by_frame"]["position"])

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 if curves else 1
    fig, axes = plt.subplots(1, panels, figsize=(6 + 5 * (panels - 1), 0.45 * len(bars) + 2.3), squeeze=False)
    ax = axes[0][0]
    y = list(range(len(bars)))[::-1]
    ax.barh(y, [b[2] for b in bars], color="#c9d7ea", label="reached at any step")
    ax.barh(y, [b[1] for b in bars], color="#2f5d95", label="held at the end")
    counts = {b[3] for b in bars}
    if len(counts) > 1:  # arms cut at different goals (a call's end): each bar's share is of its own goals
        names = [b[0] if b[3] is None else f"{b[0]} ({b[3]} goals)" for b in bars]
        xlabel = "success (share of the goals each arm planned)"
    else:
        [count] = counts
        names, xlabel = [b[0] for b in bars], f"success ({count} goals)" if count else "success"
    ax.set_yticks(y, names)
    ax.axvline(0.90, color="k", ls="--", lw=1, label="target 0.90")
    ax.set_xlim(0, 1)
    ax.set_xlabel(xlabel)
    # above the axes: never over a bar, and as near to it with few bars as with many
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.01), ncol=2, fontsize=8)
    if curves:
        ax2 = axes[0][1]
        for label, pos in curves.items():
            ax2.plot(range(1, len(pos) + 1), pos, marker="o", ls="--" if label == "copy last" else "-",
                     label=label)
        ax2.set_xticks(range(1, max(len(v) for v in curves.values()) + 1))
        ax2.set_xlabel("model frame (5 env steps)")
        ax2.set_ylabel("moved block position error (env units)")
        ax2.set_ylim(bottom=0)
        ax2.legend(fontsize=8)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110, bbox_inches="tight")
    print(json.dumps({"out": args.out, "bars": len(bars), "goals": [b[3] for b in bars],
                      "labels": [t.get_text() for t in ax.get_yticklabels()], "xlabel": ax.get_xlabel(),
                      "curves": list(curves)}))


if __name__ == "__main__":
    main()
