"""The KV cache of clean past frames: one typed object, sized from the model config (STYLE §4b).

A ring buffer of ``window`` frames per layer. Keys are stored already rotated
by their frame's absolute temporal position (RoPE is relative, so attention
only sees position differences, which stay within the window however long the
stream runs). All state is in tensors (slot index, frame count), so a step
that reads and writes the cache can be captured in a CUDA graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class KVCache:
    k: torch.Tensor  # [layers, B, heads, window*P, head_dim], RoPE-rotated
    v: torch.Tensor  # [layers, B, heads, window*P, head_dim]
    frames_seen: torch.Tensor  # int64 [] — frames written so far = absolute position of the next frame
    window: int
    tokens_per_frame: int

    @classmethod
    def empty(
        cls, layers: int, batch: int, heads: int, head_dim: int, window: int, tokens_per_frame: int,
        device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
    ) -> "KVCache":
        shape = (layers, batch, heads, window * tokens_per_frame, head_dim)
        return cls(
            k=torch.zeros(shape, device=device, dtype=dtype),
            v=torch.zeros(shape, device=device, dtype=dtype),
            frames_seen=torch.zeros((), dtype=torch.int64, device=device),
            window=window,
            tokens_per_frame=tokens_per_frame,
        )

    @property
    def batch(self) -> int:
        return self.k.shape[1]

    def valid_tokens(self) -> torch.Tensor:
        """bool [window*P]: which cache slots hold a frame."""
        slots = torch.arange(self.window, device=self.k.device)
        valid = slots < self.frames_seen  # slots fill in order 0..W-1 before the ring wraps
        return valid.repeat_interleave(self.tokens_per_frame)

    def token_index(self, n_frames: int) -> torch.Tensor:
        """int64 [n_frames*P]: cache rows the next ``n_frames`` frames go to (ring order)."""
        if n_frames > self.window:
            raise ValueError(f"cannot write {n_frames} frames into a {self.window}-frame cache at once")
        frame_slots = (self.frames_seen + torch.arange(n_frames, device=self.k.device)) % self.window
        offsets = torch.arange(self.tokens_per_frame, device=self.k.device)
        return (frame_slots[:, None] * self.tokens_per_frame + offsets[None, :]).reshape(-1)

    def write(self, layer: int, k_new: torch.Tensor, v_new: torch.Tensor, index: torch.Tensor) -> None:
        """Store [B, heads, n*P, head_dim] keys/values of new clean frames at rows ``index``."""
        self.k[layer].index_copy_(2, index, k_new.to(self.k.dtype))
        self.v[layer].index_copy_(2, index, v_new.to(self.v.dtype))

    def advance(self, n_frames: int = 1) -> None:
        self.frames_seen.add_(n_frames)

    def reset(self) -> None:
        self.k.zero_()
        self.v.zero_()
        self.frames_seen.zero_()

    def copy_(self, other: "KVCache") -> None:
        """In-place copy; a batch-1 cache broadcasts over this batch (addresses kept for CUDA graphs)."""
        self.k.copy_(other.k)
        self.v.copy_(other.v)
        self.frames_seen.copy_(other.frames_seen)

    def clone(self) -> "KVCache":
        return KVCache(self.k.clone(), self.v.clone(), self.frames_seen.clone(), self.window, self.tokens_per_frame)
