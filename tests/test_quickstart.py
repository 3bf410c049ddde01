"""`crcm quickstart`: what a newcomer sees first must hold up against copying the last frame."""

from __future__ import annotations

import pytest

from distill.cli import summary_table


def digest(psnr: float, base: float, sampler: dict, report: str) -> dict:
    return {"psnr_mean": psnr, "baseline_psnr_mean": base, "agent_err_mean": 1.5, "baseline_agent_err_mean": 3.25,
            "ms_per_frame_batch1": 12.345, "report": report, "sampler": sampler}


def test_summary_table_puts_each_model_against_copy_last():
    report = {"teacher": {"steps": 300},
              "eval_teacher": digest(30.9, 30.4, {"kind": "ode", "steps": 4, "solver": "ddim"}, "out/eval_teacher"),
              "eval_student_2step": digest(29.1, 30.4, {"kind": "consistency", "steps": 2}, "out/eval_student_2step")}
    lines = summary_table(report, 8, 95.4).splitlines()
    assert lines[0].startswith("quickstart summary: 8 predicted frames after 2 real ones on held-out episodes")
    assert lines[0].endswith("95 s in all")
    assert lines[1].split() == ["stage", "sampler", "PSNR", "dB", "vs", "copy-last", "pusher", "px", "ms/frame",
                                "report"]
    assert lines[2].split() == ["copy", "last", "frame", "-", "30.40", "+0.00", "3.25", "-", "-"]
    assert lines[3].split() == ["teacher", "ddim", "4", "30.90", "+0.50", "1.50", "12.35", "out/eval_teacher"]
    assert lines[4].split() == ["student", "2step", "2-step", "29.10", "-1.30", "1.50", "12.35",
                                "out/eval_student_2step"]


def test_quickstart_teacher_and_two_step_student_reach_copy_last(tmp_path, capsys):
    """The quick start's own job (tiny presets, its held-out windows): neither model > 1 dB below copy-last."""
    pytest.importorskip("gym_pusht", reason="needs the [sim] extra (gym-pusht)")
    from crcm_robotics.conf import compose_config
    from distill.cli import quickstart

    cfg = compose_config("quickstart", [f"out={tmp_path / 'qs'}", "progress=false", "student_eval_steps=[2]"])
    report = quickstart(cfg)
    for stage in ("eval_teacher", "eval_student_2step"):
        r = report[stage]
        assert r["psnr_mean"] >= r["baseline_psnr_mean"] - 1.0, (stage, r)
    assert report["eval_teacher"]["sampler"] == {"kind": "ode", "steps": 2, "solver": "ddim"}
    assert report["eval_student_2step"]["sampler"]["mid_times"] == [1.56]
    last = capsys.readouterr().out.strip().splitlines()
    assert last[-5].startswith("quickstart summary") and last[-1].startswith("student 2step")
