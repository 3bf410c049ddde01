"""PushT as a settable simulator: set-state renders the store's frames, the oracle pool equals
sequential rollouts, DINO-WM's success rule, goal pairs, and the generator's exploration mode."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("gym_pusht", reason="the PushT simulator needs the [sim] extra (gym-pusht)")

from crcm_robotics.data import TrajectoryStore  # noqa: E402
from crcm_robotics.data.pusht import generate_pusht  # noqa: E402
from crcm_robotics.data.pusht_sim import (  # noqa: E402
    PushTRolloutPool,
    PushTSim,
    block_mask,
    block_render_check,
    goal_pairs,
    pusht_errors,
    pusht_success,
    replay_mismatch,
)

SIZE = 64


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> TrajectoryStore:
    path = tmp_path_factory.mktemp("pusht_sim") / "s.zarr"
    generate_pusht(path, episodes=3, size=SIZE, seed=0, workers=1, min_steps=60, max_steps=70, progress=False)
    return TrajectoryStore(path)


@pytest.fixture(scope="module")
def sim():
    with PushTSim(SIZE) as s:
        yield s


def test_set_state_renders_the_store_frame(store, sim):
    states, frames = store.state(), store.frames(0, store.num_frames)
    differing, abs_error = [], []
    for state, frame in zip(states, frames):
        rendered = sim.reset_to(state)
        assert rendered.shape == (SIZE, SIZE, 3) and rendered.dtype == np.uint8
        np.testing.assert_allclose(sim.state, state, atol=1e-4)  # float32 store -> float64 sim
        differing.append(int((rendered != frame).any(-1).sum()))
        abs_error.append(np.abs(rendered.astype(np.int64) - frame).mean())
    differing = np.array(differing)
    # float32 rounding of the stored state can move a polygon edge across one 512² canvas pixel, which
    # shifts a few of the 64² pixels it averages into (measured on 2 938 frames: ≤ 10 pixels, 92 % exact)
    assert differing.max() <= 16, f"up to {differing.max()} of {SIZE * SIZE} pixels differ"
    assert differing.mean() < 0.3 and (differing == 0).mean() > 0.85
    assert np.mean(abs_error) < 0.01, f"mean absolute error {np.mean(abs_error):.4f} grey levels"


def test_step_is_gym_pushts_step_and_render(sim):
    """sim.step (physics without coverage/render) == gym-pusht's own PushTEnv.step, bit for bit."""
    reference = PushTSim(SIZE)
    start = np.array([180.0, 300.0, 260.0, 250.0, -2.8])
    targets = np.linspace([180.0, 300.0], [330.0, 200.0], 30).astype(np.float32)
    sim.reset_to(start)
    reference.reset_to(start)
    env = reference._pusht
    env.collision_handeler.post_solve = env._handle_collision  # gym-pusht's own contact counting, as it ships
    touched = False
    for target in targets:
        frame, state = sim.step(target)
        obs, _, _, _, info = env.step(target)
        touched |= info["n_contacts"] > 0
        assert np.array_equal(frame, obs["pixels"])
        np.testing.assert_array_equal(state[:4], np.r_[info["pos_agent"], info["block_pose"][:2]])
        angle = info["block_pose"][2]
        assert state[4] == pytest.approx(math.atan2(math.sin(angle), math.cos(angle)))
    assert touched, "the test trajectory should push the block"
    np.testing.assert_array_equal(sim.snapshot(), reference.snapshot())
    reference.close()


def test_fast_render_is_gym_pushts_render(sim):
    """render() (cached walls, buffer resize) == gym-pusht's _render, also near the walls."""
    rng = np.random.default_rng(1)
    near_wall = 0
    for _ in range(150):
        state = np.r_[rng.uniform(10.0, 502.0, 2), rng.uniform(20.0, 492.0, 2),
                      rng.uniform(-math.pi, math.pi)]
        sim.reset_to(state, render=False)
        for _ in range(int(rng.integers(0, 3))):  # sometimes in motion / pushed into contact
            sim.physics_step(rng.uniform(0.0, 512.0, 2))
        near_wall += bool(min(sim.state[:2].min(), 512 - sim.state[:2].max()) < 40)
        np.testing.assert_array_equal(sim.render(), sim._pusht._render())
    assert near_wall >= 10, "the test should cover the pusher near a wall (the full-draw path)"


