"""The causal DiT, its KV cache and the teacher-forcing layout agree with each other exactly."""

from __future__ import annotations

import pytest
import torch

from crcm_robotics.config import ConfigError, ModelConfig
from crcm_robotics.model import trigflow as tf
from crcm_robotics.model.dit import CausalDiT, FrameTerms
from crcm_robotics.model.sampler import SamplerSpec, denoise_frame, encode_context, frame_f, rollout
from distill.layout import teacher_forcing_mask, tf_forward

H = W = 16


def make_model(cache_frames: int = 6, seed: int = 0, residual: bool = True) -> CausalDiT:
    """A tiny float64 model with every weight perturbed (adaLN-Zero would otherwise hide bugs)."""
    torch.manual_seed(seed)
    cfg = ModelConfig(height=H, width=W, patch=4, dim=32, depth=2, heads=2, cache_frames=cache_frames,
                      residual=residual)
    model = CausalDiT(cfg).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def frames(b: int, f: int) -> torch.Tensor:
    return torch.randn(b, f, 3, H, W, dtype=torch.float64)


def test_output_shape_and_frame_causality():
    model = make_model()
    x, a, t = frames(2, 4), torch.randn(2, 4, 2, dtype=torch.float64), torch.rand(2, 4, dtype=torch.float64)
    out = model(x, t, a)
    assert out.shape == (2, 4, 3, H, W)
    x2, a2 = x.clone(), a.clone()
    x2[:, 3] += 1.0  # change the last frame and its action: earlier frames must not notice
    a2[:, 3] += 1.0
    out2 = model(x2, t, a2)
    torch.testing.assert_close(out[:, :3], out2[:, :3], rtol=0, atol=1e-12)
    assert (out[:, 3] - out2[:, 3]).abs().max() > 1e-3


def whole_history_f(model, history, hist_a, x, a, t_now):
    """F of noisy frame x given every clean frame before it explicitly (no cache), residual or not."""
    b = x.shape[0]
    prev = history[-1][:, -1:]
    tt = torch.full((b, 1), t_now, dtype=torch.float64)
    x_in = tf.residual_input(x, tt, prev) if model.cfg.residual else x
    seq, aseq = torch.cat(history + [x_in], 1), torch.cat(hist_a + [a], 1)
    t = torch.zeros(b, seq.shape[1], dtype=torch.float64)
    t[:, -1] = t_now
    out = model(seq, t, aseq)[:, -1:]
    return tf.residual_output(out, tt, prev) if model.cfg.residual else out


def full_recompute(model, x_ctx, a_ctx, actions, noise, spec):
    """Reference rollout: every network call sees the whole clean history explicitly (no cache)."""
    b = x_ctx.shape[0]
    history, hist_a, out = [x_ctx], [a_ctx], []
    times = spec.times()
    for i in range(actions.shape[1]):
        a = actions[:, i : i + 1]
        x = noise[i][0]
        for j in range(spec.steps):
            tt = torch.full((b,), times[j], dtype=torch.float64)
            x0 = tf.x0_from_f(x, whole_history_f(model, history, hist_a, x, a, times[j]), tt)
            if j < spec.steps - 1:
                x = tf.add_noise(x0, noise[i][j + 1], torch.full((b,), times[j + 1], dtype=torch.float64))
        history.append(x0)
        hist_a.append(a)
        out.append(x0)
    return torch.cat(out, 1)


@pytest.mark.parametrize("steps,residual", [(1, True), (2, True), (4, True), (2, False)])
def test_kv_cached_rollout_equals_full_recompute(steps, residual):
    model = make_model(cache_frames=6, residual=residual)
    b, k, horizon = 2, 2, 4  # context + horizon - 1 ≤ cache: every frame sees its whole history
    spec = SamplerSpec("consistency", steps)
    x_ctx, a_ctx = frames(b, k), torch.randn(b, k, 2, dtype=torch.float64)
    actions = torch.randn(b, horizon, 2, dtype=torch.float64)
    noise = torch.randn(horizon, spec.noise_draws, b, 1, 3, H, W, dtype=torch.float64)
    with torch.no_grad():
        cache = model.new_cache(b, "cpu", torch.float64)
        encode_context(model, cache, x_ctx, a_ctx)
        cached = rollout(model, cache, actions, spec, x_ctx[:, -1:], noise=noise)
        reference = full_recompute(model, x_ctx, a_ctx, actions, noise, spec)
    torch.testing.assert_close(cached, reference, rtol=1e-9, atol=1e-9)
    assert int(cache.frames_seen) == k + horizon


