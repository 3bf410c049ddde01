"""WindowDataset: windows stay inside episodes, frame_skip keeps every action, multi-worker loading."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from crcm_robotics.data import StoreError, TrajectoryStore, WindowDataset, split_episodes
from crcm_robotics.data.dataset import window_starts
from crcm_robotics.data.synthetic import frame_index, write_synthetic_store

LENGTHS = (12, 9, 15, 4)
ENDS = np.cumsum(LENGTHS)  # 12, 21, 36, 40
STARTS = ENDS - LENGTHS


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("ds") / "s.zarr"
    write_synthetic_store(path, LENGTHS, image_size=4, action_dim=3, state_dim=2)
    return path


def episode_of(i: int) -> int:
    return int(np.searchsorted(ENDS, i, side="right"))


@pytest.mark.parametrize("window, frame_skip", [(1, 1), (3, 1), (5, 1), (2, 2), (4, 2), (3, 3), (2, 5), (3, 4)])
def test_every_window_stays_inside_one_episode_and_keeps_every_action(store, window, frame_skip):
    span = window * frame_skip
    expected_starts = [s for s, n in zip(STARTS, LENGTHS) for s in range(s, s + n - span + 1)]
    ds = WindowDataset(store, window=window, frame_skip=frame_skip)
    mem = WindowDataset(store, window=window, frame_skip=frame_skip, in_memory=True)
    assert ds.starts.tolist() == expected_starts
    assert len(ds) == sum(max(0, n - span + 1) for n in LENGTHS)
    assert ds.action_dim == 3 * frame_skip
    for index in range(len(ds)):
        item = ds[index]
        s = expected_starts[index]
        frames_at = s + frame_skip * np.arange(window)
        assert item["frames"].shape == (window, 4, 4, 3) and item["frames"].dtype == torch.uint8
        assert frame_index(item["frames"].numpy()).tolist() == frames_at.tolist()
        assert {episode_of(i) for i in range(s, s + span)} == {int(item["episode"])}  # actions too
        assert (int(item["start"]), int(item["episode"])) == (s, episode_of(s))
        # the k actions after each sampled frame, concatenated: every step s .. s+span-1 exactly once, in order
        action = item["action"].numpy()
        assert action.shape == (window, 3 * frame_skip) and action.dtype == np.float32
        assert action.reshape(window, frame_skip, 3)[..., 0].ravel().tolist() == list(range(s, s + span))
        assert item["state"].numpy()[:, 0].tolist() == frames_at.tolist()
        other = mem[index]
        assert all(torch.equal(item[k], other[k]) for k in item), "in_memory and zarr-backed items differ"


def test_window_starts_skips_short_episodes():
    assert window_starts(ENDS, [3, 1], window=4, frame_skip=2).tolist() == [12, 13]  # episode 3 has 4 < 8 frames
    assert window_starts(ENDS, [3], window=5, frame_skip=1).tolist() == []


def test_episode_subset_and_errors(store):
    ds = WindowDataset(store, window=4, frame_skip=2, episodes=[2, 0])
    assert ds.starts.tolist() == [21 + i for i in range(15 - 8 + 1)] + [0, 1, 2, 3, 4]
    with pytest.raises(StoreError) as exc:
        WindowDataset(store, window=10, frame_skip=2)
    assert str(exc.value) == (
        f"no episode of {store} among the 4 selected is long enough for a window of 10 frames at frame_skip 2 "
        "(needs 20 frames)")
    with pytest.raises(StoreError) as exc:
        WindowDataset(store, window=2, episodes=[1, 4])
    assert str(exc.value) == f"episodes [4] not in store {store} (4 episodes)"
    with pytest.raises(ValueError, match=r"window \(0\) and frame_skip \(1\) must be ≥ 1"):
        WindowDataset(store, window=0)


def test_split_is_by_episode_and_deterministic():
    train, val = split_episodes(10, 0.2, seed=3)
    assert (len(train), len(val)) == (8, 2)
    assert sorted(train + val) == list(range(10))
    assert split_episodes(10, 0.2, seed=3) == (train, val)
    assert split_episodes(10, 0.2, seed=4) != (train, val)
    assert len(split_episodes(3, 0.01)[1]) == 1  # a non-zero fraction always holds out one episode
    assert split_episodes(5, 0.0) == ([0, 1, 2, 3, 4], [])


def test_a_split_over_the_first_episodes_holds_out_the_same_ones_when_the_store_grows():
    """data.split_first_episodes: a store grown from 10 to 14 episodes of the same generator holds out what the
    10-episode store held out, and every added episode trains."""
    train, val = split_episodes(10, 0.2, seed=3)
    assert split_episodes(14, 0.2, seed=3, first=10) == (train + [10, 11, 12, 13], val)
    assert split_episodes(10, 0.2, seed=3, first=10) == (train, val)
    assert split_episodes(14, 0.2, seed=3)[1] != val  # drawn over all 14, other episodes are held out
    with pytest.raises(ValueError, match=r"the split's first episodes \(15\) must be in \[0, 14\]"):
        split_episodes(14, 0.2, first=15)


def test_data_split_names_a_bad_split_first_episodes(store):
    from crcm_robotics.config import ConfigError, DataConfig
    from distill.batches import data_split

    ts = TrajectoryStore(store)
    assert data_split(DataConfig(path=str(store), val_fraction=0.25, split_first_episodes=2), ts) == (
        [split_episodes(2, 0.25)[0][0], 2, 3], split_episodes(2, 0.25)[1])
    with pytest.raises(ConfigError, match=r"data.split_first_episodes=5: more than the 4 episodes of"):
        data_split(DataConfig(path=str(store), split_first_episodes=5), ts)
    with pytest.raises(ConfigError, match=r"data.split_first_episodes=-1: the number of the store's first"):
        data_split(DataConfig(path=str(store), split_first_episodes=-1), ts)


def _batches(ds, **loader_kwargs):
    loader = torch.utils.data.DataLoader(ds, batch_size=4, shuffle=False, **loader_kwargs)
    return list(loader)


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_workers_return_the_same_items(store, context):
    ds = WindowDataset(store, window=3, frame_skip=2)  # zarr-backed, not in memory
    ds[len(ds) - 1]  # the parent reads the store before workers start (the case that hangs after fork)
    reference = _batches(ds, num_workers=0)
    workers = _batches(ds, num_workers=2, multiprocessing_context=context, timeout=60)
    assert len(workers) == len(reference) == -(-len(ds) // 4)
    for a, b in zip(reference, workers):
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), k
    assert pickle.loads(pickle.dumps(ds))._store is None  # workers never receive a zarr handle
