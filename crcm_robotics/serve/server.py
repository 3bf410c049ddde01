"""``crcm serve CKPT``: a :class:`crcm_robotics.runtime.WorldModel` behind the protocol of :mod:`.codec`.

    crcm serve outputs/student host=127.0.0.1 port=5555 device=cuda backend=cuda_graph
    crcm serve outputs/student token_file=~/.crcm_token request_timeout_s=5

Concurrency. One asyncio event loop owns every connection: framing, decoding,
auth, validation, timeouts and ``info`` (the health check, answered from a
cached dict, so it works while the model is busy). The model itself is
called from exactly one worker thread (:class:`ModelWorker`, a one-thread
executor), so it never sees two calls at once and requests of all
connections run in arrival order. A request waits at most
``request_timeout_s`` for its turn plus its computation; on timeout the
client gets a ``Timeout`` error, a queued job is dropped, a running one
finishes and its result is discarded (a timed-out ``reset``/``step`` leaves
that connection without a stream until its next ``reset``).

Streams. Every connection has its own stream (``reset``/``step``). The
WorldModel holds one stream, so each connection's :class:`Session` keeps the
last ``context_frames`` frames and actions of its stream (its context
window), and the worker remembers whose stream the model holds. A ``step``
from another connection first reloads the model with ``reset(window)``;
with a single streaming client nothing is ever reloaded. WorldModel's
``context_frames`` is its KV-cache window, so a reloaded stream sees the
same history as the uninterrupted one, up to the uint8 rounding of
generated frames and the noise draws. ``imagine`` is
stateless (the WorldModel copies the stream cache, never writes it): without
an explicit context it starts from the model's stream when that is this
connection's, else from the connection's window.

Robustness. A frame that is not msgpack, an unknown request type or field,
a wrong dtype/shape, an out-of-range size or a model error gets an error
reply and the connection keeps working; a request over
``max_message_bytes`` is drained and answered (or, past
``DRAIN_FACTOR`` × the limit, answered and that connection closed); a
wrong token closes that connection. No client can stop the server.

Shutdown (SIGINT/SIGTERM): stop listening, hang up on every client, let a
running model call finish, exit 0; a second signal does not wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import ipaddress
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crcm_robotics import __version__
from crcm_robotics.serve import codec

log = logging.getLogger("crcm_robotics.serve")

REQUEST_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {  # type -> (required, optional)
    "info": ((), ()),
    "reset": (("frames", "actions"), ("seed",)),
    "step": (("action",), ()),
    "imagine": (("actions",), ("context_frames", "context_actions", "goal", "seed", "cost", "return_frames")),
}
COMMON_FIELDS = ("type", "id", "token")
NO_STREAM_IMAGINE = (
    "imagine without context_frames/context_actions starts from this connection's stream: "
    "send reset first (or give a context)"
)


@dataclass(frozen=True)
class ServerLimits:
    """What the server accepts (``crcm serve`` fills it from :class:`crcm_robotics.config.ServeConfig`)."""

    max_message_bytes: int = codec.DEFAULT_SERVER_MAX_MESSAGE_BYTES
    request_timeout_s: float = 30.0
    idle_timeout_s: float = 0.0  # close a connection silent this long; 0 = never
    max_clients: int = 32
    max_rollouts: int = 256
    max_horizon: int = 64


class RequestError(Exception):
    """A request the server refuses; becomes an error reply ``{"type": kind, "message": str(self)}``."""

    def __init__(self, kind: str, message: str, close: bool = False):
        super().__init__(message)
        self.kind = kind
        self.close = close


# --- the model side -------------------------------------------------------------------------------


@dataclass
class Session:
    """One connection's stream: the last ``context_frames`` frames and actions, or none before a reset."""

    peer: str
    frames: np.ndarray | None = None  # uint8 [K, H, W, 3]
    actions: np.ndarray | None = None  # float32 [K, A]
    valid: bool = False
    authenticated: bool = False
    requests: int = 0


@dataclass
class _Job:
    cancelled: bool = False


