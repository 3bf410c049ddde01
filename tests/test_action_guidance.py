"""Classifier-free action guidance: the learnt null action, action dropout in the teacher's loss, and guided
sampling (F_null + w·(F_action − F_null)) through the sampler, the checkpoint meta and WorldModel."""

from __future__ import annotations

import pytest
import torch

from crcm_robotics.config import ConfigError, ModelConfig, TeacherObjectiveConfig
from crcm_robotics.model import trigflow as tf
from crcm_robotics.model.dit import CausalDiT
from crcm_robotics.model.sampler import SamplerSpec, denoise_frame, encode_context, rollout, sampler_from_meta
from distill.teacher import denoising_loss

H = W = 16


def make_model(action_null: bool = True, seed: int = 0) -> CausalDiT:
    """A tiny float64 model with every weight perturbed (adaLN-Zero and the zero null action would otherwise
    make the action-free prediction equal the conditioned one)."""
    torch.manual_seed(seed)
    cfg = ModelConfig(height=H, width=W, patch=4, dim=32, depth=2, heads=2, cache_frames=6, action_null=action_null)
    model = CausalDiT(cfg).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def context(model: CausalDiT, b: int = 2):
    torch.manual_seed(1)
    x_ctx, a_ctx = torch.randn(b, 2, 3, H, W, dtype=torch.float64), torch.randn(b, 2, 2, dtype=torch.float64)
    cache = model.new_cache(b, "cpu", torch.float64)
    encode_context(model, cache, x_ctx, a_ctx)
    return cache, x_ctx[:, -1:]


def guided_x0(model: CausalDiT, spec: SamplerSpec, action: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    cache, prev = context(model, action.shape[0])
    with torch.no_grad():
        return denoise_frame(model, cache, action, noise, spec, prev)


def test_guidance_extrapolates_from_the_null_actions_prediction():
    model = make_model()
    action = torch.randn(2, 1, 2, dtype=torch.float64)
    noise = torch.randn(1, 2, 1, 3, H, W, dtype=torch.float64)
    plain = guided_x0(model, SamplerSpec("consistency", 1), action, noise)
    null = guided_x0(model, SamplerSpec("consistency", 1), model.null_actions(action).detach(), noise)
    assert not torch.allclose(plain, null)  # the command changes the frame
    # one consistency jump's x0 is linear in F, so guidance w moves x0 w times the command's change from null
    for w in (0.0, 1.0, 2.5):
        out = guided_x0(model, SamplerSpec("consistency", 1, guidance=w), action, noise)
        torch.testing.assert_close(out, null + w * (plain - null), rtol=1e-9, atol=1e-9)


def test_guided_rollout_runs_every_sampler_and_writes_the_cache_with_the_command():
    model = make_model()
    actions = torch.randn(2, 3, 2, dtype=torch.float64)
    for spec in (SamplerSpec("ode", 2, "ddim", guidance=2.0), SamplerSpec("consistency", 2, guidance=2.0)):
        cache, prev = context(model)
        with torch.no_grad():
            out = rollout(model, cache, actions, spec, prev, generator=torch.Generator().manual_seed(0))
        assert out.shape == (2, 3, 3, H, W) and torch.isfinite(out).all()
        assert int(cache.frames_seen) == 2 + 3
    # guidance 1 is the unguided sampler exactly
    spec1, spec_plain = SamplerSpec("ode", 2, "ddim", guidance=1.0), SamplerSpec("ode", 2, "ddim")
    runs = []
    for spec in (spec1, spec_plain):
        cache, prev = context(model)
        with torch.no_grad():
            runs.append(rollout(model, cache, actions, spec, prev, generator=torch.Generator().manual_seed(0)))
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)


def test_guidance_needs_a_null_action_and_a_sane_weight():
    model = make_model(action_null=False)
    assert model.null_action is None
    with pytest.raises(ValueError, match="no null action"):
        guided_x0(model, SamplerSpec("consistency", 1, guidance=2.0), torch.randn(2, 1, 2, dtype=torch.float64),
                  torch.randn(1, 2, 1, 3, H, W, dtype=torch.float64))
    for bad in (-1.0, float("nan"), 21.0):
        with pytest.raises(ConfigError, match="guidance must be in"):
            SamplerSpec("ode", 4, "ddim", guidance=bad)
        with pytest.raises(ConfigError, match="guidance must be in") as refused:  # said once, not twice
            sampler_from_meta({"sampler": {"kind": "ode", "steps": 4, "solver": "ddim"}}, guidance=bad)
        assert refused.value.__cause__ is None


