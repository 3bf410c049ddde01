"""Checks on what callers hand the :class:`WorldModel`; every failure is an :class:`InputError` sentence.

Policy: frames must be ``uint8`` RGB exactly (no silent casting of floats or
other ranges). Actions must be floating point, ``float32`` or ``float64``
(converted to float32 after normalization); integer, bool or float16 arrays are
rejected — an integer array in an action slot is almost always a wrong buffer
(frames, indices), and casting it would hide that. Every value must be finite.
"""

from __future__ import annotations

from typing import Any

import numpy as np

ACTION_DTYPES = (np.float32, np.float64)


class InputError(ValueError):
    """A WorldModel argument has the wrong type, dtype, shape or value; the message names it."""


def _array(x: Any, name: str, expected: str) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (list, tuple)):
        return np.asarray(x)
    if type(x).__module__.startswith("torch"):
        raise InputError(f"{name} must be a numpy array {expected}; got a torch tensor "
                         "(pass tensor.cpu().numpy())")
    raise InputError(f"{name} must be a numpy array {expected}; got {type(x).__name__}")


def check_frames(x: Any, name: str, image_hw: tuple[int, int], max_frames: int | None = None) -> np.ndarray:
    """uint8 [K, H, W, 3] with the model's H×W (and 1 ≤ K ≤ max_frames when given)."""
    h, w = image_hw
    expected = f"uint8 [K, {h}, {w}, 3]"
    x = _array(x, name, expected)
    if x.dtype != np.uint8:
        raise InputError(f"{name} must be {expected} (RGB pixels 0-255); got dtype {x.dtype}")
    if x.ndim != 4 or x.shape[-1] != 3:
        raise InputError(f"{name} must have shape {expected}; got {tuple(x.shape)}")
    if x.shape[1:3] != (h, w):
        raise InputError(f"{name} are {x.shape[1]}x{x.shape[2]} images; the model takes {h}x{w} "
                         "(resize or crop before calling)")
    if max_frames is not None and not 1 <= x.shape[0] <= max_frames:
        raise InputError(f"{name} has {x.shape[0]} frames; expected 1 to {max_frames} "
                         "(the model's KV cache window)")
    return np.ascontiguousarray(x)


def check_image(x: Any, name: str, image_hw: tuple[int, int]) -> np.ndarray:
    """One uint8 [H, W, 3] image (a goal)."""
    h, w = image_hw
    expected = f"uint8 [{h}, {w}, 3]"
    x = _array(x, name, expected)
    if x.dtype != np.uint8:
        raise InputError(f"{name} must be {expected} (RGB pixels 0-255); got dtype {x.dtype}")
    if x.ndim != 3 or x.shape[-1] != 3:
        raise InputError(f"{name} must have shape {expected}; got {tuple(x.shape)}")
    if x.shape[:2] != (h, w):
        raise InputError(f"{name} is a {x.shape[0]}x{x.shape[1]} image; the model takes {h}x{w}")
    return np.ascontiguousarray(x)


def check_actions(x: Any, name: str, action_dim: int, layout: str, ndim: int) -> np.ndarray:
    """Float actions with ``ndim`` dims, the last of size ``action_dim``, every leading dim ≥ 1, all finite.

    ``layout`` is how the error messages spell the expected shape, e.g. ``"[N, Hz, A]"``.
    """
    expected = f"float32 {layout} with A = {action_dim}"
    x = _array(x, name, expected)
    if x.dtype not in ACTION_DTYPES:
        raise InputError(f"{name} must be floating point (float32 or float64) {layout}; got dtype {x.dtype}")
    if x.ndim != ndim:
        raise InputError(f"{name} must have shape {layout} ({ndim} dims); got {tuple(x.shape)}")
    if x.shape[-1] != action_dim:
        raise InputError(f"{name} has action dim {x.shape[-1]}; the model takes action_dim {action_dim}")
    if any(s < 1 for s in x.shape[:-1]):
        raise InputError(f"{name} has shape {tuple(x.shape)}; every dim of {layout} must be ≥ 1")
    bad = ~np.isfinite(x)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        where = ", ".join(map(str, idx))
        raise InputError(f"{name}[{where}] is {x[idx]}; every action value must be finite")
    return x
