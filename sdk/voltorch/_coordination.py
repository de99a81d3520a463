"""client.coordination: agents (register, list with live status and statistics) and coordinations
(request in any mode, get / wait, cancel, list)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any, TypeVar

from voltorch.v1 import coordination_pb2 as pb
from voltorch.v1 import coordination_pb2_grpc

from ._rpc import call, new_request_id, pages
from .wire import (
    AGENT_KINDS,
    AGENT_STATUSES,
    CAPABILITY_UPDATE_MODES,
    COORDINATION_MODES,
    COORDINATION_STATUSES,
    Agent,
    Condition,
    Coordination,
    LlmSettings,
    Priority,
    ToolSpec,
    agent_from_pb,
    condition_pb,
    coordination_from_pb,
    llm_pb,
    to_duration,
    to_struct,
    tool_pb,
)

Seconds = float | timedelta

_MAX_LONG_POLL = 55.0


E = TypeVar("E", bound=int)


def _enum(table: dict[str, E], value: str, what: str) -> E | None:
    if not value:
        return None  # unset: the field's 0, UNSPECIFIED
    try:
        return table[value.lower()]
    except KeyError:
        raise ValueError(f"unknown {what} {value!r}; use one of {', '.join(table)}") from None


class CoordinationClient:
    def __init__(self, stub: coordination_pb2_grpc.CoordinationServiceStub, timeout: float | None):
        self.stub = stub
        self.timeout = timeout

    # -- agents ---------------------------------------------------------------------------------

    def register_agent(
        self,
        agent_id: str = "",
        *,
        kind: str = "offline",
        capabilities: Sequence[str] = (),
        name: str = "",
        max_concurrency: int = 0,
        llm: LlmSettings | None = None,
        labels: dict[str, str] | None = None,
        replace: bool = False,
        tools: Sequence[ToolSpec] = (),
    ) -> Agent:
        """Register an agent ("llm", "offline" or "remote" — remote ones stay offline until a Worker
        connects with that id). replace=True redefines an existing one, keeping its statistics. `tools`
        are functions it offers to tool-calling LLM agents (LlmSettings.tools names them)."""
        req = pb.RegisterAgentRequest(
            agent_id=agent_id,
            name=name,
            kind=_enum(AGENT_KINDS.numbers, kind, "agent kind"),
            capabilities=list(capabilities),
            max_concurrency=max_concurrency,
            labels=labels or {},
            replace=replace,
            tools=[tool_pb(t) for t in tools],
        )
        if llm is not None:
            req.llm.CopyFrom(llm_pb(llm))
        return agent_from_pb(call(self.stub.RegisterAgent, req, timeout=self.timeout).agent)

    def unregister_agent(self, agent_id: str, *, force: bool = False) -> Agent:
        req = pb.UnregisterAgentRequest(agent_id=agent_id, force=force)
        return agent_from_pb(call(self.stub.UnregisterAgent, req, timeout=self.timeout).agent)

    def update_capabilities(
        self, agent_id: str, capabilities: Sequence[str], *, mode: str = "replace"
    ) -> Agent:
        """mode: "replace", "add" or "remove"."""
        req = pb.UpdateCapabilitiesRequest(
            agent_id=agent_id,
            capabilities=list(capabilities),
            mode=_enum(CAPABILITY_UPDATE_MODES.numbers, mode, "mode"),
        )
        return agent_from_pb(call(self.stub.UpdateCapabilities, req, timeout=self.timeout).agent)

    def get_agent(self, agent_id: str) -> Agent:
        req = pb.GetAgentRequest(agent_id=agent_id)
        return agent_from_pb(call(self.stub.GetAgent, req, timeout=self.timeout).agent)

    def list_agents(
        self, *, capabilities: Sequence[str] = (), status: str = "", kind: str = "", page_size: int = 0
    ) -> Iterator[Agent]:
        """Agents ordered by id with live status and statistics (all pages)."""

        def fetch(token: str) -> tuple[list[Agent], str]:
            req = pb.ListAgentsRequest(
                capabilities=list(capabilities),
                status=_enum(AGENT_STATUSES.numbers, status, "agent status"),
                kind=_enum(AGENT_KINDS.numbers, kind, "agent kind"),
                page_size=page_size,
                page_token=token,
            )
            resp = call(self.stub.ListAgents, req, timeout=self.timeout)
            return [agent_from_pb(a) for a in resp.agents], resp.next_page_token

        return pages(fetch)

    # -- coordinations --------------------------------------------------------------------------

    def submit(
        self,
        task: str,
        *,
        mode: str = "sequential",
        source_agent_id: str = "",
        target_agent_id: str = "",
        agent_ids: Sequence[str] = (),
        required_capabilities: Sequence[str] = (),
        context: dict[str, Any] | None = None,
        priority: Priority | int | str | None = None,
        timeout: Seconds | None = None,
        condition: Condition | None = None,
        correlation_id: str = "",
        request_id: str = "",
        max_agents: int = 0,
    ) -> tuple[Coordination, bool]:
        """Queue a coordination; returns it (status "queued") and whether request_id matched an
        earlier request (then nothing new was queued)."""
        req = pb.RequestCoordinationRequest(
            request_id=new_request_id(request_id),
            source_agent_id=source_agent_id,
            target_agent_id=target_agent_id,
            agent_ids=list(agent_ids),
            required_capabilities=list(required_capabilities),
            mode=_enum(COORDINATION_MODES.numbers, mode, "mode"),
            task=task,
            context=to_struct(context),
            priority=Priority.of(priority).pb,
            correlation_id=correlation_id,
            max_agents=max_agents,
        )
        if timeout is not None:
            req.timeout.CopyFrom(to_duration(timeout))
        if condition is not None:
            req.condition.CopyFrom(condition_pb(condition))
        resp = call(self.stub.RequestCoordination, req, timeout=self.timeout)
        return coordination_from_pb(resp.coordination), resp.existing

    def request(self, task: str, **kwargs: Any) -> Coordination:
        """Queue a coordination (see submit for the arguments); returns at once."""
        return self.submit(task, **kwargs)[0]

    def run(self, task: str, *, wait_timeout: Seconds | None = None, **kwargs: Any) -> Coordination:
        """Request a coordination and wait until it ends (or wait_timeout passes)."""
        return self.wait(self.request(task, **kwargs).id, wait_timeout)

    def get(self, coordination_id: str, *, wait: Seconds | None = None) -> Coordination:
        """The coordination; with `wait` (<= 60 s) the server long-polls until it is terminal."""
        req = pb.GetCoordinationRequest(coordination_id=coordination_id)
        deadline = self.timeout
        if wait:
            req.wait_timeout.CopyFrom(to_duration(wait))
            seconds = wait.total_seconds() if isinstance(wait, timedelta) else float(wait)
            deadline = seconds + (self.timeout or 10.0)
        return coordination_from_pb(call(self.stub.GetCoordination, req, timeout=deadline).coordination)

    def wait(self, coordination_id: str, timeout: Seconds | None = None) -> Coordination:
        """Block until the coordination is terminal or `timeout` passes; return its state either way."""
        limit = (
            None
            if timeout is None
            else time.monotonic()
            + (timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout))
        )
        while True:
            remaining = _MAX_LONG_POLL if limit is None else min(_MAX_LONG_POLL, limit - time.monotonic())
            c = self.get(coordination_id, wait=max(remaining, 0.001))
            if c.done or (limit is not None and time.monotonic() >= limit):
                return c

    def cancel(self, coordination_id: str, reason: str = "") -> Coordination:
        req = pb.CancelCoordinationRequest(coordination_id=coordination_id, reason=reason)
        return coordination_from_pb(
            call(self.stub.CancelCoordination, req, timeout=self.timeout).coordination
        )

    def list(
        self, *, status: str = "", agent_id: str = "", correlation_id: str = "", page_size: int = 0
    ) -> Iterator[Coordination]:
        """Coordinations newest first (all pages)."""

        def fetch(token: str) -> tuple[list[Coordination], str]:
            req = pb.ListCoordinationsRequest(
                status=_enum(COORDINATION_STATUSES.numbers, status, "status"),
                agent_id=agent_id,
                correlation_id=correlation_id,
                page_size=page_size,
                page_token=token,
            )
            resp = call(self.stub.ListCoordinations, req, timeout=self.timeout)
            return [coordination_from_pb(c) for c in resp.coordinations], resp.next_page_token

        return pages(fetch)