def test_guidance_travels_in_the_sampler_meta_and_doubles_the_denoising_passes():
    spec = SamplerSpec("ode", 4, "ddim", guidance=2.0)
    assert spec.network_passes == 2 * 4 + 1
    assert SamplerSpec("ode", 4, "ddim").network_passes == 4 + 1
    assert SamplerSpec("consistency", 2, guidance=3.0).network_passes == 2 * 2 + 1
    meta = {"sampler": spec.to_meta()}
    assert meta["sampler"]["guidance"] == 2.0
    assert "guidance" not in SamplerSpec("ode", 4, "ddim").to_meta()  # unguided metas are unchanged
    assert sampler_from_meta(meta).guidance == 2.0
    assert sampler_from_meta(meta, guidance=1.0).guidance == 1.0
    assert sampler_from_meta({"sampler": {"kind": "ode", "steps": 4, "solver": "ddim"}}, guidance=1.5).guidance == 1.5


def test_action_dropout_trains_the_null_action_and_only_the_noisy_frames_lose_their_command():
    model = make_model().float().train()
    x = torch.randn(2, 3, 3, H, W)
    x_prev = torch.cat([torch.randn(2, 1, 3, H, W), x[:, :-1]], dim=1)
    act = torch.randn(2, 3, 2)
    torch.manual_seed(0)
    loss, _ = denoising_loss(model, x, x_prev, act, TeacherObjectiveConfig(action_dropout=0.0))
    loss.backward()
    assert model.null_action.grad is None or float(model.null_action.grad.abs().sum()) == 0.0
    model.zero_grad()
    torch.manual_seed(0)
    loss, _ = denoising_loss(model, x, x_prev, act, TeacherObjectiveConfig(action_dropout=0.9))
    loss.backward()
    assert float(model.null_action.grad.abs().sum()) > 0.0
    with pytest.raises(ValueError, match="no null action"):
        denoising_loss(make_model(action_null=False).float(), x, x_prev, act,
                       TeacherObjectiveConfig(action_dropout=0.5))
    for bad in (-0.1, 1.0):
        with pytest.raises(ConfigError, match="action_dropout"):
            TeacherObjectiveConfig(action_dropout=bad).validate()


def test_action_null_leaves_older_checkpoints_fingerprints_alone():
    assert "action_null" not in ModelConfig().key()
    assert ModelConfig(action_null=True).key()["action_null"] is True
    assert "null_action" not in CausalDiT(ModelConfig(height=H, width=W, patch=4, dim=32, depth=1,
                                                       heads=2)).state_dict()


def test_dropped_frames_see_the_null_action_and_kept_ones_their_command():
    """With dropout the noisy frames' F equals a pass whose noisy actions are null where dropped: the clean
    context frames keep their commands (what the KV cache holds at guided inference)."""
    from distill.layout import tf_forward

    model = make_model()
    b, t = 2, 3
    x = torch.randn(b, t, 3, H, W, dtype=torch.float64)
    x_prev = torch.cat([torch.randn(b, 1, 3, H, W, dtype=torch.float64), x[:, :-1]], dim=1)
    act = torch.randn(b, t, 2, dtype=torch.float64)
    times = torch.full((b, t), 0.7, dtype=torch.float64)
    x_t = tf.add_noise(x, torch.randn_like(x), times)
    zeros = torch.zeros(b, t, dtype=torch.float64)
    null = model.null_actions(act).detach()
    with torch.no_grad():
        plain = tf_forward(model, x, zeros, x_t, times, act, x_prev)
        all_null = tf_forward(model, x, zeros, x_t, times, act, x_prev, null)
        context_null = tf_forward(model, x, zeros, x_t, times, null, x_prev, act)
    assert not torch.allclose(plain, all_null)
    assert not torch.allclose(plain[:, 1:], context_null[:, 1:])  # later frames see the context's commands
    torch.testing.assert_close(plain[:, :1], context_null[:, :1])  # frame 0 sees no clean frame's command
