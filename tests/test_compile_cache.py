"""The compile backend's warm-start cache: what is saved beside a checkpoint, when it is used, when not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from crcm_robotics.config import ModelConfig
from crcm_robotics.model.dit import CausalDiT
from crcm_robotics.model.sampler import SamplerSpec
from crcm_robotics.runtime.backends.compile_cache import CompileCache, cache_key, key_digest

TINY = ModelConfig(height=16, width=16, patch=8, dim=16, depth=1, heads=2, cache_frames=2, spatial_rope=False)


@pytest.fixture
def key() -> dict:
    return cache_key(CausalDiT(TINY), SamplerSpec("consistency", 2), torch.device("cpu"), torch.float32,
                     "default", "inductor")


class Artefacts:
    """Stands in for torch.compiler's process-wide artefact store: what was saved, what was loaded."""

    def __init__(self, monkeypatch, pending: list[bytes]):
        self.pending, self.loaded = pending, []
        monkeypatch.setattr(torch.compiler, "save_cache_artifacts", self.save)
        monkeypatch.setattr(torch.compiler, "load_cache_artifacts", self.load)

    def save(self):
        return (self.pending.pop(0), None) if self.pending else None

    def load(self, blob: bytes):
        self.loaded.append(blob)
        return object()


def test_key_names_everything_that_invalidates_artefacts(key):
    assert key["torch"] == torch.__version__ and key["device"] == "cpu" and key["dtype"] == "float32"
    assert key["sampler"]["kind"] == "consistency" and key["sampler"]["steps"] == 2 and key["model"]["dim"] == 16
    other_gpu = {**key, "device": "NVIDIA H200 (sm_90)"}
    other_torch = {**key, "torch": "2.99.0"}
    read_back = json.loads(json.dumps(key))  # the same key read back from JSON: the same digest
    assert len({key_digest(key), key_digest(other_gpu), key_digest(other_torch)}) == 3
    assert key_digest(read_back) == key_digest(key)


def test_save_then_load_round_trips_files_batches_and_bytes(tmp_path, key, monkeypatch):
    store = Artefacts(monkeypatch, [b"first-process", b"second"])
    cache = CompileCache(tmp_path / "compile_cache", key)
    assert cache.load().startswith(f"no compile cache for this torch/device/dtype/sampler in {cache.folder}")
    assert cache.save([1], checkpoint="ckpt") == cache.meta_path
    assert cache.save([64]) == cache.meta_path
    assert cache.save([2]) is None  # nothing compiled since the last save: no empty file
    meta = json.loads(cache.meta_path.read_text())
    digest = key_digest(key)
    assert meta["format"] == "crcm-compile-cache" and meta["key"] == key and meta["checkpoint"] == "ckpt"
    assert meta["files"] == [f"{digest}_0.bin", f"{digest}_1.bin"] and meta["batches"] == [1, 64]
    assert meta["bytes"] == len(b"first-process") + len(b"second")

    fresh = CompileCache(tmp_path / "compile_cache", json.loads(json.dumps(key)))  # a new process
    status = fresh.load()
    assert store.loaded == [b"first-process", b"second"]
    assert status.startswith(f"compile cache {digest}.json: 2 artefact file(s) for batch sizes [1, 64] loaded")
    assert fresh.loaded_batches == [1, 64]


def test_other_torch_or_gpu_entries_are_reported_not_loaded(tmp_path, key, monkeypatch):
    store = Artefacts(monkeypatch, [b"built-elsewhere"])
    CompileCache(tmp_path, {**key, "torch": "2.99.0", "device": "NVIDIA H200 (sm_90)"}).save([1])
    status = CompileCache(tmp_path, key).load()
    assert store.loaded == []
    assert status == (f"no compile cache for this torch/device/dtype/sampler in {tmp_path} (it holds entries "
                      "for torch 2.99.0 on NVIDIA H200 (sm_90) in float32): compiling cold")


def test_unwritable_folder_logs_and_runs_on(tmp_path, key, monkeypatch, caplog):
    Artefacts(monkeypatch, [b"x"])
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert CompileCache(blocker / "compile_cache", key).save([1]) is None
    assert "could not save the compile cache to" in caplog.text


