"""``crcm distill METHOD teacher=CKPT``: build teacher, student (initialised from the teacher) and method; train."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from crcm_robotics.config import ConfigError, DistillConfig, TeacherObjectiveConfig, from_dict
from crcm_robotics.model.checkpoint import Checkpoint, build_model, load_checkpoint
from crcm_robotics.model.dit import CausalDiT
from crcm_robotics.model.sampler import SamplerSpec
from distill.causal_rcm import CausalRCM
from distill.context import build_context, resolved_config
from distill.sf_dmd import SFDMD
from distill.student import StudentMethod, shallow_student
from distill.tf_dcm import TFdCM
from distill.tf_scm import TFsCM
from distill.trainer import Trainer, autocast_dtype
from distill.validation import build_validator

METHODS = ("causal_rcm", "tf_scm", "tf_dcm", "sf_dmd")


def student_sampler(cfg: DistillConfig) -> SamplerSpec:
    """The student's own few-step sampler (used by self-forcing rollouts, previews and saved in its meta)."""
    mids = None if cfg.student_mid_times is None else tuple(cfg.student_mid_times)
    try:
        return SamplerSpec("consistency", cfg.student_steps, mid_times=mids)
    except ValueError as e:  # SamplerSpec knows the step counts and times a student can sample with
        raise ConfigError(f"student_steps={cfg.student_steps}, student_mid_times={cfg.student_mid_times}: "
                          f"{e}") from e


def make_method(cfg: DistillConfig, sampler: SamplerSpec, student: CausalDiT, teacher: CausalDiT,
                fake_objective: TeacherObjectiveConfig, amp: torch.dtype | None) -> StudentMethod:
    if cfg.method == "tf_scm":
        return TFsCM(student, teacher, cfg.scm, sampler)
    if cfg.method == "tf_dcm":
        return TFdCM(student, teacher, cfg.dcm, sampler)
    window = cfg.data.window  # the training window: the critics' and TF-sCM's (batches may be longer)
    if cfg.method == "sf_dmd":
        return SFDMD(student, teacher, cfg.dmd, fake_objective, sampler, amp, window)
    if cfg.method == "causal_rcm":
        return CausalRCM(student, teacher, cfg.scm, cfg.dmd, cfg.rcm, fake_objective, sampler, amp, window)
    raise ConfigError(f"method={cfg.method!r} unknown; expected one of {', '.join(METHODS)}")


def sampled_window(cfg: DistillConfig) -> int:
    """Frames per training batch window: data.window, or dmd.context + dmd.rollout_frames when self-forcing
    rolls out past it."""
    extra, w, k = cfg.dmd.rollout_frames, cfg.data.window, cfg.dmd.context
    if extra < 0:
        raise ConfigError(f"dmd.rollout_frames={extra} must be ≥ 0 (0: the training window's)")
    if extra == 0:
        return w
    if cfg.method not in ("sf_dmd", "causal_rcm"):
        raise ConfigError(f"dmd.rollout_frames={extra} applies to sf_dmd and causal_rcm, "
                          f"not method={cfg.method}")
    if extra <= w - k:
        raise ConfigError(f"dmd.rollout_frames={extra} must exceed the {w - k} frames a training window "
                          f"generates (data.window={w} − dmd.context={k}), or be 0 for those")
    return k + extra


def initial_student(path: str, teacher: Checkpoint, student_depth: int) -> Checkpoint:
    """The checkpoint a student starts from (``student_init=``), checked against its teacher: a model
    trained on data (kind teacher) with the teacher's settings, frame skip and action statistics, at most its
    depth; ``student_depth``, when set, must be that depth."""
    init = load_checkpoint(path)
    if init.meta.get("kind") != "teacher":
        raise ConfigError(f"student_init={path} is a {init.meta.get('kind')!r} checkpoint, expected a model "
                          "trained on data (`crcm train teacher`)")
    ours, theirs = dataclasses.asdict(init.model_config), dataclasses.asdict(teacher.model_config)
    differ = sorted(k for k in ours if k != "depth" and ours[k] != theirs[k])
    if differ:
        raise ConfigError(f"student_init={path} differs from teacher={teacher.path} in "
                          + ", ".join(f"model.{k} ({ours[k]} against {theirs[k]})" for k in differ)
                          + "; expected the teacher's settings but for model.depth")
    depth = init.model_config.depth
    if depth > teacher.model_config.depth or student_depth not in (0, depth):
        raise ConfigError(f"student_init={path} has {depth} blocks: expected at most the teacher's "
                          f"{teacher.model_config.depth}, and student_depth=0 or {depth} "
                          f"(got {student_depth})")
    skips = (int(init.meta.get("frame_skip", 1)), int(teacher.meta.get("frame_skip", 1)))
    if skips[0] != skips[1]:
        raise ConfigError(f"student_init={path} predicts every {skips[0]}. frame, teacher={teacher.path} "
                          f"every {skips[1]}.; expected the same frame skip")
    for name in ("mean", "std"):
        a, b = (np.asarray(c.stats["action"][name], np.float64) for c in (init, teacher))
        if a.shape != b.shape or not np.allclose(a, b, rtol=1e-5, atol=1e-6):
            raise ConfigError(f"student_init={path} normalizes actions with {name} {a.tolist()}, teacher="
                              f"{teacher.path} with {b.tolist()}; expected one store's statistics")
    return init


