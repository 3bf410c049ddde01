"""Planning (crcm_robotics.plan): planners on toy problems with known optima, goal costs, the probe, the
objective's frame-skip grouping, and every ``imagine`` return mode through WorldModel and the msgpack server."""

from __future__ import annotations

import math

import msgpack
import numpy as np
import pytest
import torch

from crcm_robotics.plan import MPC, ActionSpace, CostError, PlanError, SamplingPlanner, latent_mse, make_cost
from crcm_robotics.plan.objective import group_frame_skip, model_context
from crcm_robotics.plan.probe import ProbeError, ProbeSpec, StateProbe, load_probe, save_probe

H = W = 32
A = 2


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def box_space(horizon=10, hold=1, mode="absolute") -> ActionSpace:
    return ActionSpace(torch.zeros(2), torch.full((2,), 10.0), horizon, hold, mode)


def quadratic(target_HzA: torch.Tensor):
    """cost = Σ_t ‖a_t − target_t‖²: the optimum is ``target`` itself, at cost 0."""
    return lambda actions: (actions - target_HzA).square().sum(dim=(1, 2))


# ------------------------------------------------------------------ planners


@pytest.mark.parametrize("kind", ["cem", "mppi"])
def test_planners_find_the_known_optimum_of_a_quadratic(kind):
    space = box_space(horizon=10, hold=5)
    target = torch.tensor([[2.0, 7.0]] * 5 + [[8.0, 3.0]] * 5)  # two held waypoints
    planner = SamplingPlanner(kind, samples=128, iterations=15, elites=16, seed=0)
    res = planner.solve(quadratic(target), space, anchor_A=torch.tensor([5.0, 5.0]))
    assert res.actions.shape == (10, 2) and res.z.shape == (2, 2)
    torch.testing.assert_close(res.actions, target, atol=0.15, rtol=0)
    assert res.cost < 0.1 and res.iterations == 15 and res.evaluations == 15 * 128
    assert res.best_per_iteration == sorted(res.best_per_iteration, reverse=True)  # never gets worse


def test_random_shooting_is_one_round_and_worse_than_cem():
    space = box_space(horizon=8, hold=2)
    target = torch.linspace(1, 9, 8)[:, None].expand(8, 2)
    rs = SamplingPlanner("random", samples=256, seed=0).solve(quadratic(target), space, torch.full((2,), 5.0))
    cem = SamplingPlanner("cem", samples=128, iterations=10, elites=16, seed=0).solve(
        quadratic(target), space, torch.full((2,), 5.0))
    assert rs.iterations == 1 and rs.evaluations == 256
    assert cem.cost < rs.cost / 5


def test_delta_actions_sum_from_the_anchor_and_clamp():
    space = box_space(horizon=4, hold=2, mode="delta")
    z = torch.tensor([[[1.0, -1.0], [2.5, 2.5]]])  # two decisions, each held 2 steps
    a = space.actions(z, torch.tensor([9.0, 1.0]))
    torch.testing.assert_close(a[0], torch.tensor([[10.0, 0.0], [10.0, 0.0], [10.0, 2.5], [10.0, 2.5]]))
    assert space.z_high.tolist() == [2.5, 2.5]  # delta_fraction 0.25 of the range 10
    target = torch.tensor([[6.0, 4.0]] * 4)
    res = SamplingPlanner("cem", samples=128, iterations=12, elites=16, seed=1).solve(
        quadratic(target), space, torch.tensor([5.0, 5.0]))
    torch.testing.assert_close(res.actions, target, atol=0.15, rtol=0)


