"""CoordinationService: proto <-> CoordinationEngine, and the remote worker stream (Connect)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import grpc
from voltorch import wire
from voltorch.v1 import coordination_pb2 as pb
from voltorch.v1 import coordination_pb2_grpc

from ..agents.remote import WorkerSession
from ..auth import may_direct_llm_calls, parse_tokens
from ..components.coordination import CoordinationEngine
from ..errors import Aborted, InvalidArgument, PermissionDenied, Unavailable, VoltorchError
from ._auth import caller_role
from ._convert import duration_to_seconds
from ._coordination_pb import (
    agent_pb,
    coordination_pb,
    hello_from_pb,
    llm_from_pb,
    request_from_pb,
    server_message_pb,
    tools_from_pb,
    welcome_pb,
    worker_message_from_pb,
)
from ._wire import enum_name

MAX_WAIT = 60.0
POLL_SECONDS = 0.25  # how soon a worker stream notices a cancelled client or a stopping server


class CoordinationServicer(coordination_pb2_grpc.CoordinationServiceServicer):
    def __init__(self, engine: CoordinationEngine, tokens: dict[str, str] | None = None):
        self.engine = engine
        self.tokens = tokens or {}

    # -- agents ---------------------------------------------------------------------------------

    def RegisterAgent(
        self, request: pb.RegisterAgentRequest, context: grpc.ServicerContext
    ) -> pb.RegisterAgentResponse:
        kind = enum_name(wire.AGENT_KINDS.names, request.kind, "kind")
        if not kind:
            raise InvalidArgument(
                "kind", "an agent kind is required (LLM, OFFLINE or REMOTE)", reason="FIELD_REQUIRED"
            )
        if kind == "function":
            raise InvalidArgument(
                "kind", "function agents are registered in-process only", reason="ENUM_VALUE_INVALID"
            )
        if self.tokens and (request.llm.base_url or request.llm.api_key_env):
            role = caller_role(self.tokens, context)
            if not may_direct_llm_calls(role):
                field = "llm.base_url" if request.llm.base_url else "llm.api_key_env"
                raise PermissionDenied(
                    f"role {role!r} may not set {field}: only an admin chooses where an LLM agent's calls go"
                    " and which server variable is their key (the server's defaults need neither)"
                )
        info = self.engine.register_agent(
            request.agent_id,
            kind=kind,
            capabilities=tuple(request.capabilities),
            name=request.name,
            max_concurrency=request.max_concurrency,
            llm=llm_from_pb(request.llm) if request.HasField("llm") else None,
            labels=dict(request.labels),
            replace=request.replace,
            tools=tools_from_pb(request.tools),
        )
        return pb.RegisterAgentResponse(agent=agent_pb(info))

    def UnregisterAgent(
        self, request: pb.UnregisterAgentRequest, context: grpc.ServicerContext
    ) -> pb.UnregisterAgentResponse:
        info = self.engine.unregister_agent(request.agent_id, force=request.force)
        return pb.UnregisterAgentResponse(agent=agent_pb(info))

    def UpdateCapabilities(
        self, request: pb.UpdateCapabilitiesRequest, context: grpc.ServicerContext
    ) -> pb.UpdateCapabilitiesResponse:
        mode = wire.CAPABILITY_UPDATE_MODES.names.get(request.mode, "replace" if not request.mode else None)
        if mode is None:
            raise InvalidArgument(
                "mode", f"unknown capability update mode {request.mode}", reason="ENUM_VALUE_INVALID"
            )
        info = self.engine.update_capabilities(request.agent_id, tuple(request.capabilities), mode)
        return pb.UpdateCapabilitiesResponse(agent=agent_pb(info))

    def GetAgent(self, request: pb.GetAgentRequest, context: grpc.ServicerContext) -> pb.GetAgentResponse:
        return pb.GetAgentResponse(agent=agent_pb(self.engine.get_agent(request.agent_id)))

    def ListAgents(
        self, request: pb.ListAgentsRequest, context: grpc.ServicerContext
    ) -> pb.ListAgentsResponse:
        agents, token = self.engine.list_agents(
            capabilities=tuple(request.capabilities),
            status=enum_name(wire.AGENT_STATUSES.names, request.status, "status"),
            kind=enum_name(wire.AGENT_KINDS.names, request.kind, "kind"),
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListAgentsResponse(agents=[agent_pb(a) for a in agents], next_page_token=token)

    # -- coordinations --------------------------------------------------------------------------

    def RequestCoordination(
        self, request: pb.RequestCoordinationRequest, context: grpc.ServicerContext
    ) -> pb.RequestCoordinationResponse:
        coordination, existing = self.engine.submit(request_from_pb(request))
        return pb.RequestCoordinationResponse(coordination=coordination_pb(coordination), existing=existing)

    def GetCoordination(
        self, request: pb.GetCoordinationRequest, context: grpc.ServicerContext
    ) -> pb.GetCoordinationResponse:
        wait = duration_to_seconds(request.wait_timeout, "wait_timeout")
        if wait:
            remaining = context.time_remaining()
            if remaining is not None:
                wait = min(wait, max(0.0, remaining - 0.05))
            c = self.engine.wait(request.coordination_id, min(wait, MAX_WAIT))
        else:
            c = self.engine.get(request.coordination_id)
        return pb.GetCoordinationResponse(coordination=coordination_pb(c))

    def CancelCoordination(
        self, request: pb.CancelCoordinationRequest, context: grpc.ServicerContext
    ) -> pb.CancelCoordinationResponse:
        c = self.engine.cancel(request.coordination_id, request.reason)
        return pb.CancelCoordinationResponse(coordination=coordination_pb(c))

    def ListCoordinations(
        self, request: pb.ListCoordinationsRequest, context: grpc.ServicerContext
    ) -> pb.ListCoordinationsResponse:
        items, token = self.engine.list(
            status=enum_name(wire.COORDINATION_STATUSES.names, request.status, "status"),
            agent_id=request.agent_id,
            correlation_id=request.correlation_id,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListCoordinationsResponse(
            coordinations=[coordination_pb(c) for c in items], next_page_token=token
        )

    # -- remote workers -------------------------------------------------------------------------

    def Connect(
        self, request_iterator: Iterator[pb.WorkerMessage], context: grpc.ServicerContext
    ) -> Iterator[pb.ServerMessage]:
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("message") != "hello":
            raise InvalidArgument(
                "hello", "the first message of a worker stream must be a WorkerHello", reason="FIELD_REQUIRED"
            )
        session = self.engine.connect_worker(hello_from_pb(first.hello))
        context.add_callback(lambda: session.close("stream ended", "disconnected"))
        failure: list[VoltorchError] = []
        threading.Thread(
            target=_read_worker,
            args=(request_iterator, session, failure),
            name=f"worker-{session.agent_id}",
            daemon=True,
        ).start()
        yield welcome_pb(session.agent_id, session.id, *self.engine.heartbeat_settings())
        while True:
            msg = session.next_message(POLL_SECONDS)
            if msg is not None:
                yield server_message_pb(msg)
                continue
            if session.closed.is_set():
                break
            if not context.is_active():
                session.close("client went away", "disconnected")
                break
        if failure:
            raise failure[0]
        if session.close_kind == "replaced":
            raise Aborted(f"worker session ended: {session.close_reason}", reason="SESSION_REPLACED")
        if session.close_kind == "unregistered":
            raise Aborted(f"worker session ended: {session.close_reason}", reason="SESSION_UNREGISTERED")
        if session.close_kind == "timeout":
            raise Aborted(f"worker session ended: {session.close_reason}", reason="SESSION_TIMEOUT")
        if session.close_kind == "shutdown":
            raise Unavailable("the server is stopping; reconnect shortly", reason="SERVER_STOPPING")


def _read_worker(request_iterator: Any, session: WorkerSession, failure: list[VoltorchError]) -> None:
    """Feed the worker's messages to its session; a half-close is a graceful disconnect."""
    try:
        for m in request_iterator:
            if session.closed.is_set():
                return
            try:
                msg = worker_message_from_pb(m)
            except VoltorchError as exc:
                failure.append(exc)
                session.close(f"invalid message: {exc.message}", "invalid")
                return
            if msg is not None:
                session.receive(msg)
        session.close("worker closed the stream", "disconnected")
    except VoltorchError as exc:  # a message that failed the request checks (undecodable, bad time, …)
        failure.append(exc)
        session.close(f"invalid message: {exc.message}", "invalid")
    except grpc.RpcError:
        session.close("stream broken", "disconnected")
    except Exception as exc:  # never let a reader thread die silently with the session open
        session.close(f"stream failed: {type(exc).__name__}", "disconnected")


def register(server: grpc.Server, runtime) -> list[str]:
    coordination_pb2_grpc.add_CoordinationServiceServicer_to_server(
        CoordinationServicer(
            runtime.coordination, parse_tokens(runtime.config.auth_tokens, runtime.config.auth_tokens_file)
        ),
        server,
    )
    return ["voltorch.v1.CoordinationService"]
