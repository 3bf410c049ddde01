"""Hydra config tree: typed schemas from :mod:`crcm_robotics.config` plus preset YAMLs in this folder.

Importing this module registers every schema in Hydra's ConfigStore; only the
CLI, ``distill/`` and tests import it (the runtime never needs Hydra).
"""

from __future__ import annotations

from typing import Any

from hydra.core.config_store import ConfigStore

from crcm_robotics import config as c

# primary config name -> schema; a YAML of the same name in this folder may add presets on top
SCHEMAS: dict[str, type] = {
    "data_pusht": c.PushTGenConfig,
    "data_metaworld": c.MetaWorldGenConfig,
    "data_validate": c.DataValidateConfig,
    "data_info": c.DataInfoConfig,
    "data_import_rosbag": c.RosbagImportConfig,
    "train_teacher": c.TeacherTrainConfig,
    "train_probe": c.ProbeTrainConfig,
    "train_codec": c.CodecTrainConfig,
    "eval": c.EvalConfig,
    "export": c.ExportConfig,
    "bench": c.BenchConfig,
    "bench_plan": c.PlanBenchConfig,
    "plan": c.PlanRunConfig,
    "distill": c.DistillConfig,
    "quickstart": c.QuickstartConfig,
    "serve": c.ServeConfig,
}


def register_configs() -> None:
    cs = ConfigStore.instance()
    for name, schema in SCHEMAS.items():
        cs.store(name=f"{name}_schema", node=schema)


def compose_config(name: str, overrides: list[str] | None = None, module: str = "crcm_robotics.conf") -> Any:
    """Compose primary config ``name`` from config package ``module`` with Hydra overrides.

    Commands with presets have their own package (``crcm_robotics.conf.teacher``: ``config.yaml`` +
    ``preset/*.yaml``) so every command's ``preset=`` picks among its own files. Returns the typed
    dataclass instance.
    """
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    register_configs()
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    with initialize_config_module(config_module=module, version_base="1.3"):
        cfg = compose(config_name=name, overrides=list(overrides or []))
    return OmegaConf.to_object(cfg)