def test_mpc_warm_start_shifts_by_executed_decisions():
    space = box_space(horizon=6, hold=2)
    mpc = MPC(SamplingPlanner("cem", samples=64, iterations=8, elites=8, seed=0), space)
    target = torch.tensor([[1.0, 1.0]] * 2 + [[5.0, 5.0]] * 2 + [[9.0, 9.0]] * 2)
    first = mpc.plan(quadratic(target), torch.zeros(2))
    mpc.advance(2)  # one held decision executed: the warm start now begins at the second waypoint
    assert mpc._mean is not None
    torch.testing.assert_close(mpc._mean, torch.cat([first.z[1:], first.z[-1:]]))
    mpc.advance(1)  # a decision begun, absolute mode: it is a place, so it stays
    torch.testing.assert_close(mpc._mean, torch.cat([first.z[1:], first.z[-1:]]))


def test_mpc_warm_start_in_delta_mode_zeroes_a_begun_decision():
    """Replanning inside a held decision: the anchor (the last command) is already where that decision's
    step led, so the warm start must not step there again; whole decisions shift as before."""
    space = box_space(horizon=6, hold=2, mode="delta")
    mpc = MPC(SamplingPlanner("cem", samples=64, iterations=8, elites=8, seed=0), space)
    target = torch.tensor([[6.0, 6.0]] * 2 + [[7.0, 7.0]] * 2 + [[8.0, 8.0]] * 2)
    z = mpc.plan(quadratic(target), torch.full((2,), 5.0)).z
    assert bool((z.abs() > 0.2).all())  # every decision steps (by about +1)
    mpc.advance(1)  # half of the first decision executed: the anchor is now 5 + z[0]
    assert mpc._mean is not None
    torch.testing.assert_close(mpc._mean, torch.cat([torch.zeros_like(z[:1]), z[1:]]))
    # from the new anchor the warm start repeats the old plan's waypoints from the current one (held a whole
    # `hold` again), not each one step further
    old = space.actions(z[None], torch.full((2,), 5.0))[0]
    torch.testing.assert_close(space.actions(mpc._mean[None], old[0])[0], old)
    mpc.advance(3)  # one whole decision and half the next: shift by one, then zero the begun one
    torch.testing.assert_close(mpc._mean, torch.cat([torch.zeros_like(z[:1]), z[2:], torch.zeros_like(z[:1])]))


def test_effort_is_the_mean_squared_waypoint_move_in_range_units():
    space = box_space(horizon=4, hold=2)  # range 10 in both dims
    anchor = torch.tensor([5.0, 5.0])
    still = torch.full((1, 4, 2), 5.0)
    moved = torch.tensor([[[10.0, 5.0]] * 2 + [[10.0, 0.0]] * 2])  # +half the range in x, then −half in y
    torch.testing.assert_close(space.effort(torch.cat([still, moved]), anchor), torch.tensor([0.0, 0.25]))
    # magnitude: the command itself (velocity-commanded robots keep still at zero), in range units:
    # still 0.5² + 0.5² at each waypoint; moved (1² + 0.5²) then (1² + 0²), averaged
    torch.testing.assert_close(space.effort(torch.cat([still, moved]), anchor, on="magnitude"),
                               torch.tensor([0.5, 1.125]))
    # only dim 0 counted (the arm leaves its ±1 gripper command out): still 0.5²; moved 1², 1²
    torch.testing.assert_close(space.effort(torch.cat([still, moved]), anchor, on="magnitude", dims=(0,)),
                               torch.tensor([0.25, 1.0]))
    with pytest.raises(PlanError, match="effort on 'jerk' unknown"):
        space.effort(still, anchor, on="jerk")
    with pytest.raises(PlanError, match=r"effort dims \[2\] must be action dims in \[0, 2\)"):
        space.effort(still, anchor, dims=(2,))


