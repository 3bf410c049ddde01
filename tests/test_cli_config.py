"""Every command's `key=value` reaches its own config field: no Hydra config group shadows one."""

from __future__ import annotations

import dataclasses
from importlib import resources

import pytest

from crcm_robotics.cli import COMMANDS
from crcm_robotics.conf import SCHEMAS, compose_config


def _groups(module: str) -> set[str]:
    """Sub-folders of a config package: Hydra reads each as a config group (`name=option`)."""
    return {p.name for p in resources.files(module).iterdir() if p.is_dir() and not p.name.startswith("__")}


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c.words))
def test_no_config_group_shadows_a_field(cmd):
    schema = SCHEMAS[cmd.config] if cmd.config in SCHEMAS else None
    if schema is None:  # a command package's own config.yaml: its schema is named in its defaults
        text = resources.files(cmd.module).joinpath("config.yaml").read_text()
        schema = next(SCHEMAS[n] for n in SCHEMAS if f"{n}_schema" in text)
    shadowed = {f.name for f in dataclasses.fields(schema)} & (_groups(cmd.module) - {"preset"})
    assert not shadowed, f"`crcm {' '.join(cmd.words)}`: {sorted(shadowed)} would be read as config groups"


def test_bench_takes_a_teacher_checkpoint():
    cfg = compose_config("config", ["ckpt=outputs/student", "teacher=outputs/teacher"], "crcm_robotics.conf.bench")
    assert (cfg.ckpt, cfg.teacher) == ("outputs/student", "outputs/teacher")
