"""The distillation study's table is built from real-shaped `crcm eval` / `crcm distill` lines."""

from __future__ import annotations

import json

import pytest

from crcm_robotics.eval.study_table import main, table


def _eval_line(psnr_last: float, horizon: int, passes: int, ms: float | None = None) -> str:
    psnr = [30.0] * (horizon - 1) + [psnr_last]
    r = {"network_passes_per_frame": passes, "psnr": psnr, "psnr_mean": sum(psnr) / horizon, "ssim_mean": 0.9,
         "agent_err_px": [1.0] * (horizon - 1) + [1.0 + horizon],  # mean over the rollout: 2.0
         "baseline_copy_last": {"psnr": [29.0] * horizon, "psnr_mean": 29.0, "ssim_mean": 0.95,
                                "agent_err_px": [2.0] * horizon}}
    if ms is not None:
        r["ms_per_frame_batch1"] = ms
    return "noise before the line\n" + json.dumps(r) + "\n"


def test_table_has_one_row_per_run_with_short_and_long_horizon(tmp_path, capsys):
    (tmp_path / "eval_teacher_4ddim_h16.json").write_text(_eval_line(25.0, 16, 5, 50.0))
    (tmp_path / "eval_teacher_4ddim_h160.json").write_text(_eval_line(21.0, 160, 5))
    (tmp_path / "eval_causal_rcm_2step_h16.json").write_text(_eval_line(24.0, 16, 3, 40.0))
    (tmp_path / "distill_causal_rcm.log").write_text('log\n{"steps": 256, "seconds": 151.2}\n')
    (tmp_path / "eval_sf_dmd_2step_h16.json").write_text("")  # a run that died prints nothing: skipped
    rows = table(tmp_path).splitlines()
    assert rows[2].startswith("| teacher_4ddim | 5 |")
    assert "| 25.00 | 21.00 | 17.00 | 2.00 | 50.0 |" in rows[2]
    assert rows[3].startswith("| causal_rcm_2step | 3 |") and "| 24.00 | — | 17.00 | — |" in rows[3]
    assert rows[3].endswith("| 40.0 | 151 (256 steps) |")
    assert rows[4].startswith("| copy last frame | 0 | 29.00 |") and "| 2.00 | 2.00 | — | — |" in rows[4]
    assert len(rows) == 5
    assert main([str(tmp_path)]) == 0 and "causal_rcm_2step" in capsys.readouterr().out
    assert main([]) == 2
    # the same runs on an unseen policy's store: their own copy-last row, the first one unchanged
    unseen = json.loads(_eval_line(23.0, 16, 3).splitlines()[-1])
    unseen["baseline_copy_last"].update(psnr=[26.0] * 16, psnr_mean=26.0)
    (tmp_path / "eval_causal_rcm_2step_unseen_h16.json").write_text(json.dumps(unseen) + "\n")
    again = table(tmp_path).splitlines()
    assert again[4].startswith("| causal_rcm_2step_unseen | 3 |") and again[5] == rows[4]
    assert again[6].startswith("| copy last frame (unseen) | 0 | 26.00 | 0.950 | 26.00 | — | 2.00 |")


def test_plots_the_named_runs_against_the_horizon(tmp_path, capsys):
    (tmp_path / "eval_teacher_4ddim_h16.json").write_text(_eval_line(25.0, 16, 5))
    (tmp_path / "eval_teacher_4ddim_h160.json").write_text(_eval_line(21.0, 160, 5))
    (tmp_path / "eval_causal_rcm_2step_h16.json").write_text(_eval_line(24.0, 16, 3))
    out = tmp_path / "plots"
    assert main([str(tmp_path), "--plot", str(out), "--runs", "teacher_4ddim,causal_rcm_2step"]) == 0
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == ["psnr_vs_horizon.png", "psnr_vs_horizon_160.png", "pusher_err_vs_horizon.png",
                     "pusher_err_vs_horizon_160.png"]
    assert all(p.stat().st_size > 1000 for p in out.glob("*.png"))
    assert main([str(tmp_path), "--plot", str(out)]) == 2  # --plot without --runs
    with pytest.raises(ValueError, match="no eval results for \\['sf_dmd_2step'\\]"):
        main([str(tmp_path), "--plot", str(out), "--runs", "sf_dmd_2step"])
