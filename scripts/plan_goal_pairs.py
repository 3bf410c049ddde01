"""Closed-loop planning arms compared goal by goal, from `crcm bench plan`'s per-goal lines.

Each ``*.goals.jsonl`` (one line per finished goal, written as it finishes, so an arm cut short still counts)
is one arm, named by its folder and file. Per arm: goals finished, success (any step / held at the end), final
block error, planning ms per replan (median over every replan). For every two arms that ran some of the same
goals (same episode and start), on those goals: success held at the end by each, the goals only one of them
held, and the exact two-sided sign test on those (McNemar's exact test): how likely a split this uneven is if
the arms were equally good; where both arms' lines carry them, also each arm's mean block position error
removed and final block angle error (degrees) on those goals. Prints a markdown table, then one JSON line.

    python scripts/plan_goal_pairs.py OUT/plan_*/*.goals.jsonl
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

FIELDS = ("episode", "start", "success_any", "success_end", "block_pos_error", "replan_ms")
ON_COMMON = ("error_removed", "block_angle_error")  # compared on common goals where both arms' lines have them


def read_arm(path: Path) -> list[dict[str, Any]]:
    """One arm's per-goal lines; a missing field or a line that is not JSON is a one-line error."""
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{i} is not a JSON line ({exc.msg})") from None
        missing = [f for f in FIELDS if f not in row]
        if missing:
            raise ValueError(f"{path}:{i} lacks {', '.join(missing)}: expected `crcm bench plan` per-goal "
                             "lines")
        rows.append(row)
    return rows


def sign_test(a: int, b: int) -> float:
    """Exact two-sided sign test: the chance of a split at least this uneven among a + b discordant goals."""
    n = a + b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(a, b) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def arm_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(rows)
    replans = [float(ms) for r in rows for ms in r["replan_ms"]]
    return {
        "goals": n,
        "success_any": round(sum(r["success_any"] for r in rows) / n, 4) if n else None,
        "success_end": round(sum(r["success_end"] for r in rows) / n, 4) if n else None,
        "block_pos_error_mean": round(sum(r["block_pos_error"] for r in rows) / n, 2) if n else None,
        "replan_ms_median": statistics.median(replans) if replans else None,
    }


def compare(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The two arms on the goals both finished, or None when they share none."""
    key = lambda r: (r["episode"], r["start"])  # noqa: E731
    b_by = {key(r): r for r in b}
    common = [(r, b_by[key(r)]) for r in a if key(r) in b_by]
    if not common:
        return None
    only_a = sum(x["success_end"] and not y["success_end"] for x, y in common)
    only_b = sum(y["success_end"] and not x["success_end"] for x, y in common)
    result = {"goals": len(common), "held_a": sum(x["success_end"] for x, _ in common),
              "held_b": sum(y["success_end"] for _, y in common), "only_a": only_a, "only_b": only_b,
              "sign_test_p": round(sign_test(only_a, only_b), 4)}
    if all(f in r for pair in common for r in pair for f in ON_COMMON):
        for side, i in (("a", 0), ("b", 1)):
            result[f"error_removed_{side}"] = round(statistics.mean(p[i]["error_removed"] for p in common), 3)
            result[f"block_angle_deg_{side}"] = round(
                math.degrees(statistics.mean(p[i]["block_angle_error"] for p in common)), 1)
    return result


def arm_name(path: Path) -> str:
    return f"{path.parent.name}/{path.name.removesuffix('.goals.jsonl')}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("goals", nargs="+", type=Path,
                    help="per-goal files (NAME.goals.jsonl) of `crcm bench plan`")
    args = ap.parse_args(argv)
    try:
        for p in args.goals:
            if not p.is_file():
                raise ValueError(f"{p}: no such file; expected a `crcm bench plan` NAME.goals.jsonl")
        arms = {arm_name(p): read_arm(p) for p in args.goals}
    except ValueError as exc:
        print(f"plan_goal_pairs: {exc}", file=sys.stderr)
        return 2
    summaries = {name: arm_summary(rows) for name, rows in arms.items()}
    pairs = {}
    for (na, ra), (nb, rb) in itertools.combinations(arms.items(), 2):
        c = compare(ra, rb)
        if c is not None:
            pairs[f"{na} vs {nb}"] = c
    print("| arm | goals | success (any / end) | final block error | ms per replan (median) |")
    print("|---|---|---|---|---|")
    for name, s in summaries.items():
        print(f"| {name} | {s['goals']} | {s['success_any']} / {s['success_end']} | "
              f"{s['block_pos_error_mean']} | {s['replan_ms_median']} |")
    for name, c in pairs.items():
        extra = (f", error removed {c['error_removed_a']} / {c['error_removed_b']}, block angle error "
                 f"{c['block_angle_deg_a']} / {c['block_angle_deg_b']} deg" if "error_removed_a" in c else "")
        print(f"{name}: {c['goals']} common goals, held {c['held_a']} / {c['held_b']}, only one held "
              f"{c['only_a']} / {c['only_b']}, sign test p = {c['sign_test_p']}{extra}")
    print(json.dumps({"arms": summaries, "pairs": pairs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
