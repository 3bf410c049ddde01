"""Distillation: the JVP is right, every method trains on CPU, students load and evaluate."""

from __future__ import annotations

import dataclasses
import json
import re
import time

import pytest
import torch

from crcm_robotics.conf import compose_config
from crcm_robotics.config import ModelConfig
from crcm_robotics.model.checkpoint import load_checkpoint
from crcm_robotics.model.dit import CausalDiT
from distill.layout import tf_forward
from distill.tf_scm import student_tangent


def test_student_jvp_matches_central_finite_difference():
    """dF/dt along (dx/dt, 1) through the masked teacher-forcing attention and the residual wrapper."""
    torch.manual_seed(0)
    model = CausalDiT(ModelConfig(height=16, width=16, patch=4, dim=32, depth=2, heads=2, cache_frames=3)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    b, t = 2, 3
    x0 = torch.randn(b, t, 3, 16, 16, dtype=torch.float64)
    x_prev = torch.randn(b, t, 3, 16, 16, dtype=torch.float64)
    x_t = torch.randn(b, t, 3, 16, 16, dtype=torch.float64)
    action = torch.randn(b, t, 2, dtype=torch.float64)
    times = torch.rand(b, t, dtype=torch.float64) * 1.4 + 0.05
    v = torch.randn_like(x_t)
    f, df = student_tangent(model, x0, x_t, times, v, action, x_prev)
    zeros = torch.zeros_like(times)
    h = 1e-7  # float64: truncation error (time embedding frequencies up to 250/unit) stays ≪ tolerance
    with torch.no_grad():
        plus = tf_forward(model, x0, zeros, x_t + h * v, times + h, action, x_prev)
        minus = tf_forward(model, x0, zeros, x_t - h * v, times - h, action, x_prev)
        direct = tf_forward(model, x0, zeros, x_t, times, action, x_prev)
    torch.testing.assert_close(f, direct, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(df, (plus - minus) / (2 * h), rtol=1e-5, atol=1e-6)
    assert all(blk.attn.impl == "sdpa" for blk in model.blocks)  # the math kernel is only borrowed


@pytest.mark.parametrize("method", ["tf_scm", "tf_dcm", "sf_dmd", "causal_rcm"])
def test_every_method_trains_a_few_steps_on_cpu(method, tiny_teacher, tmp_path):
    from distill.run import run_distill

    out = tmp_path / method
    steps = 4
    cfg = compose_config("config", [f"method={method}", f"teacher={tiny_teacher}", f"train.out={out}",
                                    f"train.steps={steps}", "train.progress=false", "train.log_every=1",
                                    "rcm.scm_steps=2", "dmd.fake_updates=1", "optim.batch_size=2",
                                    "optim.warmup_steps=1", "optim.lr=1e-3"], "crcm_robotics.conf.distill")
    result = run_distill(cfg)
    assert result.steps == steps
    log = [json.loads(line) for line in (tmp_path / f"{method}_log.jsonl").read_text().splitlines()]
    assert len(log) == steps and all(torch.isfinite(torch.tensor(r["loss"])) for r in log)
    if method == "causal_rcm":
        assert [r["stage"] for r in log] == [1, 1, 2, 2]  # sCM initialisation, then DMD + sCM
        assert "dmd" in log[-1] and "scm" in log[-1] and "fake_loss" in log[-1]
    student, teacher = load_checkpoint(out), load_checkpoint(tiny_teacher)
    assert student.meta["kind"] == "student" and student.meta["method"] == method
    assert student.meta["sampler"] == {"kind": "consistency", "steps": 2, "solver": None, "mid_times": [0.5]}
    changed = [k for k in teacher.state_dict if not torch.equal(student.state_dict[k], teacher.state_dict[k])]
    assert len(changed) > len(teacher.state_dict) // 2, f"only {len(changed)} tensors moved"


def test_wsd_learning_rate_holds_then_decays_over_the_last_fraction():
    from crcm_robotics.config import ConfigError, OptimConfig

    wsd = OptimConfig(warmup_steps=2, lr_schedule="wsd", decay_fraction=0.5, lr_final=0.1)
    assert [wsd.lr_factor(s, 8) for s in range(8)] == pytest.approx([0.5, 1, 1, 1, 0.775, 0.55, 0.325, 0.1])
    constant = OptimConfig(warmup_steps=2)
    assert [constant.lr_factor(s, 8) for s in range(8)] == [0.5] + [1.0] * 7
    with pytest.raises(ConfigError, match="optim.lr_schedule='cosine' unknown"):
        OptimConfig(lr_schedule="cosine").validate()
    with pytest.raises(ConfigError, match="decay_fraction"):
        OptimConfig(lr_schedule="wsd", decay_fraction=0.0).validate()


def test_a_run_with_the_wsd_schedule_ends_at_the_final_learning_rate(tiny_teacher, tmp_path):
    from distill.run import run_distill

    cfg = compose_config("config", ["method=tf_scm", f"teacher={tiny_teacher}", f"train.out={tmp_path / 's'}",
                                    "train.steps=4", "train.progress=false", "train.log_every=1",
                                    "optim.batch_size=2", "optim.warmup_steps=1", "optim.lr=1e-3",
                                    "optim.lr_schedule=wsd", "optim.decay_fraction=0.5",
                                    "optim.lr_final=0.1"],
                         "crcm_robotics.conf.distill")
    assert run_distill(cfg).schedule_warning is None
    log = [json.loads(line) for line in (tmp_path / "s_log.jsonl").read_text().splitlines()]
    # the logged rate is the one the next update takes: full, then half-way down the decay, then the floor
    assert [r["lr"] for r in log] == pytest.approx([1e-3, 5.5e-4, 1e-4, 1e-4])


def test_a_wsd_run_stopped_by_its_time_budget_before_the_decay_says_so(tiny_teacher, tmp_path):
    from distill.cli import _summary
    from distill.run import run_distill

    cfg = compose_config("config", ["method=tf_scm", f"teacher={tiny_teacher}", f"train.out={tmp_path / 's'}",
                                    "train.steps=1000", "train.max_minutes=1e-6", "train.progress=false",
                                    "optim.batch_size=2", "optim.lr_schedule=wsd"],
                         "crcm_robotics.conf.distill")
    result = run_distill(cfg)
    assert result.steps == 1
    assert _summary(result)["schedule_warning"] == (
        "optim.lr_schedule=wsd: stopped at update 1, before the decay that starts at update 800 of "
        "train.steps=1000; the rate never decayed (set train.steps to what the time allows)")


def test_wsd_time_decays_over_the_last_fraction_of_the_time_budget():
    from crcm_robotics.config import OptimConfig

    wsd_time = OptimConfig(warmup_steps=2, lr_schedule="wsd_time", decay_fraction=0.5, lr_final=0.1)
    # the update count only warms up; the share of train.max_minutes spent decays
    assert [wsd_time.lr_factor(5, 8, f) for f in (0.0, 0.5, 0.75, 1.0, 2.0)] == pytest.approx(
        [1, 1, 0.55, 0.1, 0.1])
    assert wsd_time.lr_factor(0, 8, 0.75) == pytest.approx(0.275)
    assert wsd_time.decay_start(8) is None  # no update count ends its stable phase


def _wsd_time_run(teacher, out, *overrides):
    from distill.run import run_distill

    cfg = compose_config("config", ["method=tf_scm", f"teacher={teacher}", f"train.out={out}",
                                    "train.progress=false", "train.log_every=1", "optim.batch_size=2",
                                    "optim.warmup_steps=1", "optim.lr=1e-3", "optim.lr_schedule=wsd_time",
                                    "optim.decay_fraction=0.5", "optim.lr_final=0.1", *overrides],
                         "crcm_robotics.conf.distill")
    return run_distill(cfg)


def test_a_wsd_time_run_decays_by_its_clock_and_says_when_its_steps_ran_out_first(tiny_teacher, tmp_path):
    from crcm_robotics.config import ConfigError
    from crcm_robotics.model.checkpoint import load_train_state

    with pytest.raises(ConfigError, match="wsd_time .* expected train.max_minutes > 0, got 0.0"):
        _wsd_time_run(tiny_teacher, tmp_path / "none", "train.steps=2")
    spent = _wsd_time_run(tiny_teacher, tmp_path / "spent", "train.steps=100", "train.max_minutes=1e-6")
    assert spent.steps == 1 and spent.schedule_warning is None  # its budget spent: at the final rate
    log = [json.loads(line) for line in (tmp_path / "spent_log.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in log] == pytest.approx([1e-4])
    early = _wsd_time_run(tiny_teacher, tmp_path / "early", "train.steps=2", "train.max_minutes=60")
    assert early.steps == 2 and early.schedule_warning.startswith(
        "optim.lr_schedule=wsd_time: stopped at update 2, 0% into train.max_minutes=60")
    log = [json.loads(line) for line in (tmp_path / "early_log.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in log] == pytest.approx([1e-3, 1e-3])
    seconds = load_train_state(tmp_path / "early")["seconds"]
    assert seconds > 0
    # resumed, the clock counts the first run's time: a budget it had already spent stops it after one update
    resumed = _wsd_time_run(tiny_teacher, tmp_path / "early", "train.steps=10",
                            f"train.max_minutes={seconds / 120}", f"train.resume={tmp_path / 'early'}")
    assert resumed.steps == 3 and resumed.schedule_warning is None
    assert load_train_state(tmp_path / "early")["seconds"] > seconds


def _cut_budget(warning: str) -> float:
    """The minutes a wsd_time run's schedule warning says it had, where train.stop_at cut them."""
    match = re.search(r"train.max_minutes=([0-9.e-]+) \(cut by train.stop_at\)", warning)
    assert match, warning
    return float(match.group(1))


def test_stop_at_cuts_the_time_budget_to_the_wall_clock_left_once_setup_is_done(tiny_teacher, tmp_path, capfd):
    """train.stop_at: a wall-clock end counted from before setup, so a slow setup shortens the training (the
    sixty-third session's teacher spent about 80 s loading a 3,000-episode store and its call was killed)."""
    from crcm_robotics.config import ConfigError
    from crcm_robotics.model.checkpoint import load_train_state

    for bad in ("-1.0", "nan", "120.0"):  # 120: seconds, not an epoch time
        with pytest.raises(ConfigError, match=f"train.stop_at={bad}: expected 0 .none. or a wall-clock time in "
                                              r"seconds since the Unix epoch \(now \d+\)"):
            _wsd_time_run(tiny_teacher, tmp_path / "bad", "train.steps=2", "train.max_minutes=60",
                          f"train.stop_at={bad}")
    # an end already past: one update, then saved (a run on from kept weights still leaves its checkpoint)
    past = _wsd_time_run(tiny_teacher, tmp_path / "past", "train.steps=5", "train.max_minutes=60",
                         f"train.stop_at={time.time() - 5}")
    assert past.steps == 1 and load_train_state(tmp_path / "past")["step"] == 1
    assert re.search(r"train.stop_at=\d+ passed \d+ s before the first update .*: one update, then saved",
                     capfd.readouterr().err)
    # stop_at alone sizes a wsd_time run; with max_minutes the nearer end wins: 60 minutes cut to under 2
    for name, minutes in (("alone", []), ("both", ["train.max_minutes=60"])):
        run = _wsd_time_run(tiny_teacher, tmp_path / name, "train.steps=2", *minutes,
                            f"train.stop_at={time.time() + 120}")
        assert run.steps == 2 and 1.0 < _cut_budget(run.schedule_warning) < 2.0, run.schedule_warning
    # a later stop_at leaves a nearer max_minutes alone
    run = _wsd_time_run(tiny_teacher, tmp_path / "later", "train.steps=2", "train.max_minutes=5",
                        f"train.stop_at={time.time() + 3600}")
    assert "into train.max_minutes=5.0, before" in run.schedule_warning, run.schedule_warning
    # resumed under wsd_time, the cut budget is the first run's time plus what is left: its clock spans resumes
    # (the first run's time set to 300 s, so that the two read apart whatever the setup takes)
    state_file = tmp_path / "alone" / "train_state.pt"
    torch.save({**load_train_state(tmp_path / "alone"), "seconds": 300.0}, state_file)
    resumed = _wsd_time_run(tiny_teacher, tmp_path / "alone", "train.steps=4", f"train.resume={tmp_path / 'alone'}",
                            f"train.stop_at={time.time() + 600}")
    budget = _cut_budget(resumed.schedule_warning) * 60
    assert resumed.steps == 4 and 300 + 540 < budget < 300 + 600, budget


@pytest.fixture(scope="module")
def one_block_model(pusht_store_32, tmp_path_factory):
    """A 1-block model trained on the tiny teacher's store with its settings (a shallow student's start)."""
    from distill.teacher import train_teacher

    out = tmp_path_factory.mktemp("init") / "one_block"
    cfg = compose_config("config", [f"data.path={pusht_store_32}", f"train.out={out}", "train.steps=4",
                                    "train.progress=false", "data.val_fraction=0.25", "model.depth=1"],
                         "crcm_robotics.conf.teacher")
    train_teacher(cfg)
    return out


def test_a_student_starts_from_a_shallow_model_trained_on_data(tiny_teacher, one_block_model, tmp_path):
    """student_init=CKPT: the student is that model (its depth, its weights), distilled from the teacher."""
    from distill.run import run_distill

    out = tmp_path / "s"
    cfg = compose_config("config", ["method=causal_rcm", f"teacher={tiny_teacher}", f"train.out={out}",
                                    "train.steps=2", "train.progress=false", "rcm.scm_steps=1",
                                    "dmd.fake_updates=1", "optim.batch_size=2", "optim.lr=0",
                                    f"student_init={one_block_model}"],
                         "crcm_robotics.conf.distill")
    assert run_distill(cfg).steps == 2
    student, init = load_checkpoint(out), load_checkpoint(one_block_model)
    assert student.model_config.depth == 1 and student.meta["student_init"] == str(one_block_model)
    assert student.state_dict.keys() == init.state_dict.keys()
    for key, value in init.state_dict.items():  # at rate 0 the student is still its start
        assert torch.allclose(student.state_dict[key].float(), value.float(), atol=1e-3), key


def test_a_student_init_that_does_not_fit_the_teacher_is_refused(tiny_teacher, one_block_model, tmp_path):
    import shutil

    import yaml

    from crcm_robotics.config import ConfigError
    from distill.run import run_distill

    def altered(name, file, change):
        path = tmp_path / name
        shutil.copytree(one_block_model, path)
        if file == "config.yaml":
            data = yaml.safe_load((path / file).read_text())
            change(data)
            (path / file).write_text(yaml.safe_dump(data))
        else:
            data = json.loads((path / file).read_text())
            change(data)
            (path / file).write_text(json.dumps(data))
        return path

    cases = [
        (altered("wide", "config.yaml", lambda c: c["model"].update(dim=c["model"]["dim"] * 2)), [],
         r"in model.dim \(\d+ against \d+\); expected the teacher's settings but for model.depth"),
        (altered("student", "meta.json", lambda m: m.update(kind="student")), [],
         "is a 'student' checkpoint, expected a model trained on data"),
        (altered("skip", "meta.json", lambda m: m.update(frame_skip=5)), [],
         "predicts every 5. frame, teacher=.* every 1.; expected the same frame skip"),
        (altered("stats", "stats.json", lambda s: s["action"].update(mean=[0.0, 0.0])), [],
         "normalizes actions with mean \\[0.0, 0.0\\]"),
        (one_block_model, ["student_depth=2"], ("has 1 blocks: expected at most the teacher's 2, and "
                                                 "student_depth=0 or 1 \\(got 2\\)")),
    ]
    for init, extra, message in cases:
        cfg = compose_config("config", [f"teacher={tiny_teacher}", f"student_init={init}", *extra],
                             "crcm_robotics.conf.distill")
        with pytest.raises(ConfigError, match=message):
            run_distill(cfg)


def test_distill_rejects_a_student_as_teacher_and_unknown_methods(tiny_teacher, tmp_path):
    from crcm_robotics.config import ConfigError
    from distill.run import run_distill

    cfg = compose_config("config", ["method=dmd2", f"teacher={tiny_teacher}"], "crcm_robotics.conf.distill")
    with pytest.raises(ConfigError, match="method='dmd2' unknown"):
        run_distill(cfg)
    cfg = compose_config("config", [f"teacher={tiny_teacher}", "student_steps=8"], "crcm_robotics.conf.distill")
    with pytest.raises(ConfigError, match="student_steps=8"):
        run_distill(cfg)
    cfg = compose_config("config", [f"teacher={tiny_teacher}", "student_mid_times=[1.1,0.5]"],
                         "crcm_robotics.conf.distill")
    with pytest.raises(ConfigError, match="student_mid_times.*2-step student"):
        run_distill(cfg)


def test_student_keeps_its_mid_times_for_its_own_step_count(tiny_teacher, tmp_path):
    from crcm_robotics.model.sampler import sampler_from_meta
    from distill.run import run_distill, student_sampler

    out = tmp_path / "student"
    cfg = compose_config("config", ["method=sf_dmd", f"teacher={tiny_teacher}", f"train.out={out}", "train.steps=1",
                                    "train.progress=false", "dmd.fake_updates=1", "optim.batch_size=2",
                                    "student_mid_times=[0.5]"], "crcm_robotics.conf.distill")
    run_distill(cfg)
    meta = load_checkpoint(out).meta
    assert meta["sampler"] == {"kind": "consistency", "steps": 2, "solver": None, "mid_times": [0.5]}
    assert sampler_from_meta(meta).times() == pytest.approx([torch.pi / 2, 0.5, 0.0])
    assert sampler_from_meta(meta, steps=4).times() == pytest.approx([torch.pi / 2, 1.4, 1.1, 0.6, 0.0])
    assert sampler_from_meta(meta, mid_times=[0.9]).times() == pytest.approx([torch.pi / 2, 0.9, 0.0])
    small = compose_config("config", ["teacher=x", "preset=small"], "crcm_robotics.conf.distill")
    assert student_sampler(small).times() == pytest.approx([torch.pi / 2, 0.5, 0.0])  # the measured GPU choice


def test_scm_loss_is_the_normalized_tangent_alone_under_bf16_autocast():
    """‖F_θ − sg[F_θ] − g‖² = ‖g‖²: below 1/(C·H·W) per frame whatever the forward's precision.

    (Regression: F⁻ used to be the fp32 JVP primal, so under bf16 autocast the
    bf16-vs-fp32 gap, larger than the tangent, was what the student learned.)
    """
    from crcm_robotics.config import SCMConfig
    from crcm_robotics.model.sampler import SamplerSpec
    from distill.tf_scm import TFsCM

    torch.manual_seed(0)
    cfg = ModelConfig(height=16, width=16, patch=4, dim=32, depth=2, heads=2, cache_frames=3)
    teacher, student = CausalDiT(cfg), CausalDiT(cfg)
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(0.3 * torch.randn_like(p))
    student.load_state_dict(teacher.state_dict())
    method = TFsCM(student, teacher, SCMConfig(tangent_warmup_steps=1), SamplerSpec("consistency", 2))
    batch = {"x": torch.randn(2, 3, 3, 16, 16), "x_prev": torch.randn(2, 3, 3, 16, 16),
             "action": torch.randn(2, 3, 2)}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = method.loss(batch, step=10)
    assert 0 < float(loss) < 1 / (3 * 16 * 16)
    loss.backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in student.parameters())


def test_scm_figures_per_noise_time_bucket_are_bucket_means():
    from distill.tf_scm import per_time_bucket

    times = torch.tensor([[0.1, 0.3], [0.5, 1.3]])  # buckets 0, 1, 1, 3; bucket 2 empty
    values = torch.tensor([[1.0, 2.0], [4.0, 8.0]])
    assert per_time_bucket(values, times, "scm") == {"scm_t0": 1.0, "scm_t1": 3.0, "scm_t3": 8.0}


def test_rcm_scm_weight_fades_linearly_or_cosine_from_the_stage_switch(tiny_teacher):
    from crcm_robotics.config import ConfigError, DMDConfig, RCMConfig, SCMConfig, TeacherObjectiveConfig
    from crcm_robotics.model.checkpoint import build_model
    from crcm_robotics.model.sampler import SamplerSpec
    from distill.causal_rcm import CausalRCM

    teacher = build_model(load_checkpoint(tiny_teacher))
    spec = SamplerSpec("consistency", 2)

    def method(**rcm) -> CausalRCM:
        return CausalRCM(build_model(load_checkpoint(tiny_teacher)), teacher, SCMConfig(), DMDConfig(),
                         RCMConfig(scm_steps=10, scm_weight=2.0, **rcm), TeacherObjectiveConfig(), spec)

    assert [method().scm_weight(s) for s in (10, 50)] == [2.0, 2.0]  # default: today's constant λ
    lin = method(scm_weight_schedule="linear", scm_fade_steps=20)
    assert [lin.scm_weight(s) for s in (10, 15, 20, 30, 99)] == pytest.approx([2.0, 1.5, 1.0, 0.0, 0.0])
    cos = method(scm_weight_schedule="cosine", scm_fade_steps=20)
    assert [cos.scm_weight(s) for s in (10, 20, 30)] == pytest.approx([2.0, 1.0, 0.0])
    with pytest.raises(ConfigError, match="scm_weight_schedule=linear needs rcm.scm_fade_steps ≥ 1, got 0"):
        method(scm_weight_schedule="linear")


def test_validation_ends_the_scm_stage_once_it_stops_improving(tiny_teacher, tmp_path, one_torch_thread):
    from distill.run import run_distill

    out = tmp_path / "rcm"
    cfg = compose_config("config", ["method=causal_rcm", f"teacher={tiny_teacher}", f"train.out={out}",
                                    "train.steps=6", "train.progress=false", "train.log_every=1",
                                    "rcm.scm_steps=100", "rcm.scm_stage_patience=1", "train.validation.every=1",
                                    "train.validation.episodes=2", "train.validation.horizon=3",
                                    "rcm.scm_weight_schedule=linear", "rcm.scm_fade_steps=2",
                                    "train.validation.collapse_db=100", "dmd.fake_updates=1", "optim.batch_size=2",
                                    "optim.warmup_steps=1", "optim.lr=3e-2"], "crcm_robotics.conf.distill")
    result = run_distill(cfg)
    log = [json.loads(line) for line in (tmp_path / "rcm_log.jsonl").read_text().splitlines()]
    train = [r for r in log if "loss" in r]
    scores = [r["validation"]["psnr_vs_copy_last"] for r in log if "validation" in r]
    # the first validation that does not beat stage 1's best ends it: the next update is stage 2
    switch = next((i + 1 for i in range(1, len(scores)) if scores[i] <= max(scores[:i])), 6)
    assert switch < 6, f"held-out PSNR rose at every update ({scores}): this run never tests the switch"
    assert [r["stage"] for r in train] == [1] * switch + [2] * (6 - switch)
    assert load_checkpoint(out, weights="last").meta["scm_stage_updates"] == (switch if switch < 6 else 100)
    assert [r["scm_weight"] for r in train if r["stage"] == 2] == [1.0, 0.5, 0.0, 0.0][: 6 - switch]
    assert all(f"tangent_norm_t{i}" in train[0] or f"scm_t{i}" not in train[0] for i in range(4))
    assert "fake_grad_norm" in train[-1] or switch == 6
    assert result.selected["step"] == 1 + scores.index(max(scores))


def test_scm_adaptive_weighting_starts_as_the_plain_loss_and_learns(tiny_teacher, tmp_path, one_torch_thread):
    import dataclasses

    from crcm_robotics.config import SCMConfig
    from crcm_robotics.model.checkpoint import build_model, load_train_state
    from crcm_robotics.model.sampler import SamplerSpec
    from distill.run import run_distill
    from distill.tf_scm import TFsCM

    teacher = build_model(load_checkpoint(tiny_teacher))
    student = build_model(load_checkpoint(tiny_teacher)).train()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 3, 32, 32, generator=g)
    batch = {"x": x[:, 1:], "x_prev": x[:, :-1], "action": torch.randn(2, 3, 2, generator=g)}
    losses = []
    for adaptive in (False, True):
        method = TFsCM(student, teacher, dataclasses.replace(SCMConfig(), adaptive_weight=adaptive),
                       SamplerSpec("consistency", 2))
        torch.manual_seed(1)
        losses.append(method.loss(batch, 5)[0])
    torch.testing.assert_close(losses[1], losses[0])  # w = 0 at the start: e^0·err − 0 = err
    assert method.extra_parameters() and all(p.requires_grad for p in method.extra_parameters())

    out = tmp_path / "adaptive"
    cfg = compose_config("config", ["method=tf_scm", f"teacher={tiny_teacher}", f"train.out={out}", "train.steps=3",
                                    "train.progress=false", "train.log_every=1", "scm.adaptive_weight=true",
                                    "optim.batch_size=2", "optim.warmup_steps=1", "optim.lr=1e-2"],
                         "crcm_robotics.conf.distill")
    run_distill(cfg)
    log = [json.loads(line) for line in (tmp_path / "adaptive_log.jsonl").read_text().splitlines()]
    assert any(k.startswith("scm_w_t") for k in log[-1]) and "scm_weighted" in log[-1]
    learned = load_train_state(out)["method"]["time_weight"]["linear.bias"]
    assert float(learned.abs()) > 1e-4  # the weighting trained alongside the student (and resumes with it)


def _tiny_dmd(train_window: int | None, seed: int = 0):
    from crcm_robotics.config import DMDConfig, TeacherObjectiveConfig
    from crcm_robotics.model.sampler import SamplerSpec
    from distill.sf_dmd import SFDMD

    torch.manual_seed(seed)
    cfg = ModelConfig(height=16, width=16, patch=4, dim=32, depth=2, heads=2, cache_frames=3)
    teacher = CausalDiT(cfg)
    student = CausalDiT(cfg)
    student.load_state_dict(teacher.state_dict())
    return SFDMD(student, teacher, DMDConfig(context=2, fake_updates=1), TeacherObjectiveConfig(),
                 SamplerSpec("consistency", 2), train_window=train_window)


def _batch(window: int, b: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    frames = torch.randn(b, window + 1, 3, 16, 16, generator=g)
    return {"x": frames[:, 1:], "x_prev": frames[:, :-1], "action": torch.randn(b, window, 2, generator=g)}


def test_self_forcing_past_the_training_window_scores_the_last_window_only():
    """dmd.rollout_frames: the rollout runs on (its KV window rolling past 3 frames); the critics see its last
    train_window frames, and gradients reach the student through the scored frames only."""
    long, window = 7, 4
    dmd = _tiny_dmd(train_window=window)
    batch = _batch(long)
    gen = dmd.generate(batch, step=0, train=False)
    assert gen.shape == (2, long - 2, 3, 16, 16) and torch.isfinite(gen).all()
    clip, prev, action = dmd._clip(batch, gen)
    assert clip.shape[1] == window and torch.equal(clip, gen[:, -window:])  # only generated frames: history
    assert torch.equal(prev[:, 1:], clip[:, :-1]) and torch.equal(prev[:, 0], gen[:, -window - 1])
    assert torch.equal(action, batch["action"][:, -window:])
    fake = dmd.before_step(lambda step: batch, step=0)  # the fake score learns on the same long rollouts
    assert fake["fake_loss"] > 0 and fake["fake_grad_norm"] > 0
    loss, figures = dmd.loss(batch, step=0)
    loss.backward()
    grads = [p.grad for p in dmd.student.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads) and figures["dmd"] > 0
    assert all(p.grad is None for p in dmd.teacher.parameters())
    # the same window at the training length is the plain SF-DMD rollout, draw for draw
    plain, limited = _tiny_dmd(train_window=None), _tiny_dmd(train_window=window)
    short = _batch(window)
    torch.testing.assert_close(plain.loss(short, step=3)[0], limited.loss(short, step=3)[0])


def test_fake_score_rollouts_run_as_one_batch_with_rows_independent():
    """dmd.fake_rollouts_batched: the fake_updates critic batches share one student rollout, split back per
    batch; a row's frames do not depend on the rows beside it (so the batched draw is the separate draws')."""
    from crcm_robotics.model.sampler import encode_context, rollout

    dmd = _tiny_dmd(train_window=None)
    a, b = _batch(4, b=2), _batch(4, b=3)
    b = {key: value.flip(0) + 0.5 for key, value in b.items()}  # other windows than a's
    noise = torch.randn(2, dmd.spec.noise_draws, 5, 1, 3, 16, 16)  # [frames, draws, rows, 1, C, H, W]

    def roll(batch: dict[str, torch.Tensor], rows: slice) -> torch.Tensor:
        cache = dmd.student.new_cache(len(batch["x"]), "cpu")
        with torch.no_grad():
            encode_context(dmd.student, cache, batch["x"][:, :2], batch["action"][:, :2])
            return rollout(dmd.student, cache, batch["action"][:, 2:], dmd.spec, batch["x"][:, 1:2],
                           noise=noise[:, :, rows])

    joined = {key: torch.cat([a[key], b[key]]) for key in a}
    apart = torch.cat([roll(a, slice(0, 2)), roll(b, slice(2, 5))])
    torch.testing.assert_close(roll(joined, slice(0, 5)), apart)

    for batched, calls in [(True, [5]), (False, [2, 3])]:
        dmd = _tiny_dmd(train_window=None)
        dmd.cfg = dataclasses.replace(dmd.cfg, fake_updates=2, fake_rollouts_batched=batched)
        rows, generate = [], dmd.generate
        dmd.generate = lambda batch, step, train: rows.append(len(batch["x"])) or generate(batch, step, train)
        before = [p.detach().clone() for p in dmd.fake.parameters()]
        figures = dmd.before_step(lambda i: a if i == -1 else b, step=0)
        assert rows == calls and figures["fake_loss"] > 0 and figures["fake_grad_norm"] > 0
        assert any(not torch.equal(p, q) for p, q in zip(before, dmd.fake.parameters()))


def test_distill_rolls_out_past_the_training_window_and_keeps_its_window(tiny_teacher, tmp_path):
    from crcm_robotics.config import ConfigError
    from distill.run import run_distill

    out = tmp_path / "long"
    common = [f"teacher={tiny_teacher}", "train.progress=false", "dmd.fake_updates=1", "optim.batch_size=2",
              "train.log_every=1", "data.window=4", "rcm.scm_steps=1"]
    cfg = compose_config("config", ["method=causal_rcm", f"train.out={out}", "train.steps=2",
                                    "dmd.rollout_frames=5", *common], "crcm_robotics.conf.distill")
    assert run_distill(cfg).steps == 2
    log = [json.loads(line) for line in (tmp_path / "long_log.jsonl").read_text().splitlines()]
    assert log[-1]["stage"] == 2 and "dmd" in log[-1] and "scm" in log[-1]
    assert load_checkpoint(out).meta["window"] == 4  # the student's window is the training window
    for method, frames, match in [("tf_scm", 5, "applies to sf_dmd and causal_rcm"),
                                  ("sf_dmd", 2, "must exceed the 2 frames a training window generates"),
                                  ("sf_dmd", -1, "must be ≥ 0")]:
        bad = compose_config("config", [f"method={method}", f"train.out={tmp_path / 'bad'}",
                                        f"dmd.rollout_frames={frames}", *common],
                             "crcm_robotics.conf.distill")
        with pytest.raises(ConfigError, match=match):
            run_distill(bad)


def test_a_shallower_student_starts_from_the_teachers_blocks_and_serves(tiny_teacher, tmp_path,
                                                                        one_torch_thread):
    """student_depth=D: the student keeps D of the teacher's blocks (evenly spaced, first and last), every
    other weight copied; its checkpoint records the depth, so the runtime builds it (and its KV cache) at that
    depth."""
    import dataclasses

    import numpy as np

    from crcm_robotics.config import ConfigError
    from crcm_robotics.model.checkpoint import build_model
    from crcm_robotics.model.dit import CausalDiT
    from crcm_robotics.runtime.world_model import WorldModel
    from distill.run import run_distill
    from distill.student import kept_blocks, shallow_student

    assert kept_blocks(8, 4) == [0, 2, 5, 7] and kept_blocks(8, 8) == list(range(8))
    assert kept_blocks(2, 1) == [0]
    with pytest.raises(ValueError, match="expected 1..8"):
        kept_blocks(8, 9)
    teacher = build_model(load_checkpoint(tiny_teacher))
    assert teacher.cfg.depth == 2
    same = shallow_student(teacher, 2).state_dict()
    assert all(torch.equal(same[k], v) for k, v in teacher.state_dict().items())  # its own depth: a copy
    deep = CausalDiT(dataclasses.replace(teacher.cfg, depth=8))  # random blocks, each its own weights
    four = shallow_student(deep, 4)
    assert four.cfg.depth == 4 and len(four.blocks) == 4
    deep_state = deep.state_dict()
    for key, value in four.state_dict().items():
        parts = key.split(".")
        if parts[0] == "blocks":  # student block j is the teacher's block kept_blocks(8, 4)[j]
            parts[1] = str([0, 2, 5, 7][int(parts[1])])
        assert torch.equal(value, deep_state[".".join(parts)]), key
    assert sum(p.numel() for p in four.parameters()) < sum(p.numel() for p in deep.parameters())

    out = tmp_path / "shallow"
    cfg = compose_config("config", ["method=causal_rcm", f"teacher={tiny_teacher}", f"train.out={out}",
                                    "train.steps=2", "train.progress=false", "rcm.scm_steps=1",
                                    "dmd.fake_updates=1", "optim.batch_size=2", "student_depth=1"],
                         "crcm_robotics.conf.distill")
    assert run_distill(cfg).steps == 2
    student = load_checkpoint(out)
    assert student.model_config.depth == 1 and not any(k.startswith("blocks.1.") for k in student.state_dict)
    wm = WorldModel.load(out, device="cpu", max_batch=4)
    k = wm.context_frames
    ctx = (np.zeros((k, *wm.image_shape), np.uint8), np.zeros((k, 2), np.float32))
    result = wm.imagine(np.zeros((3, 2, 2), np.float32), context=ctx, seed=0)
    assert result.frames.shape == (3, 2, *wm.image_shape)
    for bad in ("3", "-1"):
        cfg = compose_config("config", [f"teacher={tiny_teacher}", f"student_depth={bad}"],
                             "crcm_robotics.conf.distill")
        with pytest.raises(ConfigError, match=f"student_depth={bad}: expected 0 \\(the teacher's 2 "
                           "blocks\\) or 1..2"):
            run_distill(cfg)


def test_a_student_on_its_teachers_store_holds_out_the_teachers_episodes(tiny_teacher, tmp_path, capsys):
    """A student distilled on its teacher's store takes the teacher's recorded split, whatever its own
    data.val_fraction says (the tiny teacher held out a quarter, distillation's default is a tenth): the held-out
    episodes give both models' validation and the planning goals."""
    from distill.run import run_distill

    out = tmp_path / "student"
    cfg = compose_config("config", ["method=tf_scm", f"teacher={tiny_teacher}", "train.steps=1",
                                    f"train.out={out}", "train.progress=false", "train.validation.every=0"],
                         "crcm_robotics.conf.distill")
    assert cfg.data.val_fraction != 0.25
    run_distill(cfg)
    teacher, student = load_checkpoint(tiny_teacher).meta, load_checkpoint(out).meta
    assert student["split"] == teacher["split"] and len(teacher["split"]["val"]) == 3
    assert "is the teacher's store, so its split is used (3 episodes held out, not the 1" in capsys.readouterr().err


def test_inherited_split_needs_the_same_store_and_a_recorded_split():
    from distill.batches import Split
    from distill.context import inherited_split

    own = Split([0, 1, 2], [3])
    teacher = {"data_hash": "h", "split": {"train": [0, 1], "val": [2, 3]}}
    assert inherited_split(own, teacher, "h", "store", say=False) == Split([0, 1], [2, 3])
    assert inherited_split(own, teacher, "another", "store", say=False) is own
    assert inherited_split(own, {"data_hash": "h"}, "h", "store", say=False) is own
    assert inherited_split(own, None, "h", "store", say=False) is own
    held_none = {"data_hash": "h", "split": {"train": [0, 1, 2, 3], "val": []}}  # data.val_fraction=0
    assert inherited_split(own, held_none, "h", "store", say=False) is own
