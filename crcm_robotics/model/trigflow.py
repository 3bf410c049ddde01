"""TrigFlow maths, apart from any network (STYLE §2).

All tensors here live in *unit* space: data divided by σ_data, noise ε ~ N(0, I).

    x_t  = cos(t)·x0 + sin(t)·ε,          t ∈ [0, π/2]
    F*   = cos(t)·ε − sin(t)·x0            (the network's target; dx_t/dt = F*)
    x0̂   = cos(t)·x_t − sin(t)·F           (data estimate from a prediction F)
    ε̂    = sin(t)·x_t + cos(t)·F           (noise estimate)
    σ    = tan(t)                          (EDM noise level in units of σ_data)

Time sampling for training draws log σ ~ N(P_mean, P_std²); samplers integrate
the PF-ODE dx/dt = F from t_max to 0 (teacher) or jump on fixed times with
re-noising (consistency student).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import torch

HALF_PI = math.pi / 2


def time_dtype(x: torch.Tensor) -> torch.dtype:
    """Times stay float32 (float64 for float64 data) even when activations are bf16/fp16: t = 1.1 in bf16 is
    1.1016, a 0.4 rad phase error in the time embedding's fastest frequency."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _bcast(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape per-sample/per-frame times ``t`` [B] or [B, F] to broadcast over ``x`` [B, F, ...]."""
    return t.reshape(*t.shape, *([1] * (x.ndim - t.ndim)))


def add_noise(x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    tb = _bcast(t, x0)
    return torch.cos(tb) * x0 + torch.sin(tb) * eps


def target_f(x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    tb = _bcast(t, x0)
    return torch.cos(tb) * eps - torch.sin(tb) * x0


def x0_from_f(x_t: torch.Tensor, f: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    tb = _bcast(t, x_t)
    return torch.cos(tb) * x_t - torch.sin(tb) * f


def eps_from_f(x_t: torch.Tensor, f: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    tb = _bcast(t, x_t)
    return torch.sin(tb) * x_t + torch.cos(tb) * f


def f_from_x0(x_t: torch.Tensor, x0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The F that maps ``x_t`` to ``x0`` at time ``t`` (inverse of :func:`x0_from_f`; t > 0)."""
    tb = _bcast(t, x_t)
    return (torch.cos(tb) * x_t - x0) / torch.sin(tb)


def residual_input(x_t: torch.Tensor, t: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
    """Noisy frame seen relative to the previous clean frame: x_t − cos(t)·prev.

    With ``x0 = prev + r`` this is exactly the TrigFlow noisy sample of the
    change ``r`` (cos t·r + sin t·ε), so a network fed it and wrapped by
    :func:`residual_output` diffuses the frame-to-frame change while every
    sampler and loss still works on whole frames.
    """
    return x_t - torch.cos(_bcast(t, x_t)) * prev


def residual_output(g: torch.Tensor, t: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
    """Whole-frame F from the change's F ``g``: F = g − sin(t)·prev (a zero ``g`` copies ``prev``)."""
    return g - torch.sin(_bcast(t, g)) * prev


def sample_time_lognormal(
    shape: Sequence[int], p_mean: float, p_std: float, generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """t = atan(σ) with log σ ~ N(p_mean, p_std²)."""
    z = torch.randn(*shape, generator=generator, device=device)
    return torch.atan(torch.exp(p_mean + p_std * z))


def teacher_time_grid(steps: int, sigma_max: float = 80.0, sigma_min: float = 0.002, rho: float = 7.0) -> list[float]:
    """EDM (Karras) σ schedule mapped to TrigFlow times, descending, ending at 0 (length steps+1)."""
    if steps < 1:
        raise ValueError(f"steps must be ≥ 1, got {steps}")
    i = torch.arange(steps, dtype=torch.float64)
    inv = 1.0 / rho
    sigmas = (sigma_max**inv + i / max(steps - 1, 1) * (sigma_min**inv - sigma_max**inv)) ** rho
    times = torch.atan(sigmas).tolist()
    return [*times, 0.0]


DEFAULT_MID_TIMES: dict[int, tuple[float, ...]] = {1: (), 2: (1.1,), 3: (1.3, 0.8), 4: (1.4, 1.1, 0.6)}


def student_time_grid(steps: int, mid_times: Sequence[float] | None = None) -> list[float]:
    """Fixed consistency-sampling times t_0 = π/2 > t_1 > … > t_{steps-1} > 0, then 0 (length steps+1).

    ``mid_times`` are t_1 … t_{steps-1} (the times a jump's x0 estimate is re-noised to); ``None`` takes
    :data:`DEFAULT_MID_TIMES`. Lower mid times keep more of the first jump's estimate.
    """
    if steps not in DEFAULT_MID_TIMES:
        raise ValueError(f"student steps must be one of {sorted(DEFAULT_MID_TIMES)}, got {steps}")
    mids = DEFAULT_MID_TIMES[steps] if mid_times is None else tuple(float(t) for t in mid_times)
    grid = [HALF_PI, *mids, 0.0]
    if len(mids) != steps - 1 or not all(a > b for a, b in itertools.pairwise(grid)):
        raise ValueError(f"mid_times {list(mids)} for a {steps}-step student must be {steps - 1} decreasing "
                         f"times strictly between π/2 and 0")
    return grid


Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t, t [B]) -> F


def euler_step(f_fn: Denoiser, x: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
    """One Euler step of dx/dt = F from t to t_next (t_next < t)."""
    tt = torch.full((x.shape[0],), t, device=x.device, dtype=time_dtype(x))
    return x + (t_next - t) * f_fn(x, tt)


def heun_step(f_fn: Denoiser, x: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
    """Heun's 2nd-order step; falls back to Euler when stepping to t_next = 0."""
    tt = torch.full((x.shape[0],), t, device=x.device, dtype=time_dtype(x))
    f0 = f_fn(x, tt)
    x_euler = x + (t_next - t) * f0
    if t_next <= 0.0:
        return x_euler
    tn = torch.full_like(tt, t_next)
    f1 = f_fn(x_euler, tn)
    return x + (t_next - t) * 0.5 * (f0 + f1)


def ddim_step(f_fn: Denoiser, x: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
    """TrigFlow's exact step for a locally constant F: x ← cos(t − t')·x − sin(t − t')·F.

    One step to t' = 0 is the network's x0 estimate (the posterior mean); the
    first-order solver that respects the trigonometric path (Euler does not).
    """
    tt = torch.full((x.shape[0],), t, device=x.device, dtype=time_dtype(x))
    d = t - t_next
    return math.cos(d) * x - math.sin(d) * f_fn(x, tt)


SOLVERS = {"euler": euler_step, "heun": heun_step, "ddim": ddim_step}


def ode_sample(f_fn: Denoiser, x_start: torch.Tensor, times: Sequence[float], solver: str = "heun") -> torch.Tensor:
    """Integrate the PF-ODE over ``times`` (descending, last 0); returns x at t = 0."""
    step = SOLVERS.get(solver)
    if step is None:
        raise ValueError(f"solver {solver!r} unknown; expected one of {', '.join(SOLVERS)}")
    x = x_start
    for t, t_next in zip(times[:-1], times[1:]):
        x = step(f_fn, x, t, t_next)
    return x
