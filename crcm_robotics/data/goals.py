"""Start/goal pairs for planning benchmarks, drawn the same way for every simulator (DINO-WM's recipe)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from crcm_robotics.data.store import TrajectoryStore


def draw_goal_pairs(store: TrajectoryStore, episodes: list[int], n: int, ahead: int, context: int, seed: int,
                    make_pair: Callable[[int, int], Any], keep: Callable[[Any], bool]) -> list[Any]:
    """Up to ``n`` pairs ``make_pair(episode, start)`` that ``keep`` accepts, round-robin over the shuffled
    ``episodes`` (one per episode per pass, so the pairs spread over them). A start leaves a full ``context``
    before it (each context frame has the action that made it) and ``ahead`` logged actions after it."""
    rng = np.random.default_rng(seed)
    order = [int(e) for e in rng.permutation(np.asarray(episodes, dtype=np.int64))]
    pending: dict[int, list[int]] = {}
    for e in order:
        s, t = store.episode_bounds(e)
        pending[e] = [int(i) for i in rng.permutation(np.arange(context, (t - s) - ahead))]
    pairs: list[Any] = []
    while len(pairs) < n and any(pending.values()):
        for e in order:
            if len(pairs) >= n:
                break
            while pending[e]:
                pair = make_pair(e, pending[e].pop())
                if keep(pair):
                    pairs.append(pair)
                    break
    return pairs
