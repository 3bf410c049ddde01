"""The diagnostic scripts behind docs/results.md run on CPU and print the figures they promise."""

from __future__ import annotations

import importlib.util
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest

from crcm_robotics.model.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _train_tiny_probe(store: Path, out: Path, *overrides: str) -> Path:
    """A 5-update state probe of STORE at toy width (`crcm train probe`) in OUT."""
    from crcm_robotics.conf import compose_config
    from distill.probe import train_probe

    train_probe(compose_config("train_probe", [f"data.path={store}", f"out={out}", "steps=5", "batch_size=16",
                                               "width=8", "progress=false", *overrides]))
    return out


@pytest.fixture(scope="module")
def tiny_probe(pusht_store_32, tmp_path_factory) -> Path:
    """One tiny probe of :func:`pusht_store_32`, read by every script here that reads states off frames."""
    return _train_tiny_probe(pusht_store_32, tmp_path_factory.mktemp("probe") / "probe")


def test_profile_planner_groups_kernels_and_counts_passes(tiny_student, tmp_path, capsys):
    prof = load_script("profile_planner")
    assert prof.kind_of("nvjet_sm90_tst_80x128_64x8_2x1_v_bz_bias_TNN") == "gemm"
    assert prof.kind_of("cudnn_generated_fort_native_sdpa_sm90_flash_fprop") == "attention"
    assert prof.kind_of("triton_poi_fused_gelu_view_18") == "triton_fused"
    assert prof.kind_of("void at::native::vectorized_layer_norm_kernel") == "elementwise_other"
    prof.main([str(tiny_student), "--backends", "eager", "--rollouts", "2", "--horizon", "2", "--repeats", "1",
               "--device", "cpu", "--out", str(tmp_path)])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    eager = result["backends"]["eager"]
    assert eager["network_passes"] == 1 + 2 * 3  # context encoding + 2 frames × (2 denoising passes + cache write)
    assert eager["busy_ms"] > 0 and eager["launches"] > 0 and eager["by_kind_ms"]
    assert (tmp_path / "top_kernels_eager.txt").stat().st_size > 0
    assert (tmp_path / "trace_eager.json.gz").stat().st_size > 0


def test_profile_planner_sizes_a_random_network_by_its_patch(tiny_student, tmp_path, capsys):
    """--patch builds the random network in finer patches (4 tokens where the preset has one at half the side);
    a checkpoint of its own or a patch that does not divide the frame is refused."""
    import yaml

    from crcm_robotics.runtime.bench import random_student_checkpoint

    prof = load_script("profile_planner")
    for patch, tokens in ((8, 64), (4, 256)):
        ckpt = random_student_checkpoint(tmp_path / f"p{patch}", "tiny", 2, patch=patch)
        assert yaml.safe_load((ckpt / "config.yaml").read_text())["model"]["patch"] == patch
        prof.main([str(ckpt), "--backends", "eager", "--rollouts", "2", "--horizon", "1", "--repeats", "1",
                   "--device", "cpu", "--out", str(tmp_path / f"out{patch}")])
        eager = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["backends"]["eager"]
        assert eager["tokens_per_frame"] == tokens
    with pytest.raises(ValueError, match="patch must divide the 64x64 frame, got 6"):
        random_student_checkpoint(tmp_path / "p6", "tiny", 2, patch=6)
    for argv, message in (([str(tiny_student), "--patch", "4"], "a checkpoint has its own"),
                          (["--patch", "6"], "--patch 6: patch must divide the 64x64 frame")):
        with pytest.raises(SystemExit):
            prof.main([*argv, "--device", "cpu", "--backends", "eager", "--out", str(tmp_path)])
        assert message in capsys.readouterr().err


def test_profile_planner_widens_a_random_network_keeping_the_presets_head_size(tmp_path, capsys):
    """--dim builds the random network that wide with the preset's head size (tiny: 64 wide in 2 heads of 32, so
    96 has 3), its matmuls growing with the width; a width that is not whole heads is refused by name."""
    import yaml

    from crcm_robotics.runtime.bench import random_student_checkpoint

    prof = load_script("profile_planner")
    gflop = {}
    for dim, heads in ((64, 2), (96, 3)):
        ckpt = random_student_checkpoint(tmp_path / f"d{dim}", "tiny", 2, dim=dim)
        model = yaml.safe_load((ckpt / "config.yaml").read_text())["model"]
        assert (model["dim"], model["heads"], model["patch"]) == (dim, heads, 8)
        prof.main([str(ckpt), "--backends", "eager", "--rollouts", "2", "--horizon", "1", "--repeats", "1",
                   "--device", "cpu", "--out", str(tmp_path / f"out{dim}")])
        gflop[dim] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["backends"]["eager"][
            "matmul_gflop_per_pass"]
    assert gflop[96] > 1.5 * gflop[64]  # the linear layers grow with the width squared
    with pytest.raises(ValueError, match="multiple of the `tiny` preset's head size 32, got 80"):
        random_student_checkpoint(tmp_path / "d80", "tiny", 2, dim=80)
    with pytest.raises(SystemExit):
        prof.main(["--dim", "80", "--device", "cpu", "--backends", "eager", "--out", str(tmp_path)])
    assert "--dim 80: dim must be a multiple" in capsys.readouterr().err


def test_plan_time_split_times_both_samplers_by_depth_and_a_whole_solve(tmp_path, capsys, monkeypatch):
    split = load_script("plan_time_split")
    scratch = tmp_path / "scratch"  # where its random-weight checkpoints go: nothing may be left there
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    assert split.fit_line([1, 2, 4], [3.0, 5.0, 9.0]) == pytest.approx((2.0, 1.0))
    split.main(["--preset", "tiny", "--depths", "1", "2", "--student-depth", "1", "--teacher-depth", "2",
                "--samples", "4", "--repeats", "1", "--device", "cpu", "--backend", "eager", "--profile",
                "--out", str(tmp_path)])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result == json.loads((tmp_path / "split.json").read_text())
    teacher, student = result["samplers"]["teacher"], result["samplers"]["student"]
    assert (teacher["passes_per_frame"], student["passes_per_frame"]) == (5, 3)  # DDIM 4 + write; 2 steps + write
    assert [r["depth"] for r in teacher["rows"]] == [1, 2] == [r["depth"] for r in student["rows"]]
    assert all(r["round_ms"] > 0 for r in teacher["rows"] + student["rows"])
    solves = result["solve"]
    assert (solves["teacher"]["depth"], solves["student"]["depth"]) == (2, 1)
    assert solves["teacher"]["solve_ms"] > 0 and solves["student"]["solve_ms"] > 0
    assert result["student_over_teacher"] == pytest.approx(
        solves["student"]["solve_ms"] / solves["teacher"]["solve_ms"], abs=1e-4)
    for name in ("teacher", "student"):
        assert "ms of kernel time in one solve" in (tmp_path / f"kernels_{name}.txt").read_text()
    assert not list(scratch.glob("plan_time_split_*"))  # the checkpoints it timed were removed
    for bad, message in ((["--preset", "huge"], "--preset 'huge' unknown; expected one of"),
                         (["--student-depth", "0"], "every depth (--depths, --student-depth, --teacher-depth) ≥ 1")):
        with pytest.raises(SystemExit):
            split.main(bad)
        assert message in capsys.readouterr().err


def test_consistency_error_of_the_teacher_itself(tiny_teacher, capsys):
    ce = load_script("consistency_error")
    store = load_checkpoint(tiny_teacher).meta["data_path"]
    ce.main([str(tiny_teacher), str(tiny_teacher), "--store", store, "--windows", "2", "--times", "0.7", "1.4"])
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert len(lines) == 2 and lines[0]["mse"] == lines[1]["mse"]  # the same network scores the same
    for t in ("0.700", "1.400"):
        mse = lines[0]["mse"][t]
        assert all(v >= 0 for v in mse.values())
        assert mse["to_ode"] > 0  # one jump is not the 12-step ODE
    # the ODE from a noisier start ends further from the data
    assert lines[0]["mse"]["1.400"]["ode_to_data"] > lines[0]["mse"]["0.700"]["ode_to_data"]
    with pytest.raises(SystemExit):
        ce.main([str(tiny_teacher)])  # --store is required


