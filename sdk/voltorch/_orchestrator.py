"""client.health(), components(), restart_component(), metrics(), errors(), trace(): the system as a whole."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from voltorch.v1 import orchestrator_pb2 as pb
from voltorch.v1 import orchestrator_pb2_grpc

from ._events import Event, event_from_pb
from ._rpc import call, pages
from .wire import Member, from_duration, from_struct, member_from_pb, to_datetime, to_timestamp


@dataclass(frozen=True)
class ErrorRecord:
    """An error recorded by a component or a failed RPC, with the trace it happened in."""

    id: str
    component: str
    code: str  # UPPER_SNAKE reason, e.g. "STEP_TIMEOUT"
    message: str
    trace_id: str
    span_id: str
    correlation_id: str
    time: datetime | None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ComponentHealth:
    name: str
    status: str  # "HEALTHY" | "DEGRADED" | "UNHEALTHY" | "UNSPECIFIED"
    enabled: bool
    message: str
    last_check_time: datetime | None
    check_latency: float  # seconds
    error_count: int
    restart_count: int
    consecutive_failures: int
    last_error: ErrorRecord | None
    start_time: datetime | None
    details: dict[str, str]


@dataclass(frozen=True)
class Health:
    status: str  # overall: UNHEALTHY if any component is, else DEGRADED if any is, else HEALTHY
    components: list[ComponentHealth]
    uptime: float  # seconds
    version: str
    start_time: datetime | None
    active_workflows: int
    queued_workflows: int
    registered_agents: int
    connected_workers: int
    error_count: int
    last_error: ErrorRecord | None
    # The cluster's members (with SQLite, the one server) and the id of the replica that answered.
    members: list[Member] = field(default_factory=list)
    replica_id: str = ""

    def component(self, name: str) -> ComponentHealth:
        for c in self.components:
            if c.name == name:
                return c
        raise KeyError(name)


@dataclass(frozen=True)
class HistogramSummary:
    count: int
    sum: float
    min: float
    max: float
    p50: float
    p95: float
    p99: float


@dataclass(frozen=True)
class Metric:
    name: str
    description: str
    unit: str
    kind: str  # "gauge" | "counter" | "histogram"
    attributes: dict[str, str]
    value: float  # gauge level, counter total, histogram count
    histogram: HistogramSummary | None
    time: datetime | None


@dataclass(frozen=True)
class MetricSample:
    time: datetime | None
    value: float
    histogram: HistogramSummary | None


@dataclass(frozen=True)
class MetricSeries:
    name: str
    attributes: dict[str, str]
    samples: list[MetricSample]


@dataclass(frozen=True)
class Metrics:
    metrics: list[Metric]
    history: list[MetricSeries]
    collect_time: datetime | None
    collection_interval: float
    retention: float

    def value(self, name: str, attributes: dict[str, Any] | None = None) -> float:
        """Sum of `name` over the attribute sets that include `attributes` (0 when absent)."""
        return sum(m.value for m in self.select(name, attributes))

    def select(self, name: str, attributes: dict[str, Any] | None = None) -> list[Metric]:
        """The values of `name` whose attributes include `attributes`, e.g. {"rpc.method": "SetKey"}."""
        want = {k: str(v) for k, v in (attributes or {}).items()}
        return [
            m
            for m in self.metrics
            if m.name == name and all(m.attributes.get(k) == v for k, v in want.items())
        ]


@dataclass(frozen=True)
class Trace:
    """One trace or correlation as a story: events and errors in causal order."""

    entries: list[Event | ErrorRecord]
    trace_ids: list[str]
    correlation_ids: list[str]
    components: list[str]
    truncated: bool

    @property
    def events(self) -> list[Event]:
        return [e for e in self.entries if isinstance(e, Event)]

    @property
    def errors(self) -> list[ErrorRecord]:
        return [e for e in self.entries if isinstance(e, ErrorRecord)]


def _status(value: int) -> str:
    return pb.HealthStatus.Name(value).removeprefix("HEALTH_STATUS_")


def _error(p: pb.ErrorRecord) -> ErrorRecord:
    return ErrorRecord(
        id=p.id,
        component=p.component,
        code=p.code,
        message=p.message,
        trace_id=p.trace_id,
        span_id=p.span_id,
        correlation_id=p.correlation_id,
        time=to_datetime(p.time, p.HasField("time")),
        details=from_struct(p.details),
    )


def _component(p: pb.ComponentHealth) -> ComponentHealth:
    return ComponentHealth(
        name=p.name,
        status=_status(p.status),
        enabled=p.enabled,
        message=p.message,
        last_check_time=to_datetime(p.last_check_time, p.HasField("last_check_time")),
        check_latency=from_duration(p.check_latency),
        error_count=p.error_count,
        restart_count=p.restart_count,
        consecutive_failures=p.consecutive_failures,
        last_error=_error(p.last_error) if p.HasField("last_error") else None,
        start_time=to_datetime(p.start_time, p.HasField("start_time")),
        details=dict(p.details),
    )


def _hist(p: pb.HistogramSummary, present: bool) -> HistogramSummary | None:
    if not present:
        return None
    return HistogramSummary(p.count, p.sum, p.min, p.max, p.p50, p.p95, p.p99)


def _metric(p: pb.MetricValue) -> Metric:
    return Metric(
        name=p.name,
        description=p.description,
        unit=p.unit,
        kind=pb.MetricKind.Name(p.kind).removeprefix("METRIC_KIND_").lower(),
        attributes=dict(p.attributes),
        value=p.value,
        histogram=_hist(p.histogram, p.HasField("histogram")),
        time=to_datetime(p.time, p.HasField("time")),
    )


class OrchestratorClient:
    def __init__(self, stub: orchestrator_pb2_grpc.OrchestratorServiceStub, timeout: float | None):
        self.stub = stub
        self.timeout = timeout

    def health(self, refresh: bool = False) -> Health:
        """Overall and per-component health; refresh=True runs every check now."""
        r = call(self.stub.GetHealth, pb.GetHealthRequest(refresh=refresh), timeout=self.timeout)
        return Health(
            status=_status(r.status),
            components=[_component(c) for c in r.components],
            uptime=from_duration(r.uptime),
            version=r.version,
            start_time=to_datetime(r.start_time, r.HasField("start_time")),
            active_workflows=r.active_workflows,
            queued_workflows=r.queued_workflows,
            registered_agents=r.registered_agents,
            connected_workers=r.connected_workers,
            error_count=r.error_count,
            last_error=_error(r.last_error) if r.HasField("last_error") else None,
            members=[member_from_pb(m) for m in r.members],
            replica_id=r.replica_id,
        )

    def members(self) -> list[Member]:
        """The cluster's members, alive and dead, as the answering replica sees them (all see the same)."""
        return self.health().members

    def components(self) -> list[ComponentHealth]:
        r = call(self.stub.ListComponents, pb.ListComponentsRequest(), timeout=self.timeout)
        return [_component(c) for c in r.components]

    def restart_component(self, name: str, reason: str = "") -> ComponentHealth:
        """Stop and start one component (admin); returns its health once it is back."""
        req = pb.RestartComponentRequest(name=name, reason=reason)
        return _component(call(self.stub.RestartComponent, req, timeout=self.timeout).component)

    def metrics(
        self, names: Sequence[str] = (), *, history: bool = False, since: datetime | float | None = None
    ) -> Metrics:
        """Current metric values (names or globs such as "voltorch.workflows.*"; empty = all), and with
        history=True their samples since `since` (default: everything retained)."""
        if isinstance(names, str):
            names = [names]
        req = pb.GetMetricsRequest(names=list(names), include_history=history, since=to_timestamp(since))
        r = call(self.stub.GetMetrics, req, timeout=self.timeout)
        return Metrics(
            metrics=[_metric(m) for m in r.metrics],
            history=[
                MetricSeries(
                    s.name,
                    dict(s.attributes),
                    [
                        MetricSample(
                            to_datetime(x.time), x.value, _hist(x.histogram, x.HasField("histogram"))
                        )
                        for x in s.samples
                    ],
                )
                for s in r.history
            ],
            collect_time=to_datetime(r.collect_time, r.HasField("collect_time")),
            collection_interval=from_duration(r.collection_interval),
            retention=from_duration(r.retention),
        )

    def errors_page(
        self,
        *,
        trace_id: str = "",
        correlation_id: str = "",
        component: str = "",
        code: str = "",
        since: datetime | float | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> tuple[list[ErrorRecord], str]:
        req = pb.ListErrorsRequest(
            trace_id=trace_id,
            correlation_id=correlation_id,
            component=component,
            code=code,
            since=to_timestamp(since),
            page_size=page_size,
            page_token=page_token,
        )
        r = call(self.stub.ListErrors, req, timeout=self.timeout)
        return [_error(e) for e in r.errors], r.next_page_token

    def errors(
        self,
        *,
        trace_id: str = "",
        correlation_id: str = "",
        component: str = "",
        code: str = "",
        since: datetime | float | None = None,
        page_size: int = 0,
    ) -> Iterator[ErrorRecord]:
        """Recorded errors, newest first, across pages; every given filter must match."""
        return pages(
            lambda tok: self.errors_page(
                trace_id=trace_id,
                correlation_id=correlation_id,
                component=component,
                code=code,
                since=since,
                page_size=page_size,
                page_token=tok,
            )
        )

    def trace(
        self, trace_id: str | None = None, *, correlation_id: str | None = None, max_entries: int = 0
    ) -> Trace:
        """Everything recorded for a trace id (32 hex) or a correlation id, in causal order."""
        if (trace_id is None) == (correlation_id is None):
            raise ValueError("trace needs exactly one of trace_id or correlation_id")
        req = pb.GetTraceRequest(max_entries=max_entries)
        if trace_id is not None:
            req.trace_id = trace_id
        else:
            req.correlation_id = correlation_id or ""
        r = call(self.stub.GetTrace, req, timeout=self.timeout)
        return Trace(
            entries=[event_from_pb(x.event) if x.HasField("event") else _error(x.error) for x in r.entries],
            trace_ids=list(r.trace_ids),
            correlation_ids=list(r.correlation_ids),
            components=list(r.components),
            truncated=r.truncated,
        )
