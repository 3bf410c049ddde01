"""``crcm`` — the command line. Sub-commands take Hydra-style ``key=value`` overrides.

    crcm data pusht out=outputs/pusht.zarr episodes=50 size=64 seed=0
    crcm data metaworld out=outputs/arm.zarr task=push-v3 episodes=50 size=128 seed=0 [preset=arm_tiny]
    crcm data validate PATH
    crcm data info PATH [out=sheet.png]
    crcm data import-rosbag BAG out=robot.zarr camera_topic=/camera/image_raw action_topic=/cmd_vel [rate=10]
    crcm serve CKPT [host=127.0.0.1] [port=5555] [token_file=…] [device=cuda] [backend=eager]
    crcm export CKPT format=onnx out=outputs/export/student batch=[1,64] [steps=2]
    crcm bench CKPT [backends=[eager,cuda_graph,compile]] [teacher=TEACHER_CKPT] [device=cuda]

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
    run: str  # "module:function" taking the typed config, returning an exit code (imported only when run,
    # so training commands live in distill/ and the runtime package never imports it)
    positional: tuple[str, ...] = ()
    help: str = ""
    module: str = "crcm_robotics.conf"  # Hydra config package holding the primary config (and presets)


COMMANDS: list[Command] = [
    Command(("quickstart",), "quickstart", "distill.cli:run_quickstart", (),
            "the main job on the embedded default: PushT store -> teacher -> eval -> Causal-rCM student -> eval"),
    Command(("data", "pusht"), "data_pusht", "crcm_robotics.cli:run_data_pusht", (),
            "generate the embedded PushT dataset (gym-pusht, scripted pusher)"),
    Command(("data", "metaworld"), "config", "crcm_robotics.cli:run_data_metaworld", (),
            "generate a Meta-World Sawyer-arm store (task=push-v3|button-press-v3|drawer-open-v3; [metaworld] extra)",
            "crcm_robotics.conf.data_metaworld"),
    Command(("data", "validate"), "data_validate", "crcm_robotics.cli:run_data_validate", ("path",),
            "check a store against the schema; print a one-line JSON summary"),
    Command(("data", "info"), "data_info", "crcm_robotics.cli:run_data_info", ("path",),
            "human summary of a store and a PNG contact sheet of sample frames"),
    Command(("data", "import-rosbag"), "data_import_rosbag", "crcm_robotics.cli:run_data_import_rosbag",
            ("bag",), "rosbag2 (sqlite3/mcap) camera + command topics -> store (needs the [ros] extra)"),
    Command(("train", "teacher"), "config", "distill.cli:run_train_teacher", (),
            "train the action-conditioned causal DiT teacher (preset=tiny|small)", "crcm_robotics.conf.teacher"),
    Command(("train", "probe"), "train_probe", "distill.probe:run_train_probe", (),
            "train a state probe (frames -> logged state) for the planners' probe goal cost (out=CKPT/probe)"),
    Command(("train", "codec"), "config", "distill.codec:run_train_codec", (),
            "train the latent frame codec (8x conv autoencoder) on a store; JSON line with held-out PSNR "
            "(preset=arm_tiny|arm_small)", "crcm_robotics.conf.codec"),
    Command(("distill",), "config", "distill.cli:run_distill", ("method",),
            "distill a 1-4 step student: causal_rcm | tf_scm | tf_dcm | sf_dmd (teacher=CKPT, preset=tiny|small)",
            "crcm_robotics.conf.distill"),
    Command(("eval",), "eval", "crcm_robotics.cli:run_eval", ("ckpt",),
            "roll out a teacher/student on held-out episodes; JSON line + report (PNG strips, GIF, plots)"),
    Command(("export",), "export", "crcm_robotics.cli:run_export", ("ckpt",),
            "export the per-frame step (KV cache as inputs/outputs): format=onnx|tensorrt out=DIR batch=[1,64]"),
    Command(("bench",), "config", "crcm_robotics.cli:run_bench", ("ckpt",),
            "runtime latency per backend (batch-1 streaming, 64x16 planner query, teacher vs student); JSON line",
            "crcm_robotics.conf.bench"),  # own package: the root one's teacher/ group would take `teacher=`
    Command(("bench", "plan"), "bench_plan", "crcm_robotics.eval.plan_bench:run_bench_plan", ("ckpt",),
            "closed-loop planning in gym-pusht: arms random | oracle | model(s); success, errors, ms per replan"),
    Command(("plan",), "plan", "crcm_robotics.eval.plan_bench:run_plan", ("ckpt",),
            "one closed-loop episode towards a goal from a store (gym-pusht); JSON line + GIF"),
    Command(("serve",), "serve", "crcm_robotics.cli:run_serve", ("ckpt",),
            "serve a checkpoint over msgpack/TCP on 127.0.0.1:5555 (protocol: crcm_robotics/serve/codec.py)"),
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


def _leave_process_group() -> None:
    """Leave the process group a command launched by torchrun joined (``distill.trainer.setup_distributed``),
    so that each rank's communicator threads end before the interpreter does: left alive, gloo's aborted a rank
    at exit ("terminate called without an active exception") after its training had finished. Reads
    torch.distributed only where the command imported it."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    try:
        cmd, rest = _find_command(argv)
        from crcm_robotics.conf import compose_config

        cfg = compose_config(cmd.config, _overrides(cmd, rest), cmd.module)
        if "--cfg" in rest or "--help" in rest or "-h" in rest:
            import yaml

            from crcm_robotics.config import to_dict

            print(f"# crcm {' '.join(cmd.words)}: {cmd.help}")
            print(yaml.safe_dump(to_dict(cfg), sort_keys=False))
            return 0
        module, func = cmd.run.split(":")
        runner: Callable[[Any], int] = getattr(importlib.import_module(module), func)
        try:
            return int(runner(cfg) or 0)
        finally:
            _leave_process_group()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # user-facing errors become one line; anything else keeps its traceback
        from crcm_robotics.config import ConfigError
        from crcm_robotics.data.schema import StoreError

        user_errors: tuple[type[BaseException], ...] = (CommandError, ConfigError, StoreError, FileNotFoundError)
        user_errors += _runtime_errors()
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