def test_teacher_ode_rollout_uses_cache_like_recompute():
    model = make_model()
    spec = SamplerSpec("ode", 3, "heun")
    x_ctx, a_ctx = frames(1, 2), torch.randn(1, 2, 2, dtype=torch.float64)
    action = torch.randn(1, 1, 2, dtype=torch.float64)
    noise = torch.randn(1, 1, 1, 3, H, W, dtype=torch.float64)
    with torch.no_grad():
        cache = model.new_cache(1, "cpu", torch.float64)
        encode_context(model, cache, x_ctx, a_ctx)
        cached = denoise_frame(model, cache, action, noise, spec, x_ctx[:, -1:])

        def f_full(x, t):
            return whole_history_f(model, [x_ctx], [a_ctx], x, action, float(t[0]))

        reference = tf.ode_sample(f_full, noise[0], spec.times(), "heun")
    torch.testing.assert_close(cached, reference, rtol=1e-9, atol=1e-9)


def test_teacher_forcing_layout_matches_cached_inference():
    """Noisy frame i in the training layout sees exactly what inference shows it: clean frames < i."""
    model = make_model(cache_frames=4)
    b, t = 2, 4
    x0, a = frames(b, t), torch.randn(b, t, 2, dtype=torch.float64)
    x_noisy, times = frames(b, t), torch.rand(b, t, dtype=torch.float64)
    x_prev = torch.cat([frames(b, 1), x0[:, :-1]], 1)
    with torch.no_grad():
        tf_out = tf_forward(model, x0, torch.zeros(b, t, dtype=torch.float64), x_noisy, times, a, x_prev)
        for i in range(t):
            cache = model.new_cache(b, "cpu", torch.float64)
            if i:
                encode_context(model, cache, x0[:, :i], a[:, :i])
            out = frame_f(model, x_noisy[:, i : i + 1], times[:, i : i + 1], a[:, i : i + 1],
                          x_prev[:, i : i + 1], cache)
            torch.testing.assert_close(tf_out[:, i : i + 1], out, rtol=1e-9, atol=1e-9)


def test_teacher_forcing_mask_pattern():
    m = teacher_forcing_mask(3).int().tolist()
    # rows/cols: clean0 clean1 | noisy0 noisy1 noisy2
    assert m == [
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [0, 0, 1, 0, 0],
        [1, 0, 0, 1, 0],
        [1, 1, 0, 0, 1],
    ]


def write_stream(model, cache, seq, acts):
    for i in range(seq.shape[1]):
        model(seq[:, i : i + 1], torch.zeros(seq.shape[0], 1, dtype=torch.float64), acts[:, i : i + 1],
              cache=cache, write_cache=True)


def test_ring_buffer_fills_in_order_then_wraps():
    model = make_model(cache_frames=3)
    cache = model.new_cache(1, "cpu", torch.float64)
    write_stream(model, cache, frames(1, 2), torch.randn(1, 2, 2, dtype=torch.float64))
    p = model.tokens_per_frame
    assert cache.valid_tokens().tolist() == [True] * (2 * p) + [False] * p
    assert cache.token_index(1).tolist() == list(range(2 * p, 3 * p))
    write_stream(model, cache, frames(1, 2), torch.randn(1, 2, 2, dtype=torch.float64))
    assert int(cache.frames_seen) == 4 and cache.valid_tokens().all()
    assert cache.token_index(1).tolist() == list(range(p, 2 * p))  # frame 4 overwrites slot 1 (frame 1)


def test_stream_output_depends_on_relative_positions_only():
    """RoPE is relative: the same stream at absolute frames 0.. or 100.. gives the same prediction,
    also after the ring has wrapped (so an endless stream never leaves the trained offsets)."""
    model = make_model(cache_frames=3)
    seq, acts = frames(1, 8), torch.randn(1, 8, 2, dtype=torch.float64)
    probe, probe_a = frames(1, 1), torch.randn(1, 1, 2, dtype=torch.float64)
    probe_t = torch.rand(1, 1, dtype=torch.float64)
    with torch.no_grad():
        plain = model.new_cache(1, "cpu", torch.float64)
        write_stream(model, plain, seq, acts)  # positions 0..7
        shifted = shift_positions(model, seq, acts, 100)  # positions 100..107
        out_plain = model(probe, probe_t, probe_a, cache=plain)  # position 8
        out_shifted = model(probe, probe_t, probe_a, positions=torch.tensor([108]), cache=shifted)
    torch.testing.assert_close(out_plain, out_shifted, rtol=1e-7, atol=1e-7)


