"""StateService: GetKey and durable SetKey against a bare grpcio echo of the same payload size.

Targets: GetKey >= 0.9x and SetKey (durable: WAL, committed before the answer) >= 0.8x of the echo's
calls/s. The SDK rows (client.state.get/set over the same channels) show what the typed SDK adds on
the client side; they have no target.
"""

from __future__ import annotations

import itertools
from typing import Any

import grpc
from voltorch import StateClient
from voltorch.v1 import state_pb2, state_pb2_grpc
from voltorch.wire import to_value as py_to_value

from ._harness import Case, MakeOp, Op, Result, echo_unary, run_cases, servers

KEYS = 64  # distinct keys each client cycles through


def _value(payload: int) -> dict[str, Any]:
    return {"data": "x" * payload}


def _key(client: int, i: int) -> str:
    return f"bench/c{client}/k{i}"


def _payload_size(payload: int) -> int:
    """Serialized size of the larger of a SetKeyRequest and a Get/SetKeyResponse carrying the value."""
    value = py_to_value(_value(payload))
    key = _key(99, KEYS - 1)
    kv = state_pb2.KeyValue(key=key, value=value, version=1000, create_revision=10**6, mod_revision=10**6)
    kv.update_time.GetCurrentTime()
    return max(
        state_pb2.SetKeyRequest(key=key, value=value).ByteSize(),
        state_pb2.SetKeyResponse(kv=kv, revision=10**6).ByteSize(),
    )


class _Clients:
    """Hands each new channel a client number, so each client works on its own keys."""

    def __init__(self) -> None:
        self._n = itertools.count()

    def next(self) -> int:
        return next(self._n) % 1000


def _get_raw(ids: _Clients, clients: int) -> MakeOp:
    def make(ch: grpc.Channel) -> Op:
        stub = state_pb2_grpc.StateServiceStub(ch)
        reqs = itertools.cycle(
            [state_pb2.GetKeyRequest(key=_key(c, i)) for c in range(clients) for i in range(KEYS)]
        )
        for _ in range(ids.next() * 7):
            next(reqs)

        def op() -> None:
            stub.GetKey(next(reqs), timeout=30)

        return op

    return make


def _set_raw(ids: _Clients, payload: int) -> MakeOp:
    def make(ch: grpc.Channel) -> Op:
        stub = state_pb2_grpc.StateServiceStub(ch)
        c, value = ids.next(), py_to_value(_value(payload))
        reqs = itertools.cycle([state_pb2.SetKeyRequest(key=_key(c, i), value=value) for i in range(KEYS)])

        def op() -> None:
            stub.SetKey(next(reqs), timeout=30)

        return op

    return make


def _get_sdk(ids: _Clients, clients: int) -> MakeOp:
    def make(ch: grpc.Channel) -> Op:
        state = StateClient(state_pb2_grpc.StateServiceStub(ch), 30)
        keys = itertools.cycle([_key(c, i) for c in range(clients) for i in range(KEYS)])

        def op() -> None:
            state.get(next(keys))

        return op

    return make


def _set_sdk(ids: _Clients, payload: int) -> MakeOp:
    def make(ch: grpc.Channel) -> Op:
        state = StateClient(state_pb2_grpc.StateServiceStub(ch), 30)
        c, value = ids.next(), _value(payload)
        keys = itertools.cycle([_key(c, i) for i in range(KEYS)])

        def op() -> None:
            state.set(next(keys), value)

        return op

    return make


def _populate(target: str, clients: int, payload: int) -> None:
    with grpc.insecure_channel(target) as ch:
        stub = state_pb2_grpc.StateServiceStub(ch)
        value = py_to_value(_value(payload))
        for c in range(clients):
            req = state_pb2.TransactionRequest(
                on_success=[
                    state_pb2.StateOperation(set=state_pb2.SetKeyRequest(key=_key(c, i), value=value))
                    for i in range(KEYS)
                ]
            )
            stub.Transaction(req, timeout=30)


def run(args: Any) -> list[Result]:
    size = _payload_size(args.payload)
    echo = f"echo {size}B"
    with servers("echo", "voltorch", profile_dir=args.profile) as srv:
        _populate(srv["voltorch"].target, args.clients, args.payload)
        ids = _Clients()
        cases = [
            Case(echo, "echo", echo_unary(size)),
            Case("state GetKey", "voltorch", _get_raw(ids, args.clients), baseline=echo, target=0.9),
            Case(
                "state SetKey (durable)", "voltorch", _set_raw(ids, args.payload), baseline=echo, target=0.8
            ),
            Case("sdk state.get", "voltorch", _get_sdk(ids, args.clients), baseline=echo),
            Case("sdk state.set", "voltorch", _set_sdk(ids, args.payload), baseline=echo),
        ]
        return run_cases("state", cases, srv, args)