def test_block_motion_error_splits_frames_by_whether_the_block_moved(tiny_teacher, pusht_store_32, tiny_probe,
                                                                    tmp_path, capsys, one_torch_thread):
    probe = tiny_probe
    script = load_script("block_motion_error")
    script.main([str(tiny_teacher), str(pusht_store_32), str(probe), "--steps", "1", "--episodes", "2",
                 "--horizon", "3"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["windows"] == 8 and result["horizon"] == 3  # 2 episodes × 4 windows
    for row in ("real_frames", "copy_last", "steps_1"):
        split = result[row]
        assert split["still"]["frames"] + split["moved"]["frames"] == 8 * 3
        # NaN: a part (still or moved) with no frames
        assert all(v >= 0 for part in split.values() for v in part.values() if not math.isnan(v))
    # two probes read the same predictions: the first one's figures are those of the one-probe run
    other = _train_tiny_probe(pusht_store_32, tmp_path / "other", "seed=1")
    script.main([str(tiny_teacher), str(pusht_store_32), str(probe), str(other), "--steps", "1",
                 "--episodes", "2", "--horizon", "3"])
    both_line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    both = both_line["probes"]
    assert list(both) == [str(probe), str(other)]
    assert both[str(probe)] == {row: result[row] for row in ("real_frames", "copy_last", "steps_1")}
    assert both[str(other)]["real_frames"] != both[str(probe)]["real_frames"]
    # how far the second probe's readings lie from the first's on the same frames: a distance, so the same
    # with the probes given the other way round, and not nothing for two runs at other seeds
    apart = both_line["probe_agreement"]
    assert list(apart) == [str(other)] and set(apart[str(other)]) == {"real_frames", "copy_last", "steps_1"}
    real = apart[str(other)]["real_frames"]
    assert real["still"]["frames"] + real["moved"]["frames"] == 8 * 3
    assert all(real[part][k] > 0 for part in ("still", "moved") if real[part]["frames"]
               for k in ("position", "angle_deg", "agent_position"))
    script.main([str(tiny_teacher), str(pusht_store_32), str(other), str(probe), "--steps", "1",
                 "--episodes", "2", "--horizon", "3"])
    swapped = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["probe_agreement"]
    assert swapped[str(probe)] == apart[str(other)]
    with pytest.raises(SystemExit, match="no_probe needs meta.json and probe.safetensors"):  # one line, no trace
        script.main([str(tiny_teacher), str(pusht_store_32), str(probe), str(tmp_path / "no_probe")])
    # the same on two episodes the teacher trained on: other windows, so other truths
    script.main([str(tiny_teacher), str(pusht_store_32), str(probe), "--steps", "1", "--episodes", "2",
                 "--horizon", "3", "--split", "train"])
    seen = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert seen["split"] == "train" and result["split"] == "val" and seen["windows"] == 8
    assert seen["copy_last"] != result["copy_last"]
    other_store = tmp_path / "other.zarr"
    from crcm_robotics.data.pusht import generate_pusht

    generate_pusht(other_store, episodes=2, size=32, seed=5, workers=1, min_steps=40, max_steps=60, progress=False)
    with pytest.raises(SystemExit, match="trained on another store than .*content hashes differ"):
        script.main([str(tiny_teacher), str(other_store), str(probe)])
    script.main([str(tiny_teacher), str(pusht_store_32), str(probe), "--steps", "1", "--episodes", "2",
                 "--horizon", "3", "--split", "train", "--split-from", str(tiny_teacher)])  # its own: the same
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again.pop("split_from") == str(tiny_teacher) and seen.pop("split_from") == str(tiny_teacher)
    assert again == seen
    from crcm_robotics.data.schema import StoreError

    with pytest.raises(StoreError, match="no-store does not exist"):
        script.main([str(tiny_teacher), str(tmp_path / "no-store"), str(probe)])


def test_block_motion_error_render_check_compares_block_pixels_with_renders(
        tiny_teacher, pusht_store_32, tiny_probe, tmp_path, capsys, one_torch_thread):
    """--render-check: each row's block pixels against renders at the true and the probe-read pose; the real
    frames are the solid-and-right reference (every pixel where the true render has it)."""
    script = load_script("block_motion_error")
    script.main([str(tiny_teacher), str(pusht_store_32), str(tiny_probe), "--steps", "1", "--episodes", "2",
                 "--horizon", "3", "--render-check"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    check = result["render_check"]
    assert list(check) == ["real_frames", "copy_last", "steps_1"]
    real = check["real_frames"]
    for part in ("still", "moved"):
        if part in real:
            assert real[part]["block_pixels"] == 1.0 and real[part]["iou_true"] == 1.0
            assert real[part]["frames"] == result["real_frames"][part]["frames"]
    for row in check.values():
        assert sum(s["frames"] for s in row.get("moved_by_step", [])) == row.get("moved", {}).get("frames", 0)
        assert all(0 <= v <= 1 for part in ("still", "moved") if part in row
                   for k, v in row[part].items() if k.startswith("iou"))
    # the picture: three rows (real, the model's, the read pose) a window, from the farthest-moving block down
    strip = tmp_path / "strip.png"
    script.main([str(tiny_teacher), str(pusht_store_32), str(tiny_probe), "--steps", "1", "--episodes", "2",
                 "--horizon", "3", "--strip-out", str(strip), "--strip-windows", "2"])
    drawn = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["strip"]
    assert drawn["path"] == str(strip) and len(drawn["windows"]) == 2
    assert drawn["travel"] == sorted(drawn["travel"], reverse=True)  # the farthest first
    from PIL import Image

    width, height = Image.open(strip).size
    assert height == (6 * (32 + 2) + 2) * 4 and width == 90 + (3 * (32 + 2) + 2) * 4  # 6 rows of 3 frames
    for bad, message in ((["--strip-out", str(tmp_path / "s.jpg")], "expected a path ending in .png"),
                         (["--strip-out", str(strip), "--strip-windows", "0"], "expected at least 1")):
        with pytest.raises(SystemExit, match=message):
            script.main([str(tiny_teacher), str(pusht_store_32), str(tiny_probe), *bad])


def test_a_teacher_trained_with_action_dropout_samples_with_guidance(pusht_store_32, tiny_teacher,
                                                                      tiny_guided_teacher, tiny_probe, tmp_path,
                                                                      capsys, one_torch_thread):
    """model.action_null + objective.action_dropout train a null action into the checkpoint; WorldModel and
    block_motion_error.py sample it with guidance, and refuse guidance on a teacher trained without one."""
    import numpy as np

    from crcm_robotics.conf import compose_config
    from crcm_robotics.config import ConfigError
    from crcm_robotics.data.store import TrajectoryStore
    from crcm_robotics.runtime import WorldModel
    from distill.teacher import train_teacher

    with pytest.raises(ConfigError, match="needs model.action_null=true"):
        train_teacher(compose_config("config", [f"data.path={pusht_store_32}", f"train.out={tmp_path / 'no_null'}",
                                                "train.steps=2", "train.progress=false",
                                                "objective.action_dropout=0.3"], "crcm_robotics.conf.teacher"))
    assert not (tmp_path / "no_null").exists()
    guided = tiny_guided_teacher
    ep = TrajectoryStore(pusht_store_32).episode(0)
    ctx = (ep["frames"][:2], ep["action"][:2])
    plan = np.repeat(ep["action"][2:5][None], 3, axis=0).astype(np.float32)
    wm = WorldModel.load(guided, steps=2, guidance=2.0)
    assert wm.info()["sampler"]["guidance"] == 2.0
    frames = wm.imagine(plan, context=ctx, seed=0).frames
    plain = WorldModel.load(guided, steps=2, guidance=1.0).imagine(plan, context=ctx, seed=0).frames
    assert frames.shape == plain.shape == (3, 3, 32, 32, 3) and not np.array_equal(frames, plain)
    with pytest.raises(ConfigError, match="trained without a null action"):
        WorldModel.load(tiny_teacher, steps=2, guidance=2.0)
    from crcm_robotics.eval.evaluate import evaluate

    def crcm_eval(ckpt, *extra):
        return evaluate(compose_config("eval", [f"ckpt={ckpt}", "horizon=2", "episodes=1", "windows_per_episode=1",
                                                "time_batch1=false", "device=cpu", "steps=2", "probe=none",
                                                f"out={tmp_path / 'eval'}", *extra]))

    assert crcm_eval(guided, "guidance=2", "report=false")["sampler"]["guidance"] == 2.0
    with pytest.raises(ConfigError, match="trained without a null action"):
        crcm_eval(tiny_teacher, "guidance=2", "report=false")
    with pytest.raises(ConfigError, match=r"guidance must be in \[0, 20\]"):
        crcm_eval(guided, "guidance=-1", "report=false")
    script = load_script("block_motion_error")
    script.main([str(guided), str(pusht_store_32), str(tiny_probe), "--steps", "1", "--episodes", "1",
                 "--horizon", "2", "--guidance", "3"])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["guidance"] == 3.0
    with pytest.raises(SystemExit, match="trained without a null action"):
        script.main([str(tiny_teacher), str(pusht_store_32), str(tiny_probe), "--guidance", "2"])
    with pytest.raises(SystemExit, match=r"expected a value in \[0, 20\]"):
        script.main([str(guided), str(pusht_store_32), str(tiny_probe), "--guidance", "-1"])


def test_block_motion_error_mass_check_reads_the_block_off_its_colour_centroid(
        tiny_teacher, pusht_store_32, tiny_probe, capsys, one_torch_thread):
    """--mass-check: each row's block-colour centroid against the real frame's (0 for the real frames), the
    reading the probe_mass cost makes, beside the probe's."""
    script = load_script("block_motion_error")
    script.main([str(tiny_teacher), str(pusht_store_32), str(tiny_probe), "--steps", "1", "--episodes", "2",
                 "--horizon", "3", "--mass-check"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    mass = result["mass_check"]
    assert set(mass) == {"real_frames", "copy_last", "steps_1"}
    assert all(part["position"] == 0.0 for part in mass["real_frames"].values() if isinstance(part, dict))
    moved = result["copy_last"]["moved"]["frames"]
    assert moved > 0  # a copied frame is off by the block's travel where it moved
    assert mass["copy_last"]["moved"]["frames"] == moved and mass["copy_last"]["moved"]["position"] > 0
    steps = [row["step"] for row in mass["steps_1"]["moved_by_step"]]
    assert steps and steps == sorted(steps) and set(steps) <= {1, 2, 3}
    assert mass["copy_last"]["still"]["position"] < 8.0  # a still block's centroid stays within a pixel


def test_block_motion_error_context_scores_the_same_frames_from_fewer_context_frames(
        tiny_teacher, pusht_store_32, tiny_probe, tmp_path, capsys, one_torch_thread):
    """--context K feeds the model the last K of the window's context frames; with one --window-context, runs
    at several K cut the same windows, so they score the same true frames and pair window by window."""
    script = load_script("block_motion_error")
    base = [str(tiny_teacher), str(pusht_store_32), str(tiny_probe), "--steps", "1", "--episodes", "2",
            "--horizon", "3"]
    results = {}
    for context in (1, 3):
        script.main([*base, "--context", str(context), "--window-context", "3",
                     "--errors-out", str(tmp_path / f"c{context}.npz")])
        results[context] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    one, three = results[1], results[3]
    assert (one["context"], one["window_context"], three["context"]) == (1, 3, 3)
    assert one["real_frames"] == three["real_frames"] and one["copy_last"] == three["copy_last"]
    assert one["steps_1"] != three["steps_1"]  # the model saw other frames
    first, second = np.load(tmp_path / "c1.npz"), np.load(tmp_path / "c3.npz")
    assert np.array_equal(first["true"], second["true"]) and np.array_equal(first["moved"], second["moved"])
    script.main(base)  # the default: 2 frames of context, windows cut with 2
    default = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    script.main([*base, "--context", "2", "--window-context", "2"])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == default
    assert (default["context"], default["window_context"]) == (2, 2)
    for bad, match in ((["--context", "0"], "expected 1 ≤ context ≤ window context"),
                       (["--context", "3", "--window-context", "2"], "expected 1 ≤ context ≤ window context"),
                       (["--context", "4", "--window-context", "4"], "sees at most 3 frames")):
        with pytest.raises(SystemExit, match=match):
            script.main([*base, *bad])


def test_block_motion_error_scores_the_kept_weights_or_the_last(tiny_teacher, pusht_store_32, tiny_probe, tmp_path,
                                                                capsys, one_torch_thread):
    """A run whose validation kept other weights (CKPT/selected) is scored on those by default and on its final
    weights with --weights last; the JSON names the directory read and its update."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    probe = tiny_probe
    run = tmp_path / "run"
    shutil.copytree(tiny_teacher, run)
    shutil.copytree(tiny_teacher, run / "selected", ignore=shutil.ignore_patterns("train_state.pt"))
    meta = json.loads((run / "selected" / "meta.json").read_text())
    (run / "selected" / "meta.json").write_text(json.dumps({**meta, "step": 7}))
    generator = torch.Generator().manual_seed(0)
    for shard in (run / "selected").glob("model-*.safetensors"):  # the kept weights differ from the last
        tensors = load_file(str(shard))
        save_file({k: v + 0.05 * torch.randn(v.shape, generator=generator) if v.is_floating_point() else v
                   for k, v in tensors.items()}, str(shard))
    script = load_script("block_motion_error")
    args = [str(pusht_store_32), str(probe), "--steps", "1", "--episodes", "2", "--horizon", "3"]
    results = {}
    for name, extra in (("kept", []), ("last", ["--weights", "last"]), ("plain", [])):
        script.main([str(tiny_teacher if name == "plain" else run), *args, *extra])
        results[name] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    kept, last, plain = results["kept"], results["last"], results["plain"]
    assert kept["weights"] == str(run / "selected") and kept["update"] == 7
    assert last["weights"] == str(run) and last["update"] == meta["step"] == plain["update"]
    assert last["steps_1"] == plain["steps_1"]  # the last weights are the tiny teacher's own
    assert kept["steps_1"] != last["steps_1"]
    assert kept["real_frames"] == last["real_frames"]  # the same windows, read by the same probe
    with pytest.raises(SystemExit):
        script.main([str(run), *args, "--weights", "best"])
    assert "invalid choice: 'best'" in capsys.readouterr().err


def test_block_errors_written_per_frame_and_compared_window_by_window(tiny_teacher, pusht_store_32, tiny_probe,
                                                                      tmp_path, capsys, one_torch_thread):
    """--errors-out keeps the frames behind the JSON's means; compare_block_errors.py pairs two such files on the
    same windows (B - A over the moved frames, a window bootstrap) and refuses files of other windows."""
    import numpy as np

    script, compare = load_script("block_motion_error"), load_script("compare_block_errors")
    args = [str(tiny_teacher), str(pusht_store_32), str(tiny_probe), "--steps", "1", "--episodes", "2",
            "--horizon", "3"]
    a_path = tmp_path / "a.npz"
    script.main([*args, "--errors-out", str(a_path)])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["errors_out"] == str(a_path)
    with np.load(a_path, allow_pickle=False) as data:
        a = {key: data[key] for key in data.files}
    assert a["true"].shape[:2] == a["moved"].shape == a["steps_1_position"].shape == (8, 3)
    for row in ("real_frames", "copy_last", "steps_1"):
        for part, mask in (("still", ~a["moved"]), ("moved", a["moved"])):
            if mask.any():
                assert result[row][part]["position"] == round(float(a[f"{row}_position"][mask].mean()), 2)
                assert result[row][part]["angle_deg"] == round(float(a[f"{row}_angle"][mask].mean()), 2)

    def compared(b_path, *extra):
        compare.main([str(a_path), str(b_path), "--row", "steps_1", "--resamples", "200", *extra])
        return json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    same = compared(a_path)
    assert same["windows"] == 8 and same["moved_frames"] == int(a["moved"].sum())
    assert same["position"]["b_minus_a"] == 0 and same["position"]["interval"] == [0, 0]
    assert same["position"]["b_nearer_windows"] == 0
    # B nearer by 3 units on every moved frame and by a window-varying amount in angle
    shifted = dict(a, steps_1_position=a["steps_1_position"] - 3.0,
                   steps_1_angle=a["steps_1_angle"] + np.arange(8)[:, None] * a["moved"])
    np.savez(tmp_path / "b.npz", **shifted)
    nearer = compared(tmp_path / "b.npz")
    assert nearer["position"]["b_minus_a"] == -3.0 and nearer["position"]["interval"] == [-3.0, -3.0]
    assert nearer["position"]["b_nearer_windows"] == 1.0
    low, high = nearer["angle"]["interval"]
    assert 0 <= low < nearer["angle"]["b_minus_a"] < high <= 7  # the windows' spread, not a point
    assert compared(tmp_path / "b.npz", "--seed", "1")["angle"]["interval"] != [low, high]
    # by how far the true block moved: the ranges split the moved frames, each paired as the whole
    from crcm_robotics.data.pusht_sim import block_errors

    move = block_errors(np.broadcast_to(a["last"], a["true"].shape), a["true"])[0]
    edge = float(np.median(move[a["moved"]]))
    by_move = compared(tmp_path / "b.npz", "--move-bins", str(edge))["by_move"]
    assert [row["move"] for row in by_move] == [[0.0, edge], [edge, None]]
    assert sum(row["moved_frames"] for row in by_move) == nearer["moved_frames"]
    assert by_move[1]["moved_frames"] == int((a["moved"] & (move >= edge)).sum()) > 0
    for row in by_move:
        if row["moved_frames"]:
            assert row["position"]["b_minus_a"] == -3.0
    # by predicted frame: one row a horizon step, splitting the moved frames, with copy-last's mean on them
    by_step = compared(tmp_path / "b.npz", "--by-step")["by_step"]
    assert [row["step"] for row in by_step] == [1, 2, 3]
    assert [row["moved_frames"] for row in by_step] == a["moved"].sum(axis=0).tolist()
    for step, row in enumerate(by_step):
        if row["moved_frames"]:
            assert row["position"]["b_minus_a"] == -3.0
            copy_last = a["copy_last_position"][a["moved"][:, step], step]
            assert row["copy_last_position"] == round(float(copy_last.mean()), 2)
    assert "by_step" not in nearer
    np.savez(tmp_path / "old.npz", **{k: v for k, v in a.items() if k != "last"})  # an older file: no last state
    with pytest.raises(SystemExit, match="no last context state"):
        compare.main([str(tmp_path / "old.npz"), str(a_path), "--row", "steps_1", "--move-bins", "20"])
    compare.main([str(tmp_path / "old.npz"), str(a_path), "--row", "steps_1", "--resamples", "200"])
    assert json.loads(capsys.readouterr().out)["position"]["b_minus_a"] == 0  # without --move-bins it compares
    # other windows (the episodes the teacher trained on), a missing row, bad settings: refused
    other = tmp_path / "train.npz"
    script.main([*args, "--split", "train", "--errors-out", str(other)])
    cut, text, single = tmp_path / "cut.npz", tmp_path / "text.npz", tmp_path / "single.npy"  # files a cut call left
    cut.write_bytes(b"")
    text.write_text("not an archive\n")
    np.save(single, a["true"])
    capsys.readouterr()
    for bad, message in (([str(a_path), str(other), "--row", "steps_1"], "were scored on other windows"),
                         ([str(a_path), str(a_path), "--row", "steps_4"], "no steps_4_position"),
                         ([str(tmp_path / "none.npz"), str(a_path)], "none.npz: no such file"),
                         ([str(cut), str(a_path)], r"cut.npz: not a .*\(numpy could not open it as one: EOFError\)"),
                         ([str(text), str(a_path)], r"text.npz: not a .*\(numpy could not open it as one: ValueError"),
                         ([str(single), str(a_path)], "single.npy: a single array, not a"),
                         ([str(a_path), str(a_path), "--row", "steps_1", "--resamples", "5"],
                          "expected at least 100"),
                         ([str(a_path), str(a_path), "--row", "steps_1", "--move-bins", "40", "20"],
                          "expected rising edges above 0")):
        with pytest.raises(SystemExit, match=message):
            compare.main(bad)
    with pytest.raises(SystemExit, match="expected a path ending in .npz"):
        script.main([*args, "--errors-out", str(tmp_path / "errors.json")])


def test_block_predictability_targets_round_trip_and_scores_every_frame(pusht_store_32, capsys,
                                                                        one_torch_thread):
    import numpy as np

    from crcm_robotics.data.dataset import split_episodes
    from crcm_robotics.data.store import TrajectoryStore

    script = load_script("block_predictability")
    store = TrajectoryStore(pusht_store_32)
    ctx, act, fut = script.windows(store, split_episodes(store.num_episodes, 0.1, 0)[0], frames=2)
    assert ctx.shape[1:] == (2, 5) and act.shape[1:] == (15, 2) and fut.shape[1:] == (2, 5)
    finer = script.windows(store, [0], frames=2, back=(1, 5))[0]  # the same windows, one more state each
    ep0 = store.episode(0)["state"]
    assert finer.shape == (len(ep0) - 5 - 10, 3, 5)
    np.testing.assert_array_equal(finer[0], ep0[[0, 4, 5]])
    back = script.decode(ctx, script.targets(ctx, fut), frames=2)  # the target encodes the pose exactly
    np.testing.assert_allclose(back[..., :2], fut[..., 2:4], atol=1e-6)
    np.testing.assert_allclose(np.cos(back[..., 2] - fut[..., 4]), 1.0, atol=1e-9)

    script.main([str(pusht_store_32), "--frames", "2", "--steps", "5", "--obs-noise", "0", "4"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result["runs"]) == {"noise_0", "noise_4"}
    for run in result["runs"].values():
        copy = run["copy_last"]
        assert copy["still"]["frames"] + copy["moved"]["frames"] == result["held_out_windows"] * 2
        assert copy["still"]["position"] <= 2.0  # "still" means within 2 units and 2° of the last context
        assert len(run["mlp"]["moved_by_frame"]["position"]) == 2
    with pytest.raises(SystemExit, match="--frames, --steps, --width and --context must be ≥ 1"):
        script.main([str(pusht_store_32), "--frames", "0"])


def _eval_line(psnr: list[float], base: list[float], pusher: float = 1.0) -> str:
    return json.dumps({"psnr": psnr, "psnr_mean": sum(psnr) / len(psnr), "agent_err_px": [pusher] * len(psnr),
                       "baseline_copy_last": {"psnr": base, "psnr_mean": sum(base) / len(base)}}) + "\n"


def test_hold_summary_holds_each_student_to_its_teacher(tmp_path, capsys):
    hold = load_script("hold_summary")
    base = [20.0, 19.0]
    (tmp_path / "eval_teacher_short_4ddim_h2.json").write_text(_eval_line([22.0, 19.5], base))
    (tmp_path / "eval_teacher_short_4ddim_h4.json").write_text(_eval_line([22.0, 21.0, 20.0, 18.0], base * 2))
    runs = [((21.5, 19.0), 18.5), ((20.0, 19.0), 17.5)]  # gaps to the teacher: −0.5, −1.25
    for seed, (short, long_last) in enumerate(runs):
        (tmp_path / f"eval_short_causal_rcm_s{seed}_2step_h2.json").write_text(_eval_line(list(short), base))
        (tmp_path / f"eval_short_causal_rcm_s{seed}_2step_h4.json").write_text(
            _eval_line([20.0, 20.0, 20.0, long_last], base * 2, pusher=2.0))
    (tmp_path / "eval_short_sf_dmd_s0_2step_h4.json").write_text(_eval_line([20.0] * 3 + [17.0], base * 2))
    (tmp_path / "eval_short_sf_dmd_s0_2step_h2.json").write_text(_eval_line([21.0, 19.0], base))
    assert hold.main([str(tmp_path)]) == 0
    r = json.loads(capsys.readouterr().out)
    t = r["teachers"]["short"]
    assert t["worst_step_vs_copy_last"] == 0.5 and t["long_horizon"] == 4
    assert t["psnr_long_mean"] == 20.25 and t["below_copy_last_from"] == 4  # 18 < 19 at frame 4, not 20 = 20
    assert t["students"] == {"short_causal_rcm_s0_2step": -0.5, "short_causal_rcm_s1_2step": -1.25,
                             "short_sf_dmd_s0_2step": -0.75}
    assert t["arms"]["causal_rcm"] == {"seeds": 2, "psnr_mean": 19.875, "psnr_long_last": 18.0,
                                       "psnr_long_mean": 19.5, "below_copy_last_from": [4, 4],
                                       "pusher_err_long_mean": 2.0}
    assert t["arms"]["sf_dmd"]["below_copy_last_from"] == [4]
    assert r["causal_rcm_within_1.0_db_of_teacher"] is False and r["causal_rcm_worst_gap_db"] == -1.25
    assert r["causal_rcm_at_or_above_sf_dmd_long"] is True
    assert "unseen" not in r  # no evaluations on an unseen policy in this folder
    assert hold.main([str(tmp_path), "--within", "1.5"]) == 0
    assert json.loads(capsys.readouterr().out)["causal_rcm_within_1.5_db_of_teacher"] is True
    # the same checkpoints on an unseen policy: apart from the figures above, which do not change
    unseen_base = [18.0, 17.0]
    (tmp_path / "eval_teacher_short_4ddim_unseen_h2.json").write_text(_eval_line([19.0, 17.5], unseen_base))
    for seed, short in enumerate([(19.0, 17.0), (17.0, 16.0)]):  # gaps to the teacher: −0.25, −1.75
        (tmp_path / f"eval_short_causal_rcm_s{seed}_2step_unseen_h2.json").write_text(
            _eval_line(list(short), unseen_base))
    assert hold.main([str(tmp_path)]) == 0
    again = json.loads(capsys.readouterr().out)
    assert {k: v for k, v in again.items() if k != "unseen"} == r
    u = again["unseen"]["teachers"]["short"]
    assert u["psnr_mean"] == 18.25 and u["copy_last_psnr_mean"] == 17.5
    assert u["worst_step_vs_copy_last"] == 0.5
    assert u["students"] == {"short_causal_rcm_s0_2step": -0.25, "short_causal_rcm_s1_2step": -1.75}
    assert again["unseen"]["causal_rcm_within_1.0_db_of_teacher"] is False
    assert hold.main([str(tmp_path / "empty")]) == 1 and "no teacher_" in capsys.readouterr().err


def test_x0_readout_reads_the_one_pass_estimate_by_noise_time(tiny_teacher, pusht_store_32, tiny_probe, tmp_path,
                                                               capsys, one_torch_thread):
    probe = tiny_probe
    script = load_script("x0_readout")
    png = tmp_path / "x0.png"
    script.main([str(tiny_teacher), str(pusht_store_32), str(probe), "--times", "0.01", "1.5",
                 "--episodes", "3", "--windows", "4", "--png", str(png)])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    frames = result["windows"] * result["frames_per_window"]
    assert result["windows"] > 0
    for row in ("real_frames", "previous_frame", "t_0.01", "t_1.5"):
        split = result[row][str(probe)]
        assert split["still"]["frames"] + split["moved"]["frames"] == frames
    real, near = result["real_frames"][str(probe)], result["t_0.01"][str(probe)]
    # at t = 0.01 the estimate cos t·x_t − sin t·F is x0 to within 1 %: it reads as the real frame
    for part in ("still", "moved"):
        if real[part]["frames"]:
            assert abs(near[part]["position"] - real[part]["position"]) < 1.0
    assert png.stat().st_size > 0 and result["png"] == str(png)
    with pytest.raises(SystemExit, match="--times must lie in"):
        script.main([str(tiny_teacher), str(pusht_store_32), str(probe), "--times", "2.0"])


def test_state_model_planning_reads_its_context_and_plans_in_gym_pusht(pusht_store_32, tmp_path, capsys,
                                                                       monkeypatch, one_torch_thread):
    import numpy as np
    import torch

    from crcm_robotics.config import PlannerConfig
    from crcm_robotics.data.store import TrajectoryStore
    from crcm_robotics.eval.plan_bench import PushTDomain, state_cost

    monkeypatch.syspath_prepend(str(ROOT / "scripts"))  # it imports block_predictability, as a script does
    script = load_script("state_model_planning")
    store = TrajectoryStore(pusht_store_32)
    ctx, act, fut = script.windows(store, [0, 1], script.FRAMES)
    # the target encodes every state exactly
    back = script.decode(ctx, script.targets(ctx, fut, first=0), script.FRAMES, first=0)
    np.testing.assert_allclose(back[..., :4], fut[..., :4], atol=1e-6)
    np.testing.assert_allclose(np.cos(back[..., 4] - fut[..., 4]), 1.0, atol=1e-9)

    prev, cur, acts, nxt = script.step_pairs([(store, [0])], k=5)  # the step model's data and change, exactly
    assert acts.shape[1:] == (5, 2) and len(prev) == len(store.episode(0)["state"]) - 10
    stepped = script.apply_step(cur, script.step_targets(cur, nxt))
    np.testing.assert_allclose(stepped[:, :4], nxt[:, :4], atol=1e-9)
    np.testing.assert_allclose(np.cos(stepped[:, 4] - nxt[:, 4]), 1.0)
    for k in (1, 5):  # a step model that changes nothing: the current state at every frame
        still = script.StepModel(lambda x: torch.zeros(len(x), 5), np.zeros(5), np.ones(5), k)
        pred = still.predict(ctx[:3], act[:3])
        assert pred.shape == (3, script.FRAMES, 5)
        np.testing.assert_allclose(pred, np.repeat(ctx[:3, -1:], script.FRAMES, axis=1))
    with pytest.raises(ValueError, match="must divide"):
        script.StepModel(None, np.zeros(5), np.ones(5), 3)

    class PusherAtTarget:
        """A stand-in model: the pusher sits on each frame's last commanded target, the block never moves."""

        def predict(self, c: np.ndarray, a: np.ndarray) -> np.ndarray:
            out = np.repeat(c[:, -1:], script.FRAMES, axis=1).copy()
            out[..., :2] = a[:, 2 * script.SKIP - 1::script.SKIP][:, :script.FRAMES]
            return out

    class Pair:
        episode, start = 0, 10

    recorder = script.RecordingSim(None, store)
    recorder.begin(Pair)
    states = store.episode(0)["state"]
    np.testing.assert_array_equal(np.stack(recorder.states), states[5:11])
    arm = script.StateModelArm("m", PusherAtTarget(), recorder, 0.0, cfg=PlannerConfig(),
                               device=torch.device("cpu"), low=np.zeros(2, np.float32),
                               high=np.full(2, 512, np.float32), domain=PushTDomain())
    history = (np.zeros((11, 32, 32, 3), np.uint8), store.episode(0)["action"][:10].astype(np.float32))
    goal = states[10].astype(np.float64).copy()
    goal[:2] = [100.0, 200.0]
    score = arm.scorer(states[10].astype(np.float64), history, np.zeros((32, 32, 3), np.uint8), goal)
    cands = torch.full((3, 10, 2), 300.0)  # 10 steps (a budget's end): the 2nd frame is the one scored
    cands[0, 9] = torch.tensor([100.0, 200.0])  # ends on the goal's pusher
    cands[1, 4] = torch.tensor([100.0, 200.0])  # passes it at the 1st frame only
    costs = score(cands)
    expected = [goal.copy(), goal.copy(), goal.copy()]
    expected[1][:2] = expected[2][:2] = 300.0
    torch.testing.assert_close(costs, state_cost(np.stack(expected)[:, None], goal))
    assert costs[0] < costs[1] == costs[2]
    with pytest.raises(RuntimeError, match="RecordingSim.begin"):
        arm.scorer(states[20].astype(np.float64), history, np.zeros((32, 32, 3), np.uint8), goal)

    script.main([str(pusht_store_32), "--goals", "2", "--steps", "5", "--samples", "8", "--iterations", "1",
                 "--elites", "2", "--workers", "1", "--out", str(tmp_path / "smp")])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result["arms"]) == {"oracle_state", "state_mlp"} and result["goals"] == 2
    for figures in result["arms"].values():
        assert {"success_any", "success_end", "block_pos_error", "replan_ms_median"} <= set(figures)
    assert len(result["state_mlp"]["pusher_by_frame"]) == script.FRAMES
    assert len((tmp_path / "smp" / "state_mlp.goals.jsonl").read_text().splitlines()) == 2
    script.main([str(pusht_store_32), "--goals", "1", "--steps", "5", "--samples", "8", "--iterations", "1",
                 "--elites", "2", "--model", "step", "--step-size", "5", "--arms", "state_mlp",
                 "--obs-noise", "4", "--out", str(tmp_path / "smp_step"), "--save", str(tmp_path / "sm")])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["state_mlp"]["model"] == "step" and result["state_mlp"]["step_size"] == 5
    assert result["state_mlp"]["obs_noise"] == 4.0
    script.main([str(pusht_store_32), "--goals", "1", "--samples", "8", "--iterations", "1", "--elites", "2",
                 "--arms", "state_mlp", "--obs-noise", "4", "--load", str(tmp_path / "sm"),
                 "--out", str(tmp_path / "smp_load")])
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])  # the kept model plans the same
    assert again["loaded"] == str(tmp_path / "sm") and again["state_mlp"]["step_size"] == 5
    for key in ("success_end", "block_pos_error", "block_angle_error"):
        assert again["arms"]["state_mlp"][key] == result["arms"]["state_mlp"][key]
    assert again["state_mlp"]["block_mlp"] == result["state_mlp"]["block_mlp"]
    script.main([str(pusht_store_32), "--goals", "1", "--samples", "8", "--iterations", "1", "--elites", "2",
                 "--arms", "state_mlp", "--load", str(tmp_path / "sm"), "--horizon", "10",
                 "--replan-every", "5", "--out", str(tmp_path / "smp_h10")])
    short = json.loads(capsys.readouterr().out.strip().splitlines()[-1])  # candidates of 2 model frames
    assert (short["planner"]["horizon"], short["planner"]["replan_every"]) == (10, 5)
    goal = json.loads((tmp_path / "smp_h10" / "state_mlp.goals.jsonl").read_text())
    assert short["arms"]["state_mlp"]["goals"] == 1 and len(goal["replan_ms"]) == 10  # budget 50, every 5
    for bad in ("7", "30"):
        with pytest.raises(SystemExit, match=f"--horizon {bad}: a multiple of 5 from 5 to 25"):
            script.main([str(pusht_store_32), "--horizon", bad])
    kept = json.loads((tmp_path / "sm" / "step_model.json").read_text())
    (tmp_path / "sm" / "step_model.json").write_text(json.dumps(kept | {"train_episodes": [0]}))
    with pytest.raises(SystemExit, match="another store or split"):
        script.main([str(pusht_store_32), "--arms", "state_mlp", "--load", str(tmp_path / "sm")])
    with pytest.raises(SystemExit, match="only .* of the 500 goals asked for move the block"):
        script.main([str(pusht_store_32), "--goals", "500", "--arms", "state_mlp", "--steps", "1"])
    with pytest.raises(SystemExit, match="step_model.json and step_model.safetensors expected"):
        script.main([str(pusht_store_32), "--arms", "state_mlp", "--load", str(tmp_path / "none")])
    assert result["arms"]["state_mlp"]["goals"] == 1
    with pytest.raises(SystemExit, match=r"--replan-every 30: at most the horizon \(25\)"):
        script.main([str(pusht_store_32), "--replan-every", "30"])
    with pytest.raises(SystemExit, match="planner settings: elites must be in"):
        script.main([str(pusht_store_32), "--samples", "8", "--steps", "1"])
    with pytest.raises(SystemExit, match="planner settings: planner.mode='sideways' unknown"):
        script.main([str(pusht_store_32), "--mode", "sideways"])


def test_state_model_data_curve_options_choose_the_training_episodes(pusht_store_32, tmp_path, capsys,
                                                                     monkeypatch, one_torch_thread):
    from crcm_robotics.data.pusht import generate_pusht
    from crcm_robotics.data.store import TrajectoryStore

    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    script = load_script("state_model_planning")
    extra = tmp_path / "extra.zarr"  # another seed: none of its episodes is a held-out one
    generate_pusht(extra, episodes=3, size=32, seed=1, workers=1, min_steps=40, max_steps=60, progress=False)
    run = ["--goals", "1", "--steps", "2", "--samples", "8", "--iterations", "1", "--elites", "2", "--model",
           "step", "--step-size", "5", "--arms", "state_mlp"]
    fitted = {}
    for name, more in (("sub", ["--train-episodes", "4"]), ("more", ["--train-episodes", "4", "--extra-store",
                                                                       str(extra)])):
        script.main([str(pusht_store_32), *run, *more, "--out", str(tmp_path / name)])
        fitted[name] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["state_mlp"]
    assert fitted["sub"]["train_episodes"] == 4 and fitted["more"]["train_episodes"] == 4 + 3
    extra_pairs = len(script.step_pairs([(TrajectoryStore(extra), [0, 1, 2])], k=5)[0])
    assert fitted["more"]["trained_on"] == fitted["sub"]["trained_on"] + extra_pairs
    assert fitted["more"]["extra_stores"] == [str(extra)]
    for bad, message in ((["--extra-store", str(pusht_store_32)], "same content hash"),
                         (["--train-episodes", "100"], "--train-episodes 100: the split has 11 training"),
                         (["--train-episodes", "-1"], "--train-episodes -1: ≥ 1 expected"),
                         (["--model", "frames", "--extra-store", str(extra)], "adds training episodes to a step")):
        with pytest.raises(SystemExit, match=message):
            script.main([str(pusht_store_32), *run, *bad, "--out", str(tmp_path / "bad")])


def test_state_model_motion_sampling_draws_batches_by_the_blocks_travel(pusht_store_32, tmp_path, capsys,
                                                                         monkeypatch, one_torch_thread):
    import numpy as np
    import torch

    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    script = load_script("state_model_planning")
    predictability = load_script("block_predictability")
    x = np.ones((4, 2), np.float32)  # one input, four targets: the fit lands on the mean of what it is shown
    y = np.array([[1.0], [0.0], [0.0], [0.0]], np.float32)
    only_first = np.array([1.0, 0.0, 0.0, 0.0])
    drawn_net = predictability.fit(x, y, 300, 0, width=16, weights=only_first, share=1.0)
    uniform_net = predictability.fit(x, y, 300, 0, width=16)
    with torch.no_grad():  # a full share sees row 0 alone (1); a uniform draw sees all four (mean 0.25)
        drawn, uniform = drawn_net(torch.from_numpy(x[:1])).item(), uniform_net(torch.from_numpy(x[:1])).item()
    assert drawn == pytest.approx(1.0, abs=0.1) and uniform == pytest.approx(0.25, abs=0.1)
    cur = np.zeros((2, 5)); nxt = cur.copy(); nxt[0, 2:4] = (3.0, 4.0)
    np.testing.assert_allclose(script.block_travel(cur, nxt), [5.0, 0.0])

    run = ["--goals", "1", "--steps", "3", "--samples", "8", "--iterations", "1", "--elites", "2", "--model",
           "step", "--step-size", "5", "--arms", "state_mlp"]
    script.main([str(pusht_store_32), *run, "--motion-sampling", "0.5", "--save", str(tmp_path / "kept"),
                 "--out", str(tmp_path / "m")])
    fitted = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["state_mlp"]
    assert fitted["motion_sampling"] == 0.5
    by_move = fitted["block_mlp"]["last_frame_by_move"]  # every held-out window in one bin of its block's move
    assert by_move["bins"][0] == "0-1" and by_move["bins"][-1] == "80-inf"
    assert sum(by_move["windows"]) == fitted["held_out_windows"]
    assert all(p is None if n == 0 else p >= 0 for n, p in zip(by_move["windows"], by_move["position"]))
    assert json.loads((tmp_path / "kept" / "step_model.json").read_text())["motion_sampling"] == 0.5
    script.main([str(pusht_store_32), *run, "--load", str(tmp_path / "kept"), "--out", str(tmp_path / "l")])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["state_mlp"]["motion_sampling"] == 0.5
    script.main([str(pusht_store_32), *run, "--load", str(tmp_path / "kept"), "--obs-noise", "2",
                 "--out", str(tmp_path / "l2")])  # read otherwise than fitted: planned, and said on stderr
    assert "was fitted with --obs-noise 0.0; scored and planned here with --obs-noise 2.0" in capsys.readouterr().err
    for bad, message in ((["--motion-sampling", "1.5"], "--motion-sampling 1.5: a share of the batch in"),
                         (["--motion-sampling", "0.5", "--model", "frames"], "draws a step model's"),
                         (["--obs-noise", "-2"], "--obs-noise -2.0: a reading error of ≥ 0 env units"),
                         (["--obs-noise", "nan"], "--obs-noise nan: a reading error")):
        with pytest.raises(SystemExit, match=message):
            script.main([str(pusht_store_32), *run, *bad, "--out", str(tmp_path / "bad")])


def test_state_model_ensemble_ranks_by_its_members_costs(pusht_store_32, tmp_path, capsys, monkeypatch,
                                                          one_torch_thread):
    import numpy as np
    import torch

    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    script = load_script("state_model_planning")
    from crcm_robotics.data.store import TrajectoryStore

    still = script.StepModel(lambda x: torch.zeros(len(x), 5), np.zeros(5), np.ones(5), 5)
    costs = torch.tensor([[1.0, 4.0, 2.0], [3.0, 4.0, 0.0]])  # 2 members x 3 candidates
    torch.testing.assert_close(script.Ensemble([still, still]).combine(costs), torch.tensor([2.0, 4.0, 1.0]))
    # risk 1 adds the members' spread: the disputed candidate (2, 0) costs 2, no longer 1
    torch.testing.assert_close(script.Ensemble([still, still], risk=1.0).combine(costs),
                               torch.tensor([3.0, 4.0, 2.0]))
    with pytest.raises(ValueError, match="at least one member"):
        script.Ensemble([])
    ctx, act, _ = script.windows(TrajectoryStore(pusht_store_32), [0], script.FRAMES)
    assert script.Ensemble([still, still]).predict(ctx[:2], act[:2]).shape == (2, 2, script.FRAMES, 5)

    run = ["--goals", "1", "--steps", "3", "--samples", "8", "--iterations", "1", "--elites", "2", "--model",
           "step", "--step-size", "5", "--arms", "state_mlp"]
    ens = ["--ensemble", "2", "--risk", "0.5"]
    script.main([str(pusht_store_32), *run, *ens, "--save", str(tmp_path / "ens"),
                 "--out", str(tmp_path / "e")])
    fitted = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert fitted["state_mlp"]["ensemble"] == 2 and fitted["state_mlp"]["risk"] == 0.5
    assert len(fitted["state_mlp"]["members"]) == 2
    assert fitted["state_mlp"]["members"][0]["block_mlp"] == fitted["state_mlp"]["block_mlp"]
    assert fitted["state_mlp"]["members"][0] != fitted["state_mlp"]["members"][1]  # seeds 0 and 1 differ
    kept = [json.loads((tmp_path / "ens" / f"member{i}" / "step_model.json").read_text()) for i in (0, 1)]
    assert [k["seed"] for k in kept] == [0, 1]
    script.main([str(pusht_store_32), *run, *ens, "--load", str(tmp_path / "ens"),
                 "--out", str(tmp_path / "e2")])
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])  # the kept ensemble plans the same
    for key in ("success_end", "block_pos_error", "block_angle_error"):
        assert again["arms"]["state_mlp"][key] == fitted["arms"]["state_mlp"][key]
    for bad, message in ((["--ensemble", "0"], "--ensemble 0 --risk 0.0: ≥ 1 members"),
                         (["--risk", "-1"], "a finite risk ≥ 0")):
        with pytest.raises(SystemExit, match=message):
            script.main([str(pusht_store_32), *run, *bad, "--out", str(tmp_path / "bad")])
    with pytest.raises(SystemExit, match="--ensemble fits step models"):
        script.main([str(pusht_store_32), "--ensemble", "2", "--out", str(tmp_path / "bad")])


def test_state_model_history_reads_the_moves_before_the_last_speed(pusht_store_32, tmp_path, capsys, monkeypatch,
                                                                   one_torch_thread):
    """--history H: the step model's data, features and rollout carry H states K env steps apart, a kept model
    plans with the history it was fitted with, and the goals leave room for it."""
    import numpy as np
    import torch

    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    script = load_script("state_model_planning")
    from crcm_robotics.data.store import TrajectoryStore

    store = TrajectoryStore(pusht_store_32)
    states = store.episode(0)["state"].astype(np.float64)
    past, cur, _, nxt = script.step_pairs([(store, [0])], k=5, history=3)
    assert past.shape == (len(states) - 15, 2, 5)  # t from 10 (two states back) to the last with a next one
    np.testing.assert_array_equal(past[0], states[[0, 5]])
    np.testing.assert_array_equal(cur[0], states[10])
    np.testing.assert_array_equal(nxt[0], states[15])
    acts = np.zeros((4, 5, 2))
    two = script.step_features(past[:4, -1], cur[:4], acts)
    three = script.step_features(past[:4, -1], cur[:4], acts, past[:4, :-1])
    np.testing.assert_array_equal(three[:, :two.shape[1]], two)  # two states' features unchanged, 5 appended
    assert three.shape[1] == two.shape[1] + 5

    # a stand-in net that moves the pusher by its move one step further back: the window must shift each step
    def older_move(x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(len(x), 5, dtype=x.dtype)
        out[:, 0:2] = x[:, -5:-3]  # the pusher's move from the oldest state to the one before now (/ 10)
        return out

    lagged = script.StepModel(older_move, np.zeros(5), np.ones(5), 5, history=3)
    ctx = np.zeros((1, 3, 5))
    ctx[0, :, 0] = [0.0, 1.0, 3.0]  # the pusher moved 1, then 2
    pred = lagged.predict(ctx, np.zeros((1, 4 * 5, 2)))
    np.testing.assert_allclose(pred[0, :, 0], [4.0, 6.0, 7.0])  # + 1 (0 → 1), + 2 (1 → 3), + 1 (3 → 4)
    with pytest.raises(ValueError, match="reads 3 context states, got 2"):
        lagged.predict(ctx[:, 1:], np.zeros((1, 10, 2)))
    with pytest.raises(ValueError, match="≥ 2 states"):
        script.StepModel(older_move, np.zeros(5), np.ones(5), 5, history=1)
    with pytest.raises(ValueError, match="must step alike"):
        script.Ensemble([lagged, script.StepModel(older_move, np.zeros(5), np.ones(5), 5)])

    run = ["--goals", "1", "--steps", "3", "--samples", "8", "--iterations", "1", "--elites", "2", "--model",
           "step", "--step-size", "5", "--arms", "state_mlp"]
    script.main([str(pusht_store_32), *run, "--history", "3", "--save", str(tmp_path / "h3"),
                 "--out", str(tmp_path / "h")])
    fitted = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert fitted["state_mlp"]["history"] == 3
    assert json.loads((tmp_path / "h3" / "step_model.json").read_text())["history"] == 3
    [goal] = [json.loads(line) for line in (tmp_path / "h" / "state_mlp.goals.jsonl").read_text().splitlines()]
    assert goal["start"] >= 10  # two model steps of context before the start
    script.main([str(pusht_store_32), *run[:-4], "--arms", "state_mlp", "--load", str(tmp_path / "h3"),
                 "--out", str(tmp_path / "h2")])
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["state_mlp"]["history"] == 3  # the kept model's own, not the option's default
    for key in ("success_end", "block_pos_error"):
        assert again["arms"]["state_mlp"][key] == fitted["arms"]["state_mlp"][key]
    for bad, message in ((["--history", "1"], "--history 1: ≥ 2 states"),
                         (["--model", "frames", "--history", "3"], "only for a step model being fitted")):
        with pytest.raises(SystemExit, match=message):
            script.main([str(pusht_store_32), *run, *bad, "--out", str(tmp_path / "bad")])
    with pytest.raises(SystemExit, match="a --load model reads what it was fitted with"):
        script.main([str(pusht_store_32), *run[:-4], "--arms", "state_mlp", "--load", str(tmp_path / "h3"),
                     "--history", "3", "--out", str(tmp_path / "bad")])


def test_state_model_collect_writes_the_planners_episodes_to_a_store_a_later_model_fits_on(
        pusht_store_32, tiny_teacher, tmp_path, capsys, monkeypatch, one_torch_thread):
    """--collect N: the step model plans N training goals and every executed episode (its logged context, then
    the planner's steps, each state with the frame drawn at it and the action taken from it) lands in a new
    store, which --extra-store then adds to a later model's training pairs."""
    import numpy as np

    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    script = load_script("state_model_planning")
    from crcm_robotics.data.pusht_sim import PushTSim
    from crcm_robotics.data.store import TrajectoryStore

    run = ["--goals", "1", "--steps", "3", "--samples", "8", "--iterations", "1", "--elites", "2", "--model",
           "step", "--step-size", "5", "--arms", "state_mlp"]
    collected = tmp_path / "collected.zarr"
    script.main([str(pusht_store_32), *run, "--collect", "2", "--collect-out", str(collected),
                 "--out", str(tmp_path / "c")])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    info = report["collected"]
    assert info["episodes"] == 2 and info["store"] == str(collected)
    made, source = TrajectoryStore(collected), TrajectoryStore(pusht_store_32)
    assert made.num_episodes == 2 and made.image_shape == source.image_shape
    attrs = made.attrs["pusht"]
    assert attrs["behavior"] == "planner" and attrs["collected_from_hash"] == source.content_hash()
    assert attrs["reset_at"] == 5 and len(attrs["sources"]) == 2
    assert (tmp_path / "c" / "collect.goals.jsonl").read_text().count("\n") == 2
    budget = report["budget"]
    assert list(made.episode_lengths()) == [5 + budget] * 2  # 5 logged steps of context, then the planner's
    assert info["steps"] == 2 * (5 + budget)
    ep = made.episode(0)
    episode, start = attrs["sources"][0]  # the first 5 steps and the start are the logged ones, as logged
    first = source.episode_bounds(episode)[0] + start
    np.testing.assert_array_equal(ep["state"][:6], source.state(first - 5, first + 1))
    np.testing.assert_array_equal(ep["action"][:5], source.action(first - 5, first))
    np.testing.assert_array_equal(ep["frames"][:6], source.frames(first - 5, first + 1))
    sim = PushTSim(made.image_shape[0])
    try:  # each step's state and action give the next stored state: the planner's own steps, replayed
        sim.reset_to(ep["state"][5].astype(np.float64))
        for i in range(5, 5 + budget - 1):
            frame, state = sim.step(ep["action"][i])
            np.testing.assert_allclose(state, ep["state"][i + 1], atol=1e-3)
            np.testing.assert_array_equal(frame, ep["frames"][i + 1])
    finally:
        sim.close()
    # a later model fits on the training episodes and the planner's: more pairs than without them
    script.main([str(pusht_store_32), *run, "--extra-store", str(collected), "--out", str(tmp_path / "x")])
    with_collected = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["state_mlp"]
    # each collected episode gives a pair at every step with a state 5 back and one 5 on: 55 − 2 × 5
    assert with_collected["trained_on"] == report["state_mlp"]["trained_on"] + 2 * (5 + budget - 2 * 5)
    # a store collected from episodes that another split holds out is refused as training data there
    import shutil

    other_split = tmp_path / "other_split"
    shutil.copytree(tiny_teacher, other_split)
    meta = json.loads((other_split / "meta.json").read_text())
    meta["split"] = {"train": [e for e in range(source.num_episodes) if e != episode], "val": [episode]}
    (other_split / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(SystemExit, match=f"episodes \\[{episode}.*held out here"):
        script.main([str(pusht_store_32), *run, "--goals-from", str(other_split), "--extra-store", str(collected),
                     "--out", str(tmp_path / "leak")])
    for bad, message in ((["--collect", "2"], "--collect needs --collect-out STORE"),
                         (["--collect-out", str(tmp_path / "new.zarr")], "--collect-out needs --collect N"),
                         (["--collect", "-1"], "a number of goals ≥ 1 expected"),
                         (["--collect", "1", "--collect-out", str(collected)], "exists"),
                         (["--collect", "1", "--collect-out", str(tmp_path / "n.zarr"), "--model", "frames"],
                          "plans with the learnt step model.*got --arms state_mlp --model frames")):
        with pytest.raises(SystemExit, match=message):
            script.main([str(pusht_store_32), *run, *bad, "--out", str(tmp_path / "bad")])


def test_block_error_oracle_makes_the_pushed_block_wrong_by_its_rule(pusht_store_32, tmp_path, capsys,
                                                                    monkeypatch, one_torch_thread):
    import torch

    from crcm_robotics.config import PlannerConfig
    from crcm_robotics.eval.plan_bench import PushTDomain

    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    script = load_script("state_model_planning")
    start = np.array([100.0, 100.0, 200.0, 200.0, 0.5])
    final = np.array([[110.0, 100.0, 240.0, 230.0, 0.9],   # the block moved 50 units and turned 0.4 rad
                      [150.0, 150.0, 200.0, 200.0, 0.5]])  # it stayed put
    actions = np.full((2, 25, 2), 300.0)

    def oracle(text: str):
        return script.BlockErrorOracle("o", script.parse_block_error(text), pool=None, cfg=PlannerConfig(),
                                       device=torch.device("cpu"), low=np.zeros(2, np.float32),
                                       high=np.full(2, 512, np.float32), domain=PushTDomain())

    half = oracle("damp:0.5").wrong(start, final, actions, None)
    np.testing.assert_allclose(half[0], [110.0, 100.0, 220.0, 215.0, 0.7])  # half the move and the turn
    np.testing.assert_allclose(half[1], final[1])  # a still block has nothing to take away
    np.testing.assert_allclose(oracle("damp:1").wrong(start, final, actions, None)[:, 2:], [start[2:]] * 2)
    np.testing.assert_allclose(oracle("noise:0").wrong(start, final, actions, None), final)
    noisy_arm = oracle("noise:0.5")
    a, b = (noisy_arm.wrong(start, final, actions, None) for _ in range(2))
    assert not np.allclose(a[0], b[0])  # drawn anew for every candidate
    np.testing.assert_allclose(a[:, :2], final[:, :2])  # the pusher is left exact
    np.testing.assert_allclose(a[1], final[1])  # the error scales with the move: none for a still block
    fixed = oracle("fixed:0.5")
    projection = np.random.default_rng(0).standard_normal((50, 3))
    np.testing.assert_allclose(fixed.wrong(start, final, actions, projection),
                               fixed.wrong(start, final, actions, projection))  # a function of the actions
    other = fixed.wrong(start, final, actions + 50.0, projection)  # other actions, another error
    assert not np.allclose(other[0], final[0]) and not np.allclose(other[0], fixed.wrong(
        start, final, actions, projection)[0])
    counted = fixed.injected_error()
    assert counted["moved_candidates"] == 4  # four calls, each counting its moved candidate only
    assert counted["kind"] == "fixed" and counted["position"] > 0
    np.testing.assert_allclose(oracle("damp:0.5:1").wrong(start, final, actions, None)[0, 2:],
                               [220.0, 215.0, 0.5])  # half the move, none of the turn
    assert script.parse_block_error("noise:0.5:2") == ("noise", 0.5, 2.0)
    assert script.block_error_arm_name("noise", 0.5, 2.0) == "oracle_noise0.5_a2"
    for bad in ("damp:1.5", "damp:0.5:2", "wobble:0.5", "noise:-1", "noise", "fixed:nan", "noise:1:2:3"):
        with pytest.raises(SystemExit, match="KIND:SIZE.* expected"):
            script.parse_block_error(bad)

    script.main([str(pusht_store_32), "--goals", "1", "--samples", "8", "--iterations", "1", "--elites", "2",
                 "--workers", "1", "--arms", "--block-error", "damp:1", "--block-error", "fixed:0.5",
                 "--out", str(tmp_path / "be")])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result["arms"]) == {"oracle_damp1", "oracle_fixed0.5"}
    copy = result["arms"]["oracle_damp1"]["held_out_block_error"]
    assert copy["this_rule"] == copy["copy_last"]  # a block that never moves is copy-last's
    assert result["arms"]["oracle_fixed0.5"]["injected_block_error"]["moved_candidates"] > 0
    assert (tmp_path / "be" / "oracle_fixed0.5.goals.jsonl").is_file()
    assert (result["seed"], result["goal_seed"]) == (0, 0)

    def goals_at(*seeds: str) -> tuple[list[tuple[int, int]], dict]:
        out = tmp_path / ("seeds" + "_".join(seeds))
        script.main([str(pusht_store_32), "--goals", "2", "--samples", "8", "--iterations", "1", "--elites", "2",
                     "--workers", "1", "--arms", "--block-error", "damp:0.5", *seeds, "--out", str(out)])
        run = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        lines = [json.loads(x) for x in (out / "oracle_damp0.5.goals.jsonl").read_text().splitlines()]
        return [(x["episode"], x["start"]) for x in lines], run

    base, _ = goals_at()
    same, run = goals_at("--seed", "1", "--goal-seed", "0")  # another seed on the same goals
    assert same == base and (run["seed"], run["goal_seed"]) == (1, 0)
    _, run = goals_at("--seed", "1")  # as before --goal-seed: --seed also draws the goals
    assert run["goal_seed"] == 1
    with pytest.raises(SystemExit, match="no arm"):
        script.main([str(pusht_store_32), "--arms"])
    for twice in (["--arms", "--block-error", "damp:0.5", "--block-error", "damp:0.50"],
                  ["--arms", "oracle_state", "oracle_state"]):
        with pytest.raises(SystemExit, match="each once"):
            script.main([str(pusht_store_32), *twice, "--goals", "1", "--out", str(tmp_path / "twice")])


def test_plot_planning_models_reads_bench_and_state_model_runs(tmp_path, capsys):
    script = load_script("plot_planning_models")
    arm = {"success_end": 0.4, "success_any": 0.5}
    (tmp_path / "bench.json").write_text("progress line\n" + json.dumps({"arms": {"student": arm}}) + "\n")
    by_frame = {"position": [8.0, 14.0], "angle_deg": [4.0, 7.0]}
    state = {"arms": {"state_mlp": arm}, "state_mlp": {"block_mlp": {"moved_by_frame": by_frame},
                                                       "block_copy_last": {"moved_by_frame": by_frame}}}
    (tmp_path / "state.json").write_text(json.dumps(state, indent=1))
    two = {"summary": {"arms": {"oracle": arm, "model": arm}}}
    (tmp_path / "results.json").write_text(json.dumps(two))
    out = tmp_path / "plot.png"
    script.main([f"pixel={tmp_path / 'bench.json'}", f"step={tmp_path / 'state.json'}",
                 f"bench={tmp_path / 'results.json'}", f"one={tmp_path / 'results.json'}#oracle",
                 "--out", str(out)])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["bars"] == 5 and line["curves"] == ["step", "copy last"] and out.stat().st_size > 0
    script.main([f"step={tmp_path / 'state.json'}", "--bars-only", "--out", str(tmp_path / "bars.png")])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["bars"] == 1 and line["curves"] == []
    # arms cut at different goals: each bar's goal count is read, and named on its label
    cut = {"arms": {"student": {**arm, "goals": 45}, "teacher": {**arm, "goals": 27}}}
    (tmp_path / "cut.json").write_text(json.dumps(cut))
    script.main([f"cut={tmp_path / 'cut.json'}", "--bars-only", "--out", str(tmp_path / "cut.png")])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["goals"] == [45, 27] and line["labels"] == ["cut/student (45 goals)", "cut/teacher (27 goals)"]
    assert line["xlabel"] == "success (share of the goals each arm planned)"
    script.main([f"pixel={tmp_path / 'bench.json'}", "--bars-only", "--out", str(tmp_path / "one.png")])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])  # no goal count given: none named
    assert line["labels"] == ["pixel"] and line["xlabel"] == "success", line
    with pytest.raises(SystemExit, match="no arm 'nope'"):
        script.main([f"x={tmp_path / 'results.json'}#nope", "--out", str(out)])
    with pytest.raises(SystemExit, match="LABEL=PATH or LABEL=PATH#ARM expected"):
        script.main([str(tmp_path / "bench.json"), "--out", str(out)])
    (tmp_path / "bad.json").write_text(json.dumps({"arms": {}}))
    with pytest.raises(SystemExit, match="'arms' object expected"):
        script.main([f"x={tmp_path / 'bad.json'}", "--out", str(out)])


