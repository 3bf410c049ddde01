"""Validation inside training: held-out figures logged, the best weights kept and loaded, divergence stopped."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from crcm_robotics.conf import compose_config
from crcm_robotics.model.checkpoint import build_model, load_checkpoint, save_checkpoint

VAL = ["train.validation.episodes=2", "train.validation.windows_per_episode=2", "train.validation.horizon=4",
       "train.validation.steps=2", "train.validation.solver=ddim"]


def _teacher_cfg(store, out, *overrides: str):
    return compose_config("config", [f"data.path={store}", f"train.out={out}", "train.progress=false",
                                     "data.val_fraction=0.25", *VAL, *overrides], "crcm_robotics.conf.teacher")


def _log(out) -> list[dict]:
    return [json.loads(line) for line in out.with_name(out.name + "_log.jsonl").read_text().splitlines()]


def test_selection_keeps_the_best_and_counts_collapses():
    from distill.validation import SCORE, Selection

    sel = Selection(collapse_db=3.0, collapse_evals=2)
    assert sel.update(10, {SCORE: -1.0}) == (True, None)
    assert sel.update(20, {SCORE: 0.5}) == (True, None)
    assert sel.update(30, {SCORE: 0.2}) == (False, None)
    assert sel.update(40, {SCORE: -4.0}) == (False, None)  # one collapse is not yet a stop
    assert sel.update(50, {SCORE: 0.1}) == (False, None)  # and a recovery resets the count
    assert sel.update(60, {SCORE: float("nan")}) == (False, None)
    improved, reason = sel.update(70, {SCORE: -9.0})
    assert not improved and reason == ("validation collapsed: mean PSNR -9.00 dB against copy-last (limit -3.0 dB) "
                                       "for 2 validations in a row, at update 70")
    assert sel.summary() == {"step": 20, SCORE: 0.5}
    again = Selection(3.0, 2)
    again.load_state(json.loads(json.dumps(sel.state())))  # plain data: it travels in train_state.pt
    assert again == sel


def test_selection_by_psnr_and_pusher_prefers_a_sharp_pusher_and_resumes_only_as_it_was():
    import math

    import pytest

    from crcm_robotics.config import ConfigError
    from distill.validation import SCORE, Selection, pusher_gain_db

    blurry = {SCORE: 2.0, "agent_err_mean": 17.0, "copy_last_agent_err_mean": 20.0}
    sharp = {SCORE: 1.5, "agent_err_mean": 9.0, "copy_last_agent_err_mean": 20.0}
    assert pusher_gain_db(sharp) == pytest.approx(10 * math.log10(20 / 9))
    assert math.isnan(pusher_gain_db({SCORE: 1.0}))
    by_psnr, by_both = Selection(5.0, 3), Selection(5.0, 3, select="psnr_pusher")
    for step, fig in ((25, blurry), (50, sharp)):
        by_psnr.update(step, fig)
        by_both.update(step, fig)
    assert by_psnr.best_step == 25 and by_both.best_step == 50
    assert by_both.summary()["pusher_gain_db"] == pytest.approx(3.468, abs=1e-3)
    assert by_both.update(75, {SCORE: 9.0}) == (False, None)  # no pusher figures: never selected
    with pytest.raises(ConfigError, match="select=psnr but the run being resumed selected by psnr_pusher"):
        Selection(5.0, 3).load_state(by_both.state())


def test_worst_step_is_the_least_margin_over_copy_last_and_nan_when_a_step_is_not_finite():
    from distill.validation import WORST, worst_step

    assert worst_step([30.0, 28.0, 27.5], [29.0, 26.0, 27.0]) == {WORST: 0.5, "worst_step": 3.0}
    assert worst_step([25.0, 28.0], [26.5, 26.0]) == {WORST: -1.5, "worst_step": 1.0}
    out = worst_step([25.0, float("nan")], [26.0, 26.0])  # a diverged step: no margin, never a false pass
    assert math.isnan(out[WORST]) and math.isnan(out["worst_step"])


def test_an_unknown_select_is_a_config_error():
    import pytest

    from crcm_robotics.config import ConfigError, ValidationConfig

    with pytest.raises(ConfigError, match="select='ssim' unknown; expected one of psnr, psnr_pusher"):
        ValidationConfig(every=5, select="ssim").validate()


def test_teacher_validates_keeps_the_best_weights_and_reports_them(pusht_store_32, tmp_path, one_torch_thread):
    from crcm_robotics.eval import metrics as M
    from distill.cli import _summary
    from distill.teacher import train_teacher
    from crcm_robotics.model.tokenizer import make_codec
    from distill.validation import SCORE, WORST, build_validator

    out = tmp_path / "teacher"
    cfg = _teacher_cfg(pusht_store_32, out, "train.steps=6", "train.validation.every=2", "train.log_every=3")
    result = train_teacher(cfg)
    vals = [r for r in _log(out) if "validation" in r]
    assert [r["step"] for r in vals] == [2, 4, 6]
    # copy-last is scored once on the held-out windows: recompute it from the frames themselves
    ckpt = load_checkpoint(out, weights="last")
    validator = build_validator(cfg.train.validation, cfg.data, ckpt.meta["split"]["val"], ckpt.stats["action"],
                                ckpt.meta, ckpt.model_config, make_codec(ckpt.model_config, ckpt.path),
                                torch.device("cpu"))
    frames = torch.from_numpy(validator.windows.frames)
    copy_last = M.psnr(frames[:, 1:2].expand(-1, 4, -1, -1, -1), frames[:, 2:]).mean()
    assert len(frames) == 4 and all(r["validation"]["copy_last_psnr_mean"] == pytest.approx(float(copy_last), abs=2e-3)
                                    for r in vals)
    assert all(r["validation"]["agent_err_mean"] > 0 for r in vals)  # PushT: the pusher error is scored too
    # the least single-step margin is at most the mean margin, at a step of the 4-frame horizon
    assert all(r["validation"][WORST] <= r["validation"][SCORE] + 1e-3
               and 1 <= r["validation"]["worst_step"] <= 4 for r in vals)
    best = max(vals, key=lambda r: r["validation"][SCORE])
    assert [r["selected"] for r in vals] == [r["validation"][SCORE] > max([-math.inf] + [
        v["validation"][SCORE] for v in vals if v["step"] < r["step"]]) for r in vals]
    assert result.selected == {"step": best["step"], **best["validation"]}
    summary = _summary(result)
    assert summary["selected"]["step"] == best["step"] and "stopped_early" not in summary
    assert ("warning" in summary) == (best["validation"][SCORE] < 0)
    # the selected weights are what load_checkpoint gives by default, and they score what the log says
    selected = load_checkpoint(out)
    assert selected.path == out / "selected" and selected.meta["step"] == best["step"]
    assert ckpt.meta["step"] == 6 and ckpt.meta["selected"]["step"] == best["step"]
    again = validator(build_model(selected))
    assert again["psnr_mean"] == pytest.approx(best["validation"]["psnr_mean"], abs=1e-3)
    from crcm_robotics.eval.evaluate import evaluate

    common = [f"ckpt={out}", "horizon=2", "episodes=1", "windows_per_episode=1", "report=false", "time_batch1=false"]
    assert evaluate(compose_config("eval", common))["update"] == best["step"]
    assert evaluate(compose_config("eval", [*common, "weights=last"]))["update"] == 6


def test_an_absurd_learning_rate_stops_the_run_early_with_a_reason(pusht_store_32, tmp_path, one_torch_thread):
    from distill.cli import _summary
    from distill.teacher import train_teacher

    out = tmp_path / "diverged"
    cfg = _teacher_cfg(pusht_store_32, out, "train.steps=40", "train.validation.every=1", "optim.lr=1e6",
                       "optim.warmup_steps=1", "optim.grad_clip=1e9", "train.validation.collapse_evals=2",
                       "train.log_every=1")
    result = train_teacher(cfg)
    assert result.steps < 10, result
    assert result.stop_reason is not None and result.stop_reason.startswith(("diverged", "validation collapsed"))
    summary = _summary(result)
    assert summary["stopped_early"] == result.stop_reason and summary["steps"] == result.steps
    # the selected weights are the best validation's, before things fell apart
    vals = [r for r in _log(out) if "validation" in r]
    best = max(vals, key=lambda r: r["validation"]["psnr_vs_copy_last"])
    assert load_checkpoint(out).meta["step"] == best["step"] == summary["selected"]["step"]


def test_world_model_loads_the_selected_weights_unless_told_last(tiny_teacher, tmp_path):
    from crcm_robotics.runtime.world_model import WorldModel

    ck = load_checkpoint(tiny_teacher)
    state = {k: v.clone() for k, v in ck.state_dict.items()}
    out = tmp_path / "run"
    save_checkpoint(out / "selected", {k: v + 1.0 if v.is_floating_point() else v for k, v in state.items()},
                    ck.config, ck.stats, {**ck.meta, "step": 3})
    save_checkpoint(out, state, ck.config, ck.stats, {**ck.meta, "step": 9})  # the last save keeps selected/
    name = next(k for k, v in state.items() if v.is_floating_point())
    wm = WorldModel.load(out)
    assert wm.checkpoint == str(out / "selected")
    torch.testing.assert_close(dict(wm.model.named_parameters())[name].detach(), state[name] + 1.0)
    last = WorldModel.load(out, weights="last")
    assert last.checkpoint == str(out)
    torch.testing.assert_close(dict(last.model.named_parameters())[name].detach(), state[name])
    with pytest.raises(ValueError, match="weights='best'.*expected one of selected, last"):
        load_checkpoint(out, weights="best")
    assert np.array_equal(sorted(p.name for p in out.iterdir() if p.is_dir()), ["selected"])


def test_resuming_a_validated_run_keeps_its_selection(pusht_store_32, tmp_path, one_torch_thread):
    from distill.teacher import train_teacher

    straight = train_teacher(_teacher_cfg(pusht_store_32, tmp_path / "a", "train.steps=4", "train.validation.every=2"))
    out = tmp_path / "b"
    train_teacher(_teacher_cfg(pusht_store_32, out, "train.steps=2", "train.validation.every=2"))
    resumed = train_teacher(_teacher_cfg(pusht_store_32, out, "train.steps=4", "train.validation.every=2",
                                         f"train.resume={out}"))
    assert resumed.selected == straight.selected and resumed.selected is not None
    assert load_checkpoint(out).meta["step"] == straight.selected["step"]
    assert [r["step"] for r in _log(out) if "validation" in r] == [2, 4]


def test_a_fresh_run_drops_an_earlier_runs_selected_weights(pusht_store_32, tmp_path, one_torch_thread):
    from distill.teacher import train_teacher

    out = tmp_path / "teacher"
    (out / "selected").mkdir(parents=True)
    (out / "selected" / "meta.json").write_text("{}")
    train_teacher(_teacher_cfg(pusht_store_32, out, "train.steps=1"))  # validation off, same folder
    assert not (out / "selected").exists() and load_checkpoint(out).path == out


def test_small_presets_validate_and_tiny_ones_do_not():
    for group in ("teacher", "distill"):
        small = compose_config("config", ["preset=small", "teacher=x"] if group == "distill" else ["preset=small"],
                               f"crcm_robotics.conf.{group}")
        tiny = compose_config("config", ["teacher=x"] if group == "distill" else [], f"crcm_robotics.conf.{group}")
        assert small.train.validation.every > 0 and small.train.validation.horizon == 16
        assert tiny.train.validation.every == 0


def test_validation_reads_the_states_off_predicted_frames_with_a_probe(pusht_store_32, tmp_path,
                                                                       one_torch_thread):
    from crcm_robotics.conf import compose_config as compose
    from crcm_robotics.config import ConfigError
    from crcm_robotics.eval.training_curves import plot_curves, read_curve
    from distill.probe import train_probe
    from distill.teacher import train_teacher

    probe = tmp_path / "probe"
    train_probe(compose("train_probe", [f"data.path={pusht_store_32}", f"out={probe}", "steps=10",
                                        "batch_size=16", "width=8", "progress=false"]))
    out = tmp_path / "teacher"
    train_teacher(_teacher_cfg(pusht_store_32, out, "train.steps=4", "train.validation.every=2",
                               f"train.validation.probe={probe}"))
    vals = [r["validation"] for r in _log(out) if "validation" in r]
    assert len(vals) == 2
    for v in vals:
        for name in ("agent_pos", "block_pos", "block_angle_deg"):
            assert v[f"probe_{name}"] >= 0 and v[f"copy_last_probe_{name}"] >= 0
    assert vals[0]["copy_last_probe_block_pos"] == vals[1]["copy_last_probe_block_pos"]  # scored once
    paths = plot_curves({"teacher": read_curve(out.with_name("teacher_log.jsonl"))}, tmp_path / "plots")
    assert tmp_path / "plots" / "probe_block_pos_vs_updates.png" in paths
    with pytest.raises(ConfigError, match=r"train.validation.probe=.*nope.*needs meta.json"):
        train_teacher(_teacher_cfg(pusht_store_32, tmp_path / "t2", "train.steps=2",
                                   "train.validation.every=2", f"train.validation.probe={tmp_path / 'nope'}"))


def test_training_curves_table_and_plots(tmp_path):
    from crcm_robotics.eval.training_curves import main

    log = tmp_path / "student_rcm_log.jsonl"
    recs = [{"step": 10, "loss": 1.0},
            {"step": 10, "validation": {"psnr_mean": 27.0, "psnr_vs_copy_last": 0.5, "agent_err_mean": 1.5}},
            {"step": 20, "validation": {"psnr_mean": 24.0, "psnr_vs_copy_last": -2.5, "agent_err_mean": 3.0}},
            {"step": 20, "validation": {"psnr_mean": 28.0, "psnr_vs_copy_last": 1.5, "agent_err_mean": 1.0}},
            {"step": 30, "validation": {"psnr_mean": 26.0, "psnr_vs_copy_last": -0.5, "agent_err_mean": 2.0}}]
    log.write_text("".join(json.dumps(r) + "\n" for r in recs))  # step 20 twice: a resumed run redid it
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main([str(log), "--plot", str(tmp_path / "plots")]) == 0
    row = buf.getvalue().splitlines()[-1]
    assert row == "| student_rcm | 3 | 20 | 28.00 | +1.50 | 1.00 | 30 | -0.50 | -0.50 | – |"
    assert (tmp_path / "plots" / "psnr_vs_updates.png").stat().st_size > 1000
    # older logs have no per-step margin: no plot of it
    assert not (tmp_path / "plots" / "worst_step_vs_updates.png").exists()
    recs[2]["validation"].update(worst_step_vs_copy_last=-3.1, worst_step=16.0)
    recs[3]["validation"].update(worst_step_vs_copy_last=0.2, worst_step=1.0)
    recs[4]["validation"].update(worst_step_vs_copy_last=-1.25, worst_step=2.0)
    log.write_text("".join(json.dumps(r) + "\n" for r in recs))
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main([str(log), "--plot", str(tmp_path / "plots")]) == 0
    # step 20's first record was replaced by the resumed run's: its -3.1 is not the worst any more
    assert buf.getvalue().splitlines()[-1].endswith("| -0.50 | -1.25 (step 2, update 30) |")
    assert (tmp_path / "plots" / "worst_step_vs_updates.png").stat().st_size > 1000
    later = "| -0.50 | -1.25 (step 2, update 30) |"
    for since, tail in ((20, later), (21, later), (10, later), (31, "| – | – |")):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            assert main([str(log), "--from-update", str(since)]) == 0
        assert buf.getvalue().splitlines()[0].endswith(f"from update {since} |")
        assert buf.getvalue().splitlines()[-1].endswith(tail), (since, buf.getvalue())
    recs[4]["validation"].update(worst_step_vs_copy_last=0.75)  # now step 20's +0.2 is the worst from 20 on
    log.write_text("".join(json.dumps(r) + "\n" for r in recs))
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main([str(log), "--from-update", "20"]) == 0
    assert buf.getvalue().splitlines()[-1].endswith("| -0.50 | +0.20 (step 1, update 20) |")
    assert main([str(log), "--from-update", "-1"]) == 2
    assert (tmp_path / "plots" / "pusher_error_vs_updates.png").is_file()
    assert main([str(tmp_path / "nope.jsonl")]) == 2


def test_teacher_selects_by_psnr_and_pusher_when_asked(pusht_store_32, tmp_path, one_torch_thread):
    from distill.teacher import train_teacher
    from distill.validation import SCORE, pusher_gain_db

    out = tmp_path / "teacher"
    cfg = _teacher_cfg(pusht_store_32, out, "train.steps=6", "train.validation.every=2",
                       "train.validation.select=psnr_pusher")
    result = train_teacher(cfg)
    vals = [r["validation"] for r in _log(out) if "validation" in r]
    best = max(vals, key=lambda v: v[SCORE] + pusher_gain_db(v))
    assert result.selected["psnr_mean"] == best["psnr_mean"]
    assert result.selected["pusher_gain_db"] == pytest.approx(pusher_gain_db(best), abs=1e-3)
