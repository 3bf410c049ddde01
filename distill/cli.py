"""Training-side commands (``crcm train teacher``, ``crcm distill``, ``crcm quickstart``).

``crcm_robotics.cli`` names these by string and imports them only when run, so
the runtime package never depends on ``distill/``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


def _summary(result: Any, **extra: Any) -> dict[str, Any]:
    """The run's one JSON line: last metrics, and with validation the selected weights' update and figures."""
    out = {"checkpoint": str(result.out), **extra, "steps": result.steps, "seconds": round(result.seconds, 1),
           **{k: round(v, 5) for k, v in result.last_metrics.items()}}
    if result.stop_reason:
        out["stopped_early"] = result.stop_reason
    if result.schedule_warning:
        out["schedule_warning"] = result.schedule_warning
    if result.selected is not None:
        out["selected"] = result.selected
        margin = result.selected["psnr_vs_copy_last"]
        if margin < 0:
            out["warning"] = (f"the selected weights (update {result.selected['step']}) are {-margin:.2f} dB below "
                              f"copying the last frame on held-out windows")
    return out


def _report(summary: dict[str, Any]) -> None:
    if int(os.environ.get("RANK", "0")) == 0:  # one line per run, not per data-parallel rank
        print(json.dumps(summary))


def run_train_teacher(cfg) -> int:
    from distill.teacher import train_teacher

    _report(_summary(train_teacher(cfg)))
    return 0


def run_distill(cfg) -> int:
    from distill.run import run_distill

    _report(_summary(run_distill(cfg), method=cfg.method))
    return 0


def run_quickstart(cfg) -> int:
    """The README's main job on the embedded default: PushT store → teacher → eval → Causal-rCM student → eval."""
    quickstart(cfg)
    return 0


def quickstart(cfg) -> dict[str, Any]:
    """:func:`run_quickstart`'s work; returns each stage's figures (``eval_*``: as :func:`_eval_digest`)."""
    from crcm_robotics.conf import compose_config
    from crcm_robotics.data.pusht import generate_pusht
    from crcm_robotics.data.schema import validate_store
    from crcm_robotics.eval.evaluate import evaluate
    from distill.run import run_distill
    from distill.teacher import train_teacher

    out = Path(cfg.out)
    store, teacher, student = out / "pusht.zarr", out / "teacher", out / "student"
    t0 = time.perf_counter()
    report: dict[str, Any] = {}

    def stage(name: str, value: Any) -> None:
        report[name] = value
        print(json.dumps({"stage": name, "elapsed_s": round(time.perf_counter() - t0, 1), name: value}), flush=True)

    stage("data", {"generation": generate_pusht(store, cfg.episodes, size=cfg.size, seed=cfg.seed,
                                                workers=cfg.workers, min_steps=cfg.min_steps,
                                                max_steps=cfg.max_steps, overwrite=True, progress=cfg.progress),
                   "validate": validate_store(store).as_json()})
    common = [f"train.device={cfg.device}", f"train.progress={str(cfg.progress).lower()}", f"train.seed={cfg.seed}"]
    t_cfg = compose_config("config", ["preset=tiny", f"data.path={store}", f"train.out={teacher}",
                                      f"train.steps={cfg.teacher_steps}", *common, *cfg.teacher_overrides],
                           "crcm_robotics.conf.teacher")
    stage("teacher", _summary(train_teacher(t_cfg)))
    eval_common = [f"horizon={cfg.horizon}", "context=2", f"device={cfg.device}", "windows_per_episode=2"]
    r = evaluate(compose_config("eval", [f"ckpt={teacher}", *eval_common, f"out={out / 'eval_teacher'}"]))
    stage("eval_teacher", _eval_digest(r))
    d_cfg = compose_config("config", ["preset=tiny", f"method={cfg.method}", f"teacher={teacher}",
                                      f"train.out={student}", f"train.steps={cfg.distill_steps}", *common,
                                      *cfg.distill_overrides],
                           "crcm_robotics.conf.distill")
    stage("student", _summary(run_distill(d_cfg), method=cfg.method))
    for steps in cfg.student_eval_steps:
        # The tiny student samples well only from near-pure noise (conf/distill/preset/tiny.yaml says why)
        mids = [f"mid_times=[{','.join(map(str, cfg.student_mid_times))}]"] if (
            steps == 2 and cfg.student_mid_times is not None) else []
        r = evaluate(compose_config("eval", [f"ckpt={student}", f"steps={steps}", *mids, *eval_common,
                                             f"out={out / f'eval_student_{steps}step'}"]))
        stage(f"eval_student_{steps}step", _eval_digest(r))
    seconds = round(time.perf_counter() - t0, 1)
    print(json.dumps({"quickstart": "done", "out": str(out), "seconds": seconds}))
    print(summary_table(report, cfg.horizon, seconds), flush=True)
    return report


def summary_table(report: dict[str, Any], horizon: int, seconds: float) -> str:
    """The quick start's last words: each model against copy-last on the same held-out windows."""
    evals = {name: r for name, r in report.items() if name.startswith("eval_")}
    if not evals:
        return "quickstart: no evaluations ran"
    base = next(iter(evals.values()))
    rows = [("stage", "sampler", "PSNR dB", "vs copy-last", "pusher px", "ms/frame", "report"),
            ("copy last frame", "-", f"{base['baseline_psnr_mean']:.2f}", "+0.00",
             _fmt(base.get("baseline_agent_err_mean")), "-", "-")]
    for name, r in evals.items():
        s = r["sampler"]
        sampler = f"{s.get('solver') or s['kind']} {s['steps']}" if s["kind"] == "ode" else f"{s['steps']}-step"
        if s.get("mid_times"):
            sampler += " @" + ",".join(f"{t:g}" for t in s["mid_times"])
        rows.append((name.removeprefix("eval_").replace("_", " "), sampler, f"{r['psnr_mean']:.2f}",
                     f"{r['psnr_mean'] - r['baseline_psnr_mean']:+.2f}", _fmt(r.get("agent_err_mean")),
                     _fmt(r.get("ms_per_frame_batch1", r.get("ms_per_frame"))), str(r.get("report", "-"))))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    title = (f"quickstart summary: {horizon} predicted frames after 2 real ones on held-out episodes "
             f"(mean over the horizon; ms/frame at batch 1), {seconds:.0f} s in all")
    return "\n".join([title, *lines])


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _eval_digest(r: dict[str, Any]) -> dict[str, Any]:
    base = r["baseline_copy_last"]
    keys = ("psnr_mean", "ssim_mean", "agent_err_mean", "ms_per_frame", "ms_per_frame_batch1", "report")
    return {**{k: r[k] for k in keys if k in r}, "sampler": r["sampler"],
            "baseline_psnr_mean": base["psnr_mean"], "baseline_agent_err_mean": base.get("agent_err_mean")}