def test_effort_weight_keeps_the_planner_still_where_the_cost_is_flat():
    """A cost that cannot tell candidates apart, only noise (imagination that does not see an object at its
    goal pushed on): with the effort term the plan stays near the last command, without it it wanders; the
    same term barely moves the optimum of a cost that does care."""
    space, anchor = box_space(horizon=10, hold=5, mode="delta"), torch.tensor([5.0, 5.0])

    def wander(effort_weight: float) -> float:
        """The plan's largest distance from the anchor, averaged over four seeds (range 10)."""
        moves = []
        for seed in range(4):
            gen = torch.Generator().manual_seed(seed)
            noisy_flat = lambda actions: 0.01 * torch.rand(len(actions), generator=gen)  # noqa: E731
            planner = SamplingPlanner("cem", samples=128, iterations=8, elites=16, seed=seed,
                                      effort_weight=effort_weight)
            moves.append(float((planner.solve(noisy_flat, space, anchor).actions - anchor).abs().max()))
        return sum(moves) / len(moves)

    assert wander(1.0) < 0.3 and wander(0.0) > 0.8
    target = torch.tensor([[7.0, 3.0]] * 10)
    res = SamplingPlanner("cem", samples=128, iterations=15, elites=16, seed=0, effort_weight=1.0).solve(
        quadratic(target), space, anchor)
    torch.testing.assert_close(res.actions, target, atol=0.15, rtol=0)


def test_time_budget_stops_early():
    slow = lambda actions: (torch.ones(len(actions)), __import__("time").sleep(0.05))[0]  # noqa: E731
    res = SamplingPlanner("cem", samples=8, iterations=100, elites=2, time_budget_s=0.12).solve(
        slow, box_space(), torch.zeros(2))
    assert 2 <= res.iterations <= 5


@pytest.mark.parametrize("kwargs, message", [
    ({"kind": "beam"}, "planner 'beam' unknown"),
    ({"elites": 300}, "elites must be in [1, samples=256]"),
    ({"samples": 1}, "need 2 ≤ samples ≤ 16384"),
    ({"samples": 100_000}, "need 2 ≤ samples ≤ 16384"),
    ({"iterations": 5000}, "1 ≤ iterations ≤ 1000"),
    ({"temperature": 0.0}, "temperature > 0"),
    ({"effort_weight": -1.0}, "effort_weight must be a finite number ≥ 0, got -1.0"),
    ({"effort_weight": float("nan")}, "effort_weight must be a finite number ≥ 0, got nan"),
    ({"effort_on": "jerk"}, "effort_on='jerk' unknown; expected one of moves, magnitude"),
    ({"effort_dims": (0, -1)}, "effort_dims must be action dims, integers ≥ 0; got [0, -1]"),
])
def test_bad_planner_settings_are_named(kwargs, message):
    with pytest.raises(PlanError, match=message.replace("[", r"\[").replace("]", r"\]")):
        SamplingPlanner(**kwargs)


def test_bad_action_bounds_are_named():
    with pytest.raises(PlanError, match="must be finite"):
        ActionSpace(torch.tensor([0.0, float("nan")]), torch.ones(2), 5)
    with pytest.raises(PlanError, match="high > low"):
        ActionSpace(torch.ones(2), torch.ones(2), 5)
    with pytest.raises(PlanError, match="action mode 'relative' unknown"):
        ActionSpace(torch.zeros(2), torch.ones(2), 5, mode="relative")


# ------------------------------------------------------------------ costs


def square_frames(positions: list[int], t: int = 3) -> torch.Tensor:
    """uint8 [N, T, 32, 32, 3]: black frames with a 4-px white square whose column is ``positions[n]``."""
    f = torch.zeros(len(positions), t, H, W, 3, dtype=torch.uint8)
    for n, x in enumerate(positions):
        f[n, :, 14:18, x: x + 4] = 255
    return f


def test_costs_shapes_ranges_and_smoothness():
    frames = square_frames([4, 6, 9, 12, 24])
    goal = frames[0, -1]
    for name in ("final_mse", "pooled_mse", "path_mse"):
        c = make_cost(name, goal)(frames)
        assert c.shape == (5,) and c.dtype == torch.float32
        assert float(c[0]) == 0.0 and bool((c >= 0).all()) and bool((c <= 1).all())
    final = make_cost("final_mse", goal)(frames)
    pooled = make_cost("pooled_mse", goal)(frames)
    # A plain MSE cannot tell a near miss from a far one once the squares no longer overlap; pooling can,
    # up to the largest pool (8 px), beyond which every miss costs the same.
    assert math.isclose(float(final[2]), float(final[4]), rel_tol=1e-6)
    assert float(pooled[1]) < float(pooled[2]) < float(pooled[3]) <= float(pooled[4])


