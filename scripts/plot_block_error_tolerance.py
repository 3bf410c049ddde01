"""Plot closed-loop success against the pushed block's held-out error: how much block error the planner takes.

Reads ``scripts/state_model_planning.py`` runs (their ``results.json``): each ``oracle_<kind><size>`` arm
(``--block-error``) is a point at the error its rule gives held-out pushes (the moved block's mean error
over frames 1..5, as ``block_motion_error.py`` scores a pixel model) and its success held at the end; an
``oracle_state`` arm is the exact simulator (no error); a ``state_mlp`` arm is the learnt state model at its
own held-out error. Models whose figures are recorded in docs/results.md (the pixel models, scored by
``block_motion_error.py`` through a probe) are given as ``LABEL=POSITION/ANGLE/SUCCESS``. Two panels: success
against the position error and against the angle error, the success target drawn across. Runs replanned at
another interval than ``--replan-every`` (the benchmark's 10 env steps; read from each run's ``planner``) are
drawn as a series of their own (dashed, hollow), so that the two intervals' curves can be compared.
``--map-out`` writes a second figure, the error plane: each run at the usual interval (and each recorded model)
at its (position, angle) error, coloured and labelled by its success, the colour turning at the target, so
that which corner of the plane holds the target can be read at a glance (the two panels above each fold the
other error away). With ``--fit-kind KIND`` a logistic surface, success = σ(b0 + b1·position + b2·angle), is
fitted to the held counts of that rule's runs on the map (and the exact simulator's) and its target contour is
drawn on the plane; the JSON gives its coefficients and what it predicts at each recorded model's errors.

    python scripts/plot_block_error_tolerance.py outputs/s35/exact/results.json outputs/s35/fixed1/results.json \\
        "2-step students (s33)=25.6/25.5/0.74" --out docs/img/plan/block_error_tolerance.png
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

KIND_STYLE = {"damp": ("o", "tab:blue", "damped (moves the block part way)"),
              "noise": ("s", "tab:orange", "noise (fresh for each candidate)"),
              "fixed": ("^", "tab:red", "fixed function of the actions (exploitable)")}
# the points that are not a rule: marker, colour, legend (both figures)
OTHER_STYLE = {"exact": ("*", "black", "simulator (exact)"), "state": ("D", "tab:green", "learnt state model"),
               "recorded": ("P", "tab:purple", "models whose figures are recorded")}


def points_of_run(path: str) -> list[dict[str, Any]]:
    """Every arm of one state_model_planning.py results.json as a point: label, kind, position, angle,
    success held at the end, goals, and the run's replanning interval (None where the run does not say)."""
    try:
        run = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SystemExit(f"plot_block_error_tolerance: {path}: a state_model_planning.py results.json expected "
                         f"({exc})") from None
    if not isinstance(run, dict) or not isinstance(run.get("arms"), dict) or not run["arms"]:
        raise SystemExit(f"plot_block_error_tolerance: {path}: no 'arms' object (a state_model_planning.py "
                         "results.json expected)")
    planner = run.get("planner", {})
    replan = planner.get("replan_every") if isinstance(planner, dict) else planner
    if replan is not None and (not isinstance(replan, int) or isinstance(replan, bool) or replan < 1):
        raise SystemExit(f"plot_block_error_tolerance: {path}: planner.replan_every={replan!r}: a whole number "
                         "of env steps ≥ 1 expected (or no 'planner')")
    points = []
    for name, arm in run["arms"].items():
        size = ""  # a rule's size, written beside its marker
        if "held_out_block_error" in arm:
            moved = arm["held_out_block_error"]["this_rule"]["moved"]
            e = arm["injected_block_error"]
            uniform = e.get("angle_size", e["size"]) == e["size"]
            size = f"{e['size']:g}" + ("" if uniform else f", angle {e['angle_size']:g}")
            label, kind = f"{e['kind']} {size}", e["kind"]
        elif name == "oracle_state":
            moved, label, kind = {"position": 0.0, "angle_deg": 0.0}, "simulator (exact)", "exact"
        elif name == "state_mlp" and "state_mlp" in run:
            moved, label, kind = run["state_mlp"]["block_mlp"]["moved"], "learnt state model", "state"
        else:
            raise SystemExit(f"plot_block_error_tolerance: {path}: arm {name!r} has no held-out block error")
        points.append({"label": label, "kind": kind, "size": size,
                       "uniform": kind not in KIND_STYLE or uniform,
                       "position": float(moved["position"]),
                       "angle": float(moved["angle_deg"]), "success": float(arm["success_end"]),
                       "goals": int(arm["goals"]), "replan": replan})
    return points


