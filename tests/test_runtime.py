"""WorldModel (crcm_robotics.runtime): shapes, conventions, determinism, imagine isolation, validation, backends.

All on the tiny checkpoint of ``tiny_teacher`` (32×32, 2 layers), relabelled as a
2-step consistency student where a student is needed (same network). GPU-only
checks are marked ``gpu`` and skipped without CUDA.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os

import numpy as np
import pytest
import torch

from crcm_robotics.model.checkpoint import load_checkpoint
from crcm_robotics.model.sampler import encode_context, rollout
from crcm_robotics.runtime import BackendUnavailable, ImagineResult, InputError, WorldModel

H = W = 32
A = 2


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


@pytest.fixture(scope="module")
def raw(tiny_student):
    """Context frames, raw (un-normalized) context actions and action sequences near the data's stats."""
    stats = load_checkpoint(tiny_student).stats["action"]
    mean, std = np.asarray(stats["mean"]), np.asarray(stats["std"])
    rng = np.random.default_rng(0)

    def acts(*shape):
        return (mean + std * rng.standard_normal((*shape, A))).astype(np.float32)

    frames = rng.integers(0, 256, (2, H, W, 3), dtype=np.uint8)
    return {"frames": frames, "ctx_actions": acts(2), "actions": acts(4, 3), "steps": acts(3)}


@pytest.fixture(scope="module")
def wm(tiny_student) -> WorldModel:
    return WorldModel.load(tiny_student, seed=0)


def test_load_exposes_model_facts(wm, tiny_student):
    assert wm.image_shape == (H, W, 3) and wm.action_dim == A and wm.context_frames == 3
    assert (wm.kind, wm.steps, wm.backend) == ("student", 2, "eager")
    info = wm.info()
    assert info == {
        "image_shape": [H, W, 3], "action_dim": A, "context_frames": 3, "kind": "student", "steps": 2,
        "sampler": {"kind": "consistency", "steps": 2, "solver": None}, "network_passes_per_frame": 3,
        "backend": "eager", "backend_status": "ok", "device": "cpu", "dtype": "float32", "max_batch": 64,
        "checkpoint": str(tiny_student), "frame_skip": 1, "env_action_dim": A,
        "costs": ["final_mse", "pooled_mse", "path_mse", "latent_mse"],
    }
    json.dumps(info)  # plain data


def test_reset_step_imagine_shapes_and_goal_cost(wm, raw):
    wm.reset(raw["frames"], raw["ctx_actions"])
    frame = wm.step(raw["steps"][0])
    assert frame.shape == (H, W, 3) and frame.dtype == np.uint8
    res = wm.imagine(raw["actions"])
    assert isinstance(res, ImagineResult)
    assert res.frames.shape == (4, 3, H, W, 3) and res.frames.dtype == np.uint8
    assert res.costs is None and res.latency_ms > 0
    goal = raw["frames"][0]
    res = wm.imagine(raw["actions"], goal=goal)
    expected = (((res.frames[:, -1].astype(np.float64) - goal) / 255.0) ** 2).mean(axis=(1, 2, 3))
    assert res.costs.dtype == np.float32 and res.costs.shape == (4,)
    np.testing.assert_allclose(res.costs, expected, rtol=1e-5)


def test_step_follows_the_sampler_rollout(tiny_student, raw):
    """step() == the sampler's rollout from the encoded context with the same noise (conventions, stats)."""
    wm = WorldModel.load(tiny_student, seed=5)
    wm.reset(raw["frames"], raw["ctx_actions"])
    got = np.stack([wm.step(a) for a in raw["steps"]])

    model = wm.model
    x = wm.codec.encode(torch.from_numpy(raw["frames"]))[None]
    cache = model.new_cache(1, "cpu")
    with torch.no_grad():
        encode_context(model, cache, x, torch.from_numpy(wm.norm.normalize(raw["ctx_actions"]))[None])
        gen = torch.Generator().manual_seed(5)
        pred = rollout(model, cache, torch.from_numpy(wm.norm.normalize(raw["steps"]))[None], wm.sampler,
                       x[:, -1:], generator=gen)
    np.testing.assert_array_equal(got, wm.codec.decode(pred[0]).numpy())


