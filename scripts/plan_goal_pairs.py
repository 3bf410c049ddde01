"""Closed-loop planning arms compared goal by goal, from `crcm bench plan`'s per-goal lines.

Each ``*.goals.jsonl`` (one line per finished goal, written as it finishes, so an arm cut short still counts)
is one arm, named by its folder and file. Per arm: goals finished, success (any step / held at the end), final
block error, planning ms per replan (median over every replan). For every two arms that ran some of the same
goals (same episode and start), on those goals: success held at the end by each, the goals only one of them
held, and the exact two-sided sign test on those (McNemar's exact test): how likely a split this uneven is if
the arms were equally good (arms whose lines give one episode and start different goal states are refused: they
were planned on stores that differ); where both arms' lines carry them, also each arm's mean block position error
removed and final block angle error (degrees) on those goals. Prints a markdown table, then one JSON line.

With ``--per-goal``, the arms pooled goal by goal instead of in pairs: how many of the arms that ran each goal
held it, how many goals every arm held, some held and none held, and why each miss missed by DINO-WM's rule
(state distance ≥ 20 units with the block itself ≥ 20 units off, the distance ≥ 20 with the block inside 20
(the pusher or the two together), the block's angle ≥ π/9; a miss can have two reasons). Which goals no run
holds says whether the misses are a few hard goals or spread thin over many (run-to-run spread).

    python scripts/plan_goal_pairs.py OUT/plan_*/*.goals.jsonl
    python scripts/plan_goal_pairs.py --per-goal OUT/plan_*/*.goals.jsonl [--plot grid.png]

With ``--split-goals EP:START,...`` (a goal set, such as the fourteen goals the strongest runs miss), each arm's
goals held among the named goals and among the rest, so a gain can be placed: on the goals the strongest runs
already hold, or on the ones they miss.

With ``--repeats``, the files are runs of one arm repeated (the same model, goals and planner settings, with
only what a rerun changes: another call, probe run or planner seed). On the goals every run finished: each run's
count held, the counts' mean and standard deviation, and the spread the goals' own coin flips predict for one
run's count (sqrt of the sum over goals of p(1 - p), p each goal's held rate over the runs, n / (n - 1)
corrected). Each run is then set against the others (leave one out: its count against the sum of the other
runs' rates, in units of their predicted spread, the variance widened by 1 + 1/k for estimating the rates from k
runs): a run further out than the goals' coin flips explain differs from its repeats by more than chance (the
fiftieth session's 35 against the fifty-second and fifty-third sessions' 23 and 26 / 26). Needs three runs or
more. With few runs the spread is itself a rough estimate (a goal the other runs all hold or all miss adds
nothing to it), so z is a guide, not a normal deviate; where the others agree on every goal it has no spread
and z is left out ("n/a").

``--plot`` (with ``--per-goal``) draws the goals (rows, hardest first) against the runs (columns): held, or
missed on the block's position, on the pusher (the block inside 20 units), or on the block's angle alone.
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

from crcm_robotics.data.pusht_sim import SUCCESS_ANGLE, SUCCESS_DISTANCE
from crcm_robotics.eval.plan_bench import parse_goal_keys

FIELDS = ("episode", "start", "success_any", "success_end", "block_pos_error", "replan_ms")
ON_COMMON = ("error_removed", "block_angle_error")  # compared on common goals where both arms' lines have them
# How far two lines' goal states may lie apart and still be one goal (env units; the lines round to 1e-4). The
# store a GPU machine builds from the same generator and seed is not bit-identical on every CPU (the forty-fourth
# session's H100 built one whose held-out episodes differ), and then one (episode, start) names another goal.
GOAL_STATE_TOLERANCE = 0.01


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
        state = row.get("goal_state", [])  # older benches' lines carry none
        if not isinstance(state, list) or not all(isinstance(x, (int, float)) for x in state):
            raise ValueError(f"{path}:{i} has goal_state {state!r}: expected a list of numbers")
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


def goal_key(row: dict[str, Any]) -> tuple[int, int]:
    """The goal a per-goal line is about: its episode and start."""
    return row["episode"], row["start"]


def check_same_goals(arms: dict[str, list[dict[str, Any]]]) -> None:
    """Refuse arms whose lines for one (episode, start) carry different goal states: they were planned on stores
    that differ, so pairing or pooling them by episode and start would set different goals side by side."""
    seen: dict[tuple[int, int], tuple[str, list[float]]] = {}
    for name, rows in arms.items():
        for r in rows:
            if "goal_state" not in r:  # older benches' lines: nothing to check
                continue
            state = r["goal_state"]  # a list of numbers (read_arm)
            first = seen.setdefault(goal_key(r), (name, state))
            if len(state) != len(first[1]) or any(abs(x - y) > GOAL_STATE_TOLERANCE for x, y in zip(first[1], state)):
                raise ValueError(
                    f"goal (episode {r['episode']}, start {r['start']}) is {first[1]} in {first[0]} but "
                    f"{state} in {name}: the arms were planned on stores that differ (a store rebuilt on "
                    "another machine); pair only arms planned on one store")


def compare(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The two arms on the goals both finished, or None when they share none."""
    b_by = {goal_key(r): r for r in b}
    common = [(r, b_by[goal_key(r)]) for r in a if goal_key(r) in b_by]
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


