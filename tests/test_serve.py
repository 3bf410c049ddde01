"""The msgpack server, its client and codec, against the real tiny WorldModel on CPU.

Guards: the wire format (typed arrays, object dtypes refused), the four verbs
end to end, per-connection streams, every documented bad input answered
without hurting other clients, per-request timeouts, token auth, concurrent
clients, loopback-only default bind, a torch-free client, the load test, and
the ROS node's remote backend talking to a real server.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading

import msgpack
import numpy as np
import pytest

from crcm_robotics.serve import codec
from crcm_robotics.serve.client import ServerError, ServerTimeout, WorldModelClient
from crcm_robotics.serve.server import ServerLimits, ServerThread, WorldModelServer


def load_model(ckpt):
    from crcm_robotics.runtime import WorldModel

    return WorldModel.load(ckpt, device="cpu", backend="eager", steps=1)


@pytest.fixture(scope="module")
def model(tiny_teacher):
    return load_model(tiny_teacher)


@pytest.fixture(scope="module")
def server(model):
    """The default server (no token, default limits) on a free loopback port."""
    thread = ServerThread(WorldModelServer(model))
    thread.start()
    yield thread
    thread.stop()


@pytest.fixture
def address(server):
    return server.host, server.port


class Wrapped:
    """The real model with its calls recorded; step/imagine wait for ``gate`` (open by default)."""

    def __init__(self, model):
        self._model = model
        self.gate = threading.Event()
        self.gate.set()
        self.resets: list[tuple[np.ndarray, np.ndarray]] = []
        self.steps = 0

    def __getattr__(self, name):
        return getattr(self._model, name)

    def reset(self, frames, actions, **kw):
        self.resets.append((frames.copy(), actions.copy()))
        return self._model.reset(frames, actions, **kw)

    def step(self, action):
        assert self.gate.wait(30)
        self.steps += 1
        return self._model.step(action)

    def imagine(self, actions, context=None, goal=None, **kw):
        assert self.gate.wait(30)
        return self._model.imagine(actions, context=context, goal=goal, **kw)


def context_of(model, seed=0, k=None):
    rng = np.random.default_rng(seed)
    k = model.context_frames if k is None else k
    frames = rng.integers(0, 256, (k, *model.image_shape), dtype=np.uint8)
    actions = rng.uniform(-1, 1, (k, model.action_dim)).astype(np.float32)
    return frames, actions


def raw_connection(address, timeout=10.0):
    """A bare socket past the hello, for sending what no well-behaved client sends."""
    sock = socket.create_connection(address, timeout=timeout)
    hello = codec.read_message(sock, codec.DEFAULT_CLIENT_MAX_MESSAGE_BYTES)
    assert hello["type"] == "hello"
    return sock


def reply_to(sock, payload: bytes):
    sock.sendall(codec.frame(payload))
    return codec.read_message(sock, codec.DEFAULT_CLIENT_MAX_MESSAGE_BYTES)


def assert_still_serving(address, model):
    """Another client gets a real answer (the health check and an imagine)."""
    with WorldModelClient(*address) as client:
        assert client.info()["action_dim"] == model.action_dim
        out = client.imagine(np.zeros((1, 2, model.action_dim), np.float32), context=context_of(model))
        assert out.frames.shape == (1, 2, *model.image_shape)


def is_closed(sock) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionError:
        return True


# --- codec ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype",
    [
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "float32",
        "float64",
    ],
)
@pytest.mark.parametrize("shape", [(), (0,), (5,), (2, 3, 4), (1, 0, 3)])
def test_codec_round_trips_every_allowed_dtype_and_shape(dtype, shape):
    rng = np.random.default_rng(0)
    arr = (
        rng.uniform(-100, 100, shape) if np.dtype(dtype).kind == "f" else rng.integers(0, 2, shape)
    ).astype(dtype)
    out = codec.unpack(codec.pack({"a": arr, "nested": [arr, {"b": arr}]}))
    for got in (out["a"], out["nested"][0], out["nested"][1]["b"]):
        assert got.dtype == arr.dtype and got.shape == arr.shape
        np.testing.assert_array_equal(got, arr)
        assert got.flags.writeable


def test_codec_handles_views_byte_order_and_scalars():
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    view = base[:, ::2].T  # non-contiguous
    big = np.arange(5, dtype=">i4")
    out = codec.unpack(
        codec.pack(
            {
                "view": view,
                "big": big,
                "f": np.float32(1.5),
                "i": np.int64(7),
                "b": np.bool_(True),
                "s": "text",
                "n": None,
            }
        )
    )
    np.testing.assert_array_equal(out["view"], view)
    assert out["big"].dtype == np.dtype("int32") and out["big"].dtype.isnative
    np.testing.assert_array_equal(out["big"], big)
    assert out["f"] == 1.5 and out["i"] == 7 and out["b"] is True and out["s"] == "text" and out["n"] is None
    # the documented map, as another language would write it
    raw = msgpack.packb({"__ndarray__": True, "dtype": "<u2", "shape": [2], "data": b"\x01\x00\x02\x01"})
    np.testing.assert_array_equal(codec.unpack(raw), np.array([1, 258], np.uint16))


@pytest.mark.parametrize(
    "arr",
    [
        np.array([{"x": 1}], dtype=object),
        np.array(["a", "b"]),
        np.array([1 + 2j]),
        np.zeros(2, dtype=[("x", "f4")]),
        np.array(["2020-01-01"], dtype="datetime64[D]"),
    ],
)
def test_codec_refuses_object_string_complex_void_datetime(arr):
    with pytest.raises(codec.CodecError, match="only bool, int, uint and float arrays"):
        codec.pack({"a": arr})


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"__ndarray__": True, "dtype": "|O", "shape": [1], "data": b"\0" * 8}, "dtype object"),
        ({"__ndarray__": True, "dtype": "<f4", "shape": [3], "data": b"\0" * 8}, "needs 12 bytes, got 8"),
        ({"__ndarray__": True, "dtype": "<f4", "shape": [-1], "data": b""}, "non-negative ints"),
        ({"__ndarray__": True, "dtype": "nonsense", "shape": [1], "data": b"\0"}, "not a numpy dtype"),
        (
            {"__ndarray__": True, "dtype": "<f4", "shape": [1], "data": b"\0" * 4, "extra": 1},
            "must have keys",
        ),
    ],
)
def test_codec_refuses_bad_array_maps(bad, message):
    with pytest.raises(codec.CodecError, match=message):
        codec.unpack(msgpack.packb({"x": bad}, use_bin_type=True))


def test_codec_frames_and_size_limit():
    a, b = socket.socketpair()
    with a, b:
        codec.write_message(a, {"x": np.ones(3, np.float32)})
        np.testing.assert_array_equal(codec.read_message(b, 1 << 10)["x"], np.ones(3, np.float32))
        a.sendall(codec.HEADER.pack(5000) + b"\0" * 10)
        with pytest.raises(
            codec.FrameTooLarge, match="message of 5000 bytes exceeds the limit of 1024 bytes"
        ):
            codec.read_message(b, 1 << 10)
    assert codec.frame(b"abc") == b"\x00\x00\x00\x03abc"  # 4-byte big-endian length
    with pytest.raises(codec.CodecError, match="not a valid msgpack message"):
        codec.unpack(b"\xc1")


# --- the four verbs -------------------------------------------------------------------------------


def test_hello_and_info(address, model):
    with WorldModelClient(*address) as client:
        hello = client.metadata
        assert (hello["protocol"], hello["auth_required"]) == (codec.PROTOCOL_VERSION, False)
        assert hello["info"]["image_shape"] == list(model.image_shape)
        info = client.info()
    assert tuple(info["image_shape"]) == tuple(model.image_shape) and model.image_shape[2] == 3
    assert (info["action_dim"], info["context_frames"]) == (model.action_dim, model.context_frames)
    assert info["server"]["protocol"] == codec.PROTOCOL_VERSION and info["server"]["clients"] >= 1
    assert client.last_server_ms is not None and client.last_server_ms >= 0


def test_reset_step_imagine_round_trip(address, model):
    h, w, _ = model.image_shape
    frames, actions = context_of(model)
    rng = np.random.default_rng(1)
    with WorldModelClient(*address) as client:
        assert client.reset(frames, actions) is None
        for _ in range(3):
            frame = client.step(rng.uniform(-1, 1, model.action_dim).astype(np.float32))
            assert frame.dtype == np.uint8 and frame.shape == (h, w, 3)
        plan = rng.uniform(-1, 1, (5, 3, model.action_dim)).astype(np.float32)
        out = client.imagine(plan, context=(frames, actions), goal=frames[-1])
        assert out.frames.dtype == np.uint8 and out.frames.shape == (5, 3, h, w, 3)
        assert out.costs.dtype == np.float32 and out.costs.shape == (5,) and np.isfinite(out.costs).all()
        assert out.latency_ms > 0 and out.server_ms >= out.latency_ms * 0.5
        no_goal = client.imagine(plan[:2], context=(frames, actions))
        assert no_goal.costs is None and no_goal.frames.shape == (2, 3, h, w, 3)
        from_stream = client.imagine(plan[:1])  # no context: this connection's stream
        assert from_stream.frames.shape == (1, 3, h, w, 3)
        assert client.step(plan[0, 0]).shape == (h, w, 3)  # imagine left the stream usable


def test_seeded_replies_equal_the_in_process_model(address, tiny_teacher, model):
    """Over the wire, reset/step/imagine return exactly what the same WorldModel computes in-process."""
    reference = load_model(tiny_teacher)
    frames, actions = context_of(model, seed=3)
    rng = np.random.default_rng(4)
    steps = rng.uniform(-1, 1, (3, model.action_dim)).astype(np.float32)
    plan = rng.uniform(-1, 1, (4, 3, model.action_dim)).astype(np.float32)
    reference.reset(frames, actions, seed=11)
    expected_steps = [reference.step(a) for a in steps]
    expected_stream = reference.imagine(plan, seed=5, goal=frames[0])
    expected_ctx = reference.imagine(plan, context=(frames, actions), seed=6)
    with WorldModelClient(*address) as client:
        client.reset(frames, actions, seed=11)
        for a, want in zip(steps, expected_steps, strict=True):
            np.testing.assert_array_equal(client.step(a), want)
        got = client.imagine(plan, seed=5, goal=frames[0])  # from this connection's stream
        np.testing.assert_array_equal(got.frames, expected_stream.frames)
        np.testing.assert_array_equal(got.costs, expected_stream.costs)
        got = client.imagine(plan, context=(frames, actions), seed=6)
        np.testing.assert_array_equal(got.frames, expected_ctx.frames)
        with pytest.raises(
            ServerError, match=r"BadRequest: reset: seed must be an int in \[0, 2\*\*63\), got -1"
        ):
            client.reset(frames, actions, seed=-1)


def test_fewer_context_frames_and_list_actions(address, model):
    frames, actions = context_of(model, k=1)
    with WorldModelClient(*address) as client:
        client.reset(frames, actions.tolist())
        assert client.step([0.0] * model.action_dim).shape == tuple(model.image_shape)


def test_streams_are_per_connection(model, tiny_teacher):
    """Interleaved steps of two connections each continue their own stream (the model is reloaded)."""
    wrapped = Wrapped(load_model(tiny_teacher))
    k = model.context_frames
    with (
        ServerThread(WorldModelServer(wrapped)) as addr,
        WorldModelClient(*addr) as one,
        WorldModelClient(*addr) as two,
    ):
        ctx1, ctx2 = context_of(model, seed=1), context_of(model, seed=2)
        one.reset(*ctx1)
        a = np.full(model.action_dim, 0.5, np.float32)
        f1 = one.step(a)
        f2 = one.step(-a)
        assert len(wrapped.resets) == 1  # one streaming client: no reload
        two.reset(*ctx2)
        two.step(a)
        assert len(wrapped.resets) == 2
        one.step(a)  # one's stream comes back: reset with one's last k frames and actions
        assert len(wrapped.resets) == 3
        frames, actions = wrapped.resets[-1]
        np.testing.assert_array_equal(frames, np.concatenate([ctx1[0], f1[None], f2[None]])[-k:])
        np.testing.assert_array_equal(actions, np.concatenate([ctx1[1], a[None], -a[None]])[-k:])
        with (
            WorldModelClient(*addr) as three,
            pytest.raises(ServerError, match="NoStream: step needs a stream: send reset first"),
        ):
            three.step(a)


# --- robustness: each bad input, then another client is served ---------------------------------------


def test_malformed_msgpack_gets_an_error_and_the_connection_survives(address, model):
    with raw_connection(address) as sock:
        reply = reply_to(sock, b"\xc1\x93 not msgpack")
        assert reply["ok"] is False and reply["error"]["type"] == "DecodeError"
        assert "not a valid msgpack message" in reply["error"]["message"]
        assert reply_to(sock, codec.pack({"type": "info", "id": 3}))["id"] == 3  # same connection still works
        reply = reply_to(sock, codec.pack([1, 2]))
        assert reply["error"] == {"type": "BadRequest", "message": "a request is a map, got list"}
    assert_still_serving(address, model)


def test_unknown_request_type_and_field(address, model):
    with raw_connection(address) as sock:
        reply = reply_to(sock, codec.pack({"type": "explode", "id": 9}))
        assert reply["id"] == 9 and reply["error"] == {
            "type": "BadRequest",
            "message": "unknown request type 'explode'; expected one of info, reset, step, imagine",
        }
        reply = reply_to(sock, codec.pack({"type": "step", "acton": [0.0]}))
        assert (
            reply["error"]["message"] == "step: unknown field(s) ['acton']; missing field(s) ['action'] "
            "(fields: action)"
        )
    assert_still_serving(address, model)


def test_wrong_shapes_and_dtypes_are_named(address, model):
    a, (h, w, _) = model.action_dim, model.image_shape
    k = model.context_frames
    frames, actions = context_of(model)
    cases = [
        (
            "imagine",
            {"actions": np.zeros((2, a), np.float32)},
            f"imagine: actions has shape [2, {a}]; expected [N, Hz, {a}] (action_dim {a})",
        ),
        (
            "step",
            {"action": np.zeros(a, np.int64)},
            "step: action must be float32 (or float16/float64), got int64",
        ),
        (
            "step",
            {"action": np.full(a, np.nan, np.float32)},
            "step: action has a non-finite value at index [0]",
        ),
        (
            "reset",
            {"frames": frames.astype(np.float32), "actions": actions},
            "reset: frames must be uint8, got float32",
        ),
        (
            "reset",
            {"frames": frames[:, :4], "actions": actions},
            f"reset: frames has shape [{k}, 4, {w}, 3]; expected [K, {h}, {w}, 3] with 1 <= K <= {k}",
        ),
        (
            "reset",
            {"frames": frames, "actions": actions[:, :1]},
            f"reset: actions has shape [{k}, 1]; expected [{k}, {a}] (one action per frame",
        ),
        (
            "imagine",
            {"actions": np.zeros((1, 1, a), np.float32), "context_frames": frames},
            "give both context_frames and context_actions, or neither",
        ),
        (
            "imagine",
            {"actions": np.zeros((1, 1, a), np.float32), "goal": frames},
            f"imagine: goal has shape [{k}, {h}, {w}, 3]; expected [{h}, {w}, 3]",
        ),
        ("imagine", {"actions": np.zeros((300, 1, a), np.float32)}, "this server takes 1 to 256 rollouts"),
    ]
    with raw_connection(address) as sock:
        for verb, fields, message in cases:
            reply = reply_to(sock, codec.pack({"type": verb, **fields}))
            assert reply["ok"] is False and reply["error"]["type"] == "BadRequest", (verb, reply)
            assert message in reply["error"]["message"], reply["error"]["message"]
    with WorldModelClient(*address) as client:
        with pytest.raises(
            ServerError, match="step failed on the server: BadRequest: step: action must be float32"
        ):
            client.step(np.zeros(a, np.int32))
        assert client.info()["action_dim"] == a  # the same client carries on
    assert_still_serving(address, model)


@pytest.fixture(scope="module")
def small_limit_server(tiny_teacher):
    thread = ServerThread(WorldModelServer(load_model(tiny_teacher), ServerLimits(max_message_bytes=65536)))
    thread.start()
    yield thread
    thread.stop()


def test_oversize_message_is_drained_and_answered(small_limit_server, model):
    address = small_limit_server.host, small_limit_server.port
    with raw_connection(address) as sock:
        reply = reply_to(sock, b"\0" * 70000)
        assert reply["error"] == {
            "type": "MessageTooLarge",
            "message": "message of 70000 bytes exceeds the limit of 65536 bytes",
        }
        assert reply_to(sock, codec.pack({"type": "info"}))["ok"]  # drained: the connection still works
    with WorldModelClient(*address) as client:  # a real request over the limit, through the client
        big = np.zeros((256, 64, model.action_dim), np.float32)  # >= 64 KiB of actions alone
        with pytest.raises(
            ServerError, match="MessageTooLarge: message of .* bytes exceeds the limit of 65536"
        ):
            client.imagine(big, context=context_of(model))
        assert client.info()["server"]["max_message_bytes"] == 65536
    assert_still_serving(address, model)


def test_garbage_length_header_closes_only_that_connection(small_limit_server, model):
    address = small_limit_server.host, small_limit_server.port
    bystander = WorldModelClient(*address)
    with raw_connection(address) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")  # "GET " read as a length: 1.2 GB
        reply = codec.read_message(sock, 1 << 20)
        assert reply["error"]["type"] == "MessageTooLarge" and reply["closing"] is True
        assert "closing the connection" in reply["error"]["message"]
        assert is_closed(sock)
    with raw_connection(address) as sock:  # a frame cut short, then the client hangs up
        sock.sendall(codec.HEADER.pack(1000) + b"ten bytes.")
    assert bystander.info()["action_dim"] == model.action_dim  # an open connection is untouched
    bystander.close()
    assert_still_serving(address, model)


# --- timeouts, auth, limits, concurrency ----------------------------------------------------------------


def test_per_request_timeout(tiny_teacher, model):
    """A request stuck behind a busy model times out; queued jobs are dropped; info is not held up."""
    wrapped = Wrapped(load_model(tiny_teacher))
    server = WorldModelServer(wrapped, ServerLimits(request_timeout_s=0.2))
    action = np.zeros(model.action_dim, np.float32)
    with ServerThread(server) as addr, WorldModelClient(*addr, timeout=10) as client:
        client.reset(*context_of(model))
        wrapped.gate.clear()  # the model now blocks until the gate opens
        with pytest.raises(
            ServerError,
            match=r"imagine failed on the server: Timeout: request did not finish "
            r"within request_timeout_s=0.2 s",
        ):
            client.imagine(np.zeros((1, 1, model.action_dim), np.float32), context=context_of(model))
        with WorldModelClient(
            *addr, timeout=10
        ) as other:  # the health check answers while the model is stuck
            assert other.info()["action_dim"] == model.action_dim
        with pytest.raises(ServerError, match="Timeout: .*this connection's stream is dropped, send reset"):
            client.step(action)  # queued behind the stuck imagine
        wrapped.gate.set()
        with pytest.raises(ServerError, match="NoStream"):
            client.step(action)
        assert wrapped.steps == 0  # the timed-out step was dropped from the queue, never run
        client.reset(*context_of(model))
        assert client.step(action).shape == tuple(model.image_shape)
        assert wrapped.steps == 1


def test_client_timeout_drops_the_connection(tiny_teacher, model):
    wrapped = Wrapped(load_model(tiny_teacher))
    with ServerThread(WorldModelServer(wrapped)) as addr:
        client = WorldModelClient(*addr, timeout=0.1)
        wrapped.gate.clear()
        with pytest.raises(ServerTimeout, match="imagine: no reply from .* within 0.1 s"):
            client.imagine(np.zeros((1, 1, model.action_dim), np.float32), context=context_of(model))
        wrapped.gate.set()
        client.timeout = 30.0
        assert client.info()["action_dim"] == model.action_dim  # reconnected
        assert client.metadata["type"] == "hello"
        client.close()


def test_token_auth(tiny_teacher, model):
    server = WorldModelServer(load_model(tiny_teacher), token="s3cret")
    with ServerThread(server) as addr:
        with WorldModelClient(*addr) as anonymous:
            assert anonymous.metadata["auth_required"] is True and "info" not in anonymous.metadata
            with pytest.raises(
                ServerError, match="info failed on the server: AuthError: this server needs a token"
            ):
                anonymous.info()
        with pytest.raises(ServerError, match="AuthError: wrong token"):
            WorldModelClient(*addr, token="guess").info()
        with raw_connection(addr) as sock:  # a failed auth closes the connection
            assert reply_to(sock, codec.pack({"type": "info", "token": "s3cre"}))["closing"] is True
            assert is_closed(sock)
        with raw_connection(addr) as sock:  # the token is needed once per connection
            assert reply_to(sock, codec.pack({"type": "info", "token": "s3cret"}))["ok"]
            assert reply_to(sock, codec.pack({"type": "info"}))["ok"]
        with WorldModelClient(*addr, token="s3cret") as client:
            assert client.info()["action_dim"] == model.action_dim
            client.reset(*context_of(model))
            assert client.step(np.zeros(model.action_dim, np.float32)).shape == tuple(model.image_shape)


def test_max_clients(tiny_teacher):
    with ServerThread(WorldModelServer(load_model(tiny_teacher), ServerLimits(max_clients=1))) as addr:
        with WorldModelClient(*addr) as first:
            with pytest.raises(ServerError, match="Busy: server has its maximum of 1 clients"):
                WorldModelClient(*addr)
            assert first.info()["server"]["clients"] == 1


def test_concurrent_clients_stream_and_imagine(address, model):
    errors: list[BaseException] = []
    shapes: list[tuple] = []

    def work(i: int) -> None:
        try:
            with WorldModelClient(*address) as client:
                client.reset(*context_of(model, seed=i))
                rng = np.random.default_rng(i)
                for _ in range(4):
                    shapes.append(client.step(rng.uniform(-1, 1, model.action_dim).astype(np.float32)).shape)
                    out = client.imagine(rng.uniform(-1, 1, (3, 2, model.action_dim)).astype(np.float32))
                    shapes.append(out.frames.shape)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(set(shapes)) == sorted({tuple(model.image_shape), (3, 2, *model.image_shape)})
    assert len(shapes) == 6 * 8


def test_loopback_is_the_default_bind(server, tmp_path):
    from crcm_robotics.conf import compose_config
    from crcm_robotics.config import ConfigError, ServeConfig
    from crcm_robotics.serve.server import serve

    assert ServeConfig().host == "127.0.0.1" and ServeConfig().port == 5555
    cfg = compose_config("serve", [f"ckpt={tmp_path}"])
    assert (cfg.host, cfg.port, cfg.allow_remote) == ("127.0.0.1", 5555, False)
    assert server.host == "127.0.0.1"
    cfg.host = "0.0.0.0"
    with pytest.raises(ConfigError, match="host=0.0.0.0 would expose the model beyond this machine"):
        serve(cfg)  # refused before any model is loaded


def test_client_imports_without_torch(address, model):
    """A torch-free process (torch import blocked) talks to the real server."""
    script = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np\n"
        "from crcm_robotics.serve.client import WorldModelClient\n"
        f"c = WorldModelClient('{address[0]}', {address[1]})\n"
        "info = c.info()\n"
        "k, a = info['context_frames'], info['action_dim']\n"
        "frames = np.zeros((k, *info['image_shape']), np.uint8)\n"
        "out = c.imagine(np.zeros((2, 3, a), np.float32), context=(frames, np.zeros((k, a), np.float32)))\n"
        "loaded = [m for m, mod in sys.modules.items() if mod is not None and m.split('.')[0] == 'torch']\n"
        "assert not loaded, loaded\n"
        "print(out.frames.shape)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str((2, 3, *model.image_shape))


def test_ros_remote_backend_against_a_real_server(address, model):
    from crcm_robotics.ros.model import open_model
    from crcm_robotics.ros.params import NodeParams

    params = NodeParams.from_values(
        {"backend": "remote", "server_host": address[0], "server_port": address[1]}
    )
    handle = open_model(params)
    assert handle.spec.image_shape == tuple(model.image_shape) and handle.spec.action_dim == model.action_dim
    frames, actions = context_of(model)
    prediction = handle.imagine(np.zeros((4, 2, model.action_dim)), (frames, actions), frames[-1])
    assert prediction.frames.shape == (4, 2, *model.image_shape) and prediction.costs.shape == (4,)
    assert prediction.latency_ms > 0


# --- load test and the command line ---------------------------------------------------------------


def test_loadtest_small_scale_has_no_errors_and_survives_bad_inputs(address, capsys):
    from crcm_robotics.serve import loadtest

    code = loadtest.main(
        [
            "--host",
            address[0],
            "--port",
            str(address[1]),
            "--clients",
            "4",
            "--requests",
            "20",
            "--rollouts",
            "2",
            "--horizon",
            "2",
        ]
    )
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0, result
    assert (result["ok"], result["errors"]) == (80, 0)
    assert 0 < result["p50_ms"] <= result["p99_ms"] and result["throughput_rps"] > 0
    assert result["bad_inputs_as_expected"] and result["alive_after_bad_inputs"], result["bad_inputs"]
    step = loadtest.run_load(*address, clients=3, requests=10, kind="step")
    assert (step["ok"], step["errors"]) == (30, 0)


def test_crcm_serve_command(tiny_teacher, tmp_path):
    """``crcm serve CKPT port=0`` prints where it listens, serves, and stops cleanly on SIGINT."""
    token_file = tmp_path / "token"
    token_file.write_text("tok\n")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "crcm_robotics.cli",
            "serve",
            str(tiny_teacher),
            "port=0",
            "device=cpu",
            "steps=1",
            f"token_file={token_file}",
            "log_level=WARNING",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        ready = json.loads(line)
        host, port = ready["serving"].rsplit(":", 1)
        assert host == "127.0.0.1" and ready["auth"] is True
        with WorldModelClient(host, int(port), token="tok") as client:
            assert client.info()["image_shape"] == ready["image_shape"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
