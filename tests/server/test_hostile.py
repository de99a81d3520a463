"""The hostile-input sweep: every RPC of every service (voltorch's, grpc.health.v1 and reflection), found
from the descriptors, called with empty, random, invalid-time and garbage-byte requests. None may answer
INTERNAL or UNKNOWN, and the server may log no ERROR (nor any traceback)."""

from __future__ import annotations

import logging
import random
from concurrent.futures import ThreadPoolExecutor

import grpc
from rpc_catalog import WELL_KNOWN_CHECKED, Rpc, all_rpcs, call_raw, field_paths, random_message, reach
from voltorch_server.app import VoltorchServer

RANDOM_PER_RPC = 12
SEED = 20261201
STREAM_SECONDS = 2.0  # a server stream is read for at most this long (or 2 messages), then left


def _payloads(rpc: Rpc, rng: random.Random) -> list[tuple[str, bytes]]:
    cls = rpc.request_type
    valid = random_message(cls, rng).SerializeToString()
    out = [
        ("empty", b""),
        ("garbage", b"\xff\xff\xff\xff"),
        ("random bytes", bytes(rng.randrange(256) for _ in range(64))),
        ("wrong field types", b"\x0a\x05\x08\x01\x12\x01a" * 3),
        ("truncated", valid[: max(1, len(valid) // 2)] if len(valid) > 2 else b"\x0a"),
        ("huge length", b"\x0a\xff\xff\xff\xff\x0f"),
    ]
    for i in range(RANDOM_PER_RPC):
        out.append((f"random #{i}", random_message(cls, rng).SerializeToString()))
    for path, steps in field_paths(cls.DESCRIPTOR, WELL_KNOWN_CHECKED):
        req = cls()
        t = reach(req, steps)
        t.seconds, t.nanos = 10**13, -5
        out.append((f"invalid time at {path}", req.SerializeToString()))
    return out


def test_no_request_gets_internal_unknown_or_a_logged_error(server, caplog):
    caplog.set_level(logging.WARNING)
    rng = random.Random(SEED)
    calls = [(rpc, label, payload) for rpc in all_rpcs() for label, payload in _payloads(rpc, rng)]
    assert len({rpc.path for rpc, _, _ in calls}) >= 40  # every service's every method

    with grpc.insecure_channel(server.target) as channel:

        def one(item: tuple[Rpc, str, bytes]) -> tuple[str, str, grpc.StatusCode, str]:
            rpc, label, payload = item
            streaming = rpc.server_streaming
            code, details = call_raw(
                channel, rpc, payload, timeout=STREAM_SECONDS if streaming else 15.0, max_messages=2
            )
            return rpc.path, label, code, details

        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(one, calls))

    bad = [r for r in results if r[2] in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)]
    assert not bad, "\n".join(f"{p} [{label}]: {code.name} {d}" for p, label, code, d in bad)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, "\n".join(f"{r.name}: {r.getMessage()}" for r in errors)


def test_with_auth_unauthenticated_garbage_is_refused_before_decoding(config, caplog):
    """With tokens configured, every RPC called without one, with garbage or empty bytes: UNAUTHENTICATED
    (open services: INVALID_ARGUMENT or an answer), never INTERNAL/UNKNOWN, nothing logged as an error."""
    caplog.set_level(logging.WARNING)
    secured = config.with_overrides(auth_tokens="admin:admin-token-0123456789")
    with VoltorchServer(secured) as srv, grpc.insecure_channel(srv.target) as channel:
        results = []
        for rpc in all_rpcs():
            for payload in (b"", b"\xff\xff\xff\xff"):
                code, details = call_raw(channel, rpc, payload, timeout=STREAM_SECONDS, max_messages=1)
                results.append((rpc.path, payload, code, details))
    bad = [r for r in results if r[2] in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)]
    assert not bad, bad
    for path, _, code, _ in results:
        if path.startswith("/voltorch."):
            assert code == grpc.StatusCode.UNAUTHENTICATED, path
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, "\n".join(f"{r.name}: {r.getMessage()}" for r in errors)
