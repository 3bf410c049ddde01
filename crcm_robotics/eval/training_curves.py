"""Training curves: the held-out validation figures of runs against their update number.

``python -m crcm_robotics.eval.training_curves RUN_log.jsonl … [--plot DIR]`` reads the validation
records a run with ``train.validation.every`` writes to its log (``{"step", "seconds", "validation": {…},
"selected"}``; a resumed run appends to the same file, so a later record of an update replaces an
earlier one) and prints one markdown table: per run, how many validations, the selected update and
its figures, the last one's, the worst gap to copy-last, and the least margin at any single horizon step
(where logged); ``--from-update N`` counts only validations from update N on in those two. ``--plot DIR``
draws mean PSNR minus copy-last, that least single-step margin and the pusher error against updates, one
line per run.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from crcm_robotics.eval.report import line_plot

WORST = "worst_step_vs_copy_last"  # logged by distill.validation: the least margin over copy-last at any step


def worst_step(psnr: list[float], copy_psnr: list[float]) -> dict[str, float]:
    """The horizon step where the rollout's PSNR is least above copy-last's, and that margin (dB): the teacher
    target is to beat copy-last at *every* step, which the mean over steps can hide. Validation logs it;
    ``scripts/hold_summary.py`` reads it off ``crcm eval`` results."""
    gaps = [p - c for p, c in zip(psnr, copy_psnr)]
    if not gaps or not all(math.isfinite(g) for g in gaps):
        return {WORST: math.nan, "worst_step": math.nan}
    gap, step = min((g, t) for t, g in enumerate(gaps, 1))
    return {WORST: round(gap, 3), "worst_step": float(step)}


def read_curve(log: Path) -> list[dict[str, Any]]:
    """The run's validations in update order: ``{"step", "seconds", **figures}`` each."""
    by_step: dict[int, dict[str, Any]] = {}
    for n, line in enumerate(log.read_text().splitlines(), 1):
        if not line.startswith("{"):
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{log} line {n} is not JSON: {e}") from e
        if "validation" in rec:
            by_step[int(rec["step"])] = {"step": int(rec["step"]), "seconds": rec.get("seconds"), **rec["validation"]}
    return [by_step[s] for s in sorted(by_step)]


def run_name(log: Path) -> str:
    return log.name.removesuffix(".jsonl").removesuffix("_log")


def curve_table(curves: dict[str, list[dict[str, Any]]], from_update: int = 0) -> str:
    """Markdown: one row per run (figures in dB; pusher error in px). The two worst-case columns count the
    validations at ``from_update`` and after only (a target set from some training length on)."""
    since = f" from update {from_update}" if from_update else ""
    rows = ["| run | validations | selected update | PSNR | vs copy-last | pusher px | last update | last vs copy-last "
            f"| worst vs copy-last{since} | worst single step (update){since} |", "|" + "---|" * 10]
    for name, curve in curves.items():
        if not curve:
            rows.append(f"| {name} | 0 | – | – | – | – | – | – | – | – |")
            continue
        later = [r for r in curve if r["step"] >= from_update]
        stepwise = [r for r in later if math.isfinite(r.get(WORST, math.nan))]  # logged since session 11
        worst = min(stepwise, key=lambda r: r[WORST]) if stepwise else None
        single = "–" if worst is None else (
            f"{worst[WORST]:+.2f} (step {int(worst['worst_step'])}, update {worst['step']})")
        worst_mean = f"{min(r['psnr_vs_copy_last'] for r in later):+.2f}" if later else "–"
        best = max(curve, key=lambda r: r["psnr_vs_copy_last"])
        last = curve[-1]
        pusher = f"{best['agent_err_mean']:.2f}" if "agent_err_mean" in best else "–"
        rows.append(f"| {name} | {len(curve)} | {best['step']} | {best['psnr_mean']:.2f} | "
                    f"{best['psnr_vs_copy_last']:+.2f} | {pusher} | {last['step']} | {last['psnr_vs_copy_last']:+.2f} | "
                    f"{worst_mean} | {single} |")
    return "\n".join(rows)


def plot_curves(curves: dict[str, list[dict[str, Any]]], out: Path) -> list[Path]:
    """PSNR − copy-last and pusher error against updates, one line per run."""
    steps = {name: [r["step"] for r in c] for name, c in curves.items() if c}
    paths = [line_plot({n: [r["psnr_vs_copy_last"] for r in curves[n]] for n in steps}, out / "psnr_vs_updates.png",
                       "update", "mean PSNR − copy-last (dB)", x=steps)]
    stepwise = {n: [r for r in curves[n] if math.isfinite(r.get(WORST, math.nan))] for n in steps}
    stepwise = {n: rs for n, rs in stepwise.items() if rs}
    if stepwise:
        paths.append(line_plot({n: [r[WORST] for r in rs] for n, rs in stepwise.items()},
                               out / "worst_step_vs_updates.png", "update",
                               "least PSNR − copy-last over steps 1..H (dB)",
                               x={n: [r["step"] for r in rs] for n, rs in stepwise.items()}))
    with_pusher = {n: s for n, s in steps.items() if "agent_err_mean" in curves[n][0]}
    if with_pusher:
        paths.append(line_plot({n: [r["agent_err_mean"] for r in curves[n]] for n in with_pusher},
                               out / "pusher_error_vs_updates.png", "update", "pusher error (px)", x=with_pusher))
    # train.validation.probe: each point's and angle's error read off the predicted frames, where logged
    probed = sorted({k for c in curves.values() for r in c for k in r
                     if k.startswith("probe_") and k.endswith(("_pos", "_deg"))})
    for key in probed:
        runs = {n: [r for r in c if key in r] for n, c in curves.items()}
        runs = {n: rs for n, rs in runs.items() if rs}
        series = {n: [r[key] for r in rs] for n, rs in runs.items()}
        xs = {n: [r["step"] for r in rs] for n, rs in runs.items()}
        for n, rs in runs.items():  # copy-last on the same windows, for scale
            copy = rs[-1].get(f"copy_last_{key}")
            if copy is not None:
                series[f"{n}: copy-last"] = [copy, copy]
                xs[f"{n}: copy-last"] = [xs[n][0], xs[n][-1]]
        label = key.removeprefix("probe_").replace("_deg", " (deg)").replace("_", " ")
        paths.append(line_plot(series, out / f"{key}_vs_updates.png", "update",
                               f"{label} error, probe on predicted frames", x=xs))
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("logs", nargs="+", type=Path, help="run logs (*_log.jsonl)")
    ap.add_argument("--plot", type=Path, default=None, help="folder for the PNG plots")
    ap.add_argument("--from-update", type=int, default=0, metavar="N",
                    help="the worst-case columns count validations at update N and after only")
    args = ap.parse_args(argv)
    if args.from_update < 0:
        print(f"--from-update must be ≥ 0, got {args.from_update}", file=sys.stderr)
        return 2
    missing = [str(p) for p in args.logs if not p.is_file()]
    if missing:
        print(f"no such log: {', '.join(missing)}", file=sys.stderr)
        return 2
    curves = {run_name(p): read_curve(p) for p in args.logs}
    print(curve_table(curves, args.from_update))
    if args.plot:
        for p in plot_curves(curves, args.plot):
            print(f"wrote {p}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
