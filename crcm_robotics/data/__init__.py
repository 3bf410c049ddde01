"""Trajectory store (Zarr v3): schema + validator, writer, reader, windowed dataset, importers."""

from crcm_robotics.data.dataset import WindowDataset, split_episodes
from crcm_robotics.data.schema import KeyMap, StoreError, StoreSummary, validate_store
from crcm_robotics.data.store import NormStats, TrajectoryStore, TrajectoryWriter

__all__ = [
    "KeyMap",
    "NormStats",
    "StoreError",
    "StoreSummary",
    "TrajectoryStore",
    "TrajectoryWriter",
    "WindowDataset",
    "split_episodes",
    "validate_store",
]
