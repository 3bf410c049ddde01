"""A blocking client of the world-model server (protocol: :mod:`crcm_robotics.serve.codec`).

    from crcm_robotics.serve.client import WorldModelClient

    with WorldModelClient("127.0.0.1", 5555) as wm:
        info = wm.info()                                  # image_shape, action_dim, context_frames, …
        wm.reset(frames_KHW3, actions_KA)                 # this connection's stream
        frame = wm.step(action_A)                         # uint8 [H, W, 3]
        out = wm.imagine(actions_NHzA, context=(frames_KHW3, actions_KA), goal=goal_HW3)
        out.frames, out.costs, out.latency_ms             # [N, Hz, H, W, 3], [N] or None, model ms

Imports numpy and msgpack only (no torch, no model code). One client is one
connection; calls from several threads are serialized. Error replies raise
:class:`ServerError`; a socket timeout raises :class:`ServerTimeout` and drops
the connection (the next call reconnects, and the server-side stream is then
gone: ``step`` answers ``NoStream`` until the next ``reset``).
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from crcm_robotics.serve import codec


class ServerError(RuntimeError):
    """The server answered a request with an error reply."""

    def __init__(self, request: str, kind: str, message: str):
        super().__init__(f"{request} failed on the server: {kind}: {message}")
        self.request = request
        self.kind = kind
        self.message = message


class ServerTimeout(TimeoutError):
    """No reply within the client's timeout (the connection is dropped)."""


@dataclass(frozen=True)
class ImagineReply:
    frames: np.ndarray | None  # uint8 [N, Hz, H, W, 3]; [1, Hz, …] with return_frames="best"; None with "none"
    costs: np.ndarray | None  # float32 [N]
    latency_ms: float | None  # model time on the server
    server_ms: float  # request decoded -> reply encoded, on the server
    best_index: int | None = None  # the lowest-cost rollout (with a goal)