def parse_recorded(item: str) -> dict[str, Any]:
    """LABEL=POSITION/ANGLE/SUCCESS → a point."""
    label, sep, value = item.rpartition("=")
    parts = value.split("/")
    try:
        position, angle, success = (float(v) for v in parts)
    except ValueError:
        raise SystemExit(f"plot_block_error_tolerance: {item!r}: FILE or LABEL=POSITION/ANGLE/SUCCESS expected") \
            from None
    if not sep or not label or not 0 <= success <= 1:
        raise SystemExit(f"plot_block_error_tolerance: {item!r}: LABEL=POSITION/ANGLE/SUCCESS with a success in "
                         "[0, 1] expected")
    return {"label": label, "kind": "recorded", "uniform": True, "position": position, "angle": angle,
            "success": success, "replan": None}


def series_styles(points: list[dict[str, Any]]) -> list[tuple[int | None, str]]:
    """Each series and its line style: the usual interval (None) solid, then each other interval, shortest
    first, dashed, dotted, dash-dotted (cycling)."""
    others = sorted({p["series"] for p in points if p["series"] is not None})
    return [(None, "-")] + [(every, ("--", ":", "-.")[i % 3]) for i, every in enumerate(others)]


def fit_logistic(points: list[dict[str, Any]]) -> tuple[list[float], float]:
    """Maximum-likelihood b0, b1, b2 of success = σ(b0 + b1·position + b2·angle) (position in env units, angle in
    degrees) over the points' held counts (success × goals of goals), by Newton's method, and the fit's deviance
    (about the runs' count less 3 where the surface fits them to within binomial noise). Why: the runs sit at
    scattered errors and each moves by ±0.06-0.12 between seeds; one smooth surface pools them into a contour."""
    import numpy as np

    if len(points) < 3:
        raise SystemExit(f"plot_block_error_tolerance: --fit-kind: {len(points)} runs to fit, at least 3 expected")
    # features scaled to tens so that the Newton steps are well conditioned
    x = np.array([[1.0, p["position"] / 10, p["angle"] / 10] for p in points])
    n = np.array([float(p["goals"]) for p in points])
    k = np.array([p["success"] * p["goals"] for p in points])
    beta = np.zeros(3)
    with np.errstate(over="ignore"):
        for _ in range(100):
            prob = 1 / (1 + np.exp(-(x @ beta)))
            hessian = (x * (n * prob * (1 - prob))[:, None]).T @ x + 1e-9 * np.eye(3)
            step = np.linalg.solve(hessian, x.T @ (k - n * prob))
            beta += step
            if np.abs(step).max() < 1e-10:
                break
    if not np.isfinite(beta).all() or np.abs(beta).max() > 1e3:
        raise SystemExit(f"plot_block_error_tolerance: --fit-kind: the logistic fit of {len(points)} runs did not "
                         "converge (do they all hold every goal, or none?)")
    prob = np.clip(1 / (1 + np.exp(-(x @ beta))), 1e-12, 1 - 1e-12)
    seen = np.clip(k / n, 1e-12, 1 - 1e-12)
    deviance = 2 * np.sum(k * np.log(seen / prob) + (n - k) * np.log((1 - seen) / (1 - prob)))
    return [float(beta[0]), float(beta[1] / 10), float(beta[2] / 10)], float(deviance)


def fitted_success(coef: list[float], position: float, angle: float) -> float:
    """The fitted surface at one (position, angle)."""
    return 1 / (1 + math.exp(-(coef[0] + coef[1] * position + coef[2] * angle)))