def test_compile_backend_defaults_its_cache_beside_the_checkpoint(tiny_student, caplog):
    import logging

    from crcm_robotics.runtime import WorldModel

    with caplog.at_level(logging.INFO, logger="crcm_robotics.runtime"):
        m = WorldModel.load(tiny_student, backend="compile", compiler="aot_eager")
    cache = m._backend.cache
    assert cache is not None and cache.folder == Path(tiny_student) / "compile_cache"
    assert cache.key["compiler"] == "aot_eager" and cache.key["sampler"] == m.sampler.to_meta()
    assert "no compile cache for this torch/device/dtype/sampler" in caplog.text


WARM_PROBE = """
import json, sys, time
t0 = time.perf_counter()
from crcm_robotics.runtime.backends.compiled import export_compiled
r = export_compiled(sys.argv[1], sys.argv[2], [1], device="cpu", kind="cache")
print(json.dumps({**r, "wall": time.perf_counter() - t0}))
"""


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("CRCM_SLOW_TESTS"),
                    reason="Inductor compiles the step in ~50 s on 2 CPU cores (cold cache); "
                           "set CRCM_SLOW_TESTS=1 to run it")
def test_export_compiled_then_a_fresh_process_loads_it(tiny_student, tmp_path):
    """Real Inductor on CPU: `crcm export format=compiled`, then a process with an empty local cache loads it."""
    def run(folder: Path, inductor_dir: Path) -> dict:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(inductor_dir)}
        proc = subprocess.run([sys.executable, "-c", WARM_PROBE, str(tiny_student), str(folder)], env=env,
                              capture_output=True, text=True, timeout=500)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])

    cold = run(tmp_path / "cache", tmp_path / "inductor_a")
    assert cold["loaded"].startswith("no compile cache") and cold["cache_batches"] == [1]
    assert cold["cache_bytes"] > 0
    warm = run(tmp_path / "cache", tmp_path / "inductor_b")  # empty local Inductor cache: only ours can hit
    assert warm["loaded"].startswith(f"compile cache {cold['key']}.json: 1 artefact file(s) for batch sizes [1]")
    assert warm["seconds"] < cold["seconds"], (cold["seconds"], warm["seconds"])
    assert warm["cache_bytes"] == cold["cache_bytes"]  # a warm start adds no duplicate artefact file


# ---------------------------------------------------------------- AOTInductor packages (opt-in warm start)


def test_packages_of_other_weights_are_reported_and_skipped(tmp_path, key):
    cache = CompileCache(tmp_path, key)
    assert cache.packages(lambda: "w-now") == ({}, f"no AOTInductor packages in {tmp_path}")
    for batch, weights in ((1, "w-now"), (64, "w-before")):
        cache.package_path(batch).write_bytes(b"package")
        cache.add_package(batch, weights, checkpoint="ckpt")
    usable, status = CompileCache(tmp_path, json.loads(json.dumps(key))).packages(lambda: "w-now")
    assert usable == {1: cache.package_path(1)}
    assert status == (f"AOTInductor packages in {tmp_path} for batch sizes [1]; packages for batch sizes [64] "
                      "hold other weights (rebuild: crcm export … format=compiled)")
    meta = json.loads(cache.meta_path.read_text())
    assert meta["packages"]["64"] == {"file": cache.package_path(64).name, "weights": "w-before", "bytes": 7}
    assert meta["files"] == [] and meta["key"] == key  # the artefact list is untouched


def test_weights_digest_changes_with_any_weight():
    from crcm_robotics.runtime.backends.aot_package import weights_digest

    model = CausalDiT(TINY)
    before = weights_digest(model)
    assert weights_digest(model) == before
    with torch.no_grad():
        model.final.linear.bias[0] += 1e-3
    assert weights_digest(model) != before


