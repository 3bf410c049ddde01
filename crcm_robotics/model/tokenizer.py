"""Frame codecs: uint8 camera frames ↔ the diffusion space the DiT works in.

The DiT patchifies whatever the codec yields: :class:`PixelCodec` (pixels, the default) or the learned
:class:`crcm_robotics.model.codec.LatentCodec` (``model.codec=PATH``: 8x smaller latent grids for large
images). :func:`make_codec` is the one place that picks between them, for training, eval and the runtime;
:func:`fit_model_config` sizes the DiT to the chosen codec's grid. One model code path for both.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Protocol

import torch

from crcm_robotics.config import ConfigError, ModelConfig
from crcm_robotics.model.checkpoint import CODEC_DIR


class FrameCodec(Protocol):
    channels: int
    stride: int  # image pixels per diffusion-grid cell along each axis (1: pixel space)
    image_hw: tuple[int, int] | None  # the only frame size it encodes (None: any)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 [..., H, W, 3] → float [..., C, h, w] in unit space."""

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """float [..., C, h, w] → uint8 [..., H, W, 3]."""

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        """The diffusion-space frame of the uint8 image ``decode(x)`` (what a camera would feed back)."""


class PixelCodec:
    """Pixels in [-1, 1] divided by σ_data (TrigFlow's unit space); no learned parameters."""

    channels = 3
    stride = 1
    image_hw = None

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


def make_codec(model: ModelConfig, ckpt_dir: str | Path | None = None,
               device: str | torch.device = "cpu") -> FrameCodec:
    """The frame codec of ``model``: pixels when ``model.codec`` is unset, else the learned latent codec.

    With ``ckpt_dir`` (a teacher or student checkpoint) the codec is the one the checkpoint carries in
    ``ckpt_dir/codec`` (never the path training started from); without it, ``model.codec`` is the
    codec checkpoint directory to load (``crcm train codec``).
    """
    if not model.codec:
        return PixelCodec(model.sigma_data)
    from crcm_robotics.model.codec import CodecCheckpointError, load_codec

    path = Path(ckpt_dir) / CODEC_DIR if ckpt_dir is not None else Path(model.codec)
    if ckpt_dir is not None and not path.is_dir():
        raise CodecCheckpointError(f"checkpoint {ckpt_dir} diffuses latents (model.codec={model.codec}) but "
                                   f"has no {CODEC_DIR}/ directory")
    if not path.is_dir():
        raise ConfigError(f"model.codec={model.codec} is not a directory (train one with `crcm train codec`)")
    return load_codec(path, device)


def frame_hw(model: ModelConfig, codec: FrameCodec) -> tuple[int, int]:
    """The camera image size (H, W) of a model whose diffusion grid is ``model.height`` × ``model.width``."""
    return model.height * codec.stride, model.width * codec.stride


def fit_model_config(model: ModelConfig, codec: FrameCodec, image_hw: tuple[int, int], data: str,
                     action_dim: int) -> ModelConfig:
    """``model`` sized for frames of ``image_hw`` from store ``data``: the DiT's grid is the codec's.

    Pixel space: channels 3, grid = the image. Latent space: channels = the codec's latent channels,
    grid = image / stride, and ``model.codec`` becomes :data:`CODEC_DIR`, where checkpoints carry it.
    """
    h, w = image_hw
    if codec.image_hw is not None and codec.image_hw != (h, w):
        ch, cw = codec.image_hw
        raise ConfigError(f"model.codec={model.codec} encodes {ch}x{cw} frames but store {data} has {h}x{w} "
                          f"frames")
    gh, gw = h // codec.stride, w // codec.stride
    if codec.stride > 1 and (gh % model.patch or gw % model.patch):
        raise ConfigError(f"model: the codec's latent grid {gh}x{gw} ({h}x{w} frames / stride "
                          f"{codec.stride}) is not divisible by patch {model.patch}")
    fitted = dataclasses.replace(model, height=gh, width=gw, channels=codec.channels, action_dim=action_dim,
                                 codec=CODEC_DIR if model.codec else None)
    fitted.validate()
    return fitted
