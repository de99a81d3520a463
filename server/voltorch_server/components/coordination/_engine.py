"""The coordination engine: the agent registry, the priority queue, selection, the four modes,
timeouts, cancellation, remote workers and recovery after a restart.

How it runs. A coordination is a plan of slots (a named agent, or "" = selected by capability); each
slot becomes a unit of work that waits in one aging priority queue until an agent with free capacity
can take it. Every state change happens in one SQLite transaction together with its events, under
the database's writer lock and then the engine lock (always in that order; the engine lock is never
held while waiting for the database). Dispatch is a scan of the queue done inline by whichever
thread changed something (a request, a finished task, a connecting worker), in the same
transaction; agents are launched after commit — threaded agents on the engine's pool, remote
workers through their session. A timer thread enforces deadlines and worker heartbeats. A caller with a
transaction of its own (a workflow step's checkpoint) can write a coordination in it (prepare, submit_in)
and, when its one task went to an in-process agent, run that agent itself and record the outcome in its
next transaction (run_inline, complete_in): one commit per step, no hand-off to the agent pool.

Lifecycle: start() loads agents, registers the built-in team and re-queues every queued or running
coordination from the database; stop() abandons in-flight work without finishing it, so the next
start() picks it up again (attempt numbers keep growing, so stale worker results are ignored).
"""

from __future__ import annotations

import heapq
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from ..._ids import new_id
from ...agents.base import CancelSignal, Latch, Outcome, TokenUsage, ToolSpec
from ...agents.limiter import Limiters
from ...agents.llm import LlmDefaults, LlmSettings, limit_settings
from ...agents.llm_clients import LlmCalls
from ...agents.remote import RemoteAgent
from ...config import Config, parse_prices
from ...errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from ...frozen import made
from ...handoffs import handed_off
from ...json_encoders import encoder
from ...priority import Priority
from ...storage import Tx
from ...telemetry import current_trace, trace_ids_from
from ..events import EventLog
from ..shared import Component, decode_token, doubling, encode_token, fitting, reason_text, row_bytes
from ..shared import page_size as checked_page_size
from . import _rows
from ._agents import AgentState, check_capabilities
from ._dispatch import Assigned, Dispatcher
from ._journal import Journal, Moved, RunTable
from ._model import (
    DEFAULT_PARALLEL_AGENTS,
    MAX_AGENT_IDS,
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
    require_id,
)
from ._registry import AgentRegistry
from ._runs import PREVIEW, After, InlineTask, Placed, Prepared, Run, request_hash, small_list_json
from ._store_port import CoordinationPort
from ._tools import EngineToolbox

log = logging.getLogger("voltorch.coordination")
# A coordination whose recorded outcome rolled back is loaded again at once; while the database does not
# answer, again RELOAD_FIRST s later, twice as late each time, at most RELOAD_MAX s.
RELOAD_FIRST = 0.05
RELOAD_MAX = 30.0
_dumps = encoder()  # json.dumps(value), its encoder made once


COMMIT_WAIT = 5.0  # seconds get() waits for a finished coordination's COMMIT (it follows at once)
_TERMINAL_EVENTS = frozenset(
    ("coordination.completed", "coordination.failed", "coordination.cancelled", "coordination.timed_out")
)
_AGENT_EVENTS = frozenset(
    ("agent.registered", "agent.updated", "agent.unregistered", "agent.connected", "agent.disconnected")
)

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


