"""Frame codecs: uint8 camera frames ↔ the diffusion space the DiT works in.

The DiT patchifies whatever the codec yields, so a learned autoencoder (frames
→ latent grids) can replace :class:`PixelCodec` for large images by
implementing the same two methods.
"""

from __future__ import annotations

from typing import Protocol

import torch


class FrameCodec(Protocol):
    channels: int

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 [..., H, W, 3] → float [..., C, h, w] in unit space."""

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """float [..., C, h, w] → uint8 [..., H, W, 3]."""


class PixelCodec:
    """Pixels in [-1, 1] divided by σ_data (TrigFlow's unit space); no learned parameters."""

    channels = 3

    def __init__(self, sigma_data: float = 0.5):
        self.sigma_data = sigma_data

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.dtype != torch.uint8:
            raise ValueError(f"frames must be uint8, got {frames.dtype}")
        x = frames.movedim(-1, -3).float() / 127.5 - 1.0
        return x / self.sigma_data

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        img = ((x.float() * self.sigma_data).clamp(-1, 1) + 1.0) * 127.5
        return img.round().to(torch.uint8).movedim(-3, -1)

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        """The unit-space frame the uint8 image ``decode(x)`` encodes to (clamped, rounded; same layout).

        Autoregressive rollouts feed this back as history: the model then sees
        exactly the images it emitted, as a camera stream would give it, and
        sub-quantum errors cannot accumulate frame after frame.
        """
        levels = ((x * self.sigma_data).clamp(-1, 1) + 1.0) * 127.5
        return (levels.round() / 127.5 - 1.0) / self.sigma_data
