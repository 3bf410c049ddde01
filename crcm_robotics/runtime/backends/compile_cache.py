"""Warm start for the ``compile`` backend: Inductor's compiled artefacts saved beside the checkpoint.

A cold ``torch.compile`` of the step took 112 s on an H200 (Inductor code generation
and Triton autotuning per batch size); a ROS node that restarts would wait that long.
``torch.compiler.save_cache_artifacts()`` bundles what this process compiled
(Inductor FX-graph and AOTAutograd cache entries, autotuning results) into bytes;
``load_cache_artifacts`` puts them back into the local caches of a fresh process,
whose compilations then hit instead of generating code. Dynamo still traces the step
and the CUDA graph is still captured; both take seconds.

Layout (default ``CKPT/compile_cache/``, or the folder ``export_dir`` names)::

    compile_cache/
      <key>.json     the key (below), batch sizes compiled, the artefact files, sizes, dates
      <key>_0.bin    artefacts of the first process that compiled, <key>_1.bin of the next, …
      <key>_b64.aotc the step at batch 64 through ``torch.compile(...).aot_compile`` (:mod:`.precompiled`):
                     Dynamo's output and Inductor's, loaded with no tracing; preferred over the artefacts
      <key>_b64.pt2  an AOTInductor package of the step at batch 64 (``crcm export … compiled=aoti``,
                     see :mod:`.aot_package`): loaded without tracing, preferred over both

The key is a digest of everything that makes artefacts useless when it changes:
the torch (and Triton) version, the device (GPU name and compute capability, or
the CPU), the CUDA version, the weights' dtype, the compile mode and compiler, the
sampler (its times are baked into the step) and the model's architecture. Another
key's entries stay in the folder (one per GPU type, say) and are reported, not used.
Weights are graph inputs, not constants, so retraining the same architecture keeps
the cache valid; Inductor checks its own keys on load, so a stale entry is a miss,
never a wrong result.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from crcm_robotics.model.dit import CausalDiT
from crcm_robotics.model.sampler import SamplerSpec
from crcm_robotics.runtime.backends.aot_package import PACKAGE_SUFFIX
from crcm_robotics.runtime.backends.precompiled import PRECOMPILED_SUFFIX

log = logging.getLogger("crcm_robotics.runtime")

CACHE_DIR_NAME = "compile_cache"
FORMAT = "crcm-compile-cache"


def device_label(device: torch.device) -> str:
    """GPU name and compute capability, or ``cpu`` (artefacts are built for one of these)."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return f"{torch.cuda.get_device_name(device)} (sm_{major}{minor})"
    return "cpu"


def cache_key(model: CausalDiT, spec: SamplerSpec, device: torch.device, dtype: torch.dtype, mode: str,
              compiler: str) -> dict[str, Any]:
    """What a compiled artefact depends on; any change means recompiling (see the module docstring)."""
    triton = None
    if importlib.util.find_spec("triton") is not None:
        import triton as triton_mod

        triton = triton_mod.__version__
    return {
        "torch": torch.__version__, "triton": triton,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "device": device_label(device), "dtype": str(dtype).removeprefix("torch."), "mode": mode,
        "compiler": compiler, "sampler": spec.to_meta(),
        "model": model.cfg.key(),
    }


class CacheRejected(RuntimeError):
    """A cache file that does not match what its folder's entry says (the message says what and why)."""