def imagine_inputs(wm) -> tuple:
    """Random context (frames uint8, actions) and a 1×4 action plan fitting ``wm``, from seed 0."""
    import numpy as np

    rng = np.random.default_rng(0)
    h, w = wm.image_shape[:2]
    return (rng.integers(0, 256, (wm.context_frames, h, w, 3), dtype=np.uint8),
            rng.normal(size=(wm.context_frames, wm.env_action_dim)).astype(np.float32),
            rng.normal(size=(1, 4, wm.env_action_dim)).astype(np.float32))


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("CRCM_SLOW_TESTS"),
                    reason="AOTInductor compiles and packages the step in ~85 s on 2 CPU cores (an opt-in path); "
                           "set CRCM_SLOW_TESTS=1 to run it")
def test_aoti_package_round_trip_runs_the_step_without_torch_compile(tiny_student, tmp_path, one_torch_thread):
    """Real AOTInductor on CPU: export packages, then the compile backend serves from them, matching eager."""
    import numpy as np

    from crcm_robotics.runtime import WorldModel
    from crcm_robotics.runtime.backends.compiled import export_compiled

    folder = tmp_path / "cache"
    report = export_compiled(str(tiny_student), str(folder), [1], device="cpu", kind="aoti")
    assert set(report["packages"]) == {"1"} and report["package_bytes"] > 0 and report["cache_batches"] == []
    wm = WorldModel.load(tiny_student, backend="compile", export_dir=folder, max_batch=1)
    ref = WorldModel.load(tiny_student, backend="eager", max_batch=1)
    assert wm._backend.packages == {1: folder / f"{report['key']}_b1.pt2"}
    frames, actions, plan = imagine_inputs(wm)
    got = wm.imagine(plan, context=(frames, actions), seed=5).frames.astype(int)
    want = ref.imagine(plan, context=(frames, actions), seed=5).frames.astype(int)
    assert np.abs(got - want).max() <= 1  # float rounding of a few uint8 levels at most
    assert not wm._backend._artefacts_loaded  # every batch size had a package: torch.compile never ran
    assert "AOTInductor packages" in wm._backend.cache_status


# ---------------------------------------------------------------- precompiled steps (torch.compile aot_compile)

needs_aot_compile = pytest.mark.skipif(
    not hasattr(torch.compiler, "load_compiled_function"),
    reason=f"torch {torch.__version__} has no torch.compiler.load_compiled_function (aot_compile)")


def test_precompiled_file_is_checked_before_anything_unpickles_it(tmp_path, key, monkeypatch):
    from crcm_robotics.runtime.backends.compile_cache import CacheRejected

    unpickled = []
    monkeypatch.setattr(torch.compiler, "load_compiled_function", unpickled.append, raising=False)
    cache = CompileCache(tmp_path, key)
    path = cache.precompiled_path(1)
    assert path.name == f"{key_digest(key)}_b1.aotc"
    path.write_bytes(b"pickled step")
    cache.add_precompiled(1, checkpoint="ckpt")
    fresh = CompileCache(tmp_path, json.loads(json.dumps(key)))
    assert fresh.precompiled_batches() == [1] and fresh.read_precompiled(1) == b"pickled step"

    path.write_bytes(b"pickled stuff")  # same size, other bytes: another file than the entry describes
    with pytest.raises(CacheRejected, match=r"_b1\.aotc is not the file .*json describes \(13 bytes, expected 12"):
        fresh.read_precompiled(1)
    meta = json.loads(cache.meta_path.read_text())
    meta["precompiled"]["1"]["file"] = "../elsewhere.aotc"  # an entry may name only <key>_b<batch>.aotc
    cache.meta_path.write_text(json.dumps(meta))
    with pytest.raises(CacheRejected, match=r"names '\.\./elsewhere\.aotc' for batch 1; expected '.*_b1\.aotc'"):
        fresh.read_precompiled(1)
    with pytest.raises(CacheRejected, match="lists no precompiled step for batch 64"):
        fresh.read_precompiled(64)
    other = CompileCache(tmp_path, {**key, "torch": "2.99.0"})  # another torch's entry: not listed, not read
    assert other.precompiled_batches() == []
    assert unpickled == []


