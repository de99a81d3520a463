"""The coordination engine's agent registry: registering, redefining and removing agents,
their live status and statistics, the built-in team, and remote worker sessions (Connect)."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from ..._ids import new_id
from ...agents.base import Agent, AgentTask, CancelSignal, FunctionAgent, ToolSpec
from ...agents.limiter import Limiters
from ...agents.llm import LlmDefaults, LlmSettings
from ...agents.llm_clients import LlmCalls
from ...agents.remote import ProgressMsg, RemoteAgent, WorkerHello, WorkerSession
from ...config import Config
from ...errors import AlreadyExists, FailedPrecondition, InvalidArgument
from ...storage import Tx
from ..events import EventLog, NewEvent
from ..shared import Component, decode_token, encode_token, fitting, wire_bytes
from ..shared import page_size as checked_page_size
from ._agents import (
    BUILTIN_LABEL,
    BUILTIN_TEAM,
    AgentState,
    check_capabilities,
    check_definition,
    check_labels,
    check_max_concurrency,
    check_tools,
    make_runtime,
)
from ._dispatch import Dispatcher
from ._journal import Journal, RunTable
from ._model import (
    AGENT_KINDS,
    AGENT_STATUSES,
    MAX_CONCURRENCY,
    AgentInfo,
    agent_not_found,
    check_name,
    require_id,
)
from ._runs import SOURCE
from ._store_port import CoordinationPort

log = logging.getLogger("voltorch.coordination")


def _registered_meanwhile(agent_id: str) -> AlreadyExists:
    return AlreadyExists(
        f"agent {agent_id!r} was just registered through another replica; retry",
        reason="AGENT_EXISTS",
        metadata={"agent_id": agent_id},
    )


class AgentRegistry:
    """The agents: their definitions (persisted), runtimes and live state, and the sessions of remote
    workers. Changes happen in journal transactions and end with a dispatch (an agent that appears or
    gains a capability may take queued work)."""

    def __init__(
        self,
        store: CoordinationPort,
        events: EventLog,
        journal: Journal,
        runs: RunTable,
        agents: dict[str, AgentState],
        dispatcher: Dispatcher,
        config: Config,
        llm_defaults: LlmDefaults,
        limiters: Limiters,
        observed: Component,
        *,
        llm_calls: LlmCalls | None = None,
        shared: bool = False,
    ):
        """`limiters`: the LLM endpoint limiters every LLM agent's runtime takes its permits from;
        `llm_calls`: where their HTTP calls run (None: each agent's own threads).
        `shared`: other replicas use the same database; their agent changes are followed (follow())."""
        self.store = store
        self.events = events
        self.journal = journal
        self.runs = runs
        self.agents = agents
        self.dispatcher = dispatcher
        self.config = config
        self.llm_defaults = llm_defaults
        self.limiters = limiters
        self.llm_calls = llm_calls
        self.observed = observed
        self.attached: dict[str, Agent] = {}  # function-agent runtimes, kept across stop()/start()
        self.loaded = False
        self.shared = shared
        self.me = journal.owner
        self.live: set[str] = set()  # the other replicas alive (members heartbeating), when shared

    def _tagged(self, data: dict[str, Any]) -> dict[str, Any]:
        """An agent event's data with the replica that wrote it, when shared (followers skip their own)."""
        return {**data, "replica": self.me} if self.shared else data

    def load(self) -> None:
        defs = [AgentState.from_row(r) for r in self.store.agent_rows()]
        stale = [a for a in defs if self.shared and a.session_replica == self.me]
        if stale:  # sessions of this replica before it restarted: none is open now
            with self.journal.txn() as (tx, _):
                for a in stale:
                    self.store.set_session_replica(tx, a.id, "", was=self.me)
                    a.session_replica = ""
        with self.journal.lock:
            if self.loaded:
                return
            for a in defs:
                self._place(self._add(a))
            self.loaded = True

    def _place(self, a: AgentState) -> None:
        """Where a remote worker's session is, as this replica sees it. Engine lock held."""
        sr = a.session_replica
        a.elsewhere = sr if a.kind == "remote" and sr != self.me and sr in self.live else ""

    def set_live(self, live: set[str]) -> bool:
        """The other replicas now alive; True when a worker became reachable through one of them. A worker
        whose replica is dead counts as disconnected."""
        with self.journal.lock:
            self.live = live - {self.me}
            reachable = False
            for a in self.agents.values():
                before = a.elsewhere
                self._place(a)
                reachable = reachable or (a.elsewhere != "" and a.elsewhere != before)
            return reachable

    def follow(self, agent_ids: set[str]) -> None:
        """Take agents registered, changed, connected or removed through other replicas: their rows are
        read as they stand now (an event only says which agent to read), then what they free is dispatched."""
        with self.journal.txn() as (tx, after):
            for agent_id in sorted(agent_ids):
                row = self.store.agent_row(tx, agent_id)
                state = self.agents.get(agent_id)
                if row is None:
                    if state is not None:
                        self._remove(tx, after, state, "agent unregistered")
                    continue
                stored = AgentState.from_row(row)
                if state is None:
                    state = self._add(stored)
                elif stored.kind != state.kind or stored.llm != state.llm:
                    if state.runtime is not None and state.kind != "function":
                        after.calls.append(state.runtime.close)
                    state.refresh(stored)
                    state.runtime = (
                        self.attached.get(agent_id)
                        if stored.kind == "function"
                        else self._runtime(stored.kind, stored.llm)
                    )
                else:
                    state.refresh(stored)
                session = getattr(state.runtime, "session", None)
                if session is not None and state.session_replica != self.me:
                    where = state.session_replica or "another replica"
                    after.calls.append(
                        partial(session.close, f"replaced by a newer connection on {where}", "replaced")
                    )
                self._place(state)
            self.dispatcher.dispatch(tx, after)

    def _remove(self, tx: Tx, after: Any, state: AgentState, reason: str) -> None:
        """Take an agent out of the registry; its running tasks go back to the queue. Engine lock held."""
        for run in list(self.runs.live.values()):
            for unit in list(run.units.values()):
                if unit.agent_id == state.id:
                    self.dispatcher.requeue(tx, after, unit, state, reason, record=False)
        del self.agents[state.id]
        self.attached.pop(state.id, None)
        if state.runtime is not None:
            after.calls.append(state.runtime.close)

    def _runtime(self, kind: str, llm: LlmSettings | None) -> Agent | None:
        return make_runtime(
            kind, llm, self.llm_defaults, self.observed.metrics, self.limiters, self.llm_calls
        )

    def _add(self, a: AgentState) -> AgentState:
        """Put a stored agent in the registry with its runtime. Engine lock held."""
        a.runtime = self.attached.get(a.id) if a.kind == "function" else self._runtime(a.kind, a.llm)
        self.agents[a.id] = a
        return a

    def _known(self, tx: Tx, agent_id: str) -> AgentState | None:
        """The agent, also when another replica sharing the database registered it since this one loaded
        the registry (its row is read, locked, and added here). Engine lock held."""
        state = self.agents.get(agent_id)
        if state is None:
            row = self.store.agent_row(tx, agent_id)
            if row is not None:
                state = self._add(AgentState.from_row(row))
        return state

    def register_builtin_agents(self) -> list[AgentInfo]:
        """Register the built-in team (idempotent): LLM agents when the OpenAI key variable is set, else
        offline agents. An existing built-in agent of the other kind (or another concurrency) is redefined,
        statistics kept."""
        kind = "llm" if os.environ.get(self.config.openai_api_key_env) else "offline"
        llm = LlmSettings() if kind == "llm" else None
        # On an LLM endpoint the endpoint's limiter governs how many calls run at once, not the agent.
        concurrency = (
            min(MAX_CONCURRENCY, max(self.config.builtin_agent_concurrency, self.config.llm_max_in_flight))
            if kind == "llm"
            else self.config.builtin_agent_concurrency
        )
        out = []
        for agent_id, name, caps in BUILTIN_TEAM:
            with self.journal.lock:
                existing = self.agents.get(agent_id)
            if existing is not None and (
                (existing.kind == kind and existing.max_concurrency == concurrency)
                or existing.labels.get(BUILTIN_LABEL) != "true"
            ):
                out.append(existing.info())
                continue
            try:
                out.append(
                    self.register_agent(
                        agent_id,
                        kind=kind,
                        name=name,
                        capabilities=caps,
                        max_concurrency=concurrency,
                        llm=llm,
                        labels={BUILTIN_LABEL: "true"},
                        replace=existing is not None,
                    )
                )
            except AlreadyExists:  # another replica starting together registered it first: take theirs
                with self.journal.txn() as (tx, _):
                    known = self._known(tx, agent_id)
                if known is not None:
                    out.append(known.info())
        return out

    def register_agent(
        self,
        agent_id: str = "",
        *,
        kind: str,
        capabilities: tuple[str, ...] | list[str] = (),
        name: str = "",
        max_concurrency: int = 0,
        llm: LlmSettings | None = None,
        labels: dict[str, str] | None = None,
        replace: bool = False,
        runtime: Agent | Callable[[AgentTask, CancelSignal], Any] | None = None,
        tools: tuple[ToolSpec, ...] = (),
    ) -> AgentInfo:
        """Register (or with replace=True redefine, statistics kept) an agent. Kind "function" is an
        in-process agent: give `runtime`, an Agent or a callable fn(task, cancel) -> str | dict."""
        self.dispatcher.require_running()
        agent_id = agent_id or new_id("agent")
        caps, max_c, llm, labels = check_definition(
            agent_id, kind, capabilities, max_concurrency, llm, labels, name
        )
        tools = check_tools(tools)
        if kind == "function":
            if runtime is None:
                raise InvalidArgument("runtime", "a function agent needs a runtime (an Agent or a callable)")
            rt: Agent | None = runtime if isinstance(runtime, Agent) else FunctionAgent(runtime)
        elif runtime is not None:
            raise InvalidArgument("runtime", f"only function agents take a runtime (kind is {kind})")
        else:
            rt = None
        with self.journal.txn() as (tx, after):
            old = self._known(tx, agent_id)
            if old is not None and not replace:
                raise AlreadyExists(
                    f"agent {agent_id!r} already exists; pass replace to redefine it",
                    reason="AGENT_EXISTS",
                    metadata={"agent_id": agent_id},
                )
            if old is None:
                state = AgentState(agent_id, name or agent_id, kind, caps, max_c, llm, labels, time.time())
                state.tools = tools
                state.runtime = rt or self._runtime(kind, llm)
                if not self.store.insert_agent(tx, state):
                    raise _registered_meanwhile(agent_id)
                self.agents[agent_id] = state
                event = "agent.registered"
            else:
                state = old
                kind_changed = old.kind != kind
                if rt is not None or kind_changed or kind == "llm":
                    previous = old.runtime
                    state.runtime = rt or self._runtime(kind, llm)
                    if previous is not None and previous is not state.runtime:
                        after.calls.append(previous.close)
                state.name, state.kind, state.capabilities = name or agent_id, kind, caps
                state.max_concurrency, state.llm, state.labels = max_c, llm, labels
                state.tools = tools
                self.store.update_agent_definition(tx, state)
                event = "agent.updated"
            if kind == "function":
                self.attached[agent_id] = state.runtime  # type: ignore[assignment]  # a function agent always has one
            else:
                self.attached.pop(agent_id, None)
            self.journal.emit(
                tx,
                event,
                self._tagged(
                    {"agent_id": agent_id, "kind": kind, "capabilities": list(caps), "max_concurrency": max_c}
                ),
            )
            self.dispatcher.dispatch(tx, after)
            info = state.info()
        return info

    def unregister_agent(self, agent_id: str, *, force: bool = False) -> AgentInfo:
        """Remove an agent. While it runs tasks: FailedPrecondition, or with force its tasks are
        cancelled and re-dispatched (to another agent when they were selected; a task that named this
        agent fails)."""
        require_id(agent_id, "agent_id")
        self.dispatcher.require_running()
        with self.journal.txn() as (tx, after):
            state = self.agents.get(agent_id)
            if state is None:
                raise agent_not_found(agent_id, "agent_id")
            if state.load > 0 and not force:
                raise FailedPrecondition(
                    f"agent {agent_id!r} is running {state.load} task(s); pass force to cancel and re-dispatch them",
                    reason="AGENT_BUSY",
                )
            info = state.info()
            self._remove(tx, after, state, "agent unregistered")
            self.store.delete_agent(tx, agent_id)
            self.journal.emit(
                tx, "agent.unregistered", self._tagged({"agent_id": agent_id, "kind": state.kind})
            )
            self.dispatcher.dispatch(tx, after)
        return info

    def update_capabilities(
        self, agent_id: str, capabilities: tuple[str, ...] | list[str], mode: str = "replace"
    ) -> AgentInfo:
        """mode: "replace" | "add" | "remove". Applies to the next selection."""
        require_id(agent_id, "agent_id")
        self.dispatcher.require_running()
        caps = check_capabilities(tuple(capabilities), "capabilities")
        if mode not in ("replace", "add", "remove"):
            raise InvalidArgument(
                "mode",
                f"unknown capability update mode {mode!r}; use replace, add or remove",
                reason="ENUM_VALUE_INVALID",
            )
        with self.journal.txn() as (tx, after):
            state = self.agents.get(agent_id)
            if state is None:
                raise agent_not_found(agent_id, "agent_id")
            if mode == "replace":
                new = caps
            elif mode == "add":
                new = state.capabilities + tuple(c for c in caps if c not in state.capabilities)
            else:
                new = tuple(c for c in state.capabilities if c not in caps)
            check_capabilities(new, "capabilities")
            state.capabilities = new
            self.store.update_agent_definition(tx, state)
            self.journal.emit(
                tx, "agent.updated", self._tagged({"agent_id": agent_id, "capabilities": list(new)})
            )
            self.dispatcher.dispatch(tx, after)
            return state.info()

    def get_agent(self, agent_id: str) -> AgentInfo:
        require_id(agent_id, "agent_id")
        with self.journal.lock:
            state = self.agents.get(agent_id)
            if state is None:
                raise agent_not_found(agent_id, "agent_id")
            return state.info()

    def list_agents(
        self,
        *,
        capabilities: tuple[str, ...] | list[str] = (),
        status: str = "",
        kind: str = "",
        page_size: int = 0,
        page_token: str = "",
    ) -> tuple[list[AgentInfo], str]:
        """Agents ordered by id with live status and statistics, filtered, paged."""
        caps = check_capabilities(tuple(capabilities), "capabilities")
        if status and status not in AGENT_STATUSES:
            raise InvalidArgument("status", f"unknown agent status {status!r}", reason="ENUM_VALUE_INVALID")
        if kind and kind not in AGENT_KINDS:
            raise InvalidArgument("kind", f"unknown agent kind {kind!r}", reason="ENUM_VALUE_INVALID")
        size = checked_page_size(page_size)
        query = {"capabilities": list(caps), "status": status, "kind": kind}
        after_id = decode_token(page_token, query) or ""
        with self.journal.lock:
            infos = [
                a.info()
                for aid, a in sorted(self.agents.items())
                if aid > after_id and (not kind or a.kind == kind) and all(c in a.capabilities for c in caps)
            ]
        if status:
            infos = [i for i in infos if i.status == status]
        page = infos[: fitting(_weight(i) for i in infos[:size])]  # ends early once its agents pass ~1 MiB
        token = encode_token(query, page[-1].id) if len(infos) > len(page) else ""
        return page, token

    def connect_worker(self, hello: WorkerHello) -> WorkerSession:
        """A worker's Connect stream said hello: register/refresh the remote agent and open a session.
        An older session of the same agent is closed (kind "replaced")."""
        self.dispatcher.require_running()
        agent_id = hello.agent_id or new_id("worker")
        check_name(agent_id, "hello.agent_id")
        caps = check_capabilities(tuple(hello.capabilities), "hello.capabilities")
        max_c = check_max_concurrency(hello.max_concurrency, "hello.max_concurrency")
        labels = check_labels(hello.labels, "hello.labels")
        tools = check_tools(hello.tools, "hello.tools")
        if len(hello.name) > 256:
            raise InvalidArgument("hello.name", "at most 256 characters")
        session = WorkerSession(agent_id, on_close=self._worker_closed, on_progress=self._worker_progress)
        with self.journal.txn() as (tx, after):
            state = self._known(tx, agent_id)
            if state is not None and state.kind != "remote":
                raise FailedPrecondition(
                    f"agent {agent_id!r} is a {state.kind} agent, not a remote worker",
                    reason="AGENT_KIND_MISMATCH",
                )
            if state is None:
                state = AgentState(
                    agent_id, hello.name or agent_id, "remote", caps, max_c, None, labels, time.time()
                )
                state.runtime = RemoteAgent()
                state.tools = tools
                if not self.store.insert_agent(tx, state):
                    raise _registered_meanwhile(agent_id)
                self.agents[agent_id] = state
                self.journal.emit(
                    tx,
                    "agent.registered",
                    self._tagged(
                        {
                            "agent_id": agent_id,
                            "kind": "remote",
                            "capabilities": list(caps),
                            "max_concurrency": max_c,
                        }
                    ),
                )
            else:
                state.capabilities, state.max_concurrency = caps, max_c
                state.name = hello.name or state.name
                state.labels = labels or state.labels
                state.tools = tools or state.tools
                self.store.update_agent_definition(tx, state)
            runtime = state.runtime
            assert isinstance(runtime, RemoteAgent)
            old = runtime.session
            runtime.session = session
            state.last_seen = time.time()
            if self.shared:
                self.store.set_session_replica(tx, agent_id, self.me)
                state.session_replica, state.elsewhere = self.me, ""
            if old is not None:
                after.calls.append(
                    lambda: old.close("replaced by a newer connection of the same agent", "replaced")
                )
            self.journal.emit(
                tx,
                "agent.connected",
                self._tagged(
                    {"agent_id": agent_id, "session_id": session.id, "sdk_version": hello.sdk_version}
                ),
            )
            self.dispatcher.dispatch(tx, after)
        return session

    def _worker_closed(self, session: WorkerSession) -> None:
        if not self.dispatcher.running:
            return
        with self.journal.txn() as (tx, after):
            state = self.agents.get(session.agent_id)
            if (
                state is None
                or not isinstance(state.runtime, RemoteAgent)
                or state.runtime.session is not session
            ):
                return
            state.runtime.session = None
            if self.shared and state.session_replica == self.me:
                self.store.set_session_replica(tx, state.id, "", was=self.me)
                state.session_replica = ""
            self.journal.emit(
                tx,
                "agent.disconnected",
                self._tagged(
                    {"agent_id": session.agent_id, "session_id": session.id, "reason": session.close_reason}
                ),
            )
            self.dispatcher.dispatch(tx, after)

    def _worker_progress(self, session: WorkerSession, msg: ProgressMsg) -> None:
        coordination_id = msg.task_id.rsplit(":", 1)[0]
        with self.journal.lock:
            run = self.runs.live.get(coordination_id)
        if run is None:
            return
        data = {
            "coordination_id": run.id,
            "task_id": msg.task_id,
            "attempt": msg.attempt,
            "agent_id": session.agent_id,
            "message": msg.message[:4096],
            "fraction": msg.fraction,
            "details": msg.details,
        }
        self.events.publish(
            NewEvent(
                type="coordination.task.progress",
                source=SOURCE,
                data=data,
                correlation_id=run.correlation_id,
                priority=run.priority,
                traceparent=run.traceparent,
            )
        )

    def heartbeat_settings(self) -> tuple[float, float]:
        """(interval, timeout) that workers are told in their welcome."""
        return self.config.worker_heartbeat_interval, self.config.worker_heartbeat_timeout

    def check_heartbeats(self, timeout: float) -> None:
        now = time.monotonic()
        with self.journal.lock:
            sessions = [
                a.runtime.session
                for a in self.agents.values()
                if isinstance(a.runtime, RemoteAgent) and a.runtime.session is not None
            ]
        for s in sessions:
            if now - s.last_seen > timeout:
                s.close(
                    f"no message for {now - s.last_seen:.1f}s (heartbeat timeout {timeout:g}s)", "timeout"
                )


def _weight(a: AgentInfo) -> int:
    """Roughly what an agent weighs in a ListAgents answer: its free-form parts (64 labels of 1 KiB, its
    tools' schemas, an LLM prompt) can make one 100 kB and more."""
    text = [a.name, *a.capabilities, *a.labels.keys(), *a.labels.values()]
    text += [f"{t.name}{t.description}{json.dumps(t.parameters)}" for t in a.tools]
    if a.llm is not None:
        text.append(a.llm.system_prompt)
    if a.last_error is not None:
        text.append(a.last_error.message)
    return 256 + sum(wire_bytes(t) + 4 for t in text)
