"""grpc.health.v1: the stock servicer (Check, Watch) plus List, which grpcio's leaves unimplemented
(it raises NotImplementedError: an INTERNAL answer to `grpcurl … Health/List`)."""

from __future__ import annotations

import threading

import grpc
from grpc_health.v1 import health, health_pb2

_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class HealthServicer(health.HealthServicer):
    """Keeps its own copy of what is set, to answer List: every service with its status."""

    def __init__(self) -> None:
        super().__init__()
        self._listed: dict[str, int] = {"": health_pb2.HealthCheckResponse.SERVING}
        self._listed_lock = threading.Lock()
        self._closing = False

    def set(self, service: str, status: int) -> None:
        with self._listed_lock:
            if self._closing:
                return  # the stock servicer ignores it too
            self._listed[service] = status
        super().set(service, status)

    def enter_graceful_shutdown(self) -> None:
        super().enter_graceful_shutdown()  # marks every service NOT_SERVING (through set)
        with self._listed_lock:
            self._closing = True
            for service in self._listed:
                self._listed[service] = _NOT_SERVING

    def List(
        self, request: health_pb2.HealthListRequest, context: grpc.ServicerContext
    ) -> health_pb2.HealthListResponse:
        with self._listed_lock:
            listed = dict(self._listed)
        return health_pb2.HealthListResponse(
            statuses={name: health_pb2.HealthCheckResponse(status=s) for name, s in listed.items()}
        )