def shift_positions(model, seq, acts, offset):
    """A cache holding ``seq`` written at absolute positions offset, offset+1, …"""
    cache = model.new_cache(1, "cpu", torch.float64)
    for i in range(seq.shape[1]):
        model(seq[:, i : i + 1], torch.zeros(1, 1, dtype=torch.float64), acts[:, i : i + 1],
              positions=torch.tensor([offset + i]), cache=cache, write_cache=True)
        assert int(cache.valid_tokens().sum()) == min(i + 1, cache.window) * cache.tokens_per_frame
    return cache


def test_cache_rejects_too_much_context():
    model = make_model(cache_frames=2)
    cache = model.new_cache(1, "cpu", torch.float64)
    with pytest.raises(ValueError, match="exceed the model's 2-frame KV cache"):
        encode_context(model, cache, frames(1, 3), torch.zeros(1, 3, 2, dtype=torch.float64))


def test_residual_parameterization_is_trigflow_on_the_frame_change():
    """Fed x_t − cos t·prev and wrapped by F = g − sin t·prev, a network diffuses the change r = x0 − prev:
    its input is the TrigFlow sample of r, the target g* is r's F, and a zero g at t = π/2 copies prev."""
    prev, change, eps = frames(2, 1), frames(2, 1), frames(2, 1)
    x0 = prev + change
    for t_val in (1.5, 0.8, 0.1):
        t = torch.full((2, 1), t_val, dtype=torch.float64)
        x_t = tf.add_noise(x0, eps, t)
        torch.testing.assert_close(tf.residual_input(x_t, t, prev), tf.add_noise(change, eps, t))
        g_star = tf.target_f(change, eps, t)
        torch.testing.assert_close(tf.residual_output(g_star, t, prev), tf.target_f(x0, eps, t))
    t = torch.full((2, 1), tf.HALF_PI, dtype=torch.float64)
    x_t = tf.add_noise(x0, eps, t)
    f = tf.residual_output(torch.zeros_like(x_t), t, prev)
    torch.testing.assert_close(tf.x0_from_f(x_t, f, t), prev)


def test_bad_model_configs_are_rejected():
    with pytest.raises(ConfigError, match="not divisible by patch"):
        CausalDiT(ModelConfig(height=30, width=32, patch=8))
    with pytest.raises(ConfigError, match="heads"):
        CausalDiT(ModelConfig(dim=30, heads=4))
    for patch in (0, -4):  # 64 % -4 == 0: a negative side would pass the divisibility check
        with pytest.raises(ConfigError, match=f"patch must be a side of ≥ 1 pixel, got {patch}"):
            CausalDiT(ModelConfig(height=64, width=64, patch=patch))


def test_spatial_rope_scores_depend_on_relative_offsets_only():
    """q·k after 3-D RoPE is unchanged when both tokens shift by the same (frame, row, col) offset."""
    from crcm_robotics.model.dit import apply_rope, rope_cos_sin

    grid, hd = (4, 4), 24
    torch.manual_seed(0)
    q, k = torch.randn(hd, dtype=torch.float64), torch.randn(hd, dtype=torch.float64)
    cos, sin = rope_cos_sin(torch.arange(3), grid, hd, 100.0, torch.float64)  # [3*16, hd/2]

    def score(frame_q: int, rc_q: tuple[int, int], frame_k: int, rc_k: tuple[int, int]) -> torch.Tensor:
        iq, ik = frame_q * 16 + rc_q[0] * 4 + rc_q[1], frame_k * 16 + rc_k[0] * 4 + rc_k[1]
        rq = apply_rope(q[None], cos[iq : iq + 1], sin[iq : iq + 1])
        rk = apply_rope(k[None], cos[ik : ik + 1], sin[ik : ik + 1])
        return (rq * rk).sum()

    base = score(1, (1, 2), 0, (0, 1))
    torch.testing.assert_close(score(2, (2, 3), 1, (1, 2)), base)  # same offset, shifted in time and space
    assert not torch.allclose(score(1, (1, 2), 0, (1, 1)), base)  # another offset, another score