def test_same_seed_same_frames_other_seed_differs(tiny_student, raw):
    def run(seed):
        m = WorldModel.load(tiny_student, seed=seed)
        m.reset(raw["frames"], raw["ctx_actions"])
        return np.stack([m.step(a) for a in raw["steps"]]), m.imagine(raw["actions"]).frames

    (s1, i1), (s2, i2), (s3, i3) = run(7), run(7), run(8)
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_array_equal(i1, i2)
    assert (s1 != s3).any() and (i1 != i3).any()


def test_imagine_with_context_equals_imagine_after_reset(wm, raw):
    wm.reset(raw["frames"], raw["ctx_actions"])
    after_reset = wm.imagine(raw["actions"], seed=3, goal=raw["frames"][1])
    given = wm.imagine(raw["actions"], context=(raw["frames"], raw["ctx_actions"]), seed=3, goal=raw["frames"][1])
    np.testing.assert_array_equal(after_reset.frames, given.frames)
    np.testing.assert_array_equal(after_reset.costs, given.costs)


def test_imagine_does_not_disturb_the_stream(tiny_student, raw):
    a, b = WorldModel.load(tiny_student, seed=1), WorldModel.load(tiny_student, seed=1)
    for m in (a, b):
        m.reset(raw["frames"], raw["ctx_actions"])
    first = a.step(raw["steps"][0]), b.step(raw["steps"][0])
    a.imagine(raw["actions"])  # from the stream's state
    a.imagine(raw["actions"][:1], context=(raw["frames"][:1], raw["ctx_actions"][:1]))
    rest_a = [a.step(x) for x in raw["steps"][1:]]
    rest_b = [b.step(x) for x in raw["steps"][1:]]
    np.testing.assert_array_equal(first[0], first[1])
    np.testing.assert_array_equal(np.stack(rest_a), np.stack(rest_b))


def test_imagine_continues_the_stream(tiny_student, raw):
    """imagine(context=None) after steps rolls on from the newest streamed frame, like further steps would."""
    a, b = WorldModel.load(tiny_student, seed=2), WorldModel.load(tiny_student, seed=2)
    for m in (a, b):
        m.reset(raw["frames"], raw["ctx_actions"])
        m.step(raw["steps"][0])
    res = a.imagine(raw["steps"][None, 1:], seed=11)
    b._stream_gen.manual_seed(11)  # imagine's noise, drawn row-batch 1 = the stream's draw order
    np.testing.assert_array_equal(res.frames[0], np.stack([b.step(x) for x in raw["steps"][1:]]))


def test_imagine_chunks_by_max_batch(tiny_student, raw):
    m = WorldModel.load(tiny_student, max_batch=3)
    res = m.imagine(np.concatenate([raw["actions"]] * 2), context=(raw["frames"], raw["ctx_actions"]))
    assert res.frames.shape == (8, 3, H, W, 3)


def test_imagine_skips_the_last_frames_cache_write(tiny_student, raw, monkeypatch):
    """Each rollout's last frame is denoised without its clean-frame pass (nothing reads it back), per chunk."""
    from crcm_robotics.model import sampler

    m = WorldModel.load(tiny_student, max_batch=3)
    writes = []
    real = sampler.write_frame
    monkeypatch.setattr(sampler, "write_frame", lambda model, cache, x0, *rest: writes.append(len(x0)) or real(
        model, cache, x0, *rest))
    actions = np.concatenate([raw["actions"]] * 2)  # 8 rollouts of 3 frames, chunks of 3, 3, 2
    m.imagine(actions, context=(raw["frames"], raw["ctx_actions"]), seed=4)
    assert writes == [3, 3, 3, 3, 2, 2]  # 2 of the 3 frames written, per chunk


