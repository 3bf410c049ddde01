"""TF-sCM: teacher-forcing continuous-time consistency distillation (forward divergence, offline).

In the teacher-forcing layout (noisy frame i sees clean frames < i and
itself), the student F_θ is trained so its consistency function
f_θ(x_t, t) = cos t·x_t − sin t·F_θ stays constant along the teacher's PF-ODE
(TrigFlow sCM, Lu & Song 2024):

    dx_t/dt = F_teacher(x_t, t)                                   (no grad)
    F⁻, dF⁻/dt = jvp(F_θ, (x_t, t), (dx_t/dt, 1))                 (no grad; math attention)
    g = −cos²t·(F⁻ − dx_t/dt) − r·cos t·sin t·(x_t + dF⁻/dt)        r: tangent warm-up 0 → 1
    g ← g / (‖g‖ + c)                                               per frame
    loss = ‖F_θ(x_t, t) − sg[F_θ(x_t, t)] − g‖²                     NaN/inf tangents masked out
    (scm.adaptive_weight: loss = e^{w(t)}·loss − w(t), w learned jointly; sCM's adaptive weighting)

F⁻ in the loss is the stop-gradient of the *same* forward as F_θ (bf16 under
autocast), not the fp32 JVP primal: per element the normalized tangent is
~1/√(C·H·W) ≈ 0.01, smaller than the bf16-vs-fp32 gap, which would otherwise
be what the student learns.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from torch.func import jvp

from crcm_robotics.config import SCMConfig
from crcm_robotics.model import trigflow as tf
from crcm_robotics.model.dit import CausalDiT
from crcm_robotics.model.sampler import SamplerSpec
from distill.layout import tf_forward
from distill.student import StudentMethod

TIME_BUCKETS = (0.2, 0.6, 1.1)  # TrigFlow time edges of the per-noise-time figures: [0, .2), [.2, .6), [.6, 1.1), [1.1, π/2]


def per_time_bucket(values: torch.Tensor, times: torch.Tensor, name: str) -> dict[str, float]:
    """Mean of ``values`` [B, T] in each noise-time bucket of ``times`` [B, T] (empty buckets left out), one sync."""
    bucket = torch.bucketize(times.detach(), torch.tensor(TIME_BUCKETS, device=times.device))
    one_hot = torch.nn.functional.one_hot(bucket.flatten(), len(TIME_BUCKETS) + 1).float()  # [B*T, K]
    sums = torch.stack([one_hot.T @ values.detach().float().flatten(), one_hot.sum(0)])  # [2, K]
    total, count = sums.tolist()
    return {f"{name}_t{i}": s / n for i, (s, n) in enumerate(zip(total, count)) if n > 0}


def student_tangent(student: CausalDiT, x_clean: torch.Tensor, x_t: torch.Tensor, times: torch.Tensor,
                    dxdt: torch.Tensor, action: torch.Tensor, x_prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """F_θ and its total derivative along (dx_t/dt, dt = 1), through the masked attention (fp32, math kernel)."""
    zeros = torch.zeros_like(times)

    def f(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return tf_forward(student, x_clean, zeros, x, t, action, x_prev)

    student.set_attention("math")  # forward-mode AD needs plain matmul-softmax attention
    try:
        with torch.no_grad(), torch.autocast(x_t.device.type, enabled=False):
            f_minus, df_dt = jvp(f, (x_t, times), (dxdt.to(x_t.dtype), torch.ones_like(times)))
    finally:
        student.set_attention("sdpa")
    return f_minus, df_dt


class TimeWeight(nn.Module):
    """sCM's adaptive weighting w(t) (Lu & Song 2024): one scalar per noise time from fixed Fourier features of
    log tan t, trained with the student so that e^{w(t)}·err − w(t) evens out the loss scale across times
    (its optimum is e^{w} = 1/err). Starts at w = 0, where the weighted loss equals the plain one."""

    def __init__(self, features: int = 16):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("freqs", torch.randn(features, generator=g))
        self.register_buffer("phases", torch.rand(features, generator=g) * 2 * torch.pi)
        self.linear = nn.Linear(features, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, times: torch.Tensor) -> torch.Tensor:
        """w for TrigFlow times [...] (fp32), shape [...]."""
        feats = torch.cos(torch.log(torch.tan(times.float()))[..., None] * self.freqs + self.phases)
        return self.linear(feats).squeeze(-1)


class TFsCM(StudentMethod):
    name = "tf_scm"

    def __init__(self, student: CausalDiT, teacher: CausalDiT, cfg: SCMConfig, sampler: SamplerSpec):
        super().__init__(student, teacher, sampler)
        self.cfg = cfg
        device = next(student.parameters()).device
        self.time_weight = TimeWeight().to(device) if cfg.adaptive_weight else None

    def extra_parameters(self) -> list[nn.Parameter]:
        return [] if self.time_weight is None else list(self.time_weight.parameters())

    def extra_state(self) -> dict[str, Any]:
        return {} if self.time_weight is None else {"time_weight": self.time_weight.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if self.time_weight is not None and "time_weight" in state:
            self.time_weight.load_state_dict(state["time_weight"])

    def loss(self, batch: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        x0, x_prev, action = batch["x"], batch["x_prev"], batch["action"]
        b, t = x0.shape[:2]
        times = tf.sample_time_lognormal((b, t), self.cfg.p_mean, self.cfg.p_std, device=x0.device)
        eps = torch.randn_like(x0)
        x_t = tf.add_noise(x0, eps, times)
        zeros = torch.zeros_like(times)
        with torch.no_grad(), torch.autocast(x0.device.type, enabled=False):  # fp32, like the JVP below
            dxdt = tf_forward(self.teacher, x0.float(), zeros, x_t.float(), times, action.float(), x_prev.float())
        f_minus, df_dt = student_tangent(self.student, x0, x_t, times, dxdt, action, x_prev)
        r = min(1.0, (step + 1) / max(self.cfg.tangent_warmup_steps, 1))
        cos = torch.cos(times)[..., None, None, None]
        sin = torch.sin(times)[..., None, None, None]
        g = -(cos**2) * (f_minus - dxdt) - r * cos * sin * (x_t.float() + df_dt)
        g_norm = g.flatten(2).norm(dim=2)  # [B, T]: the raw tangent's size, before normalisation
        g = g / (g_norm[..., None, None, None] + self.cfg.tangent_norm_c)
        finite = torch.isfinite(g).flatten(2).all(dim=2)  # [B, T]
        g = torch.where(finite[..., None, None, None], g, torch.zeros_like(g))
        f_theta = tf_forward(self.student, x0, zeros, x_t, times, action, x_prev).float()
        err = ((f_theta - f_theta.detach() - g) ** 2).flatten(2).mean(dim=2)  # [B, T]
        loss = (err * finite).sum() / finite.sum().clamp_min(1)
        adaptive = {}
        if self.time_weight is not None:
            with torch.autocast(x0.device.type, enabled=False):
                w = self.time_weight(times)  # [B, T]
            scm_plain, loss = loss, ((torch.exp(w) * err - w) * finite).sum() / finite.sum().clamp_min(1)
            adaptive = {"scm_weighted": float(loss.detach()), **per_time_bucket(w, times, "scm_w")}
            loss_value = scm_plain
        else:
            loss_value = loss
        buckets = {**per_time_bucket(err, times, "scm"),
                   **per_time_bucket(torch.nan_to_num(g_norm), times, "tangent_norm")}
        return loss, {"scm": float(loss_value.detach()), "tangent_r": r,
                      "tangent_nan": float((~finite).float().mean()), **buckets, **adaptive}