def test_path_cost_weights_later_frames_more():
    early = square_frames([4], t=4)
    early[:, 2:] = square_frames([20], t=2)  # at the goal first, then away
    late = square_frames([20], t=4)
    late[:, 2:] = square_frames([4], t=2)  # away first, then at the goal
    goal = square_frames([4], t=1)[0, 0]
    path = make_cost("path_mse", goal)
    assert float(path(late)[0]) < float(path(early)[0])


def test_cost_errors_are_named():
    goal = square_frames([4])[0, 0]
    with pytest.raises(CostError, match="cost 'l1' unknown"):
        make_cost("l1", goal)
    with pytest.raises(CostError, match="needs a state probe"):
        make_cost("probe", goal)
    with pytest.raises(CostError, match="goal must be uint8"):
        make_cost("final_mse", goal.float())
    with pytest.raises(CostError, match=r"frames must be uint8 \[N, T, 32, 32, 3\]"):
        make_cost("final_mse", goal)(square_frames([4])[:, 0])
    with pytest.raises(CostError, match="cost 'latent_mse' compares latents of a world model's codec"):
        make_cost("latent_mse", goal)
    with pytest.raises(CostError, match=r"latents must be \[N, 3, 8, 8\]; got \(2, 3, 4, 4\)"):
        latent_mse(torch.zeros(2, 3, 4, 4), torch.zeros(1, 3, 8, 8))


def test_latent_cost_compares_encoded_last_frames():
    """On frames, latent_mse encodes the last frame and the goal with the model's encoder (here 4×4 average
    pooling, a stand-in codec): zero at the goal, larger the further the square."""
    encode = lambda f: torch.nn.functional.avg_pool2d(f.movedim(-1, -3).float() / 127.5 - 1, 4)  # noqa: E731
    frames = square_frames([4, 6, 12, 24])
    cost = make_cost("latent_mse", frames[0, -1], encode=encode)(frames)
    assert cost.shape == (4,) and float(cost[0]) == 0.0 and bool((cost[1:] > 0).all())
    torch.testing.assert_close(cost, latent_mse(encode(frames[:, -1]), encode(frames[:1, -1])))


def pusht_spec() -> ProbeSpec:
    return ProbeSpec(("agent_x", "agent_y", "block_angle"), (False, False, True), (256.0, 256.0, 0.0),
                     (100.0, 100.0, 1.0), (H, W), width=8)


def test_probe_embedding_round_trip_and_cost(tmp_path):
    spec = pusht_spec()
    state = torch.tensor([[356.0, 156.0, 3.0], [256.0, 256.0, -3.0]])
    e = spec.embed_states(state)
    torch.testing.assert_close(e[0], torch.tensor([1.0, -1.0, math.cos(3.0), math.sin(3.0)]))
    # 3 and -3 rad are 0.28 rad apart across the wrap: their angle embeddings are close.
    assert float((e[0, 2:] - e[1, 2:]).norm()) < 0.3
    torch.manual_seed(0)
    probe = StateProbe(spec).eval()
    save_probe(tmp_path / "probe", probe, {"val_error": 1.0})
    loaded = load_probe(tmp_path / "probe")
    frames = square_frames([4, 12, 24])
    torch.testing.assert_close(loaded.embed(frames[:, -1]), probe.embed(frames[:, -1]))
    c = make_cost("probe", frames[0, -1], loaded)(frames)
    assert c.shape == (3,) and float(c[0]) < 1e-8 and bool((c[1:] > 0).all())
    assert loaded.state_of(frames[:, -1]).shape == (3, 3)
    with pytest.raises(ProbeError, match=r"reads uint8 \[B, 32, 32, 3\]"):
        loaded.embed(torch.zeros(1, 16, 16, 3, dtype=torch.uint8))
    with pytest.raises(ProbeError, match="needs meta.json"):
        load_probe(tmp_path / "nowhere")


