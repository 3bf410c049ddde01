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
``imagine(context=(frames, actions))`` encodes the context once and reuses it
while the next queries bring the same context (a planner's rounds); each
rollout's last frame is denoised without the cache-write pass where the
backend can (nothing reads it back: 1 of a 2-step student's 3 passes).

Goal cost (``goal`` given): per rollout, one of :mod:`crcm_robotics.plan.costs` by name (``cost=``); the
default ``final_mse`` is the mean over pixels and channels of ``((final_frame − goal) / 255)²``, in [0, 1];
lower is better. ``return_frames`` says what comes back: ``"all"`` frames, the ``"best"`` rollout's frames
only (needs a goal; ``best_index`` names it) or ``"none"`` (costs only: a 256 × 25 query answers in
kilobytes). Planners call :meth:`imagine_tensor`, which keeps the frames on the device.

Latent checkpoints (``model.codec``): the network rolls out in the codec's latent space and frames are
decoded to uint8 only for what is returned: every frame for ``"all"``/``"best"`` and the path costs,
the last frame only for a costs-only query of a final-frame cost, and none for a costs-only query of
``latent_mse`` (the final latents against the encoded goal). ``image_shape`` is the camera's.

Frame skip: a checkpoint trained with ``data.frame_skip=k`` predicts every k-th camera frame from the k
commands between (``action_dim = k × env_action_dim``, the k commands concatenated oldest first).

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

from crcm_robotics.data.store import NormStats
from crcm_robotics.model.checkpoint import SELECTED_DIR, Checkpoint, build_model, load_checkpoint
from crcm_robotics.model.dit import CausalDiT
from crcm_robotics.model.codec import LatentCodec
from crcm_robotics.model.kv_cache import KVCache
from crcm_robotics.model.sampler import SamplerSpec, check_guidance, sampler_from_meta
from crcm_robotics.model.tokenizer import frame_hw, make_codec
from crcm_robotics.plan.costs import COSTS, FINAL_FRAME_COSTS, LATENT_COSTS, CostError, latent_cost, make_cost
from crcm_robotics.plan.probe import StateProbe, load_probe
from crcm_robotics.runtime.backends import Backend, Precision, make_backend
from crcm_robotics.runtime.backends.base import last_frame_step
from crcm_robotics.runtime.device import (  # noqa: F401  (re-exported)
    DTYPES, resolve_codec_dtype, resolve_device, resolve_dtype)
from crcm_robotics.runtime.inputs import InputError, check_actions, check_frames, check_image


RETURN_FRAMES = ("all", "best", "none")


@dataclass(frozen=True)
class ImagineResult:
    frames: np.ndarray | None  # uint8 [N, Hz, H, W, 3] ("all"), [1, Hz, H, W, 3] ("best"), None ("none")
    costs: np.ndarray | None  # float32 [N] vs the goal image; None without a goal
    latency_ms: float  # wall time of the imagine call
    best_index: int | None = None  # the lowest-cost rollout (with a goal)


class WorldModel:
    """A loaded checkpoint + sampler + backend, with one streaming state (see the module docstring)."""

    def __init__(self, ckpt: Checkpoint, model: CausalDiT, spec: SamplerSpec, backend: Backend,
                 precision: Precision, max_batch: int, seed: int = 0, probe: StateProbe | None = None,
                 codec_dtype: torch.dtype = torch.float32):
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
        # frames ↔ diffusion space: pixels, or the latent codec the checkpoint itself carries (CKPT/codec)
        self.codec = make_codec(cfg, ckpt.path, self.device)
        if isinstance(self.codec, LatentCodec):
            # the compile backend compiles the decoder too (fixed shapes: frames are decoded at bucket sizes)
            compiled = backend.name == "compile" and self.device.type == "cuda"
            self.codec.run_in(codec_dtype, channels_last=compiled and codec_dtype != torch.float32)
            if compiled:
                self.codec.compile_decoder()
        self.image_shape = (*frame_hw(cfg, self.codec), 3)
        self.action_dim = cfg.action_dim
        self.context_frames = cfg.cache_frames
        self.frame_skip = int(ckpt.meta.get("frame_skip", 1))
        if self.frame_skip < 1 or cfg.action_dim % self.frame_skip:
            raise ValueError(f"checkpoint {ckpt.path}: frame_skip {self.frame_skip} does not divide action_dim "
                             f"{cfg.action_dim}")
        self.env_action_dim = cfg.action_dim // self.frame_skip
        self.probe = probe  # the state probe for the probe goal costs (None: pixel costs only)
        self.norm = NormStats.from_dict(ckpt.stats["action"])
        if self.norm.mean.shape != (cfg.action_dim,):
            raise ValueError(f"checkpoint {ckpt.path}: action stats have {self.norm.mean.shape[0]} dims but the "
                             f"model takes action_dim {cfg.action_dim}")
        self._backend = backend
        self._frame = (cfg.channels, cfg.height, cfg.width)  # a frame in diffusion space (pixels or latents)
        self._lock = threading.RLock()
        self._stream_gen = torch.Generator(self.device).manual_seed(seed)
        self._imagine_gen = torch.Generator(self.device).manual_seed(seed + 1)
        self._stream = None  # the batch-1 stepper holding the streaming KV cache
        self._prev: torch.Tensor | None = None  # [1, 1, C, H, W] newest clean frame of the stream
        self._ctx_cache: KVCache | None = None  # batch-1 scratch cache for imagine(context=...)
        self._ctx_seen: tuple[np.ndarray, np.ndarray] | None = None  # the context encoded in it (frames, actions)
        self._ctx_prev: torch.Tensor | None = None  # [1, 1, C, H, W] its newest frame
        self._norm_t: tuple[torch.Tensor, torch.Tensor] | None = None  # action mean/std on the device

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
        probe: str | Path | None = None,
        compile_precompiled: bool = True,
        codec_dtype: str | torch.dtype | None = "auto",
        guidance: float | None = None,
    ) -> WorldModel:
        """Load a checkpoint directory for inference.

        ``steps``: sampler steps per frame (student: 1–4 consistency steps; teacher: ODE steps);
        None/0 = the checkpoint's. ``sampler`` replaces the checkpoint's sampler entirely (e.g. a
        teacher ODE sampler on a student's network, for benchmarks). ``export_dir``: where the
        onnx/tensorrt backends find or write their exported step files (default: a temporary folder).
        ``probe``: a state-probe directory for the ``probe`` goal costs (default: ``CKPT/probe`` if present).
        ``weights``: ``selected`` (the run's validation-selected weights, when it kept some) or ``last``.
        ``compile_precompiled``: the ``compile`` backend uses (and on CUDA saves) ``aot_compile``-d steps in its
        cache folder; False traces every batch size (Inductor's artefacts still load).
        ``codec_dtype``: what a latent checkpoint's codec encodes and decodes in (auto: float16 on CUDA,
        float32 on CPU; :func:`resolve_codec_dtype`).
        ``guidance``: classifier-free action guidance w (None = the checkpoint's sampler's, 1 = none); w ≠ 1
        needs a network trained with a null action (``model.action_null``).
        """
        if int(max_batch) < 1:
            raise ValueError(f"max_batch must be ≥ 1, got {max_batch}")
        dev = resolve_device(device)
        ck = ckpt if isinstance(ckpt, Checkpoint) else load_checkpoint(ckpt, weights=weights)
        weights = resolve_dtype(dtype, dev)
        spec = sampler or sampler_from_meta(ck.meta, int(steps or 0), guidance=guidance)
        spec.times()  # raises on unsupported steps (e.g. a 5-step student)
        check_guidance(spec, ck.model_config, ck.path)
        model = build_model(ck, dev, weights)
        precision = Precision(dev, weights)
        source = None
        if weights != torch.float32:  # exporters work from float32 weights
            source = build_model(ck, "cpu", torch.float32)
        be = make_backend(backend, model, spec, precision, int(max_batch), export_dir=export_dir,
                          checkpoint=str(ck.path), source=source, compile_mode=compile_mode, compiler=compiler,
                          compile_precompiled=compile_precompiled)
        run_dir = ck.path.parent if ck.path.name == SELECTED_DIR else ck.path  # CKPT, also for CKPT/selected
        probe_dir = Path(probe) if probe else run_dir / "probe"
        if probe and not probe_dir.is_dir():
            raise ValueError(f"probe {probe} is not a directory (train one with `crcm train probe`)")
        state_probe = load_probe(probe_dir, dev) if probe_dir.is_dir() else None
        return cls(ck, model, spec, be, precision, int(max_batch), seed, state_probe,
                   resolve_codec_dtype(codec_dtype, dev))

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
            "frame_skip": self.frame_skip, "env_action_dim": self.env_action_dim,
            "costs": [c for c in COSTS if self.probe is not None or not c.startswith("probe")],
            **({"codec_dtype": str(self.codec.compute_dtype).removeprefix("torch.")}
               if isinstance(self.codec, LatentCodec) else {}),
        }

    def warmup(self, batch_sizes: list[int] | None = None) -> None:
        """Build the steppers now (CUDA graph capture, compilation, ONNX export) instead of on first use.

        Default: the stream stepper and the imagine stepper at ``max_batch``.
        """
        with self._lock:
            self._backend.stepper(1, "stream")
            decoded = {1}
            for n in [self.max_batch] if batch_sizes is None else batch_sizes:
                b = self._backend.bucket(min(n, self.max_batch))
                self._backend.stepper(b, "imagine")
                decoded.add(b)
            for b in sorted(decoded):  # a compiled decoder compiles per batch size
                self.codec.decode(torch.zeros(b, *self._frame, device=self.device))

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
        return_frames: str = "all",
        cost: str = "final_mse",
        shared_noise: bool = False,
    ) -> ImagineResult:
        """Roll out N action sequences [N, Hz, A] from a context: frames uint8 [N, Hz, H, W, 3], goal costs
        [N] (``cost`` by name) and the best rollout; ``return_frames`` = "all" | "best" | "none";
        ``shared_noise``: every rollout draws the same noise (the rows differ by their actions only)."""
        start = time.perf_counter()
        if return_frames not in RETURN_FRAMES:
            raise InputError(f"return_frames {return_frames!r} unknown; expected one of {', '.join(RETURN_FRAMES)}")
        if return_frames == "best" and goal is None:
            raise InputError("return_frames='best' needs a goal image to rank the rollouts")
        with self._lock:
            acts = check_actions(actions, "actions", self.action_dim, "[N, Hz, A]", 3)
            goal_np = None if goal is None else check_image(goal, "goal", self.image_shape[:2])
            cost_fn = None
            latent = goal_np is not None and cost in LATENT_COSTS  # scores final latents, not frames
            if goal_np is not None:
                goal_t = torch.from_numpy(goal_np).to(self.device)
                try:
                    cost_fn = (latent_cost(goal_t, self.codec.encode) if latent
                               else make_cost(cost, goal_t, self.probe))
                except CostError as exc:
                    raise InputError(str(exc)) from exc
            # costs only: a final-frame cost decodes only the last frames (latents: decoding costs), a latent
            # cost none
            decode = ("all" if return_frames != "none" else "none" if latent
                      else "last" if cost in FINAL_FRAME_COSTS else "all")
            acts_t = torch.from_numpy(np.ascontiguousarray(acts, dtype=np.float32))
            out, final = self._imagine(acts_t, context, seed, decode, latent, shared_noise)
            costs = best = None
            if cost_fn is not None:
                costs_t = cost_fn(final if latent else out)
                best = int(torch.argmin(costs_t))
                costs = costs_t.cpu().numpy().astype(np.float32)
            frames = (out.cpu().numpy() if return_frames == "all" else
                      out[best: best + 1].cpu().numpy() if return_frames == "best" else None)
        return ImagineResult(frames, costs, (time.perf_counter() - start) * 1e3, best)

    def imagine_tensor(
        self,
        actions: torch.Tensor,
        context: tuple[np.ndarray, np.ndarray] | None = None,
        seed: int | None = None,
        decode: str = "all",
        shared_noise: bool = False,
    ) -> torch.Tensor:
        """Like :meth:`imagine` for planners: raw actions float [N, Hz, A] (any device) → uint8 frames
        [N, Hz, H, W, 3] left on the model's device; ``decode="last"``: only each rollout's final frame,
        [N, 1, H, W, 3] (the other frames are never decoded); ``decode="latent"``: no frame is decoded, each
        rollout's final latent comes back instead, float [N, C, h, w] (the ``latent_mse`` cost's input).
        ``shared_noise``: every rollout draws the same noise, so two rows differ only where their actions do
        (common random numbers: a planner ranking candidates then compares actions, not noise draws)."""
        if decode not in ("all", "last", "latent"):
            raise InputError(f"decode {decode!r} unknown; expected all, last or latent")
        frames, latents = self._imagine(actions, context, seed, "none" if decode == "latent" else decode,
                                        decode == "latent", shared_noise)
        return latents if decode == "latent" else frames

    def _imagine(self, actions: torch.Tensor, context: tuple[np.ndarray, np.ndarray] | None,
                 seed: int | None, frames: str, latents: bool, shared_noise: bool = False) -> tuple[Any, Any]:
        """One batched rollout: decoded frames ("all", "last" or "none") and, with ``latents``, each rollout's
        final latent (both from the same noise; ``shared_noise``: one draw per frame for every row)."""
        if actions.ndim != 3 or actions.shape[-1] != self.action_dim or 0 in actions.shape:
            raise InputError(f"actions must be [N, Hz, {self.action_dim}] with N, Hz ≥ 1; got {tuple(actions.shape)}")
        with self._lock:
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
                f, a_np = self._check_context(context[0], context[1], "context[0] (frames)", "context[1] (actions)")
                if self._ctx_cache is None:
                    self._ctx_cache = self._backend.new_cache(1)
                seen = self._ctx_seen
                if seen is None or not (np.array_equal(seen[0], f) and np.array_equal(seen[1], a_np)):
                    # a planner's rounds share one context: it is encoded once, not once per round
                    x, a = self._upload_context(f, a_np)
                    self._ctx_seen = None  # an encode that fails part-way leaves no context marked as cached
                    self._backend.encode(self._ctx_cache, x, a)
                    self._ctx_seen, self._ctx_prev = (f.copy(), a_np.copy()), x[:, -1:]
                ctx_cache, ctx_prev = self._ctx_cache, self._ctx_prev
            gen = self._imagine_gen if seed is None else torch.Generator(self.device).manual_seed(seed)
            n_total, horizon = actions.shape[:2]
            a_all = self._normalize_tensor(actions.to(self.device, torch.float32))  # [N, Hz, A]
            kept = {"all": horizon, "last": 1, "none": 0}[frames]
            out = torch.empty(n_total, kept, *self.image_shape, dtype=torch.uint8, device=self.device)
            last = torch.empty(n_total, *self._frame, device=self.device) if latents else None
            shared = (torch.randn(horizon, self.sampler.noise_draws, 1, 1, *self._frame, generator=gen,
                                  device=self.device) if shared_noise else None)  # drawn once for every chunk
            for lo in range(0, n_total, self.max_batch):
                n = min(self.max_batch, n_total - lo)
                self._rollout_chunk(a_all[lo: lo + n], ctx_cache, ctx_prev, gen, out[lo: lo + n],
                                    None if last is None else last[lo: lo + n], shared)
            return (out if kept else None), last

    def _rollout_chunk(self, a: torch.Tensor, ctx_cache: KVCache, ctx_prev: torch.Tensor,
                       gen: torch.Generator, out: torch.Tensor, last: torch.Tensor | None = None,
                       shared: torch.Tensor | None = None) -> None:
        """Roll ``n`` rows ([n, Hz, A]) from the batch-1 context into ``out`` [n, Hz or 1 or 0, H, W, 3] (the
        last ``out.shape[1]`` frames are decoded) and, given ``last`` [n, C, h, w], the final latents.
        ``shared`` [Hz, S, 1, 1, C, h, w]: every row's noise (else each row draws its own from ``gen``)."""
        n, horizon = a.shape[:2]
        b = self._backend.bucket(n)
        st = self._backend.stepper(b, "imagine")
        last_step = last_frame_step(st)
        st.cache.copy_(ctx_cache)  # batch-1 context broadcast over the batch (in place)
        prev = ctx_prev.expand(b, *ctx_prev.shape[1:]).contiguous()
        if b > n:  # padded rows: zero actions and noise, results dropped
            a = torch.cat([a, a.new_zeros(b - n, *a.shape[1:])])
        for h in range(horizon):
            if shared is not None:
                noise = shared[h].expand(-1, n, *shared.shape[3:]).contiguous()
            else:
                noise = torch.randn(self.sampler.noise_draws, n, 1, *self._frame, generator=gen,
                                    device=self.device)
            if b > n:
                noise = torch.cat([noise, noise.new_zeros(noise.shape[0], b - n, *noise.shape[2:])], dim=1)
            step = last_step if h == horizon - 1 else st  # nothing reads the last frame's keys: no write
            x0 = step(a[:, h: h + 1], noise, prev)
            if out.shape[1] and h >= horizon - out.shape[1]:  # the whole bucket: warmup()'s decoder shapes
                out[:, h - horizon + out.shape[1]] = self.codec.decode(x0[:, 0])[:n]
            prev = x0
        if last is not None:
            last.copy_(x0[:n, 0].float())

    # ------------------------------------------------------------------ helpers

    def _normalize(self, actions: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.norm.normalize(actions)).to(self.device)

    def _normalize_tensor(self, actions: torch.Tensor) -> torch.Tensor:
        """NormStats.normalize on the device (same floor on constant dimensions)."""
        if self._norm_t is None:
            std = np.where(self.norm.std > 1e-8, self.norm.std, 1.0)
            self._norm_t = (torch.tensor(self.norm.mean, dtype=torch.float32, device=self.device),
                            torch.tensor(std, dtype=torch.float32, device=self.device))
        mean, std = self._norm_t
        return (actions - mean) / std

    def _context(self, frames: Any, actions: Any, frames_name: str, actions_name: str):
        """Validated context as unit-space x [1, K, C, H, W] and normalized actions [1, K, A]."""
        return self._upload_context(*self._check_context(frames, actions, frames_name, actions_name))

    def _check_context(self, frames: Any, actions: Any, frames_name: str,
                       actions_name: str) -> tuple[np.ndarray, np.ndarray]:
        """Validated context frames uint8 [K, H, W, 3] and raw actions [K, A] (numpy)."""
        f = check_frames(frames, frames_name, self.image_shape[:2], self.context_frames)
        a = check_actions(actions, actions_name, self.action_dim, "[K, A]", 2)
        if a.shape[0] != f.shape[0]:
            raise InputError(f"{actions_name} has {a.shape[0]} rows but {frames_name} has {f.shape[0]} frames; "
                             "expected one action (the one that produced it) per frame")
        return f, a

    def _upload_context(self, f: np.ndarray, a: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.codec.encode(torch.from_numpy(f).to(self.device))[None]
        return x, self._normalize(a)[None]

    def __repr__(self) -> str:
        return (f"WorldModel({self.checkpoint!r}, kind={self.kind}, steps={self.steps}, backend={self.backend}, "
                f"device={self.device}, dtype={self.dtype})")
