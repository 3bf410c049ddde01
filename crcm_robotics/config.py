"""Typed configs: the one home of every default (STYLE §5).

Hydra composes these (``crcm_robotics.conf`` registers them in its ConfigStore
and holds the preset YAMLs); the runtime reads a checkpoint's saved config with
:func:`from_dict` and never needs Hydra.
"""

from __future__ import annotations

import dataclasses
import math
import time
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A config value is missing, unknown or out of range."""


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "config") -> T:
    """Build dataclass ``cls`` from plain data, recursing into nested dataclasses.

    Unknown keys are errors (a typo must not silently fall back to a default).
    """
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"{where} has unknown key(s) {sorted(unknown)}; known: {sorted(names)}")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = from_dict(hint, value, f"{where}.{name}")  # type: ignore[arg-type]
        elif typing.get_origin(hint) in (tuple,) and isinstance(value, list):
            value = tuple(value)
        elif isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
            if isinstance(value, list) and any(typing.get_origin(a) is tuple for a in typing.get_args(hint)):
                value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)  # type: ignore[call-arg]


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain, YAML-safe data of a (nested) config dataclass."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(cfg)


# --- data ----------------------------------------------------------------------------------------


@dataclass
class PushTGenConfig:
    """``crcm data pusht``: generate the embedded PushT dataset."""

    out: str = "outputs/pusht.zarr"
    episodes: int = 50
    size: int = 64
    seed: int = 0
    workers: int = 0  # 0 = one per CPU core (at most 16)
    min_steps: int = 100
    max_steps: int = 200
    overwrite: bool = False
    # scripted | explore (noisy/random targets mixed with pushes) | mixed | orbit (circles the block;
    # held out: no preset trains on it)
    behavior: str = "scripted"
    explore_fraction: float = 0.5  # behavior=mixed: the fraction of episodes that explore
    progress: bool = True  # the episodes' progress line, as `crcm data metaworld` has it


@dataclass
class MetaWorldGenConfig:
    """``crcm data metaworld``: Meta-World Sawyer-arm episodes (``crcm_robotics.data.metaworld``)."""

    out: str = "outputs/metaworld.zarr"
    task: str = "push-v3"  # push-v3 | button-press-v3 | drawer-open-v3
    episodes: int = 50
    size: int = 128
    seed: int = 0
    workers: int = 0  # 0 = one per CPU core (at most 16)
    min_steps: int = 100
    max_steps: int = 150
    noise_min: float = 0.05  # per-episode action-noise std drawn from [noise_min, noise_max]
    noise_max: float = 0.3
    explore_prob: float = 0.015  # chance per expert step that an exploration segment starts (~20% of steps)
    overwrite: bool = False
    progress: bool = True


@dataclass
class KeyMapConfig:
    """Where arrays live in a store (see :class:`crcm_robotics.data.KeyMap`); ``preset`` picks a layout."""

    preset: str = "auto"  # auto | native | diffusion_policy
    camera: str | None = None  # native stores: which data/frames/<camera>
    frames: str | None = None  # explicit overrides of the preset's keys
    action: str | None = None
    state: str | None = None
    episode_ends: str | None = None
    frames_range: str | None = None  # uint8 | float_0_255 | float_0_1
    fps: float | None = None


@dataclass
class DataValidateConfig:
    """``crcm data validate PATH``."""

    path: str = "???"
    key_map: KeyMapConfig = field(default_factory=KeyMapConfig)


@dataclass
class DataInfoConfig:
    """``crcm data info PATH``: human summary + a PNG contact sheet."""

    path: str = "???"
    out: str | None = None  # PNG path; default: next to the store
    episodes: int = 6  # rows of the contact sheet (episodes sampled evenly)
    frames_per_row: int = 10
    scale: int = 2
    key_map: KeyMapConfig = field(default_factory=KeyMapConfig)


@dataclass
class RosbagImportConfig:
    """``crcm data import-rosbag BAG out=… camera_topic=… action_topic=…``: rosbag2 → store."""

    bag: str = "???"  # bag directory, .db3 or .mcap file
    out: str = "???"
    camera_topic: str = "???"  # sensor_msgs/Image or CompressedImage
    action_topic: str = "???"  # Twist, TwistStamped, Float32MultiArray or JointState
    action_type: str = "auto"  # auto (by topic type), twist, twist_stamped, float32_multi_array, joint_state
    action_fields: tuple[str, ...] = ("linear.x", "linear.y", "angular.z")  # twist: fields in action order
    joint_names: tuple[str, ...] = ()  # joint_state: joints in order; empty = those of the first message
    joint_field: str = "velocity"  # joint_state: position | velocity | effort
    rate: float = 0.0  # Hz to down-sample frames to; 0 keeps every camera frame
    size: int | None = 64  # square side frames are resized to; null keeps the camera's size
    center_crop: bool = True  # crop to square before resizing (the node does the same)
    max_staleness_s: float = 0.5  # a frame whose command in force is older is dropped and ends the episode
    gap_s: float = 1.0  # a camera gap longer than this ends the episode
    min_episode_frames: int = 2  # shorter episodes are skipped
    use_header_stamps: bool = False  # header.stamp instead of the bag's log time (stamped types only)
    camera: str = "rgb"  # camera name in the store (data/frames/<camera>)
    overwrite: bool = False
    progress: bool = True


def key_map_from_config(cfg: KeyMapConfig, path: str):
    """Resolve a :class:`KeyMapConfig` against the store at ``path``."""
    from crcm_robotics.data.schema import KeyMap, detect_key_map

    from pathlib import Path

    if cfg.preset == "auto":
        base = detect_key_map(Path(path))
    elif cfg.preset == "native":
        base = KeyMap.native(cfg.camera or "rgb")
    elif cfg.preset == "diffusion_policy":
        base = KeyMap.diffusion_policy()
    else:
        raise ConfigError(f"key_map.preset={cfg.preset!r}; expected auto, native or diffusion_policy")
    if cfg.camera and cfg.preset != "native":
        base = dataclasses.replace(base, frames=f"data/frames/{cfg.camera}")
    changes = {
        k: getattr(cfg, k)
        for k in ("frames", "action", "state", "episode_ends", "frames_range", "fps")
        if getattr(cfg, k) is not None
    }
    return dataclasses.replace(base, **changes)


# --- model ---------------------------------------------------------------------------------------


@dataclass
class ModelConfig:
    """The causal DiT (``crcm_robotics.model.dit``); its grid and ``action_dim`` are filled from the data.

    ``height``/``width``/``channels`` are the diffusion grid the DiT patchifies: the image in pixel space,
    the codec's latent grid (image / stride, latent channels) with ``codec`` set (``model.tokenizer``).
    """

    height: int = 64
    width: int = 64
    channels: int = 3
    codec: str | None = None  # a `crcm train codec` checkpoint dir (None: pixels); in checkpoints: "codec"
    patch: int = 8
    dim: int = 384
    depth: int = 8
    heads: int = 6
    mlp_ratio: float = 4.0
    action_dim: int = 2
    cache_frames: int = 8  # KV window at inference: frames of clean history each new frame sees
    sigma_data: float = 0.5  # pixel data in [-1, 1] are divided by this (TrigFlow unit space)
    time_scale: float = 250.0  # c_noise = time_scale · t fed to the sinusoidal time embedding
    rope_theta: float = 100.0  # RoPE base (positions are frame indices, and token rows/columns)
    spatial_rope: bool = True  # 3-D RoPE: rotary pairs split between time, row and column (dit.rope_cos_sin)
    action_field: bool = True  # per-token action embedding (dit.ActionField) on top of adaLN
    residual: bool = True  # diffuse the change from the previous frame (trigflow.residual_input/output)
    # a learnt "no action" (dit.CausalDiT.null_action) that a teacher trained with objective.action_dropout
    # sees in place of a frame's command; sampling with guidance ≠ 1 (classifier-free action guidance) needs it
    action_null: bool = False

    @property
    def tokens_per_frame(self) -> int:
        return (self.height // self.patch) * (self.width // self.patch)

    def key(self) -> dict[str, Any]:
        """The fields as plain data for weight fingerprints and compile-cache keys; ``codec`` and
        ``action_null`` only when set, so checkpoints keep the fingerprints they had before them (their
        exports stay valid)."""
        fields = dict(sorted(self.__dict__.items()))
        if self.codec is None:
            del fields["codec"]
        if not self.action_null:
            del fields["action_null"]
        return fields

    def validate(self) -> None:
        if self.patch < 1:  # before the division below: 0 would divide by zero, a negative side divides evenly
            raise ConfigError(f"model: patch must be a side of ≥ 1 pixel, got {self.patch}")
        if self.height % self.patch or self.width % self.patch:
            raise ConfigError(f"model: image {self.height}x{self.width} is not divisible by patch {self.patch}")
        if self.dim % self.heads or (self.dim // self.heads) % 2:
            raise ConfigError(f"model: dim {self.dim} must split into {self.heads} heads of even size")
        if self.cache_frames < 1:
            raise ConfigError(f"model: cache_frames must be ≥ 1, got {self.cache_frames}")
        if self.spatial_rope and self.dim // self.heads < 8:
            raise ConfigError(f"model: spatial_rope needs a head size ≥ 8, got {self.dim // self.heads}")


@dataclass
class CodecConfig:
    """The latent frame codec (``crcm_robotics.model.codec``); ``height``/``width`` are filled from the data."""

    height: int = 128
    width: int = 128
    latent_channels: int = 8
    base_channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 4)  # one stride-2 level each: stride = 2 ** len(channel_mult)
    blocks_per_level: int = 1

    @property
    def stride(self) -> int:
        return 2 ** len(self.channel_mult)

    def validate(self) -> None:
        if not self.channel_mult or min(self.channel_mult) < 1:
            raise ConfigError(f"codec: channel_mult must be positive multipliers, got {list(self.channel_mult)}")
        if self.latent_channels < 1 or self.base_channels < 1 or self.blocks_per_level < 0:
            raise ConfigError(f"codec: latent_channels, base_channels must be ≥ 1 and blocks_per_level ≥ 0, got "
                              f"{self.latent_channels}, {self.base_channels}, {self.blocks_per_level}")
        if self.height % self.stride or self.width % self.stride:
            raise ConfigError(f"codec: image {self.height}x{self.width} is not divisible by the codec's stride "
                              f"{self.stride}")


# --- training -------------------------------------------------------------------------------------


@dataclass
class DataConfig:
    """Which store and how to cut it into training windows."""

    path: str | None = None  # required for teacher training; distillation defaults to the teacher's store
    window: int = 8  # frames the model sees per sample (each with the action that produced it)
    frame_skip: int = 1
    val_fraction: float = 0.1  # held-out episodes (split by episode, recorded in checkpoints)
    split_seed: int = 0
    # > 0: the split is drawn over the store's first N episodes and every later one trains, so a store grown with
    # more episodes of the same generator and seed keeps the held-out episodes (and goals) it had at N (0: all)
    split_first_episodes: int = 0
    key_map: KeyMapConfig = field(default_factory=KeyMapConfig)
    # training windows as logged (none), or each one turned/mirrored into one of PushT's 8 symmetric poses
    # (dihedral; crcm_robotics.data.symmetry): PushT stores with the pixel codec only
    augment: str = "none"
    # the share of each batch's windows drawn in proportion to how far the logged state's motion_dims (PushT:
    # the block's x, y) travel across the window, the rest uniformly (0: every window alike): updates spent
    # where objects are pushed, which a planner needs most and a uniform draw meets least
    motion_sampling: float = 0.0
    motion_dims: tuple[int, ...] = (2, 3)

    def validate(self) -> None:
        if self.split_first_episodes < 0:
            raise ConfigError(f"data.split_first_episodes={self.split_first_episodes}: the number of the store's "
                              "first episodes the split is drawn over expected (0: all of them)")
        if self.augment not in AUGMENTATIONS:
            raise ConfigError(f"data.augment={self.augment!r} unknown; expected one of "
                              f"{', '.join(AUGMENTATIONS)}")
        if not 0.0 <= self.motion_sampling <= 1.0:
            raise ConfigError(f"data.motion_sampling={self.motion_sampling}: a share of the batch in [0, 1] "
                              "expected")
        if self.motion_sampling > 0 and (not self.motion_dims or min(self.motion_dims) < 0):
            raise ConfigError(f"data.motion_dims={list(self.motion_dims)}: indices into the logged state "
                              "expected (PushT's block x, y: [2, 3])")


AUGMENTATIONS = ("none", "dihedral")


@dataclass
class OptimConfig:
    lr: float = 3e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.99)
    warmup_steps: int = 200
    batch_size: int = 32
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    # learning rate after warmup: constant, or wsd (warmup-stable-decay: constant, then a linear decay to
    # lr_final x lr over the last decay_fraction of train.steps; a run stopped by max_minutes before then
    # never decays, so set train.steps to what the time allows), or wsd_time (the same decay over the last
    # decay_fraction of train.max_minutes of wall time, resumes included: for runs whose update rate is not
    # known ahead, such as runs sharing a GPU; train.steps then only caps the run)
    lr_schedule: str = "constant"
    decay_fraction: float = 0.2
    lr_final: float = 0.0

    def validate(self) -> None:
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"optim.lr_schedule={self.lr_schedule!r} unknown; expected one of "
                              f"{', '.join(LR_SCHEDULES)}")
        if not 0.0 < self.decay_fraction <= 1.0 or not 0.0 <= self.lr_final <= 1.0:
            raise ConfigError(f"optim: decay_fraction in (0, 1] and lr_final in [0, 1] expected, got "
                              f"{self.decay_fraction} and {self.lr_final}")

    def decay_start(self, total_steps: int) -> int | None:
        """The update (0-based) whose rate is the first decayed one, for ``wsd``; None for ``constant``."""
        if self.lr_schedule != "wsd":
            return None
        return total_steps - max(1, round(self.decay_fraction * total_steps))

    def lr_factor(self, step: int, total_steps: int, time_fraction: float = 0.0) -> float:
        """The multiplier on ``lr`` for update ``step`` (0-based) of a run of ``total_steps`` updates;
        ``wsd_time`` reads ``time_fraction``, the share of the run's time budget spent before the update."""
        factor = min(1.0, (step + 1) / max(self.warmup_steps, 1))
        start = self.decay_start(total_steps)
        if start is not None and step + 1 > start:
            factor *= 1.0 - (1.0 - self.lr_final) * min(1.0, (step + 1 - start) / (total_steps - start))
        if self.lr_schedule == "wsd_time" and time_fraction > 1.0 - self.decay_fraction:
            decayed = (time_fraction - (1.0 - self.decay_fraction)) / self.decay_fraction
            factor *= 1.0 - (1.0 - self.lr_final) * min(1.0, decayed)
        return factor


