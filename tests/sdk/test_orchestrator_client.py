"""The SDK's system calls (health, components, restart, metrics, errors, trace) and its trace propagation."""

from __future__ import annotations

from collections import namedtuple
from datetime import datetime
from importlib.metadata import version

import pytest
import voltorch
from opentelemetry import trace
from voltorch import ComponentHealth, ErrorRecord, Health, Metrics, Trace, TraceContextInterceptor
from voltorch_server import telemetry
from voltorch_server.app import VoltorchServer

Details = namedtuple("Details", "method timeout metadata credentials wait_for_ready compression")


def _sent_metadata(intercept, request=None) -> list[tuple[str, str]]:
    seen = {}

    def continuation(details, req):
        seen["md"] = list(details.metadata or [])
        return "response"

    assert (
        intercept(continuation, Details("/x/Y", None, [("k", "v")], None, None, None), request) == "response"
    )
    return seen["md"]


def test_trace_context_is_injected_only_inside_a_span(server: VoltorchServer) -> None:
    telemetry.install()  # an SDK TracerProvider, as an instrumented application would have
    interceptor = TraceContextInterceptor()
    assert _sent_metadata(interceptor.intercept_unary_unary) == [("k", "v")]
    with trace.get_tracer("sdk-tests").start_as_current_span("caller") as span:
        for intercept in (
            interceptor.intercept_unary_unary,
            interceptor.intercept_unary_stream,
            interceptor.intercept_stream_unary,
            interceptor.intercept_stream_stream,
        ):
            md = dict(_sent_metadata(intercept, iter(())))
            ctx = span.get_span_context()
            assert md["k"] == "v"
            assert md["traceparent"].split("-")[1:3] == [
                format(ctx.trace_id, "032x"),
                format(ctx.span_id, "016x"),
            ]


def test_health_and_components(client: voltorch.Client) -> None:
    h = client.health(refresh=True)
    assert isinstance(h, Health) and h.status == "HEALTHY"
    assert isinstance(h.start_time, datetime) and h.uptime > 0 and h.version == version("voltorch")
    state = h.component("state")
    assert isinstance(state, ComponentHealth) and state.enabled and state.check_latency >= 0
    assert isinstance(state.last_check_time, datetime) and state.last_error is None
    with pytest.raises(KeyError):
        h.component("nope")
    assert [c.name for c in client.components()] == [c.name for c in h.components]
    restarted = client.restart_component("state", reason="sdk test")
    assert restarted.name == "state" and restarted.restart_count == 1
    assert client.orchestrator.health is not None and client.health == client.orchestrator.health


def test_metrics_errors_and_trace(client: voltorch.Client, server: VoltorchServer) -> None:
    client.state.set("sdk/k", 1)
    m = client.metrics("rpc.server.duration")
    assert isinstance(m, Metrics) and {x.name for x in m.metrics} == {"rpc.server.duration"}
    assert m.value("rpc.server.duration", {"rpc.method": "SetKey"}) == 1
    assert m.select("no.such.metric") == [] and m.value("no.such.metric") == 0
    with trace.get_tracer("sdk-tests").start_as_current_span("sdk.errors") as span:
        for i in range(3):
            server.runtime.state.record_error("SDK_TEST", f"problem {i}", details={"i": i})
    tid = format(span.get_span_context().trace_id, "032x")
    errors = list(client.errors(trace_id=tid, page_size=2))
    assert [e.message for e in errors] == ["problem 2", "problem 1", "problem 0"]
    assert all(isinstance(e, ErrorRecord) and e.trace_id == tid and e.code == "SDK_TEST" for e in errors)
    assert isinstance(errors[0].time, datetime) and errors[0].details == {"i": 2}
    story = client.trace(tid)
    assert (
        isinstance(story, Trace)
        and story.events == []
        and [e.message for e in story.errors][0] == "problem 0"
    )
    assert story.trace_ids == [tid] and story.components == ["state"]


def test_a_trace_of_large_events_is_truncated_not_refused(client: voltorch.Client) -> None:
    """GetTrace has no pages: six events of 900 kB under one correlation id answered RESOURCE_EXHAUSTED.
    It now answers what fits, with truncated set."""
    for _ in range(6):
        client.events.publish("big.blob", {"blob": "x" * 900_000}, correlation_id="heavy")
    got = client.orchestrator.trace(correlation_id="heavy")
    assert 0 < len(got.entries) < 6 and got.truncated
