"""The node's model: an in-process :class:`crcm_robotics.runtime.WorldModel` or a msgpack-server client.

Both sides expose ``imagine(actions [N, Hz, A], context=(frames, actions), goal)``;
:class:`ModelHandle` gives the node one interface and one :class:`ModelSpec`
whichever backend is configured. The runtime (torch) and the client are
imported only when a handle is opened.

:func:`open_planner_model` gives ``~/imagine`` its own model in a worker process
(in-process backends): a planner's batched rollout holds the GIL through long
torch ops, and in the node's process it starved the prediction stream (5 Hz fell
to under 3 Hz on 2 CPU cores while a client called ``~/imagine`` back to back).
"""

from __future__ import annotations

import multiprocessing
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from crcm_robotics.ros.imagine import ModelSpec
from crcm_robotics.ros.params import REMOTE_BACKEND, NodeParams


@dataclass(frozen=True)
class Prediction:
    frames: np.ndarray | None  # uint8 [N, Hz, H, W, 3]; None when the caller asked for costs only
    costs: np.ndarray | None  # float32 [N]
    latency_ms: float


_REQUIRED = object()


def _field(obj: Any, name: str, where: str, default: Any = _REQUIRED) -> Any:
    """``obj.name`` or ``obj[name]`` (the runtime returns objects, the msgpack client may return dicts);
    ``default`` when it is absent, if given."""
    if isinstance(obj, dict):
        if name not in obj:
            if default is not _REQUIRED:
                return default
            raise RuntimeError(f"{where} has no {name!r} (keys: {sorted(obj)})")
        return obj[name]
    if not hasattr(obj, name):
        if default is not _REQUIRED:
            return default
        raise RuntimeError(f"{where} has no attribute {name!r}")
    return getattr(obj, name)


def spec_of(source: Any, where: str) -> ModelSpec:
    """The :class:`ModelSpec` of a WorldModel, or of the ``info()`` reply of a server."""
    shape = tuple(int(s) for s in _field(source, "image_shape", where))
    if len(shape) != 3 or shape[2] != 3:
        raise RuntimeError(f"{where} reports image_shape {shape}, expected (H, W, 3)")
    try:
        return ModelSpec(
            image_shape=shape,  # type: ignore[arg-type]
            action_dim=int(_field(source, "action_dim", where)),
            context_frames=int(_field(source, "context_frames", where)),
            # absent on servers from before it existed (and on models without it)
            frame_skip=int(_field(source, "frame_skip", where, default=1)),
        )
    except ValueError as exc:  # ModelSpec's own check: frame_skip must divide action_dim
        raise RuntimeError(f"{where}: {exc}") from None


def resolve_spec(params: NodeParams, model: ModelSpec) -> ModelSpec:
    """The spec the node works with: the model's, with ``context_frames`` possibly lowered, after checks."""
    h, w, _ = model.image_shape
    if (params.image_height and params.image_height != h) or (params.image_width and params.image_width != w):
        raise ValueError(
            f"parameters image_height/image_width are {params.image_height}/{params.image_width} "
            "but the model "
            f"takes {h}x{w} images; fix the params file or set them to 0"
        )
    k = params.context_frames or model.context_frames
    if k > model.context_frames:
        raise ValueError(
            f"parameter context_frames is {k} but the model was built for {model.context_frames}"
        )
    return ModelSpec(model.image_shape, model.action_dim, k, model.frame_skip)


class ModelHandle:
    """One ``imagine`` interface over either backend."""

    def __init__(self, impl: Any, spec: ModelSpec, description: str):
        self._impl = impl
        self.spec = spec
        self.description = description

    def imagine(
        self,
        actions_NHzA: np.ndarray,
        context: tuple[np.ndarray, np.ndarray],
        goal: np.ndarray | None = None,
        return_frames: bool = True,
    ) -> Prediction:
        """``return_frames=False``: costs only (the model keeps its frames on its device; nothing is copied)."""
        start = time.perf_counter()
        result = self._impl.imagine(
            np.ascontiguousarray(actions_NHzA, dtype=np.float32),
            context=(np.ascontiguousarray(context[0]), np.ascontiguousarray(context[1], dtype=np.float32)),
            goal=goal,
            return_frames="all" if return_frames else "none",
        )
        wall_ms = (time.perf_counter() - start) * 1e3
        frames = np.asarray(_field(result, "frames", "imagine result")) if return_frames else None
        costs = _field(result, "costs", "imagine result")
        latency = _field(result, "latency_ms", "imagine result")
        return Prediction(
            frames=frames,
            costs=None if costs is None else np.asarray(costs, dtype=np.float32),
            latency_ms=float(latency if latency is not None else wall_ms),
        )