LR_SCHEDULES = ("constant", "wsd", "wsd_time")


VALIDATION_SELECT = ("psnr", "psnr_pusher")


@dataclass
class ValidationConfig:
    """Held-out rollouts inside training (``distill/validation.py``): scored, logged, used to keep the best weights.

    Each validation rolls the EMA weights out on a few held-out windows and scores PSNR against the
    copy-last-frame baseline (and the PushT pusher error); the best one is saved as ``CKPT/selected``.
    """

    every: int = 0  # updates between validations (0 = off; the run then keeps only its last weights)
    episodes: int = 4  # held-out episodes used (the first ones of the split)
    windows_per_episode: int = 2
    horizon: int = 16
    context: int = 2
    steps: int = 0  # sampler steps (0 = the run's own: the teacher's eval sampler, the student's steps)
    solver: str | None = None  # teacher only: euler | heun | ddim (None = the teacher's eval solver)
    seed: int = 0
    collapse_db: float = 5.0  # a validation this many dB below copy-last (mean PSNR) counts as collapsed
    collapse_evals: int = 3  # this many collapsed validations in a row stop the run
    # what keeps weights: psnr (dB above copy-last) | psnr_pusher (that plus the pusher's gain over copy-last,
    # 10·log10(copy-last error / error) dB, PushT only): PSNR alone can prefer a blurry pusher
    select: str = "psnr"
    # a state probe (`crcm train probe`): each validation also reads every logged state off the predicted
    # frames (probe_block_pos, probe_block_angle_deg, ...; copy-last's beside them): the curve shows whether
    # the pushed object, not just the pixels, gets better with training; logged, not used to select
    probe: str | None = None

    def validate(self) -> None:
        if self.every < 0 or self.horizon < 1 or self.context < 1 or self.collapse_evals < 1:
            raise ConfigError(f"train.validation: every ≥ 0, horizon ≥ 1, context ≥ 1 and collapse_evals ≥ 1 "
                              f"expected, got {self}")
        if self.select not in VALIDATION_SELECT:
            raise ConfigError(f"train.validation.select={self.select!r} unknown; expected one of "
                              f"{', '.join(VALIDATION_SELECT)}")