def test_probe_cost_units_reweigh_positions_and_angles_only_in_the_cost():
    torch.manual_seed(0)
    probe = StateProbe(pusht_spec()).eval()
    frames = square_frames([4, 12, 24])
    goal = frames[0, -1]
    units = probe.with_cost_units(20.0, 0.5)  # positions in 20-unit steps (scale 100), angles in 0.5 rad (scale 1)
    torch.testing.assert_close(units.cost_weight, torch.tensor([5.0, 5.0, 2.0, 2.0]))
    emb, goal_emb = probe.embed(frames[:, -1]), probe.embed(goal[None])
    expected = ((emb - goal_emb) * units.cost_weight).square().sum(-1)
    torch.testing.assert_close(make_cost("probe", goal, units)(frames), expected)
    torch.testing.assert_close(make_cost("probe", goal, probe)(frames), (emb - goal_emb).square().sum(-1))
    np.testing.assert_array_equal(units.state_of(frames[:, -1]), probe.state_of(frames[:, -1]))  # reads alike
    assert units.features is probe.features  # the same network, not a copy
    torch.testing.assert_close(probe.with_cost_units(0.0, 0.0).cost_weight, torch.ones(4))
    with pytest.raises(ProbeError, match="cost units must be ≥ 0"):
        probe.with_cost_units(-1.0, 0.0)


def test_probe_mass_reads_the_block_position_off_its_colour_centroid():
    """``probe_mass``: the block's (x, y) from the block colour's pixel centroid, the rest from the network;
    a frame without the colour keeps the network's reading; cost units apply as for ``probe``."""
    from crcm_robotics.plan.probe import MassReading

    spec = ProbeSpec(("agent_x", "agent_y", "block_x", "block_y", "block_angle"), (False,) * 4 + (True,),
                     (256.0,) * 4 + (0.0,), (100.0,) * 4 + (1.0,), (H, W), width=8)
    torch.manual_seed(0)
    probe = StateProbe(spec).eval()
    mass = MassReading((119.0, 136.0, 153.0), 40.0, (2, 3), 512.0 / W)
    read = probe.with_mass(mass).with_cost_units(20.0, 0.5)  # units kept alongside the mass reading
    assert read.mass == mass and read.features is probe.features and probe.mass is None

    def frame_with_block(x0: int, y0: int) -> torch.Tensor:
        f = torch.zeros(H, W, 3, dtype=torch.uint8)
        f[y0:y0 + 4, x0:x0 + 4] = torch.tensor([119, 136, 153], dtype=torch.uint8)
        return f

    frames = torch.stack([frame_with_block(10, 20), frame_with_block(14, 20), torch.zeros(H, W, 3, dtype=torch.uint8)])
    emb, net = read.embed_mass(frames), probe.embed(frames)
    upp = 512.0 / W  # pixels 10..13 have centres 10.5..13.5: the centroid is pixel 12, y pixel 22
    torch.testing.assert_close(emb[0, 2:4], torch.tensor([(12 * upp - 256) / 100, (22 * upp - 256) / 100]))
    torch.testing.assert_close(emb[:, [0, 1, 4, 5]], net[:, [0, 1, 4, 5]])  # pusher and angle: the network's
    torch.testing.assert_close(emb[2], net[2])  # no block-coloured pixel: the network's reading
    goal = frames[0]
    cost = make_cost("probe_mass", goal, read)(frames[:, None])
    assert float(cost[0]) < 1e-8
    # 4 pixels = 64 units = 3.2 steps of 20 units to the right; the rest of the embedding differs a little too
    diff = (read.embed_mass(frames[1:2]) - read.embed_mass(goal[None])) * read.cost_weight
    torch.testing.assert_close(cost[1], diff.square().sum())
    assert float(diff[0, 2]) == pytest.approx(4 * upp / 20.0, rel=1e-5)
    with pytest.raises(CostError, match="needs a probe with a colour-mass reading"):
        make_cost("probe_mass", goal, probe)
    with pytest.raises(ProbeError, match="expected two position states"):
        probe.with_mass(MassReading((1.0, 2.0, 3.0), 40.0, (2, 4), 8.0))  # 4 is the angle
    with pytest.raises(ProbeError, match="tol and units_per_px > 0"):
        MassReading((1.0, 2.0, 3.0), 0.0, (2, 3), 8.0)