def test_rollout_depends_on_the_start_state_only(sim):
    start = np.array([180.0, 300.0, 260.0, 250.0, -2.8])
    actions = np.linspace([180.0, 300.0], [330.0, 200.0], 12)
    runs = []
    for _ in range(2):
        sim.reset_to(start)
        runs.append(np.stack([sim.step(a)[1] for a in actions]))
        sim.reset_to([50.0, 50.0, 400.0, 400.0, 1.0])  # something else in between
    np.testing.assert_array_equal(runs[0], runs[1])


def test_replay_from_a_logged_state_nearly_reproduces_the_log(store, sim):
    figures = replay_mismatch(store, [0, 1, 2], ahead=25, stride=10, sim=sim)
    assert figures["starts"] >= 9
    # velocities are not stored: the pusher's PD loop forgets them within a few steps, the block nearly
    assert figures["agent_pos_error_mean"] < 0.5
    assert figures["block_pos_error_mean"] < 3.0 and figures["block_angle_error_mean"] < 0.05


def sequential(state, actions, size=SIZE):
    with PushTSim(size) as s:
        frames, states = [], []
        for candidate in actions:
            s.reset_to(state)
            out = [s.step(a) for a in candidate]
            frames.append(np.stack([f for f, _ in out]))
            states.append(np.stack([st for _, st in out]).astype(np.float32))
    return np.stack(frames), np.stack(states)


def test_pool_equals_sequential_rollouts():
    rng = np.random.default_rng(0)
    state = np.array([200.0, 250.0, 256.0, 256.0, 0.3])
    actions = np.repeat(rng.uniform(100.0, 412.0, size=(5, 2, 2)), 4, axis=1)  # [5, 8, 2], waypoints held 4
    want_frames, want_states = sequential(state, actions)
    assert np.abs(np.diff(want_states[:, :, 2:4], axis=1)).sum() > 1.0, "some candidate should push the block"
    with PushTRolloutPool(SIZE, workers=2) as pool:
        frames, states = pool.rollout(state, actions, frames="all")
        assert states.dtype == np.float32 and states.shape == (5, 8, 5)
        np.testing.assert_array_equal(states, want_states)
        np.testing.assert_array_equal(frames, want_frames)
        snapshot = np.r_[state, 30.0, -20.0, 5.0, 0.0, 0.4]  # with velocities
        _, from_snapshot = pool.rollout(snapshot, actions, frames="none")
        np.testing.assert_array_equal(from_snapshot, sequential(snapshot, actions)[1])
        assert not np.array_equal(from_snapshot, states)


def test_frames_modes():
    state = np.array([100.0, 100.0, 300.0, 300.0, 1.0])
    actions = np.linspace([100.0, 100.0], [250.0, 250.0], 6)[None].repeat(3, axis=0)
    actions += np.arange(3)[:, None, None]
    with PushTRolloutPool(SIZE, workers=1) as pool:
        all_frames, all_states = pool.rollout(state, actions, frames="all")
        last, last_states = pool.rollout(state, actions, frames="last")
        none, none_states = pool.rollout(state, actions.astype(np.float32), frames="none")
    assert all_frames.shape == (3, 6, SIZE, SIZE, 3) and last.shape == (3, 1, SIZE, SIZE, 3)
    assert none.shape == (3, 0, SIZE, SIZE, 3) and none.dtype == np.uint8
    np.testing.assert_array_equal(last[:, 0], all_frames[:, -1])
    np.testing.assert_array_equal(last_states, all_states)
    np.testing.assert_array_equal(none_states[:, :, :2], all_states[:, :, :2])