@dataclass
class TrainLoopConfig:
    """The one trainer loop shared by the teacher and every distillation method."""

    out: str = "outputs/teacher"
    steps: int = 1000
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16
    max_minutes: float = 0.0  # > 0: stop (and save) once this wall time is spent
    # > 0: a wall-clock time (seconds since the Unix epoch) by which the loop stops (and saves). Counted from
    # the process's setup, not the loop's start: max_minutes is cut to what is left when the loop starts, so
    # a slow setup (a large store loaded) shortens the training and not the caller's time. The sixty-third
    # session's teacher, given 2.23 min on a 3,000-episode store, spent about 80 s loading it first and its
    # call was killed before its last validation
    stop_at: float = 0.0
    log_every: int = 50
    sample_every: int = 0  # steps between preview GIFs (0 = only at the end)
    ckpt_every: int = 0  # steps between checkpoints (0 = only at the end)
    resume: str | None = None  # checkpoint directory to continue from exactly
    save_dtype: str = "float32"  # weights in the checkpoint: float32 | float16 | bfloat16
    progress: bool = True
    compile: bool = False  # torch.compile the network for training
    validation: ValidationConfig = field(default_factory=ValidationConfig)

    def validate(self) -> None:
        """A bad ``stop_at`` refused before any data is loaded (a plausible epoch time: after 2001)."""
        if not (math.isfinite(self.stop_at) and (self.stop_at == 0 or self.stop_at >= 1e9)):
            raise ConfigError(f"train.stop_at={self.stop_at}: expected 0 (none) or a wall-clock time in seconds "
                              f"since the Unix epoch (now {time.time():.0f})")


