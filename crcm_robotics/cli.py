"""``crcm`` — the command line. Sub-commands take Hydra-style ``key=value`` overrides.

    crcm data pusht out=outputs/pusht.zarr episodes=50 size=64 seed=0
    crcm data validate PATH
    crcm data info PATH [out=sheet.png]

Every command composes its typed config (``crcm_robotics.config``) through
Hydra (``crcm_robotics.conf``); ``crcm COMMAND --cfg`` prints the resolved
config without running. Positional words after the command fill the command's
positional keys in order (``crcm data validate PATH`` is ``path=PATH``).
"""

from __future__ import annotations

import importlib
import json
import sys
from dataclasses import dataclass
from typing import Any, Callable


class CommandError(RuntimeError):
    """A command failed for a reason the user can fix; printed without a traceback."""


@dataclass(frozen=True)
class Command:
    words: tuple[str, ...]
    config: str  # primary Hydra config name
    run: str  # "module:function" taking the typed config, returning an exit code
    positional: tuple[str, ...] = ()
    help: str = ""


COMMANDS: list[Command] = [
    Command(("data", "pusht"), "data_pusht", "crcm_robotics.cli:run_data_pusht", (),
            "generate the embedded PushT dataset (gym-pusht, scripted pusher)"),
    Command(("data", "validate"), "data_validate", "crcm_robotics.cli:run_data_validate", ("path",),
            "check a store against the schema; print a one-line JSON summary"),
    Command(("data", "info"), "data_info", "crcm_robotics.cli:run_data_info", ("path",),
            "human summary of a store and a PNG contact sheet of sample frames"),
]


def _find_command(argv: list[str]) -> tuple[Command, list[str]]:
    words = [a for a in argv if "=" not in a and not a.startswith("-")]
    best = None
    for cmd in COMMANDS:
        if tuple(words[: len(cmd.words)]) == cmd.words and (best is None or len(cmd.words) > len(best.words)):
            best = cmd
    if best is None:
        raise CommandError(f"unknown command {' '.join(words) or '(none)'}; try `crcm --help`")
    rest = list(argv)
    for w in best.words:
        rest.remove(w)
    return best, rest


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _overrides(cmd: Command, rest: list[str]) -> list[str]:
    positional = [a for a in rest if "=" not in a and not a.startswith("-")]
    overrides = [a for a in rest if "=" in a and not a.startswith("-")]
    if len(positional) > len(cmd.positional):
        raise CommandError(
            f"`crcm {' '.join(cmd.words)}` takes {len(cmd.positional)} positional argument(s) "
            f"({', '.join(cmd.positional) or 'none'}), got {positional}"
        )
    return [f"{k}={_quote(v)}" for k, v in zip(cmd.positional, positional)] + overrides


def _usage() -> str:
    lines = ["usage: crcm COMMAND [positional …] [key=value …] [--cfg]", "", "commands:"]
    for cmd in COMMANDS:
        pos = " ".join(p.upper() for p in cmd.positional)
        lines.append(f"  crcm {' '.join(cmd.words)} {pos}".rstrip().ljust(40) + cmd.help)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    try:
        cmd, rest = _find_command(argv)
        from crcm_robotics.conf import compose_config

        cfg = compose_config(cmd.config, _overrides(cmd, rest))
        if "--cfg" in rest or "--help" in rest or "-h" in rest:
            import yaml

            from crcm_robotics.config import to_dict

            print(f"# crcm {' '.join(cmd.words)}: {cmd.help}")
            print(yaml.safe_dump(to_dict(cfg), sort_keys=False))
            return 0
        module, func = cmd.run.split(":")
        runner: Callable[[Any], int] = getattr(importlib.import_module(module), func)
        return int(runner(cfg) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # user-facing errors become one line; anything else keeps its traceback
        from crcm_robotics.config import ConfigError
        from crcm_robotics.data.schema import StoreError

        user_errors: tuple[type[BaseException], ...] = (CommandError, ConfigError, StoreError, FileNotFoundError)
        try:
            from hydra.errors import HydraException
            from omegaconf.errors import OmegaConfBaseException

            user_errors += (HydraException, OmegaConfBaseException)
        except ImportError:
            pass
        if isinstance(exc, user_errors):
            cause = f" ({exc.__cause__})" if exc.__cause__ is not None else ""
            print(f"crcm: error: {exc}{cause}", file=sys.stderr)
            return 2
        raise


# --- data commands --------------------------------------------------------------------------------


def run_data_pusht(cfg) -> int:
    from crcm_robotics.data.pusht import generate_pusht
    from crcm_robotics.data.schema import validate_store

    figures = generate_pusht(
        cfg.out, cfg.episodes, size=cfg.size, seed=cfg.seed, workers=cfg.workers,
        min_steps=cfg.min_steps, max_steps=cfg.max_steps, overwrite=cfg.overwrite,
    )
    summary = validate_store(cfg.out).as_json()
    print(json.dumps({"store": cfg.out, **summary, "generation": figures}))
    return 0


def run_data_validate(cfg) -> int:
    from crcm_robotics.config import key_map_from_config
    from crcm_robotics.data.schema import StoreError, validate_store

    try:
        summary = validate_store(cfg.path, key_map_from_config(cfg.key_map, cfg.path))
    except StoreError as exc:
        print(f"invalid store: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary.as_json()))
    return 0


def run_data_info(cfg) -> int:
    from crcm_robotics.config import key_map_from_config
    from crcm_robotics.eval.report import store_contact_sheet
    from crcm_robotics.data.store import TrajectoryStore

    store = TrajectoryStore(cfg.path, key_map_from_config(cfg.key_map, cfg.path))
    lengths = store.episode_lengths()
    stats = store.stats()
    print(f"store        {store.path}")
    print(f"source       {store.attrs.get('source', '(unknown)')}")
    print(f"episodes     {store.num_episodes}  (length min {lengths.min()}, mean {lengths.mean():.1f}, max {lengths.max()})")
    print(f"frames       {store.num_frames}  image {store.image_shape}  fps {store.fps}")
    print(f"action       dim {store.action_dim}  names {store.attrs.get('action_names', '?')}")
    print(f"             mean {stats['action'].mean.round(2).tolist()}  std {stats['action'].std.round(2).tolist()}")
    if store.state_dim:
        print(f"state        dim {store.state_dim}  names {store.attrs.get('state_names', '?')}")
    out = cfg.out or str(store.path).rstrip("/").removesuffix(".zarr") + "_sheet.png"
    store_contact_sheet(store, out, episodes=cfg.episodes, frames_per_row=cfg.frames_per_row, scale=cfg.scale)
    print(f"contact sheet {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
