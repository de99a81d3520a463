"""Tracing overhead: the same unary calls against servers with tracing off, on, and on with every span
exported over OTLP/gRPC, in the same run.

Every traced row sends a sampled W3C `traceparent` with each call (what the SDK's interceptor does inside
a caller's span), so the server continues the trace: a span per RPC, made current while the handler runs,
its ids stamped on the events the call emits (SetKey's state.changed). Target: traced calls/s >= 0.85x
the untraced server's — tracing as deployed by default (spans and ids, nothing exported).

The OTLP rows record and export EVERY span (parent sampled) to a receiver in another process; they show
what full export costs (span recording + OTLP protobuf encoding in the server's Python process) and have
no target. Sample with the standard OTEL_TRACES_SAMPLER=parentbased_traceidratio to pay it on a fraction.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from voltorch.v1 import events_pb2, events_pb2_grpc, state_pb2, state_pb2_grpc
from voltorch.wire import to_value as py_to_value

from ._harness import Case, MakeOp, Op, Result, ServerProcess, run_cases

KEYS = 64
TARGET = 0.85


def _traceparent(n: int) -> tuple[tuple[str, str], ...]:
    return (("traceparent", f"00-{n + 1:032x}-{n + 1:016x}-01"),)


class _Ids:
    def __init__(self) -> None:
        self._n = itertools.count()

    def next(self) -> int:
        return next(self._n) % 1000


def _get(ids: _Ids, traced: bool) -> MakeOp:
    def make(ch: grpc.Channel) -> Op:
        stub = state_pb2_grpc.StateServiceStub(ch)
        c = ids.next()
        md = _traceparent(c) if traced else None
        reqs = itertools.cycle([state_pb2.GetKeyRequest(key=f"bench/{i}") for i in range(KEYS)])

        def op() -> None:
            stub.GetKey(next(reqs), timeout=30, metadata=md)

        return op

    return make


def _set(ids: _Ids, traced: bool, payload: int) -> MakeOp:
    def make(ch: grpc.Channel) -> Op:
        stub = state_pb2_grpc.StateServiceStub(ch)
        c = ids.next()
        md = _traceparent(c) if traced else None
        value = py_to_value({"data": "x" * payload})
        reqs = itertools.cycle(
            [state_pb2.SetKeyRequest(key=f"bench/c{c}/{i}", value=value) for i in range(KEYS)]
        )

        def op() -> None:
            stub.SetKey(next(reqs), timeout=30, metadata=md)

        return op

    return make


def _prepare(target: str, payload: int, *, expect_traced: bool) -> None:
    """Fill the keys, and check the server's tracing setting took effect (the event carries the trace)."""
    with grpc.insecure_channel(target) as ch:
        stub = state_pb2_grpc.StateServiceStub(ch)
        value = py_to_value({"data": "x" * payload})
        ops = [
            state_pb2.StateOperation(set=state_pb2.SetKeyRequest(key=f"bench/{i}", value=value))
            for i in range(KEYS)
        ]
        stub.Transaction(state_pb2.TransactionRequest(on_success=ops), timeout=30)
        md = _traceparent(999_999)
        stub.SetKey(state_pb2.SetKeyRequest(key="bench/probe", value=value), timeout=30, metadata=md)
        events = events_pb2_grpc.EventServiceStub(ch)
        req = events_pb2.ListEventsRequest(
            filter=events_pb2.EventFilter(types=["state.changed"]),
            order=events_pb2.EVENT_ORDER_DESCENDING,
            page_size=1,
        )
        page = events.ListEvents(req, timeout=30)
        traced = bool(page.events) and page.events[0].trace_id == md[0][1].split("-")[1]
        if traced != expect_traced:
            raise RuntimeError(
                f"server {target}: tracing is {'on' if traced else 'off'}, expected the opposite"
            )


class _Sink:
    """An OTLP/gRPC trace receiver in its own process (`python -m bench.suite_tracing`)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.suite_tracing"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
        self.port = int(json.loads(self.proc.stdout.readline())["port"])  # type: ignore[union-attr]

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.stdin.close()  # type: ignore[union-attr]
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def run(args: Any) -> list[Result]:
    sink = _Sink()
    started: dict[str, ServerProcess] = {}
    try:
        envs = {
            "off": {"VOLTORCH_TRACING": "false"},
            "on": {"VOLTORCH_TRACING": "true", "OTEL_TRACES_EXPORTER": "none"},
            "otlp": {
                "VOLTORCH_TRACING": "true",
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink.port}",
            },
        }
        for name, env in envs.items():
            prof = os.path.join(args.profile, f"tracing-{name}.pstats") if args.profile else None
            started[name] = ServerProcess("voltorch", env=env, profile=prof)
        for name, srv in started.items():
            _prepare(srv.target, args.payload, expect_traced=name != "off")
        ids = _Ids()
        get_off, set_off = "GetKey, tracing off", "SetKey, tracing off"
        cases = [
            Case(get_off, "off", _get(ids, traced=False)),
            Case("GetKey, traced", "on", _get(ids, traced=True), baseline=get_off, target=TARGET),
            Case("GetKey, traced, every span OTLP", "otlp", _get(ids, traced=True), baseline=get_off),
            Case(set_off, "off", _set(ids, False, args.payload)),
            Case("SetKey, traced", "on", _set(ids, True, args.payload), baseline=set_off, target=TARGET),
            Case("SetKey, traced, every span OTLP", "otlp", _set(ids, True, args.payload), baseline=set_off),
        ]
        return run_cases("tracing", cases, started, args)
    finally:
        for srv in started.values():
            srv.stop()
        sink.stop()


def _serve_sink() -> None:
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    class Discard(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(ThreadPoolExecutor(4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Discard(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(json.dumps({"port": port}), flush=True)
    sys.stdin.read()
    server.stop(0)


if __name__ == "__main__":
    _serve_sink()
