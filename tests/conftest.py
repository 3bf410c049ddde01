"""Shared fixtures: tiny stores generated once per test session (no data is checked in)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def pusht_store_32(tmp_path_factory) -> Path:
    """A real (gym-pusht) store: 12 episodes of 40–60 steps at 32×32, seed 0."""
    pytest.importorskip("gym_pusht", reason="needs the [sim] extra (gym-pusht)")
    from crcm_robotics.data.pusht import generate_pusht

    out = tmp_path_factory.mktemp("pusht") / "pusht32.zarr"
    generate_pusht(out, episodes=12, size=32, seed=0, workers=1, min_steps=40, max_steps=60, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_teacher(pusht_store_32, tmp_path_factory) -> Path:
    """A tiny teacher checkpoint trained for a few dozen steps on :func:`pusht_store_32`."""
    from crcm_robotics.conf import compose_config
    from distill.teacher import train_teacher

    out = tmp_path_factory.mktemp("ckpt") / "teacher"
    cfg = compose_config("config", [f"data.path={pusht_store_32}", f"train.out={out}", "train.steps=40",
                                    "train.progress=false", "data.val_fraction=0.25"], "crcm_robotics.conf.teacher")
    train_teacher(cfg)
    return out