def draw_map(plt: Any, points: list[dict[str, Any]], target: float, replan_every: int, out: str,
             fit_kind: str | None = None) -> dict[str, Any] | None:
    """The error plane: every point not set apart (the runs at ``replan_every``, the recorded models) at its
    (position, angle) error, filled with its success on a red-to-green scale that turns at ``target``, its
    success written beside it. Points set apart (another interval) are left off and marked so in the JSON. With
    ``fit_kind``, the logistic fit (``fit_logistic``) of that rule's runs and the exact simulator's, its target
    contour drawn; returns the fit (None without one)."""
    from matplotlib.colors import TwoSlopeNorm

    shown = [p for p in points if not p["apart"]]
    for p in points:
        p["on_map"] = not p["apart"]
    lowest = min((p["success"] for p in shown), default=0.0)
    norm = TwoSlopeNorm(vcenter=target, vmin=min(lowest, target - 0.01), vmax=max(1.0, target + 0.01))
    fig, ax = plt.subplots(figsize=(7.5, 6))
    scatter = None
    for kind, (marker, _, name) in (KIND_STYLE | OTHER_STYLE).items():
        mine = [p for p in shown if p["kind"] == kind]
        if mine:
            scatter = ax.scatter([p["position"] for p in mine], [p["angle"] for p in mine], c=[p["success"] for p in mine],
                                 cmap="RdYlGn", norm=norm, marker=marker, s=140 if kind in ("exact", "recorded") else 90,
                                 edgecolors="black", linewidths=0.6, zorder=3,
                                 label=name)
    spots: dict[tuple[float, float, bool], list[dict[str, Any]]] = {}  # runs at one spot (seeds of a rule): one label
    for p in shown:
        spots.setdefault((round(p["position"]), round(p["angle"]), p["kind"] == "recorded"), []).append(p)
    for (_, _, recorded), here in spots.items():
        for p in here if recorded else here[:1]:
            text = (f"{p['success']:.2f}  {p['label']}" if recorded
                    else " / ".join(f"{q['success']:.2f}" for q in here))
            ax.annotate(text, (p["position"], p["angle"]), textcoords="offset points", xytext=(7, 5), fontsize=8)
    if scatter is not None:
        fig.colorbar(scatter, ax=ax, label=f"success held at the end (colour turns at the target, {target:g})")
    widest = max((p["position"] for p in shown), default=1.0)  # room for the labels right of the points
    tallest = max((p["angle"] for p in shown), default=1.0)
    fit = None
    if fit_kind:
        import numpy as np

        fitted = [p for p in shown if p["kind"] in (fit_kind, "exact")]
        coef, deviance = fit_logistic(fitted)
        fit = {"kind": fit_kind, "runs": len(fitted), "goals": sum(p["goals"] for p in fitted),
               "deviance": round(deviance, 2), "degrees_of_freedom": len(fitted) - 3,
               "coef": {"intercept": coef[0], "per_unit": coef[1], "per_degree": coef[2]},
               "predicted": {p["label"]: round(fitted_success(coef, p["position"], p["angle"]), 3)
                             for p in shown if p["kind"] == "recorded"}}
        if coef[2] != 0:  # the target contour: b0 + b1·x + b2·y = logit(target)
            xs = np.linspace(0, 1.35 * widest + 0.5, 100)
            ys = (math.log(target / (1 - target)) - coef[0] - coef[1] * xs) / coef[2]
            ax.plot(xs, ys, color="grey", linestyle="--", linewidth=1.2,
                    label=f"{target:g} by a logistic fit to the {fit_kind} runs")
    ax.set_xlabel("moved block's held-out position error, mean of frames 1..5 (env units)")
    ax.set_ylabel("moved block's held-out angle error (degrees)")
    ax.set_xlim(-0.03 * widest - 0.5, 1.35 * widest + 0.5)
    ax.set_ylim(-0.04 * tallest - 0.5, 1.1 * tallest + 0.5)
    ax.grid(alpha=0.3)
    legend = ax.legend(fontsize=7, loc="upper left")
    for handle in legend.legend_handles:  # the legend tells the marker; the colour is each point's success
        if hasattr(handle, "set_facecolor"):  # the markers (the contour's line keeps its colour)
            handle.set_facecolor("lightgrey")
    ax.set_title(f"The error plane: rules replanned every {replan_every} env steps and recorded models", fontsize=10)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return fit


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("items", nargs="+", help="a results.json, or LABEL=POSITION/ANGLE/SUCCESS")
    parser.add_argument("--out", required=True, help="the PNG to write")
    parser.add_argument("--target", type=float, default=0.90, help="the success target (issue 12: 0.90)")
    parser.add_argument("--replan-every", type=int, default=10,
                        help="the runs' usual replanning interval (env steps); runs at another one are a series apart")
    parser.add_argument("--map-out", help="also write the error plane (position against angle, coloured by "
                        "success) of the runs at --replan-every and the recorded models to this PNG")
    parser.add_argument("--fit-kind", choices=sorted(KIND_STYLE),
                        help="with --map-out: fit success to this rule's runs (and the exact simulator's) as a "
                        "logistic surface in (position, angle) and draw its --target contour")
    parser.add_argument("--title", default="PushT, 50 held-out goals: success held against the pushed block's "
                        "held-out error")
    args = parser.parse_args(argv)
    points = []
    for item in args.items:
        points += points_of_run(item) if Path(item).is_file() else [parse_recorded(item)]
    if not 0 < args.target < 1:
        raise SystemExit(f"plot_block_error_tolerance: --target {args.target}: a success strictly between 0 and 1 "
                         "expected")
    if args.fit_kind and not args.map_out:
        raise SystemExit("plot_block_error_tolerance: --fit-kind draws on the error plane: give --map-out too")
    if args.replan_every < 1:
        raise SystemExit(f"plot_block_error_tolerance: --replan-every {args.replan_every}: a whole number of env "
                         "steps ≥ 1 expected")
    for p in points:  # a run replanned at another interval: a series of its own, its interval in its label
        p["apart"] = p["replan"] is not None and p["replan"] != args.replan_every
        p["series"] = p["replan"] if p["apart"] else None
        if p["apart"]:
            p["label"] += f", replanned every {p['replan']}"

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for ax, key, unit in ((axes[0], "position", "env units"), (axes[1], "angle", "degrees")):
        for kind, (marker, color, legend) in KIND_STYLE.items():
            for series, line in series_styles(points):  # the usual interval solid; each other one dashed, hollow
                mine = sorted((p for p in points if p["kind"] == kind and p["uniform"] and p["series"] == series),
                              key=lambda p: p[key])
                suffix = f", replanned every {series}" if series is not None else ""
                if mine:  # one size for position and angle: a line through the sizes
                    ax.plot([p[key] for p in mine], [p["success"] for p in mine], marker=marker, color=color,
                            linestyle=line, markerfacecolor=color if series is None else "none",
                            label=legend + suffix)
                lone = [p for p in points if p["kind"] == kind and not p["uniform"] and p["series"] == series]
                if lone:  # the angle sized apart (e.g. as large as a pixel model's): hollow markers
                    ax.scatter([p[key] for p in lone], [p["success"] for p in lone], marker=marker,
                               s=50 if series is None else 90, facecolors="none", edgecolors=color,
                               linestyle=line, label=f"{kind}, angle error sized apart{suffix}")
        recorded = 0
        for p in points:
            if p["kind"] in KIND_STYLE:
                ax.annotate(p["size"], (p[key], p["success"]), textcoords="offset points",
                            xytext=(4, 4), fontsize=7)
                continue
            style = OTHER_STYLE[p["kind"]]
            legend = style[2] if p["kind"] == "recorded" else p["label"]
            ax.scatter([p[key]], [p["success"]], marker=style[0], s=70, zorder=3, label=legend,
                       facecolors="none" if p["apart"] else style[1], edgecolors=style[1])
            # the exact point sits at the top left (another interval's just below it)
            offset = (6, 5) if p["kind"] == "exact" and not p["apart"] else (6, -11)
            if p["kind"] == "recorded":  # recorded models often sit close together: their labels alternate
                offset = (6, (-12, 6, -24, 18)[recorded % 4])
                recorded += 1
            ax.annotate(p["label"], (p[key], p["success"]), textcoords="offset points", xytext=offset,
                        fontsize=7, color=style[1])
        ax.axhline(args.target, color="grey", linestyle="--", linewidth=1)
        ax.set_xlabel(f"moved block's held-out error, mean of frames 1..5 ({unit})")
        ax.set_xlim(left=0)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("success held at the end")
    axes[0].set_ylim(0, 1.02)
    handles, labels = axes[0].get_legend_handles_labels()
    seen = dict(zip(labels, handles))
    axes[0].legend(seen.values(), seen.keys(), fontsize=7, loc="lower left")
    fig.suptitle(args.title, fontsize=10)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    fit = draw_map(plt, points, args.target, args.replan_every, args.map_out, args.fit_kind) if args.map_out else None
    print(json.dumps({"out": args.out, "map_out": args.map_out, "fit": fit, "points": points}))


if __name__ == "__main__":
    main()