def test_plot_block_error_tolerance_places_each_arm_at_its_held_out_error(tmp_path, capsys):
    script = load_script("plot_block_error_tolerance")

    def rule(kind: str, size: float, angle: float, position: float, degrees: float, success: float) -> dict:
        return {"success_end": success, "goals": 50,
                "injected_block_error": {"kind": kind, "size": size, "angle_size": angle},
                "held_out_block_error": {"this_rule": {"moved": {"position": position, "angle_deg": degrees}}}}

    run = tmp_path / "results.json"
    run.write_text(json.dumps({"arms": {"oracle_state": {"success_end": 0.96, "goals": 50},
                                        "oracle_damp0.5": rule("damp", 0.5, 0.5, 29.0, 8.9, 0.5),
                                        "oracle_noise0.5_a2": rule("noise", 0.5, 2.0, 25.8, 26.6, 0.8)}}))
    out = tmp_path / "tolerance.png"
    script.main([str(run), "pixel students=25.6/25.5/0.74", "--out", str(out)])
    points = {p["label"]: p for p in json.loads(capsys.readouterr().out)["points"]}
    assert out.stat().st_size > 0
    assert points["simulator (exact)"]["position"] == 0.0 and points["simulator (exact)"]["success"] == 0.96
    assert points["damp 0.5"]["uniform"] and (points["damp 0.5"]["position"], points["damp 0.5"]["success"]) == (
        29.0, 0.5)
    assert not points["noise 0.5, angle 2"]["uniform"] and points["noise 0.5, angle 2"]["angle"] == 26.6
    assert points["pixel students"]["kind"] == "recorded" and points["pixel students"]["success"] == 0.74
    assert not any(p["apart"] for p in points.values())  # a run that names no interval is not set apart
    for every, success in ((10, 0.84), (5, 0.98)):  # the same rule at two intervals: the usual one and another
        (tmp_path / f"r{every}.json").write_text(json.dumps({
            "planner": {"replan_every": every},
            "arms": {"oracle_fixed0.25": rule("fixed", 0.25, 0.25, 7.9, 2.8, success)}}))
    script.main([str(tmp_path / "r10.json"), str(tmp_path / "r5.json"), "--out", str(out)])
    points = {p["label"]: p for p in json.loads(capsys.readouterr().out)["points"]}
    assert set(points) == {"fixed 0.25", "fixed 0.25, replanned every 5"}
    assert not points["fixed 0.25"]["apart"] and points["fixed 0.25, replanned every 5"]["apart"]
    assert points["fixed 0.25, replanned every 5"]["success"] == 0.98
    script.main([str(tmp_path / "r10.json"), str(tmp_path / "r5.json"), "--replan-every", "5", "--out", str(out)])
    assert {p["label"] for p in json.loads(capsys.readouterr().out)["points"]} == {
        "fixed 0.25, replanned every 10", "fixed 0.25"}
    plane = tmp_path / "plane.png"  # the error plane: the runs at --replan-every and the recorded models only
    script.main([str(tmp_path / "r10.json"), str(tmp_path / "r5.json"), "pixel students=25.6/25.5/0.74",
                 "--replan-every", "5", "--out", str(out), "--map-out", str(plane)])
    printed = json.loads(capsys.readouterr().out)
    assert printed["map_out"] == str(plane) and plane.stat().st_size > 0
    assert {p["label"]: p["on_map"] for p in printed["points"]} == {
        "fixed 0.25, replanned every 10": False, "fixed 0.25": True, "pixel students": True}
    # each other interval a line of its own, shortest first; the usual one solid even where no run has it
    assert script.series_styles([{"series": None}]) == [(None, "-")]
    assert script.series_styles([{"series": 5}, {"series": 2}, {"series": 5}]) == [(None, "-"), (2, "--"), (5, ":")]
    # the logistic fit recovers a known surface from held counts, and predicts at a recorded model's errors
    truth = (4.0, -0.1, -0.08)
    grid = {f"oracle_noise{size}_a{angle}": rule("noise", size, angle, position, degrees, script.fitted_success(
                truth, position, degrees)) for size, angle, position, degrees in (
                (0.125, 0.75, 6.4, 10.7), (0.25, 0.75, 12.9, 10.7), (0.5, 0.75, 25.7, 10.7),
                (0.125, 1.5, 6.4, 20.8), (0.5, 2.0, 25.7, 26.7))}
    for arm in grid.values():
        arm["goals"] = 10**6
    (tmp_path / "grid.json").write_text(json.dumps({"planner": {"replan_every": 5}, "arms": grid}))
    script.main([str(tmp_path / "grid.json"), "teacher=24.6/19.0/0.83", "--replan-every", "5", "--out", str(out),
                 "--map-out", str(plane), "--fit-kind", "noise"])
    fit = json.loads(capsys.readouterr().out)["fit"]
    assert fit["runs"] == 5 and fit["goals"] == 5 * 10**6 and fit["degrees_of_freedom"] == 2
    assert fit["deviance"] < 0.01  # the counts lie on the surface
    assert [fit["coef"][k] for k in ("intercept", "per_unit", "per_degree")] == pytest.approx(truth, abs=1e-3)
    assert fit["predicted"] == {"teacher": pytest.approx(script.fitted_success(truth, 24.6, 19.0), abs=1e-3)}
    grid["oracle_noise0.125_a1.5"]["success_end"] = 0.5  # one run off the surface: the deviance says so
    (tmp_path / "grid.json").write_text(json.dumps({"planner": {"replan_every": 5}, "arms": grid}))
    script.main([str(tmp_path / "grid.json"), "--replan-every", "5", "--out", str(out), "--map-out", str(plane),
                 "--fit-kind", "noise"])
    assert json.loads(capsys.readouterr().out)["fit"]["deviance"] > 1000
    with pytest.raises(SystemExit, match="--target 1.0: a success strictly between 0 and 1"):
        script.main([str(tmp_path / "grid.json"), "--out", str(out), "--map-out", str(plane), "--target", "1"])
    with pytest.raises(SystemExit, match="give --map-out too"):
        script.main([str(tmp_path / "grid.json"), "--out", str(out), "--fit-kind", "noise"])
    with pytest.raises(SystemExit, match="at least 3 expected"):
        script.main([str(tmp_path / "r5.json"), "--replan-every", "5", "--out", str(out), "--map-out", str(plane),
                     "--fit-kind", "fixed"])
    for planner in ({"replan_every": "5"}, {"replan_every": 0}, "every 5"):  # a run's own interval checked too
        (tmp_path / "bad.json").write_text(json.dumps({"planner": planner, "arms": {
            "oracle_fixed0.25": rule("fixed", 0.25, 0.25, 7.9, 2.8, 0.9)}}))
        with pytest.raises(SystemExit, match="planner.replan_every="):
            script.main([str(tmp_path / "bad.json"), "--out", str(out)])
    with pytest.raises(SystemExit, match="--replan-every 0"):
        script.main([str(tmp_path / "r10.json"), "--replan-every", "0", "--out", str(out)])
    for bad, message in (("pixel=25/0.7", "LABEL=POSITION/ANGLE/SUCCESS expected"),
                         ("pixel=25/25/7", "a success in"), ("=1/2/0.5", "a success in")):
        with pytest.raises(SystemExit, match=message):
            script.main([bad, "--out", str(out)])
    (tmp_path / "odd.json").write_text(json.dumps({"arms": {"state_mlp": {"success_end": 0.7, "goals": 1}}}))
    with pytest.raises(SystemExit, match="has no held-out block error"):
        script.main([str(tmp_path / "odd.json"), "--out", str(out)])


