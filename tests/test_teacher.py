"""Teacher training: end to end with eval, exact resume, and data-parallel training on 2 CPU processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from crcm_robotics.conf import compose_config
from crcm_robotics.model.checkpoint import load_checkpoint, load_train_state


def teacher_cfg(store, out, *extra):
    return compose_config("config", [f"data.path={store}", f"train.out={out}", "train.progress=false",
                                     "data.val_fraction=0.25", *extra], "crcm_robotics.conf.teacher")


def test_tiny_teacher_trains_and_evaluates_end_to_end(tiny_teacher, tmp_path):
    from crcm_robotics.eval.evaluate import evaluate

    ckpt = load_checkpoint(tiny_teacher)
    assert ckpt.meta["kind"] == "teacher" and ckpt.meta["step"] == 40
    assert set(ckpt.meta["split"]["val"]).isdisjoint(ckpt.meta["split"]["train"])
    assert all(p.stat().st_size <= 15 * 2**20 for p in tiny_teacher.glob("*.safetensors"))
    result = evaluate(compose_config("eval", [f"ckpt={tiny_teacher}", "horizon=4", "context=2", "steps=2",
                                              "solver=ddim", f"out={tmp_path / 'report'}", "time_batch1=false"]))
    assert result["held_out_split"] is True
    assert len(result["psnr"]) == len(result["ssim"]) == len(result["agent_err_px"]) == 4
    assert result["episodes"] == len(ckpt.meta["split"]["val"])
    assert len(result["baseline_copy_last"]["psnr"]) == 4
    for name in ("strips.png", "rollout.gif", "psnr_vs_horizon.png", "agent_error_vs_horizon.png", "result.json"):
        assert (tmp_path / "report" / name).stat().st_size > 0
    # the baseline really is "copy the last context frame": its step-1 PSNR is finite and below 100 dB
    assert 10 < result["baseline_copy_last"]["psnr"][0] < 100


def test_resume_reproduces_an_uninterrupted_run_exactly(pusht_store_32, tmp_path):
    from distill.teacher import train_teacher

    train_teacher(teacher_cfg(pusht_store_32, tmp_path / "straight", "train.steps=4", "optim.batch_size=2"))
    train_teacher(teacher_cfg(pusht_store_32, tmp_path / "half", "train.steps=2", "optim.batch_size=2"))
    train_teacher(teacher_cfg(pusht_store_32, tmp_path / "resumed", "train.steps=4", "optim.batch_size=2",
                              f"train.resume={tmp_path / 'half'}"))
    a, b = load_train_state(tmp_path / "straight"), load_train_state(tmp_path / "resumed")
    assert a["step"] == b["step"] == 4
    for key in a["student"]:
        torch.testing.assert_close(a["student"][key], b["student"][key], rtol=0, atol=0)
        torch.testing.assert_close(a["ema"][key], b["ema"][key], rtol=0, atol=0)
    half = load_train_state(tmp_path / "half")
    assert any(not torch.equal(half["student"][k], a["student"][k]) for k in a["student"])


@pytest.mark.slow
def test_data_parallel_training_on_two_gloo_processes(pusht_store_32, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
           "-m", "crcm_robotics.cli", "train", "teacher", f"data.path={pusht_store_32}", f"train.out={out}",
           "train.steps=3", "train.progress=false", "optim.batch_size=4", "data.val_fraction=0.25",
           "train.device=cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(summary) == 1 and summary[0]["steps"] == 3  # only rank 0 reports
    assert load_checkpoint(out).meta["step"] == 3


def test_teacher_evaluates_with_the_student_sampler_as_the_undistilled_reference(tiny_teacher, tmp_path):
    from crcm_robotics.eval.evaluate import evaluate

    common = [f"ckpt={tiny_teacher}", "horizon=3", "context=2", "time_batch1=false", "report=false"]
    result = evaluate(compose_config("eval", [*common, "sampler=consistency", "steps=2"]))
    assert result["sampler"] == {"kind": "consistency", "steps": 2, "solver": None}
    assert result["network_passes_per_frame"] == 3 and len(result["psnr"]) == 3
    later = evaluate(compose_config("eval", [*common, "sampler=consistency", "steps=2", "mid_times=[0.4]"]))
    assert later["sampler"] == {"kind": "consistency", "steps": 2, "solver": None, "mid_times": [0.4]}
    assert later["psnr"] != result["psnr"]  # the second jump starts from another time
    with pytest.raises(ValueError, match="needs steps="):
        evaluate(compose_config("eval", [*common, "sampler=consistency"]))
    with pytest.raises(ValueError, match="mid_times"):
        evaluate(compose_config("eval", [*common, "sampler=consistency", "steps=2", "mid_times=[0.4,0.2]"]))
    with pytest.raises(ValueError, match="mid_times apply to the consistency sampler"):
        evaluate(compose_config("eval", [*common, "mid_times=[0.4]"]))
    with pytest.raises(ValueError, match="unknown"):
        evaluate(compose_config("eval", [*common, "sampler=flow", "steps=2"]))


def test_motion_weight_marks_changed_pixels_and_reweights_the_loss():
    from crcm_robotics.config import ModelConfig, TeacherObjectiveConfig
    from crcm_robotics.model.dit import CausalDiT
    from distill.teacher import denoising_loss, motion_weight_map

    prev = torch.zeros(1, 2, 3, 8, 8)
    x0 = prev.clone()
    x0[0, 1, :, 4, 4] = 1.0  # one pixel changes in frame 1 (unit space; ×σ_data 0.5 = 0.5 > 0.05)
    w = motion_weight_map(x0, prev, weight=9.0, threshold=0.05, sigma_data=0.5)
    assert w.shape == (1, 2, 1, 8, 8)
    assert torch.all(w[0, 0] == 1.0)  # frame 0: nothing moved
    assert torch.all(w[0, 1, 0, 3:6, 3:6] == 10.0)  # the changed pixel and its 3×3 neighbourhood
    assert w[0, 1].sum() == 64 + 9 * 9
    x0[0, 1, :, 0, 0] = 0.04  # a change under the threshold does not count
    assert motion_weight_map(x0, prev, 9.0, 0.05, 0.5)[0, 1, 0, 0, 0] == 1.0
    wp = motion_weight_map(x0, prev, 9.0, 0.05, 0.5, patch=4)  # the 3×3 spot touches all four 4×4 patches
    x0[0, 1, :, 4, 4] = 0.0
    x0[0, 1, :, 1, 1] = 1.0  # a spot inside the top-left patch only
    wq = motion_weight_map(x0, prev, 9.0, 0.05, 0.5, patch=4)
    assert torch.all(wp[0, 1] == 10.0)
    assert torch.all(wq[0, 1, 0, :4, :4] == 10.0) and torch.all(wq[0, 1, 0, 4:] == 1.0)

    cfg = ModelConfig(height=16, width=16, patch=4, dim=32, depth=1, heads=2, cache_frames=3, action_dim=2)
    net = CausalDiT(cfg)
    torch.nn.init.normal_(net.final.linear.weight, std=0.1)  # a non-zero output, so errors differ by pixel
    x = torch.randn(2, 3, 3, 16, 16)
    x_prev = torch.cat([torch.randn(2, 1, 3, 16, 16), x[:, :-1]], dim=1)
    x_prev[:, 1:, :, :8] = x[:, 1:, :, :8]  # the top half of frames 1, 2 is static
    act = torch.randn(2, 3, 2)
    losses = []
    for mw in (0.0, 20.0):
        torch.manual_seed(0)
        loss, _ = denoising_loss(net, x, x_prev, act, TeacherObjectiveConfig(motion_weight=mw))
        assert torch.isfinite(loss)
        losses.append(float(loss.detach()))
    assert losses[0] != pytest.approx(losses[1], rel=1e-4)
    with pytest.raises(ValueError, match="motion_region"):
        TeacherObjectiveConfig(motion_region="blob").validate()


def test_state_probe_loss_adds_the_probes_reading_of_the_predicted_frames(pusht_store_32, tmp_path,
                                                                          one_torch_thread):
    from crcm_robotics.config import ConfigError, TeacherObjectiveConfig
    from crcm_robotics.data.store import TrajectoryStore
    from crcm_robotics.model.checkpoint import load_checkpoint
    from crcm_robotics.model.dit import CausalDiT
    from crcm_robotics.model.tokenizer import PixelCodec
    from crcm_robotics.plan.probe import ProbeSpec, StateProbe, load_probe, save_probe
    from distill.probe import train_probe
    from distill.teacher import denoising_loss, state_probe_loss, train_teacher

    probe_dir = tmp_path / "probe"
    train_probe(compose_config("train_probe", [f"data.path={pusht_store_32}", f"out={probe_dir}", "steps=10",
                                               "batch_size=16", "width=8", "progress=false"]))
    probe = load_probe(probe_dir).requires_grad_(False)
    store = TrajectoryStore(pusht_store_32)
    frames = torch.from_numpy(store.frames(0, 6)).reshape(2, 3, 32, 32, 3)
    state = torch.from_numpy(store.state()[:6]).reshape(2, 3, -1)
    x0 = PixelCodec(0.5).encode(frames)
    # the loss is the probe's embedding error: zero against the probe's own reading, positive against others
    own = probe.embed(frames.flatten(0, 1)).reshape(2, 3, -1)
    x_hat = x0.clone().requires_grad_(True)
    loss = state_probe_loss(probe, x_hat, state, 0.5)
    expected = ((own - probe.spec.embed_states(state.flatten(0, 1).float()).reshape(2, 3, -1)) ** 2).mean()
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-4) and float(loss.detach()) > 0
    loss.backward()
    assert x_hat.grad is not None and x_hat.grad.abs().sum() > 0  # every predicted pixel can be moved by it

    # inside the denoising loss: exactly the plain loss plus weight × the state term, whose gradient reaches
    # the network; without a probe (SF-DMD's fake score) the weight is ignored
    from crcm_robotics.config import ModelConfig
    net = CausalDiT(ModelConfig(height=32, width=32, patch=8, dim=32, depth=1, heads=2, cache_frames=2,
                                action_dim=store.action_dim))
    torch.nn.init.normal_(net.final.linear.weight, std=0.1)
    x_prev = torch.cat([x0[:, :1], x0[:, :-1]], dim=1)
    act = torch.randn(2, 3, store.action_dim)
    runs = {}
    for name, cfg, p in (("plain", TeacherObjectiveConfig(), None),
                         ("no_probe", TeacherObjectiveConfig(state_weight=2.0, state_probe="p"), None),
                         ("state", TeacherObjectiveConfig(state_weight=2.0, state_probe="p"), probe)):
        torch.manual_seed(0)
        runs[name] = denoising_loss(net, x0, x_prev, act, cfg, probe=p, state=state)
    assert float(runs["no_probe"][0]) == float(runs["plain"][0]) and "state_loss" not in runs["no_probe"][1]
    state_term = runs["state"][1]["state_loss"]
    assert state_term > 0
    assert float(runs["state"][0]) == pytest.approx(float(runs["plain"][0]) + 2.0 * state_term, rel=1e-5)
    net.zero_grad()
    (runs["state"][0] - runs["plain"][0]).backward()
    assert sum(float(p.grad.abs().sum()) for p in net.parameters() if p.grad is not None) > 0

    # a real run logs the term; the probe is not trained and not saved with the teacher
    out = tmp_path / "teacher"
    before = {k: v.clone() for k, v in probe.state_dict().items()}
    train_teacher(teacher_cfg(pusht_store_32, out, "train.steps=2", "train.log_every=1", "optim.batch_size=2",
                              "objective.state_weight=0.5", f"objective.state_probe={probe_dir}"))
    logs = [json.loads(line) for line in out.with_name("teacher_log.jsonl").read_text().splitlines()]
    assert all(r["state_loss"] > 0 for r in logs if "loss" in r) and len(logs) == 2
    assert all(torch.equal(before[k], v) for k, v in load_probe(probe_dir).state_dict().items())
    assert not any(k.startswith(("features.", "head.")) for k in load_checkpoint(out).state_dict)

    # bad settings: one-line errors naming what is wrong
    def run(name, *extra):
        train_teacher(teacher_cfg(pusht_store_32, tmp_path / name, "train.steps=1",
                                  "objective.state_weight=1", *extra))

    with pytest.raises(ConfigError, match="state_weight > 0 needs objective.state_probe"):
        run("t1")
    spec = probe.spec
    wrong_size = save_probe(tmp_path / "p64", StateProbe(ProbeSpec(spec.state_names, spec.angles, spec.centre,
                                                                   spec.scale, (64, 64), 8)))
    with pytest.raises(ConfigError, match="reads 64x64 frames; this model predicts 32x32"):
        run("t2", f"objective.state_probe={wrong_size}")
    three = save_probe(tmp_path / "p3", StateProbe(ProbeSpec(("a", "b", "c"), (False,) * 3, (0.0,) * 3,
                                                             (1.0,) * 3, (32, 32), 8)))
    with pytest.raises(ConfigError, match="reads 3 states .* the store logs 5 state columns"):
        run("t3", f"objective.state_probe={three}")
    with pytest.raises(ConfigError, match="state_weight must be ≥ 0"):
        TeacherObjectiveConfig(state_weight=-1.0).validate()


def test_init_starts_a_new_run_from_a_checkpoints_weights(tiny_teacher, pusht_store_32, tmp_path):
    from crcm_robotics.config import ConfigError
    from distill.teacher import train_teacher

    base = load_checkpoint(tiny_teacher, weights="last")
    # at rate 0 the network keeps the weights it started from: the run's EMA (what it saves) is exactly them
    train_teacher(teacher_cfg(pusht_store_32, tmp_path / "ft", "train.steps=2", "optim.batch_size=2",
                              "optim.lr=0", f"init={tiny_teacher}"))
    ft = load_checkpoint(tmp_path / "ft", weights="last")
    assert ft.meta["init"] == str(tiny_teacher) and load_train_state(tmp_path / "ft")["step"] == 2
    for key, value in base.state_dict.items():
        torch.testing.assert_close(ft.state_dict[key], value.float(), rtol=0, atol=0)
    with pytest.raises(ConfigError, match=r"its network is not this run's: model.depth \(\d+ there, 1 here\)"):
        train_teacher(teacher_cfg(pusht_store_32, tmp_path / "bad", "train.steps=1", "model.depth=1",
                                  f"init={tiny_teacher}"))
    with pytest.raises(ConfigError, match="init= starts a new run .* give one"):
        train_teacher(teacher_cfg(pusht_store_32, tmp_path / "both", "train.steps=1", f"init={tiny_teacher}",
                                  f"train.resume={tmp_path / 'ft'}"))
