"""The coordination engine: the agent registry, the priority queue, selection, the four modes,
timeouts, cancellation, remote workers and recovery after a restart.

How it runs. A coordination is a plan of slots (a named agent, or "" = selected by capability); each
slot becomes a unit of work that waits in one aging priority queue until an agent with free capacity
can take it. Every state change happens in one SQLite transaction together with its events, under
the database's writer lock and then the engine lock (always in that order; the engine lock is never
held while waiting for the database). Dispatch is a scan of the queue done inline by whichever
thread changed something (a request, a finished task, a connecting worker), in the same
transaction; agents are launched after commit — threaded agents on the engine's pool, remote
workers through their session. A timer thread enforces deadlines and worker heartbeats.

Lifecycle: start() loads agents, registers the built-in team and re-queues every queued or running
coordination from the database; stop() abandons in-flight work without finishing it, so the next
start() picks it up again (attempt numbers keep growing, so stale worker results are ignored).
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from .._ids import new_id
from ..agents._limiter import Limiters
from ..agents.base import (
    Agent,
)
from ..agents.llm import LlmDefaults, LlmSettings, limit_settings
from ..agents.remote import RemoteAgent
from ..config import Config
from ..errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from ..priority import Priority
from ..storage import Database, Tx
from ..telemetry import current_trace, trace_ids_from
from . import _coordination_store as store
from ._base import Component
from ._coordination_agents import (
    AgentState,
    check_capabilities,
)
from ._coordination_dispatch import Dispatcher
from ._coordination_model import (
    DEFAULT_PARALLEL_AGENTS,
    MAX_AGENTS_PARALLEL,
    MAX_CONTEXT_BYTES,
    MAX_TASK_CHARS,
    MAX_TIMEOUT,
    MODES,
    STATUSES,
    TERMINAL,
    AgentInfo,
    AgentResult,
    Candidate,
    Coordination,
    CoordinationCondition,
    CoordinationRequest,
    Selection,
    TaskError,
    agent_not_found,
    check_condition,
    check_json,
    check_name,
)
from ._coordination_registry import AgentRegistry
from ._coordination_runs import PREVIEW, SOURCE, After, Run, Unit, request_hash
from ._paging import decode_token, encode_token
from ._paging import page_size as checked_page_size
from ._queue import AgingQueue
from .events import EventLog, NewEvent

log = logging.getLogger("voltorch.coordination")

__all__ = [
    "AgentInfo",
    "AgentResult",
    "Candidate",
    "Coordination",
    "CoordinationCondition",
    "CoordinationEngine",
    "CoordinationRequest",
    "LlmSettings",
    "Selection",
    "TaskError",
]


class CoordinationEngine(AgentRegistry, Dispatcher, Component):
    """Agents and who does what. Thread-safe; every public method may be called from any thread."""

    name = "coordination"

    def __init__(
        self,
        db: Database,
        events: EventLog,
        config: Config | None = None,
        limiters: Limiters | None = None,
    ):
        """`limiters`: the server's LLM endpoint limiters, shared by its LLM agents (None: a private set
        from the config)."""
        self.db = db
        self.events = events
        self.config = config or Config()
        self.limiters = limiters if limiters is not None else Limiters(limit_settings(self.config))
        self.llm_defaults = LlmDefaults(
            model=self.config.openai_model,
            base_url=self.config.openai_base_url,
            api_key_env=self.config.openai_api_key_env,
            timeout=self.config.openai_timeout,
            max_retries=self.config.llm_max_retries,
        )
        self._lock = threading.RLock()
        self._agents: dict[str, AgentState] = {}
        self._attached: dict[str, Agent] = {}  # function-agent runtimes, kept across stop()/start()
        self._live: dict[str, Run] = {}
        self._queue: AgingQueue[Unit] = AgingQueue(max(self.config.coordination_aging_seconds, 1e-6))
        self._deadlines: list[tuple[float, str]] = []
        self._dispatch_seq = itertools.count(1)
        self._pool: ThreadPoolExecutor | None = None
        self._timer: threading.Thread | None = None
        self._wake = threading.Condition(threading.Lock())
        self._running = False
        self._generation = 0
        self._loaded = False

    def start(self) -> None:
        with self._lock:
            if self._running:
                return
            self._running = True
            self._generation += 1
            self._pool = ThreadPoolExecutor(max(1, self.config.agent_threads), thread_name_prefix="agent")
        self._load_agents()
        if self.config.builtin_agents:
            self.register_builtin_agents()
        self._recover()
        self._timer = threading.Thread(
            target=self._timer_loop, args=(self._generation,), name="coordination-timer", daemon=True
        )
        self._timer.start()

    def stop(self) -> None:
        with self._lock:
            if not self._running:
                return
            self._running = False
            self._generation += 1
            cancels = [u.cancel for r in self._live.values() for u in r.units.values() if u.cancel]
            sessions = [
                a.runtime.session
                for a in self._agents.values()
                if isinstance(a.runtime, RemoteAgent) and a.runtime.session
            ]
            runtimes = [a.runtime for a in self._agents.values() if a.runtime and a.kind != "function"]
            for r in self._live.values():
                r.done.set()  # wake waiters; they read the persisted state
            self._live.clear()
            self._queue = AgingQueue(self._queue.aging)
            self._deadlines.clear()
            self._agents.clear()
            self._loaded = False
            pool, self._pool = self._pool, None
        with self._wake:
            self._wake.notify_all()
        for c in cancels:
            c.set("server stopping")
        for s in sessions:
            s.close("server stopping", "shutdown")
        for rt in runtimes:
            rt.close()
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.join(timeout=2)

    def check(self) -> None:
        if not self._running:
            raise Unavailable("coordination engine is stopped")
        if self._timer is None or not self._timer.is_alive():
            raise Unavailable("coordination timer thread is not running")
        self.db.query_one("SELECT 1 FROM coordinations LIMIT 1")

    def _require_running(self) -> None:
        if not self._running:
            raise Unavailable("coordination engine is stopped; retry shortly", reason="COMPONENT_STOPPED")

    @contextmanager
    def _txn(self) -> Iterator[tuple[Tx, After]]:
        """A transaction with the engine lock held inside it; after-commit work runs unlocked."""
        after = After()
        with self.db.write() as tx, self._lock:
            yield tx, after
        self._run_after(after)

    def _run_after(self, after: After) -> None:
        if after.finished:
            with self._lock:
                for run in after.finished:
                    if self._live.get(run.id) is run:
                        del self._live[run.id]
        for run in after.finished:
            run.done.set()
        for signal, reason in after.cancels:
            signal.set(reason)
        for fn in after.calls:
            try:
                fn()
            except Exception:
                log.exception("closing an agent runtime failed")
        for unit, attempt, runtime, task in after.launches:
            self._launch(unit, attempt, runtime, task)

    def _emit(self, tx: Tx, type_: str, data: dict[str, Any], run: Run | None = None) -> None:
        if run is None:
            ev = NewEvent(type=type_, source=SOURCE, data=data)
        else:
            ev = NewEvent(
                type=type_,
                source=SOURCE,
                data=data,
                correlation_id=run.correlation_id,
                priority=run.priority,
                traceparent=run.traceparent,
            )
        self.events.append(tx, [ev])

    def request(self, req: CoordinationRequest) -> Coordination:
        """Validate, persist and queue a coordination; returns at once (status queued). Idempotent by
        request_id."""
        return self.submit(req)[0]

    def submit(self, req: CoordinationRequest) -> tuple[Coordination, bool]:
        """As request(), also saying whether request_id matched an earlier request (nothing new queued)."""
        self._require_running()
        priority, timeout, context_raw = self._check_request(req)
        now = time.time()
        cid = new_id("coord")
        digest = request_hash(req, priority, timeout)
        ids = trace_ids_from(req.traceparent) if req.traceparent else current_trace()
        with self._txn() as (tx, after):
            if req.request_id:
                row = tx.execute(
                    "SELECT id, request_hash FROM coordinations WHERE request_id = ?", (req.request_id,)
                ).fetchone()
                if row is not None:
                    if row["request_hash"] != digest:
                        raise AlreadyExists(
                            f"request_id {req.request_id!r} was used for a different request (coordination "
                            f"{row['id']})",
                            metadata={"coordination_id": row["id"], "field": "request_id"},
                        )
                    run = self._live.get(row["id"])
                    existing = run.snapshot(self._queue_position(run)) if run else None
                    return existing or self._read(row["id"]), True
            plan = self._plan(req)
            run = Run(
                id=cid,
                request_id=req.request_id,
                mode=req.mode,
                source=req.source_agent_id,
                requested_agent_ids=tuple(req.agent_ids),
                caps=tuple(req.required_capabilities),
                task=req.task,
                context=dict(req.context),
                priority=priority,
                timeout=timeout,
                deadline=now + timeout,
                condition=req.condition,
                correlation_id=req.correlation_id or cid,
                trace_id=ids.trace_id,
                traceparent=ids.traceparent,
                max_agents=req.max_agents,
                execution_id=req.execution_id,
                step_id=req.step_id,
                create_time=now,
                plan=plan,
                participants=list(plan),
                attempts=[0] * len(plan),
            )
            store.insert_coordination(
                tx,
                {
                    **run.row(),
                    "request_id": req.request_id,
                    "request_hash": digest,
                    "mode": run.mode,
                    "source_agent_id": run.source,
                    "target_agent_id": req.target_agent_id,
                    "requested_agent_ids": json.dumps(list(req.agent_ids)),
                    "plan": json.dumps(plan),
                    "required_capabilities": json.dumps(list(run.caps)),
                    "task": run.task,
                    "context": context_raw,
                    "priority": int(priority),
                    "timeout": timeout,
                    "deadline": run.deadline,
                    "condition": json.dumps(req.condition.to_dict()) if req.condition else None,
                    "correlation_id": run.correlation_id,
                    "trace_id": run.trace_id,
                    "traceparent": run.traceparent,
                    "max_agents": req.max_agents,
                    "execution_id": req.execution_id,
                    "step_id": req.step_id,
                    "create_time": now,
                },
            )
            self._emit(
                tx,
                "coordination.requested",
                {
                    "coordination_id": cid,
                    "mode": run.mode,
                    "task": run.task[:PREVIEW],
                    "source_agent_id": run.source,
                    "target_agent_id": req.target_agent_id,
                    "plan": plan,
                    "required_capabilities": list(run.caps),
                    "priority": priority.name.lower(),
                    "request_id": req.request_id,
                    "execution_id": req.execution_id,
                    "step_id": req.step_id,
                },
                run,
            )
            self._live[cid] = run
            self._schedule_deadline(run)
            self._start_units(run)
            snapshot = run.snapshot(self._queue_position(run))
            self._dispatch(tx, after)
        return snapshot, False

    def _check_request(self, req: CoordinationRequest) -> tuple[Priority, float, str]:
        """Validation that needs no agent registry; returns (priority, timeout, context JSON)."""
        if not isinstance(req.task, str) or not req.task.strip():
            raise InvalidArgument("task", "a task is required (the instruction for the agents)")
        if len(req.task) > MAX_TASK_CHARS:
            raise InvalidArgument("task", f"at most {MAX_TASK_CHARS} characters (got {len(req.task)})")
        if req.mode not in MODES:
            raise InvalidArgument("mode", f"unknown mode {req.mode!r}; use one of {', '.join(MODES)}")
        for fname in ("source_agent_id", "target_agent_id"):
            value = getattr(req, fname)
            if value:
                check_name(value, fname)
        if isinstance(req.agent_ids, str):
            raise InvalidArgument("agent_ids", "a list of agent ids, not one string")
        for i, a in enumerate(req.agent_ids):
            check_name(a, f"agent_ids[{i}]")
        check_capabilities(tuple(req.required_capabilities), "required_capabilities")
        if not isinstance(req.context, dict):
            raise InvalidArgument("context", "must be a JSON object")
        context_raw = check_json(req.context, "context", MAX_CONTEXT_BYTES)
        try:
            priority = Priority.of(req.priority)
        except ValueError:
            raise InvalidArgument("priority", f"unknown priority {req.priority!r}") from None
        timeout = req.timeout or self.config.coordination_timeout
        if req.timeout is not None and req.timeout < 0:
            raise InvalidArgument("timeout", "must not be negative")
        if timeout > MAX_TIMEOUT:
            raise InvalidArgument("timeout", f"at most 24 h (got {timeout:.0f} s)")
        if req.condition is not None:
            check_condition(req.condition)
        if len(req.request_id) > 128:
            raise InvalidArgument("request_id", "at most 128 characters")
        if len(req.correlation_id) > 256:
            raise InvalidArgument("correlation_id", "at most 256 characters")
        if not 0 <= req.max_agents <= MAX_AGENTS_PARALLEL:
            raise InvalidArgument(
                "max_agents", f"must be 0..{MAX_AGENTS_PARALLEL} (0 = {DEFAULT_PARALLEL_AGENTS})"
            )
        return priority, float(timeout), context_raw

    def _plan(self, req: CoordinationRequest) -> list[str]:
        """The slots of the mode (agent id, or "" = selected). Needs the engine lock."""
        src, tgt, ids, mode = req.source_agent_id, req.target_agent_id, list(req.agent_ids), req.mode
        caps = tuple(req.required_capabilities)
        if mode != "conditional" and req.condition is not None:
            raise InvalidArgument("condition", "only used in conditional mode")
        if mode in ("sequential", "conditional"):
            if ids:
                raise InvalidArgument(
                    "agent_ids", f"not used in {mode} mode; use source_agent_id/target_agent_id"
                )
            if src and src == tgt:
                raise InvalidArgument("target_agent_id", "must differ from source_agent_id")
        if mode == "sequential":
            plan = [a for a in (src, tgt) if a]
            if not tgt and (not src or caps):
                plan.append("")
        elif mode == "conditional":
            if not src:
                raise InvalidArgument("source_agent_id", "conditional mode needs a source agent")
            if req.condition is None:
                raise InvalidArgument("condition", "conditional mode needs a condition")
            plan = [src, tgt]
        elif mode == "parallel":
            if tgt:
                raise InvalidArgument(
                    "target_agent_id", "not used in parallel mode; list the agents in agent_ids"
                )
            if len(set(ids)) != len(ids):
                raise InvalidArgument("agent_ids", "an agent may appear only once")
            plan = ids or [""] * self._parallel_width(req)
        else:
            plan = [a for a in (src, *ids, tgt) if a]
            if len(plan) < 2:
                raise InvalidArgument(
                    "agent_ids",
                    "pipeline mode needs at least two agents (source_agent_id, agent_ids, target_agent_id)",
                )
        for fname, value in (("source_agent_id", src), ("target_agent_id", tgt)):
            if value and value not in self._agents:
                raise agent_not_found(value, fname)
        for i, a in enumerate(ids):
            if a not in self._agents:
                raise agent_not_found(a, f"agent_ids[{i}]")
        if "" in plan:
            named = {a for a in (src, *plan) if a}
            capable = [
                a
                for a in self._agents.values()
                if a.id not in named and all(c in a.capabilities for c in caps)
            ]
            if not capable:
                needs = f"capabilities {', '.join(caps)}" if caps else "any capability"
                raise FailedPrecondition(
                    f"no registered agent (other than those named) has {needs}",
                    reason="NO_CAPABLE_AGENT",
                    metadata={"required_capabilities": ",".join(caps)},
                )
        return plan

    def _parallel_width(self, req: CoordinationRequest) -> int:
        want = req.max_agents or DEFAULT_PARALLEL_AGENTS
        caps = tuple(req.required_capabilities)
        capable = [
            a
            for a in self._agents.values()
            if a.id != req.source_agent_id and all(c in a.capabilities for c in caps)
        ]
        online = [a for a in capable if a.connected]
        return max(1, min(want, len(online) or len(capable)))

    def get(self, coordination_id: str) -> Coordination:
        with self._lock:
            run = self._live.get(coordination_id)
            if run is not None:
                return run.final or run.snapshot(self._queue_position(run))
        return self._read(coordination_id)

    def _read(self, coordination_id: str) -> Coordination:
        row = store.get_row(self.db, coordination_id)
        if row is None:
            err = NotFound("coordination", coordination_id)
            err.metadata["field"] = "coordination_id"
            raise err
        return store.from_row(row)

    def wait(self, coordination_id: str, timeout: float | None = None) -> Coordination:
        """Block until the coordination is terminal or `timeout` passes; return its state either way."""
        with self._lock:
            run = self._live.get(coordination_id)
        if run is None:
            return self._read(coordination_id)
        run.done.wait(timeout)
        return self.get(coordination_id) if run.final is None else run.final

    def list(
        self,
        *,
        status: str = "",
        agent_id: str = "",
        correlation_id: str = "",
        page_size: int = 0,
        page_token: str = "",
    ) -> tuple[list[Coordination], str]:
        """Coordinations newest first, filtered, paged."""
        if status and status not in STATUSES:
            raise InvalidArgument("status", f"unknown status {status!r}; use one of {', '.join(STATUSES)}")
        size = checked_page_size(page_size)
        query = {"status": status, "agent_id": agent_id, "correlation_id": correlation_id}
        before = decode_token(page_token, query)
        rows = store.list_rows(
            self.db,
            status=status,
            agent_id=agent_id,
            correlation_id=correlation_id,
            before=before,
            limit=size + 1,
        )
        out = []
        with self._lock:
            for r in rows[:size]:
                run = self._live.get(r["id"])
                out.append(run.snapshot(self._queue_position(run)) if run else store.from_row(r))
        token = encode_token(query, rows[size - 1]["id"]) if len(rows) > size else ""
        return out, token

    def _queue_position(self, run: Run) -> int:
        if run.status != "queued":
            return 0
        seen: set[str] = set()
        for unit in self._queue:
            if unit.run.id not in seen:
                seen.add(unit.run.id)
                if unit.run is run:
                    return len(seen)
        return 0

    def details(self) -> dict[str, Any]:
        with self._lock:
            agents = list(self._agents.values())
            return {
                "queue_depth": len(self._queue),
                "active_coordinations": sum(1 for r in self._live.values() if not r.terminal),
                "registered_agents": len(agents),
                "connected_workers": sum(1 for a in agents if a.kind == "remote" and a.connected),
                "busy_agents": sum(1 for a in agents if a.load > 0),
            }

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def active_count(self) -> int:
        return sum(1 for r in self._live.values() if not r.terminal)

    def cancel(self, coordination_id: str, reason: str = "") -> Coordination:
        """Cancel a queued or running coordination (in-flight agent tasks are told to stop). Cancelling
        a cancelled coordination returns it unchanged; FailedPrecondition for other terminal states."""
        self._require_running()
        reason = (reason or "cancelled by request")[:1024]
        with self._txn() as (tx, after):
            run = self._live.get(coordination_id)
            if run is None or run.terminal:
                current = run.final if run is not None and run.final else self._read(coordination_id)
                if current.status == "cancelled":
                    return current
                if current.status in TERMINAL:
                    raise FailedPrecondition(
                        f"coordination {coordination_id} is already {current.status}",
                        reason="ALREADY_TERMINAL",
                    )
                raise Unavailable(f"coordination {coordination_id} is being recovered; retry shortly")
            self._finish(tx, after, run, "cancelled", TaskError("CANCELLED", f"cancelled: {reason}"))
            result = run.final
            self._dispatch(tx, after)
        assert result is not None
        return result

    def _schedule_deadline(self, run: Run) -> None:
        heapq.heappush(self._deadlines, (run.deadline, run.id))
        with self._wake:
            self._wake.notify_all()

    def _timer_loop(self, generation: int) -> None:
        hb_interval, hb_timeout = self.heartbeat_settings()
        check_every = max(0.05, min(1.0, hb_timeout / 4))
        next_hb = time.monotonic() + check_every
        while self._running and self._generation == generation:
            now = time.time()
            expired: list[str] = []
            with self._lock:
                while self._deadlines and self._deadlines[0][0] <= now:
                    expired.append(heapq.heappop(self._deadlines)[1])
                next_deadline = self._deadlines[0][0] if self._deadlines else None
                queued = len(self._queue) > 0
            for cid in expired:
                self._time_out(cid)
            mono = time.monotonic()
            if mono >= next_hb:
                next_hb = mono + check_every
                self._check_heartbeats(hb_timeout)
                if queued:  # agents leaving the ERROR state, capacity freed without an event
                    try:
                        with self._txn() as (tx, after):
                            self._dispatch(tx, after)
                    except Exception:
                        log.exception("periodic dispatch failed")
            wait = (
                check_every
                if next_deadline is None
                else min(check_every, max(0.0, next_deadline - time.time()))
            )
            with self._wake:
                if self._running and self._generation == generation:
                    self._wake.wait(wait)

    def _time_out(self, coordination_id: str) -> None:
        try:
            with self._txn() as (tx, after):
                run = self._live.get(coordination_id)
                if run is None or run.terminal:
                    return
                self._finish(
                    tx,
                    after,
                    run,
                    "timed_out",
                    TaskError(
                        "TIMEOUT", f"coordination exceeded its timeout of {run.timeout:g} s", retryable=True
                    ),
                )
                self._dispatch(tx, after)
        except Exception:
            log.exception("timing out %s failed", coordination_id)

    def _recover(self) -> None:
        """Re-queue every queued or running coordination found in the database."""
        rows = store.active_rows(self.db)
        if not rows:
            return
        with self._txn() as (tx, after):
            for row in rows:
                if row["id"] in self._live:
                    continue
                plan = json.loads(row["plan"])
                run = Run(
                    id=row["id"],
                    request_id=row["request_id"],
                    mode=row["mode"],
                    source=row["source_agent_id"],
                    requested_agent_ids=tuple(json.loads(row["requested_agent_ids"])),
                    caps=tuple(json.loads(row["required_capabilities"])),
                    task=row["task"],
                    context=json.loads(row["context"]),
                    priority=Priority(row["priority"]),
                    timeout=row["timeout"],
                    deadline=row["deadline"],
                    condition=CoordinationCondition.from_dict(
                        json.loads(row["condition"]) if row["condition"] else None
                    ),
                    correlation_id=row["correlation_id"],
                    trace_id=row["trace_id"],
                    traceparent=row["traceparent"],
                    max_agents=row["max_agents"],
                    execution_id=row["execution_id"],
                    step_id=row["step_id"],
                    create_time=row["create_time"],
                    plan=plan,
                    status=row["status"],
                    participants=json.loads(row["agent_ids"]),
                    attempts=json.loads(row["attempts"]),
                    selection=Selection.from_dict(json.loads(row["selection"]) if row["selection"] else None),
                    start_time=row["start_time"],
                )
                for r in json.loads(row["results"]):
                    res = AgentResult.from_dict(r)
                    run.results[res.position] = res
                for i, a in enumerate(plan):  # selected slots without a result choose again
                    if a == "" and i not in run.results:
                        run.participants[i] = ""
                self._live[run.id] = run
                heapq.heappush(self._deadlines, (run.deadline, run.id))
                self._progress(tx, after, run)
            log.info("re-queued %d coordination(s) after restart", len(rows))
            self._dispatch(tx, after)