class ModelWorker:
    """The model and the one thread that calls it; tracks whose stream the model holds."""

    def __init__(self, model: Any):
        self.model = model
        self.window = int(model.context_frames)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crcm-model")
        self._state = threading.Lock()  # guards Session.valid/frames/actions against the loop's timeout path
        self._loaded: Session | None = None  # worker-thread only

    async def run(self, fn: Callable[[_Job], Any], timeout: float, session: Session | None = None) -> Any:
        job = _Job()
        future = asyncio.get_running_loop().run_in_executor(self._executor, self._guarded, fn, job)
        try:
            return await asyncio.wait_for(future, timeout if timeout > 0 else None)
        except TimeoutError:
            with self._state:
                job.cancelled = True
                if session is not None:
                    session.valid = False
            raise RequestError(
                "Timeout",
                f"request did not finish within request_timeout_s={timeout:g} s"
                + ("; this connection's stream is dropped, send reset" if session is not None else ""),
            ) from None

    def _guarded(self, fn: Callable[[_Job], Any], job: _Job) -> Any:
        if job.cancelled:
            return None
        return fn(job)

    # each of these runs on the worker thread

    def reset(
        self, session: Session, frames: np.ndarray, actions: np.ndarray, seed: int | None, job: _Job
    ) -> None:
        self._loaded = None
        self.model.reset(frames, actions, **({} if seed is None else {"seed": seed}))
        self._loaded = session
        with self._state:
            if not job.cancelled:
                session.frames, session.actions, session.valid = frames, actions, True

    def step(self, session: Session, action: np.ndarray, job: _Job) -> np.ndarray:
        with self._state:
            if not session.valid:
                raise RequestError("NoStream", "step needs a stream: send reset first on this connection")
            frames, actions = session.frames, session.actions
        if self._loaded is not session:
            self._loaded = None
            self.model.reset(frames, actions)
            self._loaded = session
        try:
            frame = np.asarray(self.model.step(action))
        except BaseException:
            self._loaded = None  # the model's stream may be half-advanced
            raise
        with self._state:
            if job.cancelled:
                session.valid = False
            else:
                session.frames = np.concatenate([frames, frame[None]])[-self.window :]
                session.actions = np.concatenate([actions, action[None]])[-self.window :]
        return frame

    def imagine(
        self,
        session: Session,
        actions: np.ndarray,
        context: tuple[np.ndarray, np.ndarray] | None,
        goal: np.ndarray | None,
        seed: int | None,
        job: _Job,
        cost: str = "final_mse",
        return_frames: str = "all",
    ) -> Any:
        """Stateless for every stream (the WorldModel copies its stream cache, never writes it)."""
        if context is None:  # from this connection's stream: the model's own state when it holds it
            with self._state:
                if not session.valid:
                    raise RequestError("NoStream", NO_STREAM_IMAGINE)
                window = (session.frames, session.actions)
            context = None if self._loaded is session else window
        extra = {} if seed is None else {"seed": seed}
        return self.model.imagine(actions, context=context, goal=goal, cost=cost, return_frames=return_frames,
                                  **extra)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


# --- the server -----------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """msgpack-safe copy of an info dict (tuples -> lists, paths -> str, numpy scalars -> numbers)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    return str(value)


