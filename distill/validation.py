"""Validation inside training: held-out rollouts every N updates, the best weights kept, collapse stops the run.

Every ``train.validation.every`` updates the trainer rolls the EMA weights out on a few held-out
windows (``context`` real frames, then ``horizon`` predicted ones under the logged actions) with the
run's own sampler — the same :func:`crcm_robotics.eval.evaluate.predict` and scores ``crcm eval``
uses — and compares the mean PSNR with copying the last context frame. The figure that selects
weights is ``psnr_vs_copy_last`` (dB; > 0 beats copy-last), plus the pusher's gain over copy-last with
``select=psnr_pusher``; ``worst_step_vs_copy_last`` is logged beside it (the least margin at any one step).
:class:`Selection` keeps the best validation and counts collapsed ones (far below copy-last) so a diverging
run stops early.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from crcm_robotics.config import ConfigError, DataConfig, ModelConfig, ValidationConfig, key_map_from_config
from crcm_robotics.data.store import NormStats, TrajectoryStore
from crcm_robotics.eval.evaluate import (EvalWindows, cut_windows, fitting_probe, predict, probe_scores,
                                         rollout_scores)
from crcm_robotics.eval.training_curves import WORST, worst_step  # the least margin over copy-last at a step
from crcm_robotics.model.sampler import SamplerSpec, sampler_from_meta
from crcm_robotics.model.tokenizer import FrameCodec

SCORE = "psnr_vs_copy_last"  # the figure validation selects weights by (dB above copy-last)


@dataclass
class Validator:
    """Held-out windows and the sampler to score a network on; copy-last is scored once, up front."""

    cfg: ValidationConfig
    windows: EvalWindows
    spec: SamplerSpec
    codec: FrameCodec  # the run's: PSNR is scored on decoded uint8 frames, in pixel space
    device: torch.device
    baseline: dict[str, Any]  # copy-last scores on the same windows
    probe: Any = None  # a StateProbe (ValidationConfig.probe): logged states read off the predicted frames
    baseline_probe: dict[str, float] | None = None  # copy-last's probe errors, same windows (with probe)

    @torch.no_grad()
    def __call__(self, net: nn.Module) -> dict[str, float]:
        """Figures of ``net`` on the held-out windows (flat floats: they go to the log and the checkpoint meta)."""
        was_training = net.training
        net.eval()
        k = self.cfg.context
        pred = predict(net, self.codec, self.spec, self.windows.frames, self.windows.actions, k, self.device,
                       self.cfg.seed)
        net.train(was_training)
        s = rollout_scores(pred, self.windows.frames[:, k:], self._agent_px(), self.device, ssim=False)
        psnr = s["psnr_mean"] if math.isfinite(s["psnr_mean"]) else float("nan")
        out = {"psnr_mean": psnr, "psnr_last": s["psnr"][-1], "copy_last_psnr_mean": self.baseline["psnr_mean"],
               SCORE: round(psnr - self.baseline["psnr_mean"], 3),
               **worst_step(s["psnr"], self.baseline["psnr"])}
        if "agent_err_mean" in s:
            out.update(agent_err_mean=s["agent_err_mean"], copy_last_agent_err_mean=self.baseline["agent_err_mean"])
        if self.probe is not None:
            read = probe_scores(self.probe, pred, self.windows.states[:, k:], self.device)["probe_err_mean"]
            out.update({f"probe_{name}": v for name, v in read.items()})
            out.update({f"copy_last_probe_{name}": v for name, v in self.baseline_probe.items()})
        return out

    def probe_names(self) -> list[str]:
        """The probe figures every validation adds (the same on every rank: they travel in one broadcast)."""
        names = list(self.baseline_probe) if self.probe is not None else []
        return [f"probe_{n}" for n in names] + [f"copy_last_probe_{n}" for n in names]

    def _agent_px(self) -> np.ndarray | None:
        return None if self.windows.agent_px is None else self.windows.agent_px[:, self.cfg.context :]


def build_validator(cfg: ValidationConfig, data: DataConfig, val_episodes: list[int], action_stats: dict[str, Any],
                    method_meta: dict[str, Any], model_cfg: ModelConfig, codec: FrameCodec,
                    device: torch.device) -> Validator | None:
    """The run's validator, or None when ``cfg.every`` is 0; config errors surface before training starts."""
    if cfg.every <= 0:
        return None
    cfg.validate()
    if not val_episodes:
        raise ConfigError(f"train.validation.every={cfg.every} needs held-out episodes, but data.val_fraction="
                          f"{data.val_fraction} held out none of {data.path}")
    if cfg.context > model_cfg.cache_frames:
        raise ConfigError(f"train.validation.context={cfg.context} exceeds the model's "
                          f"{model_cfg.cache_frames}-frame KV cache")
    spec = sampler_from_meta(method_meta, cfg.steps, cfg.solver)
    store = TrajectoryStore(data.path, key_map_from_config(data.key_map, data.path))
    try:
        windows = cut_windows(store, val_episodes[: cfg.episodes], cfg.context + cfg.horizon, data.frame_skip,
                              cfg.windows_per_episode, NormStats.from_dict(action_stats))
    except ValueError as e:
        raise ConfigError(f"train.validation (horizon={cfg.horizon}, context={cfg.context}): {e}") from e
    k = cfg.context
    copy_last = np.repeat(windows.frames[:, k - 1 : k], cfg.horizon, axis=1)
    agent = None if windows.agent_px is None else windows.agent_px[:, k:]
    if cfg.select == "psnr_pusher" and agent is None:
        raise ConfigError(f"train.validation.select=psnr_pusher needs pusher positions (a PushT store); "
                          f"{data.path} has none: use select=psnr")
    baseline = rollout_scores(copy_last, windows.frames[:, k:], agent, device, ssim=False)
    probe = baseline_probe = None
    if cfg.probe:
        try:
            probe = fitting_probe(Path(cfg.probe), device, store, windows)
        except ValueError as e:  # ProbeError is one too
            raise ConfigError(f"train.validation.probe={cfg.probe}: {e}") from None
        baseline_probe = probe_scores(probe, copy_last, windows.states[:, k:], device)["probe_err_mean"]
    return Validator(cfg, windows, spec, codec, device, baseline, probe, baseline_probe)


