"""Autoregressive rollout with the KV cache: one implementation for inference and self-forcing training.

Per frame: draw noise, denoise it given the cache (teacher: N-step PF-ODE;
student: a few consistency jumps with re-noising), then run the clean frame
once through the network with ``write_cache=True`` so later frames see it.

Noise is passed in explicitly (``[S, B, 1, C, H, W]``, S = draws per frame) so
the same function can be captured in a CUDA graph or exported to ONNX.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from crcm_robotics.config import ConfigError
from crcm_robotics.model import trigflow as tf
from crcm_robotics.model.dit import CausalDiT, FrameTerms
from crcm_robotics.model.kv_cache import KVCache


@dataclass(frozen=True)
class SamplerSpec:
    """How to denoise one frame: ``ode`` (teacher, ``solver`` over N steps) or ``consistency`` (student).

    Teacher time grids start at t = atan(80) (EDM σ_max = 80, where x_t is noise to 1e-4) and use
    Karras spacing; a 1-step ``ddim`` teacher returns its x0 estimate from pure noise. A consistency
    sampler's ``mid_times`` (``None`` = the defaults of :func:`trigflow.student_time_grid`) are the times
    between its jumps. ``guidance`` w ≠ 1 is classifier-free action guidance: each denoising pass also
    runs with the network's learnt null action (``model.action_null``) and takes
    F_null + w·(F_action − F_null), which pushes the frame further towards what the command changes
    (w = 0: the action-free prediction); it doubles the denoising passes.
    """

    kind: Literal["ode", "consistency"]
    steps: int
    solver: Literal["euler", "heun", "ddim"] = "heun"
    mid_times: tuple[float, ...] | None = None
    guidance: float = 1.0

    def __post_init__(self) -> None:
        if self.mid_times is not None and self.kind != "consistency":
            raise ConfigError(f"mid_times apply to the consistency sampler, not to kind={self.kind!r}")
        if not 0.0 <= self.guidance <= 20.0:  # also refuses NaN
            raise ConfigError(f"guidance must be in [0, 20] (1 = no guidance), got {self.guidance}")
        self.times()  # a bad step count or mid_times fails here, not on the first frame

    @property
    def guided(self) -> bool:
        return self.guidance != 1.0

    def times(self) -> list[float]:
        if self.kind == "ode":
            return tf.teacher_time_grid(self.steps)
        return tf.student_time_grid(self.steps, self.mid_times)

    def to_meta(self) -> dict[str, Any]:
        """The checkpoint-meta form read back by :func:`sampler_from_meta`."""
        meta: dict[str, Any] = {"kind": self.kind, "steps": self.steps,
                                "solver": self.solver if self.kind == "ode" else None}
        if self.mid_times is not None:
            meta["mid_times"] = list(self.mid_times)
        if self.guided:
            meta["guidance"] = self.guidance
        return meta

    @property
    def noise_draws(self) -> int:
        return 1 if self.kind == "ode" else self.steps

    @property
    def network_passes(self) -> int:
        """Network evaluations per frame, the cache write included (guidance doubles the denoising ones)."""
        if self.kind == "consistency":
            denoising = self.steps
        else:
            denoising = (2 if self.solver == "heun" else 1) * self.steps - (1 if self.solver == "heun" else 0)
        return denoising * (2 if self.guided else 1) + 1


def sampler_from_meta(meta: dict[str, Any], steps: int = 0, solver: str | None = None,
                      kind: str | None = None, mid_times: Sequence[float] | None = None,
                      guidance: float | None = None) -> SamplerSpec:
    """The checkpoint's sampler, with ``steps``/``solver``/``kind``/``mid_times``/``guidance`` overridden when
    given.

    ``kind="consistency"`` on a teacher runs its weights with the student's few-step
    sampler: the reference a distilled student has to beat. A student's own ``mid_times``
    apply only at its own step count; other step counts take the defaults unless given.
    """
    s = meta.get("sampler") or {"kind": "ode", "steps": 16, "solver": "heun"}
    kind = kind or s["kind"]
    if kind not in ("ode", "consistency"):
        raise ConfigError(f"sampler kind {kind!r} unknown; expected 'ode' or 'consistency'")
    if kind != s["kind"] and not steps:
        raise ConfigError(f"sampler={kind} on a checkpoint whose own sampler is {s['kind']!r} needs steps=")
    steps = steps or int(s["steps"])
    if mid_times is None and kind == s["kind"] == "consistency" and steps == int(s["steps"]):
        mid_times = s.get("mid_times")
    try:
        return SamplerSpec(kind, steps, solver or s.get("solver") or "heun",  # type: ignore[arg-type]
                           tuple(mid_times) if mid_times is not None else None,
                           float(s.get("guidance", 1.0) if guidance is None else guidance))
    except ConfigError:
        raise  # already says what is wrong (a second copy as its cause would repeat it)
    except ValueError as e:
        raise ConfigError(str(e)) from e


def check_guidance(spec: SamplerSpec, model_cfg: Any, ckpt: object) -> None:
    """Refuse guidance ≠ 1 on a network trained without a null action (``model.action_null``), naming ``ckpt``."""
    if spec.guided and not model_cfg.action_null:
        raise ConfigError(f"guidance={spec.guidance:g}: {ckpt} was trained without a null action "
                          "(model.action_null=false); use guidance=1")


def frame_f(model: CausalDiT, x_t: torch.Tensor, t: torch.Tensor, action: torch.Tensor, prev: torch.Tensor,
            cache: KVCache | None = None, terms: FrameTerms | None = None) -> torch.Tensor:
    """TrigFlow F of noisy frames x_t [B, F, C, H, W] at times t [B, F] given the cache.

    ``prev`` [B, F, C, H, W] is each frame's previous clean frame; with
    ``model.cfg.residual`` the network diffuses the change from it.
    """
    if not model.cfg.residual:
        return model(x_t, t, action, cache=cache, terms=terms)
    g = model(tf.residual_input(x_t, t, prev), t, action, cache=cache, terms=terms)
    return tf.residual_output(g, t, prev)


def encode_context(model: CausalDiT, cache: KVCache, x_ctx: torch.Tensor, a_ctx: torch.Tensor) -> None:
    """Write clean context frames x_ctx [B, K, C, H, W] (with their actions [B, K, A]) into the cache."""
    b, k = x_ctx.shape[:2]
    if k > cache.window:
        raise ValueError(f"{k} context frames exceed the model's {cache.window}-frame KV cache")
    t = torch.zeros(b, k, device=x_ctx.device, dtype=tf.time_dtype(x_ctx))
    model(x_ctx, t, a_ctx, cache=cache, write_cache=True)


def denoise_frame(
    model: CausalDiT,
    cache: KVCache,
    action: torch.Tensor,  # [B, 1, A]
    noise: torch.Tensor,  # [S, B, 1, C, H, W]
    spec: SamplerSpec,
    prev: torch.Tensor,  # [B, 1, C, H, W] the last clean frame (context or generated)
    exit_step: int | None = None,
    grad_exit_only: bool = False,
    terms: FrameTerms | None = None,
) -> torch.Tensor:
    """Denoise one frame given the cache; returns x0 [B, 1, C, H, W].

    ``exit_step`` (consistency only) stops after that step and returns its x0
    estimate; with ``grad_exit_only`` the steps before it run without autograd
    (self-forcing trains through the exit step alone). The passes share one
    :class:`FrameTerms` (``terms``, or a new one), except with ``grad_exit_only``:
    there the exit step computes its own, so that its gradient reaches the action.
    """
    times = spec.times()
    b = action.shape[0]
    if terms is None and not grad_exit_only:
        terms = FrameTerms()
    null_action, null_terms = None, None
    if spec.guided:
        null_action = model.null_actions(action)
        null_terms = None if grad_exit_only else FrameTerms()

    def f_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        f_action = frame_f(model, x, t.reshape(b, 1), action, prev, cache, terms)
        if null_action is None:
            return f_action
        f_null = frame_f(model, x, t.reshape(b, 1), null_action, prev, cache, null_terms)
        return f_null + spec.guidance * (f_action - f_null)

    if spec.kind == "ode":
        if exit_step is not None:
            raise ValueError("exit_step applies to consistency sampling only")
        return tf.ode_sample(f_fn, noise[0], times, spec.solver)

    last = spec.steps - 1 if exit_step is None else exit_step
    if not 0 <= last < spec.steps:
        raise ValueError(f"exit_step {exit_step} outside 0..{spec.steps - 1}")
    x = noise[0]  # x at t = π/2 is pure noise
    x0 = x
    for j in range(last + 1):
        t = torch.full((b,), times[j], device=x.device, dtype=tf.time_dtype(x))
        with torch.set_grad_enabled(torch.is_grad_enabled() and not (grad_exit_only and j < last)):
            x0 = tf.x0_from_f(x, f_fn(x, t), t)
        if j < last:
            t_next = torch.full((b,), times[j + 1], device=x.device, dtype=tf.time_dtype(x))
            x = tf.add_noise(x0.detach() if grad_exit_only else x0, noise[j + 1], t_next)
    return x0


def write_frame(model: CausalDiT, cache: KVCache, x0: torch.Tensor, action: torch.Tensor,
                terms: FrameTerms | None = None) -> None:
    """Run a clean frame [B, 1, C, H, W] through the network once to store its keys/values (``terms``: those
    of the passes that denoised it, reused)."""
    t = torch.zeros(x0.shape[0], 1, device=x0.device, dtype=tf.time_dtype(x0))
    model(x0, t, action, cache=cache, write_cache=True, terms=terms)


def predict_next_frame(
    model: CausalDiT, cache: KVCache, action: torch.Tensor, noise: torch.Tensor, spec: SamplerSpec,
    prev: torch.Tensor,
) -> torch.Tensor:
    """The per-frame step of every runtime backend: denoise, then write the clean frame to the cache (every
    pass sharing one :class:`FrameTerms`)."""
    terms = FrameTerms()
    x0 = denoise_frame(model, cache, action, noise, spec, prev, terms=terms)
    write_frame(model, cache, x0, action, terms)
    return x0


def draw_noise(
    spec: SamplerSpec, shape: Sequence[int], generator: torch.Generator | None, device: torch.device | str
) -> torch.Tensor:
    """Noise for one frame: [S, *shape] with S = spec.noise_draws."""
    return torch.randn(spec.noise_draws, *shape, generator=generator, device=device)


def rollout(
    model: CausalDiT,
    cache: KVCache,
    actions: torch.Tensor,  # [B, H, A] normalized actions producing each future frame
    spec: SamplerSpec,
    prev: torch.Tensor,  # [B, 1, C, H, W] the last context frame
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,  # [H, S, B, 1, C, H, W] to replay exact noise
    exit_steps: Sequence[int] | None = None,
    grad_exit_only: bool = False,
    project: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Generate ``H`` frames autoregressively; returns x0 [B, H, C, H, W] (unit space).

    Inference calls it under ``torch.no_grad``; self-forcing calls it with
    ``exit_steps`` (one per frame) and ``grad_exit_only=True`` so gradients flow
    only through each frame's exit step, while the cache always receives the
    detached clean frame. ``project`` (e.g. ``PixelCodec.quantize``) maps each
    generated frame to what the history should hold — the emitted image — before
    it is cached and used as the next frame's previous frame (and, outside
    training, returned).
    """
    b, horizon = actions.shape[:2]
    cfg = model.cfg
    frame_shape = (b, 1, cfg.channels, cfg.height, cfg.width)
    out = []
    for i in range(horizon):
        a = actions[:, i : i + 1]
        n = noise[i] if noise is not None else draw_noise(spec, frame_shape, generator, actions.device)
        exit_step = None if exit_steps is None else int(exit_steps[i])
        x0 = denoise_frame(model, cache, a, n, spec, prev, exit_step, grad_exit_only)
        history = x0.detach() if project is None else project(x0.detach())
        with torch.no_grad():
            write_frame(model, cache, history, a)
        prev = history
        out.append(x0 if x0.requires_grad else history)
    return torch.cat(out, dim=1)