def model_info(model: Any) -> dict[str, Any]:
    """``model.info()`` made msgpack-safe, with image_shape/action_dim/context_frames guaranteed."""
    info = _plain(dict(model.info())) if hasattr(model, "info") else {}
    info["image_shape"] = [int(s) for s in model.image_shape]
    info["action_dim"] = int(model.action_dim)
    info["context_frames"] = int(model.context_frames)
    return info


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class WorldModelServer:
    """Serves one model to many connections (see the module docstring)."""

    def __init__(self, model: Any, limits: ServerLimits = ServerLimits(), token: str | None = None):
        self.worker = ModelWorker(model)
        self.limits = limits
        self._token = token.encode() if token else None
        self.info = model_info(model)
        self.image_shape = tuple(self.info["image_shape"])
        self.action_dim = self.info["action_dim"]
        self.context_frames = self.info["context_frames"]
        self.costs = tuple(self.info.get("costs", ("final_mse",)))  # goal costs the model offers
        self.clients = 0
        self.requests = 0
        self.errors = 0
        self.started = time.monotonic()
        self._server: asyncio.AbstractServer | None = None
        self._connections: dict[asyncio.Task, asyncio.StreamWriter] = {}

    # lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 5555) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._handle, host, port)
        bound = self._server.sockets[0].getsockname()
        return bound[0], bound[1]

    async def close(self) -> None:
        """Stop listening, hang up on every client (their handlers end normally), stop the worker."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._connections.values()):
            writer.close()
        if self._connections:
            await asyncio.wait(list(self._connections), timeout=5)
        if self._server is not None:
            await self._server.wait_closed()
        self.worker.shutdown()

    # one connection

    def _hello(self) -> dict[str, Any]:
        hello = {
            "ok": True,
            "type": "hello",
            "protocol": codec.PROTOCOL_VERSION,
            "server": f"crcm-robotics {__version__}",
            "auth_required": self._token is not None,
            "max_message_bytes": self.limits.max_message_bytes,
            "request_timeout_s": self.limits.request_timeout_s,
            "server_ms": 0.0,
        }
        if self._token is None:
            hello["info"] = self.info
        return hello

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        session = Session(peer=f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer))
        self.clients += 1
        task = asyncio.current_task()
        if task is not None:
            self._connections[task] = writer
        try:
            if self.clients > self.limits.max_clients:
                await self._send(
                    writer,
                    _error(
                        "error",
                        None,
                        "Busy",
                        f"server has its maximum of {self.limits.max_clients} clients",
                        closing=True,
                    ),
                )
                return
            log.info("connection from %s", session.peer)
            await self._send(writer, self._hello())
            while await self._serve_one(reader, writer, session):
                pass
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:  # shutdown; end this top-level task quietly (3.11's stream callback
            pass  # logs an error for a cancelled handler task)
        except Exception:  # a bug must not take the server down; log it and drop this connection
            log.exception("connection %s failed", session.peer)
        finally:
            self.clients -= 1
            self._connections.pop(task, None)  # type: ignore[arg-type]
            log.info("connection from %s closed after %d requests", session.peer, session.requests)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve_one(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, session: Session
    ) -> bool:
        """Read one request and answer it; False when the connection should close."""
        idle = self.limits.idle_timeout_s if self.limits.idle_timeout_s > 0 else None
        try:
            header = await asyncio.wait_for(reader.readexactly(codec.HEADER.size), idle)
        except asyncio.IncompleteReadError:
            return False  # the client hung up between requests
        (size,) = codec.HEADER.unpack(header)
        body_timeout = self.limits.request_timeout_s if self.limits.request_timeout_s > 0 else None
        limit = self.limits.max_message_bytes
        if size > limit:
            self.errors += 1
            drain = size <= codec.DRAIN_FACTOR * limit
            message = f"message of {size} bytes exceeds the limit of {limit} bytes"
            log.warning("%s: %s%s", session.peer, message, "" if drain else "; closing (garbage framing?)")
            if drain:
                await asyncio.wait_for(_discard(reader, size), body_timeout)
            await self._send(
                writer,
                _error(
                    "error",
                    None,
                    "MessageTooLarge",
                    message + ("" if drain else "; closing the connection"),
                    closing=not drain,
                ),
            )
            return drain
        body = await asyncio.wait_for(reader.readexactly(size), body_timeout)
        start = time.perf_counter()
        reply, close = await self._reply(body, session)
        reply["server_ms"] = round((time.perf_counter() - start) * 1e3, 3)
        await self._send(writer, reply)
        return not close

    async def _send(self, writer: asyncio.StreamWriter, reply: dict[str, Any]) -> None:
        try:
            data = codec.encode(reply)
        except codec.CodecError as exc:  # the model returned something the codec refuses
            log.error("cannot encode a %s reply: %s", reply.get("type"), exc)
            data = codec.encode(
                _error(
                    reply.get("type", "error"),
                    reply.get("id"),
                    "InternalError",
                    f"cannot encode the reply: {exc}",
                )
            )
        writer.write(data)
        await writer.drain()

    async def _reply(self, body: bytes, session: Session) -> tuple[dict[str, Any], bool]:
        rtype, rid = "error", None
        session.requests += 1
        self.requests += 1
        try:
            try:
                request = codec.unpack(body)
            except codec.CodecError as exc:
                raise RequestError("DecodeError", str(exc)) from None
            if not isinstance(request, dict):
                raise RequestError("BadRequest", f"a request is a map, got {type(request).__name__}")
            rid = request.get("id")
            if rid is not None and (isinstance(rid, bool) or not isinstance(rid, (int, str))):
                rid = None
                raise RequestError("BadRequest", "request id must be an int or a string")
            self._authenticate(request, session)
            rtype = request.get("type")
            if rtype not in REQUEST_FIELDS:
                bad = rtype
                rtype = "error"
                raise RequestError(
                    "BadRequest", f"unknown request type {bad!r}; expected one of {', '.join(REQUEST_FIELDS)}"
                )
            required, optional = REQUEST_FIELDS[rtype]
            unknown = set(request) - set(required) - set(optional) - set(COMMON_FIELDS)
            missing = [f for f in required if f not in request]
            if unknown or missing:
                raise RequestError(
                    "BadRequest",
                    f"{rtype}: "
                    + "; ".join(
                        ([f"unknown field(s) {sorted(unknown)}"] if unknown else [])
                        + ([f"missing field(s) {missing}"] if missing else [])
                    )
                    + f" (fields: {', '.join(required + optional) or 'none'})",
                )
            result = await getattr(self, f"_on_{rtype}")(request, session)
            return {"ok": True, "type": rtype, "id": rid, **result}, False
        except RequestError as exc:
            self.errors += 1
            if exc.kind != "NoStream":
                log.warning("%s: %s error: %s", session.peer, exc.kind, exc)
            return _error(rtype, rid, exc.kind, str(exc), exc.close), exc.close
        except ValueError as exc:  # the model's input validation
            self.errors += 1
            return _error(rtype, rid, "ValueError", str(exc)), False
        except Exception as exc:
            self.errors += 1
            log.exception("%s: %s request failed", session.peer, rtype)
            return _error(rtype, rid, "InternalError", f"{type(exc).__name__}: {exc}"), False

    def _authenticate(self, request: dict[str, Any], session: Session) -> None:
        if self._token is None:
            return
        token = request.get("token")
        if token is None and session.authenticated:
            return
        if not isinstance(token, str):
            raise RequestError("AuthError", "this server needs a token (field 'token')", close=True)
        if not hmac.compare_digest(token.encode(), self._token):
            raise RequestError("AuthError", "wrong token", close=True)
        session.authenticated = True

    # the four verbs

    async def _on_info(self, request: dict[str, Any], session: Session) -> dict[str, Any]:
        server = {
            "protocol": codec.PROTOCOL_VERSION,
            "version": __version__,
            "uptime_s": round(time.monotonic() - self.started, 3),
            "clients": self.clients,
            "requests": self.requests,
            "errors": self.errors,
            **dataclasses.asdict(self.limits),
        }
        return {"info": self.info, "server": server}

    async def _on_reset(self, request: dict[str, Any], session: Session) -> dict[str, Any]:
        frames, actions = self._context(request["frames"], request["actions"], "reset", "frames", "actions")
        seed = _seed(request.get("seed"), "reset")
        await self.worker.run(
            lambda job: self.worker.reset(session, frames, actions, seed, job),
            self.limits.request_timeout_s,
            session,
        )
        return {"context_frames": int(frames.shape[0])}

    async def _on_step(self, request: dict[str, Any], session: Session) -> dict[str, Any]:
        action = _floats(request["action"], "step: action")
        if action.shape != (self.action_dim,):
            raise RequestError(
                "BadRequest",
                f"step: action has shape {list(action.shape)}; expected [{self.action_dim}] (action_dim)",
            )
        frame = await self.worker.run(
            lambda job: self.worker.step(session, action, job), self.limits.request_timeout_s, session
        )
        return {"frame": self._frames_out(frame, (*self.image_shape,), "step")}

    async def _on_imagine(self, request: dict[str, Any], session: Session) -> dict[str, Any]:
        actions = _floats(request["actions"], "imagine: actions")
        if actions.ndim != 3 or actions.shape[2] != self.action_dim:
            raise RequestError(
                "BadRequest",
                f"imagine: actions has shape {list(actions.shape)}; expected "
                f"[N, Hz, {self.action_dim}] (action_dim {self.action_dim})",
            )
        n, hz = actions.shape[:2]
        if not (1 <= n <= self.limits.max_rollouts and 1 <= hz <= self.limits.max_horizon):
            raise RequestError(
                "BadRequest",
                f"imagine: {n} rollouts x {hz} frames; this server takes 1 to "
                f"{self.limits.max_rollouts} rollouts of 1 to "
                f"{self.limits.max_horizon} frames",
            )
        goal = request.get("goal")
        if goal is not None:
            goal = _uint8(goal, "imagine: goal")
            if goal.shape != self.image_shape:
                raise RequestError(
                    "BadRequest",
                    f"imagine: goal has shape {list(goal.shape)}; expected {list(self.image_shape)}",
                )
        ctx_f, ctx_a = request.get("context_frames"), request.get("context_actions")
        if (ctx_f is None) != (ctx_a is None):
            raise RequestError(
                "BadRequest", "imagine: give both context_frames and context_actions, or neither"
            )
        context = None
        if ctx_f is None:
            if not session.valid:
                raise RequestError("NoStream", NO_STREAM_IMAGINE)
        else:
            context = self._context(ctx_f, ctx_a, "imagine", "context_frames", "context_actions")
        seed = _seed(request.get("seed"), "imagine")
        return_frames = _return_frames(request.get("return_frames", "all"))
        cost = request.get("cost", "final_mse")
        if not isinstance(cost, str) or cost not in self.costs:
            raise RequestError("BadRequest", f"imagine: cost {cost!r} unknown; this model offers "
                                             f"{', '.join(self.costs)}")
        if return_frames == "best" and goal is None:
            raise RequestError("BadRequest", "imagine: return_frames 'best' needs a goal to rank the rollouts")
        result = await self.worker.run(
            lambda job: self.worker.imagine(session, actions, context, goal, seed, job, cost, return_frames),
            self.limits.request_timeout_s,
        )
        n_out = {"all": n, "best": 1}.get(return_frames)
        frames = _field(result, "frames")
        frames = None if n_out is None else self._frames_out(frames, (n_out, hz, *self.image_shape), "imagine")
        costs = _field(result, "costs")
        latency = _field(result, "latency_ms")
        best = _field(result, "best_index") if goal is not None else None
        return {
            "frames": frames,
            "costs": None if costs is None else np.asarray(costs, dtype=np.float32).reshape(n),
            "best_index": None if best is None else int(best),
            "latency_ms": None if latency is None else float(latency),
        }

    # validation

    def _context(
        self, frames: Any, actions: Any, verb: str, fname: str, aname: str
    ) -> tuple[np.ndarray, np.ndarray]:
        frames = _uint8(frames, f"{verb}: {fname}")
        actions = _floats(actions, f"{verb}: {aname}")
        k = frames.shape[0] if frames.ndim == 4 else -1
        if frames.ndim != 4 or frames.shape[1:] != self.image_shape or not 1 <= k <= self.context_frames:
            raise RequestError(
                "BadRequest",
                f"{verb}: {fname} has shape {list(frames.shape)}; expected "
                f"[K, {', '.join(map(str, self.image_shape))}] with 1 <= K <= "
                f"{self.context_frames} (context_frames)",
            )
        if actions.shape != (k, self.action_dim):
            raise RequestError(
                "BadRequest",
                f"{verb}: {aname} has shape {list(actions.shape)}; expected "
                f"[{k}, {self.action_dim}] (one action per frame, action_dim "
                f"{self.action_dim})",
            )
        return frames, actions

    @staticmethod
    def _frames_out(frames: Any, shape: tuple[int, ...], verb: str) -> np.ndarray:
        out = np.asarray(frames)
        if out.dtype != np.uint8 or out.shape != shape:
            raise RuntimeError(
                f"{verb}: the model returned {out.dtype} {list(out.shape)}, expected uint8 {list(shape)}"
            )
        return out


def _error(rtype: str, rid: Any, kind: str, message: str, closing: bool = False) -> dict[str, Any]:
    reply = {
        "ok": False,
        "type": rtype,
        "id": rid,
        "error": {"type": kind, "message": message},
        "server_ms": 0.0,
    }
    if closing:
        reply["closing"] = True
    return reply


def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def _return_frames(value: Any) -> str:
    """``return_frames``: "all" | "best" | "none", or a bool (true = all, false = none)."""
    if isinstance(value, bool):
        return "all" if value else "none"
    if value not in ("all", "best", "none"):
        raise RequestError("BadRequest", f"imagine: return_frames must be 'all', 'best', 'none' or a bool; "
                                         f"got {value!r}")
    return value


def _seed(value: Any, verb: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise RequestError("BadRequest", f"{verb}: seed must be an int in [0, 2**63), got {value!r}")
    return value


def _uint8(value: Any, where: str) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise RequestError(
            "BadRequest", f"{where} must be an array (a uint8 __ndarray__ map), got {type(value).__name__}"
        )
    if value.dtype != np.uint8:
        raise RequestError("BadRequest", f"{where} must be uint8, got {value.dtype}")
    return value


def _floats(value: Any, where: str) -> np.ndarray:
    """A float32 array from a float array (or a list of numbers); ints, bools, NaN and inf are refused."""
    if isinstance(value, list):
        try:
            value = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise RequestError("BadRequest", f"{where} must be a float array or a list of numbers") from None
    if not isinstance(value, np.ndarray):
        raise RequestError("BadRequest", f"{where} must be a float array, got {type(value).__name__}")
    if value.dtype.kind != "f":
        raise RequestError("BadRequest", f"{where} must be float32 (or float16/float64), got {value.dtype}")
    out = value.astype(np.float32, copy=False)
    if not np.isfinite(out).all():
        bad = np.argwhere(~np.isfinite(out))[0].tolist()
        raise RequestError("BadRequest", f"{where} has a non-finite value at index {bad}")
    return out


async def _discard(reader: asyncio.StreamReader, size: int) -> None:
    left = size
    while left:
        chunk = await reader.read(min(left, 1 << 20))
        if not chunk:
            raise asyncio.IncompleteReadError(b"", left)
        left -= len(chunk)


# --- running it -----------------------------------------------------------------------------------


class ServerThread:
    """A :class:`WorldModelServer` on its own event loop in a background thread (tests, ``loadtest --ckpt``).

    ``with ServerThread(server) as (host, port): ...``; port 0 picks a free port.
    """

    def __init__(self, server: WorldModelServer, host: str = "127.0.0.1", port: int = 0):
        self.server = server
        self.host, self.port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None

    def start(self) -> tuple[str, int]:
        self._thread = threading.Thread(target=self._main, name="crcm-serve", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        if not self._ready.is_set():
            raise TimeoutError("server thread did not start within 30 s")
        return self.host, self.port

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            try:
                self.host, self.port = await self.server.start(self.host, self.port)
            except BaseException as exc:
                self._error = exc
                self._ready.set()
                return
            self._ready.set()
            await self._stop.wait()
            await self.server.close()

        asyncio.run(main())

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)

    def __enter__(self) -> tuple[str, int]:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def read_token(token: str, token_file: str) -> str | None:
    """The shared token: ``token``, else the first line of ``token_file``, else None (no auth)."""
    if token:
        return token
    if token_file:
        value = Path(token_file).expanduser().read_text().strip()
        if not value:
            raise ValueError(f"token_file {token_file} is empty")
        return value
    return None


def serve(cfg: Any) -> int:
    """``crcm serve``: load ``cfg.ckpt`` and serve until SIGINT/SIGTERM (cfg: ``config.ServeConfig``)."""
    import json
    import signal

    from crcm_robotics.config import ConfigError

    logging.basicConfig(
        level=getattr(logging, str(cfg.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not is_loopback(cfg.host) and not cfg.allow_remote:
        raise ConfigError(
            f"host={cfg.host} would expose the model beyond this machine; the server binds 127.0.0.1 "
            "unless told: add allow_remote=true (and set token=… or token_file=…)"
        )
    token = read_token(cfg.token, cfg.token_file)
    if not is_loopback(cfg.host) and token is None:
        log.warning("serving on %s without a token: anyone who reaches this port can use the model", cfg.host)

    from crcm_robotics.runtime import WorldModel

    model = WorldModel.load(
        cfg.ckpt, device=cfg.device, backend=cfg.backend, steps=cfg.steps or None, max_batch=cfg.max_batch
    )
    limits = ServerLimits(
        max_message_bytes=cfg.max_message_bytes,
        request_timeout_s=cfg.request_timeout_s,
        idle_timeout_s=cfg.idle_timeout_s,
        max_clients=cfg.max_clients,
        max_rollouts=cfg.max_rollouts,
        max_horizon=cfg.max_horizon,
    )
    server = WorldModelServer(model, limits, token)

    async def main() -> None:
        host, port = await server.start(cfg.host, cfg.port)
        ready = {"serving": f"{host}:{port}", "ckpt": str(cfg.ckpt), "device": str(model.device), "backend": cfg.backend}
        print(json.dumps({**ready, "auth": token is not None, **server.info}), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM)
        for sig in signals:
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        for sig in signals:  # a second signal gets the default action (KeyboardInterrupt / terminate)
            loop.remove_signal_handler(sig)
        log.info("stopping: closing %d connection(s); a running model call finishes first", server.clients)
        await server.close()

    asyncio.run(main())
    return 0