def test_rejected_precompiled_step_falls_back_to_tracing_with_a_logged_reason(tmp_path, key, monkeypatch, caplog):
    import logging

    from crcm_robotics.runtime.backends.compiled import CompileBackend
    from crcm_robotics.runtime.backends.base import Precision

    unpickled = []
    monkeypatch.setattr(torch.compiler, "load_compiled_function", unpickled.append, raising=False)
    model = CausalDiT(TINY).eval()
    spec = SamplerSpec("consistency", 2)
    folder = tmp_path / "cache"
    cache = CompileCache(folder, cache_key(model, spec, torch.device("cpu"), torch.float32, "default", "aot_eager"))
    cache.precompiled_path(1).parent.mkdir(parents=True)
    cache.precompiled_path(1).write_bytes(b"step")
    cache.add_precompiled(1)
    cache.precompiled_path(1).write_bytes(b"swapped")
    with caplog.at_level(logging.INFO, logger="crcm_robotics.runtime"):
        backend = CompileBackend(model, spec, Precision(torch.device("cpu")), 1, compiler="aot_eager",
                                 cache_dir=folder)
        stepper = backend.stepper(1)
    assert stepper.fn is backend.fn  # torch.compile's step: traced as before
    assert backend.precompiled_used == [] and unpickled == []
    assert "batch 1: precompiled step not used (CacheRejected: " in backend.cache_status
    assert "is not the file" in caplog.text


def test_precompiled_is_off_where_asked_or_where_torch_lacks_it(tmp_path, monkeypatch):
    from crcm_robotics.runtime.backends import precompiled
    from crcm_robotics.runtime.backends.base import Precision
    from crcm_robotics.runtime.backends.compiled import CompileBackend

    model, spec, cpu = CausalDiT(TINY).eval(), SamplerSpec("consistency", 2), Precision(torch.device("cpu"))
    off = CompileBackend(model, spec, cpu, 1, compiler="aot_eager", cache_dir=tmp_path, precompiled=False)
    assert not off.precompiled and off.cache_status.startswith("no compile cache for this torch")  # asked for
    monkeypatch.delattr(torch.compiler, "load_compiled_function", raising=False)
    old = CompileBackend(model, spec, cpu, 1, compiler="aot_eager", cache_dir=tmp_path)
    assert not old.precompiled
    assert f"no precompiled steps: torch {torch.__version__} has no torch.compiler.load_compiled_function" \
        in old.cache_status
    assert precompiled.unavailable_reason() is not None


PRECOMPILE = """
import json, sys
from crcm_robotics.runtime.backends.compiled import export_compiled
print(json.dumps(export_compiled(sys.argv[1], sys.argv[2], [1], device="cpu", compiler=sys.argv[3])))
"""

WARM_START = """
import json, sys
import numpy as np
from torch._dynamo.utils import counters
from crcm_robotics.runtime import WorldModel
ckpt, folder, compiler, original, inputs = sys.argv[1:]
wm = WorldModel.load(ckpt, backend="compile", compiler=compiler, export_dir=folder, max_batch=1)
saved = np.load(inputs)
ctx, plan = (saved["frames"], saved["actions"]), saved["plan"]
got = wm.imagine(plan, context=ctx, seed=5).frames.astype(int)
frames_traced = counters["frames"]["total"]
want = WorldModel.load(ckpt, backend="eager").imagine(plan, context=ctx, seed=5).frames.astype(int)
before = WorldModel.load(original, backend="eager").imagine(plan, context=ctx, seed=5).frames.astype(int)
print(json.dumps({"vs_eager": int(np.abs(got - want).max()), "vs_old_weights": int(np.abs(got - before).max()),
                  "frames_traced": frames_traced, "used": wm._backend.precompiled_used,
                  "status": wm._backend.cache_status}))
"""