def test_action_field_starts_closed_and_acts_per_token_once_trained():
    model = make_model()
    field = model.action_field
    a = torch.randn(2, 3, 2, dtype=torch.float64)
    with torch.no_grad():
        field.mlp[-1].weight.zero_()
        field.mlp[-1].bias.zero_()
    assert field(a).abs().max() == 0  # as initialized: no effect until trained
    with torch.no_grad():
        field.mlp[-1].weight.normal_()
    out = field(a)  # [B, F, P, D]
    assert out.shape == (2, 3, model.tokens_per_frame, model.cfg.dim)
    assert not torch.allclose(out[:, :, 0], out[:, :, 1])  # tokens at different places get different vectors


def test_qk_norm_takes_the_fused_kernel_under_bf16_autocast():
    """The weight follows q/k's dtype: no unfused fallback (and its warning), and the fp32 result to bf16's
    precision."""
    import warnings

    from crcm_robotics.model.dit import QKNorm

    torch.manual_seed(0)
    norm = QKNorm(16, eps=1e-6)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(2, 4, 10, 16)
    with warnings.catch_warnings(record=True) as caught, torch.autocast("cpu", dtype=torch.bfloat16):
        warnings.simplefilter("always")
        y = norm(x.bfloat16())
    assert y.dtype == torch.bfloat16
    assert not [w for w in caught if "Mismatch dtype" in str(w.message)]
    reference = torch.nn.functional.rms_norm(x, (16,), norm.weight, 1e-6)
    torch.testing.assert_close(y.float(), reference, rtol=2e-2, atol=2e-2)
    assert isinstance(norm, torch.nn.RMSNorm)  # export_copy still swaps it for the explicit form


def test_a_frames_passes_share_its_action_terms_once():
    """predict_next_frame's passes (2 denoising + the cache write) compute the action conditioning once."""
    from crcm_robotics.model.sampler import predict_next_frame

    model = make_model()
    calls = []
    for module in (model.action_field, model.action_embed):
        module.register_forward_hook(lambda m, args, out: calls.append(type(m).__name__))
    cache = model.new_cache(2, "cpu", torch.float64)
    encode_context(model, cache, frames(2, 2), torch.randn(2, 2, 2, dtype=torch.float64))
    spec = SamplerSpec("consistency", 2)
    noise = torch.randn(2, 2, 1, 3, H, W, dtype=torch.float64)
    calls.clear()
    with torch.no_grad():
        predict_next_frame(model, cache, torch.randn(2, 1, 2, dtype=torch.float64), noise, spec, frames(2, 1))
    assert sorted(calls) == ["ActionEmbedder", "ActionField"]


def test_frame_terms_refuse_another_batch():
    model = make_model()
    terms = FrameTerms()
    x, t, a = frames(2, 1), torch.rand(2, 1, dtype=torch.float64), torch.randn(2, 1, 2, dtype=torch.float64)
    model(x, t, a, terms=terms)
    with pytest.raises(ValueError, match=r"FrameTerms filled for \(batch, frames, dtype\) \(2, 1"):
        model(frames(3, 1), torch.rand(3, 1, dtype=torch.float64), torch.randn(3, 1, 2, dtype=torch.float64),
              terms=terms)


def test_self_forcing_exit_step_gradient_reaches_the_action():
    """With grad_exit_only the steps before the exit run without autograd: the exit step must not reuse their
    action terms, or the action embedding would get no gradient."""
    model = make_model()
    cache = model.new_cache(2, "cpu", torch.float64)
    with torch.no_grad():
        encode_context(model, cache, frames(2, 1), torch.randn(2, 1, 2, dtype=torch.float64))
    out = rollout(model, cache, torch.randn(2, 2, 2, dtype=torch.float64), SamplerSpec("consistency", 2),
                  frames(2, 1), exit_steps=[1, 1], grad_exit_only=True)
    out.square().sum().backward()
    grad = model.action_embed.mlp[0].weight.grad
    assert grad is not None and grad.abs().sum() > 0
