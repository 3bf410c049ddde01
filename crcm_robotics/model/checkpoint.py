"""Checkpoint directories (DESIGN §4): never pickle, readable without Hydra.

    CKPT/
      config.yaml                        resolved run config (model section rebuilds the network)
      stats.json                         action (and state) normalization stats from the store
      meta.json                          kind (teacher|student), sampler, data hash, split, metrics, step
      model-00001-of-0000N.safetensors   weights (EMA for inference), shards ≤ 15 MiB each
      model.safetensors.index.json       tensor name → shard
      train_state.pt                     (optional) optimizer/raw weights for exact resume,
                                         loaded with torch.load(weights_only=True)
      codec/                             (latent diffusion only) the frame codec, a codec checkpoint
                                         directory (crcm_robotics.model.codec); every checkpoint of a
                                         latent run, selected/ included, carries its own copy
      selected/                          (optional) the weights validation selected during training: a
                                         complete checkpoint directory (no train_state.pt) whose meta.json
                                         names its update and held-out figures; loaded by default
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import yaml

from crcm_robotics.config import ModelConfig, from_dict

SHARD_BYTES = 15 * 2**20
INDEX_FILE = "model.safetensors.index.json"
SELECTED_DIR = "selected"  # validation's best weights inside a run's checkpoint directory
CODEC_DIR = "codec"  # where a latent checkpoint keeps its codec (and model.codec's value in its config)
WEIGHTS = ("selected", "last")


class CheckpointError(ValueError):
    """A checkpoint directory is missing files or holds inconsistent data."""


class CarriedCodec(Protocol):
    """A learned frame codec a checkpoint carries (crcm_robotics.model.codec.LatentCodec)."""

    def save(self, path: str | Path) -> Path: ...


@dataclass
class Checkpoint:
    path: Path
    config: dict[str, Any]
    stats: dict[str, Any]
    meta: dict[str, Any]
    state_dict: dict[str, torch.Tensor]

    @property
    def model_config(self) -> ModelConfig:
        return from_dict(ModelConfig, self.config["model"], "checkpoint config.model")

    @property
    def action_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) used to normalize actions (std floored as in NormStats.normalize)."""
        a = self.stats["action"]
        std = np.asarray(a["std"], dtype=np.float64)
        return np.asarray(a["mean"], dtype=np.float64), np.where(std > 1e-8, std, 1.0)


def save_checkpoint(
    path: str | Path,
    state_dict: dict[str, torch.Tensor],
    config: dict[str, Any],
    stats: dict[str, Any],
    meta: dict[str, Any],
    dtype: torch.dtype | None = None,
    train_state: dict[str, Any] | None = None,
    codec: CarriedCodec | None = None,
) -> Path:
    """Write a checkpoint directory atomically enough: files go to ``path.tmp`` then are renamed.

    A learned ``codec`` (latent diffusion) is written into ``path/codec``; pixel space passes none.
    """
    from safetensors.torch import save_file

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        _rmtree(tmp)
    tmp.mkdir(parents=True)
    tensors = {k: (v.detach().to(dtype) if dtype is not None and v.is_floating_point() else v.detach())
               .cpu().contiguous() for k, v in state_dict.items()}
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        if nbytes > SHARD_BYTES:
            raise CheckpointError(f"tensor {name} has {nbytes} bytes, more than one shard ({SHARD_BYTES})")
        if size + nbytes > SHARD_BYTES and shards[-1]:
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += nbytes
    weight_map = {}
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(tmp / fname), metadata={"format": "pt"})
        weight_map.update({k: fname for k in shard})
    (tmp / INDEX_FILE).write_text(json.dumps({"weight_map": weight_map}, indent=1))
    (tmp / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (tmp / "stats.json").write_text(json.dumps(stats, indent=1))
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=_json_default))
    if train_state is not None:
        torch.save(train_state, tmp / "train_state.pt")
    if codec is not None:
        codec.save(tmp / CODEC_DIR)
    if (path / SELECTED_DIR).is_dir() and not (tmp / SELECTED_DIR).exists():
        (path / SELECTED_DIR).rename(tmp / SELECTED_DIR)  # the run's selected weights outlive its last ones
    if path.exists():
        _rmtree(path)
    tmp.rename(path)
    return path


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"cannot write {type(o).__name__} to meta.json")


def _rmtree(p: Path) -> None:
    import shutil

    shutil.rmtree(p)


def resolve_weights(path: str | Path, weights: str = "selected") -> Path:
    """The directory whose weights to load: ``path/selected`` when it exists and ``weights`` is selected."""
    path = Path(path)
    if weights not in WEIGHTS:
        raise CheckpointError(f"weights={weights!r} for checkpoint {path}; expected one of {', '.join(WEIGHTS)}")
    if weights == "selected" and (path / SELECTED_DIR / INDEX_FILE).is_file():
        return path / SELECTED_DIR
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", weights: str = "selected") -> Checkpoint:
    """A checkpoint directory; by default the weights validation selected during its run (``weights="last"``:
    the run's final weights). ``Checkpoint.path`` is the directory actually read."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} is not a directory")
    path = resolve_weights(path, weights)
    for name in ("config.yaml", "stats.json", "meta.json", INDEX_FILE):
        if not (path / name).is_file():
            raise CheckpointError(f"checkpoint {path} has no {name}")
    config = yaml.safe_load((path / "config.yaml").read_text())
    if not isinstance(config, dict) or "model" not in config:
        raise CheckpointError(f"checkpoint {path}: config.yaml has no model section")
    index = json.loads((path / INDEX_FILE).read_text())
    state: dict[str, torch.Tensor] = {}
    for fname in sorted(set(index["weight_map"].values())):
        shard = path / fname
        if not shard.is_file():
            raise CheckpointError(f"checkpoint {path} lacks shard {fname} named in {INDEX_FILE}")
        state.update(load_file(str(shard), device=str(map_location)))
    missing = set(index["weight_map"]) - set(state)
    if missing:
        raise CheckpointError(f"checkpoint {path}: tensors {sorted(missing)[:5]} listed but not found")
    return Checkpoint(
        path=path,
        config=config,
        stats=json.loads((path / "stats.json").read_text()),
        meta=json.loads((path / "meta.json").read_text()),
        state_dict=state,
    )


def load_train_state(path: str | Path) -> dict[str, Any]:
    f = Path(path) / "train_state.pt"
    if not f.is_file():
        raise CheckpointError(f"checkpoint {path} has no train_state.pt; it cannot be resumed exactly")
    return torch.load(f, map_location="cpu", weights_only=True)


def build_model(ckpt: Checkpoint, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """The network of a checkpoint, weights loaded (strictly), in eval mode."""
    from crcm_robotics.model.dit import CausalDiT

    model = CausalDiT(ckpt.model_config)
    state = {k: v.float() for k, v in ckpt.state_dict.items()}
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"checkpoint {ckpt.path} does not match its config: missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )
    return model.to(device=device, dtype=dtype).eval()
