"""`python -m crcm_robotics.eval.bench_data`: one JSON line whose layout figures match the files on disk."""

from __future__ import annotations

import json

from crcm_robotics.data import TrajectoryStore
from crcm_robotics.data.synthetic import write_synthetic_store
from crcm_robotics.eval.bench_data import main


def test_bench_prints_one_json_line_and_sweeps_layouts(tmp_path, capsys):
    store = tmp_path / "s.zarr"
    write_synthetic_store(store, (20, 30), image_size=8)
    args = ["--store", str(store), "--window", "2", "--windows", "48", "--repeats", "1", "--out", str(tmp_path / "out"),
            "--sweep", "--chunks", "1", "8", "--codecs", "none", "zstd-3"]
    assert main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert (result["frames"], result["episodes"], result["raw_bytes_per_frame"]) == (50, 2, 8 * 8 * 3)
    assert result["read_w0"]["windows_per_s"] > 0 and result["read_w2"]["windows_per_s"] > 0
    # mb/s is windows/s times the decoded bytes of a window (2 frames of 8×8×3)
    assert abs(result["read_w0"]["mb_per_s"] - result["read_w0"]["windows_per_s"] * 384 / 1e6) < 0.06
    rows = {(r["chunk"], r["codec"], r["shard"]): r for r in result["sweep"]}
    assert set(rows) == {(1, "none", None), (1, "zstd-3", None), (8, "none", None),
                         (8, "zstd-3", None), (8, "zstd-3", 256), (1, "zstd-3", 256)}
    assert rows[(1, "none", None)]["files"] == 50 + 1  # a file per frame, plus zarr.json
    assert rows[(8, "none", None)]["files"] == 7 + 1  # ceil(50 / 8) chunks
    assert rows[(8, "zstd-3", 256)]["files"] == 1 + 1  # one shard holds all 50 frames
    # uncompressed: 192 bytes per frame plus zarr.json (and chunk 8's zero padding of the last chunk)
    assert 192 < rows[(1, "none", None)]["bytes_per_frame"] < 192 + 30
    assert all(r["ms_per_window"] > 0 for r in rows.values())
    assert (tmp_path / "out" / "sweep.md").read_text().count("\n") == 2 + len(rows)
    assert TrajectoryStore(store).num_frames == 50  # the source store is left as it was
