"""Shared fixtures: tiny stores generated once per test session (no data is checked in)."""

from __future__ import annotations

import json
import shutil
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


@pytest.fixture(scope="session")
def tiny_guided_teacher(pusht_store_32, tmp_path_factory) -> Path:
    """A tiny teacher with a learnt null action (model.action_null, objective.action_dropout), so that it samples
    with classifier-free action guidance; a few updates on :func:`pusht_store_32`."""
    from crcm_robotics.conf import compose_config
    from distill.teacher import train_teacher

    out = tmp_path_factory.mktemp("ckpt") / "guided"
    cfg = compose_config("config", [f"data.path={pusht_store_32}", f"train.out={out}", "train.steps=6",
                                    "train.progress=false", "data.val_fraction=0.25", "model.action_null=true",
                                    "objective.action_dropout=0.3"], "crcm_robotics.conf.teacher")
    train_teacher(cfg)
    return out


@pytest.fixture(scope="session")
def tiny_student(tiny_teacher, tmp_path_factory) -> Path:
    """The tiny teacher's network labelled as a 2-step consistency student (same network, student sampler)."""
    out = tmp_path_factory.mktemp("student") / "student"
    shutil.copytree(tiny_teacher, out)
    meta = json.loads((out / "meta.json").read_text())
    meta.update(kind="student", sampler={"kind": "consistency", "steps": 2})
    (out / "meta.json").write_text(json.dumps(meta))
    return out


@pytest.fixture()
def one_torch_thread():
    """The tiny model runs fastest on one intra-op thread, and stays fast on a busy 2-core CI box."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
