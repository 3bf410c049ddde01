"""PushT's symmetries (crcm_robotics.data.symmetry) and the teacher's dihedral augmentation (distill/batches)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crcm_robotics.config import ConfigError, DataConfig
from crcm_robotics.data.symmetry import (
    DIHEDRAL,
    transform_angle,
    transform_frames,
    transform_state,
    transform_xy,
)

CENTER = 256.0


def test_group_elements_are_distinct_and_invertible():
    points = torch.tensor([[[100.0, 30.0]]]).expand(DIHEDRAL, 1, 2)
    images = torch.arange(16.0).reshape(1, 4, 4, 1).expand(DIHEDRAL, 4, 4, 1)
    g = torch.arange(DIHEDRAL)
    moved, turned = transform_xy(points, g, CENTER), transform_frames(images, g)
    assert len({tuple(p.flatten().tolist()) for p in moved}) == DIHEDRAL
    assert len({tuple(i.flatten().tolist()) for i in turned}) == DIHEDRAL
    # every element has an inverse among the 8 (a group): applying some h after g gives back the points
    for e in range(DIHEDRAL):
        back = [h for h in range(DIHEDRAL)
                if torch.allclose(transform_xy(moved[e:e + 1], torch.tensor([h]), CENTER), points[:1])]
        assert len(back) == 1
    theta = torch.full((DIHEDRAL, 1), 0.3)
    assert transform_angle(theta, g).abs().max() <= np.pi


def test_frames_need_square_images():
    with pytest.raises(ValueError, match="square"):
        transform_frames(torch.zeros(1, 4, 6, 3), torch.tensor([1]))


@pytest.mark.parametrize("element", range(1, DIHEDRAL))
def test_pusht_physics_and_rendering_follow_each_symmetry(element):
    """The simulator's trajectory from a transformed start under transformed targets is the transformed
    trajectory (exactly: the physics has no preferred direction), and its frame is the transformed frame
    except the goal zone, which gym-pusht draws at a fixed pose."""
    pytest.importorskip("gym_pusht", reason="needs the [sim] extra (gym-pusht)")
    from crcm_robotics.data.pusht_sim import PushTSim

    rng = np.random.default_rng(element)
    sim = PushTSim(64)
    g = torch.tensor([element])
    moved = 0.0
    for _ in range(3):
        start = np.array([rng.uniform(100, 400), rng.uniform(100, 400), rng.uniform(180, 330),
                          rng.uniform(180, 330), rng.uniform(-3, 3)])
        targets = start[2:4] + rng.normal(0, 30, (15, 2))  # aimed at the block, so the pusher hits it
        sim.reset_to(start, render=False)
        for a in targets:
            frame, state = sim.step(a)
        start_g = transform_state(torch.tensor(start)[None], g, CENTER)[0].numpy()
        targets_g = transform_xy(torch.tensor(targets)[None], g, CENTER)[0].numpy()
        sim.reset_to(start_g, render=False)
        for a in targets_g:
            frame_g, state_g = sim.step(a)
        expected = transform_state(torch.tensor(state)[None], g, CENTER)[0].numpy()
        diff = expected - state_g
        diff[4] = np.arctan2(np.sin(diff[4]), np.cos(diff[4]))
        np.testing.assert_allclose(diff, 0.0, atol=1e-6)
        moved = max(moved, float(np.linalg.norm(state[2:4] - start[2:4])))
        turned = transform_frames(torch.from_numpy(frame)[None], g)[0].numpy()
        differs = np.abs(turned.astype(int) - frame_g.astype(int)).sum(-1) > 30
        assert differs.mean() < 0.06, f"{differs.sum()} pixels differ: more than the goal zone"
    assert moved > 5.0, "no rollout pushed the block: the check would not cover contact"


def test_dihedral_batches_match_the_store(pusht_store_32):
    """Each augmented window is its logged window under the element drawn for it: frames turned, targets
    and states moved, actions normalized with the store's stats; element 0 is the logged window."""
    from crcm_robotics.data.store import TrajectoryStore
    from crcm_robotics.model.tokenizer import PixelCodec
    from distill.batches import MemoryWindows

    store = TrajectoryStore(pusht_store_32)
    stats = store.stats()["action"]
    cfg = DataConfig(path=str(pusht_store_32), window=3, frame_skip=2, augment="dihedral")
    windows = MemoryWindows(cfg, list(range(store.num_episodes)), stats, PixelCodec(), torch.device("cpu"))
    starts = windows.starts[:DIHEDRAL]
    g = torch.arange(DIHEDRAL)
    plain, turned = windows.window(starts), windows.window(starts, g)
    for key in plain:
        torch.testing.assert_close(turned[key][0], plain[key][0])
    torch.testing.assert_close(turned["frames"], transform_frames(plain["frames"], g))
    raw = torch.from_numpy(store.action())
    act_idx = starts[:, None] + torch.arange(6)[None]
    want = stats.normalize(transform_xy(raw[act_idx], g, CENTER).numpy())
    torch.testing.assert_close(turned["action"], torch.from_numpy(want).reshape(DIHEDRAL, 3, 4))
    torch.testing.assert_close(turned["state"], transform_state(plain["state"], g, CENTER))
    batch = windows.sample(16, seed=0, step=3)
    again = windows.sample(16, seed=0, step=3)
    torch.testing.assert_close(batch["x"], again["x"])  # a pure function of (seed, step, rank)


def test_augment_is_checked(pusht_store_32, tmp_path):
    from crcm_robotics.data.store import TrajectoryStore
    from crcm_robotics.data.synthetic import write_synthetic_store
    from crcm_robotics.model.tokenizer import PixelCodec
    from distill.batches import MemoryWindows

    with pytest.raises(ConfigError, match="data.augment='mirror' unknown"):
        DataConfig(augment="mirror").validate()
    other = tmp_path / "synthetic.zarr"
    write_synthetic_store(other, lengths=(12, 9, 15), image_size=8)
    store = TrajectoryStore(other)
    cfg = DataConfig(path=str(other), window=2, augment="dihedral")
    with pytest.raises(Exception, match="a PushT store expected"):
        MemoryWindows(cfg, [0, 1, 2], store.stats()["action"], PixelCodec(), torch.device("cpu"))