def generated_store_line(out: str, figures: dict) -> dict:
    """What a generator prints: the store's summary, its content hash (the ``data_hash`` checkpoints record: a
    store rebuilt from the same generator and seed on another CPU can differ, and then its held-out windows and
    goals do not pair with another machine's) and the generation figures."""
    from crcm_robotics.data.store import TrajectoryStore

    store = TrajectoryStore(out)  # validates it
    return {"store": out, **store.summary.as_json(), "content_hash": store.content_hash(), "generation": figures}


def run_data_pusht(cfg) -> int:
    from crcm_robotics.data.pusht import generate_pusht

    figures = generate_pusht(
        cfg.out, cfg.episodes, size=cfg.size, seed=cfg.seed, workers=cfg.workers,
        min_steps=cfg.min_steps, max_steps=cfg.max_steps, overwrite=cfg.overwrite,
        behavior=cfg.behavior, explore_fraction=cfg.explore_fraction, progress=cfg.progress,
    )
    print(json.dumps(generated_store_line(cfg.out, figures)))
    return 0


def run_data_metaworld(cfg) -> int:
    from crcm_robotics.data.metaworld import BehaviourConfig, generate_metaworld

    behaviour = BehaviourConfig(noise_min=cfg.noise_min, noise_max=cfg.noise_max, explore_prob=cfg.explore_prob)
    try:
        figures = generate_metaworld(
            cfg.out, cfg.episodes, task=cfg.task, size=cfg.size, seed=cfg.seed, workers=cfg.workers,
            min_steps=cfg.min_steps, max_steps=cfg.max_steps, behaviour=behaviour, overwrite=cfg.overwrite,
            progress=cfg.progress,
        )
    except ImportError as exc:
        raise CommandError(str(exc)) from None
    print(json.dumps(generated_store_line(cfg.out, figures)))
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


def run_data_import_rosbag(cfg) -> int:
    from crcm_robotics.data.rosbag import RosbagImportError, import_rosbag

    try:
        summary = import_rosbag(
            cfg.bag, cfg.out, camera_topic=cfg.camera_topic, action_topic=cfg.action_topic,
            action_type=cfg.action_type, action_fields=cfg.action_fields, joint_names=cfg.joint_names,
            joint_field=cfg.joint_field, rate=cfg.rate, size=cfg.size, center_crop=cfg.center_crop,
            max_staleness_s=cfg.max_staleness_s, gap_s=cfg.gap_s, min_episode_frames=cfg.min_episode_frames,
            use_header_stamps=cfg.use_header_stamps, camera=cfg.camera, overwrite=cfg.overwrite,
            progress=cfg.progress,
        )
    except RosbagImportError as exc:
        raise CommandError(str(exc)) from None
    except ImportError as exc:
        raise CommandError(f"{exc}; install the ROS extra: pip install -e '.[ros]'") from None
    print(json.dumps(summary))
    return 0


def run_eval(cfg) -> int:
    from crcm_robotics.eval.evaluate import evaluate

    print(json.dumps(evaluate(cfg)))
    return 0


def _runtime_errors() -> tuple[type[BaseException], ...]:
    """Bad checkpoints, inputs, backends or exports: the user's to fix, reported in one line."""
    from crcm_robotics.model.checkpoint import CheckpointError
    from crcm_robotics.plan import CostError, PlanError
    from crcm_robotics.plan.probe import ProbeError
    from crcm_robotics.runtime import BackendUnavailable, InputError
    from crcm_robotics.runtime.export import ExportError

    return CheckpointError, BackendUnavailable, InputError, ExportError, PlanError, CostError, ProbeError


def run_export(cfg) -> int:
    from crcm_robotics.runtime.export import run_export as export

    print(json.dumps(export(cfg)))
    return 0


def run_bench(cfg) -> int:
    from crcm_robotics.runtime.bench import run_bench as bench

    print(json.dumps(bench(cfg)))
    return 0


def run_serve(cfg) -> int:
    from crcm_robotics.serve.server import serve

    return serve(cfg)


if __name__ == "__main__":
    sys.exit(main())