def test_errors_and_success_rule():
    goal = np.array([100.0, 100.0, 200.0, 200.0, 3.1])
    e = pusht_errors(np.array([103.0, 104.0, 200.0, 200.0, -3.1]), goal)  # across the ±π seam
    assert e["block_angle_error"] == pytest.approx(2 * math.pi - 6.2)
    assert (e["agent_pos_error"], e["block_pos_error"], e["state_distance"]) == pytest.approx((5.0, 0.0, 5.0))
    assert pusht_success(np.array([103.0, 104.0, 200.0, 200.0, -3.1]), goal) is True
    e = pusht_errors(np.array([100.0, 100.0, 212.0, 216.0, 3.1 - math.pi / 9 + 1e-3]), goal)
    assert (e["block_pos_error"], e["state_distance"]) == pytest.approx((20.0, 20.0))
    assert e["block_angle_error"] == pytest.approx(math.pi / 9 - 1e-3)
    batch = np.array([
        [100.0, 100.0, 211.0, 216.0, 3.1],  # distance 19.4: reached
        [100.0, 100.0, 212.0, 216.0, 3.1],  # distance 20.0: not (strict)
        [100.0, 100.0, 200.0, 200.0, 3.1 + math.pi / 9 + 1e-3],  # turned too far (wraps past π)
        [100.0, 100.0, 200.0, 200.0, 3.1 + math.pi / 9 - 1e-3 - 2 * math.pi],
    ])
    np.testing.assert_array_equal(pusht_success(batch, goal), [True, False, False, True])
    np.testing.assert_allclose(pusht_errors(batch, goal)["state_distance"],
                               [math.hypot(11, 16), 20.0, 0.0, 0.0])


def test_goal_pairs(store, sim):
    small = dict(n=6, ahead=10, context=3, min_move=8.0, min_turn=0.1)
    pairs = goal_pairs(store, [0, 1, 2], seed=3, sim=sim, **small)
    moving = set()  # episodes whose log moves the block ≥ 8 units in 10 steps: the pairs spread over them
    for e in range(3):
        s, t = store.episode_bounds(e)
        xy = store.state(s, t)[:, 2:4]
        if (np.linalg.norm(xy[10:] - xy[:-10], axis=1) >= 8.0).any():
            moving.add(e)
    assert len(moving) >= 2, "the fixture should have at least two episodes that push the block"
    assert len(pairs) == 6 and {p.episode for p in pairs} == moving
    counts = np.bincount([p.episode for p in pairs], minlength=3)[sorted(moving)]
    assert counts.max() - counts.min() <= 1, f"pairs per episode {counts} are not spread evenly"
    for p in pairs:
        assert p.block_move >= 8.0 or p.block_turn >= 0.1
        s, _ = store.episode_bounds(p.episode)
        i = s + p.start
        np.testing.assert_array_equal(p.context_frames, store.frames(i - 2, i + 1))
        np.testing.assert_array_equal(p.context_actions, store.action(i - 3, i))  # the actions that made them
        np.testing.assert_array_equal(p.logged_actions, store.action(i, i + 10))
        np.testing.assert_array_equal(p.start_state, store.state(i, i + 1)[0])
        assert p.context_frames.shape == (3, SIZE, SIZE, 3) and p.goal_frame.shape == (SIZE, SIZE, 3)
        sim.reset_to(p.start_state)
        for a in p.logged_actions:
            frame, state = sim.step(a)
        np.testing.assert_array_equal(p.goal_frame, frame)
        np.testing.assert_array_equal(p.goal_state, state.astype(np.float32))
        # the replayed goal is close to what the log reached (velocities lost on set-state)
        assert pusht_errors(p.goal_state, store.state(i + 10, i + 11)[0])["state_distance"] < 10.0
    again = goal_pairs(store, [0, 1, 2], seed=3, **small)
    assert [(p.episode, p.start) for p in again] == [(p.episode, p.start) for p in pairs]
    other = goal_pairs(store, [0, 1, 2], seed=4, sim=sim, **small)
    assert [(p.episode, p.start) for p in other] != [(p.episode, p.start) for p in pairs]
    held_out = goal_pairs(store, [max(moving)], n=2, ahead=10, min_move=8.0, min_turn=0.1, sim=sim)
    assert {p.episode for p in held_out} == {max(moving)}
    with pytest.raises(ValueError, match=r"only \d+ of the 50 goals asked for move the block ≥ 500.0 env"):
        goal_pairs(store, [0], n=50, ahead=10, min_move=500.0, min_turn=7.0, sim=sim)