def open_model(params: NodeParams) -> ModelHandle:
    """Load the in-process model or connect to the server, per ``params.backend``."""
    if params.backend == REMOTE_BACKEND:
        from crcm_robotics.serve.client import WorldModelClient

        client = WorldModelClient(host=params.server_host, port=params.server_port, token=params.token)
        where = f"msgpack server {params.server_host}:{params.server_port}"
        spec = spec_of(client.info(), f"info() of {where}")
        return ModelHandle(client, spec, where)
    from crcm_robotics.runtime import WorldModel

    model = WorldModel.load(
        params.checkpoint, device=params.device, backend=params.backend, steps=params.steps or None
    )
    where = f"{params.checkpoint} ({params.backend} on {params.device})"
    return ModelHandle(model, spec_of(model, where), where)


PLANNER_NICENESS = 10  # how much lower ~/imagine's worker process runs than the node (Linux nice levels)


def _planner_worker(conn: Any, params: NodeParams) -> None:
    """The worker process: load the model, answer ``(actions, context, goal)`` with ``(ok, result)``."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C on the process group: the node ends us
    # Below the stream's priority: on a busy CPU the scheduler gives the prediction stream its cores first.
    os.nice(PLANNER_NICENESS)
    try:
        handle = open_model(params)
    except Exception as exc:  # reported to the node, which exits with one line
        conn.send((False, f"{type(exc).__name__}: {exc}"))
        return
    conn.send((True, (handle.spec, handle.description)))
    while True:
        try:
            actions, context, goal, return_frames = conn.recv()
        except EOFError:  # the node is gone
            return
        try:
            p = handle.imagine(actions, context, goal, return_frames)
            conn.send((True, (p.frames, p.costs, p.latency_ms)))
        except Exception as exc:
            conn.send((False, (type(exc).__name__, str(exc), isinstance(exc, ValueError))))


class WorkerModel:
    """``ModelHandle.imagine`` answered by a model in a worker process (one call at a time)."""

    def __init__(self, params: NodeParams, start_timeout_s: float = 600.0):
        ctx = multiprocessing.get_context("spawn")  # no fork of a process running DDS threads
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_planner_worker, args=(child, params), daemon=True, name="planner")
        self._proc.start()
        child.close()
        if not self._conn.poll(start_timeout_s):
            self.close()
            raise RuntimeError(f"the planner's model process did not load {params.checkpoint} in {start_timeout_s} s")
        ok, payload = self._conn.recv()
        if not ok:
            self.close()
            raise RuntimeError(f"the planner's model process failed to load the model: {payload}")
        self.spec, description = payload
        self.description = f"{description}, worker process"

    def imagine(
        self, actions_NHzA: np.ndarray, context: tuple[np.ndarray, np.ndarray], goal: np.ndarray | None = None,
        return_frames: bool = True,
    ) -> Prediction:
        self._conn.send((actions_NHzA, context, goal, return_frames))
        ok, payload = self._conn.recv()
        if not ok:
            name, message, is_value_error = payload
            raise (ValueError if is_value_error else RuntimeError)(
                message if is_value_error else f"{name}: {message}"
            )
        frames, costs, latency_ms = payload
        return Prediction(frames=frames, costs=costs, latency_ms=latency_ms)

    def close(self) -> None:
        self._conn.close()
        self._proc.join(timeout=10)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(timeout=10)


def open_planner_model(params: NodeParams) -> ModelHandle | WorkerModel:
    """``~/imagine``'s model: a second client of the server (remote), else a model in a worker process."""
    if params.backend == REMOTE_BACKEND:
        return open_model(params)
    return WorkerModel(params)
