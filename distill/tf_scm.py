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

F⁻ in the loss is the stop-gradient of the *same* forward as F_θ (bf16 under
autocast), not the fp32 JVP primal: per element the normalized tangent is
~1/√(C·H·W) ≈ 0.01, smaller than the bf16-vs-fp32 gap, which would otherwise
be what the student learns.
"""

from __future__ import annotations

import torch
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


class TFsCM(StudentMethod):
    name = "tf_scm"

    def __init__(self, student: CausalDiT, teacher: CausalDiT, cfg: SCMConfig, sampler: SamplerSpec):
        super().__init__(student, teacher, sampler)
        self.cfg = cfg

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
        buckets = {**per_time_bucket(err, times, "scm"),
                   **per_time_bucket(torch.nan_to_num(g_norm), times, "tangent_norm")}
        return loss, {"scm": float(loss.detach()), "tangent_r": r, "tangent_nan": float((~finite).float().mean()),
                      **buckets}