def test_block_render_check_tells_a_solid_block_at_a_wrong_pose_from_a_faded_one(store, sim):
    """Real frames: solid and where the state says. A frame drawn with the block elsewhere, read there: solid,
    overlapping the read pose's render and not the true one. The same frame half faded into the block-less
    background: few block-coloured pixels, overlapping neither."""
    true = store.state(10, 16).astype(np.float64)[None]  # [1, 6, 5]
    real = store.frames(10, 16)[None]
    check = block_render_check(sim, real, true, true)
    assert np.all(check["block_pixels"] == 1.0) and np.all(check["iou_true"] == 1.0)
    moved = true.copy()
    moved[..., 2] += 60.0  # the block 60 env units (7.5 px) to the right, the pusher where it was
    drawn = np.stack([sim.reset_to(s) for s in moved[0]])[None]
    wrong = block_render_check(sim, drawn, moved, true)
    assert np.all(wrong["block_pixels"] > 0.8) and np.all(wrong["iou_read"] == 1.0)
    assert np.all(wrong["iou_true"] < 0.3)
    blockless = sim.reset_to(np.array([true[0, 0, 0], true[0, 0, 1], -200.0, -200.0, 0.0]))
    faded = ((drawn.astype(np.float32) + blockless) / 2).astype(np.uint8)
    soft = block_render_check(sim, faded, moved, true)
    assert np.all(soft["block_pixels"] < 0.2) and np.all(soft["iou_read"] < 0.2)
    assert block_mask(real).shape == real.shape[:-1] and block_mask(real).any()


def test_block_render_check_refuses_mismatched_input(store, sim):
    frames, states = store.frames(0, 3)[None], store.state(0, 3)[None]
    alike = r"expected frames \[N, T, H, W, 3\] and read, true \[N, T, 5\] alike"
    with pytest.raises(ValueError, match=alike):
        block_render_check(sim, frames, states[:, :2], states)
    with pytest.raises(ValueError, match="frames are 32 pixels high; the sim renders 64"):
        block_render_check(sim, frames[:, :, :32, :32], states, states)
    with pytest.raises(ValueError, match=r"frames must be uint8 \[..., H, W, 3\], got float32"):
        block_mask(frames.astype(np.float32))


def test_bad_input_is_refused(sim):
    with pytest.raises(ValueError, match=r"state must have shape \[5\] or \[10\].*got \[4\]"):
        sim.reset_to(np.zeros(4))
    with pytest.raises(ValueError, match=r"state has non-finite values"):
        sim.reset_to(np.array([1.0, 2.0, np.nan, 4.0, 0.0]))
    with pytest.raises(ValueError, match=r"action must have shape \[2\].*got \[3\]"):
        sim.step(np.zeros(3))
    with pytest.raises(ValueError, match=r"action has non-finite values"):
        sim.step(np.array([np.inf, 3.0]))
    with pytest.raises(ValueError, match=r"goal_state must have shape \[\.\.\., 5\].*got \[3\]"):
        pusht_errors(np.zeros(5), np.zeros(3))
    with PushTRolloutPool(SIZE, workers=1) as pool:
        with pytest.raises(ValueError, match=r"shape \[N ≥ 1, Hz ≥ 1, 2\], got \[4, 2\]"):
            pool.rollout(np.zeros(5), np.zeros((4, 2)))
        bad = np.full((3, 4, 2), 100.0)
        bad[2, 1, 0] = np.nan
        with pytest.raises(ValueError, match=r"non-finite value at candidate 2, step 1"):
            pool.rollout(np.zeros(5), bad)
        with pytest.raises(ValueError, match=r"frames must be one of \('last', 'all', 'none'\), got 'first'"):
            pool.rollout(np.zeros(5), np.zeros((1, 1, 2)), frames="first")
    with pytest.raises(RuntimeError, match="closed"):
        pool.rollout(np.zeros(5), np.zeros((1, 1, 2)))


def _arrays(path) -> tuple[bytes, bytes, bytes]:
    s = TrajectoryStore(path)
    return s.frames(0, s.num_frames).tobytes(), s.action().tobytes(), s.state().tobytes()


