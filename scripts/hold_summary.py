"""Issue 14's student targets, read off one folder of ``crcm eval`` lines (``scripts/gpu/distill_hold.sh``).

Runs are named ``<teacher tag>_<arm>_s<seed>_<k>step`` and each teacher ``teacher_<tag>_<…>`` (as
``crcm_robotics.eval.study_table`` reads them). Per teacher it prints the teacher's mean PSNR over the short
horizon and its worst step against copy-last, each student's mean PSNR minus its teacher's, and per arm the
long-horizon PSNR (last frame, and mean over every frame) and pusher error averaged over seeds, and the first
frame each seed falls below copy-last; then, over every teacher and seed, whether every
``--arm`` student is within ``--within`` dB of its teacher and whether its long-horizon PSNR, averaged, is at
or above ``--against``'s. Evaluations named ``…_unseen`` (``distill_study.sh UNSEEN=STORE``: the same
checkpoints on a behaviour policy no preset trains on) are kept apart, under ``"unseen"``: each teacher
against copy-last there, each student against its teacher, and whether every ``--arm`` student is within
``--within`` dB. One JSON line.

    python scripts/hold_summary.py outputs/hold_s9/all
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from statistics import mean

from crcm_robotics.eval.study_table import UNSEEN, collect
from crcm_robotics.eval.training_curves import WORST, worst_step


def below_copy_last_from(result: dict) -> int | None:
    """The first frame (1-based) whose PSNR is below copy-last's, or None if none is."""
    pairs = zip(result["psnr"], result["baseline_copy_last"]["psnr"])
    return next((i for i, (p, c) in enumerate(pairs, 1) if p < c), None)


def worst_gap(result: dict) -> float:
    """The least PSNR margin over copy-last at any step (dB) of a ``crcm eval`` result."""
    return worst_step(result["psnr"], result["baseline_copy_last"]["psnr"])[WORST]


def unseen_summary(unseen: dict[str, dict[int, dict]], teachers: dict[str, str], arm: str,
                   within: float) -> dict:
    """On the unseen policy's episodes: each teacher against copy-last, each student against its teacher."""
    out: dict = {"teachers": {}}
    gaps = []
    for tag, tname in sorted(teachers.items()):
        if tname not in unseen:
            continue
        t = unseen[tname][min(unseen[tname])]
        base = t["baseline_copy_last"]
        entry = {"psnr_mean": t["psnr_mean"], "copy_last_psnr_mean": base["psnr_mean"],
                 "worst_step_vs_copy_last": worst_gap(t),
                 "students": {}}
        for name, by_h in sorted(unseen.items()):
            m = re.fullmatch(rf"{re.escape(tag)}_(.+)_s(\d+)_\d+step", name)
            if m:
                entry["students"][name] = gap = round(by_h[min(by_h)]["psnr_mean"] - t["psnr_mean"], 3)
                if m.group(1) == arm:
                    gaps.append(gap)
        out["teachers"][tag] = entry
    out[f"{arm}_within_{within}_db_of_teacher"] = bool(gaps) and all(g >= -within for g in gaps)
    return out


def summary(logdir: Path, arm: str, against: str, within: float) -> dict:
    everything = collect(logdir)
    runs = {n: r for n, r in everything.items() if not n.endswith(UNSEEN)}
    unseen = {n.removesuffix(UNSEEN): r for n, r in everything.items() if n.endswith(UNSEEN)}
    teachers = {m.group(1): name for name in runs if (m := re.fullmatch(r"teacher_([^_]+)_.+", name))}
    if not teachers:
        raise ValueError(f"no teacher_<tag>_… eval results in {logdir}; runs there: {sorted(runs)}")
    out: dict = {"teachers": {}}
    gaps, long_arm, long_against = [], [], []
    for tag, tname in sorted(teachers.items()):
        t = runs[tname]
        short_h, long_h = min(t), max(t)
        base = t[short_h]["baseline_copy_last"]
        entry = {"psnr_mean": t[short_h]["psnr_mean"], "worst_step_vs_copy_last": worst_gap(t[short_h]),
                 "copy_last_psnr_mean": base["psnr_mean"], "long_horizon": long_h,
                 "psnr_long_last": t[long_h]["psnr"][-1], "psnr_long_mean": round(mean(t[long_h]["psnr"]), 3),
                 "below_copy_last_from": below_copy_last_from(t[long_h]), "students": {}, "arms": {}}
        by_arm: dict[str, list[dict]] = {}
        for name, by_h in sorted(runs.items()):
            m = re.fullmatch(rf"{re.escape(tag)}_(.+)_s(\d+)_\d+step", name)
            if not m or short_h not in by_h:
                continue
            gap = round(by_h[short_h]["psnr_mean"] - entry["psnr_mean"], 3)
            entry["students"][name] = gap
            by_arm.setdefault(m.group(1), []).append(by_h)
            if m.group(1) == arm:
                gaps.append(gap)
        for a, results in by_arm.items():
            longs = [r[long_h] for r in results if long_h in r]
            pusher = [mean(r["agent_err_px"]) for r in longs if r.get("agent_err_px")]
            entry["arms"][a] = {
                "seeds": len(results), "psnr_mean": round(mean(r[short_h]["psnr_mean"] for r in results), 3),
                "psnr_long_last": round(mean(r["psnr"][-1] for r in longs), 3) if longs else None,
                "psnr_long_mean": round(mean(mean(r["psnr"]) for r in longs), 3) if longs else None,
                "below_copy_last_from": [below_copy_last_from(r) for r in longs],  # one per seed
                "pusher_err_long_mean": round(mean(pusher), 2) if pusher else None}
            if a == arm:
                long_arm += [r["psnr"][-1] for r in longs]
            if a == against:
                long_against += [r["psnr"][-1] for r in longs]
        out["teachers"][tag] = entry
    out[f"{arm}_within_{within}_db_of_teacher"] = bool(gaps) and all(g >= -within for g in gaps)
    out[f"{arm}_worst_gap_db"] = min(gaps) if gaps else None
    if long_arm and long_against:
        out[f"{arm}_psnr_long_avg"] = round(mean(long_arm), 3)
        out[f"{against}_psnr_long_avg"] = round(mean(long_against), 3)
        out[f"{arm}_at_or_above_{against}_long"] = mean(long_arm) >= mean(long_against)
    if unseen:
        out["unseen"] = unseen_summary(unseen, teachers, arm, within)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("logdir", type=Path)
    parser.add_argument("--arm", default="causal_rcm", help="the arm held to the targets")
    parser.add_argument("--against", default="sf_dmd", help="the arm it must match at the long horizon")
    parser.add_argument("--within", type=float, default=1.0, help="dB below its teacher a student may be")
    args = parser.parse_args(argv)
    try:
        print(json.dumps(summary(args.logdir, args.arm, args.against, args.within)))
    except ValueError as e:
        print(f"hold_summary: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