def test_imagine_encodes_a_repeated_context_once(tiny_student, raw, monkeypatch):
    """A planner's rounds bring the same context: it is encoded once; a changed context is encoded again and
    gives what a fresh model gives for it."""
    m = WorldModel.load(tiny_student)
    encoded = []
    real = m._backend.encode
    monkeypatch.setattr(m._backend, "encode", lambda cache, x, a: encoded.append(x.shape[1]) or real(cache, x, a))
    ctx = (raw["frames"], raw["ctx_actions"])
    first = m.imagine(raw["actions"], context=ctx, seed=5).frames
    again = m.imagine(raw["actions"], context=(ctx[0].copy(), ctx[1].copy()), seed=5).frames
    np.testing.assert_array_equal(first, again)
    assert encoded == [2]
    other = ctx[0].copy()
    other[1, 0, 0] += 1  # one pixel of the newest frame
    changed = m.imagine(raw["actions"], context=(other, ctx[1]), seed=5).frames
    assert encoded == [2, 2]
    fresh = WorldModel.load(tiny_student).imagine(raw["actions"], context=(other, ctx[1]), seed=5).frames
    np.testing.assert_array_equal(changed, fresh)
    m.imagine(raw["actions"], context=(ctx[0][1:], ctx[1][1:]), seed=5)  # fewer frames: encoded again
    assert encoded == [2, 2, 1]


def test_a_failed_context_encode_is_not_reused(tiny_student, raw, monkeypatch):
    """An encode that fails part-way (after a good one) leaves nothing marked cached: the next query with the
    same context encodes it again and answers as a fresh model does."""
    m = WorldModel.load(tiny_student)
    ctx, other = (raw["frames"], raw["ctx_actions"]), (raw["frames"][::-1].copy(), raw["ctx_actions"])
    m.imagine(raw["actions"], context=other, seed=6)
    real = m._backend.encode

    def broken(cache, x, a):
        real(cache, x, a)  # the cache is overwritten, then the call fails
        raise RuntimeError("device lost mid-encode")

    monkeypatch.setattr(m._backend, "encode", broken)
    with pytest.raises(RuntimeError, match="mid-encode"):
        m.imagine(raw["actions"], context=ctx, seed=6)
    monkeypatch.setattr(m._backend, "encode", real)
    again = m.imagine(raw["actions"], context=other, seed=6).frames
    fresh = WorldModel.load(tiny_student).imagine(raw["actions"], context=other, seed=6).frames
    np.testing.assert_array_equal(again, fresh)


def test_float64_actions_are_accepted(wm, raw):
    wm.reset(raw["frames"], raw["ctx_actions"].astype(np.float64))
    assert wm.step(raw["steps"][0].astype(np.float64)).shape == (H, W, 3)


