"""The one training loop (STYLE §4): optimizer, warm-up, grad clip, EMA, bf16 autocast, checkpoints,
exact resume, progress bar, preview GIFs and data-parallel training (``torchrun``; NCCL on GPU,
gloo on CPU).

An objective plugs in as a :class:`Method`: it owns the network being trained
(``student``), returns ``loss(batch, step) -> (loss, metrics)``, and may run
its own auxiliary updates (a fake-score critic) in ``before_step``.

Data parallelism averages gradients with one all-reduce per parameter after
``backward`` (what DDP does, without its bucketing): objectives here call the
network many times per step (self-forcing rollouts, forward-mode JVPs), which
DDP's wrapper does not allow, and methods reuse :func:`sync_grads` for their
own auxiliary networks.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

from crcm_robotics.config import ConfigError, OptimConfig, TrainLoopConfig
from crcm_robotics.model.checkpoint import SELECTED_DIR, load_train_state, save_checkpoint
from crcm_robotics.model.codec import LatentCodec
from crcm_robotics.model.tokenizer import FrameCodec


class Method(Protocol):
    name: str
    student: nn.Module  # trained, EMA-averaged and saved

    def loss(self, batch: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict[str, float]]: ...

    def before_step(self, sample: Callable[[int], dict[str, torch.Tensor]], step: int) -> dict[str, float]: ...

    def extra_state(self) -> dict[str, Any]: ...

    def load_extra_state(self, state: dict[str, Any]) -> None: ...

    def preview(self, net: nn.Module, batch: dict[str, torch.Tensor], codec: FrameCodec) -> np.ndarray: ...

    def meta(self) -> dict[str, Any]: ...

    def on_validation(self, step: int, figures: dict[str, float]) -> None: ...

    def extra_parameters(self) -> list[nn.Parameter]: ...


class MethodDefaults:
    """No-op defaults for the optional parts of :class:`Method` (no auxiliary networks, nothing extra to resume)."""

    def before_step(self, sample: Callable[[int], dict[str, torch.Tensor]], step: int) -> dict[str, float]:
        return {}

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def on_validation(self, step: int, figures: dict[str, float]) -> None:
        """Called with each held-out validation's figures (the same on every rank); e.g. to end a stage."""

    def extra_parameters(self) -> list[nn.Parameter]:
        """Parameters besides the student's that the student's optimizer trains (no weight decay, not saved
        as weights: the method keeps them in ``extra_state``), e.g. a learned loss weighting."""
        return []


