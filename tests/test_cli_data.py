"""`crcm data validate|info|pusht`, run in-process through crcm_robotics.cli.main."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import zarr
from PIL import Image

from crcm_robotics.cli import main
from crcm_robotics.data.store import TrajectoryStore
from crcm_robotics.data.synthetic import write_synthetic_store


@pytest.fixture
def good_store(tmp_path):
    path = tmp_path / "good.zarr"
    write_synthetic_store(path, (12, 9, 15), image_size=8)
    return path


def test_validate_good_store_prints_one_json_line(good_store, capsys):
    assert main(["data", "validate", str(good_store)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.strip().splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])
    assert {"episodes", "frames", "image_shape", "action_dim"} <= summary.keys()
    assert (summary["episodes"], summary["frames"], summary["image_shape"], summary["action_dim"]) == (
        3, 36, [8, 8, 3], 2)


def test_validate_bad_store_exits_non_zero_with_the_reason(good_store, capsys):
    zarr.open_group(str(good_store), mode="r+")["data/action"][12 + 3, 0] = np.nan
    assert main(["data", "validate", str(good_store)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip() == f"invalid store: store {good_store}: episode 1 of data/action has NaN at step 3"


def test_validate_missing_array_exits_non_zero(good_store, capsys):
    shutil.rmtree(good_store / "meta" / "episode_ends")
    assert main(["data", "validate", str(good_store)]) == 1
    assert capsys.readouterr().err.strip() == f"invalid store: store {good_store} has no array meta/episode_ends"


def test_validate_diffusion_policy_store_with_preset(tmp_path, capsys):
    path = tmp_path / "dp.zarr"
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    group.create_array("data/img", shape=(10, 16, 16, 3), dtype="float32", chunks=(5, 16, 16, 3))[:] = 255.0
    group.create_array("data/state", shape=(10, 5), dtype="float32", chunks=(10, 5))[:] = 0.0
    group.create_array("data/action", shape=(10, 2), dtype="float32", chunks=(10, 2))[:] = 1.0
    group.create_array("meta/episode_ends", shape=(2,), dtype="int64", chunks=(2,))[:] = [4, 10]
    assert main(["data", "validate", str(path), "key_map.preset=diffusion_policy"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["episodes"], summary["frames"], summary["image_shape"], summary["action_dim"]) == (
        2, 10, [16, 16, 3], 2)
    assert main(["data", "validate", str(path), "key_map.preset=diffusion_policy", "key_map.frames_range=uint8"]) == 1
    assert capsys.readouterr().err.strip() == (
        f"invalid store: store {path}: data/img has dtype float32, expected uint8")


def test_info_writes_a_contact_sheet(good_store, tmp_path, capsys):
    out = tmp_path / "sheet.png"
    assert main(["data", "info", str(good_store), f"out={out}", "frames_per_row=5", "scale=2"]) == 0
    text = capsys.readouterr().out
    assert f"contact sheet {out}" in text
    assert "episodes     3  (length min 9, mean 12.0, max 15)" in text
    image = Image.open(out)
    # 3 episodes × 5 frames of 8×8, 2-pixel gutters, scaled ×2
    assert image.size == ((5 * (8 + 2) + 2) * 2, (3 * (8 + 2) + 2) * 2) == (104, 64)
    assert image.mode == "RGB"
    first = np.asarray(image)[4:20, 4:20]  # episode 0, frame 0, upscaled ×2
    assert first[0, 0].tolist() == [0, 0, 0]  # pixel (0, 0) of frame 0 encodes index 0, episode 0


def test_pusht_command_writes_a_valid_store(tmp_path, capsys):
    pytest.importorskip("gym_pusht", reason="PushT generation needs the [sim] extra (gym-pusht)")
    out = tmp_path / "p.zarr"
    args = ["data", "pusht", f"out={out}", "episodes=2", "size=32", "min_steps=20", "max_steps=22", "workers=1"]
    assert main([*args, "progress=false"]) == 0
    captured = capsys.readouterr()
    assert "PushT →" not in captured.err  # no progress line when asked for none
    result = json.loads(captured.out.strip().splitlines()[-1])
    assert (result["episodes"], result["image_shape"], result["action_dim"], result["state_dim"]) == (2, [32, 32, 3], 2, 5)
    assert 40 <= result["frames"] <= 44 and result["generation"]["workers"] == 1
    # the hash checkpoints record as data_hash, printed so that a store rebuilt on another machine shows at once
    assert result["content_hash"] == TrajectoryStore(out).content_hash() and len(result["content_hash"]) == 16
    assert main(args) == 2  # refuses to overwrite
    assert capsys.readouterr().err.strip() == (
        f"crcm: error: {out} already exists; pass overwrite=True or open it with TrajectoryWriter.append_to")
    # a generator argument out of range is one line too, and writes nothing
    bad = tmp_path / "bad.zarr"
    assert main(["data", "pusht", f"out={bad}", "episodes=2", "behavior=circle"]) == 2
    assert capsys.readouterr().err.strip() == (
        "crcm: error: behavior must be one of ('scripted', 'explore', 'mixed', 'orbit'), got 'circle'")
    assert main(["data", "pusht", f"out={bad}", "episodes=2", "min_steps=30", "max_steps=20"]) == 2
    assert capsys.readouterr().err.strip() == "crcm: error: need 2 ≤ min_steps ≤ max_steps, got 30, 20"
    assert not bad.exists()
