"""Latent diffusion through the learned frame codec: config, checkpoints carrying the codec, runtime, errors.

One tiny codec (arm_tiny, 32x32 frames → 4x4x4 latents) and one tiny teacher (patch 2: 4 tokens per frame)
trained on a synthetic store this module writes; a 2-step distilled student from that teacher.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from crcm_robotics.conf import compose_config
from crcm_robotics.config import ConfigError
from crcm_robotics.data.synthetic import write_synthetic_store
from crcm_robotics.model.checkpoint import CODEC_DIR, load_checkpoint
from crcm_robotics.model.codec import LatentCodec, load_codec
from crcm_robotics.model.tokenizer import PixelCodec, make_codec

LENGTHS = (16, 16, 16, 16)
TEACHER = ["model.patch=2", "train.steps=6", "train.progress=false", "data.val_fraction=0.25",
           "train.device=cpu", "train.validation.every=3", "train.validation.horizon=3",
           "train.validation.episodes=1", "train.validation.windows_per_episode=1"]


def _train_codec(store: Path, out: Path, steps: int = 4) -> Path:
    from distill.codec import train_codec

    overrides = ["preset=arm_tiny", f"data.path={store}", f"train.out={out}", f"train.steps={steps}",
                 "train.progress=false", "data.val_fraction=0.25", "train.device=cpu"]
    train_codec(compose_config("config", overrides, "crcm_robotics.conf.codec"))
    return out


def _teacher_cfg(store: Path, out: Path, *extra: str):
    return compose_config("config", [f"data.path={store}", f"train.out={out}", *TEACHER, *extra],
                          "crcm_robotics.conf.teacher")


@pytest.fixture(scope="module")
def latent_run(tmp_path_factory):
    """Store, codec (then deleted: checkpoints must not need it), latent teacher and a tiny student."""
    from distill.run import run_distill
    from distill.teacher import train_teacher

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny networks run fastest on one thread, also on a busy 2-core box
    root = tmp_path_factory.mktemp("latent")
    store = root / "s.zarr"
    write_synthetic_store(store, lengths=LENGTHS, image_size=32)
    codec_dir = _train_codec(store, root / "codec_src")
    codec_weights = {k: v.clone() for k, v in load_codec(codec_dir).net.state_dict().items()}
    teacher = root / "teacher"
    seen: list[tuple[int, ...]] = []
    from crcm_robotics.model.dit import CausalDiT

    hook = CausalDiT.forward

    def spy(self, x, *args, **kwargs):  # the shapes the DiT is fed during training
        seen.append(tuple(x.shape[-3:]))
        return hook(self, x, *args, **kwargs)

    CausalDiT.forward = spy
    try:
        train_teacher(_teacher_cfg(store, teacher, f"model.codec={codec_dir}"))
    finally:
        CausalDiT.forward = hook
    student = root / "student"
    overrides = ["method=tf_scm", f"teacher={teacher}", f"train.out={student}", "train.steps=2",
                 "train.progress=false", "train.device=cpu", "optim.batch_size=2", "train.validation.every=2",
                 "train.validation.horizon=3", "train.validation.episodes=1",
                 "train.validation.windows_per_episode=1"]
    run_distill(compose_config("config", overrides, "crcm_robotics.conf.distill"))
    shutil.rmtree(codec_dir)  # from here on, only the checkpoints' own copies exist
    yield {"store": store, "teacher": teacher, "student": student, "seen": seen,
           "codec_weights": codec_weights, "codec_src": codec_dir, "root": root}
    torch.set_num_threads(threads)


def test_teacher_diffuses_the_codecs_latents(latent_run):
    ck = load_checkpoint(latent_run["teacher"], weights="last")
    cfg = ck.model_config
    assert (cfg.channels, cfg.height, cfg.width, cfg.patch, cfg.codec) == (4, 4, 4, 2, CODEC_DIR)
    assert set(latent_run["seen"]) == {(4, 4, 4)}  # every DiT call in training saw 4x4x4 latents
    assert ck.state_dict["patch_embed.weight"].shape == (64, 2 * 2 * 4)


@pytest.mark.parametrize("kind", ["teacher", "student"])
def test_checkpoints_carry_the_codec_bit_for_bit(latent_run, kind):
    run = latent_run[kind]
    for ckpt_dir in (run, run / "selected"):  # the selected weights are a complete checkpoint too
        codec = make_codec(load_checkpoint(ckpt_dir, weights="last").model_config, ckpt_dir)
        assert isinstance(codec, LatentCodec) and codec.image_hw == (32, 32) and codec.stride == 8
        assert codec.meta["kind"] == "codec" and codec.meta["source"] == str(latent_run["codec_src"])
        state = codec.net.state_dict()
        assert set(state) == set(latent_run["codec_weights"])
        for name, t in latent_run["codec_weights"].items():
            torch.testing.assert_close(state[name], t, rtol=0, atol=0)
    assert not latent_run["codec_src"].exists()


@pytest.mark.parametrize("kind", ["teacher", "student"])
def test_world_model_of_a_latent_checkpoint_returns_uint8_frames(latent_run, kind):
    from crcm_robotics.data.store import TrajectoryStore
    from crcm_robotics.runtime import WorldModel

    store = TrajectoryStore(latent_run["store"])
    frames, actions = store.frames(0, 2), store.action()[:2]
    wm = WorldModel.load(latent_run[kind], steps=1 if kind == "student" else 2)
    assert wm.image_shape == (32, 32, 3) and wm.info()["image_shape"] == [32, 32, 3]
    assert wm._frame == (4, 4, 4)  # noise and KV cache live in latent space
    wm.reset(frames, actions)
    frame = wm.step(actions[1])
    assert frame.shape == (32, 32, 3) and frame.dtype == np.uint8
    plans = np.repeat(actions[None, :1], 3, axis=0).repeat(4, axis=1)  # [3, 4, A]
    res = wm.imagine(plans, context=(frames, actions), seed=3, goal=frames[0])
    assert res.frames.shape == (3, 4, 32, 32, 3) and res.frames.dtype == np.uint8 and res.costs.shape == (3,)
    costs_only = wm.imagine(plans, context=(frames, actions), seed=3, goal=frames[0], return_frames="none")
    assert costs_only.frames is None
    np.testing.assert_allclose(costs_only.costs, res.costs, rtol=1e-6, atol=1e-7)  # last frames decoded alone
    last = wm.imagine_tensor(torch.from_numpy(plans), context=(frames, actions), seed=3, decode="last")
    np.testing.assert_array_equal(last.numpy(), res.frames[:, -1:])
    # latent_mse: the final latents against the encoded goal, nothing decoded for costs only; the same
    # rollouts (one noise draw) when frames come back too
    lat = wm.imagine_tensor(torch.from_numpy(plans), context=(frames, actions), seed=3, decode="latent")
    assert lat.shape == (3, 4, 4, 4) and lat.dtype == torch.float32
    assert torch.allclose(wm.codec.decode(lat), torch.from_numpy(res.frames[:, -1]), atol=1)  # uint8 rounding
    goal_latent = wm.codec.encode(torch.from_numpy(frames[0])[None])
    expected = (lat - goal_latent).square().mean(dim=(1, 2, 3)).numpy()
    for mode in ("none", "all"):
        got = wm.imagine(plans, context=(frames, actions), seed=3, goal=frames[0], cost="latent_mse",
                         return_frames=mode)
        np.testing.assert_allclose(got.costs, expected, rtol=1e-5, atol=1e-7)
        assert (got.frames is None) == (mode == "none") and got.best_index == int(np.argmin(expected))
    assert "latent_mse" in wm.info()["costs"]


def test_eval_scores_a_latent_checkpoint_in_pixel_space(latent_run, tmp_path):
    from crcm_robotics.eval.evaluate import evaluate

    result = evaluate(compose_config("eval", [f"ckpt={latent_run['teacher']}", "horizon=3", "context=2",
                                              "steps=2", "solver=ddim", f"out={tmp_path / 'report'}",
                                              "time_batch1=false", "windows_per_episode=1"]))
    assert result["held_out_split"] is True and len(result["psnr"]) == 3
    assert all(0 < p < 100 for p in result["psnr"])
    log = [json.loads(line) for line in (latent_run["root"] / "teacher_log.jsonl").read_text().splitlines()]
    vals = [r["validation"] for r in log if "validation" in r]
    assert len(vals) == 2 and all(np.isfinite(v["psnr_mean"]) and v["psnr_mean"] > 0 for v in vals)


def test_pixel_checkpoints_are_unchanged(tiny_teacher):
    from crcm_robotics.runtime import WorldModel

    ck = load_checkpoint(tiny_teacher)
    assert ck.model_config.codec is None and not (tiny_teacher / CODEC_DIR).exists()
    assert ck.model_config.channels == 3 and ck.model_config.height == 32
    assert isinstance(make_codec(ck.model_config, ck.path), PixelCodec)
    wm = WorldModel.load(tiny_teacher)
    assert wm.image_shape == (32, 32, 3) and wm._frame == (3, 32, 32)


def test_a_codec_of_another_image_size_is_a_one_line_error(latent_run, tmp_path):
    from distill.teacher import train_teacher

    store64 = tmp_path / "s64.zarr"
    write_synthetic_store(store64, lengths=(10, 10), image_size=64)
    codec64 = _train_codec(store64, tmp_path / "codec64", steps=1)
    with pytest.raises(ConfigError, match=rf"^model.codec={codec64} encodes 64x64 frames but store "
                                          rf"{latent_run['store']} has 32x32 frames$"):
        train_teacher(_teacher_cfg(latent_run["store"], tmp_path / "t", f"model.codec={codec64}"))
    teacher_codec = latent_run["teacher"] / CODEC_DIR
    with pytest.raises(ConfigError, match=r"^model: the codec's latent grid 4x4 \(32x32 frames / stride 8\) "
                                          r"is not divisible by patch 8$"):
        train_teacher(_teacher_cfg(latent_run["store"], tmp_path / "t", f"model.codec={teacher_codec}",
                                   "model.patch=8"))
    with pytest.raises(ConfigError, match=r"^model.codec=/nonexistent is not a directory"):
        train_teacher(_teacher_cfg(latent_run["store"], tmp_path / "t", "model.codec=/nonexistent"))
    assert not (tmp_path / "t").exists()  # nothing was trained or written


def test_onnx_export_of_a_latent_student_pairs_with_its_codec(latent_run, tmp_path):
    pytest.importorskip("onnxruntime", reason="needs the [export] extra")
    from crcm_robotics.data.store import TrajectoryStore
    from crcm_robotics.runtime import WorldModel
    from crcm_robotics.runtime.export import run_export

    out = tmp_path / "onnx"
    result = run_export(compose_config("export", [f"ckpt={latent_run['student']}", "format=onnx",
                                                  f"out={out}", "batch=[1]"]))
    assert result["codec"] == str(latent_run["student"] / "selected" / CODEC_DIR)
    assert max(result["max_abs_diff_vs_eager"]["1"].values()) < 1e-4
    store = TrajectoryStore(latent_run["store"])
    frames, actions = store.frames(0, 2), store.action()[:2]
    onnx = WorldModel.load(latent_run["student"], backend="onnx", export_dir=out, max_batch=1)
    eager = WorldModel.load(latent_run["student"], max_batch=1)
    got = [wm.imagine(actions[None, :1].repeat(3, axis=1), context=(frames, actions), seed=0).frames
           for wm in (onnx, eager)]
    assert got[0].shape == (1, 3, 32, 32, 3)
    assert np.abs(got[0].astype(int) - got[1].astype(int)).max() <= 2  # float32 ONNX vs eager, decoded alike


def test_pixel_configs_keep_their_fingerprint_fields():
    """Export folders and compile caches are keyed by ModelConfig.key(): adding ``codec`` (or
    ``action_null``) must not change the key of a pixel model without them (its existing exports would be
    refused as other weights)."""
    import dataclasses

    from crcm_robotics.config import ModelConfig

    pixel = ModelConfig(height=32, width=32)
    added = ("codec", "action_null")
    assert pixel.key() == {k: v for k, v in sorted(dataclasses.asdict(pixel).items()) if k not in added}
    assert ModelConfig(codec=CODEC_DIR).key()["codec"] == CODEC_DIR
    assert ModelConfig(action_null=True).key()["action_null"] is True


def test_training_windows_hold_every_latent_once_and_match_the_encoder(tmp_path):
    """A latent run encodes the store's frames once (a frozen codec): the windows' latents are the encoder's."""
    from crcm_robotics.config import DataConfig
    from crcm_robotics.data.store import TrajectoryStore
    from distill.batches import MemoryWindows

    store = tmp_path / "s.zarr"
    write_synthetic_store(store, lengths=LENGTHS, image_size=32)
    codec = load_codec(_train_codec(store, tmp_path / "codec", steps=1))
    st = TrajectoryStore(store)
    windows = MemoryWindows(DataConfig(path=str(store), window=3), list(range(st.num_episodes)),
                            st.stats()["action"], codec, torch.device("cpu"), st)
    assert windows.latents is not None and windows.latents.shape[0] == st.num_frames
    batch = windows.sample(4, seed=0, step=0)
    with torch.no_grad():
        expected = codec.encode(batch["frames"])
    torch.testing.assert_close(batch["x"], expected, rtol=1e-4, atol=1e-4)
    pixels = MemoryWindows(DataConfig(path=str(store), window=3), [0], st.stats()["action"], PixelCodec(),
                           torch.device("cpu"), st)
    assert pixels.latents is None  # pixels: nothing to precompute