class WorldModelClient:
    """Verbs ``info``, ``reset``, ``step``, ``imagine`` over one TCP connection."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 5555,
        token: str | None = None,
        timeout: float | None = 60.0,
        connect_timeout: float = 10.0,
        max_message_bytes: int = codec.DEFAULT_CLIENT_MAX_MESSAGE_BYTES,
    ):
        self.host, self.port = host, port
        self.timeout, self.connect_timeout = timeout, connect_timeout
        self.max_message_bytes = max_message_bytes
        self._token = token or None
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._next_id = 0
        self.metadata: dict[str, Any] = {}  # the server's hello
        self.last_server_ms: float | None = None
        with self._lock:
            self._connect()

    # connection

    def _connect(self) -> None:
        where = f"crcm world-model server at {self.host}:{self.port}"
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except OSError as exc:
            raise ConnectionError(f"cannot reach the {where}: {exc}") from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(self.connect_timeout)
            hello = codec.read_message(sock, self.max_message_bytes)
            sock.settimeout(self.timeout)
        except (OSError, codec.CodecError) as exc:
            sock.close()
            raise ConnectionError(f"no hello from the {where}: {exc}") from exc
        if not isinstance(hello, dict) or hello.get("type") != "hello" or not hello.get("ok"):
            sock.close()
            if isinstance(hello, dict) and isinstance(hello.get("error"), dict):
                err = hello["error"]
                raise ServerError("connect", str(err.get("type")), str(err.get("message")))
            raise ConnectionError(f"the {where} did not greet with a hello: {hello!r:.200}")
        if hello.get("protocol") != codec.PROTOCOL_VERSION:
            sock.close()
            raise ConnectionError(
                f"the {where} speaks protocol {hello.get('protocol')}, this client {codec.PROTOCOL_VERSION}"
            )
        self._sock, self.metadata = sock, hello

    def _drop(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def close(self) -> None:
        with self._lock:
            self._drop()

    def __enter__(self) -> WorldModelClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, rtype: str, **fields: Any) -> dict[str, Any]:
        """Send one request, return the reply map; raises :class:`ServerError` on an error reply."""
        with self._lock:
            if self._sock is None:
                self._connect()
            assert self._sock is not None
            self._next_id += 1
            request = {"type": rtype, "id": self._next_id, **fields}
            if self._token is not None:
                request["token"] = self._token
            payload = codec.encode(request)  # CodecError (e.g. an object array) before anything is sent
            try:
                self._sock.sendall(payload)
                reply = codec.read_message(self._sock, self.max_message_bytes)
            except TimeoutError as exc:
                self._drop()
                raise ServerTimeout(
                    f"{rtype}: no reply from {self.host}:{self.port} within {self.timeout} s"
                ) from exc
            except (OSError, codec.CodecError) as exc:
                self._drop()
                raise ConnectionError(
                    f"{rtype}: connection to {self.host}:{self.port} failed: {exc}"
                ) from exc
            if not isinstance(reply, dict):
                self._drop()
                raise ConnectionError(f"{rtype}: the server replied with a {type(reply).__name__}, not a map")
            if reply.get("closing"):
                self._drop()
            self.last_server_ms = reply.get("server_ms")
        if not reply.get("ok"):
            err = reply.get("error") or {}
            raise ServerError(rtype, str(err.get("type")), str(err.get("message")))
        if reply.get("id") != request["id"]:
            raise ConnectionError(
                f"{rtype}: reply id {reply.get('id')} does not match request id {request['id']}"
            )
        return reply

    # the four verbs

    def info(self) -> dict[str, Any]:
        """The model's info (image_shape, action_dim, context_frames, …) + ``server`` (limits, counters)."""
        reply = self.call("info")
        return {**reply["info"], "server": reply["server"]}

    def reset(self, context_frames: np.ndarray, context_actions: np.ndarray, seed: int | None = None) -> None:
        """Start this connection's stream from uint8 [K, H, W, 3] frames and float32 [K, A] actions.

        ``seed`` restarts the stream's noise generator (reproducible steps)."""
        fields: dict[str, Any] = {"frames": np.asarray(context_frames), "actions": _f32(context_actions)}
        if seed is not None:
            fields["seed"] = int(seed)
        self.call("reset", **fields)

    def step(self, action: np.ndarray) -> np.ndarray:
        """The next frame (uint8 [H, W, 3]) of this connection's stream under ``action`` (float32 [A])."""
        return self.call("step", action=_f32(action))["frame"]

    def imagine(
        self,
        actions: np.ndarray,
        context: tuple[np.ndarray, np.ndarray] | None = None,
        goal: np.ndarray | None = None,
        seed: int | None = None,
        cost: str | None = None,
        return_frames: str | bool = "all",
    ) -> ImagineReply:
        """Rollouts of float32 [N, Hz, A] actions from ``context`` (frames, actions) or from this
        connection's stream; ``goal`` (uint8 [H, W, 3]) adds per-rollout costs (``cost`` by name); ``seed``
        fixes the noise; ``return_frames`` "all" | "best" | "none" (costs only)."""
        fields: dict[str, Any] = {"actions": _f32(actions)}
        if context is not None:
            fields["context_frames"] = np.asarray(context[0])
            fields["context_actions"] = _f32(context[1])
        if goal is not None:
            fields["goal"] = np.asarray(goal)
        if seed is not None:
            fields["seed"] = int(seed)
        if cost is not None:
            fields["cost"] = cost
        if return_frames != "all":
            fields["return_frames"] = return_frames
        reply = self.call("imagine", **fields)
        return ImagineReply(reply["frames"], reply["costs"], reply["latency_ms"], reply["server_ms"],
                            reply.get("best_index"))


def _f32(x: Any) -> np.ndarray:
    """Lists and float arrays go as float32; other arrays go as they are (the server names the dtype)."""
    if not isinstance(x, np.ndarray):
        return np.asarray(x, dtype=np.float32)
    return x.astype(np.float32, copy=False) if x.dtype.kind == "f" else x
