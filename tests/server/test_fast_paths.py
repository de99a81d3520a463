"""The per-call shortcuts must report exactly what the long way did: GetKey's memoized rendering, the
plain-Python rpc.server.duration histogram, and the span built directly while nothing exports."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import voltorch
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.metrics import Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from voltorch_server import telemetry
from voltorch_server.app import VoltorchServer
from voltorch_server.components.events import EventLog
from voltorch_server.components.state import KeyValue, KVCache, Row, StateStore
from voltorch_server.errors import NotFound
from voltorch_server.metrics import (
    _MS_BUCKETS,
    SCOPE,
    InMemoryReader,
    PrometheusHistogram,
    PrometheusRpcDurations,
    RpcDurations,
    _views,
    plain_histograms,
)
from voltorch_server.storage import Database
from voltorch_server.storage.stores import SqlEvents, SqlState


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(db: Database, clock: FakeClock) -> Iterator[StateStore]:
    s = StateStore(SqlState(db), EventLog(SqlEvents(db)), clock=clock)
    yield s
    s.stop()


# -- GetKey's rendering ------------------------------------------------------------------------------


def test_a_rendering_is_made_once_per_change_and_never_outlives_it(
    store: StateStore, clock: FakeClock
) -> None:
    made: list[KeyValue] = []

    def render(kv: KeyValue) -> tuple:
        made.append(kv)
        return (kv.value, kv.version)

    store.set("k", "a", ttl=10)
    assert store.get_rendered("k", render) == ("a", 1)
    assert store.get_rendered("k", render) == ("a", 1)
    assert len(made) == 1  # the second read reused it
    store.set("k", "b")
    assert store.get_rendered("k", render) == ("b", 2) and len(made) == 2
    store.set("t", "c", ttl=10)
    assert store.get_rendered("t", render) == ("c", 1)
    clock.now += 11
    with pytest.raises(NotFound):
        store.get_rendered("t", render)  # expired: the memo does not keep it alive
    store.delete("k")
    with pytest.raises(NotFound):
        store.get_rendered("k", render)


def test_a_rendering_goes_with_its_row_and_counts_against_the_cache_budget() -> None:
    cache = KVCache(max_entries=2)
    a, b, c = (Row(k, '"v"', 1, 1, 1, None, 0.0) for k in "abc")
    cache.apply([("a", a), ("b", b)])
    cache.attach(a, "rendered a")
    assert cache.derived(a) == "rendered a"
    stale = Row("b", '"old"', 1, 1, 1, None, 0.0)
    cache.attach(stale, "not b's current row")  # ignored: only the cached row itself takes one
    assert cache.derived(b) is None and cache.derived(stale) is None
    cache.apply([("c", c)])  # evicts a, the oldest
    assert cache.get("a") is None and cache.derived(a) is None
    cache.apply([("b", None)])
    assert cache.derived(b) is None and len(cache) == 1


# -- rpc.server.duration ---------------------------------------------------------------------------


def _points(reader: InMemoryReader) -> list[HistogramDataPoint]:
    data = reader.get_metrics_data()
    if data is None:  # the SDK collected nothing at all (our points then wait for the next collection)
        return []
    return [
        p
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == "rpc.server.duration"
        for p in m.data.data_points
        if isinstance(p, HistogramDataPoint)
    ]


def _method(p: HistogramDataPoint) -> object:
    assert p.attributes is not None
    return p.attributes["rpc.method"]


def _sdk_point(values: list[float]) -> HistogramDataPoint:
    """What the OpenTelemetry SDK makes of these values with the same buckets."""
    reader = InMemoryMetricReader()
    view = View(instrument_name="h", aggregation=ExplicitBucketHistogramAggregation(_MS_BUCKETS))
    provider = MeterProvider(metric_readers=[reader], views=[view])
    h = provider.get_meter("sdk").create_histogram("h")
    for v in values:
        h.record(v)
    data = reader.get_metrics_data()
    provider.shutdown()
    assert data is not None
    point = data.resource_metrics[0].scope_metrics[0].metrics[0].data.data_points[0]
    assert isinstance(point, HistogramDataPoint)
    return point


def test_rpc_durations_report_deltas_and_totals_per_reader_like_the_sdk() -> None:
    durations = RpcDurations()
    delta = InMemoryReader(durations, AggregationTemporality.DELTA)
    total = InMemoryReader(durations, AggregationTemporality.CUMULATIVE)
    provider = MeterProvider(metric_readers=[delta.sdk, total.sdk])
    try:
        # As in Metrics: observable instruments make every collection non-empty (our points ride on it).
        provider.get_meter("other").create_observable_gauge("up", [lambda _: [Observation(1)]])
        get = durations.series({"rpc.method": "GetKey", "rpc.grpc.status_code": 0})
        for ms in (0.1, 0.3, 7.0):  # 0.1 is a bucket's inclusive upper bound
            get.add(ms)
        durations.record(2.0, {"rpc.method": "SetKey", "rpc.grpc.status_code": 0})
        get.add(float("nan"))  # ignored, as the SDK does
        get.add(-1.0)
        (first,) = [p for p in _points(delta) if _method(p) == "GetKey"]
        assert (first.count, first.sum, first.min, first.max) == (3, pytest.approx(7.4), 0.1, 7.0)
        assert first.bucket_counts == _sdk_point([0.1, 0.3, 7.0]).bucket_counts
        assert first.explicit_bounds == _sdk_point([1.0]).explicit_bounds
        get.add(50.0)
        (second,) = [p for p in _points(delta) if _method(p) == "GetKey"]
        assert (second.count, second.min, second.max) == (1, 50.0, 50.0)  # this interval only
        assert second.start_time_unix_nano == first.time_unix_nano
        assert _points(delta) == []  # nothing new: no point, as the SDK's delta histograms
        points = {_method(p): p for p in _points(total)}
        assert (points["GetKey"].count, points["GetKey"].min, points["GetKey"].max) == (4, 0.1, 50.0)
        assert points["SetKey"].count == 1
        again = {_method(p): p for p in _points(total)}
        assert (
            again["GetKey"].count == 4
            and again["GetKey"].start_time_unix_nano == points["GetKey"].start_time_unix_nano
        )
    finally:
        provider.shutdown()


def _prometheus_lines(registry) -> list[str]:
    from prometheus_client import generate_latest

    return [
        line
        for line in generate_latest(registry).decode().splitlines()
        if "rpc_server_duration" in line and "_created" not in line
    ]


def test_rpc_durations_on_prometheus_read_as_the_exporter_writes_an_sdk_histogram() -> None:
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import CollectorRegistry

    values = {("GetKey", 0): [0.1, 0.3, 7.0, 40_000.0], ("SetKey", 5): [2.0]}
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    durations = RpcDurations()
    ours.register(PrometheusRpcDurations(durations))
    reader = PrometheusMetricReader(registry=theirs)
    view = View(
        instrument_name="rpc.server.duration", aggregation=ExplicitBucketHistogramAggregation(_MS_BUCKETS)
    )
    provider = MeterProvider(metric_readers=[reader], views=[view])
    try:
        sdk = provider.get_meter(SCOPE.name, SCOPE.version).create_histogram(
            RpcDurations.name, unit=RpcDurations.unit, description=RpcDurations.description
        )
        for _ in range(2):  # twice: both are cumulative
            for (method, code), samples in values.items():
                attrs: dict[str, str | int] = {
                    "rpc.service": "voltorch.v1.StateService",
                    "rpc.method": method,
                    "rpc.grpc.status_code": code,
                }
                for v in samples:
                    durations.record(v, attrs)
                    sdk.record(v, attrs)
            expected = _prometheus_lines(theirs)
            assert expected and _prometheus_lines(ours) == expected
    finally:
        provider.shutdown()


# -- the span built while nothing exports -----------------------------------------------------------


@pytest.mark.parametrize(
    "traceparent, tracestate",
    [
        ("", ""),
        ("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", ""),
        ("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03", "vendor=x,other=y"),
    ],
)
def test_the_dropped_span_is_what_the_sdk_would_have_built(traceparent: str, tracestate: str) -> None:
    sdk = TracerProvider(sampler=telemetry._RecordWhileExporting()).get_tracer("t")
    parent = telemetry.context_from(traceparent, tracestate) if traceparent else otel_context.Context()
    telemetry.install()
    assert not telemetry.recording()
    span = telemetry.unsampled_span(parent)
    assert span is not None and not span.is_recording()
    ours = span.get_span_context()
    theirs = sdk.start_span("x", context=parent).get_span_context()
    assert not ours.is_remote and ours.is_valid and ours.span_id != theirs.span_id
    assert (ours.trace_flags, ours.trace_state) == (theirs.trace_flags, theirs.trace_state)
    if traceparent:
        assert ours.trace_id == theirs.trace_id == int(traceparent.split("-")[1], 16)
    else:
        assert ours.trace_id != theirs.trace_id


class _CountingIds(RandomIdGenerator):
    def __init__(self) -> None:
        self.drawn = 0

    def generate_span_id(self) -> int:
        self.drawn += 1
        return super().generate_span_id()


def test_the_dropped_span_draws_its_ids_only_when_read(monkeypatch: pytest.MonkeyPatch) -> None:
    telemetry.install()
    assert telemetry._own_ids is not None  # the provider is ours: the shortcut applies
    ids = _CountingIds()
    monkeypatch.setattr(telemetry, "_own_ids", ids)
    span = telemetry.unsampled_span(otel_context.Context())
    assert span is not None and ids.drawn == 0  # an RPC that never reads its ids draws none
    with ThreadPoolExecutor(8) as pool:  # first read from many threads at once: one draw, one answer
        seen = {(c.trace_id, c.span_id) for c in pool.map(lambda _: span.get_span_context(), range(64))}
    assert len(seen) == 1 and ids.drawn == 1
    assert span.get_span_context().is_valid and ids.drawn == 1


def test_a_callers_trace_continues_into_events_when_nothing_exports(
    client: voltorch.Client, server: VoltorchServer
) -> None:
    assert not telemetry.recording()
    caller = trace.get_tracer("voltorch-tests")
    with caller.start_as_current_span("caller") as span:
        client.state.set("fast/traced", 1)
    trace_id = format(span.get_span_context().trace_id, "032x")
    (changed,) = [e for e in server.runtime.events.read_after(0, 1000) if e.data.get("key") == "fast/traced"]
    assert changed.trace_id == trace_id
    assert changed.span_id != format(span.get_span_context().span_id, "016x")  # the server's own span


def test_no_shortcut_while_spans_are_recorded(spans) -> None:
    assert telemetry.recording()
    assert telemetry.unsampled_span(otel_context.Context()) is None  # the tracer and its sampler decide


@pytest.mark.parametrize(
    "name",
    ["voltorch.coordination.duration", "gen_ai.client.operation.duration", "gen_ai.client.token.usage"],
)
def test_a_plain_histogram_on_prometheus_reads_as_the_exporter_writes_the_sdks(name: str) -> None:
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import CollectorRegistry, generate_latest

    ours, theirs = CollectorRegistry(), CollectorRegistry()
    plain = plain_histograms()[name]
    ours.register(PrometheusHistogram(plain))
    reader = PrometheusMetricReader(registry=theirs)
    provider = MeterProvider(metric_readers=[reader], views=_views())
    try:
        sdk = provider.get_meter(SCOPE.name, SCOPE.version).create_histogram(
            plain.name, unit=plain.unit, description=plain.description
        )
        for v, mode in ((0.004, "sequential"), (0.2, "sequential"), (42.0, "parallel"), (900.0, "parallel")):
            plain.record(v, {"status": "completed", "mode": mode})
            sdk.record(v, {"status": "completed", "mode": mode})
        family = name.replace(".", "_")

        def lines(registry: CollectorRegistry) -> list[str]:
            text = generate_latest(registry).decode()
            return [ln for ln in text.splitlines() if family in ln and "_created" not in ln]

        assert lines(theirs) and lines(ours) == lines(theirs)
    finally:
        provider.shutdown()