@dataclass
class TeacherObjectiveConfig:
    """Diffusion forcing in the teacher-forcing layout (``distill/teacher.py``)."""

    p_mean: float = -0.8  # log σ ~ N(p_mean, p_std²), t = atan σ
    p_std: float = 1.6
    context_noise_prob: float = 0.0  # chance a clean context frame is lightly noised (robustness to drift)
    context_noise_t: float = 0.1  # max TrigFlow time of that noise
    context_noise_labeled: bool = True  # False: the noised frame still claims t = 0, like generated history
    motion_weight: float = 0.0  # extra loss weight on pixels that change between frames (0 = plain MSE)
    motion_threshold: float = 0.05  # a pixel "moves" when a channel changes by more than this ([-1, 1] scale)
    motion_region: str = "pixel"  # pixel: the moved pixels (dilated 1 px); patch: every token patch holding one
    # > 0: add this weight × a state-probe loss: a frozen probe (`crcm train probe`) reads the state (PushT:
    # pusher and block pose) off every predicted clean frame, scored against the state the store logged.
    # Pixel MSE barely sees a small block turn; this term asks the prediction to render the pose (pixel
    # codec only; the store must log the probe's states). Measured on PushT at 10: the block turned rigid but
    # stopped moving, and the pusher was lost; at 1: the block moved, no nearer to its pose, 23 of 48 goals
    # against 26 without it (docs/results.md, Planning)
    state_weight: float = 0.0
    state_probe: str | None = None  # the probe directory the state loss reads frames with
    # chance that a noisy frame's command is replaced by the model's learnt null action (model.action_null),
    # so the one network also learns the action-free prediction that classifier-free action guidance
    # (sampling guidance w: F_null + w·(F_action − F_null)) steers away from; clean context frames keep theirs.
    # Measured on PushT at 0.1: unguided level with the plain teacher; guidance 1.5-2 drew the pushed block as a
    # denser cloud, 5-6 units farther (docs/results.md, Planning)
    action_dropout: float = 0.0

    eval_steps: int = 16  # ODE steps for previews and the default `crcm eval`
    eval_solver: str = "heun"

    def validate(self) -> None:
        if self.motion_weight < 0:
            raise ConfigError(f"objective.motion_weight must be ≥ 0, got {self.motion_weight}")
        if self.motion_region not in ("pixel", "patch"):
            raise ConfigError(f"objective.motion_region={self.motion_region!r}; expected pixel or patch")
        if not self.state_weight >= 0:
            raise ConfigError(f"objective.state_weight must be ≥ 0, got {self.state_weight}")
        if self.state_weight > 0 and not self.state_probe:
            raise ConfigError("objective.state_weight > 0 needs objective.state_probe=DIR (a `crcm train "
                              "probe` directory)")
        if not 0.0 <= self.action_dropout < 1.0:
            raise ConfigError(f"objective.action_dropout must be in [0, 1), got {self.action_dropout}")