class CoordinationEngine(Component):
    """Agents and who does what. Thread-safe; every public method may be called from any thread.

    Composed of a run table (live coordinations, their queue and deadlines), a journal (transactions
    with their events), a dispatcher (queue scan, agents running units, outcomes) and an agent registry
    (definitions, runtimes, worker sessions); the engine itself takes requests, answers queries, keeps
    deadlines and recovers after a restart."""

    name = "coordination"

    def __init__(
        self,
        store: CoordinationPort,
        events: EventLog,
        config: Config | None = None,
        limiters: Limiters | None = None,
        *,
        llm_calls: LlmCalls | None = None,
        owner: str = "",
        shared: bool = False,
    ):
        """`limiters`: the server's LLM endpoint limiters, shared by its LLM agents (None: a private set
        from the config); `llm_calls`: where those agents' HTTP calls run (None: on their own threads). `owner`: this replica's id, written on the coordinations it runs; `shared`: other
        replicas use the same database (coordinations of dead members are adopted, see _adopt_orphans)."""
        self.owner = owner or new_id("replica")
        self.shared = shared
        self.store = store
        self.events = events
        self.config = config or Config()
        self.limiters = limiters if limiters is not None else Limiters(limit_settings(self.config))
        self.llm_defaults = LlmDefaults(
            model=self.config.openai_model,
            base_url=self.config.openai_base_url,
            api_key_env=self.config.openai_api_key_env,
            timeout=self.config.openai_timeout,
            max_retries=self.config.llm_max_retries,
            prices=parse_prices(self.config.llm_prices),
        )
        # check(execution_id, used): raises (BUDGET_EXCEEDED) when that execution's budget is crossed by
        # its usage plus `used`; set by the workflow engine, asked by tool loops before each model call.
        self.budget_check: Callable[[str, TokenUsage], None] | None = None
        self._lock = threading.RLock()
        self.agents: dict[str, AgentState] = {}
        self._capable: dict[frozenset[str], str] = {}  # capabilities -> the agent _plan found with them
        self.runs = RunTable(max(self.config.coordination_aging_seconds, 1e-6))
        self.journal = Journal(store, events, self._lock, self.runs, self.owner)
        self.dispatcher = Dispatcher(
            self.journal,
            self.runs,
            self.agents,
            self.config,
            observed=self,
            toolbox=EngineToolbox(self),
            unrecord=self._unrecord,
        )
        self.registry = AgentRegistry(
            store,
            events,
            self.journal,
            self.runs,
            self.agents,
            self.dispatcher,
            self.config,
            self.llm_defaults,
            self.limiters,
            observed=self,
            llm_calls=llm_calls,
            shared=shared,
        )
        # The agent API is the registry's, handed out as is (one signature, written once).
        self.register_builtin_agents = self.registry.register_builtin_agents
        self.register_agent = self.registry.register_agent
        self.unregister_agent = self.registry.unregister_agent
        self.update_capabilities = self.registry.update_capabilities
        self.get_agent = self.registry.get_agent
        self.list_agents = self.registry.list_agents
        self.connect_worker = self.registry.connect_worker
        self.heartbeat_settings = self.registry.heartbeat_settings
        self._timer: threading.Thread | None = None
        self._wake = threading.Condition(threading.Lock())
        # What other replicas did that concerns this one, heard in the event log, done by the timer thread.
        self._heard_agents: set[str] = set()
        self._handed_here: set[str] = set()
        # Callers waiting for coordinations not live here: woken by their terminal events.
        self._waiters: dict[str, set[threading.Event]] = {}
        self._waiters_lock = threading.Lock()
        self.events.add_listener(self._heard)
        # When the timer thread will look next (time.time(); 0: awake now): a new deadline before it
        # wakes the thread, a later one (every coordination with the default timeout) waits for its turn.
        self._timer_until = 0.0

    def start(self) -> None:
        with self._lock:
            if not self.dispatcher.start():
                return
        self.registry.load()
        if self.config.builtin_agents:
            self.registry.register_builtin_agents()
        self._recover()
        self._timer = threading.Thread(
            target=self._timer_loop,
            args=(self.dispatcher.generation,),
            name="coordination-timer",
            daemon=True,
        )
        self._timer.start()

    def stop(self) -> None:
        with self._lock:
            if not self.dispatcher.running:
                return
            pool = self.dispatcher.stop()
            live = self.runs.live.values()
            cancels = [u.cancel for r in live for u in r.units.values() if u.cancel]
            sessions = [
                a.runtime.session
                for a in self.agents.values()
                if isinstance(a.runtime, RemoteAgent) and a.runtime.session
            ]
            runtimes = [a.runtime for a in self.agents.values() if a.runtime and a.kind != "function"]
            unwritten = self.dispatcher.stats_unwritten()
            for r in live:
                r.done.set()  # wake waiters; they read the persisted state
            self.runs.clear()
            self.agents.clear()
            self.registry.loaded = False
        self._write_stats(unwritten)
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
        self.dispatcher.delta_timers.stop()  # unlocked: a timer may be publishing (waiting for the database)
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.join(timeout=2)

    def check(self) -> None:
        if not self.dispatcher.running:
            raise Unavailable("coordination engine is stopped", reason="COMPONENT_STOPPED")
        if self._timer is None or not self._timer.is_alive():
            raise Unavailable("coordination timer thread is not running", reason="COMPONENT_STOPPED")
        self.store.probe()

    # -- coordinations -------------------------------------------------------------------------------

    def tool_offer(self, name: str) -> tuple[str, ToolSpec] | None:
        """The agent offering a tool (the first by id when several do) and the tool's spec."""
        with self._lock:
            offers = [(a.id, t) for a in self.agents.values() for t in a.tools if t.name == name]
        return min(offers, key=lambda o: o[0]) if offers else None

    def request(self, req: CoordinationRequest) -> Coordination:
        """Validate, persist and queue a coordination; returns at once (status queued). Idempotent by
        request_id."""
        return self.submit(req)[0]

    def submit(self, req: CoordinationRequest) -> tuple[Coordination, bool]:
        """As request(), also saying whether request_id matched an earlier request (nothing new queued)."""
        self.dispatcher.require_running()
        checked = self._check_request(req)
        digest = request_hash(req, checked[0], checked[1])
        with self.journal.txn() as (tx, after):
            if req.request_id:
                row = self.store.by_request(tx, req.request_id)
                if row is not None:
                    if row["request_hash"] != digest:
                        raise AlreadyExists(
                            f"request_id {req.request_id!r} was used for a different request (coordination "
                            f"{row['id']})",
                            reason="REQUEST_ID_REUSED",
                            metadata={"coordination_id": row["id"], "field": "request_id"},
                        )
                    run = self.runs.live.get(row["id"])
                    existing = run.snapshot(self.runs.position(run)) if run else None
                    return existing or self._read(row["id"]), True
            prepared = Prepared(req, new_id("coord"), *checked, digest, self._plan(req))
            run = self._insert(tx, after, prepared)
            snapshot = run.snapshot(self.runs.position(run))
            self.dispatcher.dispatch(tx, after)
            self.journal.write_new(tx, run)
        return snapshot, False

    def prepare(self, req: CoordinationRequest) -> Prepared:
        """Check and plan a new coordination without writing it (raises as request() would), so that the
        caller can write it with submit_in() inside its own transaction. Its id is chosen here."""
        self.dispatcher.require_running()
        checked = self._check_request(req)
        with self._lock:
            plan = self._plan(req)
        return Prepared(req, new_id("coord"), *checked, request_hash(req, checked[0], checked[1]), plan)

    def submit_in(self, tx: Tx, prepared: Prepared) -> Placed:
        """Write and queue a prepared coordination inside the caller's transaction `tx` (the workflow step's
        checkpoint: one commit for both) and dispatch. When its only task went at once to an in-process
        agent, `Placed.inline` is that task, for the caller to run in its own thread after the commit
        (run_inline) and record with complete_in(): no hand-off to the agent pool. The caller runs
        run_after(placed.after) once `tx` has committed. Should `tx` roll back instead, what this did in
        the engine's memory is withdrawn (`_withdraw`)."""
        after = made(After, launches=[], cancels=[], finished=[], calls=[])  # After() without __init__
        with self._lock:
            if not self.dispatcher.running:  # stopped since prepare(): the caller asks again later
                return Placed(prepared.id, None, after, written=False)
            assigned: list[Assigned] = []
            tx.after_rollback(
                partial(self._withdraw, prepared.id, self.dispatcher.generation, assigned, after)
            )
            self.dispatcher.recording = assigned
            try:
                run = self._insert(tx, after, prepared)
                self.dispatcher.dispatch(tx, after)
            finally:
                self.dispatcher.recording = None
            self.journal.write_new(tx, run)
            inline = self.dispatcher.take_inline(run, after)
        return Placed(prepared.id, inline, after)

    def _withdraw(
        self, coordination_id: str, generation: int, assigned: list[Assigned], after: After
    ) -> None:
        """The transaction of a submit_in() rolled back: undo what it did in memory. Its coordination leaves
        the run table and the queue (its deadline stays in the heap: the timer finds it gone), and every
        unit its dispatch gave to an agent is given back, the newest first: the agent's slot freed, an
        older coordination's unit queued again in its place, as it was (`Dispatcher.give_back`); the
        engine's periodic dispatch gives it out again. An older coordination this dispatch failed
        (`_fail_unplaceable`: terminal in memory, still queued in the database) is loaded again as the
        database has it (`_roll_back`). A coordination this dispatch handed over to another replica
        (`_hand_over`) needs nothing: it changes memory only after the commit (`journal.drop`). Not after a
        stop: the run table and the agents it withdraws from are gone (a start reloads them)."""
        self._roll_back(generation, assigned, after, withdrawn=coordination_id)

    def _roll_back(
        self,
        generation: int,
        assigned: list[Assigned],
        after: After,
        also: Run | None = None,
        withdrawn: str = "",
    ) -> None:
        """Undo in memory what a rolled-back transaction did (unless the engine restarted since): the
        `withdrawn` coordination (new in it) leaves memory; `also` and the runs it finished (`after.finished`:
        terminal here, not in the database) leave it too and are loaded again as the database has them
        (`_readopt`); what its dispatch gave to agents (`assigned`) is given back. The agent tasks it ended
        (`after.cancels`: `finish` freed their slots) are told to stop now: the coordination loaded again
        gives them out anew, and the old attempt, whose outcome nobody records any more, must not run on
        beside the new one. A waiter on any of them follows it from the database meanwhile."""
        for signal, reason in after.cancels:  # the attempts the transaction ended, ended all the same
            signal.set(f"{reason} (its transaction rolled back: loaded again)")
        with self._lock:
            if self.dispatcher.generation != generation:
                return  # restarted since: the start reloaded them
            live = self.runs.live
            new = live.get(withdrawn) if withdrawn else None
            runs: list[Run] = []  # each once (the live one of its id), in order
            for r in (new, also, *after.finished):
                if r is not None and live.get(r.id) is r:
                    del live[r.id]
                    runs.append(r)
                    for unit in r.units.values():
                        self.runs.queue.remove(unit)
            for a in reversed(assigned):
                self.dispatcher.give_back(a)
            assigned.clear()
            running: list[CancelSignal] = []
            for r in runs:  # a unit of it a later dispatch of the same transaction (or group) gave out,
                for unit in r.units.values():  # or another task of it an agent still runs (parallel)
                    if unit.agent_id is not None:
                        self.dispatcher.release(unit)
                        if unit.cancel is not None:
                            running.append(unit.cancel)
            for r in runs:  # never committed (the new one too, its own dispatch may have failed it):
                r.final = None  # no waiter may take it for the outcome
            gone = [r for r in runs if r is not new]
        for signal in running:  # loaded again, it is given out anew: the old attempt must not run on
            signal.set("coordination loaded again (a transaction of it rolled back)")
        if new is not None and runs and runs[0] is new:
            new.done.set()  # a waiter reads what the database has: nothing
        for g in gone:
            g.done.set()
            try:
                self.spawn(self._readopt, g.id, generation)
            except RuntimeError:  # stopped: a start reloads it
                pass

    def run_inline(self, task: InlineTask, traceparent: str = "") -> Outcome | None:
        """Run an inline task's agent in this thread; None when it must not run (cancelled, engine
        restarted): then the coordination is finished, or re-dispatched, by the engine as usual."""
        return self.dispatcher.run_inline(task, traceparent)

    def complete_in(self, tx: Tx, task: InlineTask, outcome: Outcome) -> tuple[Coordination | None, After]:
        """Record an inline task's outcome inside the caller's transaction; the coordination as it stands
        then (terminal when that was its last task, or cancelled / timed out meanwhile), or None when the
        engine no longer knows it (restarted: it re-runs it). Run run_after() on the After once committed."""
        after = made(After, launches=[], cancels=[], finished=[], calls=[])  # After() without __init__
        with self._lock:
            assigned: list[Assigned] = []
            run, generation = task.unit.run, self.dispatcher.generation
            tx.after_rollback(partial(self._unrecord, run, generation, assigned, after))
            self.dispatcher.recording = assigned
            try:
                return self.dispatcher.complete(tx, after, task, outcome), after
            finally:
                self.dispatcher.recording = None

    def _unrecord(self, run: Run, generation: int, assigned: list[Assigned], after: After) -> None:
        """The transaction of a complete_in() rolled back (the step's checkpoint failed, or was fenced: the
        execution moved to another replica), or that of an agent's outcome recorded on its own (a write the
        database refused, an outage): the outcome it recorded is not in the database, where the
        coordination still runs. What the transaction did in memory is undone (`_roll_back`: the
        coordination, terminal here perhaps, and any its dispatch failed leave the run table; what that
        dispatch gave out is given back), and the coordination is loaded again as the database has it, if
        this replica still owns it: it runs again (its step goes on from its last committed checkpoint and
        waits for it). Another replica's by now, that replica runs it."""
        self._roll_back(generation, assigned, after, also=run)

    def _readopt(self, coordination_id: str, generation: int, retry: int = 0) -> None:
        """`_adopt_one` for `_roll_back` (if this replica still owns the coordination), on the agent pool;
        while the database does not answer (the outage that rolled the outcome back may last), tried again
        later, twice as late each time (at most RELOAD_MAX s), unless the engine stopped or restarted since
        (its start reloads it)."""
        with self._lock:
            if self.dispatcher.generation != generation or not self.dispatcher.running:
                return
        try:
            self._adopt_one(coordination_id, self.owner)
        except Exception as exc:
            delay = doubling(RELOAD_FIRST, retry, RELOAD_MAX)
            log.warning(
                "coordination %s: loading it again failed (%s); trying in %.2g s", coordination_id, exc, delay
            )

            def due() -> None:
                try:
                    self.spawn(self._readopt, coordination_id, generation, retry + 1)
                except RuntimeError:  # stopped: a start reloads it
                    pass

            self.dispatcher.delta_timers.after(delay, due)

    def forget(self, moved: Moved) -> None:
        """A complete_in() in the caller's transaction raised Moved (that transaction rolled back): the
        coordination is another replica's now; drop it here."""
        self.journal.forget(moved.run)

    def spawn(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run fn(*args) on the agent pool (RuntimeError when the engine is stopped): how a caller that
        got an inline task runs it without holding a thread of its own."""
        pool = self.dispatcher.pool
        if pool is None:
            raise RuntimeError("the coordination engine is stopped")
        pool.submit(fn, *args)

    def run_after(self, after: After) -> None:
        """The work a submit_in() / complete_in() transaction left for after its commit."""
        self.journal.run_after(after)

    def _insert(self, tx: Tx, after: After, p: Prepared) -> Run:
        """A new coordination with its event, its tasks queued; the caller dispatches, then writes its row
        (`journal.write_new`: one INSERT with the state dispatch gave it). Engine lock held."""
        req, cid, priority, timeout = p.req, p.id, p.priority, p.timeout
        now = time.time()
        ids = trace_ids_from(req.traceparent) if req.traceparent else current_trace()
        plan = p.plan
        run = made(  # Run(...) without its dataclass __init__: every field, in order, defaults included
            Run,
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
            plan=list(plan),
            status="queued",
            participants=list(plan),
            attempts=[0] * len(plan),
            results={},
            output="",
            structured_output=None,
            error=None,
            selection=None,
            start_time=None,
            end_time=None,
            units={},
            done=Latch(),
            final=None,
            unwritten=None,
            _selection_text=None,
        )
        run.unwritten = {  # inserted with its state once dispatched (Journal.write_new)
            "request_id": req.request_id,
            "request_hash": p.digest,
            "mode": run.mode,
            "source_agent_id": run.source,
            "target_agent_id": req.target_agent_id,
            "requested_agent_ids": small_list_json(tuple(req.agent_ids)),
            "plan": small_list_json(tuple(plan)),
            "required_capabilities": small_list_json(run.caps),
            "task": run.task,
            "context": p.context_raw,
            "priority": int(priority),
            "timeout": timeout,
            "deadline": run.deadline,
            "condition": _dumps(req.condition.to_dict()) if req.condition else None,
            "correlation_id": run.correlation_id,
            "trace_id": run.trace_id,
            "traceparent": run.traceparent,
            "max_agents": req.max_agents,
            "execution_id": req.execution_id,
            "step_id": req.step_id,
            "create_time": now,
            "owner": self.owner,
        }
        self.journal.emit(
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
        self.runs.live[cid] = run
        self._schedule_deadline(run)
        self.dispatcher.start_units(run)
        return run

    def _check_request(self, req: CoordinationRequest) -> tuple[Priority, float, str]:
        """Validation that needs no agent registry; returns (priority, timeout, context JSON)."""
        if not isinstance(req.task, str) or not req.task.strip():
            raise InvalidArgument(
                "task", "a task is required (the instruction for the agents)", reason="FIELD_REQUIRED"
            )
        if len(req.task) > MAX_TASK_CHARS:
            raise InvalidArgument("task", f"at most {MAX_TASK_CHARS} characters (got {len(req.task)})")
        if req.mode not in MODES:
            raise InvalidArgument(
                "mode",
                f"unknown mode {req.mode!r}; use one of {', '.join(MODES)}",
                reason="ENUM_VALUE_INVALID",
            )
        for fname in ("source_agent_id", "target_agent_id"):
            value = getattr(req, fname)
            if value:
                check_name(value, fname)
        if isinstance(req.agent_ids, str):
            raise InvalidArgument("agent_ids", "a list of agent ids, not one string", reason="NAME_INVALID")
        if len(req.agent_ids) > MAX_AGENT_IDS:
            raise InvalidArgument("agent_ids", f"at most {MAX_AGENT_IDS} agents (got {len(req.agent_ids)})")
        for i, a in enumerate(req.agent_ids):
            check_name(a, f"agent_ids[{i}]")
        check_capabilities(tuple(req.required_capabilities), "required_capabilities")
        if not isinstance(req.context, dict):
            raise InvalidArgument("context", "must be a JSON object", reason="VALUE_INVALID")
        context_raw = check_json(req.context, "context", MAX_CONTEXT_BYTES) if req.context else "{}"
        try:
            priority = Priority.of(req.priority)
        except ValueError:
            raise InvalidArgument(
                "priority", f"unknown priority {req.priority!r}", reason="ENUM_VALUE_INVALID"
            ) from None
        timeout = req.timeout or self.config.coordination_timeout
        if req.timeout is not None and req.timeout < 0:
            raise InvalidArgument("timeout", "must not be negative", reason="DURATION_INVALID")
        if timeout > MAX_TIMEOUT:
            raise InvalidArgument("timeout", f"at most 24 h (got {timeout:.0f} s)", reason="DURATION_INVALID")
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
            raise InvalidArgument("condition", "only used in conditional mode", reason="CONDITION_INVALID")
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
            if value and value not in self.agents:
                raise agent_not_found(value, fname)
        for i, a in enumerate(ids):
            if a not in self.agents:
                raise agent_not_found(a, f"agent_ids[{i}]")
        if "" in plan:
            named = {a for a in (src, *plan) if a}
            wanted = frozenset(caps)
            # the agent found capable last time is asked first (the others are the same agents each time)
            hint = self.agents.get(self._capable.get(wanted, ""))
            if hint is not None and hint.id not in named and wanted.issubset(hint.capabilities):
                return plan
            capable = next(
                (a for a in self.agents.values() if a.id not in named and wanted.issubset(a.capabilities)),
                None,
            )
            if capable is not None:
                if len(self._capable) >= 256:
                    self._capable.clear()
                self._capable[wanted] = capable.id
            else:
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
            for a in self.agents.values()
            if a.id != req.source_agent_id and all(c in a.capabilities for c in caps)
        ]
        online = [a for a in capable if a.connected]
        return max(1, min(want, len(online) or len(capable)))

    def get(self, coordination_id: str) -> Coordination:
        require_id(coordination_id, "coordination_id")
        with self._lock:
            run = self.runs.live.get(coordination_id)
            if run is not None and run.final is None:
                return run.snapshot(self.runs.position(run))
        if run is not None and run.done.wait(COMMIT_WAIT):
            # Finished under the engine lock, which is released before COMMIT: its end is answered once
            # committed (with its events), never before.
            return run.final or self._read(coordination_id)
        return self._read(coordination_id)

    def _read(self, coordination_id: str) -> Coordination:
        row = self.store.row(coordination_id)
        if row is None:
            err = NotFound("coordination", coordination_id)
            err.metadata["field"] = "coordination_id"
            raise err
        return _rows.from_row(row)

    def wait(self, coordination_id: str, timeout: float | None = None) -> Coordination:
        """Block until the coordination is terminal or `timeout` passes; return its state either way. One
        live here is waited for in memory; one another replica runs (handed over to a worker's replica,
        or adopted) is followed through its terminal event in the event log, its row read again then."""
        require_id(coordination_id, "coordination_id")
        end = None if timeout is None else time.monotonic() + timeout
        woken = threading.Event()
        with self._waiters_lock:
            self._waiters.setdefault(coordination_id, set()).add(woken)
        try:
            while True:
                with self._lock:
                    run = self.runs.live.get(coordination_id)
                if run is not None and run.final is not None and run.done.is_set():
                    return run.final  # committed (done is set after COMMIT), its events with it
                current = None
                if run is None:
                    current = self._read(coordination_id)
                    if current.status in TERMINAL or not self.dispatcher.running:
                        return current
                remaining = None if end is None else end - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return current or self.get(coordination_id)
                if run is not None:
                    if not run.done.is_set() and run.done.wait(remaining):
                        handed_off()  # woken by the thread that finished (or handed over) it
                    if run.final is not None:
                        return run.final
                    if not run.done.is_set() or not self.dispatcher.running:
                        return self.get(coordination_id)  # timed out, or stopping: the persisted state
                    # handed over or moved to another replica: followed through the log from now on
                elif woken.wait(remaining):
                    woken.clear()
        finally:
            with self._waiters_lock:
                left = self._waiters.get(coordination_id)
                if left is not None:
                    left.discard(woken)
                    if not left:
                        del self._waiters[coordination_id]

    def _heard(self, e: Any) -> None:
        """Every committed event (this replica's and, on a shared database, the others'): wakes waiters of
        a coordination that ended, and notes agent changes and hand-overs for the timer thread. Quick."""
        if not self._waiters and not self.shared:  # nobody to wake, no other replica to follow
            return
        # The type first: an event's data is decoded only when read (most events here are none of these).
        type_ = e.type
        handed = type_ == "coordination.handed_over"
        if type_ in _TERMINAL_EVENTS or handed:
            if not self._waiters and not (handed and self.shared):
                return
            data = e.data if isinstance(e.data, dict) else {}
            if self._waiters:
                with self._waiters_lock:
                    waiting = list(self._waiters.get(data.get("coordination_id", ""), ()))
                for w in waiting:
                    w.set()
            if not (handed and self.shared):
                return
            if data.get("to_replica") == self.owner:
                with self._wake:
                    self._handed_here.add(data.get("coordination_id", ""))
                    self._wake.notify_all()
            return
        if not self.shared or type_ not in _AGENT_EVENTS:
            return
        data = e.data if isinstance(e.data, dict) else {}
        if data.get("replica") != self.owner and data.get("agent_id"):
            with self._wake:
                self._heard_agents.add(data["agent_id"])
                self._wake.notify_all()

    def _take_heard(self) -> None:
        """Timer thread: follow the agent changes and take the hand-overs heard since the last time."""
        with self._wake:
            agents, handed = self._heard_agents, self._handed_here
            self._heard_agents, self._handed_here = set(), set()
        if agents:
            try:
                self.registry.follow(agents)
            except Exception:
                log.exception("following agent changes of other replicas failed")
        if handed:
            try:
                with self.journal.txn() as (tx, after):
                    self._load(tx, after, self.store.owned(tx, self.owner, sorted(handed)))
            except Exception:
                log.exception("taking coordinations handed over to this replica failed")

    def _watch_members(self) -> None:
        """Timer thread: which replicas are alive (a worker whose replica died counts as disconnected)."""
        live = self.store.live_members(time.time() - self.config.member_timeout)
        if self.registry.set_live(live):
            with self.journal.txn() as (tx, after):
                self.dispatcher.dispatch(tx, after)

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
        rows = self.store.page(
            status=status,
            agent_id=agent_id,
            correlation_id=correlation_id,
            before=before,
            limit=size + 1,
        )
        n = fitting(row_bytes(r) for r in rows[:size])
        out = []
        with self._lock:
            for r in rows[:n]:
                run = self.runs.live.get(r["id"])
                out.append(run.snapshot(self.runs.position(run)) if run else _rows.from_row(r))
        token = encode_token(query, rows[n - 1]["id"]) if len(rows) > n else ""
        return out, token

    def details(self) -> dict[str, Any]:
        with self._lock:
            agents = list(self.agents.values())
            return {
                "queue_depth": len(self.runs.queue),
                "active_coordinations": self.runs.active_count,
                "registered_agents": len(agents),
                "connected_workers": sum(1 for a in agents if a.kind == "remote" and a.connected),
                "busy_agents": sum(1 for a in agents if a.load > 0),
            }

    @property
    def queue_depth(self) -> int:
        return len(self.runs.queue)

    @property
    def active_count(self) -> int:
        return self.runs.active_count

    def cancel(self, coordination_id: str, reason: str = "") -> Coordination:
        """Cancel a queued or running coordination (in-flight agent tasks are told to stop). Cancelling
        a cancelled coordination returns it unchanged; FailedPrecondition for other terminal states."""
        require_id(coordination_id, "coordination_id")
        self.dispatcher.require_running()
        reason = reason_text(reason, "cancelled by request")
        if self.shared and coordination_id not in self.runs.live:
            self._adopt_one(coordination_id)  # another replica's: cancelled here, fenced there
        with self.journal.txn() as (tx, after):
            run = self.runs.live.get(coordination_id)
            if run is None or run.terminal:
                current = run.final if run is not None and run.final else self._read(coordination_id)
                if current.status == "cancelled":
                    return current
                if current.status in TERMINAL:
                    raise FailedPrecondition(
                        f"coordination {coordination_id} is already {current.status}",
                        reason="ALREADY_TERMINAL",
                    )
                raise Unavailable(
                    f"coordination {coordination_id} is being recovered; retry shortly",
                    reason="COORDINATION_RECOVERING",
                )
            self.dispatcher.finish(
                tx, after, run, "cancelled", TaskError("CANCELLED", f"cancelled: {reason}")
            )
            result = run.final
            self.dispatcher.dispatch(tx, after)
        assert result is not None
        return result

    def _schedule_deadline(self, run: Run) -> None:
        heapq.heappush(self.runs.deadlines, (run.deadline, run.id))
        with self._wake:  # the timer reads the heap's head and sets _timer_until under _wake
            if run.deadline < self._timer_until:
                self._timer_until = 0.0
                self._wake.notify_all()

    def _timer_loop(self, generation: int) -> None:
        hb_interval, hb_timeout = self.registry.heartbeat_settings()
        check_every = max(0.05, min(1.0, hb_timeout / 4))
        next_hb = time.monotonic() + check_every
        while self.dispatcher.running and self.dispatcher.generation == generation:
            if self.shared:
                self._take_heard()
            now = time.time()
            expired: list[str] = []
            with self._lock:
                while self.runs.deadlines and self.runs.deadlines[0][0] <= now:
                    expired.append(heapq.heappop(self.runs.deadlines)[1])
                queued = len(self.runs.queue) > 0
                unwritten = self.dispatcher.stats_unwritten()
            for cid in expired:
                self._time_out(cid)
            self._write_stats(unwritten)
            mono = time.monotonic()
            if mono >= next_hb:
                next_hb = mono + check_every
                self.registry.check_heartbeats(hb_timeout)
                if self.shared:
                    try:
                        self._watch_members()
                        self._adopt_orphans()
                    except Exception:
                        log.exception("adopting coordinations of dead replicas failed")
                if queued:  # agents leaving the ERROR state, capacity freed without an event
                    try:
                        with self.journal.txn() as (tx, after):
                            self.dispatcher.dispatch(tx, after)
                    except Exception:
                        log.exception("periodic dispatch failed")
            with self._wake:
                idle = not (self._heard_agents or self._handed_here)
                if idle and self.dispatcher.running and self.dispatcher.generation == generation:
                    # the head read here: a deadline pushed before this saw _timer_until at 0
                    next_deadline = self.runs.deadlines[0][0] if self.runs.deadlines else None
                    now = time.time()
                    wait = check_every if next_deadline is None else min(check_every, next_deadline - now)
                    wait = max(0.0, wait)
                    self._timer_until = now + wait
                    self._wake.wait(wait)
                    self._timer_until = 0.0

    def _write_stats(self, agents: Sequence[AgentState]) -> None:
        """Write the statistics successes left unwritten (Dispatcher.save_stats), in one transaction."""
        if not agents:
            return
        try:
            with self.store.db.write() as tx:
                for a in agents:
                    a.stats_unwritten = False
                    self.store.update_agent_stats(tx, a)
        except Exception:
            log.exception("writing agent statistics failed")

    def _time_out(self, coordination_id: str) -> None:
        try:
            with self.journal.txn() as (tx, after):
                run = self.runs.live.get(coordination_id)
                if run is None or run.terminal:
                    return
                self.dispatcher.finish(
                    tx,
                    after,
                    run,
                    "timed_out",
                    TaskError(
                        "TIMEOUT", f"coordination exceeded its timeout of {run.timeout:g} s", retryable=True
                    ),
                )
                self.dispatcher.dispatch(tx, after)
        except Exception:
            log.exception("timing out %s failed", coordination_id)

    def _recover(self) -> None:
        """Re-queue every queued or running coordination found in the database (on a shared database,
        those this replica owned; a dead member's are adopted by _adopt_orphans)."""
        with self.journal.txn() as (tx, after):
            rows = self.store.adopt(tx, self.owner, previous=self.owner if self.shared else None)
            self._load(tx, after, rows)
        if rows:
            log.info("re-queued %d coordination(s) after restart", len(rows))

    def adopt_execution(self, execution_id: str, previous: str | None = None) -> None:
        """Run here the queued and running coordinations of a workflow execution this replica took over:
        those its `previous` owner ran (None: all); one handed over to a worker's replica stays there."""
        with self.journal.txn() as (tx, after):
            rows = self.store.adopt(tx, self.owner, previous=previous, execution_id=execution_id)
            self._load(tx, after, rows)

    def _adopt_one(self, coordination_id: str, previous: str | None = None) -> None:
        """Load one coordination from the database and run it here (`previous`: only if that replica
        still owns it)."""
        with self.journal.txn() as (tx, after):
            rows = self.store.adopt(tx, self.owner, previous=previous, coordination_id=coordination_id)
            self._load(tx, after, rows)

    def _adopt_orphans(self) -> None:
        """Shared database: adopt the coordinations of members that stopped heartbeating."""
        timeout = self.config.member_timeout
        with self.journal.txn() as (tx, after):
            rows = self.store.adopt_orphans(tx, self.owner, time.time() - timeout, 64)
            self._load(tx, after, rows)
        if rows:
            log.warning("adopted %d coordination(s) of dead replicas", len(rows))

    def _load(self, tx: Tx, after: After, rows: Sequence[Any]) -> None:
        """Put stored coordinations (now this replica's) in the run table and dispatch what they need."""
        if rows:
            for row in rows:
                if row["id"] in self.runs.live:
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
                self.runs.live[run.id] = run
                heapq.heappush(self.runs.deadlines, (run.deadline, run.id))
                self.dispatcher.progress(tx, after, run)
            self.dispatcher.dispatch(tx, after)
