"""OrchestratorService: proto <-> the watcher and the error log; the grpc.health.v1 statuses it drives."""

from __future__ import annotations

from typing import Any, overload

import grpc
from grpc_health.v1 import health_pb2
from voltorch.v1 import orchestrator_pb2 as pb
from voltorch.v1 import orchestrator_pb2_grpc
from voltorch.wire import member_pb

from ..components.cluster import Cluster
from ..components.system import (
    COUNTER,
    HISTOGRAM,
    ComponentHealth,
    ErrorRecord,
    HealthStatus,
    HistogramSummary,
    MetricPoint,
    Watcher,
    timeline,
)
from ._convert import duration, py_to_struct, ts, ts_to_float
from ._wire import to_wire
from .events import event_pb

_STATUS = {
    HealthStatus.UNSPECIFIED: pb.HEALTH_STATUS_UNSPECIFIED,
    HealthStatus.HEALTHY: pb.HEALTH_STATUS_HEALTHY,
    HealthStatus.DEGRADED: pb.HEALTH_STATUS_DEGRADED,
    HealthStatus.UNHEALTHY: pb.HEALTH_STATUS_UNHEALTHY,
}
_KIND = {COUNTER: pb.METRIC_KIND_COUNTER, HISTOGRAM: pb.METRIC_KIND_HISTOGRAM}
_SERVICE_OF_COMPONENT = {
    "state": "voltorch.v1.StateService",
    "events": "voltorch.v1.EventService",
    "coordination": "voltorch.v1.CoordinationService",
    "workflows": "voltorch.v1.WorkflowService",
    "watcher": "voltorch.v1.OrchestratorService",
}


@overload
def error_pb(e: ErrorRecord) -> pb.ErrorRecord: ...
@overload
def error_pb(e: None) -> None: ...
def error_pb(e: ErrorRecord | None) -> pb.ErrorRecord | None:
    if e is None:
        return None
    return pb.ErrorRecord(
        id=e.id,
        component=e.component,
        code=e.code,
        message=e.message,
        trace_id=e.trace_id,
        span_id=e.span_id,
        correlation_id=e.correlation_id,
        time=ts(e.time),
        details=py_to_struct(e.details),
    )


def component_pb(c: ComponentHealth) -> pb.ComponentHealth:
    return pb.ComponentHealth(
        name=c.name,
        status=_STATUS[c.status],
        enabled=c.enabled,
        message=c.message,
        last_check_time=ts(c.last_check_time),
        check_latency=duration(c.check_latency),
        error_count=c.error_count,
        restart_count=c.restart_count,
        consecutive_failures=c.consecutive_failures,
        last_error=error_pb(c.last_error),
        start_time=ts(c.start_time),
        details=c.details,
    )


def _histogram_pb(h: HistogramSummary | None) -> pb.HistogramSummary | None:
    if h is None:
        return None
    return pb.HistogramSummary(
        count=h.count, sum=h.sum, min=h.min, max=h.max, p50=h.p50, p95=h.p95, p99=h.p99
    )


def _metric_pb(p: MetricPoint) -> pb.MetricValue:
    return pb.MetricValue(
        name=p.name,
        description=p.description,
        unit=p.unit,
        kind=_KIND.get(p.kind, pb.METRIC_KIND_GAUGE),
        attributes=p.attributes,
        value=p.value,
        histogram=_histogram_pb(p.histogram),
        time=ts(p.time),
    )