def test_plot_pushed_block_reads_motion_lines_and_recorded_figures(tmp_path, capsys):
    script = load_script("plot_pushed_block")

    def moved(position: float, angle: float) -> dict:
        return {"moved": {"frames": 4, "position": position, "angle_deg": angle}}

    line = {"split": "val", "real_frames": moved(1.1, 0.6), "copy_last": moved(59.7, 17.3),
            "steps_4": moved(31.8, 41.0)}
    (tmp_path / "bme.json").write_text(json.dumps(line) + "\n")
    out = tmp_path / "block.png"
    script.main([f"run={tmp_path / 'bme.json'}", "earlier=36.2/39.6", "--out", str(out)])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["rows"] == [{"label": "run", "position": 31.8, "angle_deg": 41.0},
                               {"label": "earlier", "position": 36.2, "angle_deg": 39.6}] and out.stat().st_size > 0
    with pytest.raises(SystemExit, match="neither a file nor POSITION/ANGLE"):
        script.main(["x=nowhere.json", "--out", str(out)])
    (tmp_path / "other.json").write_text(json.dumps({"steps_2": {}}))
    with pytest.raises(SystemExit, match="no steps_4.moved figures"):
        script.main([f"x={tmp_path / 'other.json'}", "--out", str(out)])
    with pytest.raises(SystemExit, match="expected LABEL=FILE or LABEL=POSITION/ANGLE"):
        script.main(["36.2/39.6", "--out", str(out)])
    timed = tmp_path / "timed.png"  # the same items as points against their training seconds
    script.main([f"run={tmp_path / 'bme.json'}", "earlier=36.2/39.6", "--seconds", "480", "454", "--out", str(timed)])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [(r["label"], r["seconds"]) for r in printed["rows"]] == [("run", 480.0), ("earlier", 454.0)]
    assert timed.stat().st_size > 0
    for seconds in (["480"], ["480", "0"]):
        with pytest.raises(SystemExit, match="expected 2 positive training times, one per item"):
            script.main([f"run={tmp_path / 'bme.json'}", "earlier=36.2/39.6", "--seconds", *seconds, "--out", str(out)])


