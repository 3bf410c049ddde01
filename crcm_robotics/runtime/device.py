"""Where and in what precision the runtime runs: ``device=auto`` and ``dtype=auto`` resolved once.

Its own module, below both :mod:`.world_model` and :mod:`.export` (which the
backends import), so imports point one way (DESIGN §1).
"""

from __future__ import annotations

import torch

from crcm_robotics.config import ConfigError

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16, "half": torch.float16}


def resolve_device(device: str | torch.device) -> torch.device:
    """"auto": the current CUDA device when there is one, else the CPU; an explicit CUDA device must exist."""
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


def resolve_codec_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """The latent codec's compute dtype. None/"auto": float16 on CUDA (tensor-core convolutions, with three
    more mantissa bits than bfloat16 for the decoded pixels), float32 on CPU; otherwise as
    :func:`resolve_dtype`."""
    if dtype is None or dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    try:
        return resolve_dtype(dtype, device)
    except ValueError as exc:
        raise ValueError(f"codec_dtype: {exc}") from None