@dataclass
class TeacherTrainConfig:
    """``crcm train teacher``."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    objective: TeacherObjectiveConfig = field(default_factory=TeacherObjectiveConfig)
    train: TrainLoopConfig = field(default_factory=TrainLoopConfig)
    # a checkpoint whose (selected) weights the network starts from: a fine-tune, e.g. on another store; the
    # optimizer, the rate schedule and the update count start anew (train.resume continues a run exactly);
    # actions are normalised with this run's store's statistics
    init: str | None = None


@dataclass
class ProbeImaginedConfig:
    """``crcm train probe imagined.ckpt=CKPT``: also train the probe on CKPT's own predicted frames, each
    labelled with the state the logged actions truly reached. A probe trained on real frames reads a block the
    model renders soft under contact as some other pose; this one learns what the model's imagined frame says
    about the true state, which is what a planner's goal cost needs."""

    ckpt: str | None = None  # a teacher or student checkpoint with the store's frame size and actions
    sampler_steps: int = 0  # 0: the checkpoint's own sampler; else DDIM steps (as `crcm eval steps=`)
    context: int = 2  # real frames each rollout starts from
    horizon: int = 5  # frames imagined per window (at the checkpoint's frame skip)
    windows_per_episode: int = 8  # windows spaced through each training episode
    share: float = 0.5  # fraction of each training batch drawn from imagined frames
    batch: int = 64  # windows per rollout call

    def validate(self) -> None:
        if self.context < 1 or self.horizon < 1 or self.windows_per_episode < 1 or self.batch < 1:
            raise ConfigError(f"imagined.context, horizon, windows_per_episode and batch must be ≥ 1; got "
                              f"{self.context}, {self.horizon}, {self.windows_per_episode}, {self.batch}")
        if not 0.0 < self.share < 1.0:
            raise ConfigError(f"imagined.share must be in (0, 1) (real frames are still needed to read goal "
                              f"images); got {self.share}")
        if self.sampler_steps < 0:
            raise ConfigError(f"imagined.sampler_steps must be ≥ 0 (0: the checkpoint's sampler); "
                              f"got {self.sampler_steps}")


@dataclass
class ProbeTrainConfig:
    """``crcm train probe``: a state probe (frames → logged state) for the planners' ``probe`` goal cost."""

    data: DataConfig = field(default_factory=DataConfig)  # path, val_fraction, split_seed, split_first_episodes
    out: str = "outputs/probe"  # save as CKPT/probe so WorldModel.load(CKPT) finds it
    steps: int = 3000
    batch_size: int = 256
    lr: float = 2e-3
    width: int = 32  # channels of the first conv block
    max_frames: int = 60000  # training frames kept in memory (episodes evenly thinned)
    noise_std: float = 0.04  # pixel noise augmentation ([-1, 1] scale)
    blur_prob: float = 0.5  # chance a training frame is blurred 3×3
    position_scale: float = 0.0  # embedding unit of non-angle states (0 = each state's std in the store)
    angle_scale: float = 1.0  # divisor of an angle's (cos, sin)
    device: str = "auto"
    seed: int = 0
    max_minutes: float = 0.0
    progress: bool = True
    imagined: ProbeImaginedConfig = field(default_factory=ProbeImaginedConfig)


@dataclass
class CodecDataConfig:
    """Which store the codec learns frames from, split by episode like the teacher's data."""

    path: str | None = None
    val_fraction: float = 0.1  # held-out episodes: the final PSNR is measured on their frames
    split_seed: int = 0
    key_map: KeyMapConfig = field(default_factory=KeyMapConfig)