def test_plot_pushed_block_by_step_reads_errors_out_files_and_recorded_series(tmp_path, capsys, monkeypatch):
    """--by-step: each predicted frame's mean over the frames where the block moved, from an --errors-out file;
    a recorded series as given; bad files and uneven series refused."""
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))  # it reads the npz with compare_block_errors, as a script does
    script = load_script("plot_pushed_block")
    moved = np.array([[True, False, True], [True, True, False]])
    position = np.array([[2.0, 99.0, 6.0], [4.0, 8.0, 99.0]])  # 99: frames where the block did not move
    true = np.zeros((2, 3, 5))  # the true states every --errors-out file holds
    np.savez(tmp_path / "errors.npz", true=true, moved=moved, steps_4_position=position, steps_4_angle=position / 2,
             copy_last_position=position * 3, copy_last_angle=position)
    out = tmp_path / "by_step.png"
    script.main(["--by-step", f"run={tmp_path / 'errors.npz'}", "earlier=1,2,3/4,5,6", "--out", str(out)])
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["rows"]
    assert rows == [{"label": "run", "position": [3.0, 8.0, 6.0], "angle_deg": [1.5, 4.0, 3.0]},
                    {"label": "earlier", "position": [1.0, 2.0, 3.0], "angle_deg": [4.0, 5.0, 6.0]}]
    assert out.stat().st_size > 0
    np.savez(tmp_path / "no_copy.npz", true=true, moved=moved, steps_4_position=position, steps_4_angle=position)
    still = moved.copy()
    still[:, 1] = False
    np.savez(tmp_path / "still.npz", true=true, moved=still, steps_4_position=position, steps_4_angle=position,
             copy_last_position=position, copy_last_angle=position)
    (tmp_path / "line.json").write_text("{}\n")  # a block_motion_error.py JSON line, not its --errors-out
    for item, message in ((f"x={tmp_path / 'no_copy.npz'}", "no copy_last_position, copy_last_angle; expected a block_motion_error"),
                          (f"x={tmp_path / 'line.json'}", r"not a .*\(numpy could not open it as one: ValueError\)"),
                          (f"x={tmp_path / 'still.npz'}", "a predicted frame where the block never moved"),
                          ("x=1,2,3/4,5", "3 positions and 2 angles"), ("x=1,2/a,b", "neither a file nor")):
        with pytest.raises(SystemExit, match=message):
            script.main(["--by-step", item, "--out", str(out)])
    with pytest.raises(SystemExit, match="expected one of them"):
        script.main(["--by-step", "x=1/2", "--seconds", "3", "--out", str(out)])