@pytest.mark.parametrize("call, error, message", [
    (lambda m, r: m.reset(r["frames"].astype(np.float32), r["ctx_actions"]), InputError,
     "context_frames must be uint8 [K, 32, 32, 3] (RGB pixels 0-255); got dtype float32"),
    (lambda m, r: m.reset(r["frames"][0], r["ctx_actions"]), InputError,
     "context_frames must have shape uint8 [K, 32, 32, 3]; got (32, 32, 3)"),
    (lambda m, r: m.reset(np.zeros((2, 64, 64, 3), np.uint8), r["ctx_actions"]), InputError,
     "context_frames are 64x64 images; the model takes 32x32"),
    (lambda m, r: m.reset(np.zeros((4, 32, 32, 3), np.uint8), np.zeros((4, 2), np.float32)), InputError,
     "context_frames has 4 frames; expected 1 to 3 (the model's KV cache window)"),
    (lambda m, r: m.reset(np.zeros((0, 32, 32, 3), np.uint8), np.zeros((0, 2), np.float32)), InputError,
     "context_frames has 0 frames; expected 1 to 3"),
    (lambda m, r: m.reset(r["frames"], r["ctx_actions"][:1]), InputError,
     "context_actions has 1 rows but context_frames has 2 frames; expected one action"),
    (lambda m, r: m.reset(r["frames"], np.array([[1.0, np.inf], [0.0, 0.0]])), InputError,
     "context_actions[0, 1] is inf; every action value must be finite"),
    (lambda m, r: m.reset(torch.zeros(2, 32, 32, 3, dtype=torch.uint8), r["ctx_actions"]), InputError,
     "context_frames must be a numpy array uint8 [K, 32, 32, 3]; got a torch tensor"),
    (lambda m, r: m.step(np.zeros(3, np.float32)), InputError,
     "action has action dim 3; the model takes action_dim 2"),
    (lambda m, r: m.step(np.zeros(2, np.int64)), InputError,
     "action must be floating point (float32 or float64) [A]; got dtype int64"),
    (lambda m, r: m.step(np.zeros((1, 2), np.float32)), InputError,
     "action must have shape [A] (1 dims); got (1, 2)"),
    (lambda m, r: m.imagine(np.zeros((4, 2), np.float32)), InputError,
     "actions must have shape [N, Hz, A] (3 dims); got (4, 2)"),
    (lambda m, r: m.imagine(np.zeros((0, 3, 2), np.float32)), InputError,
     "actions has shape (0, 3, 2); every dim of [N, Hz, A] must be ≥ 1"),
    (lambda m, r: m.imagine(np.where(np.arange(12).reshape(2, 3, 2) == 7, np.nan, 0.0)), InputError,
     "actions[1, 0, 1] is nan; every action value must be finite"),
    (lambda m, r: m.imagine(r["actions"], goal=np.zeros((16, 16, 3), np.uint8)), InputError,
     "goal is a 16x16 image; the model takes 32x32"),
    (lambda m, r: m.imagine(r["actions"], goal=np.zeros((32, 32, 3), np.float32)), InputError,
     "goal must be uint8 [32, 32, 3] (RGB pixels 0-255); got dtype float32"),
    (lambda m, r: m.imagine(r["actions"], context=r["frames"]), InputError,
     "context must be a (frames, actions) pair; got ndarray"),
    (lambda m, r: m.imagine(r["actions"], context=(r["frames"], r["ctx_actions"][:, :1])), InputError,
     "context[1] (actions) has action dim 1; the model takes action_dim 2"),
])
def test_bad_inputs_are_named(wm, raw, call, error, message):
    wm.reset(raw["frames"], raw["ctx_actions"])
    with pytest.raises(error) as info:
        call(wm, raw)
    assert message in str(info.value)


def test_step_and_imagine_before_reset(tiny_student, raw):
    m = WorldModel.load(tiny_student)
    with pytest.raises(RuntimeError, match=r"step\(\) called before reset\(\): call reset\(context_frames, "):
        m.step(raw["steps"][0])
    with pytest.raises(RuntimeError, match=r"imagine\(\) without context needs a stream: call reset"):
        m.imagine(raw["actions"])


@pytest.mark.parametrize("kwargs, message", [
    ({"backend": "tpu"}, "backend 'tpu' unknown; expected one of eager, cuda_graph, compile, onnx, tensorrt"),
    ({"dtype": "bfloat16"}, "dtype torch.bfloat16 needs a CUDA device; on cpu the model runs in float32"),
    ({"dtype": "int8"}, "dtype 'int8' unknown"),
    ({"steps": 5}, "student steps must be one of [1, 2, 3, 4], got 5"),
    ({"max_batch": 0}, "max_batch must be ≥ 1, got 0"),
])
def test_bad_load_arguments(tiny_student, kwargs, message):
    with pytest.raises(ValueError) as info:
        WorldModel.load(tiny_student, **kwargs)
    assert message in str(info.value)


