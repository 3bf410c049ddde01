"""``data.motion_sampling``: training windows drawn by how far the pushed object travels in them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crcm_robotics.config import ConfigError, DataConfig
from crcm_robotics.data.schema import StoreError


def _windows(store_path, **data):
    from crcm_robotics.data.store import TrajectoryStore
    from crcm_robotics.model.tokenizer import PixelCodec
    from distill.batches import MemoryWindows

    store = TrajectoryStore(store_path)
    cfg = DataConfig(path=str(store_path), **data)
    return MemoryWindows(cfg, list(range(store.num_episodes)), store.stats()["action"], PixelCodec(),
                         torch.device("cpu")), store


def _travel(store, starts: torch.Tensor, window: int, frame_skip: int) -> np.ndarray:
    """The block's path over each window, summed frame to frame (its leading frame included)."""
    state = store.state().astype(np.float64)
    idx = starts.numpy()[:, None] + frame_skip * np.arange(window + 1)[None]
    return np.linalg.norm(np.diff(state[idx][..., 2:4], axis=1), axis=-1).sum(1)


def test_weights_follow_the_blocks_path(pusht_store_32):
    windows, store = _windows(pusht_store_32, window=3, frame_skip=2, motion_sampling=0.5)
    travel = _travel(store, windows.starts, 3, 2)
    assert (travel == 0).any() and (travel > 0).any(), "the test store should have still and pushed windows"
    np.testing.assert_allclose(windows.motion_weights.numpy(), travel / travel.sum())
    assert windows.motion_weights.sum().item() == pytest.approx(1.0)


def test_a_full_share_draws_only_windows_where_the_block_moves(pusht_store_32):
    windows, store = _windows(pusht_store_32, window=3, frame_skip=2, motion_sampling=1.0)
    travel = _travel(store, windows.starts, 3, 2)
    for step in range(20):
        picks = _picks(windows, step)
        torch.testing.assert_close(windows.sample(16, seed=0, step=step)["x"],
                                   windows.window(windows.starts[picks])["x"])
        assert (travel[picks] > 0).all(), f"step {step}: a window whose block never moves was drawn"
    uniform, _ = _windows(pusht_store_32, window=3, frame_skip=2)
    assert any((travel[_picks(uniform, step)] == 0).any() for step in range(20)), \
        "a uniform draw should meet still windows in this store"


def test_a_zero_share_draws_what_it_always_drew(pusht_store_32):
    windows, _ = _windows(pusht_store_32, window=3, frame_skip=2)
    assert windows.motion_weights is None
    for step in (0, 7):
        batch = windows.sample(16, seed=0, step=step)
        g = torch.Generator().manual_seed(hash((0, step, 0)) & 0x7FFF_FFFF_FFFF)  # the draw before the option
        want = windows.window(windows.starts[torch.randint(len(windows.starts), (16,), generator=g)])
        torch.testing.assert_close(batch["x"], want["x"])


def test_a_share_raises_the_blocks_travel_and_stays_reproducible(pusht_store_32):
    uniform, store = _windows(pusht_store_32, window=3, frame_skip=2)
    weighted, _ = _windows(pusht_store_32, window=3, frame_skip=2, motion_sampling=0.5)
    travel = dict(zip(uniform.starts.tolist(), _travel(store, uniform.starts, 3, 2)))

    def mean_travel(windows) -> float:
        picked = [windows.starts[i].item() for step in range(50) for i in _picks(windows, step)]
        return float(np.mean([travel[s] for s in picked]))

    for step in (0, 9):  # the draws scored here are the ones sample() makes
        torch.testing.assert_close(weighted.sample(16, seed=0, step=step)["x"],
                                   weighted.window(weighted.starts[_picks(weighted, step)])["x"])
    assert mean_travel(weighted) > 1.3 * mean_travel(uniform)
    a, b = weighted.sample(16, seed=3, step=5), weighted.sample(16, seed=3, step=5)
    torch.testing.assert_close(a["x"], b["x"])  # still a pure function of (seed, step, rank)
    assert len(weighted.subset([0], store)) > 0 and weighted.subset([0], store).motion_weights is None


def _picks(windows, step: int) -> list[int]:
    """The window indices ``sample`` draws at ``step`` (seed 0, batch 16), drawn as it draws them."""
    g = torch.Generator().manual_seed(hash((0, step, 0)) & 0x7FFF_FFFF_FFFF)
    share = 0 if windows.motion_weights is None else round(windows.cfg.motion_sampling * 16)
    pick = torch.randint(len(windows.starts), (16 - share,), generator=g)
    if share:
        pick = torch.cat([pick, torch.multinomial(windows.motion_weights, share, replacement=True, generator=g)])
    return pick.tolist()


def test_bad_settings_get_one_line_errors(pusht_store_32, tmp_path):
    from crcm_robotics.data.synthetic import write_synthetic_store

    for share in (-0.1, 1.5):
        with pytest.raises(ConfigError, match=r"data.motion_sampling=.*in \[0, 1\] expected"):
            DataConfig(motion_sampling=share).validate()
    with pytest.raises(ConfigError, match="data.motion_dims"):
        DataConfig(motion_sampling=0.5, motion_dims=(-1,)).validate()
    with pytest.raises(StoreError, match="index a state of 5 values"):
        _windows(pusht_store_32, window=3, frame_skip=2, motion_sampling=0.5, motion_dims=(2, 7))
    stateless = tmp_path / "stateless.zarr"
    write_synthetic_store(stateless, lengths=(12, 9, 15), image_size=8, state_dim=0)
    with pytest.raises(StoreError, match="logs no state"):
        _windows(stateless, window=2, motion_sampling=0.5)
    from distill.batches import window_motion_weights

    still = np.zeros((40, 5), np.float32)
    with pytest.raises(StoreError, match=r"dims \[2, 3\] never move"):
        window_motion_weights(DataConfig(window=2, motion_sampling=0.5), still, np.arange(10))
    still[5, 3] = np.nan
    with pytest.raises(StoreError, match="not finite"):
        window_motion_weights(DataConfig(window=2, motion_sampling=0.5), still, np.arange(10))


def test_a_teacher_config_takes_the_setting():
    from crcm_robotics.conf import compose_config

    cfg = compose_config("config", ["data.motion_sampling=0.5", "data.motion_dims=[2,3]"],
                         "crcm_robotics.conf.teacher")
    assert cfg.data.motion_sampling == 0.5 and list(cfg.data.motion_dims) == [2, 3]
