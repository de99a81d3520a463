"""client.health(), components(), restart_component(), metrics(), errors(), trace(): the system as a whole."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from voltorch.v1 import events_pb2, orchestrator_pb2_grpc
from voltorch.v1 import orchestrator_pb2 as pb

from ._events import Event, event_from_pb
from ._rpc import call, pages
from .wire import (
    ComponentHealth,
    ErrorRecord,
    Health,
    HistogramSummary,
    Member,
    Metric,
    Metrics,
    MetricSample,
    MetricSeries,
    component_health_from_pb,
    error_record_from_pb,
    health_from_pb,
    metrics_from_pb,
    to_timestamp,
    trace_entry_from_pb,
)

__all__ = [
    "ComponentHealth",
    "ErrorRecord",
    "Health",
    "HistogramSummary",
    "Metric",
    "MetricSample",
    "MetricSeries",
    "Metrics",
    "OrchestratorClient",
    "Trace",
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


def _entry(x: ErrorRecord | events_pb2.Event) -> Event | ErrorRecord:
    return event_from_pb(x) if isinstance(x, events_pb2.Event) else x


class OrchestratorClient:
    def __init__(self, stub: orchestrator_pb2_grpc.OrchestratorServiceStub, timeout: float | None):
        self.stub = stub
        self.timeout = timeout

    def health(self, refresh: bool = False) -> Health:
        """Overall and per-component health; refresh=True runs every check now."""
        return health_from_pb(
            call(self.stub.GetHealth, pb.GetHealthRequest(refresh=refresh), timeout=self.timeout)
        )

    def members(self) -> list[Member]:
        """The cluster's members, alive and dead, as the answering replica sees them (all see the same)."""
        return self.health().members

    def components(self) -> list[ComponentHealth]:
        r = call(self.stub.ListComponents, pb.ListComponentsRequest(), timeout=self.timeout)
        return [component_health_from_pb(c) for c in r.components]

    def restart_component(self, name: str, reason: str = "") -> ComponentHealth:
        """Stop and start one component (admin); returns its health once it is back."""
        req = pb.RestartComponentRequest(name=name, reason=reason)
        return component_health_from_pb(call(self.stub.RestartComponent, req, timeout=self.timeout).component)

    def metrics(
        self, names: Sequence[str] = (), *, history: bool = False, since: datetime | float | None = None
    ) -> Metrics:
        """Current metric values (names or globs such as "voltorch.workflows.*"; empty = all), and with
        history=True their samples since `since` (default: everything retained)."""
        if isinstance(names, str):
            names = [names]
        req = pb.GetMetricsRequest(names=list(names), include_history=history, since=to_timestamp(since))
        return metrics_from_pb(call(self.stub.GetMetrics, req, timeout=self.timeout))

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
        return [error_record_from_pb(e) for e in r.errors], r.next_page_token

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
            entries=[_entry(trace_entry_from_pb(x)) for x in r.entries],
            trace_ids=list(r.trace_ids),
            correlation_ids=list(r.correlation_ids),
            components=list(r.components),
            truncated=r.truncated,
        )