def split_held(rows: list[dict[str, Any]], named: set[tuple[int, int]]) -> dict[str, dict[str, int]]:
    """One arm's goals finished and held at the end among the NAMED goals and among the rest."""
    split = {}
    for part, inside in (("named", True), ("rest", False)):
        chosen = [r for r in rows if (goal_key(r) in named) == inside]
        split[part] = {"goals": len(chosen), "held": sum(bool(r["success_end"]) for r in chosen)}
    return split


def miss_reasons(row: dict[str, Any]) -> list[str]:
    """Why a goal not held at the end missed by DINO-WM's rule; lines without state_distance (older
    benches) give only the block's position and angle."""
    reasons = []
    if row["block_pos_error"] >= SUCCESS_DISTANCE:
        reasons.append("block position")
    elif row.get("state_distance", 0.0) >= SUCCESS_DISTANCE:
        reasons.append("pusher")
    if row.get("block_angle_error", 0.0) >= SUCCESS_ANGLE:
        reasons.append("block angle")
    return reasons


def per_goal(arms: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Every goal any arm ran, with how many of the arms that ran it held it at the end, sorted hardest first;
    the goals' spread over held-by-all / some / none, and the misses' reasons counted over every arm."""
    runs: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for rows in arms.values():
        for r in rows:
            runs.setdefault(goal_key(r), []).append(r)
    goals, reasons = [], {"block position": 0, "pusher": 0, "block angle": 0, "unknown": 0}
    for (episode, start), rs in runs.items():
        held = sum(bool(r["success_end"]) for r in rs)
        why: dict[str, int] = {}
        for r in rs:
            if not r["success_end"]:
                for reason in miss_reasons(r) or ["unknown"]:
                    why[reason] = why.get(reason, 0) + 1
                    reasons[reason] += 1
        goals.append({"episode": episode, "start": start, "runs": len(rs), "held": held,
                      "block_pos_error_median": round(statistics.median(r["block_pos_error"] for r in rs), 1),
                      "misses": why})
    goals.sort(key=lambda g: (g["held"] / g["runs"], g["episode"], g["start"]))
    return {"goals": len(goals), "runs": {name: len(rows) for name, rows in arms.items()},
            "held_by_every_run": sum(g["held"] == g["runs"] for g in goals),
            "held_by_some": sum(0 < g["held"] < g["runs"] for g in goals),
            "held_by_none": sum(g["held"] == 0 for g in goals),
            "mean_success_end": round(sum(g["held"] / g["runs"] for g in goals) / len(goals), 4) if goals else None,
            "miss_reasons": {k: v for k, v in reasons.items() if v}, "per_goal": goals}


def held_rates(runs: list[dict[tuple[int, int], bool]], goals: list[tuple[int, int]]) -> list[float]:
    """Each goal's held rate over ``runs`` (goal → held at the end)."""
    return [sum(run[g] for run in runs) / len(runs) for g in goals]


def coin_flip_sd(rates: list[float], runs: int) -> float:
    """The spread of one run's count that the goals' own coin flips predict: sqrt(sum p(1 - p)), each goal's
    variance n / (n - 1) corrected for being estimated from ``runs`` runs."""
    return math.sqrt(sum(p * (1 - p) for p in rates) * runs / (runs - 1))


def repeats(arms: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Runs of one arm repeated, on the goals every run finished: counts held, their mean and spread against the
    goals' coin flips, and each run's count against the other runs' (leave one out, z in their predicted
    spread, its variance widened by 1 + 1/k for their k runs' estimate; None where they agree on every goal).
    Three runs or more."""
    if len(arms) < 3:
        raise ValueError(f"--repeats sets each run against the others' goal rates: give three runs or more "
                         f"(got {len(arms)})")
    held = {name: {goal_key(r): bool(r["success_end"]) for r in rows} for name, rows in arms.items()}
    goals = sorted(set.intersection(*(set(h) for h in held.values())))
    if not goals:
        raise ValueError("--repeats: the runs share no goal that every one finished")
    counts = {name: sum(h[g] for g in goals) for name, h in held.items()}
    rates = held_rates(list(held.values()), goals)
    table: dict[str, Any] = {
        "runs": len(held), "goals": len(goals), "counts": counts,
        "count_mean": round(statistics.mean(counts.values()), 2),
        "count_sd": round(statistics.stdev(counts.values()), 2),
        "coin_flip_sd": round(coin_flip_sd(rates, len(held)), 2),
        "held_by_every_run": sum(p == 1 for p in rates), "held_by_some": sum(0 < p < 1 for p in rates),
        "held_by_none": sum(p == 0 for p in rates), "leave_one_out": {}}
    for name in held:
        others = [h for n, h in held.items() if n != name]
        other_rates = held_rates(others, goals)
        expected = sum(other_rates)
        sd = coin_flip_sd(other_rates, len(others)) * math.sqrt(1 + 1 / len(others))
        table["leave_one_out"][name] = {
            "held": counts[name], "expected": round(expected, 2), "sd": round(sd, 2),
            "z": round((counts[name] - expected) / sd, 2) if sd > 0 else None}
    return table


def print_repeats(table: dict[str, Any]) -> None:
    """The repeats' table as markdown, then the spread in one line."""
    print("| run | held | the others' rates expect | their spread | z |")
    print("|---|---|---|---|---|")
    for name, r in table["leave_one_out"].items():
        z = "n/a (the others agree on every goal)" if r["z"] is None else r["z"]
        print(f"| {name} | {r['held']} | {r['expected']} | {r['sd']} | {z} |")
    print(f"{table['runs']} runs on {table['goals']} goals: held {table['count_mean']} ± {table['count_sd']} (sd of "
          f"the counts), the goals' coin flips predict ± {table['coin_flip_sd']}; held by every run "
          f"{table['held_by_every_run']}, by some {table['held_by_some']}, by none {table['held_by_none']}")


def print_per_goal(table: dict[str, Any]) -> None:
    """The pooled table as markdown: the goals some run missed, hardest first, then the counts."""
    print("| goal (episode, start) | held | median final block error | misses by reason |")
    print("|---|---|---|---|")
    for g in table["per_goal"]:
        if g["held"] < g["runs"]:
            why = ", ".join(f"{k} {v}" for k, v in g["misses"].items())
            print(f"| {g['episode']}, {g['start']} | {g['held']} / {g['runs']} | {g['block_pos_error_median']} | "
                  f"{why} |")
    print(f"{table['goals']} goals over {len(table['runs'])} runs: held by every run {table['held_by_every_run']}, "
          f"by some {table['held_by_some']}, by none {table['held_by_none']}; mean success held "
          f"{table['mean_success_end']}; misses by reason {table['miss_reasons']}")


def plot_per_goal(arms: dict[str, list[dict[str, Any]]], table: dict[str, Any], path: Path) -> None:
    """The goal × run grid of ``--plot``: a cell per goal a run finished, coloured by how it ended."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    # a miss is shown by its first reason (the block's position before the pusher, either before the angle);
    # "other": a line too old to say (no state distance) that missed inside both block tolerances
    outcomes = ("not run", "held", "block position", "block angle", "pusher", "other")
    colours = ("white", "#4c9a2a", "#c0392b", "#e69f00", "#8e44ad", "#9e9e9e")
    goals = [(g["episode"], g["start"]) for g in table["per_goal"]]
    row_of = {k: i for i, k in enumerate(goals)}
    grid = [[0] * len(arms) for _ in goals]
    for j, rows in enumerate(arms.values()):
        for r in rows:
            why = miss_reasons(r)
            grid[row_of[goal_key(r)]][j] = (
                1 if r["success_end"] else outcomes.index(why[0] if why else "other"))
    fig, ax = plt.subplots(figsize=(1.6 + 0.55 * len(arms), 1.2 + 0.2 * len(goals)))
    ax.imshow(grid, cmap=ListedColormap(colours), vmin=0, vmax=len(colours) - 1, aspect="auto",
              interpolation="nearest")
    ax.set_yticks(range(len(goals)), [f"{e}, {s}  ({g['held']}/{g['runs']})"
                                      for (e, s), g in zip(goals, table["per_goal"])], fontsize=6)
    ax.set_xticks(range(len(arms)), list(arms), rotation=60, ha="right", fontsize=6)
    ax.set_ylabel("goal (episode, start)  (held / runs)", fontsize=7)
    ax.legend(handles=[Patch(color=c, label=o) for o, c in zip(outcomes[1:], colours[1:])], fontsize=6,
              loc="upper left", bbox_to_anchor=(1.01, 1.0), title="at the budget's end", title_fontsize=6)
    ax.set_title(f"{table['goals']} goals: held by every run {table['held_by_every_run']}, some "
                 f"{table['held_by_some']}, none {table['held_by_none']}", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)


def arm_names(paths: list[Path]) -> list[str]:
    """Each file's arm name: its folder and file stem, with as many folders above as make the names distinct
    (two sessions' plan_teacher_a/teacher), so that no arm silently replaces another."""
    if len(set(map(Path.resolve, paths))) < len(paths):
        raise ValueError("a per-goal file is given twice; each arm counts once")
    depth = 1
    while True:
        names = ["/".join([*p.parent.parts[-depth:], p.name.removesuffix(".goals.jsonl")]) for p in paths]
        if len(set(names)) == len(names) or depth >= max(len(p.parent.parts) for p in paths):
            return names
        depth += 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("goals", nargs="+",
                    help="per-goal files (NAME.goals.jsonl) of `crcm bench plan`, each as PATH or LABEL=PATH "
                         "(LABEL names the arm instead of its folder and file)")
    ap.add_argument("--per-goal", action="store_true",
                    help="pool the arms goal by goal (held by every run / some / none, misses by reason) "
                         "instead of comparing them in pairs")
    ap.add_argument("--plot", type=Path, help="with --per-goal: a PNG of the goal × run grid")
    ap.add_argument("--split-goals", metavar="EP:START,...",
                    help="each arm's goals held among these goals and among the rest (pairs mode)")
    ap.add_argument("--repeats", action="store_true",
                    help="the files are runs of one arm repeated: their counts' spread against the goals' coin "
                         "flips, and each run against the others (three runs or more)")
    args = ap.parse_args(argv)
    if args.repeats and (args.per_goal or args.split_goals):
        ap.error("--repeats reads the runs as one arm's repeats; leave out --per-goal and --split-goals")
    if args.plot and not args.per_goal:
        ap.error("--plot draws the --per-goal grid; give --per-goal too")
    if args.split_goals and args.per_goal:
        ap.error("--split-goals splits the pairs' table; leave out --per-goal")
    labelled = ["=" in g and not Path(g).is_file() for g in args.goals]  # a file whose name has "=" is a path
    labels = [g.split("=", 1)[0] if lab else None for g, lab in zip(args.goals, labelled)]
    paths = [Path(g.split("=", 1)[1] if lab else g) for g, lab in zip(args.goals, labelled)]
    try:
        for p in paths:
            if not p.is_file():
                raise ValueError(f"{p}: no such file; expected a `crcm bench plan` NAME.goals.jsonl")
        names = [label or name for label, name in zip(labels, arm_names(paths))]
        if len(set(names)) < len(names):
            raise ValueError(f"two arms share a label ({', '.join(sorted({n for n in names if names.count(n) > 1}))})")
        arms = {name: read_arm(p) for name, p in zip(names, paths)}
        check_same_goals(arms)
        named = parse_goal_keys(args.split_goals.split(","), "--split-goals") if args.split_goals else None
        given = {goal_key(r) for rows in arms.values() for r in rows}
        if named and not named <= given:
            raise ValueError(f"--split-goals {', '.join(f'{e}:{s}' for e, s in sorted(named - given))}: not among "
                             f"the {len(given)} goals given")
        table = repeats(arms) if args.repeats else None
    except ValueError as exc:  # ConfigError among them
        print(f"plan_goal_pairs: {exc}", file=sys.stderr)
        return 2
    if table is not None:
        print_repeats(table)
        print(json.dumps(table))
        return 0
    if args.per_goal:
        table = per_goal(arms)
        print_per_goal(table)
        if args.plot:
            plot_per_goal(arms, table, args.plot)
        print(json.dumps(table))
        return 0
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
    result: dict[str, Any] = {"arms": summaries, "pairs": pairs}
    if named is not None:
        result["split"] = {name: split_held(rows, named) for name, rows in arms.items()}
        for name, sp in result["split"].items():
            print(f"{name}: held {sp['named']['held']} of {sp['named']['goals']} named goals, "
                  f"{sp['rest']['held']} of the other {sp['rest']['goals']}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
