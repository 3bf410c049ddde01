"""Episodes generated in worker processes but written in order (the generators' shared loop)."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def ordered_results(fn: Callable[[Any], Any], tasks: Iterable[Any], workers: int) -> Iterator[Iterator[Any]]:
    """``fn`` over ``tasks``, results in task order: in this process when ``workers == 1``, else in that many
    spawned processes (spawn: simulators and GL contexts do not survive a fork). The pool is closed on exit."""
    if workers == 1:
        yield map(fn, tasks)
        return
    pool = mp.get_context("spawn").Pool(workers)
    try:
        yield pool.imap(fn, tasks, chunksize=1)
    finally:
        pool.close()
        pool.join()
