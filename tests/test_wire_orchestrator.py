"""voltorch.wire's system mapping: the server's error records, component health, metric points, histograms
and samples are written as before (objects and bytes, from the server's own types), a trace entry carries
an event or an error, the health and metrics answers are assembled from them, and everything survives a
round trip (also what a real server answers)."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp
from voltorch import wire
from voltorch.v1 import events_pb2, orchestrator_pb2_grpc
from voltorch.v1 import orchestrator_pb2 as pb
from voltorch_server.app import VoltorchServer
from voltorch_server.components.system import (
    COUNTER,
    HISTOGRAM,
    ComponentHealth,
    ErrorRecord,
    HealthStatus,
    HistogramSummary,
    MetricKind,
    MetricPoint,
    Sample,
)

T = 1764589908  # whole seconds; the fractions below are exact in binary


def _struct(obj: dict) -> Struct:
    return json_format.ParseDict(obj, Struct())


def _same_bytes(got: Message, expected: Message) -> bool:
    return got.SerializeToString(deterministic=True) == expected.SerializeToString(deterministic=True)


def _error() -> ErrorRecord:
    return ErrorRecord(
        id="err_1",
        component="workflows",
        code="STEP_TIMEOUT",
        message="step s1 timed out",
        trace_id="ab" * 16,
        span_id="cd" * 8,
        correlation_id="order-7",
        time=T + 0.5,
        details={"execution_id": "e1", "attempts": 3, "nested": {"ok": False, "list": [1, None]}},
        event_sequence=42,  # the server's own: not on the wire
    )


def _expected_error() -> pb.ErrorRecord:
    return pb.ErrorRecord(
        id="err_1",
        component="workflows",
        code="STEP_TIMEOUT",
        message="step s1 timed out",
        trace_id="ab" * 16,
        span_id="cd" * 8,
        correlation_id="order-7",
        time=Timestamp(seconds=T, nanos=500_000_000),
        details=_struct({"execution_id": "e1", "attempts": 3, "nested": {"ok": False, "list": [1, None]}}),
    )


def _component(**changes) -> ComponentHealth:
    fields = dict(
        name="workflows",
        status=HealthStatus.DEGRADED,
        enabled=True,
        message="2 slow steps",
        last_check_time=T + 10.25,
        check_latency=0.0125,
        error_count=4,
        restart_count=1,
        consecutive_failures=2,
        last_error=_error(),
        start_time=T + 0.125,
        details={"queued": "3"},
    )
    fields.update(changes)
    return ComponentHealth(**fields)  # type: ignore[arg-type]


def _expected_component() -> pb.ComponentHealth:
    return pb.ComponentHealth(
        name="workflows",
        status=pb.HEALTH_STATUS_DEGRADED,
        enabled=True,
        message="2 slow steps",
        last_check_time=Timestamp(seconds=T + 10, nanos=250_000_000),
        check_latency=Duration(nanos=12_500_000),
        error_count=4,
        restart_count=1,
        consecutive_failures=2,
        last_error=_expected_error(),
        start_time=Timestamp(seconds=T, nanos=125_000_000),
        details={"queued": "3"},
    )


def test_the_server_writes_an_error_record_as_before() -> None:
    got = wire.error_record_pb(_error())
    assert got == _expected_error() and _same_bytes(got, _expected_error())
    bare = wire.error_record_pb(
        ErrorRecord("err_2", "state", "INTERNAL", "boom", "", "", "", time=T, details={})
    )
    expected = pb.ErrorRecord(
        id="err_2",
        component="state",
        code="INTERNAL",
        message="boom",
        time=Timestamp(seconds=T),
        details=Struct(),
    )
    assert bare == expected and _same_bytes(bare, expected) and bare.HasField("details")  # always written


def test_the_server_writes_component_health_as_before() -> None:
    got = wire.component_health_pb(_component())
    assert got == _expected_component() and _same_bytes(got, _expected_component())
    unchecked = wire.component_health_pb(
        _component(
            status=HealthStatus.UNSPECIFIED,
            enabled=False,
            last_check_time=None,
            check_latency=0.0,
            last_error=None,
            details={},
        )
    )
    expected = pb.ComponentHealth(
        name="workflows",
        status=pb.HEALTH_STATUS_UNSPECIFIED,
        message="2 slow steps",
        check_latency=Duration(),
        error_count=4,
        restart_count=1,
        consecutive_failures=2,
        start_time=Timestamp(seconds=T, nanos=125_000_000),
    )
    assert unchecked == expected and _same_bytes(unchecked, expected)
    assert unchecked.HasField("check_latency") and not unchecked.HasField("last_check_time")
    assert not unchecked.HasField("last_error")


def _histogram() -> HistogramSummary:
    return HistogramSummary(count=8, sum=12.5, min=0.25, max=4.0, p50=1.0, p95=3.5, p99=4.0)


def _expected_histogram() -> pb.HistogramSummary:
    return pb.HistogramSummary(count=8, sum=12.5, min=0.25, max=4.0, p50=1.0, p95=3.5, p99=4.0)


def test_the_server_writes_metric_points_as_before() -> None:
    attrs = {"rpc.method": "SetKey"}
    counter = MetricPoint("voltorch.calls", "calls made", "1", COUNTER, attrs, 17.0, None, T + 0.75)
    expected_counter = pb.MetricValue(
        name="voltorch.calls",
        description="calls made",
        unit="1",
        kind=pb.METRIC_KIND_COUNTER,
        attributes=attrs,
        value=17.0,
        time=Timestamp(seconds=T, nanos=750_000_000),
    )
    hist = MetricPoint("rpc.server.duration", "", "ms", HISTOGRAM, {}, 8.0, _histogram(), T)
    expected_hist = pb.MetricValue(
        name="rpc.server.duration",
        unit="ms",
        kind=pb.METRIC_KIND_HISTOGRAM,
        value=8.0,
        histogram=_expected_histogram(),
        time=Timestamp(seconds=T),
    )
    gauge = MetricPoint("voltorch.workflows.active", "", "1", MetricKind.GAUGE, {}, 2.0, None, T)
    for point, expected in (
        (counter, expected_counter),
        (hist, expected_hist),
        (
            gauge,
            pb.MetricValue(
                name="voltorch.workflows.active",
                unit="1",
                kind=pb.METRIC_KIND_GAUGE,
                value=2.0,
                time=Timestamp(seconds=T),
            ),
        ),
    ):
        got = wire.metric_pb(point)
        assert got == expected and _same_bytes(got, expected)
    assert not wire.metric_pb(counter).HasField("histogram")


def test_the_server_writes_samples_and_series() -> None:
    samples = [
        Sample("rpc.server.duration", {"m": "x"}, T + 0.5, 3.0, _histogram()),
        Sample("rpc.server.duration", {"m": "x"}, T + 1.5, 5.0),
    ]
    series = wire.MetricSeries("rpc.server.duration", {"m": "x"}, samples)  # type: ignore[arg-type]
    expected = pb.MetricSeries(
        name="rpc.server.duration",
        attributes={"m": "x"},
        samples=[
            pb.MetricSample(
                time=Timestamp(seconds=T, nanos=500_000_000), value=3.0, histogram=_expected_histogram()
            ),
            pb.MetricSample(time=Timestamp(seconds=T + 1, nanos=500_000_000), value=5.0),
        ],
    )
    got = wire.metric_series_pb(series)
    assert got == expected and _same_bytes(got, expected)


def test_a_trace_entry_carries_an_event_or_an_error() -> None:
    event = events_pb2.Event(id="ev_1", type="workflow.started", sequence=3)
    assert wire.trace_entry_pb(event) == pb.TraceEntry(event=event)
    assert wire.trace_entry_pb(_error()) == pb.TraceEntry(error=_expected_error())
    assert wire.trace_entry_from_pb(pb.TraceEntry(event=event)) == event
    assert wire.trace_entry_from_pb(pb.TraceEntry(error=_expected_error())) == wire.error_record_from_pb(
        _expected_error()
    )


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def test_the_sdk_types_survive_a_round_trip() -> None:
    error = wire.error_record_from_pb(_expected_error())
    assert error == wire.ErrorRecord(
        "err_1",
        "workflows",
        "STEP_TIMEOUT",
        "step s1 timed out",
        "ab" * 16,
        "cd" * 8,
        "order-7",
        _at(T + 0.5),
        {"execution_id": "e1", "attempts": 3, "nested": {"ok": False, "list": [1, None]}},
    )
    assert _same_bytes(wire.error_record_pb(error), _expected_error())
    component = wire.component_health_from_pb(_expected_component())
    assert (component.status, component.check_latency, component.last_error) == ("DEGRADED", 0.0125, error)
    assert _same_bytes(wire.component_health_pb(component), _expected_component())
    assert wire.component_health_from_pb(pb.ComponentHealth()).status == "UNSPECIFIED"

    metric = wire.metric_from_pb(
        wire.metric_pb(MetricPoint("m", "", "ms", HISTOGRAM, {}, 8.0, _histogram(), T))
    )
    assert metric == wire.Metric(
        "m", "", "ms", "histogram", {}, 8.0, wire.HistogramSummary(8, 12.5, 0.25, 4.0, 1.0, 3.5, 4.0), _at(T)
    )
    assert wire.metric_from_pb(pb.MetricValue()).kind == "unspecified"

    health = wire.Health(
        status="DEGRADED",
        components=[component],
        uptime=90.5,
        version="1.2.3",
        start_time=_at(T),
        active_workflows=1,
        queued_workflows=2,
        registered_agents=3,
        connected_workers=4,
        error_count=5,
        last_error=error,
        members=[wire.Member("r1", "127.0.0.1:1", "1.2.3", _at(T), _at(T + 5), True, 1, 0, True)],
        replica_id="r1",
    )
    written = wire.health_pb(health, members=health.members, replica_id=health.replica_id)
    assert (
        written.uptime == Duration(seconds=90, nanos=500_000_000)
        and written.status == pb.HEALTH_STATUS_DEGRADED
    )
    assert list(written.components) == [_expected_component()] and written.last_error == _expected_error()
    assert wire.health_from_pb(written) == health

    metrics = wire.Metrics(
        metrics=[metric],
        history=[wire.metric_series_from_pb(wire.metric_series_pb(wire.MetricSeries("m", {}, [])))],
        collect_time=_at(T),
        collection_interval=10.0,
        retention=3600.0,
    )
    report = wire.metrics_pb(metrics, collection_interval=metrics.collection_interval)
    assert report.collection_interval == Duration(seconds=10) and report.retention == Duration(seconds=3600)
    assert wire.metrics_from_pb(report) == metrics


def test_what_a_server_answers_reads(server: VoltorchServer) -> None:
    with grpc.insecure_channel(server.target) as channel:
        stub = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
        health = wire.health_from_pb(stub.GetHealth(pb.GetHealthRequest(refresh=True), timeout=10))
        metrics = wire.metrics_from_pb(
            stub.GetMetrics(pb.GetMetricsRequest(include_history=True), timeout=10)
        )
    assert health.status == "HEALTHY" and health.replica_id == server.runtime.cluster.id
    assert [m.id for m in health.members] == [server.runtime.cluster.id]
    assert {c.status for c in health.components} <= {"HEALTHY", "UNSPECIFIED"}
    assert health.component("state").last_check_time is not None
    assert metrics.metrics and {m.kind for m in metrics.metrics} <= {"gauge", "counter", "histogram"}
    assert metrics.collection_interval > 0 and metrics.collect_time is not None
