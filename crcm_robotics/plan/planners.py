"""Sampling planners over batched imagined rollouts: CEM, MPPI and random shooting, on the model's device.

A planner searches *decisions* ``z`` [D, A] that an :class:`ActionSpace` turns into env-step actions
[Hz, A] (waypoints held ``hold`` steps, absolute or relative to an anchor, clamped to the data's bounds). It
asks a ``score`` function (actions [N, Hz, A] → costs [N], see :mod:`crcm_robotics.plan.objective`) for
whole batches; sampling, scoring and elite selection stay on the device, and the only host transfer of a solve
is its small log at the end. :class:`MPC` warm-starts each solve from the previous one, shifted by the steps
executed since.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

Score = Callable[[torch.Tensor], torch.Tensor]
PLANNERS = ("cem", "mppi", "random")
MAX_SAMPLES = 16384  # candidates per round
MAX_ITERATIONS = 1000
ACTION_MODES = ("absolute", "delta")
EFFORTS = ("moves", "magnitude")  # what ActionSpace.effort penalises


class PlanError(ValueError):
    """A planner or action space was configured with values it cannot use; the message names the value."""


@dataclass(frozen=True)
class ActionSpace:
    """How decisions map to env-step actions. ``low``/``high`` [A] are the data's action bounds (env units)."""

    low: torch.Tensor
    high: torch.Tensor
    horizon: int  # env steps per candidate
    hold: int = 1  # env steps each decision is held (waypoints); 1 = per-step actions
    mode: str = "delta"  # decisions are steps from the anchor (the last command), summed; or "absolute"
    delta_fraction: float = 0.25  # delta mode: the largest step per decision, as a fraction of (high − low)

    def __post_init__(self) -> None:
        if self.low.shape != self.high.shape or self.low.ndim != 1:
            raise PlanError(f"action bounds must be two [A] vectors; got {tuple(self.low.shape)} and "
                            f"{tuple(self.high.shape)}")
        if not (torch.isfinite(self.low).all() and torch.isfinite(self.high).all()):
            raise PlanError(f"action bounds must be finite; got low {self.low.tolist()}, high {self.high.tolist()}")
        if not bool((self.high > self.low).all()):
            raise PlanError(f"action bounds need high > low in every dim; got low {self.low.tolist()}, "
                            f"high {self.high.tolist()}")
        if self.horizon < 1 or self.hold < 1:
            raise PlanError(f"horizon ({self.horizon}) and hold ({self.hold}) must be ≥ 1")
        if self.mode not in ACTION_MODES:
            raise PlanError(f"action mode {self.mode!r} unknown; expected one of {', '.join(ACTION_MODES)}")
        if not 0 < self.delta_fraction <= 1:
            raise PlanError(f"delta_fraction must be in (0, 1], got {self.delta_fraction}")

    @property
    def dim(self) -> int:
        return self.low.shape[0]

    @property
    def decisions(self) -> int:
        return math.ceil(self.horizon / self.hold)

    @property
    def z_low(self) -> torch.Tensor:
        return self.low if self.mode == "absolute" else -self.delta_fraction * (self.high - self.low)

    @property
    def z_high(self) -> torch.Tensor:
        return self.high if self.mode == "absolute" else self.delta_fraction * (self.high - self.low)

    def actions(self, z_NDA: torch.Tensor, anchor_A: torch.Tensor) -> torch.Tensor:
        """Decisions [N, D, A] → env-step actions [N, horizon, A] (clamped to the bounds)."""
        a = z_NDA if self.mode == "absolute" else anchor_A + z_NDA.cumsum(dim=1)
        a = torch.maximum(torch.minimum(a, self.high), self.low)
        return a.repeat_interleave(self.hold, dim=1)[:, : self.horizon]

    def initial(self, anchor_A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A broad first search distribution (mean, std) [D, A]: stay at the anchor, spread over the range."""
        d = self.decisions
        mean = (anchor_A if self.mode == "absolute" else torch.zeros_like(anchor_A)).expand(d, -1).clone()
        std = ((self.z_high - self.z_low) / 4).expand(d, -1).clone()
        return mean, std

    def clamp(self, z: torch.Tensor) -> torch.Tensor:
        return torch.maximum(torch.minimum(z, self.z_high), self.z_low)

    def effort(self, actions_NHA: torch.Tensor, anchor_A: torch.Tensor, on: str = "moves",
               dims: tuple[int, ...] = ()) -> torch.Tensor:
        """Control effort per candidate [N], each action dim in units of its range, averaged over waypoints.

        ``on="moves"``: the squared move between successive waypoints (from the anchor), for robots commanded
        by position (PushT's pusher target): keeping still is repeating the last command. ``on="magnitude"``:
        the squared command itself, for robots commanded by velocity (the arm's end-effector deltas): keeping
        still is commanding zero. ``dims``: the action dims that count (empty: all); the arm's gripper command
        is an effort of ±1, not a velocity, so its magnitude says nothing about moving.
        """
        if on not in EFFORTS:
            raise PlanError(f"effort on {on!r} unknown; expected one of {', '.join(EFFORTS)}")
        if any(not 0 <= d < self.dim for d in dims):
            raise PlanError(f"effort dims {list(dims)} must be action dims in [0, {self.dim})")
        waypoints = actions_NHA[:, :: self.hold]
        if on == "moves":
            waypoints = torch.cat([anchor_A.expand(len(waypoints), 1, -1), waypoints], dim=1).diff(dim=1)
        per_dim = (waypoints / (self.high - self.low)).square()
        return (per_dim[..., list(dims)] if dims else per_dim).sum(dim=2).mean(dim=1)


@dataclass
class PlanResult:
    actions: torch.Tensor  # [horizon, A] the best candidate found (env units, on the device)
    cost: float
    z: torch.Tensor  # [D, A] its decisions
    mean: torch.Tensor  # [D, A] the final search mean (the next solve's warm start)
    iterations: int
    evaluations: int  # candidates scored
    best_per_iteration: list[float] = field(default_factory=list)
    ms: float = 0.0


@dataclass
class SamplingPlanner:
    """CEM (``kind="cem"``), MPPI (``"mppi"``) or random shooting (``"random"``: one round, no refit).

    CEM keeps the ``elites`` cheapest candidates and refits mean/std to them (smoothed by ``momentum``); MPPI
    moves the mean to the cost-softmax average (``temperature`` in units of the round's cost spread). The
    previous mean and the best candidate so far are always among the samples. ``time_budget_s`` stops the
    iterations early (checked between rounds); ``iterations`` is the most it runs.
    """

    kind: str = "cem"
    samples: int = 256
    iterations: int = 6
    elites: int = 32
    momentum: float = 0.1  # weight of the old mean/std in a refit
    temperature: float = 0.5  # MPPI
    min_std_fraction: float = 0.02  # std floor, a fraction of the initial std
    time_budget_s: float | None = None
    seed: int = 0
    # added to every candidate's cost: effort_weight × ActionSpace.effort. Where imagination cannot tell
    # candidates apart (an object already at its goal that the model does not see pushed on), the planner
    # then prefers the one that moves least instead of a random one.
    effort_weight: float = 0.0
    effort_on: str = "moves"  # ActionSpace.effort: moves (position commands) | magnitude (velocity commands)
    effort_dims: tuple[int, ...] = ()  # the action dims the effort counts (empty: all)

    def __post_init__(self) -> None:
        if self.kind not in PLANNERS:
            raise PlanError(f"planner {self.kind!r} unknown; expected one of {', '.join(PLANNERS)}")
        if not (2 <= self.samples <= MAX_SAMPLES and 1 <= self.iterations <= MAX_ITERATIONS):
            raise PlanError(f"need 2 ≤ samples ≤ {MAX_SAMPLES} and 1 ≤ iterations ≤ {MAX_ITERATIONS}; got "
                            f"{self.samples} and {self.iterations}")
        if not 1 <= self.elites <= self.samples:
            raise PlanError(f"elites must be in [1, samples={self.samples}], got {self.elites}")
        if not 0 <= self.momentum < 1 or self.temperature <= 0:
            raise PlanError(f"need 0 ≤ momentum < 1 and temperature > 0; got {self.momentum}, {self.temperature}")
        if not (math.isfinite(self.effort_weight) and self.effort_weight >= 0):
            raise PlanError(f"effort_weight must be a finite number ≥ 0, got {self.effort_weight}")
        if self.effort_on not in EFFORTS:
            raise PlanError(f"effort_on={self.effort_on!r} unknown; expected one of {', '.join(EFFORTS)}")
        if any(not isinstance(d, int) or d < 0 for d in self.effort_dims):
            raise PlanError(f"effort_dims must be action dims, integers ≥ 0; got {list(self.effort_dims)}")
        self._gen: torch.Generator | None = None

    def solve(self, score: Score, space: ActionSpace, anchor_A: torch.Tensor,
              warm_mean: torch.Tensor | None = None) -> PlanResult:
        start = time.perf_counter()
        dev = anchor_A.device
        if self._gen is None or self._gen.device != dev:
            self._gen = torch.Generator(dev).manual_seed(self.seed)
        mean, std = space.initial(anchor_A)
        if warm_mean is not None:
            mean = space.clamp(warm_mean.to(dev))
        std_floor = std * self.min_std_fraction
        rounds = 1 if self.kind == "random" else self.iterations
        best_z, best_cost = mean.clone(), torch.tensor(float("inf"), device=dev)
        best_log: list[torch.Tensor] = []
        evaluations = done = 0
        for _ in range(rounds):
            noise = torch.randn(self.samples, *mean.shape, generator=self._gen, device=dev)
            z = space.clamp(mean + std * noise)
            z[0] = mean
            z[1] = best_z
            actions = space.actions(z, anchor_A)
            costs = score(actions).float()
            if self.effort_weight:
                costs = costs + self.effort_weight * space.effort(actions, anchor_A, self.effort_on,
                                                                  tuple(self.effort_dims))
            costs = torch.where(torch.isfinite(costs), costs, torch.full_like(costs, float("inf")))
            evaluations += len(z)
            done += 1
            i = torch.argmin(costs)
            better = costs[i] < best_cost
            best_cost = torch.where(better, costs[i], best_cost)
            best_z = torch.where(better, z[i], best_z)
            best_log.append(best_cost)
            if self.kind == "cem":
                elite = z[torch.topk(costs, self.elites, largest=False).indices]
                new_mean, new_std = elite.mean(0), elite.std(0, unbiased=False)
            elif self.kind == "mppi":
                spread = costs[torch.isfinite(costs)].std().clamp_min(1e-8)
                w = torch.softmax(-(costs - costs[i]) / (self.temperature * spread), dim=0)
                new_mean = (w[:, None, None] * z).sum(0)
                new_std = (w[:, None, None] * (z - new_mean).square()).sum(0).sqrt()
            else:
                break
            mean = self.momentum * mean + (1 - self.momentum) * new_mean
            std = torch.maximum(self.momentum * std + (1 - self.momentum) * new_std, std_floor)
            if self.time_budget_s is not None and time.perf_counter() - start > self.time_budget_s:
                break
        log = torch.stack(best_log).tolist()  # the solve's one host sync
        return PlanResult(space.actions(best_z[None], anchor_A)[0], float(log[-1]), best_z, mean, done,
                          evaluations, [round(c, 6) for c in log], (time.perf_counter() - start) * 1e3)


class MPC:
    """Receding-horizon control with warm starts: solve, execute a few steps, shift the plan, solve again."""

    def __init__(self, planner: SamplingPlanner, space: ActionSpace):
        self.planner = planner
        self.space = space
        self._mean: torch.Tensor | None = None

    def plan(self, score: Score, anchor_A: torch.Tensor) -> PlanResult:
        result = self.planner.solve(score, self.space, anchor_A, warm_mean=self._mean)
        self._mean = result.z.clone()
        return result

    def advance(self, executed_steps: int) -> None:
        """Shift the warm start past ``executed_steps`` env steps: whole held decisions drop off the front (the
        last repeated). A decision begun but not finished (``executed_steps`` not a multiple of ``hold``) stays
        in absolute mode, where it is a place; in delta mode it becomes zero, since the new anchor (the last
        command) already is where that step led, and keeping it would step that far again. Either way it is held
        a whole ``hold`` again from the new solve: decisions are laid out from the solve."""
        if self._mean is None:
            return
        k = min(executed_steps // self.space.hold, self.space.decisions)
        begun = k < self.space.decisions and executed_steps % self.space.hold > 0
        if self.space.mode == "delta":  # the new anchor is where the executed deltas led
            self._mean = torch.cat([self._mean[k:], torch.zeros_like(self._mean[:k])])
            if begun:
                self._mean[0] = 0.0
        elif k:
            self._mean = torch.cat([self._mean[k:], self._mean[-1:].expand(k, -1)])

    def reset(self) -> None:
        self._mean = None
