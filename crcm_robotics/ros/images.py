"""``sensor_msgs/Image`` and ``CompressedImage`` <-> uint8 RGB arrays, and fitting frames to the model size.

Works on any object with the ROS field names (rclpy messages, ``rosbags``
dataclasses). ``Image.data`` may be ``bytes``, ``array.array('B')`` (rclpy) or
a uint8 numpy array (rosbags). Rows may be padded: row ``r`` starts at byte
``r * step`` and only its first ``width * channels`` bytes are pixels.

Supported encodings (8 bits per channel): rgb8, bgr8, rgba8, bgra8, mono8.
Anything else is an :class:`ImageError` naming the encoding and the supported
list, never a silent reinterpretation.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np

# encoding -> (channels, indices of R, G, B in a pixel)
ENCODINGS: dict[str, tuple[int, tuple[int, int, int]]] = {
    "rgb8": (3, (0, 1, 2)),
    "bgr8": (3, (2, 1, 0)),
    "rgba8": (4, (0, 1, 2)),
    "bgra8": (4, (2, 1, 0)),
    "mono8": (1, (0, 0, 0)),
}
COMPRESSED_FORMATS = ("jpeg", "png")


class ImageError(ValueError):
    """An image message cannot be converted (unsupported encoding, inconsistent size, undecodable bytes)."""


def _as_uint8(data: Any) -> np.ndarray:
    """The bytes of a message's ``data`` field as a flat uint8 array (no copy where possible)."""
    if isinstance(data, np.ndarray):
        return (
            data.reshape(-1).view(np.uint8) if data.dtype.itemsize == 1 else data.astype(np.uint8).reshape(-1)
        )
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:  # a plain list of ints
        return np.asarray(data, dtype=np.uint8).reshape(-1)


def image_to_rgb(msg: Any, where: str = "image") -> np.ndarray:
    """Decode a ``sensor_msgs/Image`` to a contiguous uint8 ``[H, W, 3]`` RGB array.

    ``where`` names the source in error messages (e.g. ``"/camera/image_raw"``).
    """
    encoding = str(msg.encoding).lower()
    if encoding not in ENCODINGS:
        raise ImageError(
            f"{where}: unsupported image encoding {msg.encoding!r}; supported: {', '.join(ENCODINGS)}"
        )
    channels, rgb = ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageError(f"{where}: empty image ({height}x{width})")
    row_bytes = width * channels
    if step < row_bytes:
        raise ImageError(
            f"{where}: step {step} is smaller than width * channels = {width} * {channels} = {row_bytes} "
            f"for encoding {encoding}"
        )
    data = _as_uint8(msg.data)
    needed = step * (height - 1) + row_bytes
    if data.size < needed:
        raise ImageError(
            f"{where}: data has {data.size} bytes, expected step * height = {step} * {height} = "
            f"{step * height} "
            f"for a {height}x{width} {encoding} image"
        )
    if data.size < step * height:  # last row unpadded: pad a view-able copy
        data = np.concatenate([data, np.zeros(step * height - data.size, np.uint8)])
    rows = data[: step * height].reshape(height, step)[:, :row_bytes].reshape(height, width, channels)
    if channels == 1:
        return np.ascontiguousarray(np.repeat(rows, 3, axis=2))
    return np.ascontiguousarray(rows[:, :, list(rgb)])


