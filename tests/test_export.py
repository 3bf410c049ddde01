"""Exported per-frame step: eager vs onnxruntime parity on CPU, the export folder, `crcm export`, torch.export.

The tiny checkpoint of ``tiny_teacher`` relabelled as a 2-step consistency student.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime", reason="needs the [export] extra (onnxruntime)")
onnx = pytest.importorskip("onnx", reason="needs the [export] extra (onnx)")

from crcm_robotics.model.checkpoint import build_model, load_checkpoint  # noqa: E402
from crcm_robotics.model.sampler import SamplerSpec, encode_context  # noqa: E402
from crcm_robotics.runtime import WorldModel  # noqa: E402
from crcm_robotics.runtime.backends import Precision, make_backend  # noqa: E402
from crcm_robotics.runtime.export import ExportError, ensure_exported, step_file  # noqa: E402
from crcm_robotics.runtime.step_module import StepModule, example_inputs, export_copy  # noqa: E402

H = W = 32


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


@pytest.fixture(scope="module")
def student(tiny_student) -> Path:
    return tiny_student


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("onnx")


def test_onnx_step_matches_eager_over_a_rollout(student, export_dir):
    """Float outputs (x0 and the KV cache) of a 5-frame rollout — past the 3-frame ring wrap — agree to 1e-4."""
    model = build_model(load_checkpoint(student))
    spec = SamplerSpec("consistency", 2)
    precision = Precision(torch.device("cpu"))
    eager = make_backend("eager", model, spec, precision, 4).stepper(2)
    ort = make_backend("onnx", model, spec, precision, 4, export_dir=export_dir).stepper(2)
    g = torch.Generator().manual_seed(0)
    x_ctx = torch.randn(2, 2, 3, H, W, generator=g)
    a_ctx = torch.randn(2, 2, 2, generator=g)
    for st in (eager, ort):
        st.cache.reset()
        with torch.no_grad():
            encode_context(model, st.cache, x_ctx, a_ctx)
    prev_e = prev_o = x_ctx[:, -1:]
    for _ in range(5):
        action, noise = torch.randn(2, 1, 2, generator=g), torch.randn(2, 2, 1, 3, H, W, generator=g)
        prev_e, prev_o = eager(action, noise, prev_e), ort(action, noise, prev_o)
        torch.testing.assert_close(prev_o, prev_e, atol=1e-4, rtol=0)
        torch.testing.assert_close(ort.cache.k, eager.cache.k, atol=1e-4, rtol=0)
        torch.testing.assert_close(ort.cache.v, eager.cache.v, atol=1e-4, rtol=0)
        assert int(ort.cache.frames_seen) == int(eager.cache.frames_seen)
    assert int(eager.cache.frames_seen) == 7


def test_onnx_world_model_matches_eager_frames(student, export_dir):
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (3, H, W, 3), dtype=np.uint8)
    ctx_actions = rng.normal(250, 50, (3, 2)).astype(np.float32)
    actions = rng.normal(250, 50, (3, 4, 2)).astype(np.float32)  # N=3 runs padded to the batch-4 export
    got, want = [], []
    for backend, out in (("onnx", got), ("onnxruntime", got), ("eager", want)):
        m = WorldModel.load(student, backend=backend, max_batch=4, export_dir=export_dir)
        m.reset(frames, ctx_actions, seed=3)
        out.append(np.stack([m.step(a) for a in actions[0]]))
        out.append(m.imagine(actions, seed=5, goal=frames[0]).frames)
        assert m.backend == ("eager" if backend == "eager" else "onnx")
    for g, w in zip(got, want * 2):
        assert np.abs(g.astype(int) - w).max() <= 1 and (g == w).mean() > 0.99


def test_onnx_world_model_with_action_guidance_matches_eager(tiny_guided_teacher, tmp_path):
    """Guided sampling (each denoising pass also with the learnt null action) exports like any step: its own
    file (the guidance is baked in), the same frames as eager."""
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (2, H, W, 3), dtype=np.uint8)
    ctx_actions = rng.normal(250, 50, (2, 2)).astype(np.float32)
    actions = rng.normal(250, 50, (2, 3, 2)).astype(np.float32)
    runs = {}
    for backend in ("onnx", "eager"):
        m = WorldModel.load(tiny_guided_teacher, backend=backend, max_batch=2, export_dir=tmp_path, steps=2,
                            guidance=2.0)
        m.reset(frames, ctx_actions, seed=3)
        runs[backend] = m.imagine(actions, seed=5).frames
    assert {p.name for p in tmp_path.glob("*.onnx")} == {"step_ode2_ddim_g2_b1.onnx", "step_ode2_ddim_g2_b2.onnx"}
    got, want = runs["onnx"], runs["eager"]
    assert np.abs(got.astype(int) - want).max() <= 1 and (got == want).mean() > 0.99


def test_export_folder_interface_and_fingerprint(student, export_dir, tiny_teacher):
    model = build_model(load_checkpoint(student))
    spec = SamplerSpec("consistency", 2)
    path = ensure_exported("onnx", model, spec, 2, export_dir)
    assert path.name == "step_consistency2_b2.onnx"
    graph = onnx.load(str(path)).graph
    shapes = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}
    # layers=2, batch=2, heads=2, window*P = 3*16, head_dim = 32
    assert shapes == {"k": [2, 2, 2, 48, 32], "v": [2, 2, 2, 48, 32], "frames_seen": [], "action": [2, 1, 2],
                      "noise": [2, 2, 1, 3, H, W], "prev": [2, 1, 3, H, W]}
    assert [o.name for o in graph.output] == ["x0", "k_next", "v_next", "frames_seen_next"]
    manifest = json.loads((export_dir / "manifest.json").read_text())
    assert {e["file"] for e in manifest["files"]} >= {"step_consistency2_b2.onnx", "step_consistency2_b4.onnx"}
    other = build_model(load_checkpoint(tiny_teacher))
    with torch.no_grad():
        other.final.linear.bias.add_(1.0)
    with pytest.raises(ExportError, match="holds a step exported from other weights"):
        ensure_exported("onnx", other, spec, 1, export_dir)


def test_crcm_export_writes_files_and_checks_parity(student, tmp_path, capsys):
    from crcm_robotics.cli import main

    out = tmp_path / "exp"
    assert main(["export", str(student), f"out={out}", "batch=[1,3]", "steps=1"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["files"] == [str(out / "step_consistency1_b1.onnx"), str(out / "step_consistency1_b3.onnx")]
    assert result["sampler"] == {"kind": "consistency", "steps": 1, "solver": None}
    for diffs in result["max_abs_diff_vs_eager"].values():
        assert diffs["x0"] < 1e-4 and diffs["kv"] < 1e-4
    assert all(Path(f).is_file() for f in result["files"])


def test_crcm_export_tensorrt_without_the_package(student, tmp_path, capsys):
    if importlib.util.find_spec("torch_tensorrt") is not None:
        pytest.skip("torch_tensorrt is installed; this checks the message when it is missing")
    from crcm_robotics.cli import main

    assert main(["export", str(student), "format=tensorrt", f"out={tmp_path}"]) == 2
    assert "torch_tensorrt package, which is not installed" in capsys.readouterr().err


def test_step_module_exports_with_torch_export(student):
    """torch.export (the TensorRT front end) captures the functional step; its output equals eager's."""
    model = export_copy(build_model(load_checkpoint(student)))
    module = StepModule(model, SamplerSpec("consistency", 2)).eval()
    inputs = example_inputs(model, module.spec, 1)
    program = torch.export.export(module, inputs, strict=False)
    with torch.no_grad():
        for got, want in zip(program.module()(*inputs), module(*inputs)):
            torch.testing.assert_close(got, want)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_tensorrt_world_model_matches_eager_on_gpu(student):
    pytest.importorskip("torch_tensorrt", reason="needs torch-tensorrt (not installed)")
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (2, H, W, 3), dtype=np.uint8)
    ctx_actions = rng.normal(250, 50, (2, 2)).astype(np.float32)
    steps = rng.normal(250, 50, (3, 2)).astype(np.float32)
    got = []
    for backend in ("tensorrt", "eager"):
        m = WorldModel.load(student, device="cuda", dtype="float32", backend=backend, max_batch=2)
        m.reset(frames, ctx_actions, seed=3)
        got.append(np.stack([m.step(a) for a in steps]))
    assert np.abs(got[0].astype(int) - got[1]).max() <= 2 and (got[0] == got[1]).mean() > 0.98


def test_step_files_of_other_mid_times_do_not_collide():
    """The sampler times are baked into an exported step, so a cached file must not serve other times."""
    names = {step_file("onnx", SamplerSpec("consistency", 2, mid_times=m), 4) for m in (None, (0.5,), (0.8,))}
    assert names == {"step_consistency2_b4.onnx", "step_consistency2_mid0.5_b4.onnx", "step_consistency2_mid0.8_b4.onnx"}


def test_crcm_export_unknown_compiled_kind_is_a_one_line_error(student, tmp_path, capsys):
    from crcm_robotics.cli import main

    assert main(["export", str(student), "format=compiled", "compiled=bogus", f"out={tmp_path}"]) == 2
    assert "compiled='bogus'; expected precompiled" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing written
