"""A state probe: a small CNN that reads a frame's logged state, used as a goal-cost embedding.

A pixel MSE barely sees a small object that moved; a distance between *states read off the frames* is smooth
in object position and angle. The probe is trained on the trajectory store (``crcm train probe``: frames →
state, with noise and blur so it also reads imagined frames) and saved as a directory:

    PROBE/
      meta.json          state names, which of them are angles, the embedding's centre and scale, image size
      probe.safetensors  weights (never pickle)

Embedding (what the network predicts and the cost compares): for each state ``s_i`` that is not an angle,
``(s_i − centre_i) / scale_i``; for an angle, ``(cos θ, sin θ) / angle_scale``. ``scale_i`` is the state's
spread in the store unless given, so a unit of squared distance means "one spread away".
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

META_FILE = "meta.json"
WEIGHTS_FILE = "probe.safetensors"


class ProbeError(ValueError):
    """A probe directory is missing, inconsistent, or does not fit the frames given to it."""


@dataclass(frozen=True)
class ProbeSpec:
    """How states map to the embedding (all plain data: stored in meta.json)."""

    state_names: tuple[str, ...]
    angles: tuple[bool, ...]  # per state: embed as (cos, sin)
    centre: tuple[float, ...]  # per state (ignored for angles)
    scale: tuple[float, ...]  # per state; for angles the (cos, sin) divisor
    image_hw: tuple[int, int]
    width: int = 32

    @property
    def embed_dim(self) -> int:
        return sum(2 if a else 1 for a in self.angles)

    def embed_states(self, state_BS: torch.Tensor) -> torch.Tensor:
        """float [B, S] states → float [B, E] embedding targets."""
        cols = []
        for i, is_angle in enumerate(self.angles):
            s = state_BS[:, i]
            if is_angle:
                cols += [torch.cos(s) / self.scale[i], torch.sin(s) / self.scale[i]]
            else:
                cols.append((s - self.centre[i]) / self.scale[i])
        return torch.stack(cols, dim=-1)

    def to_meta(self) -> dict[str, Any]:
        return {"kind": "state_probe", "state_names": list(self.state_names), "angles": list(self.angles),
                "centre": list(self.centre), "scale": list(self.scale), "image_hw": list(self.image_hw),
                "width": self.width}

    @classmethod
    def from_meta(cls, meta: dict[str, Any], where: str) -> ProbeSpec:
        if meta.get("kind") != "state_probe":
            raise ProbeError(f"{where} is not a state probe (kind {meta.get('kind')!r})")
        try:
            spec = cls(tuple(meta["state_names"]), tuple(bool(a) for a in meta["angles"]),
                       tuple(float(c) for c in meta["centre"]), tuple(float(s) for s in meta["scale"]),
                       (int(meta["image_hw"][0]), int(meta["image_hw"][1])), int(meta["width"]))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ProbeError(f"{where}: malformed probe meta ({exc})") from exc
        n = len(spec.state_names)
        if not (len(spec.angles) == len(spec.centre) == len(spec.scale) == n) or n == 0:
            raise ProbeError(f"{where}: state_names, angles, centre and scale must have one entry per state")
        if any(s <= 0 for s in spec.scale):
            raise ProbeError(f"{where}: every scale must be > 0, got {list(spec.scale)}")
        return spec


@dataclass(frozen=True)
class MassReading:
    """Two position states read off a colour's pixel mass instead of the network (the ``probe_mass`` cost):
    the centroid of the pixels within ``tol`` (RGB distance) of ``rgb``, times ``units_per_px``. A world model
    that draws an object as a cloud (PushT's pushed block under contact) puts its mass nearer the truth than a
    probe trained on solid objects reads it. The centroid is not the state itself (an object's pixel mass sits
    off its body position), but a cost compares it with the goal image's, read the same way. Frames without
    such pixels keep the network's reading."""

    rgb: tuple[float, float, float]
    tol: float
    columns: tuple[int, int]  # the (x, y) states it replaces, as indices into the probe's state_names
    units_per_px: float

    def __post_init__(self) -> None:
        if len(self.rgb) != 3 or not self.tol > 0 or not self.units_per_px > 0 or len(self.columns) != 2:
            raise ProbeError(f"mass reading: rgb needs 3 values, tol and units_per_px > 0, two columns; got "
                             f"{self.rgb}, {self.tol}, {self.units_per_px}, {self.columns}")


def colour_centroid(frames_BHW3: torch.Tensor, rgb: tuple[float, float, float], tol: float,
                    units_per_px: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The centroid (x, y) [B, 2] of each uint8 frame's pixels within ``tol`` (RGB distance) of ``rgb``, in
    ``units_per_px`` units from the top-left corner (pixel centres at half a pixel), and how many such pixels
    there are [B] (where none, the centroid is 0)."""
    colour = torch.tensor(rgb, dtype=torch.float32, device=frames_BHW3.device)
    mask = ((frames_BHW3.float() - colour).square().sum(-1) < tol ** 2).float()  # [B, H, W]
    count = mask.sum(dim=(1, 2))
    h, w = mask.shape[1:]
    xs = (torch.arange(w, device=mask.device, dtype=torch.float32) + 0.5) * units_per_px
    ys = (torch.arange(h, device=mask.device, dtype=torch.float32) + 0.5) * units_per_px
    safe = count.clamp(min=1)
    return torch.stack([(mask.sum(1) * xs).sum(-1) / safe, (mask.sum(2) * ys).sum(-1) / safe], -1), count


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.GroupNorm(8, c_out), nn.SiLU(),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.GroupNorm(8, c_out), nn.SiLU())


class StateProbe(nn.Module):
    """uint8 frames [B, H, W, 3] → embedding [B, E] (see the module docstring)."""

    def __init__(self, spec: ProbeSpec):
        super().__init__()
        self.spec = spec
        w = spec.width
        self.features = nn.Sequential(_block(3, w), _block(w, 2 * w), _block(2 * w, 4 * w), _block(4 * w, 4 * w),
                                      nn.AdaptiveAvgPool2d(4))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * w * 16, 256), nn.SiLU(), nn.Linear(256, spec.embed_dim))
        self._cost_weight: torch.Tensor | None = None  # probe costs' units (with_cost_units); None: own scale
        self.mass: MassReading | None = None  # with_mass: positions read off a colour's pixel mass

    @property
    def cost_weight(self) -> torch.Tensor:
        """Per-embedding-dimension weights of the probe costs (ones unless :meth:`with_cost_units` set)."""
        return self._cost_weight if self._cost_weight is not None else torch.ones(self.spec.embed_dim)

    def with_cost_units(self, position_unit: float, angle_unit: float) -> "StateProbe":
        """This probe (the same network), with probe costs measured in ``position_unit`` store units for
        every non-angle state and ``angle_unit`` rad for every angle, instead of the embedding's own scale (a
        state's spread in the store: ~100 units for PushT positions, which leaves the cost almost flat over
        the last 20 units a goal's success rule asks for). 0 keeps the embedding's scale. ``state_of`` is
        unchanged."""
        if position_unit < 0 or angle_unit < 0:
            raise ProbeError(f"cost units must be ≥ 0 (0 = the probe's own); got position {position_unit}, "
                             f"angle {angle_unit}")
        weights: list[float] = []
        for i, is_angle in enumerate(self.spec.angles):
            if is_angle:  # (cos, sin) / scale: a small turn θ moves the pair by about θ / scale
                weights += [self.spec.scale[i] / angle_unit if angle_unit else 1.0] * 2
            else:
                weights.append(self.spec.scale[i] / position_unit if position_unit else 1.0)
        other = copy.copy(self)  # shares the modules: no second copy of the weights
        other._cost_weight = torch.tensor(weights, dtype=torch.float32, device=next(self.parameters()).device)
        return other

    def with_mass(self, mass: MassReading) -> "StateProbe":
        """This probe (the same network, its cost units kept), whose :meth:`embed_mass` reads ``mass.columns``
        off the pixel mass of ``mass.rgb``."""
        n = len(self.spec.state_names)
        if not all(0 <= c < n and not self.spec.angles[c] for c in mass.columns):
            raise ProbeError(f"mass reading columns {mass.columns}: expected two position states of "
                             f"{', '.join(self.spec.state_names)}")
        other = copy.copy(self)
        other.mass = mass
        return other

    @torch.no_grad()
    def embed_mass(self, frames_BHW3: torch.Tensor) -> torch.Tensor:
        """:meth:`embed`, with :attr:`mass`'s two positions taken from the colour's pixel centroid wherever a
        frame has such pixels."""
        if self.mass is None:
            raise ProbeError("embed_mass needs a mass reading (StateProbe.with_mass)")
        emb = self.embed(frames_BHW3)
        m = self.mass
        centroid, count = colour_centroid(frames_BHW3, m.rgb, m.tol, m.units_per_px)
        dims = np.cumsum([0] + [2 if a else 1 for a in self.spec.angles])  # each state's first embedding dim
        for column, value in zip(m.columns, centroid.unbind(-1)):
            j = int(dims[column])
            read = (value - self.spec.centre[column]) / self.spec.scale[column]
            emb[:, j] = torch.where(count > 0, read, emb[:, j])
        return emb

    def forward(self, x_B3HW: torch.Tensor) -> torch.Tensor:
        """float [B, 3, H, W] in [-1, 1] → [B, E]."""
        return self.head(self.features(x_B3HW))

    @staticmethod
    def to_input(frames_BHW3: torch.Tensor) -> torch.Tensor:
        return frames_BHW3.movedim(-1, -3).float() / 127.5 - 1.0

    @torch.no_grad()
    def embed(self, frames_BHW3: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """Embedding of uint8 frames [B, H, W, 3] (on the probe's device), float32 [B, E]."""
        if frames_BHW3.dtype != torch.uint8 or tuple(frames_BHW3.shape[1:]) != (*self.spec.image_hw, 3):
            raise ProbeError(f"the probe reads uint8 [B, {self.spec.image_hw[0]}, {self.spec.image_hw[1]}, 3] "
                             f"frames; got {frames_BHW3.dtype} {tuple(frames_BHW3.shape)}")
        outs = [self(self.to_input(frames_BHW3[i: i + chunk])).float() for i in range(0, len(frames_BHW3), chunk)]
        return torch.cat(outs)

    def state_of(self, frames_BHW3: torch.Tensor) -> np.ndarray:
        """The states read off frames, in store units (angles in rad), float64 [B, S]: for reports and tests."""
        e = self.embed(frames_BHW3).cpu().double().numpy()
        out, j = [], 0
        for i, is_angle in enumerate(self.spec.angles):
            if is_angle:
                out.append(np.arctan2(e[:, j + 1], e[:, j]))
                j += 2
            else:
                out.append(e[:, j] * self.spec.scale[i] + self.spec.centre[i])
                j += 1
        return np.stack(out, axis=-1)


def save_probe(path: str | Path, probe: StateProbe, metrics: dict[str, Any] | None = None) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().cpu().contiguous() for k, v in probe.state_dict().items()}
    save_file(state, str(path / WEIGHTS_FILE), metadata={"format": "pt"})
    meta = probe.spec.to_meta() | {"metrics": metrics or {}}
    (path / META_FILE).write_text(json.dumps(meta, indent=1))
    return path


def load_probe(path: str | Path, device: str | torch.device = "cpu") -> StateProbe:
    from safetensors.torch import load_file

    path = Path(path)
    if not (path / META_FILE).is_file() or not (path / WEIGHTS_FILE).is_file():
        raise ProbeError(f"probe {path} needs {META_FILE} and {WEIGHTS_FILE} (train one with `crcm train probe`)")
    spec = ProbeSpec.from_meta(json.loads((path / META_FILE).read_text()), str(path))
    probe = StateProbe(spec)
    result = probe.load_state_dict(load_file(str(path / WEIGHTS_FILE)), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ProbeError(f"probe {path}: weights do not match its meta (missing {result.missing_keys[:3]}, "
                         f"unexpected {result.unexpected_keys[:3]})")
    return probe.to(device).eval()