def compressed_to_rgb(msg: Any, where: str = "image") -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG or PNG) to uint8 ``[H, W, 3]`` RGB.

    ``format`` follows image_transport (``"jpeg"``, ``"png"``, ``"bgr8; jpeg
    compressed bgr8"``); the file's own colour model is authoritative, so the
    decoded array is RGB whatever the original encoding was. ``compressedDepth``
    and video codecs are rejected.
    """
    from PIL import Image, UnidentifiedImageError

    fmt = str(msg.format).lower()
    if "compresseddepth" in fmt or (fmt and not any(k in fmt for k in ("jpeg", "jpg", "png"))):
        raise ImageError(
            f"{where}: unsupported CompressedImage format {msg.format!r}; "
            f"supported: {', '.join(COMPRESSED_FORMATS)}"
        )
    raw = _as_uint8(msg.data).tobytes()
    try:
        with Image.open(io.BytesIO(raw)) as img:
            if img.format not in ("JPEG", "PNG"):
                raise ImageError(f"{where}: CompressedImage holds {img.format} data; supported: jpeg, png")
            if img.mode not in ("RGB", "L", "RGBA", "P", "LA"):
                raise ImageError(
                    f"{where}: CompressedImage has pixel mode {img.mode}; expected 8-bit colour or gray"
                )
            return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageError(
            f"{where}: cannot decode CompressedImage ({msg.format!r}, {len(raw)} bytes): {exc}"
        ) from None


@dataclass(frozen=True)
class EncodedImage:
    """Fields of a ``sensor_msgs/Image`` (``data`` as bytes, rows unpadded)."""

    height: int
    width: int
    encoding: str
    step: int
    data: bytes


def encode_rgb(frame_HW3: np.ndarray, encoding: str = "rgb8") -> EncodedImage:
    """Encode a uint8 ``[H, W, 3]`` RGB frame as Image fields in ``encoding`` (one of :data:`ENCODINGS`)."""
    frame_HW3 = np.asarray(frame_HW3)
    if frame_HW3.dtype != np.uint8 or frame_HW3.ndim != 3 or frame_HW3.shape[2] != 3:
        raise ImageError(f"expected a uint8 [H, W, 3] frame, got {frame_HW3.dtype} {tuple(frame_HW3.shape)}")
    if encoding not in ENCODINGS:
        raise ImageError(f"unsupported output encoding {encoding!r}; supported: {', '.join(ENCODINGS)}")
    h, w, _ = frame_HW3.shape
    if encoding == "mono8":
        luma = frame_HW3.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        pixels = np.clip(np.rint(luma), 0, 255).astype(np.uint8)[..., None]
    else:
        channels, rgb = ENCODINGS[encoding]
        pixels = np.empty((h, w, channels), np.uint8)
        pixels[..., list(rgb)] = frame_HW3
        if channels == 4:
            pixels[..., 3] = 255
    return EncodedImage(h, w, encoding, w * pixels.shape[2], np.ascontiguousarray(pixels).tobytes())


def fit_frame(frame_HW3: np.ndarray, size_HW: tuple[int, int], center_crop: bool = True) -> np.ndarray:
    """Resize a uint8 RGB frame to ``size_HW``; with ``center_crop``, first crop the centre to its aspect.

    Downscaling uses area averaging (Pillow BOX), upscaling bilinear. The same
    function serves the rosbag importer and the live node, so training frames
    and live frames are prepared identically.
    """
    from PIL import Image

    th, tw = int(size_HW[0]), int(size_HW[1])
    if th <= 0 or tw <= 0:
        raise ImageError(f"target size must be positive, got {th}x{tw}")
    h, w = frame_HW3.shape[:2]
    if (h, w) == (th, tw):
        return frame_HW3
    if center_crop:
        if w * th > h * tw:  # too wide
            cw = max(1, round(h * tw / th))
            x0 = (w - cw) // 2
            frame_HW3 = frame_HW3[:, x0 : x0 + cw]
        elif w * th < h * tw:  # too tall
            ch = max(1, round(w * th / tw))
            y0 = (h - ch) // 2
            frame_HW3 = frame_HW3[y0 : y0 + ch]
        h, w = frame_HW3.shape[:2]
        if (h, w) == (th, tw):
            return np.ascontiguousarray(frame_HW3)
    resample = Image.Resampling.BOX if th <= h and tw <= w else Image.Resampling.BILINEAR
    out = Image.fromarray(np.ascontiguousarray(frame_HW3)).resize((tw, th), resample=resample)
    return np.asarray(out, dtype=np.uint8).copy()


def is_empty_image(msg: Any) -> bool:
    """True for a default-constructed Image (how an optional image field is left unset)."""
    return int(msg.height) == 0 or int(msg.width) == 0
