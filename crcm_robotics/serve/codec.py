"""The wire format of the world-model server: msgpack messages in length-prefixed frames over TCP.

One module shared by :mod:`crcm_robotics.serve.server` and
:mod:`crcm_robotics.serve.client`; it imports numpy and msgpack only, so a
client in another language needs nothing but this docstring.

Framing
-------
Every message is one frame: a 4-byte big-endian unsigned length ``n``
followed by ``n`` bytes of msgpack (a map). Each side has a maximum message
size (server: ``max_message_bytes`` of ``crcm serve``, default 64 MiB;
Python client: 1 GiB). A request frame longer than the server's limit gets an
error reply ``MessageTooLarge``; if it is at most ``DRAIN_FACTOR`` (4) times
the limit the server reads and discards it and the connection stays usable,
otherwise (a garbage header such as ``GET `` read as a length) the server
replies and closes that connection only.

Values
------
Plain msgpack (nil, bool, int, float, str, bin, array, map with str keys).
A numpy array travels as a map ::

    {"__ndarray__": true, "dtype": "<f4", "shape": [N, H, A], "data": <bin, C order>}

Only bool, signed/unsigned integer and float dtypes are allowed (``dtype`` is
numpy's ``dtype.str``: byte order + kind + item size, e.g. ``|u1``,
``<f4``); object, string, void, complex and datetime arrays are rejected on
both sides, never pickled. ``len(data)`` must equal ``prod(shape) *
itemsize``. numpy scalars are sent as plain msgpack numbers.

Session
-------
On connect the server sends a ``hello`` (metadata) before any request::

    {"ok": true, "type": "hello", "protocol": 1, "server": "crcm-robotics <version>",
     "auth_required": bool, "max_message_bytes": int, "request_timeout_s": float,
     "info": {...model info, absent when auth_required...}, "server_ms": 0.0}

Then the client sends requests, one at a time, and reads one reply each.
Every request is a map with ``"type"``, an optional ``"id"`` (int or str,
echoed back) and, when the server was started with a token, ``"token"``
(required on the first request of a connection; a missing or wrong token gets
``AuthError`` and the connection is closed). Unknown fields are errors.

Requests (fields besides type/id/token) and their replies (fields besides
ok/type/id/server_ms):

``info``
    No fields. The health check: answered from a cached dict, never waits for
    the model. Reply: ``info`` = {``image_shape`` [H, W, 3], ``action_dim``,
    ``context_frames``, …the model's ``info()``}, ``server`` = {``protocol``,
    ``version``, ``uptime_s``, ``clients``, ``requests``, ``errors``, limits}.
``reset``
    ``frames`` uint8 [K, H, W, 3] and ``actions`` float [K, A] (one per frame,
    1 ≤ K ≤ context_frames; ``actions[k]`` is the command that produced frame
    k) and optional ``seed`` (int; restarts the stream's noise): starts this
    connection's stream. Reply: ``context_frames`` = K.
``step``
    ``action`` float [A]: the next frame of this connection's stream (after a
    ``reset``, else ``NoStream``). Reply: ``frame`` uint8 [H, W, 3].
``imagine``
    ``actions`` float [N, Hz, A]; ``context_frames`` uint8 [K, H, W, 3] with
    ``context_actions`` float [K, A], or neither (start from this
    connection's stream); ``goal`` uint8 [H, W, 3] or nil; optional ``seed``;
    optional ``cost`` (a goal-cost name, default ``final_mse``; the model's
    ``info`` lists them under ``costs``) and ``return_frames`` (``"all"``,
    default; ``"best"``, the lowest-cost rollout only, needs a goal;
    ``"none"``, costs only; ``true``/``false`` mean all/none).
    Stateless: it never changes a stream. Reply: ``frames`` uint8
    [N, Hz, H, W, 3] (all), [1, Hz, H, W, 3] (best) or nil (none), ``costs``
    float32 [N] (per-rollout distance to the goal) or nil, ``best_index``
    (int, with a goal) or nil, ``latency_ms`` (model time).

Float arrays may be float16/32/64 (the server casts to float32); frames must
be uint8. Each connection has its own stream (reset/step); the model runs on
one worker thread, so requests of all connections are served in arrival
order, each within the server's per-request timeout.

Replies
-------
Success: ``{"ok": true, "type": <request type>, "id": <echo>, "server_ms": float, ...fields}``.
Error: ``{"ok": false, "type": <request type or "error">, "id": <echo or nil>,
"server_ms": float, "error": {"type": str, "message": str}}``, plus
``"closing": true`` when the server closes the connection after it, with error
types ``DecodeError`` (not msgpack / bad array), ``BadRequest`` (not a map,
unknown type or field, missing field, wrong dtype/shape), ``MessageTooLarge``,
``AuthError``, ``NoStream`` (step before reset), ``Timeout``, ``Busy`` (too
many clients), ``ValueError`` (the model rejected the input) and
``InternalError``. ``server_ms`` is the time from the request's last byte to
the reply being encoded.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

import msgpack
import numpy as np

PROTOCOL_VERSION = 1
HEADER = struct.Struct(">I")  # frame length, 4-byte big-endian unsigned
MAX_FRAME_BYTES = 2**32 - 1  # what the header can express
DEFAULT_SERVER_MAX_MESSAGE_BYTES = 64 * 2**20
DEFAULT_CLIENT_MAX_MESSAGE_BYTES = 2**30
DRAIN_FACTOR = 4  # oversize requests up to this × the limit are drained and answered; longer ones close
ALLOWED_KINDS = {"b": "bool", "i": "int", "u": "uint", "f": "float"}
NDARRAY_KEY = "__ndarray__"


class CodecError(ValueError):
    """A value cannot be encoded, or bytes are not a valid message."""


class FrameTooLarge(CodecError):
    """A frame header announces more bytes than the receiver accepts."""

    def __init__(self, size: int, limit: int):
        super().__init__(f"message of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit


# --- values --------------------------------------------------------------------------------------


def _check_dtype(dtype: np.dtype, where: str) -> None:
    if dtype.kind not in ALLOWED_KINDS:
        raise CodecError(
            f"{where} has dtype {dtype} (kind {dtype.kind!r}); only bool, int, uint and float arrays "
            "are sent (object/string/complex arrays are rejected, never pickled)"
        )


def _encode_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        _check_dtype(obj.dtype, "array")
        arr = obj if obj.flags.c_contiguous else obj.copy(order="C")  # (ascontiguousarray makes 0-d 1-d)
        return {NDARRAY_KEY: True, "dtype": arr.dtype.str, "shape": list(arr.shape), "data": arr.tobytes()}
    if isinstance(obj, np.generic):
        _check_dtype(obj.dtype, "numpy scalar")
        return obj.item()
    raise CodecError(f"cannot encode {type(obj).__name__} (only msgpack types and numpy arrays)")


def _decode_hook(obj: dict) -> Any:
    if obj.get(NDARRAY_KEY) is not True:
        return obj
    if set(obj) != {NDARRAY_KEY, "dtype", "shape", "data"}:
        raise CodecError(f"array map must have keys __ndarray__, dtype, shape, data; got {sorted(obj)}")
    dtype_str, shape, data = obj["dtype"], obj["shape"], obj["data"]
    if not isinstance(dtype_str, str) or not isinstance(data, bytes) or not isinstance(shape, list):
        raise CodecError("array map needs dtype str, shape list and data bin")
    try:
        dtype = np.dtype(dtype_str)
    except TypeError as exc:
        raise CodecError(f"array dtype {dtype_str!r} is not a numpy dtype") from exc
    _check_dtype(dtype, "array")
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
        raise CodecError(f"array shape {shape} must be a list of non-negative ints")
    count = 1
    for s in shape:
        count *= s
    if count * dtype.itemsize != len(data):
        need = count * dtype.itemsize
        raise CodecError(f"array of dtype {dtype_str} and shape {shape} needs {need} bytes, got {len(data)}")
    arr = np.frombuffer(data, dtype=dtype).reshape(tuple(shape))
    return arr.astype(dtype.newbyteorder("="), copy=True)  # native byte order, writeable


def pack(obj: Any) -> bytes:
    """msgpack bytes of ``obj`` (numpy arrays as typed binary); raises :class:`CodecError`."""
    try:
        return msgpack.packb(obj, default=_encode_default, use_bin_type=True)
    except CodecError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise CodecError(f"cannot encode message: {exc}") from exc


def unpack(data: bytes) -> Any:
    """The value in msgpack bytes ``data`` (array maps become numpy arrays); raises :class:`CodecError`."""
    try:
        return msgpack.unpackb(data, object_hook=_decode_hook, raw=False, strict_map_key=True)
    except CodecError:
        raise
    except Exception as exc:  # msgpack raises ExtraData, FormatError, StackError, ValueError, TypeError…
        raise CodecError(f"not a valid msgpack message: {type(exc).__name__}: {exc}") from exc


# --- frames --------------------------------------------------------------------------------------


def frame(payload: bytes) -> bytes:
    """Length header + payload."""
    if len(payload) > MAX_FRAME_BYTES:
        raise FrameTooLarge(len(payload), MAX_FRAME_BYTES)
    return HEADER.pack(len(payload)) + payload


def encode(obj: Any) -> bytes:
    """One framed message."""
    return frame(pack(obj))


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], min(n - got, 1 << 20))
        if k == 0:
            raise ConnectionError(f"connection closed after {got} of {n} bytes")
        got += k
    return bytes(buf)


def read_message(sock: socket.socket, max_bytes: int) -> Any:
    """Read one framed message from a blocking socket; :class:`FrameTooLarge` leaves the stream unread."""
    (size,) = HEADER.unpack(_recv_exactly(sock, HEADER.size))
    if size > max_bytes:
        raise FrameTooLarge(size, max_bytes)
    return unpack(_recv_exactly(sock, size))


def write_message(sock: socket.socket, obj: Any) -> None:
    sock.sendall(encode(obj))
