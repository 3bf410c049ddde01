"""The latent frame codec: shapes, stride checks, its loss, latent statistics, tiny training + reload."""

from __future__ import annotations

import json

import pytest
import torch

from crcm_robotics.config import CodecConfig, ConfigError
from crcm_robotics.data.synthetic import write_synthetic_store
from crcm_robotics.model.codec import CodecCheckpointError, FrameAutoencoder, LatentCodec, load_codec

TINY = CodecConfig(height=32, width=48, latent_channels=4, base_channels=8, channel_mult=(1, 2, 2),
                   blocks_per_level=1)


def test_round_trip_shapes_keep_leading_dims():
    torch.manual_seed(0)
    codec = LatentCodec(FrameAutoencoder(TINY).eval())
    frames = torch.randint(0, 256, (2, 3, 32, 48, 3), dtype=torch.uint8)
    with torch.no_grad():
        z = codec.encode(frames)
        back = codec.decode(z)
    assert TINY.stride == 8 and codec.channels == 4
    assert z.shape == (2, 3, 4, 4, 6) and z.dtype == torch.float32
    assert back.shape == frames.shape and back.dtype == torch.uint8
    with torch.no_grad():  # frames are encoded independently: batching does not change a frame's latent
        torch.testing.assert_close(codec.encode(frames[1, 2:3])[0], z[1, 2], rtol=1e-4, atol=1e-4)


