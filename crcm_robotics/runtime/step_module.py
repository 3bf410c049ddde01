"""The per-frame step as a pure function of tensors, for graph exporters (ONNX, torch.export / TensorRT).

    StepModule(k, v, frames_seen, action, noise, prev) -> (x0, k_next, v_next, frames_seen_next)

    k, v         float32 [layers, B, heads, window*P, head_dim]   the KV cache (RoPE-rotated keys)
    frames_seen  int64   []                                        frames written so far
    action       float32 [B, 1, A]                                 normalized action producing the frame
    noise        float32 [S, B, 1, C, H, W]                        S = sampler noise draws
    prev         float32 [B, 1, C, H, W]                           last clean frame (unit space)
    x0           float32 [B, 1, C, H, W]                           the predicted frame (unit space)

It runs the sampler's own :func:`predict_next_frame` on a :class:`FunctionalKVCache`
— the same ring buffer, but writes return new tensors instead of mutating
inputs, so exporters see the cache as explicit inputs and outputs.
:func:`export_copy` makes an exportable copy of the network (float32; RMSNorm
spelled out, since the TorchScript ONNX exporter has no ``aten::rms_norm``).
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from crcm_robotics.model.dit import CausalDiT
from crcm_robotics.model.kv_cache import KVCache
from crcm_robotics.model.sampler import SamplerSpec, predict_next_frame

INPUT_NAMES = ("k", "v", "frames_seen", "action", "noise", "prev")
OUTPUT_NAMES = ("x0", "k_next", "v_next", "frames_seen_next")


class FunctionalKVCache(KVCache):
    """A :class:`KVCache` whose ``k``/``v`` are per-layer lists and whose writes are out-of-place."""

    def write(self, layer: int, k_new: torch.Tensor, v_new: torch.Tensor, index: torch.Tensor) -> None:
        self.k[layer] = self.k[layer].index_copy(2, index, k_new.to(self.k[layer].dtype))
        self.v[layer] = self.v[layer].index_copy(2, index, v_new.to(self.v[layer].dtype))

    def advance(self, n_frames: int = 1) -> None:
        self.frames_seen = self.frames_seen + n_frames

    def valid_tokens(self) -> torch.Tensor:
        slots = torch.arange(self.window, device=self.frames_seen.device)
        return (slots < self.frames_seen).repeat_interleave(self.tokens_per_frame)

    def token_index(self, n_frames: int) -> torch.Tensor:
        dev = self.frames_seen.device
        frame_slots = (self.frames_seen + torch.arange(n_frames, device=dev)) % self.window
        offsets = torch.arange(self.tokens_per_frame, device=dev)
        return (frame_slots[:, None] * self.tokens_per_frame + offsets[None, :]).reshape(-1)


class StepModule(nn.Module):
    """``predict_next_frame`` with the KV cache as explicit inputs and outputs."""

    def __init__(self, model: CausalDiT, spec: SamplerSpec):
        super().__init__()
        self.model = model
        self.spec = spec

    def forward(self, k: torch.Tensor, v: torch.Tensor, frames_seen: torch.Tensor, action: torch.Tensor,
                noise: torch.Tensor, prev: torch.Tensor):
        cfg = self.model.cfg
        cache = FunctionalKVCache(list(k.unbind(0)), list(v.unbind(0)), frames_seen, cfg.cache_frames,
                                  self.model.tokens_per_frame)
        x0 = predict_next_frame(self.model, cache, action, noise, self.spec, prev)
        return x0, torch.stack(cache.k), torch.stack(cache.v), cache.frames_seen


class ExplicitRMSNorm(nn.Module):
    """x / sqrt(mean(x²) + eps) · weight, written with basic ops (exportable to any ONNX opset)."""

    def __init__(self, norm: nn.RMSNorm):
        super().__init__()
        self.eps = norm.eps if norm.eps is not None else torch.finfo(torch.float32).eps
        self.weight = nn.Parameter(norm.weight.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def export_copy(model: CausalDiT, device: torch.device | str = "cpu") -> CausalDiT:
    """A float32 copy of the network with every ``nn.RMSNorm`` replaced by :class:`ExplicitRMSNorm`."""
    out = copy.deepcopy(model).to(device=device, dtype=torch.float32).eval()
    for module in list(out.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.RMSNorm):
                setattr(module, name, ExplicitRMSNorm(child))
    for p in out.parameters():
        p.requires_grad_(False)
    return out


def example_inputs(model: CausalDiT, spec: SamplerSpec, batch: int, device: torch.device | str = "cpu",
                   frames_seen: int = 1) -> tuple[torch.Tensor, ...]:
    """Inputs of the right shapes/dtypes for tracing (random cache, ``frames_seen`` frames valid)."""
    cfg = model.cfg
    g = torch.Generator().manual_seed(0)
    cache = model.new_cache(batch, "cpu", torch.float32)
    k = torch.randn(cache.k.shape, generator=g)
    v = torch.randn(cache.v.shape, generator=g)
    frame = (cfg.channels, cfg.height, cfg.width)
    inputs = (
        k, v, torch.tensor(frames_seen, dtype=torch.int64),
        torch.randn(batch, 1, cfg.action_dim, generator=g),
        torch.randn(spec.noise_draws, batch, 1, *frame, generator=g),
        torch.randn(batch, 1, *frame, generator=g),
    )
    return tuple(t.to(device) for t in inputs)