@dataclass
class CodecTrainConfig:
    """``crcm train codec data.path=STORE``: the latent frame codec (``distill/codec.py``)."""

    data: CodecDataConfig = field(default_factory=CodecDataConfig)
    codec: CodecConfig = field(default_factory=CodecConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainLoopConfig = field(default_factory=lambda: TrainLoopConfig(out="outputs/codec"))
    edge_weight: float = 1.0  # loss = MSE + edge_weight · L1 between image gradients (keeps edges sharp)
    eval_frames: int = 512  # held-out frames the final PSNR is measured on (evenly spaced)
    stats_frames: int = 1024  # training frames the latent statistics are measured on


# --- evaluation -----------------------------------------------------------------------------------


@dataclass
class EvalDataConfig:
    path: str | None = None  # default: the checkpoint's training store (held-out episodes)
    key_map: KeyMapConfig = field(default_factory=KeyMapConfig)


@dataclass
class EvalConfig:
    """``crcm eval CKPT``: rollouts on held-out episodes; one JSON line + a report folder."""

    ckpt: str = "???"
    data: EvalDataConfig = field(default_factory=EvalDataConfig)
    horizon: int = 16
    context: int = 2
    episodes: int = 0  # 0 = every held-out episode
    windows_per_episode: int = 4
    steps: int = 0  # 0 = the checkpoint's sampler steps (teacher ODE steps; student 1/2/4)
    solver: str | None = None  # teacher only: euler | heun | ddim
    sampler: str | None = None  # ode | consistency; consistency on a teacher = the undistilled reference (steps=)
    mid_times: list[float] | None = None  # consistency only: times between jumps (default: the checkpoint's)
    # classifier-free action guidance w (None = the checkpoint's, 1 = none); needs model.action_null
    guidance: float | None = None
    batch_size: int = 64
    device: str = "auto"
    seed: int = 0
    time_batch1: bool = True
    report: bool = True
    out: str | None = None  # report folder; default outputs/eval/<ckpt>_<sampler>_h<horizon>
    weights: str = "selected"  # selected (validation's best, when the run kept one) | last
    # a state probe (`crcm train probe`): each logged state read off predicted frames vs the truth, per step;
    # default CKPT/probe when it exists; none = skip
    probe: str | None = None


@dataclass
class PlannerConfig:
    """One planner setting for ``crcm plan`` and ``crcm bench plan`` (see crcm_robotics/plan/)."""

    kind: str = "cem"  # cem | mppi | random
    samples: int = 256  # candidates per round
    iterations: int = 6  # rounds per solve (at most, with time_budget_s)
    elites: int = 32
    momentum: float = 0.1
    temperature: float = 0.5  # MPPI
    time_budget_s: float = 0.0  # > 0: stop a solve's rounds once this much time is spent
    horizon: int = 25  # env steps imagined per candidate (a multiple of the model's frame_skip)
    hold: int = 5  # env steps each waypoint is held
    # delta (steps from the last command, summed) | absolute; under delta the models rank candidates
    # better (docs/results.md, planning: rank correlation 0.73 against 0.58 for the teacher)
    mode: str = "delta"
    cost: str = "probe"  # final_mse | pooled_mse | path_mse | probe | probe_path | probe_mass
    # probe costs' units: positions in store units, angles in rad (0 = each state's spread in the store); e.g.
    # PushT's success rule, 20 units and 0.35 rad (StateProbe.with_cost_units)
    probe_position_unit: float = 0.0
    probe_angle_unit: float = 0.0
    # env steps executed between solves; any number from 1 to the horizon, also off a model's frame grid (its
    # context is cut from the env-step history: the newest frame and every frame_skip-th before it)
    replan_every: int = 5
    # near the end of an episode's budget, score candidates on the state the budget ends at, not on the
    # horizon's end beyond it (success is judged at the budget's end; without this, plans pushed through it)
    cost_at_budget_end: bool = True
    # control-effort penalty added to every candidate's cost (SamplingPlanner.effort_weight; 0 = off): a
    # waypoint move across the whole action range costs this much, so among candidates imagination scores
    # alike the planner keeps the one that moves least. The three effort settings left unset (null) take the
    # store's domain defaults: PushT off (0, moves, all dims); the Meta-World arm 1 on the end-effector
    # velocity's magnitude, dims [0,1,2] (it lifted the arm's success held at the end from 0.40 to 0.95:
    # docs/results.md, issue 16)
    effort_weight: float | None = None
    # what it penalises: moves (between waypoints: PushT, whose actions are pusher positions) | magnitude (the
    # command itself: Meta-World, whose actions are end-effector velocities)
    effort_on: str | None = None
    # the action dims it counts (empty: all); e.g. [0,1,2] for the arm, whose 4th dim is a gripper effort of ±1
    effort_dims: tuple[int, ...] | None = None
    # a model's noise across the candidates of one round: per_candidate (each draws its own) | shared (common
    # random numbers: every candidate sees the same draw, so candidates differ by their actions only)
    noise: str = "per_candidate"
    draws: int = 1  # noise draws each candidate is imagined under; its cost is their mean (time × draws)
    seed: int = 0


@dataclass
class PlanBenchConfig:
    """``crcm bench plan CKPT``: closed-loop goal reaching in real gym-pusht, per arm; one JSON line + report."""

    ckpt: str | None = None  # the model arm; without it only simulator arms run, on data.path's default split
    models: tuple[str, ...] = ()  # more checkpoints, each its own arm (e.g. the teacher, a second seed)
    # random | oracle (the simulator renders candidates, same cost) | oracle_state (the simulator with the true
    # state distance as cost: the planner's own ceiling) | model (CKPT and every one of `models`)
    arms: tuple[str, ...] = ("random", "oracle", "model")
    data: EvalDataConfig = field(default_factory=EvalDataConfig)  # default: CKPT's store, held-out episodes
    # goals from this checkpoint's held-out episodes of its own store instead of CKPT's: models trained on
    # different stores (e.g. with and without exploration data) planned on the same goals
    goals_from: str | None = None
    goals: int = 50
    # plan only the selection's goals from this index on (the selection itself is unchanged): resume an arm
    # cut short, or split one benchmark's goals across processes (per-goal lines name episode and start, so
    # the parts' goals.jsonl concatenate; the planner's draws start afresh, so a part is another draw of the
    # same planner on its goals, not the numbers a whole run would give)
    first_goal: int = 0
    # plan only these of the selection's goals, each "EPISODE:START" (e.g. the goals most runs miss, from
    # `scripts/plan_goal_pairs.py --per-goal`): a lever tried where runs differ, at a fraction of the time;
    # the selection itself is unchanged, so each goal is the one a whole run plans
    only_goals: tuple[str, ...] = ()
    ahead: int = 25  # env steps from start to goal along the logged actions
    budget: int = 50  # env steps the planner may take per goal
    # a goal counts only if the block/object moves this far (PushT: env units, default 15; Meta-World: metres,
    # default 0.05, the success distance) or turns this much (rad; PushT default 0.15, Meta-World: off)
    min_move: float | None = None
    min_turn: float | None = None
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    probe: str | None = None  # state-probe directory for probe costs (default: CKPT/probe)
    device: str = "auto"
    backend: str = "eager"
    steps: int = 0  # sampler steps per frame (0 = each checkpoint's own)
    # classifier-free action guidance w of the model arms (None = each checkpoint's, 1 = none); a checkpoint
    # trained without model.action_null is refused
    guidance: float | None = None
    oracle_workers: int = 0  # simulator processes for the oracle (0 = all cores)
    gifs: int = 2  # episodes per arm drawn as executed | imagined | goal GIFs
    # model arms: at the start of this many goals, rank one round of candidates by imagination and by the
    # simulator and compare (probe state errors, rank correlation with the true cost); 0 = skip
    fidelity_goals: int = 10
    # a second state probe (another run of the probe's recipe): the fidelity figures also cost the same imagined
    # candidates with it (``other_probe_*``: how far it reads and ranks them from the first probe), so that a
    # probe cost's dependence on which probe run it reads with is measured; needs a probe cost
    fidelity_other_probe: str | None = None
    # false: model arms report their fidelity only, no closed-loop goals (a model's diagnosis in minutes)
    closed_loop: bool = True
    out: str = "outputs/bench_plan"
    seed: int = 0
    progress: bool = True


@dataclass
class PlanRunConfig:
    """``crcm plan CKPT``: one closed-loop episode in gym-pusht towards a goal from a store; JSON line + GIF."""

    ckpt: str = "???"
    data: EvalDataConfig = field(default_factory=EvalDataConfig)  # default: CKPT's store
    episode: int = -1  # store episode (-1: the first held-out one)
    start: int = 20  # index of the start frame in the episode (after the context the model needs)
    ahead: int = 25  # the goal is the state the logged actions reach this many env steps later
    budget: int = 50
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    probe: str | None = None
    device: str = "auto"
    backend: str = "eager"
    steps: int = 0
    guidance: float | None = None  # classifier-free action guidance w (None = the checkpoint's; model.action_null)
    out: str = "outputs/plan"
    seed: int = 0


@dataclass
class ServeConfig:
    """``crcm serve CKPT``: the world model behind msgpack/TCP (protocol: ``crcm_robotics.serve.codec``)."""

    ckpt: str = "???"
    host: str = "127.0.0.1"  # loopback only unless allow_remote=true
    port: int = 5555
    allow_remote: bool = False  # required to bind a non-loopback address (e.g. 0.0.0.0)
    token: str = ""  # shared secret clients send; empty = no auth
    token_file: str = ""  # or read it from this file (keeps it off the command line)
    device: str = "auto"  # auto = cuda when available, else cpu
    backend: str = "eager"  # eager | cuda_graph | compile | onnx | tensorrt
    steps: int = 0  # 0 = the checkpoint's sampler steps
    max_batch: int = 64  # WorldModel rollouts per forward pass
    max_message_bytes: int = 64 * 2**20  # larger requests get MessageTooLarge
    request_timeout_s: float = 30.0  # queueing + model time per request; 0 = none
    idle_timeout_s: float = 0.0  # hang up on a connection silent this long; 0 = never
    max_clients: int = 32
    max_rollouts: int = 256  # imagine: N limit
    max_horizon: int = 64  # imagine: Hz limit
    log_level: str = "INFO"


# --- runtime: export and benchmark ---------------------------------------------------------------


@dataclass
class ExportConfig:
    """``crcm export CKPT format=onnx|tensorrt|compiled out=DIR batch=[1,64]``: the per-frame step as files."""

    ckpt: str = "???"
    format: str = "onnx"  # onnx | tensorrt | compiled (torch.compile artefacts; default out: CKPT/compile_cache)
    out: str | None = None  # folder; default outputs/export/<ckpt>_<sampler>
    batch: tuple[int, ...] = (1,)  # one file per batch size (fixed shapes)
    steps: int = 0  # 0 = the checkpoint's sampler steps
    solver: str | None = None  # teacher only: euler | heun | ddim
    opset: int = 17  # ONNX opset
    device: str = "auto"  # tensorrt: the CUDA device to build on
    dtype: str = "float32"  # tensorrt, compiled: float32 | float16 | bfloat16 | auto (compiled: as the runtime)
    # compiled: precompiled (one torch.compile(...).aot_compile step per batch size, loaded with no tracing;
    # Inductor's artefacts where this torch cannot) | cache (torch.compile's Inductor artefacts only) | aoti
    # (one AOTInductor package per batch size; opt-in: torch 2.11's loader crashed on CUDA)
    compiled: str = "precompiled"
    check: bool = True  # onnx: compare onnxruntime against eager PyTorch on random inputs
    weights: str = "selected"  # selected (validation's best, when the run kept one) | last


@dataclass
class BenchConfig:
    """``crcm bench CKPT``: streaming and planner latency per backend; one JSON line (+ outputs/bench/)."""

    ckpt: str = "???"
    backends: tuple[str, ...] = ()  # empty: eager, cuda_graph, compile on CUDA; eager, onnx on CPU
    device: str = "auto"
    dtype: str = "auto"  # CUDA weights: auto (bf16) | float32 | bfloat16 | float16; CPU is float32
    steps: int = 0  # 0 = the checkpoint's sampler steps
    context: int = 0  # context frames given to reset/imagine; 0 = the model's KV window
    stream_frames: int = 32  # frames per timed streaming run
    planner_rollouts: int = 64
    planner_horizon: int = 16
    max_batch: int = 64
    warmup: int = 2  # untimed runs before the timed ones
    repeats: int = 5  # timed runs; figures are medians
    teacher: str | None = None  # teacher checkpoint; None: this network with an ODE sampler (labelled)
    teacher_steps: int = 0  # 0: the teacher's own steps (16 heun when timing a student's network)
    teacher_solver: str | None = None
    teacher_backend: str = "best"  # backend the teacher is timed on; best = the fastest student backend
    seed: int = 0
    threads: int = 0  # CPU intra-op threads for torch and onnxruntime; 0 = torch's default
    # compile backend: use/make precompiled steps in CKPT/compile_cache (false: trace; Inductor artefacts only)
    compile_precompiled: bool = True
    # a latent codec's encode/decode: auto (float16 on CUDA) | float32 | bfloat16 | float16
    codec_dtype: str = "auto"
    out: str | None = None  # JSON copy; default outputs/bench/<ckpt>_<sampler>_<device>.json


# --- distillation ---------------------------------------------------------------------------------


@dataclass
class SCMConfig:
    """Teacher-forcing continuous-time consistency (sCM, TrigFlow) — ``distill/tf_scm.py``."""

    p_mean: float = -0.8  # training times: log tan t ~ N(p_mean, p_std²)
    p_std: float = 1.6
    tangent_warmup_steps: int = 200  # r ramps 0 → 1 over these steps
    tangent_norm_c: float = 0.1  # g ← g / (‖g‖ + c)
    adaptive_weight: bool = False  # sCM's learned time weighting: loss = e^{w(t)}·err − w(t), w an MLP of t


@dataclass
class DCMConfig:
    """Teacher-forcing discrete-time consistency (dCM baseline) — ``distill/tf_dcm.py``."""

    p_mean: float = -0.8
    p_std: float = 1.6
    delta_t: float = 0.05  # teacher Euler step from t to t − Δt that defines the consistency target


@dataclass
class DMDConfig:
    """Self-forcing distribution matching — ``distill/sf_dmd.py``."""

    context: int = 2  # real frames the student rollout starts from (the rest of the window is generated)
    # frames each self-forcing rollout generates after its context; 0 = the rest of the training window.
    # Longer (Self-Forcing++): the KV window rolls past the training window, and the critics score the last
    # data.window frames of the rollout, its earlier generated frames as their clean history
    rollout_frames: int = 0
    fake_updates: int = 5  # fake-score updates per student update (two time scales)
    # one student rollout for the windows of all fake_updates critic updates (the student does not change
    # between them): fake_updates times fewer sequential network passes, fake_updates times the rollout's
    # batch in memory. false: one rollout per critic update
    fake_rollouts_batched: bool = True
    fake_lr: float = 2e-4
    t_min: float = 0.02  # DMD noise times ~ U(t_min, t_max)
    t_max: float = 1.55


@dataclass
class RCMConfig:
    """Causal-rCM = TF-sCM initialisation, then SF-DMD with the sCM loss as a regulariser."""

    scm_steps: int = 300  # stage 1 length (pure TF-sCM); with scm_stage_patience > 0, its upper bound
    scm_weight: float = 1.0  # λ of the sCM regulariser in stage 2
    dmd_weight: float = 1.0
    # > 0: stage 1 also ends once this many validations in a row (train.validation) did not improve on its best
    scm_stage_patience: int = 0
    scm_weight_schedule: str = "constant"  # constant | linear | cosine: λ fades to 0 over scm_fade_steps
    scm_fade_steps: int = 0  # stage-2 updates over which a linear/cosine λ reaches 0

    def validate(self) -> None:
        if self.scm_weight_schedule not in ("constant", "linear", "cosine"):
            raise ConfigError(f"rcm.scm_weight_schedule={self.scm_weight_schedule!r}; expected constant, linear "
                              f"or cosine")
        if self.scm_weight_schedule != "constant" and self.scm_fade_steps < 1:
            raise ConfigError(f"rcm.scm_weight_schedule={self.scm_weight_schedule} needs rcm.scm_fade_steps ≥ 1, "
                              f"got {self.scm_fade_steps}")
        if self.scm_stage_patience < 0:
            raise ConfigError(f"rcm.scm_stage_patience must be ≥ 0, got {self.scm_stage_patience}")


@dataclass
class DistillConfig:
    """``crcm distill METHOD teacher=CKPT``: a 1–4 step student from a teacher checkpoint."""

    method: str = "causal_rcm"  # causal_rcm | tf_scm | tf_dcm | sf_dmd
    teacher: str = "???"
    student_steps: int = 2  # sampler steps of the student (self-forcing rollouts and the saved default)
    student_mid_times: list[float] | None = None  # its times between jumps (None = 2 steps: [1.1]; see trigflow)
    # transformer blocks of the student (0 = the teacher's depth). Fewer make every network pass cheaper (a
    # planner's query is all passes); the student starts from blocks taken evenly from the teacher's, first
    # and last kept, and every other weight copied
    student_depth: int = 0
    # None: the student starts from the teacher's weights (student_depth's blocks of them). A checkpoint dir:
    # it starts from that model instead, one trained on the same store with the teacher's settings but fewer
    # blocks (say a 4-block `crcm train teacher` run): a shallow student that already predicts the frames,
    # where blocks dropped from the teacher leave a network that first has to learn to again
    student_init: str | None = None
    data: DataConfig = field(default_factory=DataConfig)  # data.path defaults to the teacher's store
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainLoopConfig = field(default_factory=TrainLoopConfig)
    scm: SCMConfig = field(default_factory=SCMConfig)
    dcm: DCMConfig = field(default_factory=DCMConfig)
    dmd: DMDConfig = field(default_factory=DMDConfig)
    rcm: RCMConfig = field(default_factory=RCMConfig)


@dataclass
class QuickstartConfig:
    """``crcm quickstart``: the README's main job on the embedded PushT default, CPU-sized."""

    out: str = "outputs/quickstart"
    episodes: int = 40
    size: int = 64
    seed: int = 0
    workers: int = 2
    min_steps: int = 60
    max_steps: int = 100
    teacher_steps: int = 300
    distill_steps: int = 40
    method: str = "causal_rcm"
    student_eval_steps: tuple[int, ...] = (1, 2)
    student_mid_times: list[float] | None = field(default_factory=lambda: [1.56])  # 2-step eval (None: ckpt's)
    horizon: int = 8
    device: str = "cpu"
    progress: bool = True
    teacher_overrides: list[str] = field(default_factory=list)  # extra `crcm train teacher` overrides
    distill_overrides: list[str] = field(default_factory=list)  # extra `crcm distill` overrides
