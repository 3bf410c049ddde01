"""TrigFlow maths against closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from crcm_robotics.model import trigflow as tf


def test_parameterisations_invert_each_other():
    torch.manual_seed(0)
    x0, eps = torch.randn(3, 2, 4, dtype=torch.float64), torch.randn(3, 2, 4, dtype=torch.float64)
    t = torch.rand(3, 2, dtype=torch.float64) * 1.5 + 0.01
    x_t = tf.add_noise(x0, eps, t)
    f = tf.target_f(x0, eps, t)
    torch.testing.assert_close(tf.x0_from_f(x_t, f, t), x0)
    torch.testing.assert_close(tf.eps_from_f(x_t, f, t), eps)
    torch.testing.assert_close(tf.f_from_x0(x_t, x0, t), f)
    # F* is the time derivative of x_t along the noising path
    h = 1e-6
    fd = (tf.add_noise(x0, eps, t + h) - tf.add_noise(x0, eps, t - h)) / (2 * h)
    torch.testing.assert_close(fd, f, rtol=1e-6, atol=1e-8)


def test_time_grids():
    grid = tf.teacher_time_grid(8)
    assert len(grid) == 9 and grid[-1] == 0.0
    assert grid[0] == pytest.approx(math.atan(80.0)) and all(a > b for a, b in zip(grid, grid[1:]))
    assert tf.student_time_grid(1) == [tf.HALF_PI, 0.0]
    assert tf.student_time_grid(2) == [tf.HALF_PI, 1.1, 0.0]
    assert tf.student_time_grid(2, [0.5]) == [tf.HALF_PI, 0.5, 0.0]
    with pytest.raises(ValueError, match="student steps"):
        tf.student_time_grid(7)
    for steps, bad in ((2, []), (2, [0.5, 0.3]), (2, [1.7]), (2, [0.0]), (3, [0.6, 0.8])):
        with pytest.raises(ValueError, match="mid_times"):
            tf.student_time_grid(steps, bad)


def test_lognormal_time_median():
    t = tf.sample_time_lognormal((200_000,), -0.8, 1.6, generator=torch.Generator().manual_seed(0))
    assert float(torch.tan(t).log().median()) == pytest.approx(-0.8, abs=0.02)
    assert float(t.min()) > 0 and float(t.max()) < tf.HALF_PI


@pytest.mark.parametrize("solver,tol", [("euler", 0.05), ("heun", 1e-3), ("ddim", 1e-9)])
def test_solvers_recover_a_point_mass(solver, tol):
    """For data that is a single point c, the exact F is known in closed form; every solver must land on c
    (DDIM exactly, since F's x0 estimate is exact at every step)."""
    c = torch.tensor([[0.7, -1.3]], dtype=torch.float64)

    def f_exact(x, t):
        tb = t[:, None]
        eps = (x - torch.cos(tb) * c) / torch.sin(tb)
        return torch.cos(tb) * eps - torch.sin(tb) * c

    x_start = torch.tensor([[0.4, 0.9]], dtype=torch.float64)
    times = tf.teacher_time_grid(40 if solver == "euler" else 12)
    out = tf.ode_sample(f_exact, x_start, times, solver)
    assert float((out - c).abs().max()) < tol
    with pytest.raises(ValueError, match="solver 'rk4' unknown"):
        tf.ode_sample(f_exact, x_start, times, "rk4")
