"""voltorch.Client: one channel, one typed sub-client per service, the raw stubs as an escape hatch."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace

import grpc

from voltorch.v1 import (
    coordination_pb2_grpc,
    events_pb2_grpc,
    orchestrator_pb2_grpc,
    state_pb2_grpc,
    workflows_pb2_grpc,
)

from ._coordination import CoordinationClient
from ._events import EventsClient
from ._metadata import MetadataInterceptor
from ._orchestrator import OrchestratorClient
from ._schedules import SchedulesClient
from ._state import StateClient
from ._targets import CHANNEL_OPTIONS, channel_target, service_config, split
from ._tracing import TraceContextInterceptor
from ._workflows import WorkflowsClient

DEFAULT_TARGET = "127.0.0.1:50051"


@dataclass(frozen=True)
class TLS:
    """TLS settings: PEM bytes. Give certificate_chain + private_key for mTLS."""

    root_certificates: bytes | None = None
    private_key: bytes | None = None
    certificate_chain: bytes | None = None
    server_name: str | None = None


class _TokenAuth(grpc.AuthMetadataPlugin):
    def __init__(self, token: str):
        self._token = token

    def __call__(self, context: grpc.AuthMetadataContext, callback: grpc.AuthMetadataPluginCallback) -> None:
        callback((("authorization", f"Bearer {self._token}"),), None)


class Client:
    """A connection to a voltorch server, or to the replicas of a cluster.

    >>> with voltorch.Client("127.0.0.1:50051") as client:
    ...     client.state.set("project.config", {"max_retries": 3})

    A cluster: `Client(["h1:50051", "h2:50051", "h3:50051"])`, the same as "h1:50051,h2:50051,h3:50051",
    or one DNS name with several addresses. Calls go round-robin to the replicas that are up; reads and
    idempotent writes are retried on another one when theirs goes away (UNAVAILABLE), and the stream
    iterators (events.subscribe, state.watch, workflows.watch) resume on another from where they were.

    Without a target, `$VOLTORCH_TARGET` (else 127.0.0.1:50051; a comma-separated list for a cluster);
    without a token, `$VOLTORCH_TOKEN` — the same variables the `voltorch` CLI reads, so a script and the
    CLI reach the same server.
    """

    def __init__(
        self,
        target: str | Sequence[str] | None = None,
        *,
        token: str | None = None,
        tls: TLS | bool | None = None,
        timeout: float | None = 30.0,
        options: list[tuple[str, object]] | None = None,
        interceptors: list[grpc.UnaryUnaryClientInterceptor] | None = None,
        tracing: bool = True,  # send the caller's OpenTelemetry trace context (W3C) with every call
    ):
        self.targets = split(target or os.environ.get("VOLTORCH_TARGET") or DEFAULT_TARGET)
        if token is None:
            token = os.environ.get("VOLTORCH_TOKEN") or None
        self.target = ",".join(self.targets)
        self.timeout = timeout
        target, authority = channel_target(self.targets)
        self.grpc_target = target  # what the channel dials: one address, or an ipv4:/ipv6: address list
        opts: list[tuple[str, object]] = [
            ("grpc.max_receive_message_length", 8 * 1024 * 1024),
            ("grpc.service_config", service_config()),
            *CHANNEL_OPTIONS,
        ]
        if authority:
            opts.append(("grpc.default_authority", authority))
        opts += options or []
        if tls:
            t = tls if isinstance(tls, TLS) else TLS()
            creds = grpc.ssl_channel_credentials(t.root_certificates, t.private_key, t.certificate_chain)
            if token:
                creds = grpc.composite_channel_credentials(
                    creds, grpc.metadata_call_credentials(_TokenAuth(token))
                )
            if t.server_name:
                opts.append(("grpc.ssl_target_name_override", t.server_name))
            channel = grpc.secure_channel(target, creds, options=opts)
        else:
            channel = grpc.insecure_channel(target, options=opts)
        chain = list(interceptors or [])
        if tracing:
            chain.insert(0, TraceContextInterceptor())
        if token and not tls:
            bearer = (("authorization", f"Bearer {token}"),)  # call credentials need TLS
            chain.append(MetadataInterceptor(lambda: bearer))
        self._raw_channel = channel
        self.channel = grpc.intercept_channel(channel, *chain) if chain else channel
        self.stubs = SimpleNamespace(
            state=state_pb2_grpc.StateServiceStub(self.channel),
            events=events_pb2_grpc.EventServiceStub(self.channel),
            coordination=coordination_pb2_grpc.CoordinationServiceStub(self.channel),
            workflows=workflows_pb2_grpc.WorkflowServiceStub(self.channel),
            orchestrator=orchestrator_pb2_grpc.OrchestratorServiceStub(self.channel),
        )
        self.state = StateClient(self.stubs.state, timeout)
        self.events = EventsClient(self.stubs.events, timeout)
        self.coordination = CoordinationClient(self.stubs.coordination, timeout)
        self.orchestrator = OrchestratorClient(self.stubs.orchestrator, timeout)
        self.workflows = WorkflowsClient(self.stubs.workflows, timeout)
        self.schedules = SchedulesClient(self.stubs.workflows, timeout)
        o = self.orchestrator  # the system calls, also reachable directly: client.health(), ...
        self.health, self.components, self.restart_component = o.health, o.components, o.restart_component
        self.metrics, self.errors, self.trace = o.metrics, o.errors, o.trace

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until the channel is connected (raises grpc.FutureTimeoutError)."""
        grpc.channel_ready_future(self._raw_channel).result(timeout=timeout)

    def close(self) -> None:
        self._raw_channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
