"""OrchestratorService: proto <-> the watcher and the error log, through voltorch.wire (their health, errors
and metrics written as they are); the grpc.health.v1 statuses it drives."""

from __future__ import annotations

from typing import Any

import grpc
from grpc_health.v1 import health_pb2
from voltorch import wire
from voltorch.v1 import orchestrator_pb2 as pb
from voltorch.v1 import orchestrator_pb2_grpc

from ..components.cluster import Cluster
from ..components.system import ErrorRecord, HealthStatus, Watcher, timeline
from ._convert import ts_to_float
from ._wire import to_wire
from .events import event_pb

_SERVICE_OF_COMPONENT = {
    "state": "voltorch.v1.StateService",
    "events": "voltorch.v1.EventService",
    "coordination": "voltorch.v1.CoordinationService",
    "workflows": "voltorch.v1.WorkflowService",
    "watcher": "voltorch.v1.OrchestratorService",
}


class OrchestratorServicer(orchestrator_pb2_grpc.OrchestratorServiceServicer):
    def __init__(self, runtime: Any):
        self.runtime = runtime
        self.watcher: Watcher = runtime.watcher
        self.cluster: Cluster = runtime.cluster

    def GetHealth(self, request: pb.GetHealthRequest, context: grpc.ServicerContext) -> pb.GetHealthResponse:
        h = self.watcher.health(refresh=request.refresh)
        members = [to_wire(m) for m in self.cluster.members()]
        return wire.health_pb(h, members=members, replica_id=self.cluster.id)

    def ListComponents(
        self, request: pb.ListComponentsRequest, context: grpc.ServicerContext
    ) -> pb.ListComponentsResponse:
        return pb.ListComponentsResponse(
            components=[wire.component_health_pb(c) for c in self.watcher.components_health()]
        )

    def RestartComponent(
        self, request: pb.RestartComponentRequest, context: grpc.ServicerContext
    ) -> pb.RestartComponentResponse:
        return pb.RestartComponentResponse(
            component=wire.component_health_pb(self.watcher.restart(request.name, request.reason))
        )

    def GetMetrics(
        self, request: pb.GetMetricsRequest, context: grpc.ServicerContext
    ) -> pb.GetMetricsResponse:
        since = ts_to_float(request.since) if request.HasField("since") else None
        r = self.watcher.metrics_report(request.names, include_history=request.include_history, since=since)
        return wire.metrics_pb(r, collection_interval=r.interval)

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
        return pb.ListErrorsResponse(errors=[wire.error_record_pb(e) for e in records], next_page_token=token)

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
                wire.trace_entry_pb(x if isinstance(x, ErrorRecord) else event_pb(x)) for x in t.entries
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