def test_plot_plan_tradeoff_reads_runs_their_alone_time_and_recorded_figures(tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))  # it imports plot_planning_models, as a script does
    script = load_script("plot_plan_tradeoff")
    run = {"bench": "plan", "arms": {"model": {"goals": 50, "success_end": 0.38, "replan_ms_median": 712.8}}}
    (tmp_path / "plan.json").write_text(json.dumps(run) + "\n")
    out = tmp_path / "tradeoff.png"
    script.main([f"shared={tmp_path / 'plan.json'}", f"alone={tmp_path / 'plan.json'}@343.3", "recorded=0.80/642",
                 "--teacher-ms", "1075.85", "--out", str(out)])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["rows"] == [{"label": "shared", "success_end": 0.38, "replan_ms": 712.8},
                               {"label": "alone", "success_end": 0.38, "replan_ms": 343.3},
                               {"label": "recorded", "success_end": 0.8, "replan_ms": 642.0}]
    assert out.stat().st_size > 0
    for item, message in ((f"x={tmp_path / 'plan.json'}@fast", "MS 'fast' is not a positive number"),
                          ("x=nowhere.json@300", "'nowhere.json' is not a file"),
                          ("x=1.2/300", "success '1.2' is not a fraction"),
                          ("x=0.5/-3", "MS '-3' is not a positive number"),
                          ("x=nowhere.json", "neither a file nor SUCCESS/MS"),
                          ("0.5/300", "expected LABEL=FILE")):
        with pytest.raises(SystemExit, match=message):
            script.main([item, "--out", str(out)])
    run["arms"]["other"] = run["arms"]["model"]
    (tmp_path / "two.json").write_text(json.dumps(run))
    with pytest.raises(SystemExit, match="with one arm expected"):
        script.main([f"x={tmp_path / 'two.json'}", "--out", str(out)])
    for name, text in (("garbage.json", "not json\n"), ("empty.json", "")):  # a file that is no run: one line
        (tmp_path / name).write_text(text)
        with pytest.raises(SystemExit, match="a planning run's JSON with an 'arms' object expected"):
            script.main([f"x={tmp_path / name}", "--out", str(out)])
    # labels of points near in x are spread at least `gap` apart, from the lowest up; a point far away keeps its own
    heights = script.label_heights([(343, 0.38), (344, 0.36), (345, 0.42), (1074, 0.37)], x_near=100, gap=0.04)
    assert heights == pytest.approx([0.40, 0.36, 0.44, 0.37])