def test_runtime_imports_no_optional_package(tiny_student):
    """Loading an eager WorldModel needs neither onnxruntime/onnx, torch-tensorrt, hydra nor rclpy."""
    import subprocess
    import sys

    code = (
        "import sys, json; from crcm_robotics.runtime import WorldModel; "
        f"WorldModel.load({str(tiny_student)!r}); "
        "heavy = ('rclpy', 'onnx', 'onnxruntime', 'tensorrt', 'torch_tensorrt', 'hydra', 'omegaconf'); "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []


def test_steps_override_changes_the_sampler(tiny_student):
    m = WorldModel.load(tiny_student, steps=1)
    assert m.steps == 1 and m.info()["network_passes_per_frame"] == 2


def test_runtime_samples_at_the_students_own_mid_times(tiny_student, raw, wm, tmp_path):
    ck = load_checkpoint(tiny_student)
    ck.meta["sampler"] = {**ck.meta["sampler"], "mid_times": [0.4]}  # as `student_mid_times=[0.4]` saves it
    m = WorldModel.load(ck)
    assert m.info()["sampler"] == {"kind": "consistency", "steps": 2, "solver": None, "mid_times": [0.4]}
    assert wm.info()["sampler"] == {"kind": "consistency", "steps": 2, "solver": None}
    assert not np.allclose(_stream(m, raw), _stream(wm, raw))  # same weights and noise, other times


# --- backends on CPU ---------------------------------------------------------------------------------


def _stream(m: WorldModel, raw) -> np.ndarray:
    m.reset(raw["frames"], raw["ctx_actions"], seed=4)
    return np.stack([m.step(a) for a in raw["steps"]])


def test_cuda_graph_on_cpu_falls_back_to_eager_with_a_log_line(tiny_student, raw, wm, caplog):
    with caplog.at_level(logging.WARNING, logger="crcm_robotics.runtime"):
        m = WorldModel.load(tiny_student, backend="cuda_graph")
    assert "cuda_graph backend: device cpu has no CUDA graphs; falling back to eager" in caplog.text
    assert m.backend == "cuda_graph" and m.info()["backend_status"].startswith("eager fallback: device cpu")
    np.testing.assert_array_equal(_stream(m, raw), _stream(wm, raw))


def test_compile_matches_eager(tiny_student, raw, wm):
    """torch.compile traces the step (cache mutation included) correctly: aot_eager skips Inductor's codegen."""
    m = WorldModel.load(tiny_student, backend="compile", compiler="aot_eager")
    np.testing.assert_array_equal(_stream(m, raw), _stream(wm, raw))
    ctx = (raw["frames"], raw["ctx_actions"])
    np.testing.assert_array_equal(m.imagine(raw["actions"][:1], context=ctx, seed=1).frames,  # batch 1: no recompile
                                  wm.imagine(raw["actions"][:1], context=ctx, seed=1).frames)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("CRCM_SLOW_TESTS"),
                    reason="Inductor compiles the step in ~50 s on 2 CPU cores (cold cache); "
                           "set CRCM_SLOW_TESTS=1 to run it")
def test_compile_inductor_matches_eager_on_cpu(tiny_student, raw, wm):
    m = WorldModel.load(tiny_student, backend="compile")
    got, ref = _stream(m, raw), _stream(wm, raw)
    assert (np.abs(got.astype(int) - ref).max() <= 1) and (got == ref).mean() > 0.99


@pytest.mark.skipif(importlib.util.find_spec("torch_tensorrt") is not None,
                    reason="torch_tensorrt is installed; this checks the message when it is missing")
def test_tensorrt_missing_names_the_package(tiny_student):
    with pytest.raises(BackendUnavailable, match="backend tensorrt needs the torch_tensorrt package"):
        WorldModel.load(tiny_student, backend="tensorrt")