def key_digest(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


class CompileCache:
    """One key's entry in a cache folder: load its artefacts into this process, save what it compiled."""

    def __init__(self, folder: str | Path, key: dict[str, Any]):
        self.folder = Path(folder)
        self.key = key
        self.digest = key_digest(key)
        self.meta_path = self.folder / f"{self.digest}.json"
        self.loaded_batches: list[int] = []

    def read_meta(self) -> dict[str, Any] | None:
        """This key's entry, or None when there is none (or it is unreadable, which is logged)."""
        if not self.meta_path.is_file():
            return None
        try:
            meta = json.loads(self.meta_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            log.warning("compile cache %s is unreadable (%s); compiling from scratch", self.meta_path, exc)
            return None
        if meta.get("format") != FORMAT or meta.get("key") != self.key:
            log.warning("compile cache %s does not describe this key; compiling from scratch", self.meta_path)
            return None
        return meta

    def other_entries(self) -> list[dict[str, Any]]:
        """Keys of the folder's other entries (other torch versions, GPUs, dtypes …), for messages."""
        found = []
        for path in sorted(self.folder.glob("*.json")):
            if path != self.meta_path:
                try:
                    found.append(json.loads(path.read_text())["key"])
                except (OSError, ValueError, KeyError):
                    continue
        return found

    def load(self) -> str:
        """Put this key's artefacts into the local Inductor caches; returns a sentence saying what happened."""
        meta = self.read_meta()
        if meta is None:
            others = self.other_entries()
            why = "" if not others else " (it holds entries for " + "; ".join(
                f"torch {k.get('torch')} on {k.get('device')} in {k.get('dtype')}" for k in others) + ")"
            return f"no compile cache for this torch/device/dtype/sampler in {self.folder}{why}: compiling cold"
        t0, loaded = time.perf_counter(), 0
        for name in meta["files"]:
            blob = (self.folder / name).read_bytes()
            if torch.compiler.load_cache_artifacts(blob) is not None:
                loaded += 1
        self.loaded_batches = sorted(meta["batches"])
        return (f"compile cache {self.meta_path.name}: {loaded} artefact file(s) for batch sizes "
                f"{self.loaded_batches} loaded in {time.perf_counter() - t0:.2f} s")

    def save(self, batches: list[int], checkpoint: str = "") -> Path | None:
        """Write what this process compiled since the last save as a new artefact file; None if nothing new."""
        artifacts = torch.compiler.save_cache_artifacts()
        if artifacts is None:
            return None
        blob = artifacts[0]
        meta = self.read_meta() or self._blank_meta(checkpoint)
        name = f"{self.digest}_{len(meta['files'])}.bin"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / name).write_bytes(blob)
            meta["files"].append(name)
            meta["batches"] = sorted(set(meta["batches"]) | set(batches))
            meta["bytes"] += len(blob)
            self._write_meta(meta)
        except OSError as exc:  # a read-only checkpoint folder: run on, cold next time
            log.warning("could not save the compile cache to %s (%s); the next start compiles again",
                        self.folder, exc)
            return None
        return self.meta_path

    # ---------------------------------------------------------------- AOTInductor packages (aot_package.py)

    def package_path(self, batch: int) -> Path:
        return self.folder / f"{self.digest}_b{batch}{PACKAGE_SUFFIX}"

    def packages(self, weights: Callable[[], str]) -> tuple[dict[int, Path], str]:
        """This key's packages built from the weights whose digest ``weights()`` gives, by batch size, and a
        sentence about them (the digest is only computed when the folder holds packages)."""
        meta = self.read_meta()
        entries = (meta or {}).get("packages", {})
        if not entries:
            return {}, f"no AOTInductor packages in {self.folder}"
        digest = weights()
        usable, stale = {}, []
        for batch, entry in sorted(entries.items(), key=lambda kv: int(kv[0])):
            path = self.folder / entry["file"]
            if entry.get("weights") != digest:
                stale.append(int(batch))
            elif path.is_file():
                usable[int(batch)] = path
        why = f"; packages for batch sizes {stale} hold other weights (rebuild: crcm export … format=compiled)" \
            if stale else ""
        return usable, f"AOTInductor packages in {self.folder} for batch sizes {sorted(usable)}{why}"

    def add_package(self, batch: int, weights: str, checkpoint: str = "") -> None:
        """Record the package :meth:`package_path` ``(batch)`` (already written) as built from ``weights``."""
        path = self.package_path(batch)
        meta = self.read_meta() or self._blank_meta(checkpoint)
        meta.setdefault("packages", {})[str(batch)] = {"file": path.name, "weights": weights,
                                                      "bytes": path.stat().st_size}
        self._write_meta(meta)

    # ------------------------------------------------------- precompiled steps (precompiled.py)

    def precompiled_path(self, batch: int) -> Path:
        return self.folder / f"{self.digest}_b{batch}{PRECOMPILED_SUFFIX}"

    def precompiled_batches(self) -> list[int]:
        """Batch sizes this key's entry lists precompiled steps for (checked on read, not here)."""
        entries = (self.read_meta() or {}).get("precompiled", {})
        return sorted(int(b) for b in entries if isinstance(b, str) and b.isdigit())

    def read_precompiled(self, batch: int) -> bytes:
        """The precompiled step of ``batch``, checked before anyone unpickles it: this key's entry must name
        exactly ``<key>_b<batch>.aotc`` in this folder (a plain file, no link out of it) with the SHA-256 and
        size of the bytes read. CacheRejected says which check failed."""
        meta = self.read_meta()
        entry = (meta or {}).get("precompiled", {}).get(str(batch))
        path = self.precompiled_path(batch)
        if not isinstance(entry, dict):
            raise CacheRejected(f"{self.meta_path} lists no precompiled step for batch {batch}")
        if entry.get("file") != path.name:
            raise CacheRejected(f"{self.meta_path} names {entry.get('file')!r} for batch {batch}; "
                                f"expected {path.name!r}")
        sha, size = entry.get("sha256"), entry.get("bytes")
        if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha) or not isinstance(size, int):
            raise CacheRejected(f"{self.meta_path}: the batch-{batch} entry has no valid sha256/bytes")
        if path.is_symlink() or not path.is_file():
            raise CacheRejected(f"{path} is missing or not a plain file")
        blob = path.read_bytes()
        if len(blob) != size or hashlib.sha256(blob).hexdigest() != sha:
            raise CacheRejected(f"{path} is not the file {self.meta_path.name} describes "
                                f"({len(blob)} bytes, expected {size}; SHA-256 differs)")
        return blob

    def add_precompiled(self, batch: int, checkpoint: str = "") -> None:
        """Record :meth:`precompiled_path` ``(batch)`` (already written) with its size and SHA-256."""
        path = self.precompiled_path(batch)
        blob = path.read_bytes()
        meta = self.read_meta() or self._blank_meta(checkpoint)
        meta.setdefault("precompiled", {})[str(batch)] = {
            "file": path.name, "bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}
        self._write_meta(meta)

    def _blank_meta(self, checkpoint: str) -> dict[str, Any]:
        return {"format": FORMAT, "version": 1, "key": self.key, "checkpoint": checkpoint, "files": [],
                "batches": [], "bytes": 0}

    def _write_meta(self, meta: dict[str, Any]) -> None:
        meta["saved"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.meta_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(meta, indent=1))
        tmp.replace(self.meta_path)  # readers see the old entry or the new one, never half of it