def _goal_line(episode: int, held: bool, error: float = 10.0) -> str:
    return json.dumps({"episode": episode, "start": 3, "success_any": held, "success_end": held,
                       "block_pos_error": error, "replan_ms": [100.0, 300.0]})


def test_plan_goal_pairs_counts_discordant_goals_and_their_sign_test(tmp_path, capsys):
    pairs = load_script("plan_goal_pairs")
    assert pairs.sign_test(9, 3) == pytest.approx(0.146, abs=1e-3)  # the eighth session's exploration split
    assert pairs.sign_test(0, 0) == 1.0 and pairs.sign_test(5, 0) == pytest.approx(0.0625)
    a, b = tmp_path / "a" / "teacher.goals.jsonl", tmp_path / "b" / "teacher.goals.jsonl"
    a.parent.mkdir(), b.parent.mkdir()
    # goal 0 both held, 1-3 only a, 4 only b, 5 neither; b was cut before goal 5 and ran one goal a did not
    a.write_text("\n".join(_goal_line(e, e in (0, 1, 2, 3)) for e in range(6)) + "\n")
    b.write_text("\n".join(_goal_line(e, e in (0, 4, 7)) for e in (0, 1, 2, 3, 4, 7)) + "\n")
    assert pairs.main([str(a), str(b)]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["arms"]["a/teacher"] == {"goals": 6, "success_any": 0.6667, "success_end": 0.6667,
                                        "block_pos_error_mean": 10.0, "replan_ms_median": 200.0}
    assert out["pairs"]["a/teacher vs b/teacher"] == {"goals": 5, "held_a": 4, "held_b": 2, "only_a": 3,
                                                      "only_b": 1, "sign_test_p": 0.625}
    a.write_text('{"episode": 1}\n')
    assert pairs.main([str(a)]) == 2
    assert "lacks start, success_any" in capsys.readouterr().err
    assert pairs.main([str(tmp_path / "none.goals.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_plan_goal_pairs_splits_each_arm_into_named_goals_and_the_rest(tmp_path, capsys):
    """--split-goals counts each arm's goals held among the named goals and among the rest (an arm cut short
    counts the goals it finished); a malformed or unknown goal is a one-line error naming the option."""
    pairs = load_script("plan_goal_pairs")
    a, b = tmp_path / "a" / "teacher.goals.jsonl", tmp_path / "b" / "teacher.goals.jsonl"
    a.parent.mkdir(), b.parent.mkdir()
    a.write_text("\n".join(_goal_line(e, e in (0, 2, 4)) for e in range(6)) + "\n")
    b.write_text("\n".join(_goal_line(e, e in (1, 3)) for e in range(4)) + "\n")  # cut after goal 3
    assert pairs.main([str(a), str(b), "--split-goals", "0:3,1:3,5:3"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["split"]["a/teacher"] == {"named": {"goals": 3, "held": 1}, "rest": {"goals": 3, "held": 2}}
    assert out["split"]["b/teacher"] == {"named": {"goals": 2, "held": 1}, "rest": {"goals": 2, "held": 1}}
    for bad, said in (("0:3,x", "--split-goals entry 'x': expected EPISODE:START"),
                      ("9:3", "--split-goals 9:3: not among the 6 goals given")):
        assert pairs.main([str(a), "--split-goals", bad]) == 2
        assert said in capsys.readouterr().err
    with pytest.raises(SystemExit):
        pairs.main([str(a), "--per-goal", "--split-goals", "0:3"])
    assert "leave out --per-goal" in capsys.readouterr().err


def test_plan_goal_pairs_compares_error_removed_and_block_angle_on_the_common_goals(tmp_path, capsys):
    """Where both arms' lines carry them, each arm's mean error removed and block angle error (degrees) on
    the goals both finished only; a goal only one arm ran does not count."""
    pairs = load_script("plan_goal_pairs")

    def line(episode: int, removed: float, angle: float) -> str:
        return json.dumps({**json.loads(_goal_line(episode, False)), "error_removed": removed,
                           "block_angle_error": angle})

    a, b = tmp_path / "a" / "m.goals.jsonl", tmp_path / "b" / "m.goals.jsonl"
    a.parent.mkdir(), b.parent.mkdir()
    a.write_text("\n".join([line(0, 0.2, 0.1), line(1, 0.4, 0.3), line(2, 0.9, 3.0)]) + "\n")  # b lacks goal 2
    b.write_text("\n".join([line(0, 0.6, 0.2), line(1, 0.0, 0.0)]) + "\n")
    assert pairs.main([str(a), str(b)]) == 0
    text = capsys.readouterr().out
    pair = json.loads(text.strip().splitlines()[-1])["pairs"]["a/m vs b/m"]
    assert (pair["error_removed_a"], pair["error_removed_b"]) == (0.3, 0.3)
    assert (pair["block_angle_deg_a"], pair["block_angle_deg_b"]) == (11.5, 5.7)
    assert "error removed 0.3 / 0.3, block angle error 11.5 / 5.7 deg" in text


def test_plan_goal_pairs_refuses_one_episode_and_start_with_two_goal_states(tmp_path, capsys):
    """Arms planned on stores that differ (one store rebuilt on another CPU) give one (episode, start) other goal
    states: pairing or pooling them is refused, naming the goal; states that agree to the lines' rounding pair."""
    pairs = load_script("plan_goal_pairs")

    def line(episode: int, goal_state: list[float]) -> str:
        return json.dumps({**json.loads(_goal_line(episode, True)), "goal_state": goal_state})

    a, b = tmp_path / "a" / "m.goals.jsonl", tmp_path / "b" / "m.goals.jsonl"
    a.parent.mkdir(), b.parent.mkdir()
    a.write_text(line(0, [100.0, 200.0, 250.0, 300.0, 0.5]) + "\n" + line(1, [1.0, 2.0, 3.0, 4.0, 0.1]) + "\n")
    b.write_text(line(0, [100.0, 200.0, 250.0, 300.00004, 0.5]) + "\n" + line(1, [1.0, 2.0, 9.0, 4.0, 0.1]) + "\n")
    for flags in ([], ["--per-goal"]):
        assert pairs.main([*flags, str(a), str(b)]) == 2
        err = capsys.readouterr().err
        assert "goal (episode 1, start 3)" in err and "stores that differ" in err
    b.write_text(line(0, [100.0, 200.0, 250.0, 300.00004, 0.5]) + "\n")  # the same goal to the rounding
    assert pairs.main([str(a), str(b)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["pairs"]["a/m vs b/m"]["goals"] == 1
    b.write_text(json.dumps({**json.loads(_goal_line(0, True)), "goal_state": "far"}) + "\n")
    assert pairs.main([str(a), str(b)]) == 2
    assert "has goal_state 'far': expected a list of numbers" in capsys.readouterr().err


def test_plan_goal_pairs_repeats_sets_each_run_against_the_others_coin_flips(tmp_path, capsys):
    """--repeats: on the goals every run finished, the counts' mean and spread, the spread the goals' held rates
    predict, and each run's count against the other runs' rates (leave one out); fewer than three runs, no
    common goal or another mode beside it are refused in one line."""
    pairs = load_script("plan_goal_pairs")
    held = {"a": (1, 1, 0, 0), "b": (1, 0, 1, 0), "c": (1, 1, 1, 0), "d": (1, 1, 1, 1)}
    files = []
    for name, goals in held.items():
        path = tmp_path / name / "teacher.goals.jsonl"
        path.parent.mkdir()
        extra = [_goal_line(9, True)] if name == "d" else []  # a goal only d finished does not count
        path.write_text("\n".join([_goal_line(e, bool(h)) for e, h in enumerate(goals)] + extra) + "\n")
        files.append(str(path))
    assert pairs.main(["--repeats", *files]) == 0
    text = capsys.readouterr().out
    table = json.loads(text.strip().splitlines()[-1])
    assert (table["runs"], table["goals"]) == (4, 4)
    assert table["counts"] == {"a/teacher": 2, "b/teacher": 2, "c/teacher": 3, "d/teacher": 4}
    assert (table["count_mean"], table["count_sd"]) == (2.75, 0.96)
    # rates 1, 3/4, 3/4, 1/4: sqrt(3 * 3/16 * 4/3) = 0.866
    assert table["coin_flip_sd"] == 0.87
    assert (table["held_by_every_run"], table["held_by_some"], table["held_by_none"]) == (1, 3, 0)
    # d against a, b, c: rates 1, 2/3, 2/3, 0 expect 7/3; spread sqrt(2 * 2/9 * 3/2 * (1 + 1/3)) = 0.943
    assert table["leave_one_out"]["d/teacher"] == {"held": 4, "expected": 2.33, "sd": 0.94, "z": 1.77}
    assert "| d/teacher | 4 | 2.33 | 0.94 | 1.77 |" in text and "the goals' coin flips predict ± 0.87" in text
    agree = tmp_path / "f" / "teacher.goals.jsonl"  # three runs that agree on every goal: no spread to set d in
    agree.parent.mkdir()
    agree.write_text("\n".join(_goal_line(e, e < 2) for e in range(4)) + "\n")
    assert pairs.main(["--repeats", files[0], str(agree), files[3]]) == 0
    text = capsys.readouterr().out
    assert json.loads(text.strip().splitlines()[-1])["leave_one_out"]["d/teacher"]["z"] is None
    assert "| d/teacher | 4 | 2.0 | 0.0 | n/a (the others agree on every goal) |" in text
    assert pairs.main(["--repeats", *files[:2]]) == 2
    assert "give three runs or more (got 2)" in capsys.readouterr().err
    apart = tmp_path / "e" / "teacher.goals.jsonl"
    apart.parent.mkdir()
    apart.write_text(_goal_line(7, True) + "\n")
    assert pairs.main(["--repeats", *files[:2], str(apart)]) == 2
    assert "share no goal that every one finished" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        pairs.main(["--repeats", "--per-goal", *files])
    assert "leave out --per-goal and --split-goals" in capsys.readouterr().err


def test_plan_goal_pairs_per_goal_pools_runs_and_names_why_each_miss_missed(tmp_path, capsys):
    """--per-goal: each goal's held count over the runs that ran it, held by every run / some / none, and
    each miss's reasons by DINO-WM's rule; two sessions' files of one folder name stay two arms."""
    pairs = load_script("plan_goal_pairs")

    def line(episode: int, held: bool, block: float, distance: float, angle: float) -> str:
        return json.dumps({**json.loads(_goal_line(episode, held, block)), "state_distance": distance,
                           "block_angle_error": angle})

    a = tmp_path / "s1" / "plan_teacher_a" / "teacher.goals.jsonl"
    b = tmp_path / "s2" / "plan_teacher_a" / "teacher.goals.jsonl"
    a.parent.mkdir(parents=True), b.parent.mkdir(parents=True)
    # goal 0 held by both; goal 1 held by a only, b's miss the pusher (block inside 20, distance past it);
    # goal 2 missed by both: a on the block's position and angle, b on the angle alone; goal 3 only a ran
    a.write_text("\n".join([line(0, True, 5, 6, 0.1), line(1, True, 8, 9, 0.1), line(2, False, 30, 31, 0.5),
                            line(3, False, 25, 26, 0.0)]) + "\n")
    b.write_text("\n".join([line(0, True, 4, 5, 0.0), line(1, False, 12, 24, 0.1),
                            line(2, False, 10, 11, 0.4)]) + "\n")
    assert pairs.main(["--per-goal", str(a), str(b)]) == 0
    text = capsys.readouterr().out
    table = json.loads(text.strip().splitlines()[-1])
    assert set(table["runs"]) == {"s1/plan_teacher_a/teacher", "s2/plan_teacher_a/teacher"}
    assert (table["goals"], table["held_by_every_run"], table["held_by_some"], table["held_by_none"]) == (4, 1, 1, 2)
    assert table["mean_success_end"] == pytest.approx((1 + 0.5 + 0 + 0) / 4)
    assert table["miss_reasons"] == {"block position": 2, "pusher": 1, "block angle": 2}
    by_goal = {g["episode"]: g for g in table["per_goal"]}
    assert by_goal[2]["misses"] == {"block position": 1, "block angle": 2} and by_goal[2]["runs"] == 2
    assert by_goal[3]["runs"] == 1 and by_goal[3]["misses"] == {"block position": 1}
    assert [g["episode"] for g in table["per_goal"]] == [2, 3, 1, 0]  # hardest first
    assert "| 1, 3 | 1 / 2 | 10.0 | pusher 1 |" in text and "| 0, 3 |" not in text
    assert pairs.main(["--per-goal", str(a), str(a)]) == 2
    assert "given twice" in capsys.readouterr().err
    grid = tmp_path / "grid.png"
    assert pairs.main(["--per-goal", f"first={a}", f"second={b}", "--plot", str(grid)]) == 0
    assert set(json.loads(capsys.readouterr().out.strip().splitlines()[-1])["runs"]) == {"first", "second"}
    assert grid.stat().st_size > 0
    assert pairs.main([f"x={a}", f"x={b}"]) == 2
    assert "two arms share a label (x)" in capsys.readouterr().err
    odd = tmp_path / "run=1" / "teacher.goals.jsonl"  # a path with "=" in it is a path, not LABEL=PATH
    odd.parent.mkdir()
    odd.write_text(b.read_text())
    assert pairs.main(["--per-goal", str(a), str(odd)]) == 0
    assert "run=1/teacher" in json.loads(capsys.readouterr().out.strip().splitlines()[-1])["runs"]
    with pytest.raises(SystemExit):
        pairs.main([str(a), "--plot", str(grid)])
    assert "give --per-goal too" in capsys.readouterr().err


def test_pixel_detail_measures_neighbour_differences_and_scores_each_checkpoint(tiny_teacher, tiny_student, capsys,
                                                                               one_torch_thread):
    script = load_script("pixel_detail")
    flat = np.full((2, 4, 4, 3), 7, dtype=np.uint8)
    assert script.detail(flat) == 0.0
    stripes = flat.copy()
    stripes[:, :, 1::2] = 17  # every other column: 10 across each horizontal neighbour, none down
    assert script.detail(stripes) == pytest.approx(10.0)
    assert script.main([f"{tiny_teacher}:last:1", f"{tiny_student}", "--horizon", "2", "--windows", "1"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["real"] > 0 and line["windows"] > 0 and line["horizon"] == 2
    teacher, student = line["models"][f"{tiny_teacher}:last:1"], line["models"][str(tiny_student)]
    assert teacher["sampler"]["steps"] == 1 and student["sampler"]["kind"] == "consistency"
    assert teacher["detail"] > 0 and student["detail"] > 0
    for bad, message in (([f"{tiny_teacher}:best"], "expected CKPT[:selected|last[:STEPS]]"),
                         ([f"{tiny_teacher}:last:two"], "expected CKPT"),
                         ([str(tiny_teacher), "--horizon", "0"], "must be at least 1")):
        assert script.main(bad) == 2
        assert message in capsys.readouterr().err