def test_exploration_mode(tmp_path):
    from crcm_robotics.data.pusht import explore_episodes

    tiny = dict(episodes=4, size=32, seed=5, min_steps=40, max_steps=40, progress=False)
    generate_pusht(tmp_path / "scripted.zarr", workers=1, **tiny)
    generate_pusht(tmp_path / "explore.zarr", workers=1, behavior="explore", **tiny)
    generate_pusht(tmp_path / "explore2.zarr", workers=1, behavior="explore", **tiny)
    generate_pusht(tmp_path / "mixed.zarr", workers=1, behavior="mixed", explore_fraction=0.5, **tiny)
    assert _arrays(tmp_path / "explore.zarr") == _arrays(tmp_path / "explore2.zarr")  # deterministic per seed
    scripted, explore, mixed = (TrajectoryStore(tmp_path / f"{n}.zarr")
                                for n in ("scripted", "explore", "mixed"))
    assert explore.attrs["pusht"]["behavior"] == "explore"
    assert explore.attrs["pusht"]["explore_episodes"] == [0, 1, 2, 3]
    assert scripted.attrs["pusht"]["explore_episodes"] == [] and "scripted pusher" in scripted.attrs["source"]
    assert mixed.attrs["pusht"]["behavior"] == "mixed" and mixed.attrs["pusht"]["explore_episodes"] == [1, 3]
    assert mixed.attrs["pusht"]["explore_fraction"] == 0.5
    for e in range(4):  # mixed: scripted episodes as scripted writes them, the others as explore does
        twin = explore if e in (1, 3) else scripted
        np.testing.assert_array_equal(mixed.episode(e)["action"], twin.episode(e)["action"])
    # exploration commands far jumps the scripted pusher (≤ 40 units/step + noise) never does
    def step_to_target(store):  # distance from the pusher to its commanded target, env units
        return np.linalg.norm(store.action() - store.state()[:, :2], axis=1)
    far_scripted, far_explore = (float((step_to_target(s) > 80.0).mean()) for s in (scripted, explore))
    assert far_scripted < 0.01 and far_explore > 0.05, (far_scripted, far_explore)
    assert explore.action().min() >= 10.0 and explore.action().max() <= 502.0
    assert explore_episodes("mixed", 0.25, 8) == [3, 7] and explore_episodes("mixed", 0.0, 5) == []
    with pytest.raises(ValueError, match=r"one of \('scripted', 'explore', 'mixed', 'orbit'\), got 'random'"):
        generate_pusht(tmp_path / "x.zarr", behavior="random", **tiny)
    with pytest.raises(ValueError, match=r"explore_fraction must be in \[0, 1\], got 1.5"):
        generate_pusht(tmp_path / "x.zarr", behavior="mixed", explore_fraction=1.5, **tiny)
    assert not (tmp_path / "x.zarr").exists()


def test_orbit_pusher_circles_the_block_at_its_radius_and_turns_with_each_arc():
    from crcm_robotics.data.pusht import OrbitPusher

    pusher = OrbitPusher(np.random.default_rng(3))
    block = np.array([256.0, 256.0])
    agent = block + np.array([200.0, 0.0])
    angles, radii, arcs = [], [], []
    for _ in range(120):  # a pusher that reaches every commanded target
        agent = pusher(agent, block).astype(np.float64)
        rel = agent - block
        angles.append(math.atan2(rel[1], rel[0]))
        radii.append(float(np.linalg.norm(rel)))
        arcs.append((pusher.radius, pusher.omega, pusher.steps_left))
    assert all(25.0 <= r <= 120.0 and 0.06 <= abs(w) <= 0.22 for r, w, _ in arcs)
    turns = np.angle(np.exp(1j * np.diff(angles)))
    # on its circle and within one arc, the pusher turns the arc's way (the noise flips a few small steps)
    along = [np.sign(turns[i]) == np.sign(arcs[i + 1][1]) for i in range(len(turns))
             if arcs[i][:2] == arcs[i + 1][:2] and abs(radii[i] - arcs[i][0]) < 15.0]
    assert len(along) > 40 and np.mean(along) > 0.85, (len(along), np.mean(along))
    assert np.median(np.abs(np.array(radii[20:]) - np.array([a[0] for a in arcs[20:]]))) < 10.0
    assert len({a[1] for a in arcs}) >= 3  # new arcs: new speeds and directions


def test_orbit_behaviour_is_a_held_out_store_of_its_own(tmp_path):
    tiny = dict(episodes=3, size=32, seed=5, min_steps=60, max_steps=60, progress=False)
    first = generate_pusht(tmp_path / "orbit.zarr", workers=1, behavior="orbit", **tiny)
    generate_pusht(tmp_path / "orbit2.zarr", workers=2, behavior="orbit", **tiny)
    assert _arrays(tmp_path / "orbit.zarr") == _arrays(tmp_path / "orbit2.zarr")  # deterministic per seed
    store = TrajectoryStore(tmp_path / "orbit.zarr")
    assert store.attrs["pusht"]["behavior"] == "orbit" and store.attrs["pusht"]["explore_episodes"] == []
    assert "orbit pusher" in store.attrs["source"] and first["explore_episodes"] == 0
    assert first["contact_fraction"] > 0.05  # its arcs sweep into the block