# ------------------------------------------------------------------ objective helpers


def test_frame_skip_grouping_and_history_context():
    acts = torch.arange(2 * 6 * 2, dtype=torch.float32).view(2, 6, 2)
    g = group_frame_skip(acts, 3)
    assert g.shape == (2, 2, 6) and g[0, 1].tolist() == acts[0, 3:6].flatten().tolist()
    with pytest.raises(PlanError, match="not a multiple of the model's frame_skip 4"):
        group_frame_skip(acts, 4)
    frames = np.arange(10, dtype=np.uint8)[:, None, None, None].repeat(2, 1).repeat(2, 2).repeat(3, 3)
    actions = np.arange(20, dtype=np.float32).reshape(10, 2)
    f, a = model_context(frames, actions, frame_skip=3, k=3)
    assert f[:, 0, 0, 0].tolist() == [3, 6, 9]
    assert a[-1].tolist() == actions[7:10].flatten().tolist()  # the 3 commands that produced frame 9
    f1, a1 = model_context(frames[:2], actions[:2], frame_skip=3, k=3)  # short history: pad the oldest
    assert f1[:, 0, 0, 0].tolist() == [1] and a1[0].tolist() == [0, 1, 0, 1, 2, 3]


# ------------------------------------------------------------------ imagine return modes


@pytest.fixture(scope="module")
def wm(tiny_student):
    from crcm_robotics.runtime import WorldModel

    return WorldModel.load(tiny_student, seed=0)


@pytest.fixture(scope="module")
def query(tiny_student):
    rng = np.random.default_rng(0)
    ctx = (rng.integers(0, 256, (2, H, W, 3), dtype=np.uint8), rng.uniform(100, 400, (2, A)).astype(np.float32))
    actions = rng.uniform(100, 400, (5, 3, A)).astype(np.float32)
    goal = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    return ctx, actions, goal


def test_worldmodel_return_modes_agree(wm, query):
    from crcm_robotics.runtime import InputError

    ctx, actions, goal = query
    full = wm.imagine(actions, context=ctx, goal=goal, seed=3, cost="pooled_mse")
    best = wm.imagine(actions, context=ctx, goal=goal, seed=3, cost="pooled_mse", return_frames="best")
    none = wm.imagine(actions, context=ctx, goal=goal, seed=3, cost="pooled_mse", return_frames="none")
    assert full.frames.shape == (5, 3, H, W, 3) and none.frames is None
    np.testing.assert_array_equal(full.costs, none.costs)
    assert best.best_index == full.best_index == int(np.argmin(full.costs))
    np.testing.assert_array_equal(best.frames[0], full.frames[full.best_index])
    on_device = wm.imagine_tensor(torch.from_numpy(actions), context=ctx, seed=3)
    np.testing.assert_array_equal(on_device.numpy(), full.frames)
    with pytest.raises(InputError, match="return_frames 'some' unknown"):
        wm.imagine(actions, context=ctx, return_frames="some")
    with pytest.raises(InputError, match="'best' needs a goal"):
        wm.imagine(actions, context=ctx, return_frames="best")
    with pytest.raises(InputError, match="needs a state probe"):
        wm.imagine(actions, context=ctx, goal=goal, cost="probe")