def run_distill(cfg: DistillConfig):
    if cfg.method not in METHODS:
        raise ConfigError(f"method={cfg.method!r} unknown; expected one of {', '.join(METHODS)}")
    cfg.train.validate()
    sampler = student_sampler(cfg)  # fails on a bad sampler before anything is loaded
    window = sampled_window(cfg)  # and on a bad rollout length
    ckpt = load_checkpoint(cfg.teacher)
    if ckpt.meta.get("kind") != "teacher":
        raise ConfigError(f"teacher={cfg.teacher} is a {ckpt.meta.get('kind')!r} checkpoint, expected a teacher")
    teacher_depth = ckpt.model_config.depth
    depth = cfg.student_depth or teacher_depth
    if not 1 <= depth <= teacher_depth:
        raise ConfigError(f"student_depth={cfg.student_depth}: expected 0 (the teacher's {teacher_depth} "
                          f"blocks) or 1..{teacher_depth}")
    init = None if cfg.student_init is None else initial_student(cfg.student_init, ckpt, cfg.student_depth)
    # The student predicts what its teacher predicts: every frame_skip-th frame from the commands between.
    teacher_skip = int(ckpt.meta.get("frame_skip", 1))
    data = dataclasses.replace(cfg.data, path=cfg.data.path or ckpt.meta.get("data_path"), frame_skip=teacher_skip)
    # batches of longer windows when self-forcing rolls out past the training window (the meta keeps data's)
    sampled = dataclasses.replace(data, window=window)
    # + its codec, and its split where the store is its own (the student never sees its held-out episodes)
    ctx = build_context(sampled, ckpt.model_config, cfg.train, cfg.optim.batch_size, ckpt.path, split_of=ckpt.meta)
    if dataclasses.asdict(ctx.model_cfg) != dataclasses.asdict(ckpt.model_config):
        raise ConfigError(f"store {data.path} does not fit teacher {cfg.teacher}: the model would need "
                          f"{ctx.model_cfg} but the teacher is {ckpt.model_config}")
    teacher = build_model(ckpt, ctx.device)
    if init is None:
        student = shallow_student(teacher, depth)
    else:
        student = build_model(init, ctx.device)
    student = student.train().requires_grad_(True)
    student_cfg = student.cfg
    fake_objective = from_dict(TeacherObjectiveConfig, ckpt.config.get("objective", {}), "teacher objective")
    fake_objective = dataclasses.replace(fake_objective, context_noise_prob=0.0, action_dropout=0.0)
    amp = autocast_dtype(cfg.train.precision, ctx.device)
    method = make_method(cfg, sampler, student, teacher, fake_objective, amp)
    meta = {**ctx.base_meta(data), "teacher": str(cfg.teacher)}
    if init is not None:
        meta["student_init"] = str(cfg.student_init)
    stats = ckpt.stats  # the student normalizes actions exactly as its teacher did
    validator = build_validator(cfg.train.validation, data, ctx.split.val, stats["action"], method.meta(),
                                student_cfg, ctx.codec, ctx.device)
    trainer = Trainer(method, ctx.sampler(cfg.train.seed), cfg.train, cfg.optim,
                      resolved_config(cfg, student_cfg), stats, meta, ctx.env, ctx.device,
                      preview_batch=ctx.preview_batch() if ctx.env.main else None,
                      validator=validator, codec=ctx.codec)
    return trainer.run()
