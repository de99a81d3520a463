"""The system as a whole on the wire: health (overall and per component), recorded errors, metric values
with their history, and a trace's entries.

The SDK reads answers into these types; the server writes its watcher's health, error records, metric
points and series as they are (the ...Like protocols: times as datetimes or epoch seconds, statuses and
kinds as their names), giving apart what it keeps elsewhere (the cluster's members, the collection
interval). Health statuses keep their upper-case names ("HEALTHY"), metric kinds their lower-case ones
("counter"), as the SDK has always shown them. A trace entry's event is mapped by the events side:
trace_entry_pb takes it as a message and trace_entry_from_pb gives it back as one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, cast

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from ..v1 import events_pb2
from ..v1 import orchestrator_pb2 as pb
from ._enums import EnumTable
from ._executions import Time
from ._members import Member, member_from_pb, member_pb
from ._values import from_duration, from_struct, to_datetime, to_duration, to_struct, to_timestamp

# "UNSPECIFIED" (not checked yet, or disabled) is a status the SDK shows: it is in this table.
HEALTH_STATUSES: dict[str, pb.HealthStatus] = {
    v.name.removeprefix("HEALTH_STATUS_"): cast(pb.HealthStatus, v.number)
    for v in cast(EnumTypeWrapper, pb.HealthStatus).DESCRIPTOR.values
}
_HEALTH_NAMES: dict[int, str] = {n: name for name, n in HEALTH_STATUSES.items()}
METRIC_KINDS = EnumTable.of(pb.MetricKind)  # gauge, counter, histogram


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


# -- what the writers read ------------------------------------------------------------------------------


class ErrorRecordLike(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def component(self) -> str: ...
    @property
    def code(self) -> str: ...
    @property
    def message(self) -> str: ...
    @property
    def trace_id(self) -> str: ...
    @property
    def span_id(self) -> str: ...
    @property
    def correlation_id(self) -> str: ...
    @property
    def time(self) -> Time: ...
    @property
    def details(self) -> dict[str, Any]: ...


class ComponentHealthLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def enabled(self) -> bool: ...
    @property
    def message(self) -> str: ...
    @property
    def last_check_time(self) -> Time: ...
    @property
    def check_latency(self) -> float: ...
    @property
    def error_count(self) -> int: ...
    @property
    def restart_count(self) -> int: ...
    @property
    def consecutive_failures(self) -> int: ...
    @property
    def last_error(self) -> ErrorRecordLike | None: ...
    @property
    def start_time(self) -> Time: ...
    @property
    def details(self) -> Mapping[str, str]: ...


class HealthLike(Protocol):
    @property
    def status(self) -> str: ...
    @property
    def components(self) -> Sequence[ComponentHealthLike]: ...
    @property
    def uptime(self) -> float: ...
    @property
    def version(self) -> str: ...
    @property
    def start_time(self) -> Time: ...
    @property
    def active_workflows(self) -> int: ...
    @property
    def queued_workflows(self) -> int: ...
    @property
    def registered_agents(self) -> int: ...
    @property
    def connected_workers(self) -> int: ...
    @property
    def error_count(self) -> int: ...
    @property
    def last_error(self) -> ErrorRecordLike | None: ...


class HistogramSummaryLike(Protocol):
    @property
    def count(self) -> int: ...
    @property
    def sum(self) -> float: ...
    @property
    def min(self) -> float: ...
    @property
    def max(self) -> float: ...
    @property
    def p50(self) -> float: ...
    @property
    def p95(self) -> float: ...
    @property
    def p99(self) -> float: ...


class MetricLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def unit(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def attributes(self) -> Mapping[str, str]: ...
    @property
    def value(self) -> float: ...
    @property
    def histogram(self) -> HistogramSummaryLike | None: ...
    @property
    def time(self) -> Time: ...


class MetricSampleLike(Protocol):
    @property
    def time(self) -> Time: ...
    @property
    def value(self) -> float: ...
    @property
    def histogram(self) -> HistogramSummaryLike | None: ...


class MetricSeriesLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def attributes(self) -> Mapping[str, str]: ...
    @property
    def samples(self) -> Sequence[MetricSampleLike]: ...


class MetricsLike(Protocol):
    @property
    def metrics(self) -> Sequence[MetricLike]: ...
    @property
    def history(self) -> Sequence[MetricSeriesLike]: ...
    @property
    def collect_time(self) -> Time: ...
    @property
    def retention(self) -> float: ...


# -- writers and readers --------------------------------------------------------------------------------


def error_record_pb(e: ErrorRecordLike) -> pb.ErrorRecord:
    """`details` is always written (an empty Struct when there are none)."""
    return pb.ErrorRecord(
        id=e.id,
        component=e.component,
        code=e.code,
        message=e.message,
        trace_id=e.trace_id,
        span_id=e.span_id,
        correlation_id=e.correlation_id,
        time=to_timestamp(e.time),
        details=to_struct(e.details),
    )


def error_record_from_pb(m: pb.ErrorRecord) -> ErrorRecord:
    return ErrorRecord(
        id=m.id,
        component=m.component,
        code=m.code,
        message=m.message,
        trace_id=m.trace_id,
        span_id=m.span_id,
        correlation_id=m.correlation_id,
        time=to_datetime(m.time, m.HasField("time")),
        details=from_struct(m.details),
    )


def _status_name(number: int) -> str:
    return _HEALTH_NAMES.get(number, "UNSPECIFIED")


def component_health_pb(c: ComponentHealthLike) -> pb.ComponentHealth:
    return pb.ComponentHealth(
        name=c.name,
        status=HEALTH_STATUSES[c.status],
        enabled=c.enabled,
        message=c.message,
        last_check_time=to_timestamp(c.last_check_time),
        check_latency=to_duration(c.check_latency),
        error_count=c.error_count,
        restart_count=c.restart_count,
        consecutive_failures=c.consecutive_failures,
        last_error=None if c.last_error is None else error_record_pb(c.last_error),
        start_time=to_timestamp(c.start_time),
        details=c.details,
    )


def component_health_from_pb(m: pb.ComponentHealth) -> ComponentHealth:
    return ComponentHealth(
        name=m.name,
        status=_status_name(m.status),
        enabled=m.enabled,
        message=m.message,
        last_check_time=to_datetime(m.last_check_time, m.HasField("last_check_time")),
        check_latency=from_duration(m.check_latency),
        error_count=m.error_count,
        restart_count=m.restart_count,
        consecutive_failures=m.consecutive_failures,
        last_error=error_record_from_pb(m.last_error) if m.HasField("last_error") else None,
        start_time=to_datetime(m.start_time, m.HasField("start_time")),
        details=dict(m.details),
    )


def health_pb(h: HealthLike, *, members: Sequence[Member], replica_id: str) -> pb.GetHealthResponse:
    """`members`, `replica_id`: the SDK's h.members and h.replica_id; the server's from its cluster."""
    return pb.GetHealthResponse(
        status=HEALTH_STATUSES[h.status],
        components=[component_health_pb(c) for c in h.components],
        uptime=to_duration(h.uptime),
        version=h.version,
        start_time=to_timestamp(h.start_time),
        active_workflows=h.active_workflows,
        queued_workflows=h.queued_workflows,
        registered_agents=h.registered_agents,
        connected_workers=h.connected_workers,
        error_count=h.error_count,
        last_error=None if h.last_error is None else error_record_pb(h.last_error),
        members=[member_pb(m) for m in members],
        replica_id=replica_id,
    )


def health_from_pb(m: pb.GetHealthResponse) -> Health:
    return Health(
        status=_status_name(m.status),
        components=[component_health_from_pb(c) for c in m.components],
        uptime=from_duration(m.uptime),
        version=m.version,
        start_time=to_datetime(m.start_time, m.HasField("start_time")),
        active_workflows=m.active_workflows,
        queued_workflows=m.queued_workflows,
        registered_agents=m.registered_agents,
        connected_workers=m.connected_workers,
        error_count=m.error_count,
        last_error=error_record_from_pb(m.last_error) if m.HasField("last_error") else None,
        members=[member_from_pb(x) for x in m.members],
        replica_id=m.replica_id,
    )


def histogram_pb(h: HistogramSummaryLike | None) -> pb.HistogramSummary | None:
    if h is None:
        return None
    return pb.HistogramSummary(
        count=h.count, sum=h.sum, min=h.min, max=h.max, p50=h.p50, p95=h.p95, p99=h.p99
    )


def histogram_from_pb(m: pb.HistogramSummary) -> HistogramSummary:
    return HistogramSummary(m.count, m.sum, m.min, m.max, m.p50, m.p95, m.p99)


def metric_pb(p: MetricLike) -> pb.MetricValue:
    """A kind other than counter or histogram is a gauge."""
    return pb.MetricValue(
        name=p.name,
        description=p.description,
        unit=p.unit,
        kind=METRIC_KINDS.numbers.get(p.kind, pb.METRIC_KIND_GAUGE),
        attributes=p.attributes,
        value=p.value,
        histogram=histogram_pb(p.histogram),
        time=to_timestamp(p.time),
    )


def metric_from_pb(m: pb.MetricValue) -> Metric:
    return Metric(
        name=m.name,
        description=m.description,
        unit=m.unit,
        kind=METRIC_KINDS.names.get(m.kind, "unspecified"),
        attributes=dict(m.attributes),
        value=m.value,
        histogram=histogram_from_pb(m.histogram) if m.HasField("histogram") else None,
        time=to_datetime(m.time, m.HasField("time")),
    )


def metric_series_pb(s: MetricSeriesLike) -> pb.MetricSeries:
    return pb.MetricSeries(
        name=s.name,
        attributes=s.attributes,
        samples=[
            pb.MetricSample(time=to_timestamp(x.time), value=x.value, histogram=histogram_pb(x.histogram))
            for x in s.samples
        ],
    )


def metric_series_from_pb(m: pb.MetricSeries) -> MetricSeries:
    return MetricSeries(
        m.name,
        dict(m.attributes),
        [
            MetricSample(
                to_datetime(x.time, x.HasField("time")),
                x.value,
                histogram_from_pb(x.histogram) if x.HasField("histogram") else None,
            )
            for x in m.samples
        ],
    )


def metrics_pb(r: MetricsLike, *, collection_interval: float) -> pb.GetMetricsResponse:
    """`collection_interval`: the SDK's r.collection_interval, the server's report.interval."""
    return pb.GetMetricsResponse(
        metrics=[metric_pb(p) for p in r.metrics],
        history=[metric_series_pb(s) for s in r.history],
        collect_time=to_timestamp(r.collect_time),
        collection_interval=to_duration(collection_interval),
        retention=to_duration(r.retention),
    )


def metrics_from_pb(m: pb.GetMetricsResponse) -> Metrics:
    return Metrics(
        metrics=[metric_from_pb(x) for x in m.metrics],
        history=[metric_series_from_pb(s) for s in m.history],
        collect_time=to_datetime(m.collect_time, m.HasField("collect_time")),
        collection_interval=from_duration(m.collection_interval),
        retention=from_duration(m.retention),
    )


def trace_entry_pb(entry: ErrorRecordLike | events_pb2.Event) -> pb.TraceEntry:
    """An event comes already as its message (the events side maps it), an error as it is."""
    if isinstance(entry, events_pb2.Event):
        return pb.TraceEntry(event=entry)
    return pb.TraceEntry(error=error_record_pb(entry))


def trace_entry_from_pb(m: pb.TraceEntry) -> ErrorRecord | events_pb2.Event:
    return m.event if m.HasField("event") else error_record_from_pb(m.error)