def retrained_copy(ckpt: Path, out: Path) -> Path:
    """``ckpt`` with every weight moved (a retrained checkpoint of the same architecture)."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(ckpt, out)
    gen = torch.Generator().manual_seed(0)
    for shard in out.rglob("*.safetensors"):
        tensors = load_file(shard)
        save_file({k: t + 0.05 * torch.randn(t.shape, generator=gen).to(t.dtype) if t.is_floating_point() else t
                   for k, t in tensors.items()}, shard)
    return out


@needs_aot_compile
@pytest.mark.parametrize("compiler", [
    "aot_eager",  # the whole save/load path in seconds: Dynamo's output pickled, no Inductor code generation
    pytest.param("inductor", marks=pytest.mark.skipif(
        not os.environ.get("CRCM_SLOW_TESTS"),
        reason="Inductor compiles the step in ~40 s and rebuilds its C++ kernels in ~20 s on 2 CPU cores; "
               "set CRCM_SLOW_TESTS=1 to run it")),
])
def test_precompiled_step_loads_in_a_fresh_process_with_no_trace_and_the_new_weights(tiny_student, tmp_path,
                                                                                      compiler):
    """Save in one process, load in another (empty Inductor cache) on retrained weights: no Dynamo frame is
    traced, frames match eager on the new weights, not the weights the file was made with. The two processes
    run different intra-op thread counts, which Dynamo's global-state guard checks (an H200 warm start was
    refused on such a guard): the loader skips guards on settings the step reads per call, and says so."""
    def run(script: str, *args: str, threads: int = 1) -> dict:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / f"inductor_{len(list(tmp_path.iterdir()))}"),
               "OMP_NUM_THREADS": str(threads)}
        proc = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])

    folder = tmp_path / "cache"
    made = run(PRECOMPILE, str(tiny_student), str(folder), compiler)
    assert set(made["precompiled"]) == {"1"} and made["precompiled_bytes"] > 0
    assert made["cache_batches"] == []  # no Inductor artefact file beside it: the step file holds them
    assert "batch 1: precompiled in" in made["loaded"]
    retrained = retrained_copy(tiny_student, tmp_path / "retrained")
    import numpy as np

    from crcm_robotics.runtime import WorldModel

    frames, actions, plan = imagine_inputs(WorldModel.load(tiny_student, backend="eager", max_batch=1))
    np.savez(tmp_path / "inputs.npz", frames=frames, actions=actions, plan=plan)
    warm = run(WARM_START, str(retrained), str(folder), compiler, str(tiny_student),
               str(tmp_path / "inputs.npz"), threads=2)
    assert warm["used"] == [1] and "batch 1: precompiled step loaded in" in warm["status"], warm["status"]
    assert ("batch 1: guards skipped after a check against the uncompiled step"
            in warm["status"]), warm["status"]
    assert "GLOBAL_STATE changed: num_threads" in warm["status"], warm["status"]
    assert warm["frames_traced"] == 0
    assert warm["vs_eager"] <= 1  # float rounding of one uint8 level at most
    assert warm["vs_old_weights"] > 8  # the saved file did not carry the weights it was made with


def test_guard_failures_are_read_and_only_settings_and_step_inputs_are_relaxed():
    from crcm_robotics.runtime.backends.precompiled import failed_guards, relaxable

    def error(parts: str) -> RuntimeError:
        return RuntimeError(f"GuardManager check failed, reason: GuardDebugInfo(\nresult=0,\n"
                            f"verbose_code_parts=[{parts}],\nnum_guards_executed=2,\nuser_stack=None)\n")

    threads = failed_guards(error("'GLOBAL_STATE changed: num_threads allow_tf32 '"))
    assert threads == ["GLOBAL_STATE changed: num_threads allow_tf32"] and relaxable(threads)
    # changes the computation
    assert not relaxable(failed_guards(error("'GLOBAL_STATE changed: grad_mode '")))
    k_guard = failed_guards(error("\"tensor 'L['k']' stride mismatch at index 0.\\n expected 4, actual 3\", "
                                  "'GLOBAL_STATE changed: num_threads '"))
    assert k_guard == ["tensor 'L['k']' stride mismatch at index 0. expected 4, actual 3",  # one line
                       "GLOBAL_STATE changed: num_threads"]
    assert relaxable(k_guard)
    assert not relaxable(failed_guards(error("\"tensor 'L['model']._parameters['w']' size mismatch\"")))
    assert failed_guards(RuntimeError("something else")) == [] and not relaxable([])
