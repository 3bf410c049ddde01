"""A learned latent frame codec: a small convolutional autoencoder with 8x spatial downsampling.

At 128 px and up, pixel-space patches make too many tokens per frame; the DiT
can diffuse this codec's latents instead (DESIGN §3). ``LatentCodec`` has the
interface of :class:`crcm_robotics.model.tokenizer.PixelCodec` (uint8 frames
↔ unit-space ``[..., C, h, w]``), so it is the seam for latent diffusion.

Layout: ``x_B_3_H_W`` pixels in [-1, 1] → ``z_B_C_h_w`` raw latents, h = H / stride.
The checkpoint holds per-channel latent statistics (``latent_shift``,
``latent_scale``, measured on training frames after training), so encoded
latents are about zero-mean, unit-variance: TrigFlow's unit space.

Training lives in ``distill/codec.py`` (``crcm train codec``); this module loads a
codec checkpoint without it (:func:`load_codec`).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as Fn

from crcm_robotics.config import CodecConfig, ConfigError, from_dict, to_dict


def _groups(channels: int) -> int:
    return 8 if channels % 8 == 0 else 1


class ResBlock(nn.Module):
    """GroupNorm → SiLU → conv, twice, plus the input (channels unchanged)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(channels), channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(_groups(channels), channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x_B_C_H_W: torch.Tensor) -> torch.Tensor:
        h = self.conv1(Fn.silu(self.norm1(x_B_C_H_W)))
        h = self.conv2(Fn.silu(self.norm2(h)))
        return x_B_C_H_W + h


class Encoder(nn.Module):
    """Pixels [B, 3, H, W] → raw latents [B, C, H/stride, W/stride]; one stride-2 conv per level."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        widths = [cfg.base_channels * m for m in cfg.channel_mult]
        self.conv_in = nn.Conv2d(3, widths[0], 3, padding=1)
        levels = []
        for i, w in enumerate(widths):
            w_next = widths[min(i + 1, len(widths) - 1)]
            levels.append(nn.Sequential(*[ResBlock(w) for _ in range(cfg.blocks_per_level)],
                                        nn.Conv2d(w, w_next, 3, stride=2, padding=1)))
        self.levels = nn.ModuleList(levels)
        self.mid = ResBlock(widths[-1])
        self.norm_out = nn.GroupNorm(_groups(widths[-1]), widths[-1])
        self.conv_out = nn.Conv2d(widths[-1], cfg.latent_channels, 3, padding=1)

    def forward(self, x_B_3_H_W: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x_B_3_H_W)
        for level in self.levels:
            h = level(h)
        return self.conv_out(Fn.silu(self.norm_out(self.mid(h))))


class Decoder(nn.Module):
    """Raw latents [B, C, h, w] → pixels [B, 3, h·stride, w·stride], about [-1, 1] (upsample + conv)."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        widths = [cfg.base_channels * m for m in cfg.channel_mult]
        self.conv_in = nn.Conv2d(cfg.latent_channels, widths[-1], 3, padding=1)
        self.mid = ResBlock(widths[-1])
        levels = []
        for i in reversed(range(len(widths))):
            w_in = widths[min(i + 1, len(widths) - 1)]
            levels.append(nn.ModuleDict({
                "up": nn.Conv2d(w_in, widths[i], 3, padding=1),
                "blocks": nn.Sequential(*[ResBlock(widths[i]) for _ in range(cfg.blocks_per_level)]),
            }))
        self.levels = nn.ModuleList(levels)
        self.norm_out = nn.GroupNorm(_groups(widths[0]), widths[0])
        self.conv_out = nn.Conv2d(widths[0], 3, 3, padding=1)

    def forward(self, z_B_C_h_w: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z_B_C_h_w))
        for level in self.levels:
            h = level["blocks"](level["up"](Fn.interpolate(h, scale_factor=2.0, mode="nearest")))
        return self.conv_out(Fn.silu(self.norm_out(h)))


