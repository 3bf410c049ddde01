"""One JSON line of the arm chain's figures (scripts/gpu/arm_chain.sh): codec, teacher and student against
copy-last, end-effector error read by the state probe, runtime, closed-loop planning per arm.

    python scripts/arm_summary.py WORK      # WORK holds eval_*.json, bench.json, plan_*.json, *_log.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def last_json(path: Path) -> dict[str, Any] | None:
    """The last line of ``path`` that is a JSON object (the commands print theirs last), or None."""
    if not path.exists():
        return None
    for line in reversed(path.read_text(errors="replace").splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return None


def model_figures(result: dict[str, Any]) -> dict[str, Any]:
    """PSNR per step against copy-last; the hand's position error at the last step, model and copy-last."""
    base = result["baseline_copy_last"]
    psnr, copy = result["psnr"], base["psnr"]
    out = {
        "update": result.get("update"),
        "psnr_mean": result["psnr_mean"], "copy_last_psnr_mean": base["psnr_mean"],
        "steps_above_copy_last": sum(p > c for p, c in zip(psnr, copy)), "horizon": len(psnr),
        "psnr_first_last": [psnr[0], psnr[-1]], "copy_last_first_last": [copy[0], copy[-1]],
        "rollouts": result.get("rollouts"),
    }
    if "probe_err" in result and "hand_pos" in result["probe_err"]:
        hand, hand_copy = result["probe_err"]["hand_pos"], base["probe_err"]["hand_pos"]
        out |= {"hand_err_last_m": hand[-1], "copy_last_hand_err_last_m": hand_copy[-1],
                "hand_err_ratio_last": round(hand[-1] / max(hand_copy[-1], 1e-9), 3),
                "probe_floor_hand_m": result.get("probe_floor", {}).get("hand_pos")}
    return out


def partial_arms(plan_dir: Path) -> dict[str, Any]:
    """Per arm, the summary of the goals a cut planning run finished (``ARM.goals.jsonl``), marked partial."""
    from crcm_robotics.eval.plan_bench import EpisodeResult, summarize

    out: dict[str, Any] = {}
    for path in sorted(plan_dir.glob("*.goals.jsonl")) if plan_dir.is_dir() else []:
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        results = [EpisodeResult(**json.loads(line)) for line in lines]
        if results:
            fig = summarize(results)
            keep = ("goals", "success_any", "success_end", "block_pos_error", "error_removed",
                    "replan_ms_median")
            out[path.name.removesuffix(".goals.jsonl")] = {k: fig.get(k) for k in keep} | {"partial": True}
    return out


def summary(work: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"work": str(work)}
    codec = last_json(work / "codec_log.jsonl")
    codec_meta = work / "codec" / "meta.json"
    if codec_meta.exists():
        meta = json.loads(codec_meta.read_text())
        out["codec"] = {k: meta.get("metrics", {}).get(k) for k in ("val_psnr", "train_psnr", "val_frames")}
    elif codec:
        out["codec_last_log"] = codec
    for name in ("teacher", "student", "student_s1"):
        result = last_json(work / f"eval_{name}.json")
        if result:
            out[name] = model_figures(result)
    bench = last_json(work / "bench.json") or last_json(work / "bench.log")
    if bench:
        cg = bench.get("backends", {}).get("cuda_graph", {})
        teacher = bench.get("teacher_vs_student", {}).get("teacher", {})
        out["runtime"] = {"stream_ms_per_frame": cg.get("stream_ms_per_frame"),
                          "stream_fps": cg.get("stream_fps"),
                          "planner_ms_64x16": cg.get("planner_ms"),
                          "planner_costs_ms_64x16": cg.get("planner_costs_ms"),
                          "teacher_stream_ms_per_frame": teacher.get("stream_ms_per_frame")}
    compiled = last_json(work / "bench_compile.json")
    if compiled:
        c = compiled.get("backends", {}).get("compile", {})
        out["runtime_compile"] = {k: c.get(k) for k in ("stream_ms_per_frame", "stream_fps", "planner_ms",
                                                        "planner_costs_ms", "setup_s")}
    loads = work / "loadtest.jsonl"
    if loads.exists():
        out["server"] = [json.loads(line) for line in loads.read_text().splitlines() if line.startswith("{")]
    plans: dict[str, Any] = {}
    for path in sorted(work.glob("plan_*.json")):
        result = last_json(path)
        arms = (result or {}).get("arms", {})
        for arm, fig in arms.items():  # plan_teacher_base.json -> "teacher_base"; plan_sim.json -> its arms
            key = arm if len(arms) > 1 else path.stem.removeprefix("plan_")
            plans[key] = {k: fig.get(k) for k in ("goals", "success_any", "success_end", "block_pos_error",
                                                  "error_removed", "replan_ms_median")}
            if isinstance(fig.get("fidelity"), dict):  # a string when skipped
                plans[key]["rank_corr_model"] = fig["fidelity"].get("rank_corr_model")
        if not arms:  # cut by the call's time: the goals it finished, from plan_NAME/ARM.goals.jsonl
            for arm, fig in partial_arms(work / path.stem).items():
                simulator_arm = arm in ("random", "oracle", "oracle_state")
                plans[arm if simulator_arm else path.stem.removeprefix("plan_")] = fig
    if plans:
        out["planning"] = plans
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_dir():
        sys.exit("usage: python scripts/arm_summary.py WORK_DIR (the arm chain's output folder)")
    print(json.dumps(summary(Path(sys.argv[1]))))