class OrchestratorServicer(orchestrator_pb2_grpc.OrchestratorServiceServicer):
    def __init__(self, runtime: Any):
        self.runtime = runtime
        self.watcher: Watcher = runtime.watcher
        self.cluster: Cluster = runtime.cluster

    def GetHealth(self, request: pb.GetHealthRequest, context: grpc.ServicerContext) -> pb.GetHealthResponse:
        h = self.watcher.health(refresh=request.refresh)
        return pb.GetHealthResponse(
            status=_STATUS[h.status],
            components=[component_pb(c) for c in h.components],
            uptime=duration(h.uptime),
            version=h.version,
            start_time=ts(h.start_time),
            active_workflows=h.active_workflows,
            queued_workflows=h.queued_workflows,
            registered_agents=h.registered_agents,
            connected_workers=h.connected_workers,
            error_count=h.error_count,
            last_error=error_pb(h.last_error),
            members=[member_pb(to_wire(m)) for m in self.cluster.members()],
            replica_id=self.cluster.id,
        )

    def ListComponents(
        self, request: pb.ListComponentsRequest, context: grpc.ServicerContext
    ) -> pb.ListComponentsResponse:
        return pb.ListComponentsResponse(
            components=[component_pb(c) for c in self.watcher.components_health()]
        )

    def RestartComponent(
        self, request: pb.RestartComponentRequest, context: grpc.ServicerContext
    ) -> pb.RestartComponentResponse:
        return pb.RestartComponentResponse(
            component=component_pb(self.watcher.restart(request.name, request.reason))
        )

    def GetMetrics(
        self, request: pb.GetMetricsRequest, context: grpc.ServicerContext
    ) -> pb.GetMetricsResponse:
        since = ts_to_float(request.since) if request.HasField("since") else None
        r = self.watcher.metrics_report(request.names, include_history=request.include_history, since=since)
        return pb.GetMetricsResponse(
            metrics=[_metric_pb(p) for p in r.metrics],
            history=[
                pb.MetricSeries(
                    name=s.name,
                    attributes=s.attributes,
                    samples=[
                        pb.MetricSample(time=ts(x.time), value=x.value, histogram=_histogram_pb(x.histogram))
                        for x in s.samples
                    ],
                )
                for s in r.history
            ],
            collect_time=ts(r.collect_time),
            collection_interval=duration(r.interval),
            retention=duration(r.retention),
        )

    def ListErrors(
        self, request: pb.ListErrorsRequest, context: grpc.ServicerContext
    ) -> pb.ListErrorsResponse:
        since = ts_to_float(request.since) if request.HasField("since") else None
        records, token = self.runtime.errors.list(
            trace_id=request.trace_id,
            correlation_id=request.correlation_id,
            component=request.component,
            code=request.code,
            since=since,
            size=request.page_size,
            token=request.page_token,
        )
        return pb.ListErrorsResponse(errors=[error_pb(e) for e in records], next_page_token=token)

    def GetTrace(self, request: pb.GetTraceRequest, context: grpc.ServicerContext) -> pb.GetTraceResponse:
        t = timeline(
            self.runtime.events,
            self.runtime.errors,
            trace_id=request.trace_id,
            correlation_id=request.correlation_id,
            max_entries=request.max_entries,
        )
        return pb.GetTraceResponse(
            entries=[
                pb.TraceEntry(error=error_pb(x))
                if isinstance(x, ErrorRecord)
                else pb.TraceEntry(event=event_pb(x))
                for x in t.entries
            ],
            trace_ids=t.trace_ids,
            correlation_ids=t.correlation_ids,
            components=t.components,
            truncated=t.truncated,
        )


def register(server: grpc.Server, runtime: Any) -> list[str]:
    orchestrator_pb2_grpc.add_OrchestratorServiceServicer_to_server(OrchestratorServicer(runtime), server)
    return ["voltorch.v1.OrchestratorService"]


def bind_health(health_servicer: Any, watcher: Watcher, service_names: list[str]) -> None:
    """Drive grpc.health.v1 from the watcher: "" = overall, each service by its component, each component
    by name. A service without a component (not built into this server) is reported SERVING."""

    def serving(status: HealthStatus) -> int:
        if status == HealthStatus.UNHEALTHY:
            return health_pb2.HealthCheckResponse.NOT_SERVING
        return health_pb2.HealthCheckResponse.SERVING

    components_of = {svc: comp for comp, svc in _SERVICE_OF_COMPONENT.items()}

    def sink(name: str, status: HealthStatus) -> None:
        health_servicer.set(name, serving(status))
        service = _SERVICE_OF_COMPONENT.get(name)
        if service:
            health_servicer.set(service, serving(status))

    watcher.sinks.append(sink)
    statuses = watcher.statuses()
    for service in service_names:
        if components_of.get(service) not in statuses:
            health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    for name, status in statuses.items():
        sink(name, status)
