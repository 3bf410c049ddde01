"""Typed configs: the one home of every default (STYLE §5).

Hydra composes these (``crcm_robotics.conf`` registers them in its ConfigStore
and holds the preset YAMLs); the runtime reads a checkpoint's saved config with
:func:`from_dict` and never needs Hydra.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A config value is missing, unknown or out of range."""


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "config") -> T:
    """Build dataclass ``cls`` from plain data, recursing into nested dataclasses.

    Unknown keys are errors (a typo must not silently fall back to a default).
    """
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"{where} has unknown key(s) {sorted(unknown)}; known: {sorted(names)}")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = from_dict(hint, value, f"{where}.{name}")  # type: ignore[arg-type]
        elif typing.get_origin(hint) in (tuple,) and isinstance(value, list):
            value = tuple(value)
        elif isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
            if isinstance(value, list) and any(typing.get_origin(a) is tuple for a in typing.get_args(hint)):
                value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)  # type: ignore[call-arg]


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain, YAML-safe data of a (nested) config dataclass."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(cfg)


# --- data ----------------------------------------------------------------------------------------


@dataclass
class PushTGenConfig:
    """``crcm data pusht``: generate the embedded PushT dataset."""

    out: str = "outputs/pusht.zarr"
    episodes: int = 50
    size: int = 64
    seed: int = 0
    workers: int = 0  # 0 = one per CPU core (at most 16)
    min_steps: int = 100
    max_steps: int = 200
    overwrite: bool = False


@dataclass
class KeyMapConfig:
    """Where arrays live in a store (see :class:`crcm_robotics.data.KeyMap`); ``preset`` picks a layout."""

    preset: str = "auto"  # auto | native | diffusion_policy
    camera: str | None = None  # native stores: which data/frames/<camera>
    frames: str | None = None  # explicit overrides of the preset's keys
    action: str | None = None
    state: str | None = None
    episode_ends: str | None = None
    frames_range: str | None = None  # uint8 | float_0_255 | float_0_1
    fps: float | None = None


@dataclass
class DataValidateConfig:
    """``crcm data validate PATH``."""

    path: str = "???"
    key_map: KeyMapConfig = field(default_factory=KeyMapConfig)


@dataclass
class DataInfoConfig:
    """``crcm data info PATH``: human summary + a PNG contact sheet."""

    path: str = "???"
    out: str | None = None  # PNG path; default: next to the store
    episodes: int = 6  # rows of the contact sheet (episodes sampled evenly)
    frames_per_row: int = 10
    scale: int = 2
    key_map: KeyMapConfig = field(default_factory=KeyMapConfig)


def key_map_from_config(cfg: KeyMapConfig, path: str):
    """Resolve a :class:`KeyMapConfig` against the store at ``path``."""
    from crcm_robotics.data.schema import KeyMap, detect_key_map

    from pathlib import Path

    if cfg.preset == "auto":
        base = detect_key_map(Path(path))
    elif cfg.preset == "native":
        base = KeyMap.native(cfg.camera or "rgb")
    elif cfg.preset == "diffusion_policy":
        base = KeyMap.diffusion_policy()
    else:
        raise ConfigError(f"key_map.preset={cfg.preset!r}; expected auto, native or diffusion_policy")
    if cfg.camera and cfg.preset != "native":
        base = dataclasses.replace(base, frames=f"data/frames/{cfg.camera}")
    changes = {
        k: getattr(cfg, k)
        for k in ("frames", "action", "state", "episode_ends", "frames_range", "fps")
        if getattr(cfg, k) is not None
    }
    return dataclasses.replace(base, **changes)