def pusher_gain_db(figures: dict[str, float]) -> float:
    """The pusher's error against copy-last's as a PSNR-like gain: 10·log10(copy-last error / error) dB
    (> 0 follows the pusher better than copying; NaN without pusher figures)."""
    err, copy = figures.get("agent_err_mean", math.nan), figures.get("copy_last_agent_err_mean", math.nan)
    if not (math.isfinite(err) and math.isfinite(copy) and err > 0 and copy > 0):
        return math.nan
    return 10.0 * math.log10(copy / err)


@dataclass
class Selection:
    """The best validation so far and the count of collapsed validations in a row (plain data: it resumes)."""

    collapse_db: float
    collapse_evals: int
    select: str = "psnr"  # ValidationConfig.select
    best_score: float = -math.inf
    best_step: int = -1
    best: dict[str, float] | None = None
    collapsed: int = 0

    def update(self, step: int, figures: dict[str, float]) -> tuple[bool, str | None]:
        """Record a validation at ``step``: (whether it is the new best, a one-line stop reason or None)."""
        psnr = figures[SCORE]
        score, kept = psnr, dict(figures)
        if self.select == "psnr_pusher":
            gain = pusher_gain_db(figures)
            score, kept["pusher_gain_db"] = psnr + gain, round(gain, 3)
        improved = math.isfinite(score) and score > self.best_score
        if improved:
            self.best_score, self.best_step, self.best = score, step, kept
        self.collapsed = self.collapsed + 1 if not psnr >= -self.collapse_db else 0
        if self.collapsed >= self.collapse_evals:
            return improved, (f"validation collapsed: mean PSNR {psnr:+.2f} dB against copy-last (limit "
                              f"-{self.collapse_db} dB) for {self.collapsed} validations in a row, at update {step}")
        return improved, None

    def state(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def load_state(self, state: dict[str, Any]) -> None:
        if state.get("select", "psnr") != self.select:  # best scores of two figures do not compare
            raise ConfigError(f"train.validation.select={self.select} but the run being resumed selected by "
                              f"{state.get('select', 'psnr')}: resume with the same select")
        for k, v in state.items():
            setattr(self, k, v)

    def summary(self) -> dict[str, Any] | None:
        """The selected weights' update number and figures (what the run's final JSON line reports)."""
        return None if self.best is None else {"step": self.best_step, **self.best}