class FrameAutoencoder(nn.Module):
    """Encoder + decoder + the latent statistics that map raw latents to unit space."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.register_buffer("latent_shift", torch.zeros(cfg.latent_channels))
        self.register_buffer("latent_scale", torch.ones(cfg.latent_channels))

    def forward(self, x_B_3_H_W: torch.Tensor) -> torch.Tensor:
        """Reconstruction of pixels in [-1, 1] (the training path: no latent statistics involved)."""
        return self.decoder(self.encoder(x_B_3_H_W))

    @torch.no_grad()
    def set_latent_stats(self, z_B_C_h_w: torch.Tensor) -> None:
        """Per-channel mean/std of raw latents, so encoded latents are about N(0, 1)."""
        z = z_B_C_h_w.float().transpose(0, 1).flatten(1)  # [C, B·h·w]
        self.latent_shift.copy_(z.mean(1))
        self.latent_scale.copy_(z.std(1).clamp_min(1e-6))


class LatentCodec:
    """uint8 frames [..., H, W, 3] ↔ unit-space latents [..., C, h, w] (the FrameCodec interface).

    ``meta`` is the codec checkpoint's meta.json (kind, metrics, training data), kept so that a copy
    saved into a teacher or student checkpoint (:meth:`save`) says where the codec came from.
    """

    def __init__(self, net: FrameAutoencoder, meta: dict[str, Any] | None = None):
        self.net = net
        self.cfg = net.cfg
        self.channels = net.cfg.latent_channels
        self.stride = net.cfg.stride
        self.image_hw = (net.cfg.height, net.cfg.width)
        self.meta = dict(meta or {"kind": "codec"})
        self.compute_dtype = torch.float32
        self._layout = torch.contiguous_format
        self._encoder: nn.Module = net.encoder  # the networks encode/decode run (float32: net's own)
        self._decoder: nn.Module = net.decoder

    def run_in(self, dtype: torch.dtype, channels_last: bool = False) -> LatentCodec:
        """Encode and decode with weights and activations in ``dtype`` (float16/bfloat16 on a GPU: tensor-core
        convolutions at twice TF32's rate), optionally in channels-last layout; latents and frames keep their
        types, and ``net`` stays float32 for :meth:`save` and training. float32 in the default layout goes
        back to ``net``'s own modules."""
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"codec compute dtype must be float32, float16 or bfloat16, got {dtype}")
        self.compute_dtype, self._layout = dtype, (torch.channels_last if channels_last
                                                   else torch.contiguous_format)
        if dtype == torch.float32 and not channels_last:
            self._encoder, self._decoder = self.net.encoder, self.net.decoder
        else:
            self._encoder, self._decoder = (copy.deepcopy(m).to(dtype=dtype, memory_format=self._layout)
                                            for m in (self.net.encoder, self.net.decoder))
        return self

    def compile_decoder(self, backend: str = "inductor") -> LatentCodec:
        """Run the decoder through ``torch.compile`` (fixed shapes: one compilation per batch size decoded).
        On an H200 it fuses the GroupNorm/SiLU passes between the convolutions: 1,024 frames of 128×128
        decode in 83 ms against 162 ms in float16 eager (``scripts/codec_precision.py --variants``)."""
        if self._decoder is self.net.decoder:  # keep the float32 network itself uncompiled (training, save)
            self._decoder = copy.deepcopy(self.net.decoder)
        self._decoder = torch.compile(self._decoder, backend=backend, dynamic=False)
        return self

    def _run(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.compute_dtype == torch.float32 and self._layout == torch.contiguous_format:
            return module(x)
        return module(x.to(dtype=self.compute_dtype, memory_format=self._layout)).float()

    def _check_frames(self, frames: torch.Tensor) -> None:
        if frames.dtype != torch.uint8:
            raise ValueError(f"frames must be uint8, got {frames.dtype}")
        if frames.ndim < 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be [..., H, W, 3], got shape {tuple(frames.shape)}")
        h, w = frames.shape[-3:-1]
        if (h, w) != (self.cfg.height, self.cfg.width):
            expected = f"{self.cfg.height}x{self.cfg.width}"
            raise ValueError(f"frames are {h}x{w}; this codec encodes {expected} frames")

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        self._check_frames(frames)
        lead = frames.shape[:-3]
        x = frames.reshape(-1, *frames.shape[-3:]).movedim(-1, -3).float() / 127.5 - 1.0
        z = self._run(self._encoder, x.to(self.net.latent_shift.device))
        z = (z - self.net.latent_shift[:, None, None]) / self.net.latent_scale[:, None, None]
        return z.reshape(*lead, *z.shape[1:])

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        c, h, w = self.channels, self.cfg.height // self.cfg.stride, self.cfg.width // self.cfg.stride
        if tuple(x.shape[-3:]) != (c, h, w):
            raise ValueError(f"latents must be [..., {c}, {h}, {w}], got shape {tuple(x.shape)}")
        lead = x.shape[:-3]
        shift, scale = self.net.latent_shift[:, None, None], self.net.latent_scale[:, None, None]
        z = x.reshape(-1, c, h, w).float() * scale + shift
        img = (self._run(self._decoder, z).clamp(-1, 1) + 1.0) * 127.5
        img = img.round().to(torch.uint8).movedim(-3, -1)
        return img.reshape(*lead, *img.shape[1:])

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        """The latent of the uint8 image ``decode(x)`` shows: what a camera stream would feed back.

        A round trip, not the identity: the DiT was trained on latents of real images (encoder outputs),
        and a generated latent need not be one. Rollouts that feed back ``encode(decode(x))`` condition on
        exactly what the robot would have seen had it shown that image, as PixelCodec's rounding does;
        the price is one decoder and one encoder pass per fed-back frame.
        """
        return self.encode(self.decode(x))

    def save(self, path: str | Path) -> Path:
        """Write this codec as a codec checkpoint directory (float32 weights, latent statistics included)."""
        from crcm_robotics.model.checkpoint import save_checkpoint

        return save_checkpoint(path, self.net.state_dict(), {"codec": to_dict(self.cfg)}, {}, self.meta)


class CodecCheckpointError(ValueError):
    """A codec checkpoint directory is missing files or does not match its config."""


def load_codec(path: str | Path, device: str | torch.device = "cpu") -> LatentCodec:
    """The codec of checkpoint directory ``path`` (config.yaml's ``codec`` + safetensors), in eval mode."""
    import yaml
    from safetensors.torch import load_file

    from crcm_robotics.model.checkpoint import INDEX_FILE

    path = Path(path)
    for name in ("config.yaml", "meta.json", INDEX_FILE):
        if not (path / name).is_file():
            raise CodecCheckpointError(f"codec checkpoint {path} has no {name}")
    meta = json.loads((path / "meta.json").read_text())
    if meta.get("kind") != "codec":
        kind = meta.get("kind")
        raise CodecCheckpointError(f"checkpoint {path} is a {kind!r} checkpoint, expected a codec")
    config = yaml.safe_load((path / "config.yaml").read_text())
    if not isinstance(config, dict) or "codec" not in config:
        raise CodecCheckpointError(f"codec checkpoint {path}: config.yaml has no codec section")
    try:
        cfg = from_dict(CodecConfig, config["codec"], "checkpoint config.codec")
    except ConfigError as exc:
        raise CodecCheckpointError(str(exc)) from None
    state: dict[str, torch.Tensor] = {}
    for fname in sorted(set(json.loads((path / INDEX_FILE).read_text())["weight_map"].values())):
        state.update(load_file(str(path / fname)))
    net = FrameAutoencoder(cfg)
    result = net.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CodecCheckpointError(f"codec checkpoint {path} does not match its config: missing "
                                   f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}")
    meta.setdefault("source", str(path))  # a copy inside a teacher/student names the codec it was copied from
    return LatentCodec(net.to(device).eval().requires_grad_(False), meta)