def test_bad_sizes_are_one_sentence():
    with pytest.raises(ConfigError, match=r"^codec: image 60x48 is not divisible by the codec's stride 8$"):
        CodecConfig(height=60, width=48).validate()
    with pytest.raises(ConfigError, match=r"^codec: image 32x48 is not divisible by the codec's stride 64$"):
        FrameAutoencoder(CodecConfig(height=32, width=48, channel_mult=(1,) * 6))
    codec = LatentCodec(FrameAutoencoder(TINY))
    with pytest.raises(ValueError, match=r"^frames are 32x32; this codec encodes 32x48 frames$"):
        codec.encode(torch.zeros(1, 32, 32, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"^frames must be uint8, got torch.float32$"):
        codec.encode(torch.zeros(1, 32, 48, 3))
    with pytest.raises(ValueError, match=r"^latents must be \[\.\.\., 4, 4, 6\], got shape \(1, 4, 8, 8\)$"):
        codec.decode(torch.zeros(1, 4, 8, 8))


def test_edge_loss_sees_blur_that_mse_barely_does():
    from distill.codec import edge_loss

    x = torch.zeros(1, 3, 8, 8)
    x[..., :, 4:] = 1.0  # one vertical edge of height 1 over 8 rows
    assert float(edge_loss(x, x)) == 0.0
    # a flat image has no gradient: the loss is half the mean |∂x/∂w| = 0.5 · (8 rows · 1) / (8 · 7)
    assert float(edge_loss(torch.zeros_like(x), x)) == pytest.approx(0.5 * 8 / 56)
    blurred = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    assert float(edge_loss(blurred, x)) > 0.05


def test_latent_statistics_make_unit_space():
    torch.manual_seed(0)
    net = FrameAutoencoder(TINY).eval()
    frames = torch.randint(0, 256, (16, 32, 48, 3), dtype=torch.uint8)
    with torch.no_grad():
        net.set_latent_stats(net.encoder(frames.movedim(-1, 1).float() / 127.5 - 1.0))
        z = LatentCodec(net).encode(frames)
    per_channel = z.transpose(0, 1).flatten(1)
    torch.testing.assert_close(per_channel.mean(1), torch.zeros(4), atol=1e-4, rtol=0)
    torch.testing.assert_close(per_channel.std(1), torch.ones(4), atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def trained_codec(tmp_path_factory):
    """8 steps of ``preset=arm_tiny`` on a 32x32 synthetic store (4 episodes, one held out)."""
    from crcm_robotics.conf import compose_config
    from distill.codec import train_codec

    root = tmp_path_factory.mktemp("codec")
    write_synthetic_store(root / "s.zarr", lengths=(10, 10, 10, 10), image_size=32)
    cfg = compose_config("config", ["preset=arm_tiny", f"data.path={root / 's.zarr'}",
                                    f"train.out={root / 'ckpt'}", "train.steps=8", "train.progress=false",
                                    "data.val_fraction=0.25", "train.device=cpu"], "crcm_robotics.conf.codec")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result, final = train_codec(cfg)
    finally:
        torch.set_num_threads(n)
    return root, result, final


def test_tiny_training_run_writes_a_loadable_checkpoint(trained_codec):
    from crcm_robotics.data.store import TrajectoryStore
    from distill.codec import held_out_psnr

    root, result, final = trained_codec
    ckpt = root / "ckpt"
    assert result.steps == 8 and all(torch.isfinite(torch.tensor(v)) for v in result.last_metrics.values())
    assert {"config.yaml", "meta.json", "stats.json", "model.safetensors.index.json", "train_state.pt"} <= {
        p.name for p in ckpt.iterdir()}
    meta = json.loads((ckpt / "meta.json").read_text())
    assert meta["kind"] == "codec" and meta["stride"] == 8 and meta["latent_shape"] == [4, 4, 4]
    assert meta["split"]["val"] and meta["metrics"] == final
    assert final["val_frames"] == 10 and 5.0 < final["val_psnr"] < 60.0

    codec = load_codec(ckpt)  # the runtime side: no distill import needed
    assert codec.net.latent_scale.ne(1.0).any()  # latent statistics travelled in the checkpoint
    store = TrajectoryStore(root / "s.zarr")
    val = torch.from_numpy(store.frames(*store.episode_bounds(meta["split"]["val"][0])))
    assert held_out_psnr(codec, val)["val_psnr"] == pytest.approx(final["val_psnr"], abs=1e-3)


def test_training_rejects_a_store_the_stride_does_not_divide(tmp_path):
    from crcm_robotics.conf import compose_config
    from distill.codec import train_codec

    write_synthetic_store(tmp_path / "s.zarr", lengths=(4, 4), image_size=12)
    cfg = compose_config("config", ["preset=arm_tiny", f"data.path={tmp_path / 's.zarr'}",
                                    f"train.out={tmp_path / 'ckpt'}"], "crcm_robotics.conf.codec")
    with pytest.raises(ConfigError, match=r"^codec: image 12x12 is not divisible by the codec's stride 8$"):
        train_codec(cfg)
    assert not (tmp_path / "ckpt").exists()


def test_load_codec_refuses_other_checkpoints(trained_codec, tmp_path):
    import shutil

    root, _, _ = trained_codec
    other = tmp_path / "teacher"
    shutil.copytree(root / "ckpt", other)
    meta = json.loads((other / "meta.json").read_text())
    (other / "meta.json").write_text(json.dumps({**meta, "kind": "teacher"}))
    with pytest.raises(CodecCheckpointError, match="is a 'teacher' checkpoint, expected a codec"):
        load_codec(other)
    with pytest.raises(CodecCheckpointError, match="has no config.yaml"):
        load_codec(tmp_path)


def test_resume_continues_exactly(trained_codec, tmp_path):
    """4 steps, then ``train.resume`` to 8, ends with the weights of the uninterrupted 8-step run."""
    from crcm_robotics.conf import compose_config
    from distill.codec import train_codec

    root, _, final = trained_codec
    common = ["preset=arm_tiny", f"data.path={root / 's.zarr'}", "train.progress=false",
              "data.val_fraction=0.25", "train.device=cpu", f"train.out={tmp_path / 'ckpt'}"]
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_codec(compose_config("config", [*common, "train.steps=4"], "crcm_robotics.conf.codec"))
        resume = [*common, "train.steps=8", f"train.resume={tmp_path / 'ckpt'}"]
        _, resumed = train_codec(compose_config("config", resume, "crcm_robotics.conf.codec"))
    finally:
        torch.set_num_threads(n)
    full, part = load_codec(root / "ckpt").net.state_dict(), load_codec(tmp_path / "ckpt").net.state_dict()
    assert full.keys() == part.keys()
    for name in full:
        torch.testing.assert_close(part[name], full[name], rtol=0, atol=0, msg=name)
    assert resumed == final


def test_half_precision_codec_decodes_close_to_float32_and_keeps_net_float32():
    """``run_in(bfloat16)`` runs copies of the networks in bf16 (the float32 ones stay for saving); pixels
    decoded from the same latents stay within a few grey levels, and latents come back as float32."""
    torch.manual_seed(0)
    net = FrameAutoencoder(TINY).eval().requires_grad_(False)
    codec = LatentCodec(net)
    frames = torch.randint(0, 256, (3, 32, 48, 3), dtype=torch.uint8)
    with torch.no_grad():
        z = codec.encode(frames)
        full = codec.decode(z)
        codec.run_in(torch.bfloat16)
        half = codec.decode(z)
        z_half = codec.encode(frames)
    assert codec.compute_dtype == torch.bfloat16 and z_half.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in net.parameters())
    assert (half.int() - full.int()).abs().float().mean() < 4.0
    assert (z_half - z).abs().max() < 0.2 * z.abs().max()
    with torch.no_grad():  # back to float32: the net's own modules, bit for bit
        assert torch.equal(codec.run_in(torch.float32).decode(z), full)
    with pytest.raises(ValueError, match=r"^codec compute dtype must be float32, float16 or bfloat16, got "
                                         r"torch.int8$"):
        codec.run_in(torch.int8)


def random_latent_student(tmp_path):
    """A random-weight 2-step ``arm_tiny`` student carrying a random 32×32 codec (4 × 5 actions per frame)."""
    from crcm_robotics.runtime.bench import random_student_checkpoint

    torch.manual_seed(0)
    codec_cfg = CodecConfig(height=32, width=32, latent_channels=4, base_channels=8, channel_mult=(1, 2, 2),
                            blocks_per_level=1)
    LatentCodec(FrameAutoencoder(codec_cfg).eval()).save(tmp_path / "codec")
    return random_student_checkpoint(tmp_path / "student", preset="arm_tiny", codec=tmp_path / "codec",
                                     env_action_dim=4, frame_skip=5)


def test_random_latent_student_carries_its_codec_and_answers_costs_only(tmp_path):
    """The latency checkpoint of a latent model (``random_student_checkpoint(codec=…)``) loads in WorldModel,
    decodes frames of the codec's size and reports the codec's compute dtype (float32 on the CPU)."""
    import numpy as np

    from crcm_robotics.runtime.world_model import WorldModel

    ckpt = random_latent_student(tmp_path)
    wm = WorldModel.load(ckpt, device="cpu", max_batch=4)
    assert wm.image_shape == (32, 32, 3) and wm.action_dim == 20 and wm.frame_skip == 5
    assert wm.info()["codec_dtype"] == "float32"
    ctx = (np.zeros((1, 32, 32, 3), np.uint8), np.zeros((1, 20), np.float32))
    res = wm.imagine(np.zeros((3, 2, 20), np.float32), context=ctx, goal=ctx[0][0], return_frames="none")
    assert res.frames is None and res.costs.shape == (3,)
    assert wm.imagine(np.zeros((3, 2, 20), np.float32), context=ctx).frames.shape == (3, 2, 32, 32, 3)


def test_compiled_decoder_decodes_what_the_eager_one_does_and_leaves_the_net_alone():
    """``compile_decoder`` (the ``compile`` backend's, here through Dynamo with the ``aot_eager`` backend so the
    test needs no C++ toolchain time) decodes the same frames; the float32 network used for saving stays eager."""
    torch.manual_seed(0)
    net = FrameAutoencoder(TINY).eval().requires_grad_(False)
    codec = LatentCodec(net)
    z = torch.randn(2, 4, 4, 6)
    with torch.no_grad():
        eager = codec.decode(z)
        compiled = codec.compile_decoder(backend="aot_eager").decode(z)
    assert torch.equal(compiled, eager)
    assert codec._decoder is not net.decoder and not hasattr(net.decoder, "_orig_mod")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("backend", ["cuda_graph", "compile"])
def test_gpu_latent_student_decodes_in_float16_close_to_float32(tmp_path, backend):
    """On CUDA a latent checkpoint's codec runs in float16 (compiled on the ``compile`` backend, at the padded
    batch sizes the step runs at): imagined frames stay within a grey level or two of an all-float32 run."""
    import numpy as np

    from crcm_robotics.runtime.world_model import WorldModel

    ckpt = random_latent_student(tmp_path)
    ref = WorldModel.load(ckpt, device="cuda", dtype="float32", codec_dtype="float32", max_batch=4)
    m = WorldModel.load(ckpt, device="cuda", dtype="float32", backend=backend, max_batch=4)
    assert m.info()["codec_dtype"] == "float16" and m.info()["backend_status"] == "ok"
    rng = np.random.default_rng(0)
    ctx = (rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8), rng.standard_normal((2, 20)).astype(np.float32))
    actions = rng.standard_normal((3, 2, 20)).astype(np.float32)  # 3 rows: a padded bucket of 4
    got = m.imagine(actions, context=ctx, seed=1).frames.astype(int)
    want = ref.imagine(actions, context=ctx, seed=1).frames.astype(int)
    assert got.shape == (3, 2, 32, 32, 3) and np.abs(got - want).mean() < 2.0
    costs = m.imagine(actions, context=ctx, goal=ctx[0][-1], return_frames="none", seed=1).costs
    assert costs.shape == (3,) and np.isfinite(costs).all()



def test_a_bad_codec_dtype_is_one_line_naming_the_setting(tmp_path):
    from crcm_robotics.runtime.world_model import WorldModel

    ckpt = random_latent_student(tmp_path)
    with pytest.raises(ValueError, match=r"^codec_dtype: dtype 'int8' unknown; expected one of "):
        WorldModel.load(ckpt, device="cpu", codec_dtype="int8")
    with pytest.raises(ValueError, match=r"^codec_dtype: dtype torch.float16 needs a CUDA device"):
        WorldModel.load(ckpt, device="cpu", codec_dtype="float16")
