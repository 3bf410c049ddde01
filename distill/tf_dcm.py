"""TF-dCM: teacher-forcing *discrete*-time consistency distillation (the baseline without a JVP).

One teacher Euler step along the PF-ODE from t to t' = t − Δt defines the
target: the student's own (stop-gradient) consistency output at (x_t', t')
must equal its output at (x_t, t):

    x_t' = x_t + (t' − t)·F_teacher(x_t, t)
    loss = ‖f_θ(x_t, t) − sg[f_θ(x_t', t')]‖²,   f(x, t) = cos t·x − sin t·F(x, t)
"""

from __future__ import annotations

import torch

from crcm_robotics.config import DCMConfig
from crcm_robotics.model import trigflow as tf
from crcm_robotics.model.dit import CausalDiT
from crcm_robotics.model.sampler import SamplerSpec
from distill.layout import tf_forward
from distill.student import StudentMethod


class TFdCM(StudentMethod):
    name = "tf_dcm"

    def __init__(self, student: CausalDiT, teacher: CausalDiT, cfg: DCMConfig, sampler: SamplerSpec):
        super().__init__(student, teacher, sampler)
        self.cfg = cfg

    def loss(self, batch: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        x0, x_prev, action = batch["x"], batch["x_prev"], batch["action"]
        b, t = x0.shape[:2]
        times = tf.sample_time_lognormal((b, t), self.cfg.p_mean, self.cfg.p_std, device=x0.device)
        t_next = (times - self.cfg.delta_t).clamp_min(0.0)
        x_t = tf.add_noise(x0, torch.randn_like(x0), times)
        zeros = torch.zeros_like(times)
        with torch.no_grad():
            f_teacher = tf_forward(self.teacher, x0, zeros, x_t, times, action, x_prev).float()
            x_next = x_t + (t_next - times)[..., None, None, None] * f_teacher
            f_next = tf_forward(self.student, x0, zeros, x_next, t_next, action, x_prev).float()
            target = tf.x0_from_f(x_next, f_next, t_next)  # = x_next where t_next = 0 (boundary condition)
        pred = tf.x0_from_f(x_t, tf_forward(self.student, x0, zeros, x_t, times, action, x_prev).float(), times)
        loss = ((pred - target) ** 2).mean()
        return loss, {"dcm": float(loss.detach())}