@dataclass
class DistEnv:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_pref: str) -> tuple[DistEnv, torch.device]:
    """Init torch.distributed when launched by torchrun; pick the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    env = DistEnv(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    use_cuda = torch.cuda.is_available() and device_pref in ("auto", "cuda") or device_pref.startswith("cuda:")
    if device_pref.startswith("cuda:"):
        device = torch.device(device_pref)
    elif use_cuda:
        device = torch.device("cuda", env.local_rank)
    else:
        device = torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return env, device


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return {"fp32": None, "bf16": torch.bfloat16}[precision]


def sync_grads(module: nn.Module) -> None:
    """Average gradients over data-parallel ranks (no-op when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    world = dist.get_world_size()
    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(world)


def broadcast_params(module: nn.Module) -> None:
    """Make every rank start from rank 0's weights."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=0)


def check_ranks_agree(module: nn.Module) -> None:
    """Raise if data-parallel ranks ended with different weights (a broken all-reduce would show here)."""
    total = torch.stack([p.detach().double().sum() for p in module.parameters()]).sum().reshape(1)
    gathered = [torch.zeros_like(total) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, total)
    if any(not torch.equal(g, gathered[0]) for g in gathered):
        raise RuntimeError(f"data-parallel ranks diverged: parameter sums {[float(g) for g in gathered]}")


class EMA:
    """Exponential moving average of a module's parameters (float32), warm-started."""

    def __init__(self, module: nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(module).float().eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, module: nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for e, p in zip(self.module.parameters(), module.parameters()):
            e.lerp_(p.detach().float(), 1 - d)


@dataclass
class TrainResult:
    out: Path
    steps: int
    seconds: float
    last_metrics: dict[str, float] = field(default_factory=dict)
    selected: dict[str, Any] | None = None  # update number and held-out figures of the selected weights
    stop_reason: str | None = None  # why the run stopped before train.steps (divergence), if it did
    schedule_warning: str | None = None  # a wsd run that stopped before its decay began


class Trainer:
    def __init__(
        self,
        method: Method,
        sample: Callable[[int], dict[str, torch.Tensor]],  # step -> batch (pure function of the step)
        loop: TrainLoopConfig,
        optim: OptimConfig,
        config_dict: dict[str, Any],
        stats: dict[str, Any],
        meta: dict[str, Any],
        env: DistEnv,
        device: torch.device,
        preview_batch: dict[str, torch.Tensor] | None = None,
        validator: Any = None,  # distill.validation.Validator, or None: no validation
        codec: FrameCodec | None = None,  # frames ↔ diffusion space: previews decode, checkpoints carry it
    ):
        self.method, self.sample, self.loop, self.optim_cfg = method, sample, loop, optim
        self.config_dict, self.stats, self.base_meta = config_dict, stats, meta
        self.env, self.device = env, device
        if preview_batch is not None and codec is None:
            raise ValueError("a preview batch needs the run's codec to decode its frames")
        self.preview_batch = preview_batch
        self.codec = codec
        self.carried_codec = codec if isinstance(codec, LatentCodec) else None  # pixels: nothing to carry
        self.out = Path(loop.out)
        self.amp = autocast_dtype(loop.precision, device)
        student = method.student
        groups: list[dict[str, Any]] = [{"params": [p for p in student.parameters() if p.requires_grad]}]
        self.extras = nn.ParameterList(method.extra_parameters())
        if len(self.extras):
            groups.append({"params": list(self.extras), "weight_decay": 0.0})
        self.opt = torch.optim.AdamW(groups, lr=optim.lr, betas=tuple(optim.betas), weight_decay=optim.weight_decay)
        optim.validate()  # (loop's train.stop_at: validated by every caller, before its store is loaded)
        if optim.lr_schedule == "wsd_time" and loop.max_minutes <= 0 and loop.stop_at <= 0:
            raise ConfigError("optim.lr_schedule=wsd_time decays over the last part of train.max_minutes; "
                              f"expected train.max_minutes > 0, got {loop.max_minutes}, or train.stop_at > 0")
        self.seconds_before = 0.0  # wall time of the run before a resume (wsd_time's clock counts it)
        self.time_fraction = 0.0  # the share of train.max_minutes spent (wsd_time's clock)
        self.cut_by_stop_at = False  # train.max_minutes cut to what train.stop_at left (said in the messages)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: optim.lr_factor(s, loop.steps, self.time_fraction))
        self.start_step = 0
        broadcast_params(student)
        self.ema = EMA(student, optim.ema_decay)
        self.validator = validator
        self.selection = None
        if validator is not None:
            from distill.validation import Selection

            self.selection = Selection(loop.validation.collapse_db, loop.validation.collapse_evals,
                                       loop.validation.select)
        if loop.resume:
            self._resume(loop.resume)
        elif self.env.main and (self.out / SELECTED_DIR).exists():
            import shutil

            shutil.rmtree(self.out / SELECTED_DIR)  # a fresh run must not pass off an earlier run's selection

    # -- checkpoints -------------------------------------------------------------------------------
    def _resume(self, path: str) -> None:
        state = load_train_state(path)
        self.method.student.load_state_dict(state["student"])
        self.ema.module.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.method.load_extra_state(state.get("method", {}))
        self.start_step = int(state["step"])
        self.seconds_before = float(state.get("seconds", 0.0))  # wsd_time's budget and decay span resumes
        if self.selection is not None and "validation" in state:
            self.selection.load_state(state["validation"])
            kept, here = Path(path) / SELECTED_DIR, self.out / SELECTED_DIR
            if self.env.main and kept.is_dir() and kept.resolve() != here.resolve():
                import shutil

                if here.exists():
                    shutil.rmtree(here)
                shutil.copytree(kept, here)  # the best weights so far travel with the resumed run

    def save(self, step: int, metrics: dict[str, float], seconds: float) -> Path | None:
        if not self.env.main:
            return None
        meta = {**self.base_meta, **self.method.meta(), "step": step, "train_seconds": round(seconds, 1),
                "last_metrics": metrics}
        if self.selection is not None and self.selection.best is not None:
            meta["selected"] = self.selection.summary()
        train_state = {
            "student": self.method.student.state_dict(),
            "ema": self.ema.module.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "method": self.method.extra_state(),
            "step": step,
            "seconds": self.seconds_before + seconds,
        }
        if self.selection is not None:
            train_state["validation"] = self.selection.state()
        return save_checkpoint(self.out, self.ema.module.state_dict(), self.config_dict, self.stats, meta,
                               dtype=self._save_dtype(), train_state=train_state, codec=self.carried_codec)

    def _save_dtype(self) -> torch.dtype | None:
        return {"float32": None, "float16": torch.float16, "bfloat16": torch.bfloat16}[self.loop.save_dtype]

    def _validate(self, step: int, seconds: float, log_path: Path, write: Callable[[str], None]) -> str | None:
        """Score the EMA weights on held-out windows, keep them as ``CKPT/selected`` if best; a stop reason or None.

        Rank 0 rolls out; every rank gets its figures, so stage switches and early stops agree.
        """
        from distill.validation import SCORE, WORST

        names = ["psnr_mean", "psnr_last", "copy_last_psnr_mean", SCORE, WORST, "worst_step",
                 "agent_err_mean", "copy_last_agent_err_mean", *self.validator.probe_names()]
        values = torch.full((len(names),), float("nan"), dtype=torch.float64, device=self.device)
        if self.env.main:
            fig = self.validator(self.ema.module)
            values = torch.tensor([fig.get(n, float("nan")) for n in names], dtype=torch.float64, device=self.device)
        self._from_rank0(values)
        figures = {n: float(v) for n, v in zip(names, values.tolist())
                   if not (n.startswith(("agent", "copy_last_agent")) and v != v)}  # no pusher figures off PushT
        improved, reason = self.selection.update(step, figures)
        self.method.on_validation(step, figures)
        if self.env.main:
            if improved:
                meta = {**self.base_meta, **self.method.meta(), "step": step, "train_seconds": round(seconds, 1),
                        "validation": figures}
                save_checkpoint(self.out / SELECTED_DIR, self.ema.module.state_dict(), self.config_dict, self.stats,
                                meta, dtype=self._save_dtype(), codec=self.carried_codec)
            with log_path.open("a") as f:
                f.write(json.dumps({"step": step, "seconds": round(seconds, 2), "validation": figures,
                                    "selected": improved}) + "\n")
            pusher = f", pusher {figures['agent_err_mean']:.2f} px" if "agent_err_mean" in figures else ""
            write(f"{self.method.name} validation @ {step}: PSNR {figures['psnr_mean']:.2f} dB "
                  f"({figures[SCORE]:+.2f} vs copy-last){pusher}{' [selected]' if improved else ''}")
        return reason

    def _preview(self, step: int) -> None:
        if not self.env.main or self.preview_batch is None:
            return
        from crcm_robotics.eval.report import save_gif

        with torch.no_grad():
            frames = self.method.preview(self.ema.module, self.preview_batch, self.codec)
        save_gif(frames, self.out.with_name(self.out.name + "_samples") / f"step_{step:06d}.gif", scale=2)

    # -- loop --------------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        from crcm_robotics.progress import progress

        student = self.method.student
        log_path = self.out.with_name(self.out.name + "_log.jsonl")
        if self.env.main:
            log_path.parent.mkdir(parents=True, exist_ok=True)
        self._cut_to_stop_at()
        t0 = time.perf_counter()
        metrics: dict[str, float] = {}
        bar = progress(range(self.start_step, self.loop.steps), initial=self.start_step, total=self.loop.steps,
                       desc=self.method.name, enabled=self.loop.progress and self.env.main, smoothing=0.05)
        step = done = self.start_step
        stop_reason: str | None = None
        validated = -1
        for step in bar:
            student.train()
            # All randomness of a step (noise, times, rollouts) is a function of (seed, step, rank): resuming
            # at step n replays exactly what an uninterrupted run does from there.
            torch.manual_seed((self.loop.seed * 1_000_003 + step) * 64 + self.env.rank)
            aux = self.method.before_step(self.sample, step)
            batch = self.sample(step)
            with torch.autocast(self.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
                loss, metrics = self.method.loss(batch, step)
            if not torch.isfinite(loss):
                stop_reason = f"diverged: the {self.method.name} loss is {loss.item()} at update {step}"
                break
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            sync_grads(student)
            sync_grads(self.extras)
            grad_norm = torch.nn.utils.clip_grad_norm_(student.parameters(), self.optim_cfg.grad_clip)
            if not torch.isfinite(grad_norm):
                stop_reason = f"diverged: the {self.method.name} gradient norm is {float(grad_norm)} at update {step}"
                break
            self.opt.step()
            if self.loop.max_minutes > 0:
                spent = self.seconds_before + time.perf_counter() - t0
                self.time_fraction = spent / (60 * self.loop.max_minutes)
            self.sched.step()
            self.ema.update(student, step)
            metrics = {**metrics, **aux, "loss": float(loss.detach()), "grad_norm": float(grad_norm),
                       "lr": self.sched.get_last_lr()[0]}
            done = step + 1
            if self.env.main and (done % self.loop.log_every == 0 or done == self.loop.steps):
                bar.set_postfix(loss=f"{metrics['loss']:.4f}")
                with log_path.open("a") as f:
                    f.write(json.dumps({"step": done, "seconds": round(time.perf_counter() - t0, 2), **metrics}) + "\n")
            if self.validator is not None and done % self.loop.validation.every == 0:
                stop_reason = self._validate(done, time.perf_counter() - t0, log_path, bar.write)
                validated = done
            if self.loop.sample_every and done % self.loop.sample_every == 0:
                self._preview(done)
            if self.loop.ckpt_every and done % self.loop.ckpt_every == 0 and done < self.loop.steps:
                self.save(done, metrics, time.perf_counter() - t0)
            if stop_reason:
                break
            if self.loop.max_minutes > 0 and self._budget_spent(time.perf_counter() - t0):
                if self.env.main:
                    bar.write(f"{self.method.name}: time budget of {self._budget_said()} min spent at step {done}")
                break
        if self.validator is not None and validated != done:  # the last weights are candidates too
            self._validate(done, time.perf_counter() - t0, log_path, bar.write)
        if stop_reason and self.env.main:
            bar.write(f"{self.method.name}: stopped early, {stop_reason}")
        bar.close()
        seconds = time.perf_counter() - t0
        self.save(done, metrics, seconds)
        self._preview(done)
        if self.env.world > 1:
            check_ranks_agree(student)
        return TrainResult(self.out, done, seconds, metrics, self.selection.summary() if self.selection else None,
                           stop_reason, self._schedule_warning(done))

    def _cut_to_stop_at(self) -> None:
        """``train.max_minutes`` cut to what is left until ``train.stop_at`` now that setup is done (with
        ``wsd_time`` its clock spans resumes, so the time before a resume counts toward the cut budget). An
        end already past gives one update, then the save: a run on from kept weights still leaves a checkpoint
        (the caller's next step reads it) rather than none."""
        if self.loop.stop_at <= 0:
            return
        left = self.loop.stop_at - time.time()
        shared = torch.tensor([left], dtype=torch.float64, device=self.device)
        left = float(self._from_rank0(shared).item())  # one budget on every rank
        if left <= 0 and self.env.main:
            print(f"train.stop_at={self.loop.stop_at:.0f} passed {-left:.0f} s before the first update (setup "
                  f"took the whole budget): one update, then saved", file=sys.stderr)
        # > 0: an end already past stops the loop after one update
        minutes = max(round((self._counted_before() + left) / 60, 4), 1e-4)
        if self.loop.max_minutes <= 0 or minutes < self.loop.max_minutes:
            self.loop = replace(self.loop, max_minutes=minutes)
            self.cut_by_stop_at = True

    def _from_rank0(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` overwritten in place with rank 0's (a no-op outside data-parallel runs), so that every
        rank takes the same decision."""
        if dist.is_available() and dist.is_initialized() and self.env.world > 1:
            dist.broadcast(values, src=0)
        return values

    def _budget_said(self) -> str:
        """``train.max_minutes`` as the messages say it: where train.stop_at cut it, they say so."""
        return f"{self.loop.max_minutes}" + (" (cut by train.stop_at)" if self.cut_by_stop_at else "")

    def _budget_spent(self, seconds: float) -> bool:
        """Whether ``train.max_minutes`` is spent: by this run, or with ``wsd_time`` by the whole run."""
        return self._counted_before() + seconds > 60 * self.loop.max_minutes

    def _counted_before(self) -> float:
        """The time before a resume that ``train.max_minutes`` counts: all of it under ``wsd_time``, whose
        clock spans resumes; none otherwise."""
        return self.seconds_before if self.optim_cfg.lr_schedule == "wsd_time" else 0.0

    def _schedule_warning(self, done: int) -> str | None:
        """One line when ``optim.lr_schedule=wsd`` (``wsd_time``) never reached its decay: the run stopped
        (time budget, divergence; train.steps) before it, so it trained at the peak rate to the end."""
        if self.optim_cfg.lr_schedule == "wsd_time":
            if self.time_fraction > 1.0 - self.optim_cfg.decay_fraction:
                return None
            return (f"optim.lr_schedule=wsd_time: stopped at update {done}, {self.time_fraction:.0%} into "
                    f"train.max_minutes={self._budget_said()}, before the decay over its last "
                    f"{self.optim_cfg.decay_fraction:.0%}; the rate never decayed (raise train.steps)")
        steps = self.loop.steps
        start = self.optim_cfg.decay_start(steps)
        if start is None or done > start:
            return None
        return (f"optim.lr_schedule=wsd: stopped at update {done}, before the decay that starts at update "
                f"{start} of train.steps={steps}; the rate never decayed (set train.steps to what the time "
                "allows)")