def test_shared_noise_makes_candidates_differ_by_their_actions_only(wm, tiny_student, query):
    from crcm_robotics.runtime import WorldModel

    ctx, actions, _ = query
    same = torch.from_numpy(np.repeat(actions[:1], 4, axis=0))  # four copies of one candidate
    own = wm.imagine_tensor(same, context=ctx, seed=3)
    assert not torch.equal(own[0], own[1])  # each candidate draws its own noise
    chunked = WorldModel.load(tiny_student, seed=0, max_batch=3)  # rows 0-2 and 3 in separate chunks
    for model in (wm, chunked):
        shared = model.imagine_tensor(same, context=ctx, seed=3, shared_noise=True)
        assert all(torch.equal(shared[0], shared[i]) for i in range(1, 4))
    # a candidate's frames do not depend on the others in its batch (up to a rounding step of batched maths)
    batch = wm.imagine_tensor(torch.from_numpy(actions), context=ctx, seed=3, shared_noise=True)
    alone = wm.imagine_tensor(torch.from_numpy(actions[2:3]), context=ctx, seed=3, shared_noise=True)
    assert (batch[2].int() - alone[0].int()).abs().max() <= 1
    full = wm.imagine(actions, context=ctx, seed=3, shared_noise=True)
    np.testing.assert_array_equal(full.frames, batch.numpy())


def test_imagined_score_averages_draws_and_names_bad_noise_settings(wm, query):
    from crcm_robotics.plan.objective import imagined_score

    ctx, actions, goal = query
    acts = torch.from_numpy(actions)
    one = [imagined_score(wm, ctx, goal, "pooled_mse", seed=s, noise="shared")(acts) for s in (5, 6)]
    two = imagined_score(wm, ctx, goal, "pooled_mse", seed=5, noise="shared", draws=2)(acts)
    torch.testing.assert_close(two, (one[0] + one[1]) / 2)
    assert not torch.equal(one[0], one[1])
    with pytest.raises(PlanError, match=r"noise='common' unknown; expected one of per_candidate, shared"):
        imagined_score(wm, ctx, goal, "pooled_mse", noise="common")
    with pytest.raises(PlanError, match=r"planner.draws=0 must be in \[1, 16\]"):
        imagined_score(wm, ctx, goal, "pooled_mse", draws=0)


def test_server_return_modes_and_bad_requests(wm, query):
    from crcm_robotics.serve.client import ServerError, WorldModelClient
    from crcm_robotics.serve.server import ServerThread, WorldModelServer

    ctx, actions, goal = query
    many = np.repeat(actions, 20, axis=0)  # 100 rollouts
    with ServerThread(WorldModelServer(wm)) as (host, port), WorldModelClient(host, port) as client:
        full = client.imagine(many, context=ctx, goal=goal, seed=1, cost="path_mse")
        lean = client.imagine(many, context=ctx, goal=goal, seed=1, cost="path_mse", return_frames="none")
        best = client.imagine(many, context=ctx, goal=goal, seed=1, cost="path_mse", return_frames="best")
        assert lean.frames is None and best.frames.shape == (1, 3, H, W, 3)
        np.testing.assert_array_equal(lean.costs, full.costs)
        assert best.best_index == lean.best_index == int(np.argmin(full.costs))
        np.testing.assert_array_equal(best.frames[0], full.frames[best.best_index])
        # A costs-only reply is kilobytes; the full one carries every frame.
        reply_bytes = len(msgpack.packb({"costs": lean.costs.tobytes()}))
        assert reply_bytes < 1024 < full.frames.nbytes
        for kwargs, message in [
            ({"cost": "l1"}, "cost 'l1' unknown"),
            ({"return_frames": "best", "goal": None}, "'best' needs a goal"),
            ({"return_frames": "some"}, "return_frames must be"),
            ({"goal": goal[:16]}, "goal has shape"),
            ({"goal": goal.astype(np.float32)}, "goal"),
        ]:
            args = {"context": ctx, "goal": goal} | kwargs
            with pytest.raises(ServerError, match=message):
                client.imagine(actions, **args)
        assert client.imagine(actions, context=ctx, goal=goal).costs.shape == (5,)  # still serving
