"""The world model as a service object: load a checkpoint, stream frames, imagine batched rollouts.

    wm = WorldModel.load("outputs/student", device="cuda", backend="cuda_graph")
    wm.reset(context_frames, context_actions)       # uint8 [K, H, W, 3], float [K, A] (raw env units)
    frame = wm.step(action)                          # float [A] → uint8 [H, W, 3]
    res = wm.imagine(actions, context=None, goal=g)  # float [N, Hz, A] → ImagineResult

Conventions (DESIGN §2, §4): frame ``k`` is conditioned on the action that
*produced* it, so ``context_actions[k]`` is the command in force when frame
``k`` was captured (the one applied after frame k−1); ``step(a)`` applies ``a``
after the newest frame and returns the frame it produces; ``imagine`` applies
``actions[n, 0]`` after the newest context frame, then ``actions[n, 1]`` … .
Actions are raw (environment units) and normalized inside with the
checkpoint's stats. ``K`` is 1 … ``context_frames`` (the KV-cache window).

``imagine(context=None)`` continues from the streaming state — the reset
context plus every frame ``step`` has produced since — without disturbing it:
the batch-1 stream cache is copied (broadcast over the batch by
``KVCache.copy_``) into the imagine stepper's own cache, and imagine draws
its noise from its own generator. Queries run in chunks of ``max_batch``
rollouts; fixed-shape backends pad a chunk to their bucket size.

Goal cost (``goal`` given): per rollout, the mean over pixels and channels of
``((final_frame − goal) / 255)²`` — the squared error of the *last* imagined
frame only, in [0, 1]; lower is better.

Noise is deterministic: ``seed`` (load) seeds the stream generator and the
imagine generator (``seed + 1``); ``reset(seed=…)`` and ``imagine(seed=…)``
restart them. Results for a given seed depend on the device and on
``max_batch`` (noise is drawn per chunk).

Precision: float32 on CPU; on CUDA the weights and KV cache default to
bfloat16 (``dtype``) with the network under autocast, while noise, frames and
the sampler's TrigFlow arithmetic stay float32.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crcm_robotics.config import ConfigError
from crcm_robotics.data.store import NormStats
from crcm_robotics.model.checkpoint import Checkpoint, build_model, load_checkpoint
from crcm_robotics.model.dit import CausalDiT
from crcm_robotics.model.kv_cache import KVCache
from crcm_robotics.model.sampler import SamplerSpec, sampler_from_meta
from crcm_robotics.model.tokenizer import PixelCodec
from crcm_robotics.runtime.backends import Backend, Precision, make_backend
from crcm_robotics.runtime.inputs import InputError, check_actions, check_frames, check_image

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16, "half": torch.float16}


@dataclass(frozen=True)
class ImagineResult:
    frames: np.ndarray  # uint8 [N, Hz, H, W, 3]
    costs: np.ndarray | None  # float32 [N] vs the goal image; None without a goal
    latency_ms: float  # wall time of the imagine call


def resolve_device(device: str | torch.device) -> torch.device:
    dev = torch.device("cuda" if str(device) == "auto" and torch.cuda.is_available() else
                       "cpu" if str(device) == "auto" else device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device={device} requested but CUDA is not available (torch {torch.__version__})")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """None/"auto": bfloat16 on CUDA (float16 where bf16 is unsupported), float32 on CPU."""
    if dtype is None or dtype == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"dtype {dtype!r} unknown; expected one of {', '.join(DTYPES)} or auto")
        dtype = DTYPES[dtype]
    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"dtype {dtype} unsupported; expected float32, bfloat16 or float16")
    if device.type != "cuda" and dtype != torch.float32:
        raise ValueError(f"dtype {dtype} needs a CUDA device; on {device} the model runs in float32 "
                         "(leave dtype unset)")
    return dtype


class WorldModel:
    """A loaded checkpoint + sampler + backend, with one streaming state (see the module docstring)."""

    def __init__(self, ckpt: Checkpoint, model: CausalDiT, spec: SamplerSpec, backend: Backend,
                 precision: Precision, max_batch: int, seed: int = 0):
        cfg = model.cfg
        self.model = model
        self.sampler = spec
        self.precision = precision
        self.device = precision.device
        self.dtype = precision.weights
        self.checkpoint = str(ckpt.path)
        self.kind = str(ckpt.meta.get("kind", "unknown"))
        self.steps = spec.steps
        self.backend = backend.name
        self.max_batch = max_batch
        self.image_shape = (cfg.height, cfg.width, 3)
        self.action_dim = cfg.action_dim
        self.context_frames = cfg.cache_frames
        self.codec = PixelCodec(cfg.sigma_data)
        self.norm = NormStats.from_dict(ckpt.stats["action"])
        if self.norm.mean.shape != (cfg.action_dim,):
            raise ValueError(f"checkpoint {ckpt.path}: action stats have {self.norm.mean.shape[0]} dims but the "
                             f"model takes action_dim {cfg.action_dim}")
        self._backend = backend
        self._frame = (cfg.channels, cfg.height, cfg.width)
        self._lock = threading.RLock()
        self._stream_gen = torch.Generator(self.device).manual_seed(seed)
        self._imagine_gen = torch.Generator(self.device).manual_seed(seed + 1)
        self._stream = None  # the batch-1 stepper holding the streaming KV cache
        self._prev: torch.Tensor | None = None  # [1, 1, C, H, W] newest clean frame of the stream
        self._ctx_cache: KVCache | None = None  # batch-1 scratch cache for imagine(context=...)

    # ------------------------------------------------------------------ construction

    @classmethod
    def load(
        cls,
        ckpt: str | Path | Checkpoint,
        device: str | torch.device = "cpu",
        backend: str = "eager",
        steps: int | None = None,
        max_batch: int = 64,
        dtype: str | torch.dtype | None = None,
        *,
        seed: int = 0,
        sampler: SamplerSpec | None = None,
        export_dir: str | Path | None = None,
        compile_mode: str = "default",
        weights: str = "selected",
        compiler: str = "inductor",
    ) -> WorldModel:
        """Load a checkpoint directory for inference.

        ``steps``: sampler steps per frame (student: 1–4 consistency steps; teacher: ODE steps);
        None/0 = the checkpoint's. ``sampler`` replaces the checkpoint's sampler entirely (e.g. a
        teacher ODE sampler on a student's network, for benchmarks). ``export_dir``: where the
        onnx/tensorrt backends find or write their exported step files (default: a temporary folder).
        ``weights``: ``selected`` (the run's validation-selected weights, when it kept some) or ``last``.
        """
        if int(max_batch) < 1:
            raise ValueError(f"max_batch must be ≥ 1, got {max_batch}")
        dev = resolve_device(device)
        ck = ckpt if isinstance(ckpt, Checkpoint) else load_checkpoint(ckpt, weights=weights)
        weights = resolve_dtype(dtype, dev)
        spec = sampler or sampler_from_meta(ck.meta, int(steps or 0))
        spec.times()  # raises on unsupported steps (e.g. a 5-step student)
        model = build_model(ck, dev, weights)
        precision = Precision(dev, weights)
        source = None
        if weights != torch.float32:  # exporters work from float32 weights
            source = build_model(ck, "cpu", torch.float32)
        be = make_backend(backend, model, spec, precision, int(max_batch), export_dir=export_dir,
                          checkpoint=str(ck.path), source=source, compile_mode=compile_mode, compiler=compiler)
        return cls(ck, model, spec, be, precision, int(max_batch), seed)

    def info(self) -> dict[str, Any]:
        """Plain data (msgpack/JSON-safe) describing the model and how it runs."""
        spec = self.sampler
        return {
            "image_shape": list(self.image_shape), "action_dim": self.action_dim,
            "context_frames": self.context_frames, "kind": self.kind, "steps": self.steps,
            "sampler": spec.to_meta(),
            "network_passes_per_frame": spec.network_passes,
            "backend": self.backend, "backend_status": self._backend.status,
            "device": str(self.device), "dtype": str(self.dtype).removeprefix("torch."),
            "max_batch": self.max_batch, "checkpoint": self.checkpoint,
        }

    def warmup(self, batch_sizes: list[int] | None = None) -> None:
        """Build the steppers now (CUDA graph capture, compilation, ONNX export) instead of on first use.

        Default: the stream stepper and the imagine stepper at ``max_batch``.
        """
        with self._lock:
            self._backend.stepper(1, "stream")
            for n in [self.max_batch] if batch_sizes is None else batch_sizes:
                self._backend.stepper(self._backend.bucket(min(n, self.max_batch)), "imagine")

    # ------------------------------------------------------------------ streaming

    def reset(self, context_frames: np.ndarray, context_actions: np.ndarray, seed: int | None = None) -> None:
        """Start a stream from K real frames and the K actions that produced them (K = 1 … context_frames)."""
        with self._lock:
            x, a = self._context(context_frames, context_actions, "context_frames", "context_actions")
            stream = self._backend.stepper(1, "stream")
            self._backend.encode(stream.cache, x, a)
            self._stream = stream
            self._prev = x[:, -1:].clone()
            if seed is not None:
                self._stream_gen.manual_seed(seed)

    def step(self, action: np.ndarray) -> np.ndarray:
        """Apply ``action`` [A] (raw units) after the newest frame; returns the next frame uint8 [H, W, 3]."""
        with self._lock:
            if self._stream is None or self._prev is None:
                raise RuntimeError("step() called before reset(): "
                                   "call reset(context_frames, context_actions) first")
            a = self._normalize(check_actions(action, "action", self.action_dim, "[A]", 1))[None, None]
            noise = torch.randn(self.sampler.noise_draws, 1, 1, *self._frame, generator=self._stream_gen,
                                device=self.device)
            x0 = self._stream(a, noise, self._prev)
            self._prev = x0
            return self.codec.decode(x0[0, 0]).cpu().numpy()

    # ------------------------------------------------------------------ planning

    def imagine(
        self,
        actions: np.ndarray,
        context: tuple[np.ndarray, np.ndarray] | None = None,
        goal: np.ndarray | None = None,
        seed: int | None = None,
    ) -> ImagineResult:
        """Roll out N action sequences [N, Hz, A] from a context; frames uint8 [N, Hz, H, W, 3] (+ goal costs)."""
        start = time.perf_counter()
        with self._lock:
            acts = check_actions(actions, "actions", self.action_dim, "[N, Hz, A]", 3)
            goal_np = None if goal is None else check_image(goal, "goal", self.image_shape[:2])
            if context is None:
                if self._stream is None or self._prev is None:
                    raise RuntimeError("imagine() without context needs a stream: call reset(...) first "
                                       "or pass context=(frames, actions)")
                ctx_cache, ctx_prev = self._stream.cache, self._prev
            else:
                if not isinstance(context, (tuple, list)) or len(context) != 2:
                    found = type(context).__name__
                    if isinstance(context, (tuple, list)):
                        found += f" of length {len(context)}"
                    raise InputError(f"context must be a (frames, actions) pair; got {found}")
                x, a = self._context(context[0], context[1], "context[0] (frames)", "context[1] (actions)")
                if self._ctx_cache is None:
                    self._ctx_cache = self._backend.new_cache(1)
                ctx_cache = self._ctx_cache
                self._backend.encode(ctx_cache, x, a)
                ctx_prev = x[:, -1:]
            gen = self._imagine_gen if seed is None else torch.Generator(self.device).manual_seed(seed)
            n_total, horizon = acts.shape[:2]
            a_all = self._normalize(acts)  # [N, Hz, A]
            out = torch.empty(n_total, horizon, *self.image_shape, dtype=torch.uint8, device=self.device)
            for lo in range(0, n_total, self.max_batch):
                n = min(self.max_batch, n_total - lo)
                self._rollout_chunk(a_all[lo: lo + n], ctx_cache, ctx_prev, gen, out[lo: lo + n])
            costs = None
            if goal_np is not None:
                g = torch.from_numpy(goal_np).to(self.device).float()
                costs = ((out[:, -1].float() - g) / 255.0).square().mean(dim=(1, 2, 3)).cpu().numpy()
            frames = out.cpu().numpy()
        return ImagineResult(frames, costs, (time.perf_counter() - start) * 1e3)

    def _rollout_chunk(self, a: torch.Tensor, ctx_cache: KVCache, ctx_prev: torch.Tensor,
                       gen: torch.Generator, out: torch.Tensor) -> None:
        """Roll ``n`` rows ([n, Hz, A]) from the batch-1 context into ``out`` [n, Hz, H, W, 3]."""
        n, horizon = a.shape[:2]
        b = self._backend.bucket(n)
        st = self._backend.stepper(b, "imagine")
        st.cache.copy_(ctx_cache)  # batch-1 context broadcast over the batch (in place)
        prev = ctx_prev.expand(b, *ctx_prev.shape[1:]).contiguous()
        if b > n:  # padded rows: zero actions and noise, results dropped
            a = torch.cat([a, a.new_zeros(b - n, *a.shape[1:])])
        for h in range(horizon):
            noise = torch.randn(self.sampler.noise_draws, n, 1, *self._frame, generator=gen, device=self.device)
            if b > n:
                noise = torch.cat([noise, noise.new_zeros(noise.shape[0], b - n, *noise.shape[2:])], dim=1)
            x0 = st(a[:, h: h + 1], noise, prev)
            out[:, h] = self.codec.decode(x0[:n, 0])
            prev = x0

    # ------------------------------------------------------------------ helpers

    def _normalize(self, actions: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.norm.normalize(actions)).to(self.device)

    def _context(self, frames: Any, actions: Any, frames_name: str, actions_name: str):
        """Validated context as unit-space x [1, K, C, H, W] and normalized actions [1, K, A]."""
        f = check_frames(frames, frames_name, self.image_shape[:2], self.context_frames)
        a = check_actions(actions, actions_name, self.action_dim, "[K, A]", 2)
        if a.shape[0] != f.shape[0]:
            raise InputError(f"{actions_name} has {a.shape[0]} rows but {frames_name} has {f.shape[0]} frames; "
                             "expected one action (the one that produced it) per frame")
        x = self.codec.encode(torch.from_numpy(f).to(self.device))[None]
        return x, self._normalize(a)[None]

    def __repr__(self) -> str:
        return (f"WorldModel({self.checkpoint!r}, kind={self.kind}, steps={self.steps}, backend={self.backend}, "
                f"device={self.device}, dtype={self.dtype})")