def test_bench_prints_figures_per_backend(tiny_student, tmp_path, capsys):
    from crcm_robotics.cli import main

    out = tmp_path / "bench.json"
    assert main(["bench", str(tiny_student), "backends=[eager,onnx]", "stream_frames=2", "planner_rollouts=3",
                 "planner_horizon=2", "warmup=0", "repeats=1", "teacher_steps=1", f"out={out}"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    result = json.loads(line)
    assert json.loads(out.read_text()) == result
    assert result["sampler"] == {"kind": "consistency", "steps": 2, "solver": None}
    assert result["device"].startswith("cpu") and result["torch"] == torch.__version__
    for name in ("eager", "onnx"):
        r = result["backends"][name]
        assert r["status"] == "ok" and r["stream_ms_per_frame"] > 0 and r["planner_ms"] > 0
        assert r["planner_costs_ms"] > 0 and r["planner_latent_costs_ms"] > 0
        assert r["stream_fps"] == pytest.approx(1e3 / r["stream_ms_per_frame"], rel=1e-2)
    tvs = result["teacher_vs_student"]
    assert tvs["source"].startswith("same network") and tvs["teacher"]["sampler"]["kind"] == "ode"
    assert tvs["teacher"]["network_passes_per_frame"] == 2 and tvs["speedup"] > 0


# --- GPU ---------------------------------------------------------------------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("backend", ["cuda_graph", "compile"])
def test_gpu_backend_matches_eager(tiny_student, raw, backend):
    """float32 on GPU: the captured (and compiled) step reproduces eager; capture needs no host sync."""
    ref = WorldModel.load(tiny_student, device="cuda", dtype="float32")
    m = WorldModel.load(tiny_student, device="cuda", dtype="float32", backend=backend)
    got, want = _stream(m, raw), _stream(ref, raw)
    assert m.info()["backend_status"] == "ok"
    assert np.abs(got.astype(int) - want).max() <= 1 and (got == want).mean() > 0.99
    if backend == "cuda_graph":  # a rollout's last frame replays the captured step without its cache write
        assert m._backend.stepper(m._backend.bucket(3), "imagine").denoise_graph is not None
    ctx = (raw["frames"], raw["ctx_actions"])
    a = m.imagine(raw["actions"][:3], context=ctx, seed=1).frames
    b = ref.imagine(raw["actions"][:3], context=ctx, seed=1).frames
    assert np.abs(a.astype(int) - b).max() <= 1 and (a == b).mean() > 0.99


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("backend", ["cuda_graph", "compile"])
def test_gpu_backend_matches_eager_with_action_guidance(tiny_guided_teacher, raw, backend):
    """Guided sampling (two passes per denoising step, the second with the null action) captured and compiled
    like any step: the same frames as eager."""
    ref = WorldModel.load(tiny_guided_teacher, device="cuda", dtype="float32", steps=2, guidance=2.0)
    m = WorldModel.load(tiny_guided_teacher, device="cuda", dtype="float32", backend=backend, steps=2,
                        guidance=2.0)
    assert m.info()["backend_status"] == "ok" and m.info()["sampler"]["guidance"] == 2.0
    ctx = (raw["frames"], raw["ctx_actions"])
    a = m.imagine(raw["actions"][:3], context=ctx, seed=1).frames
    b = ref.imagine(raw["actions"][:3], context=ctx, seed=1).frames
    assert np.abs(a.astype(int) - b).max() <= 1 and (a == b).mean() > 0.99


@pytest.mark.gpu
@needs_cuda
def test_gpu_bf16_cuda_graph_runs_close_to_float32(tiny_student, raw):
    m = WorldModel.load(tiny_student, device="cuda", backend="cuda_graph")
    ref = WorldModel.load(tiny_student, device="cuda", dtype="float32")
    assert m.info()["dtype"] in ("bfloat16", "float16") and m.info()["backend_status"] == "ok"
    got, want = _stream(m, raw), _stream(ref, raw)
    assert np.abs(got.astype(float) - want).mean() < 8.0  # mean abs pixel error of a 3-frame rollout
