"""The workflow engine: versioned templates, durable executions of their step DAGs, and the built-in
complete workflow (requirement -> analysis -> tasks -> fan-out to agents -> review -> summary).

Executions beyond the limit wait in a priority queue (never rejected). The limit is `concurrency`, or
twice the LLM endpoints' current windows when that is larger: executions mostly wait on the model, and
those waiting must not keep others queued while the endpoints have room (the endpoint limiters then
decide which calls go first, by priority). Each running execution is an
`ExecutionRun` (see _run.py) that checkpoints after every step; at start the engine reloads every execution
that was running or queued when the server stopped — however it stopped — and continues it.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from typing import Any

from opentelemetry import context as otel_context

from ..._ids import new_id
from ...agents.base import TokenUsage
from ...errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from ...priority import Priority
from ...storage import Database, Tx
from ...telemetry import context_from, current_trace, internal_span
from ..coordination import TaskError
from ..events import Event, EventFilter, EventLog, NewEvent
from ..shared import Component, Follower, TimerQueue, doubling, reason_text
from ..state import StateStore
from . import _complete as complete
from ._budget import enforce as enforce_budget
from ._executions import (
    CANCELLED,
    FAILED,
    PAUSED,
    PENDING,
    QUEUED,
    RUNNING,
    TERMINAL,
    Execution,
    ExecutionStore,
    StepRecord,
    list_executions,
)
from ._executions import execution as execution_of
from ._ownership import Fenced, Ownership, fair_share
from ._run import ExecutionRun
from ._signals import Signal, SignalStore
from ._timer_store import TimerStore
from .templates import (
    SIGNAL_RE,
    Template,
    TemplatesPort,
    TemplateStore,
    apply_parameters,
    dumps,
    unstorable,
    validate_template,
)

log = logging.getLogger("voltorch.workflows")

TERMINAL_EVENTS = frozenset(
    {
        "workflow.execution.completed",
        "workflow.execution.failed",
        "workflow.execution.cancelled",
        "workflow.execution.timed_out",
    }
)
_TERMINAL_TYPES = tuple(sorted(TERMINAL_EVENTS))
_CLUSTER_EVENTS = ("workflow.execution.moved", "workflow.execution.queued", "workflow.signal.received")
MAX_REQUEST_ID = 128
# Queued executions begun in one transaction by admission. Each is read (its row, its steps) under the
# engine lock, which starts and reads wait for: on PostgreSQL ~1 ms an execution.
ADMIT_BATCH = 16
# An execution whose checkpoint failed to commit is loaded again this soon (s), twice as late after each
# failure in a row (within RELOAD_RESET s of the last), at most RELOAD_MAX; after more than
# RELOAD_ATTEMPTS in a row that the database refused (not an outage, not a conflict) it fails
# (CHECKPOINT_FAILED).
RELOAD_FIRST = 0.05
RELOAD_MAX = 30.0
RELOAD_RESET = 60.0
RELOAD_ATTEMPTS = 8
_Callbacks = list[Callable[[], None]]
_Admitted = list[tuple[str, ExecutionRun | None]]  # (execution id, its run; None: nothing to begin)
_KeyValues = list[tuple[str, Any]]  # state keys and their values (the class's own `list` shadows the builtin)
MAX_LABELS = 64

__all__ = ["TERMINAL_EVENTS", "Execution", "WorkflowEngine", "complete"]


class WorkflowEngine(Component):
    name = "workflows"

    def __init__(
        self,
        db: Database,
        events: EventLog,
        state: StateStore,
        coordination: Any,
        *,
        executions: ExecutionStore,
        signals: SignalStore,
        timers: TimerStore,
        templates: TemplatesPort,
        concurrency: int = 100,
        threads: int = 256,
        llm_capacity: Callable[[], int] | None = None,
        ownership: Ownership | None = None,
    ):
        """`executions`, `signals`, `timers`, `templates`: the stores of those rows (storage.stores, built by the app).
        `llm_capacity()`: calls the LLM endpoints take at once now (Limiters.capacity). `ownership`: this
        replica's id and whether it shares the database with others (see _ownership.py)."""
        self.db = db
        self.ownership = ownership or Ownership(new_id("replica"))
        self.me = self.ownership.replica_id
        self.events = events
        self.coordination = coordination
        self.concurrency = max(1, concurrency)
        self.llm_capacity = llm_capacity
        self.threads = max(4, threads)
        self.store = executions
        self.signals = signals
        self.timer_store = timers
        self.templates = TemplateStore(templates)
        self.templates.reserved.add(complete.NAME)
        self.requirements = complete.RequirementState(state)
        self.complete_definitions = complete.Definitions()
        self.timers = TimerQueue("workflow-timers")
        self.pool: ThreadPoolExecutor = ThreadPoolExecutor(1)
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._runs: dict[str, ExecutionRun] = {}
        self._running: set[str] = set()
        self._queue: list[tuple[int, float, str]] = []
        self._queued: set[str] = set()
        self._admit_wanted = threading.Condition()
        # Steps being recorded by threads outside the workflow pool (agents run inline on the agent pool):
        # stop() waits for them, so that nothing a stopped engine's run writes lands after a restart.
        self._recorders = 0
        # Taken as a plain lock by every step (recording()); its condition only when stop() waits for them.
        self._recorders_lock = threading.Lock()
        self._recorded = threading.Condition(self._recorders_lock)
        if hasattr(coordination, "budget_check"):
            coordination.budget_check = self.check_budget
        self._admitter: threading.Thread | None = None
        self._cluster_follower: Any = None
        self._next_takeover = 0.0
        self.reload_first, self.reload_attempts = RELOAD_FIRST, RELOAD_ATTEMPTS  # (see reload())
        # execution id -> (its checkpoints that failed in a row, when the last did, of them those the
        # database refused (not an outage), why the last did)
        self._reloads: dict[str, tuple[int, float, int, str]] = {}

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        self.stopping.clear()
        self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix="workflow")
        self.timers.start()
        self.templates.register(complete.template(), builtin=True)
        self._admitter = threading.Thread(target=self._admit_loop, name="workflow-admission", daemon=True)
        self._admitter.start()
        self._recover()
        if self.ownership.shared:  # what other replicas do that concerns this one
            self._cluster_follower = self.events.subscribe(EventFilter(types=_CLUSTER_EVENTS))
            threading.Thread(
                target=self._follow_cluster,
                args=(self._cluster_follower,),
                name="workflow-cluster",
                daemon=True,
            ).start()

    def stop(self) -> None:
        """Stop scheduling; attempts in flight are abandoned where they are and resumed by the next start."""
        self.stopping.set()
        if self._cluster_follower is not None:
            self._cluster_follower.close()
            self._cluster_follower = None
        with self._recorded:
            self._recorded.wait_for(lambda: not self._recorders, timeout=30)
        with self._admit_wanted:
            self._admit_wanted.notify_all()
        self.timers.stop()
        self.pool.shutdown(wait=True, cancel_futures=True)
        if self._admitter:
            self._admitter.join(timeout=5)
        with self._lock:
            self._runs.clear()
            self._running.clear()
            self._queue.clear()
            self._queued.clear()

    @contextmanager
    def recording(self, run: ExecutionRun) -> Iterator[bool]:
        """While held (True): `run` is this engine's and may record a step; stop() waits for it. False: the
        engine is stopping or the run is a stopped engine's (its successor was loaded from the database)."""
        with self._recorders_lock:
            current = not self.stopping.is_set() and self._runs.get(run.id) is run
            if current:
                self._recorders += 1
        try:
            yield current
        finally:
            if current:
                with self._recorders_lock:
                    self._recorders -= 1
                    if self.stopping.is_set():  # stop() sets it before it waits, under this lock
                        self._recorded.notify_all()

    def check(self) -> None:
        if self._admitter is None or not self._admitter.is_alive():
            raise RuntimeError("workflow admission thread is not running")
        self.store.ids_with_status("running")  # the executions table answers

    def details(self) -> dict[str, Any]:
        with self._lock:
            running, queued = len(self._running), len(self._queued)
        return {
            "active_workflows": running,
            "queued_workflows": queued,
            "concurrency_limit": self.limit(),
            "timers": len(self.timers),
        }

    def _recover(self) -> None:
        """Continue what was running or queued when the server stopped. On a shared database only what
        this replica owned (claimed again at the next epoch); other replicas' executions are taken over
        once their owner is dead (_claim)."""
        if not self.ownership.shared:
            rows = self.store.ids_with_status(RUNNING, QUEUED, PENDING)
        else:
            with self.db.write() as tx:
                rows = [
                    r for r in (self.store.own(tx, o["id"], self.me) for o in self.store.owned(self.me)) if r
                ]
            rows = [r for r in rows if r["status"] in (RUNNING, QUEUED, PENDING)]
        self._continue(rows, "recovered after a restart (continuing from the last checkpoint)")

    def _continue(self, rows: list[Any], reason: str, previous: dict[str, str] | None = None) -> None:
        """Run again the running executions of `rows`, queue the queued ones (all owned by this replica
        now; `previous`: their owners before, by id, when another replica's)."""
        resume: list[ExecutionRun] = []
        with self._lock:
            for r in rows:
                if r["status"] == RUNNING:
                    self._runs.pop(r["id"], None)  # a run of an earlier epoch is stale
                    run = self._load_locked(r["id"])
                    if run is not None:
                        run.recovered = True
                        self._running.add(run.id)
                        resume.append(run)
                elif r["status"] in (QUEUED, PENDING):
                    self._enqueue_locked(r["id"], r["priority"], r["create_time"])
        for run in resume:
            log.info("workflow %s: continuing from its last checkpoint (%s)", run.id, reason)
            adopt = getattr(self.coordination, "adopt_execution", None)
            if adopt is not None and self.ownership.shared:
                adopt(run.id, (previous or {}).get(run.id, self.me))  # its attempts in flight, re-attached
            run.begin("workflow.execution.resumed", reason=reason)
        self._wake_admission()

    def lost(self, run: ExecutionRun, fenced: Fenced) -> None:
        """Another replica owns the execution now (a checkpoint was fenced, or its claim was seen): forget
        the run here."""
        log.warning(
            "workflow %s: moved to another replica (this replica's epoch %d is superseded): %s;"
            " this replica stops running it",
            run.id,
            fenced.epoch,
            fenced.how,
        )
        with self._lock:
            if self._runs.get(run.id) is run:
                self._runs.pop(run.id, None)
                self._running.discard(run.id)
                self._queued.discard(run.id)
        self._wake_admission()

    def reload(self, run: ExecutionRun, exc: BaseException) -> None:
        """A checkpoint of `run` failed to commit and the run stopped (its memory was ahead of the database):
        the execution is loaded again from its last checkpoint, as after a restart, RELOAD_FIRST s later,
        twice as late after each failure that follows within RELOAD_RESET s. After more than
        RELOAD_ATTEMPTS refused in a row (a checkpoint the database answers and always refuses; an outage or
        a conflict with another writer is waited out) it fails instead, naming the error, rather than have
        its agents run again and again."""
        now = time.monotonic()
        outage = isinstance(exc, (Unavailable, Aborted))
        with self._lock:
            if self._runs.get(run.id) is not run:
                return
            del self._runs[run.id]
            n, last, refused, _ = self._reloads.get(run.id, (0, now, 0, ""))
            if now - last >= RELOAD_RESET:
                n, refused = 0, 0
            n, refused = n + 1, refused + (not outage)
            if len(self._reloads) >= 1024:  # forget the executions whose failures are old
                self._reloads = {k: v for k, v in self._reloads.items() if now - v[1] < RELOAD_RESET}
            why = f"{type(exc).__name__}: {exc}"
            self._reloads[run.id] = (n, now, refused, why)
        delay = doubling(self.reload_first, n - 1, RELOAD_MAX)
        if refused > self.reload_attempts:
            log.error("workflow %s: %d checkpoints refused in a row (%s); it fails", run.id, refused, why)
            self._reload_later(
                run.id, delay, give_up=f"{refused} checkpoints in a row failed to commit; the last: {why}"
            )
            return
        log.error(
            "workflow %s: a checkpoint failed to commit (%s); continuing from the last one in %.2g s",
            run.id,
            why,
            delay,
        )
        self._reload_later(run.id, delay)

    def _reload_later(self, execution_id: str, delay: float, retry: int = 0, give_up: str = "") -> None:
        """`_reload` on the workflow pool, `delay` seconds from now (by the timer thread)."""

        def due() -> None:
            try:
                self.pool.submit(self._reload, execution_id, retry, give_up)
            except RuntimeError:  # the pool is shut down: the engine is stopping; the next start recovers it
                pass

        self.timers.at(time.time() + delay, due)

    def _reload(self, execution_id: str, retry: int = 0, give_up: str = "") -> None:
        """Load an execution whose run stopped on a failed checkpoint again, at its next epoch (a write the
        stopped run still makes is fenced), if this replica still owns it (on one database: always) and it
        is not finished; and continue it, or (`give_up`: why) fail it. While the database does not answer,
        try again later."""
        if self.stopping.is_set():
            return  # the next start recovers it
        try:
            with self.db.write() as tx:
                row = self.store.row(execution_id, tx)
                # on one database this server owns every execution, also those whose rows still name
                # the replica id of an earlier process (recovery does not claim them again)
                if row is not None and (row["owner"] == self.me or not self.ownership.shared):
                    row = self.store.own(tx, execution_id, self.me)
                else:
                    row = None
        except Exception as exc:
            delay = doubling(self.reload_first, retry, RELOAD_MAX)
            log.warning(
                "workflow %s: loading it again failed (%s); trying in %.2g s", execution_id, exc, delay
            )
            self._reload_later(execution_id, delay, retry + 1, give_up)
            return
        with self._lock:  # a run a request loaded meanwhile (a pause, a signal, a read) is of the old epoch
            stale = self._runs.get(execution_id)
            if stale is not None and (row is None or stale.epoch != row["epoch"]):
                del self._runs[execution_id]
            else:
                stale = None
        if stale is not None:
            stale.superseded()
        if row is None or row["status"] != RUNNING or give_up:
            with self._lock:
                self._running.discard(execution_id)
            self._wake_admission()
        if row is None:
            return
        if not give_up:
            self._continue([row], "a checkpoint failed to commit (continuing from the last one committed)")
            return
        with self._lock:
            self._runs.pop(execution_id, None)
            run = self._load_locked(execution_id)
        if run is not None:
            run.terminate(FAILED, TaskError("CHECKPOINT_FAILED", give_up[:4096]), "workflow.execution.failed")

    # -- templates ---------------------------------------------------------------------------------------------

    def register_template(self, t: Template) -> Template:
        return self.templates.register(t)

    def get_template(self, name: str, version: int = 0) -> Template:
        return self.templates.get(name, version)

    def list_templates(
        self, category: str = "", all_versions: bool = False, page_size: int = 0, page_token: str = ""
    ) -> tuple[list[Template], str]:
        return self.templates.list(category, all_versions, page_size, page_token)

    # -- starting ----------------------------------------------------------------------------------------------

    def start_execution(
        self,
        template_name: str,
        *,
        template_version: int = 0,
        parameters: dict[str, Any] | None = None,
        request_id: str = "",
        priority: int = 0,
        labels: dict[str, str] | None = None,
        correlation_id: str = "",
        follow: Callable[[str, str], None] | None = None,
    ) -> tuple[Execution, bool]:
        """Start an execution (RUNNING, or QUEUED beyond the concurrency limit); (execution, existing).
        follow(id, correlation_id) is called once the new execution's id is drawn, before anything of it
        is written (run_execution subscribes to its events there)."""
        _check_common(request_id, labels or {}, correlation_id)
        if template_version < 0:
            raise InvalidArgument("template_version", "must not be negative")
        t, raw = self.templates.get_raw(template_name, template_version, field="template_name")
        params = apply_parameters(t.parameters, parameters or {})
        digest = _digest(
            "start",
            template_name,
            template_version,
            parameters or {},
            Priority.of(priority),
            labels,
            correlation_id,
        )
        return self._start(
            t, params, digest, request_id, priority, labels or {}, correlation_id, raw, follow=follow
        )

    def execute_complete(
        self,
        requirement: str,
        *,
        options: complete.Options | None = None,
        request_id: str = "",
        priority: int = 0,
        labels: dict[str, str] | None = None,
    ) -> tuple[Execution, bool]:
        """ExecuteCompleteWorkflow: the built-in template with per-call options; its requirement.<id>
        record is written in the transaction that starts it."""
        opts = options or complete.Options()
        _check_common(request_id, labels or {}, "")
        base = self.templates.get(complete.NAME)
        t, params = complete.variant(base, requirement, opts)
        digest = _digest("complete", requirement, repr(opts), Priority.of(priority), labels)
        definition = self.complete_definitions.of(base, opts, t)
        requirements = self.requirements
        return self._start(
            t,
            params,
            digest,
            request_id,
            priority,
            labels or {},
            "",
            definition,
            state=lambda eid, status: requirements.started(eid, requirement, status),
        )

    def _start(
        self,
        t: Template,
        params: dict[str, Any],
        digest: str,
        request_id: str,
        priority: int,
        labels: dict[str, str],
        correlation_id: str,
        definition: str = "",
        state: Callable[[str, str], _KeyValues] | None = None,
        follow: Callable[[str, str], None] | None = None,
    ) -> tuple[Execution, bool]:
        """Persist and admit an execution of t. `definition` is t as stored (already validated); without
        it t is a per-call variant, validated and serialised here. `state(id, status)`: state keys written
        in the same transaction; `follow`: see start_execution.

        The engine lock is held across the transaction: the slot decision, the insert and the run's
        registration are one step for every other start, stop() and the admission thread (a start that
        held its slot outside the lock was measured at ~1 % fewer instructions per LLM call and raced
        with all three: bench/README.md)."""
        if not definition:
            validate_template(t)
            definition = dumps(t)
        prio = Priority.of(priority)
        eid = new_id("wfx")
        with internal_span(
            "workflow.execute",
            attributes={"voltorch.execution_id": eid, "voltorch.template": t.name},
        ):
            trace = current_trace()
        if follow is not None:
            follow(eid, correlation_id or eid)
        now = round(time.time(), 6)  # microseconds: what a client's datetime can express, for created_after
        steps = [StepRecord(step_id=s.id, position=i, name=s.display_name) for i, s in enumerate(t.steps)]
        row: dict[str, Any] = {
            "id": eid,
            "request_id": request_id or None,
            "request_digest": digest,
            "template_name": t.name,
            "template_version": t.version,
            "definition": definition,
            "status": PENDING,
            "parameters": json.dumps(params, separators=(",", ":")),
            "priority": int(prio),
            "labels": json.dumps(labels, sort_keys=True),
            "correlation_id": correlation_id or eid,
            "traceparent": trace.traceparent,
            "trace_id": trace.trace_id,
            "create_time": now,
            "update_time": now,
        }
        existing_id = None
        run = None
        committed: Callable[[], None] | None = None
        claimed: list[Any] = []
        with self._lock:
            run_now = self._slot_free_locked() and not self.stopping.is_set()
            try:
                with self.db.write(group=True) as tx:  # may share its COMMIT with steps'
                    mine = True  # on a shared database: claimed here only within this replica's fair share,
                    if self.ownership.shared:  # and only when none waits before it (claims go in queue order)
                        members, running, waiting = self.store.load(tx, self.ownership.alive_since())
                        mine = not waiting and fair_share(members, running, self.me, 1) > 0
                    prev = self.store.by_request(tx, request_id) if request_id else None
                    if prev is not None:
                        if prev["request_digest"] != digest:
                            raise AlreadyExists(
                                f"request_id {request_id!r} was used for a different request (execution {prev['id']})",
                                reason="REQUEST_ID_REUSED",
                                metadata={"request_id": request_id, "execution_id": prev["id"]},
                            )
                        existing_id = prev["id"]
                    else:
                        slot, run_now = run_now, run_now and mine
                        row["status"] = PENDING if run_now else QUEUED
                        row["owner"], row["epoch"] = (self.me, 1) if mine else ("", 0)
                        self.store.insert(tx, row, steps)
                        if run_now:  # started in the same commit, its first steps too
                            fresh = {**row, "start_time": None, "run_elapsed": 0.0, "run_since": None}
                            run = ExecutionRun(self, fresh, steps, new=True)
                            committed = run.begin_in(
                                tx, "workflow.execution.started", parameters=sorted(params)
                            )
                        else:
                            queued = NewEvent(
                                type="workflow.execution.queued",
                                source="workflows",
                                data={"execution_id": eid, "template": t.name, "status": QUEUED},
                                correlation_id=row["correlation_id"],
                                traceparent=trace.traceparent,
                            )
                            self.events.append(tx, [queued])
                            if not mine and slot and fair_share(members, running, self.me, waiting + 1) > 0:
                                # its share of the queue, in queue order (this one, or one waiting before it)
                                claimed = self.store.claim_queued(tx, self.me, 1)
                        if state is not None:  # last: on PostgreSQL it locks the state's revision row
                            self.write_state(tx, state(eid, run.status if run is not None else row["status"]))
            except BaseException:
                if run is not None:
                    run.abandon()  # not committed: its deadline goes
                raise
            for r in claimed:
                self._enqueue_locked(r["id"], r["priority"], r["create_time"])
            if existing_id is None:
                if run is not None:
                    self._running.add(eid)
                    self._runs[eid] = run
                elif mine:
                    self._enqueue_locked(eid, int(prio), now)
                else:
                    self._wake_admission()  # unowned: claimed by whichever replica has its share free
        if existing_id is not None:
            return self.get(existing_id), True
        self.metrics.workflows_started.add(1, {"template": t.name})
        # The reply is read before the first steps go to their pool: a step handed off first took the GIL
        # from this thread and held the response back until it was done (bench/README.md, 1-step row).
        # The steps go even when the read fails (the execution is committed: it must run).
        try:
            started = self.get(eid)
        finally:
            if committed is not None:
                committed()
            if claimed:  # begun here, not left to the admission thread (the RPCs may keep it from the lock)
                self._admit()
        return started, False

    # -- reading -----------------------------------------------------------------------------------------------

    def get(self, execution_id: str) -> Execution:
        execution = execution_of(self.store, self._row(execution_id))
        if execution.terminal:
            return execution
        with self._lock:
            run = self._runs.get(execution_id) or self._load_locked(execution_id)
        if run is None and self.ownership.shared:  # owned by another replica: what its checkpoints say
            row = self.store.row(execution_id)
            run = ExecutionRun(self, row, self.store.steps(execution_id)) if row is not None else None
        return replace(execution, waiting=run.waiting()) if run is not None else execution

    def _row(self, execution_id: str) -> Any:
        if not execution_id:
            raise InvalidArgument("execution_id", "an execution id is required", reason="FIELD_REQUIRED")
        row = self.store.row(execution_id)
        if row is None:
            raise NotFound("execution", execution_id)
        return row

    # -- signals -----------------------------------------------------------------------------------------------

    def signal(
        self, execution_id: str, name: str, payload: Any = None, *, request_id: str = "", sender: str = ""
    ) -> tuple[Signal, bool]:
        """SignalExecution: persist a named signal and hand it to the step waiting for it, if one does (else
        it is kept for a later wait). Idempotent by request_id; (signal, existing)."""
        if not execution_id:
            raise InvalidArgument("execution_id", "an execution id is required", reason="FIELD_REQUIRED")
        if not name:
            raise InvalidArgument("name", "a signal name is required", reason="FIELD_REQUIRED")
        if not SIGNAL_RE.fullmatch(name):
            raise InvalidArgument("name", "a signal name is 1..128 of [A-Za-z0-9_.:-]")
        if len(request_id) > MAX_REQUEST_ID:
            raise InvalidArgument("request_id", f"at most {MAX_REQUEST_ID} characters")
        if len(sender) > 256:
            raise InvalidArgument("sender", "at most 256 characters")
        try:  # the waiting step's output: NaN or Infinity would make it no JSON
            json.dumps(payload, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidArgument("payload", f"not JSON: {exc}", reason="VALUE_INVALID") from None
        why = unstorable(payload)  # a NUL: the step's output, or a later step's task, is a text column
        if why:
            raise InvalidArgument("payload", why, reason="VALUE_INVALID")
        row = self.store.row(execution_id)
        if row is None:
            raise NotFound("execution", execution_id)
        digest = _digest("signal", name, payload)
        sig = Signal(
            id=new_id("sig"),
            execution_id=execution_id,
            name=name,
            payload=payload,
            request_id=request_id,
            sender=sender or "anonymous",
            create_time=time.time(),
        )
        with self.db.write() as tx:
            prev = self.signals.by_request(tx, execution_id, request_id) if request_id else None
            if prev is not None:
                if prev[1] != digest:
                    raise AlreadyExists(
                        f"request_id {request_id!r} was used for a different signal ({prev[0].id})",
                        reason="REQUEST_ID_REUSED",
                        metadata={"request_id": request_id, "signal_id": prev[0].id},
                    )
                return self.signals.get(prev[0].id) or prev[0], True
            current = self.store.row(execution_id, tx)
            if current["status"] in TERMINAL:
                raise FailedPrecondition(
                    f"execution {execution_id} is already {current['status']}",
                    reason="EXECUTION_FINISHED",
                    metadata={"execution_id": execution_id, "status": current["status"]},
                )
            self.signals.insert(tx, sig, digest)
            self.events.append(
                tx,
                [
                    NewEvent(
                        type="workflow.signal.received",
                        source="workflows",
                        data={
                            "execution_id": execution_id,
                            "signal": name,
                            "signal_id": sig.id,
                            "sender": sig.sender,
                        },
                        correlation_id=current["correlation_id"],
                        traceparent=current["traceparent"],
                    )
                ],
            )
        with self._lock:
            run = self._runs.get(execution_id) or self._load_locked(execution_id)
        if run is not None:
            run.deliver(sig)
        return self.signals.get(sig.id) or sig, False

    def list(self, **filters: Any) -> tuple[list[Execution], str]:
        return list_executions(self.store, **filters)

    def watch(
        self,
        execution_id: str,
        from_sequence: int = 0,
        terminal_only: bool = False,
        *,
        known: Execution | None = None,
    ) -> tuple[Any, Any]:
        """A follower of the execution's events (replay first) and the predicate of its last event.

        terminal_only: follow only the terminal events, so a caller waiting for the result is not woken
        (nor sent anything) for each step. known: the execution as its caller has just read it (a start's
        answer), so its row is not read again."""
        if from_sequence < 0:
            raise InvalidArgument("from_sequence", "must not be negative")
        if known is not None:
            correlation_id, status = known.correlation_id, known.status
        else:
            row = self._row(execution_id)  # the row alone: a watch needs no steps
            correlation_id, status = row["correlation_id"], row["status"]
        flt = _watch_filter(correlation_id, terminal_only)
        if from_sequence:
            follower = self.events.subscribe(flt, from_sequence=from_sequence)
        elif terminal_only and status not in TERMINAL:
            follower = self._follow_end(execution_id, flt)
        else:
            follower = self.events.subscribe(flt, after=0)
        return _own(follower, execution_id)

    def run_execution(
        self,
        template_name: str,
        *,
        terminal_only: bool = False,
        **start: Any,
    ) -> tuple[Execution, bool, Any, Callable[[Event], bool]]:
        """start_execution (`start`: its keywords), and its events followed as watch() follows them:
        (execution, existing, follower, is_last). A new execution's follower is subscribed before its start commits, so none of its events
        is read back from the log, and nothing is read to know where to begin; an existing one (request_id)
        is watched from its first event."""
        new: list[Any] = []

        def follow(eid: str, correlation: str) -> None:
            new.append(self.events.follow_new(_watch_filter(correlation, terminal_only)))

        try:
            execution, existing = self.start_execution(template_name, follow=follow, **start)
        except BaseException:
            for f in new:
                f.close()
            raise
        if existing or not new:
            for f in new:
                f.close()  # subscribed for the id this start would have given
            follower, is_last = self.watch(execution.id, terminal_only=terminal_only, known=execution)
        else:
            follower, is_last = _own(new[0], execution.id)
        return execution, existing, follower, is_last

    def _follow_end(self, execution_id: str, flt: EventFilter) -> Any:
        """The terminal event of a running execution: followed live, without replaying the log for it.

        The status and the terminal event commit together, so an execution still not terminal once the
        follower is registered has its terminal event still to come (it is taken live); one that ended
        meanwhile is replayed."""
        follower = self.events.follow_new(flt)
        row = self.store.row(execution_id)
        if row is None or row["status"] not in TERMINAL:
            return follower
        follower.close()
        return self.events.subscribe(flt, after=0)

    # -- control -----------------------------------------------------------------------------------------------

    def cancel(self, execution_id: str, reason: str = "") -> Execution:
        run = self._run_for(execution_id, allow_terminal=(CANCELLED,), begin=False)
        if run is not None:
            run.cancel(reason_text(reason, "cancelled by request"))
        return self.get(execution_id)

    def pause(self, execution_id: str, reason: str = "") -> Execution:
        run = self._run_for(execution_id, begin=False)
        if run is not None:
            was = run.pause(reason_text(reason))
            if was in (RUNNING, QUEUED, PENDING):
                with self._lock:
                    self._running.discard(execution_id)
                    self._queued.discard(execution_id)
                self._wake_admission()
        return self.get(execution_id)

    def resume(self, execution_id: str) -> Execution:
        run = self._run_for(execution_id)
        if run is not None and run.status == PAUSED:
            with self._lock:
                slot = self._slot_free_locked()
                if slot:
                    self._running.add(execution_id)
            if slot:
                if not run.begin("workflow.execution.resumed", expect=(PAUSED,)):
                    with self._lock:
                        self._running.discard(execution_id)
            else:
                run.set_queued("workflow.execution.resumed")
                with self._lock:
                    self._enqueue_locked(execution_id, int(run.priority), run.create_time)
                self._wake_admission()
        return self.get(execution_id)

    def _run_for(
        self, execution_id: str, allow_terminal: tuple[str, ...] = (), *, begin: bool = True
    ) -> ExecutionRun | None:
        """The in-memory run (loaded if needed; on a shared database claimed here first when another
        replica owns it); None for a terminal execution in allow_terminal."""
        if not execution_id:
            raise InvalidArgument("execution_id", "an execution id is required", reason="FIELD_REQUIRED")
        with self._lock:
            run = self._runs.get(execution_id) or self._load_locked(execution_id)
        if run is not None and self.ownership.shared:  # a run here whose claim elsewhere is not yet heard
            row = self.store.row(execution_id)
            if row is not None and (row["owner"], row["epoch"]) != (self.me, run.epoch):
                run.drop(Fenced(execution_id, run.epoch, f"claimed by replica {row['owner'] or '(none)'}"))
                run = None
        if run is None and self.ownership.shared:
            run = self._take(execution_id, begin)
        if run is None:
            row = self.store.row(execution_id)
            if row is None:
                raise NotFound("execution", execution_id)
            if row["status"] in allow_terminal:
                return None
            raise FailedPrecondition(
                f"execution {execution_id} is already {row['status']}",
                reason="EXECUTION_FINISHED",
                metadata={"execution_id": execution_id, "status": row["status"]},
            )
        return run

    def _take(self, execution_id: str, begin: bool) -> ExecutionRun | None:
        """Claim an execution another replica owns (next epoch: that replica's run is fenced from now on)
        and load it here, with its coordinations in flight, for a control request made on this replica.
        `begin`: a running execution goes on running here (not when it is about to be paused or
        cancelled: its adopted coordinations still finish, and a later resume records their outcome)."""
        with self.db.write() as tx:
            before = self.store.row(execution_id, tx)
            row = self.store.own(tx, execution_id, self.me)
            if row is None:
                return None
            self.events.append(tx, [self._moved(row)])
        with self._lock:
            self._runs.pop(execution_id, None)
            run = self._load_locked(execution_id)
            if run is not None and row["status"] == QUEUED:
                self._enqueue_locked(execution_id, row["priority"], row["create_time"])
        adopt = getattr(self.coordination, "adopt_execution", None)
        if adopt is not None:
            adopt(execution_id, before["owner"])
        if run is not None and begin and row["status"] in (RUNNING, PENDING):
            with self._lock:
                self._running.add(execution_id)
            run.begin(None)
        return run

    def _moved(self, row: Any) -> NewEvent:
        """The event of an execution claimed by this replica: its previous owner drops its run on it."""
        return NewEvent(
            type="workflow.execution.moved",
            source="workflows",
            data={"execution_id": row["id"], "owner": self.me, "epoch": row["epoch"]},
            correlation_id=row["correlation_id"],
            traceparent=row["traceparent"],
        )

    def _load_locked(self, execution_id: str) -> ExecutionRun | None:
        run = self._runs.get(execution_id)
        if run is not None:
            return run
        row = self.store.row(execution_id)
        if row is None or row["status"] in TERMINAL:
            return None
        if self.ownership.shared and row["owner"] != self.me:  # another replica's (or unclaimed)
            return None
        run = ExecutionRun(self, row, self.store.steps(execution_id))
        self._runs[execution_id] = run
        return run

    # -- admission ---------------------------------------------------------------------------------------------

    def _enqueue_locked(self, execution_id: str, priority: int, create_time: float) -> None:
        if execution_id not in self._queued:
            self._queued.add(execution_id)
            heapq.heappush(self._queue, (-priority, create_time, execution_id))

    def limit(self) -> int:
        """Executions that may run now: `concurrency`, or twice the LLM endpoints' windows if larger."""
        llm = self.llm_capacity() if self.llm_capacity is not None else 0
        return max(self.concurrency, 2 * llm)

    def _busy_locked(self) -> int:
        """Running executions that hold a concurrency slot: one that only waits (for a signal, an approval or
        a timer) holds no thread and no slot."""
        return sum(1 for eid in self._running if not ((run := self._runs.get(eid)) and run.parked()))

    def _slot_free_locked(self) -> bool:
        """Whether one more execution may run now. Fewer running than the limit needs no look at each
        (that look, per start, made a burst of N starts cost N² checks)."""
        limit = self.limit()
        return len(self._running) < limit or self._busy_locked() < limit

    def wake_admission(self) -> None:
        """Admit queued executions now if the limit allows (an LLM endpoint's window grew, or a run began
        waiting and so freed its slot)."""
        self._wake_admission()

    def _wake_admission(self) -> None:
        with self._admit_wanted:
            self._admit_wanted.notify_all()

    def _admit_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                if self.ownership.shared:
                    self._claim()
                self._admit()
            except Exception:
                log.exception("workflow admission failed")
            with self._admit_wanted:
                if not self.stopping.is_set():
                    self._admit_wanted.wait(1.0)

    def _admit(self) -> None:
        """Start queued executions while slots are free, highest priority (then oldest) first, up to
        ADMIT_BATCH of them in one transaction: this one thread waits for the writer lock once per batch,
        not once per execution behind every step of a busy server (~27 ms each there; bench/README.md)."""
        while not self.stopping.is_set():
            with self._lock:
                batch: _Admitted = []
                while len(batch) < ADMIT_BATCH and self._queue and self._slot_free_locked():
                    _, _, eid = heapq.heappop(self._queue)
                    if eid not in self._queued:
                        continue
                    self._queued.discard(eid)
                    self._running.add(eid)
                    batch.append((eid, self._load_locked(eid)))
            if not batch:
                return
            self._begin_admitted(batch)

    def _begin_admitted(self, batch: _Admitted) -> None:
        """Begin admitted executions in one transaction. If it fails, none has begun: each is forgotten (to
        be read afresh) and queued again, for the next round of admission (at once when the failure was
        one run's execution moved to another replica: that run is dropped).

        Every run's lock is taken before the writer lock, in the order every checkpoint takes them (a cancel
        or a signal holds its run's lock while it waits to write): the other order deadlocks with them. No
        other thread holds two runs' locks, so taking them in turn is safe."""
        begun: _Callbacks = []
        idle = [eid for eid, run in batch if run is None]
        runs = [(eid, run) for eid, run in batch if run is not None]
        try:
            with ExitStack() as locked:
                for _, r in runs:
                    locked.enter_context(r.lock)
                try:
                    with self.db.write(group=True) as tx:
                        for eid, r in runs:
                            committed = r.begin_in(tx, None, expect=(QUEUED, PENDING))
                            if committed is None:
                                idle.append(eid)
                            else:
                                begun.append(committed)
                except BaseException:
                    for _, r in runs:
                        r.abandon()  # not committed: its deadline goes (under its lock, not the engine's)
                    raise
        except BaseException as exc:
            # One run's execution claimed by another replica (Fenced) rolled back the batch: that run is
            # dropped (never queued here again), the others go back to the queue and are admitted at once.
            moved = next((r for eid, r in runs if isinstance(exc, Fenced) and eid == exc.execution_id), None)
            with self._lock:
                for eid, run in batch:
                    self._running.discard(eid)
                    if run is not None:
                        if self._runs.get(eid) is run:
                            del self._runs[eid]
                        if run is not moved:
                            self._enqueue_locked(eid, int(run.priority), run.create_time)
            if moved is None:
                raise
            assert isinstance(exc, Fenced)
            moved.drop(exc)
            return
        if idle:
            with self._lock:
                self._running.difference_update(idle)
        for committed in begun:
            committed()

    def _claim(self) -> None:
        """Shared database: take over the executions of dead members (their lease ran out), then claim
        unowned queued executions within this replica's fair share and its free slots."""
        o = self.ownership
        now = time.monotonic()
        if now >= self._next_takeover:  # a few times per member timeout: leases expire no faster
            self._next_takeover = now + o.member_timeout / 8
            with self.db.write() as tx:
                orphans = self.store.claim_orphans(tx, self.me, o.alive_since(), 64)
                self.events.append(tx, [self._moved(r) for r in orphans])
            for r in orphans:
                log.warning(
                    "workflow %s: taken over from replica %s (its lease expired), epoch %d",
                    r["id"],
                    r["previous_owner"],
                    r["epoch"],
                )
            if orphans:
                by_owner = sorted({r["previous_owner"] for r in orphans})
                self._continue(
                    orphans,
                    f"taken over from replica {', '.join(by_owner)} (its lease expired)",
                    {r["id"]: r["previous_owner"] for r in orphans},
                )
                if len(orphans) == 64:
                    self._next_takeover = now  # more to take: again at once
        with self._lock:
            free = self.limit() - self._busy_locked() - len(self._queued)
        if free <= 0:
            return
        members, running, waiting = self.store.load(None, o.alive_since())
        want = min(free, fair_share(members, running, self.me, waiting)) if waiting else 0
        if want <= 0:
            return
        with self.db.write() as tx:
            claimed = self.store.claim_queued(tx, self.me, want)
        with self._lock:
            for r in claimed:
                self._enqueue_locked(r["id"], r["priority"], r["create_time"])

    def _follow_cluster(self, follower: Any) -> None:
        """Shared database: react to other replicas' events: a queued execution to claim, a signal for a
        run of this replica, an execution of this replica claimed by another (its run here is dropped)."""
        while not self.stopping.is_set():
            try:
                events = follower.take(1.0)
            except Exception:  # closed at stop
                return
            for e in events:
                try:
                    self._on_cluster_event(e)
                except Exception:
                    log.exception("workflow cluster event %s failed", e.type)

    def _on_cluster_event(self, e: Event) -> None:
        data = e.data if isinstance(e.data, dict) else {}
        eid = data.get("execution_id", "")
        if e.type == "workflow.execution.queued":
            self._wake_admission()
            return
        with self._lock:
            run = self._runs.get(eid)
        if run is None:
            return
        if e.type == "workflow.execution.moved" and int(data.get("epoch", 0)) > run.epoch:
            run.drop(
                Fenced(eid, run.epoch, f"claimed by replica {data.get('owner')} at epoch {data.get('epoch')}")
            )
        elif e.type == "workflow.signal.received":
            sig = self.signals.get(data.get("signal_id", ""))
            if sig is not None:
                run.deliver(sig)

    def check_budget(self, execution_id: str, used: TokenUsage) -> None:
        """For a step's agent about to make another model call: ResourceExhausted (BUDGET_EXCEEDED) when
        the execution's usage plus what the step has used so far reaches a limit of its budget."""
        with self._lock:
            run = self._runs.get(execution_id)
        if run is not None:
            enforce_budget(run.template.budget, run.usage + used)

    def finished(self, run: ExecutionRun) -> None:
        """Called by a run that reached a terminal status: free its slot, record it, admit the next."""
        with self._lock:
            self._runs.pop(run.id, None)
            self._running.discard(run.id)
            self._queued.discard(run.id)
            # a freed slot matters only to a queued execution (enqueueing wakes admission itself), or on a
            # shared database to one another replica queued, which admission claims
            wanted = bool(self._queued) or self.ownership.shared
        if wanted:
            self._wake_admission()
        self.metrics.workflow_finished(run.status, run.run_elapsed, template=run.template_name)
        if run.status in ("failed", "timed_out"):
            token = otel_context.attach(context_from(run.traceparent)) if run.traceparent else None
            try:  # recorded in the execution's trace
                self.record_error(
                    "WORKFLOW_" + run.status.upper(),
                    f"workflow {run.id} ({run.template_name}) {run.status}: {run.error_message}",
                    correlation_id=run.correlation_id,
                    details={"execution_id": run.id},
                )
            finally:
                if token is not None:
                    otel_context.detach(token)

    def step_state(self, run: ExecutionRun, rec: StepRecord) -> _KeyValues:
        return self.requirements.step_completed(run, rec)

    def end_state(self, run: ExecutionRun) -> _KeyValues:
        return self.requirements.finished(run)

    def write_state(self, tx: Tx, values: _KeyValues) -> None:
        self.requirements.write_in(tx, values)


def _watch_filter(correlation_id: str, terminal_only: bool) -> EventFilter:
    return EventFilter(types=_TERMINAL_TYPES if terminal_only else (), correlation_id=correlation_id)


def _own(follower: Follower[Event], execution_id: str) -> tuple[_Only, Callable[[Event], bool]]:
    """The follower of an execution's correlation id, keeping only its own events, and the predicate of
    its last one."""

    def mine(e: Event) -> bool:  # a correlation id given at start may be shared with other work
        other = e.data.get("execution_id") if isinstance(e.data, dict) else None
        return not other or other == execution_id

    def is_last(e: Event) -> bool:
        return e.type in TERMINAL_EVENTS and e.data.get("execution_id") == execution_id

    return _Only(follower, mine), is_last


class _Only:
    """A follower that skips the items `keep` rejects (same take/close/last as Follower)."""

    def __init__(self, follower: Follower[Event], keep: Any):
        self.follower, self.keep = follower, keep

    @property
    def last(self) -> int:
        return self.follower.last

    def take(self, timeout: float | None = None, limit: int = 500) -> list[Event]:
        while True:
            items = self.follower.take(timeout, limit)
            if not items:
                return items
            kept = [e for e in items if self.keep(e)]
            if kept:
                return kept

    def wake(self) -> None:
        self.follower.wake()

    def close(self) -> None:
        self.follower.close()


def _check_common(request_id: str, labels: dict[str, str], correlation_id: str) -> None:
    problems: list[FieldViolation] = []
    if len(request_id) > MAX_REQUEST_ID:
        problems.append(FieldViolation("request_id", f"at most {MAX_REQUEST_ID} characters"))
    if len(labels) > MAX_LABELS:
        problems.append(FieldViolation("labels", f"at most {MAX_LABELS} labels"))
    for k, v in labels.items():
        if not k or len(k) > 128 or len(v) > 1024:
            problems.append(
                FieldViolation(f"labels[{k}]", "label keys are 1..128 characters, values at most 1024")
            )
    if len(correlation_id) > 128:
        problems.append(FieldViolation("correlation_id", "at most 128 characters"))
    if problems:
        raise InvalidArgument(problems[0].field, problems[0].description, more=problems[1:])


def _digest(*parts: Any) -> str:
    raw = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()
