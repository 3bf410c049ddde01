"""Load test of the world-model server: C concurrent clients x R requests on loopback, then bad inputs.

    # against a running `crcm serve CKPT`
    python -m crcm_robotics.serve.loadtest --port 5555 --clients 8 --requests 200 --kind imagine \
        --rollouts 4 --horizon 4
    # or start an in-process server on a free port first
    python -m crcm_robotics.serve.loadtest --ckpt outputs/student --device cpu --clients 8 --requests 200

Every client opens its own connection, (for ``--kind step``) resets its
stream, waits for the others, then sends R requests back to back: ``imagine``
of ``--rollouts`` x ``--horizon`` random actions from a random context, or
``step``. Afterwards :func:`probe_bad_inputs` sends a garbage frame, an
unknown request type, a wrong-shaped and a wrong-dtype array, an object
array, an oversize message, a garbage length header and a truncated frame,
and checks that each is refused as documented and that a new client is still
served. Prints ONE JSON line (latency p50/p99 in ms over all requests, the
lowest and highest per-client mean, throughput in requests/s, error count,
the probe outcomes); exits 1 when a
request failed or the server did not survive the probe.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from collections import Counter
from typing import Any

import numpy as np

from crcm_robotics.serve import codec
from crcm_robotics.serve.client import WorldModelClient


def _random_context(info: dict[str, Any], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    k, a = int(info["context_frames"]), int(info["action_dim"])
    frames = rng.integers(0, 256, (k, *info["image_shape"]), dtype=np.uint8)
    return frames, rng.uniform(-1, 1, (k, a)).astype(np.float32)


def run_load(
    host: str,
    port: int,
    *,
    clients: int,
    requests: int,
    kind: str = "imagine",
    rollouts: int = 4,
    horizon: int = 4,
    token: str | None = None,
    timeout: float = 120.0,
    seed: int = 0,
) -> dict[str, Any]:
    """C clients x R requests; latencies, throughput and errors as a dict."""
    if kind not in ("imagine", "step"):
        raise ValueError(f"kind must be imagine or step, got {kind!r}")
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: Counter[str] = Counter()
    lock = threading.Lock()
    start_line = threading.Barrier(clients + 1)

    def client_main(i: int) -> None:
        rng = np.random.default_rng(seed + i)
        try:
            client = WorldModelClient(host, port, token=token, timeout=timeout)
            info = client.info()
            context = _random_context(info, rng)
            a = int(info["action_dim"])
            if kind == "step":
                client.reset(*context)
        except Exception as exc:  # counted, and this client sends nothing
            with lock:
                errors[f"connect: {type(exc).__name__}: {exc}"[:200]] += requests
            start_line.wait()
            return
        with client:
            start_line.wait()
            for _ in range(requests):
                t0 = time.perf_counter()
                try:
                    if kind == "imagine":
                        actions = rng.uniform(-1, 1, (rollouts, horizon, a)).astype(np.float32)
                        reply = client.imagine(actions, context=context)
                        if reply.frames.shape != (rollouts, horizon, *info["image_shape"]):
                            raise RuntimeError(f"imagine returned frames {reply.frames.shape}")
                    else:
                        frame = client.step(rng.uniform(-1, 1, a).astype(np.float32))
                        if frame.shape != tuple(info["image_shape"]):
                            raise RuntimeError(f"step returned a frame of shape {frame.shape}")
                except Exception as exc:
                    with lock:
                        errors[f"{type(exc).__name__}: {exc}"[:200]] += 1
                    continue
                latencies[i].append((time.perf_counter() - t0) * 1e3)

    threads = [threading.Thread(target=client_main, args=(i,), name=f"load-{i}") for i in range(clients)]
    for t in threads:
        t.start()
    start_line.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    all_ms = np.array([ms for per_client in latencies for ms in per_client])
    ok = int(all_ms.size)
    means = [float(np.mean(per_client)) for per_client in latencies if per_client]

    def pct(q: float) -> float | None:
        return round(float(np.percentile(all_ms, q)), 3) if ok else None

    return {
        "kind": kind,
        "clients": clients,
        "requests": requests,
        **({"rollouts": rollouts, "horizon": horizon} if kind == "imagine" else {}),
        "ok": ok,
        "errors": int(sum(errors.values())),
        "p50_ms": pct(50),
        "p99_ms": pct(99),
        "mean_ms": round(float(all_ms.mean()), 3) if ok else None,
        "max_ms": round(float(all_ms.max()), 3) if ok else None,
        "client_mean_ms": [round(min(means), 3), round(max(means), 3)] if means else None,  # fairness
        "throughput_rps": round(ok / wall, 2) if wall > 0 else None,
        "wall_s": round(wall, 3),
        **({"error_kinds": dict(errors.most_common(5))} if errors else {}),
    }


# --- bad inputs ------------------------------------------------------------------------------------


def _raw(host: str, port: int, timeout: float) -> tuple[socket.socket, dict[str, Any]]:
    sock = socket.create_connection((host, port), timeout=timeout)
    return sock, codec.read_message(sock, codec.DEFAULT_CLIENT_MAX_MESSAGE_BYTES)


def _outcome(sock: socket.socket) -> str:
    """``error:<type>`` for an error reply, ``ok`` for a success, ``closed`` when the server hung up."""
    try:
        reply = codec.read_message(sock, codec.DEFAULT_CLIENT_MAX_MESSAGE_BYTES)
    except (ConnectionError, OSError):
        return "closed"
    if reply.get("ok"):
        return "ok"
    outcome = f"error:{reply['error']['type']}"
    if reply.get("closing"):
        try:  # the server closes after its reply
            return outcome + "+closed" if sock.recv(1) == b"" else outcome
        except OSError:
            return outcome + "+closed"
    return outcome


def probe_bad_inputs(host: str, port: int, token: str | None = None, timeout: float = 30.0) -> dict[str, Any]:
    """Send each kind of bad input on a raw socket; return each outcome and whether all were as expected."""
    auth = {"token": token} if token else {}
    image_shape = None
    results: dict[str, str] = {}

    def request(sock: socket.socket, obj: Any) -> str:
        sock.sendall(codec.encode(obj))
        return _outcome(sock)

    sock, hello = _raw(host, port, timeout)
    limit = int(hello["max_message_bytes"])
    with sock:
        sock.sendall(codec.encode({"type": "info", **auth}))
        info_reply = codec.read_message(sock, codec.DEFAULT_CLIENT_MAX_MESSAGE_BYTES)
        image_shape = info_reply["info"]["image_shape"]
        a = int(info_reply["info"]["action_dim"])
        sock.sendall(codec.frame(b"\xc1\x93\xff not msgpack"))
        results["garbage_msgpack"] = _outcome(sock)
        results["unknown_type"] = request(sock, {"type": "explode", **auth})
        results["wrong_shape"] = request(
            sock, {"type": "imagine", "actions": np.zeros((2, a + 1), np.float32), **auth}
        )
        results["wrong_dtype"] = request(sock, {"type": "step", "action": np.zeros(a, np.int64), **auth})
        results["object_array"] = request(
            sock,
            {
                "type": "step",
                "action": {"__ndarray__": True, "dtype": "|O", "shape": [a], "data": b"\0" * 8 * a},
                **auth,
            },
        )
        results["wrong_image"] = request(
            sock,
            {
                "type": "imagine",
                "actions": np.zeros((1, 1, a), np.float32),
                "context_frames": np.zeros((1, 3, 3, 3), np.uint8),
                "context_actions": np.zeros((1, a), np.float32),
                **auth,
            },
        )
        results["oversize"] = _oversize(sock, limit + 1)
        results["same_connection_after"] = request(sock, {"type": "info", **auth})
    sock, _ = _raw(host, port, timeout)
    with sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        results["garbage_header"] = _outcome(sock)
    sock, _ = _raw(host, port, timeout)
    with sock:
        sock.sendall(codec.HEADER.pack(1000) + b"only ten b")  # then hang up mid-frame
    expected = {
        "garbage_msgpack": "error:DecodeError",
        "unknown_type": "error:BadRequest",
        "wrong_shape": "error:BadRequest",
        "wrong_dtype": "error:BadRequest",
        "object_array": "error:DecodeError",
        "wrong_image": "error:BadRequest",
        "oversize": "error:MessageTooLarge",
        "same_connection_after": "ok",
        "garbage_header": "error:MessageTooLarge+closed",
    }
    alive = False
    try:
        with WorldModelClient(host, port, token=token, timeout=timeout) as client:
            info = client.info()
            rng = np.random.default_rng(0)
            frames, actions = _random_context(info, rng)
            reply = client.imagine(
                np.zeros((1, 1, int(info["action_dim"])), np.float32), context=(frames, actions)
            )
            alive = reply.frames.shape == (1, 1, *image_shape)
    except Exception as exc:
        results["alive_error"] = f"{type(exc).__name__}: {exc}"
    return {
        "bad_inputs": results,
        "bad_inputs_as_expected": all(results.get(k) == v for k, v in expected.items()),
        "alive_after_bad_inputs": alive,
    }


def _oversize(sock: socket.socket, size: int) -> str:
    sock.sendall(codec.HEADER.pack(size))
    chunk = b"\0" * (1 << 20)
    left = size
    while left:
        n = min(left, len(chunk))
        sock.sendall(chunk[:n])
        left -= n
    return _outcome(sock)


# --- command line ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5555)
    ap.add_argument("--token", default=None)
    ap.add_argument("--ckpt", help="start an in-process server on a free loopback port from this checkpoint")
    ap.add_argument("--device", default="cpu", help="with --ckpt: torch device")
    ap.add_argument("--backend", default="eager", help="with --ckpt: runtime backend")
    ap.add_argument("--steps", type=int, default=0, help="with --ckpt: sampler steps (0 = checkpoint's)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=200, help="requests per client")
    ap.add_argument("--kind", choices=("imagine", "step"), default="imagine")
    ap.add_argument("--rollouts", type=int, default=4, help="imagine: rollouts per request")
    ap.add_argument("--horizon", type=int, default=4, help="imagine: frames per rollout")
    ap.add_argument("--timeout", type=float, default=120.0, help="client socket timeout, s")
    ap.add_argument("--no-probe", action="store_true", help="skip the bad-input round")
    args = ap.parse_args(argv)
    if args.clients < 1 or args.requests < 1 or args.rollouts < 1 or args.horizon < 1:
        ap.error("--clients, --requests, --rollouts and --horizon must be >= 1")

    server_thread = None
    host, port = args.host, args.port
    if args.ckpt:
        from crcm_robotics.runtime import WorldModel
        from crcm_robotics.serve.server import ServerThread, WorldModelServer

        model = WorldModel.load(args.ckpt, device=args.device, backend=args.backend, steps=args.steps or None)
        server_thread = ServerThread(WorldModelServer(model, token=args.token), "127.0.0.1", 0)
        host, port = server_thread.start()
    try:
        result: dict[str, Any] = {"server": f"{host}:{port}"}
        result.update(
            run_load(
                host,
                port,
                clients=args.clients,
                requests=args.requests,
                kind=args.kind,
                rollouts=args.rollouts,
                horizon=args.horizon,
                token=args.token,
                timeout=args.timeout,
            )
        )
        if not args.no_probe:
            result.update(probe_bad_inputs(host, port, token=args.token, timeout=args.timeout))
    finally:
        if server_thread is not None:
            server_thread.stop()
    print(json.dumps(result))
    healthy = result["errors"] == 0 and (args.no_probe or result["alive_after_bad_inputs"])
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
