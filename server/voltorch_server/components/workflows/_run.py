"""One execution in motion: the DAG scheduler of a workflow.

All state changes happen under the run's lock and are checkpointed (step rows + execution row + events in
one transaction) before anything depends on them, so a restarted server rebuilds the run from SQLite and
continues: finished steps are never run again, an in-flight attempt re-attaches to its coordination
(idempotent request id `<execution>/<step>/<attempt>`, coordination id checkpointed before waiting).
Attempts block in a shared thread pool; backoffs and deadlines are timers, not sleeping threads.

One commit per step transition when the agent is in-process (offline, function, LLM): an attempt's
coordination is written in the checkpoint that starts the attempt (CoordinationEngine.prepare/submit_in),
so the step row names its coordination from the first commit on; when the engine gives the task to an
in-process agent at once, the attempt runs that agent itself on the agent pool (one hand-off per chain,
not one per step) and commits the agent's outcome, the coordination's end, the step's checkpoint and the
start of the steps that became ready (with their coordinations) in one transaction. Remote workers and
tasks that had to queue keep the engine's own commits: the attempt waits for the coordination as before.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from opentelemetry import trace

from ...agents.base import NO_USAGE, TokenUsage
from ...errors import ResourceExhausted, VoltorchError
from ...frozen import made
from ...handoffs import handed_off
from ...metrics import Metrics
from ...priority import Priority
from ...storage import Database, Tx
from ...telemetry import context_from, current_trace, internal_span
from ..coordination import TERMINAL as COORDINATION_TERMINAL
from ..coordination import CoordinationEngine, InlineTask, Moved, Placed, Prepared, TaskError, evaluate
from ..events import EventLog, prepare_own
from ..events import Prepared as PreparedEvent
from ..shared import Timer, TimerQueue
from ._budget import enforce
from ._executions import (
    CANCELLED,
    COMPLETED,
    FAILED,
    PAUSED,
    PENDING,
    RETRYING,
    RUNNING,
    SKIPPED,
    STEP_DONE,
    TERMINAL,
    TIMED_OUT,
    ExecutionStore,
    StepRecord,
)
from ._ownership import Fenced
from ._signals import Signal, SignalStore
from ._steps import (
    AgentCall,
    AttemptContext,
    AttemptResult,
    coordination_request,
    item_order,
    items_of,
    run_attempt,
)
from ._steps import outcome as outcome_of
from ._timer_store import SLEEP, START_AFTER, TIMEOUT, TimerRow, TimerStore
from ._waits import WaitingFor, approval_outcome, approval_timed_out, wait_outcome
from .templates import (
    DEFAULT_STEP_TIMEOUT,
    WAITS,
    AgentTaskSpec,
    ApprovalSpec,
    ConditionSpec,
    CoordinationSpec,
    FanOutSpec,
    Scope,
    SleepSpec,
    StepSpec,
    StepView,
    WaitSpec,
    build_graph,
    loads,
    render,
    render_value,
)

MOVED = "moved"  # in memory only: another replica claimed the execution (see _ownership.py)
STOPPED = TERMINAL | {MOVED}  # a run in these makes no further progress here
log = logging.getLogger("voltorch.workflows")

MAX_OUTPUT = 1 << 20


def _traced(ctx: AttemptContext, traceparent: str) -> AttemptContext:
    """The attempt's context under the step's span (made only when an attempt runs outside this thread)."""
    return AttemptContext(**{**ctx.__dict__, "traceparent": traceparent}) if traceparent else ctx


class Readiness(StrEnum):
    """The verdict on a step whose turn may have come."""

    WAIT = "wait"
    SKIP = "skip"
    RUN = "run"


WAIT, SKIP, RUN = Readiness.WAIT, Readiness.SKIP, Readiness.RUN


@dataclass
class _Batch:
    steps: dict[str, StepRecord] = field(default_factory=dict)
    events: list[PreparedEvent] = field(default_factory=list)
    execution: dict[str, Any] = field(default_factory=dict)
    jobs: list[tuple] = field(default_factory=list)
    after: list[Callable[[], None]] = field(default_factory=list)
    ops: list[Callable[[Tx], None]] = field(default_factory=list)  # more writes of the same checkpoint
    state: list[tuple[str, Any]] = field(default_factory=list)  # state keys written with it (last)

    @staticmethod
    def new() -> _Batch:
        """An empty batch (one per reaction: made without the default factories' calls)."""
        return made(_Batch, steps={}, events=[], execution={}, jobs=[], after=[], ops=[], state=[])


_jobs = threading.local()  # .pending: attempts made ready by the attempt running on this pool thread


def _run_jobs(job: tuple | None, agent_pool: bool = False) -> None:
    """A pool task: run an attempt, then (on the same thread) the first attempt it made ready that belongs
    on this pool; the others go to their pools. Saves a thread hand-off per step of a chain. On the agent
    pool (`agent_pool`) only attempts whose agent runs inline continue here: a thread of that pool never
    waits for a coordination other threads of it must run."""
    _jobs.pending = []
    try:
        while job is not None:
            run, *args = job
            run._attempt_thread(*args)
            pending, _jobs.pending = _jobs.pending, []
            job = None
            for extra in pending:
                if (
                    job is None
                    and _inline(extra) is not None
                    and agent_pool
                    or job is None
                    and _inline(extra) is None
                    and not agent_pool
                ):
                    job = extra
                else:
                    extra[0]._pool_submit(extra)
    finally:
        _jobs.pending = None


class _StepViews(Mapping[str, StepView]):
    """What a step's placeholders may read of the run's other steps, made only for the ones they name (most
    steps name none: a view of every step for every attempt was work for nothing)."""

    def __init__(self, records: dict[str, StepRecord]):
        self._records = records

    def __getitem__(self, sid: str) -> StepView:
        r = self._records[sid]
        if r.parent_id:  # a fan-out's element is not a step of the template
            raise KeyError(sid)
        return StepView(r.output, r.structured, r.error.message if r.error else "")

    def __iter__(self) -> Iterator[str]:
        return (sid for sid, r in self._records.items() if not r.parent_id)

    def __len__(self) -> int:
        return sum(1 for r in self._records.values() if not r.parent_id)


def _inline(job: tuple) -> InlineTask | None:
    """The in-process agent task a job runs in its own thread, if its coordination was placed on one."""
    placing: _Placing | None = job[6]
    return placing.placed.inline if placing is not None and placing.placed is not None else None


@dataclass
class _Placing:
    """An attempt's coordination, written in the checkpoint that starts the attempt (CoordinationEngine.
    prepare / submit_in): `placed` is set once written."""

    prepared: Prepared
    placed: Placed | None = None


class RunHost(Protocol):
    """What a run needs of the engine that hosts it, and nothing more: where it saves (db, store,
    events), what it calls (coordination), where it waits (timers, pool), when to stop, and whom it
    tells about finished steps and its own end."""

    @property
    def db(self) -> Database: ...
    @property
    def store(self) -> ExecutionStore: ...
    @property
    def events(self) -> EventLog: ...
    @property
    def metrics(self) -> Metrics: ...
    @property
    def coordination(self) -> CoordinationEngine: ...
    @property
    def timers(self) -> TimerQueue: ...
    @property
    def pool(self) -> ThreadPoolExecutor: ...
    @property
    def stopping(self) -> threading.Event: ...
    @property
    def signals(self) -> SignalStore: ...
    @property
    def timer_store(self) -> TimerStore: ...

    def finished(self, run: ExecutionRun) -> None: ...
    def lost(self, run: ExecutionRun, fenced: Fenced) -> None: ...
    def reload(self, run: ExecutionRun, exc: BaseException) -> None: ...

    def recording(self, run: ExecutionRun) -> AbstractContextManager[bool]: ...

    def wake_admission(self) -> None: ...

    def step_state(self, run: ExecutionRun, rec: StepRecord) -> list[tuple[str, Any]]:
        """The state keys (key, value) a finished top-level step writes with its checkpoint."""
        ...

    def end_state(self, run: ExecutionRun) -> list[tuple[str, Any]]:
        """The state keys the run's end (its status set) writes with its checkpoint."""
        ...

    def write_state(self, tx: Tx, values: list[tuple[str, Any]]) -> None:
        """Write state keys in a checkpoint's transaction (after its other writes)."""
        ...


class ExecutionRun:
    def __init__(self, host: RunHost, row: Any, records: list[StepRecord], *, new: bool = False):
        """`new`: an execution being inserted (it has no durable timers to read)."""
        self.host = host
        self.id: str = row["id"]
        self.template_name: str = row["template_name"]
        self.template_version: int = row["template_version"]
        self.template = loads(row["definition"])
        self.graph = build_graph(self.template.steps)
        self.specs = {s.id: s for s in self.template.steps}
        self.params: dict[str, Any] = json.loads(row["parameters"])
        self.priority = Priority(row["priority"])
        self.create_time: float = row["create_time"]
        self.correlation_id: str = row["correlation_id"]
        self.traceparent: str = row["traceparent"]
        self.status: str = row["status"]
        self.epoch: int = row["epoch"]  # every checkpoint is written only while the row is at this epoch
        self.start_time: float | None = row["start_time"]
        self.run_elapsed: float = row["run_elapsed"]
        self.run_since: float | None = row["run_since"]
        if self.run_since is not None:  # recovered after a crash: running time ends at the last checkpoint
            self.run_elapsed += max(row["update_time"] - self.run_since, 0.0)
            self.run_since = None
        self.records = {r.step_id: r for r in records}
        self.children: dict[str, list[str]] = {}
        for r in sorted(records, key=lambda r: r.position):
            if r.parent_id:
                self.children.setdefault(r.parent_id, []).append(r.step_id)
        self.child_deps: dict[str, list[str]] = {}
        for parent, kids in self.children.items():
            self._index_child_deps(parent, kids)
        self.usage = self._total_usage()
        self.recovered = False  # loaded after a restart (set by the engine)
        self.error_message = ""
        self.lock = threading.RLock()
        self._inflight: set[str] = set()
        self._retry_timers: dict[str, Timer] = {}
        self._deadline: Timer | None = None
        self._batch: _Batch | None = None
        # durable timers of this run's steps (sleep, start_after, wait timeouts) and their armed callbacks
        self.timer_rows = (
            {} if new else {(t.step_id, t.kind): t for t in host.timer_store.of_execution(self.id)}
        )
        self._wait_timers: dict[tuple[str, str], Timer] = {}
        self._consumed: set[str] = set()  # signal ids consumed by this run (some perhaps not yet written)
        # Stopped here: another replica claimed the execution, or a checkpoint failed (the engine loads the
        # execution again): this run starts nothing more, and its writes are fenced.
        self.fenced = False
        self._stop_cause: BaseException | None = None  # the failed checkpoint's exception (broken())

    # -- usage and budget --------------------------------------------------------------------------------

    def _total_usage(self) -> TokenUsage:
        """The sum over the steps that ran attempts (fan-out parents hold their children's sum)."""
        return sum((r.usage for r in self.records.values() if r.step_id not in self.children), NO_USAGE)

    def _add_usage(self, rec: StepRecord, used: TokenUsage) -> list[StepRecord]:
        """Count an attempt's usage on its step (and fan-out parent) and the execution; the changed steps."""
        if used is NO_USAGE or used == NO_USAGE:
            return []
        rec.usage = rec.usage + used
        changed = [rec]
        if rec.parent_id:
            parent = self.records[rec.parent_id]
            parent.usage = sum((self.records[k].usage for k in self.children[rec.parent_id]), NO_USAGE)
            changed.append(parent)
        self.usage = self.usage + used
        self.host.metrics.record_usage(used, template=self.template_name)
        return changed

    def _budget_reached(self) -> bool:
        try:
            enforce(self.template.budget, self.usage)
        except ResourceExhausted:
            return True
        return False

    def _over_budget(self) -> bool:
        """Fail the execution when its usage has reached a limit of its budget (True: it did)."""
        try:
            enforce(self.template.budget, self.usage)
        except ResourceExhausted as exc:
            self.terminate(
                FAILED,
                TaskError(exc.reason, exc.message, False),
                "workflow.execution.failed",
                budget=exc.metadata,
                usage=self.usage.to_dict(),
            )
            return True
        return False

    def _work_left(self) -> bool:
        """Whether a step is under way (running, waiting, due for a retry; a fan-out by its elements), whose
        calls the budget reached must stop now. Steps yet to start are not: advance() skips those on a branch
        not taken and evaluates conditions, which make no call, and `_attempt` fails the run on the budget
        before any further call. So a run whose last call used up its budget completes."""
        children = self.children
        for rec in self.records.values():
            if rec.status in STEP_DONE or rec.status == PENDING or rec.step_id in children:
                continue
            return True
        return False

    # -- persistence -------------------------------------------------------------------------------------

    def _event(self, type_: str, **data: Any) -> PreparedEvent:
        failed = type_.endswith(("failed", "timed_out"))
        return prepare_own(
            type_,
            "workflows",
            {"execution_id": self.id, "template": self.template_name, **data},
            correlation_id=self.correlation_id,
            traceparent=self.traceparent,
            priority=Priority.HIGH if failed else Priority.NORMAL,
        )

    def _commit(
        self,
        steps: Sequence[StepRecord] = (),
        events: Sequence[PreparedEvent] = (),
        ops: Sequence[Callable[[Tx], None]] = (),
        state: Sequence[tuple[str, Any]] = (),
        **execution: Any,
    ) -> None:
        """Checkpoint: at once, or at the end of the enclosing _transaction() (one write for all)."""
        b = self._batch
        if b is None:
            self._write(steps, events, execution, ops, state=state)
            return
        for st in steps:
            b.steps[st.step_id] = st
        b.events.extend(events)
        b.execution.update(execution)
        b.ops.extend(ops)
        b.state.extend(state)

    def _write(
        self,
        steps: Any,
        events: Sequence[PreparedEvent],
        execution: dict[str, Any],
        ops: Sequence[Callable[[Tx], None]] = (),
        tx: Tx | None = None,
        *,
        state: Sequence[tuple[str, Any]] = (),
    ) -> None:
        """One checkpoint, fenced: the execution row is updated last and only at this run's epoch, so the
        whole transaction rolls back (Fenced) when another replica has claimed the execution since. The
        state keys it writes come after that (on PostgreSQL they lock the state's revision row: the last
        lock before the event log's head, as state's own writes take them)."""
        if tx is None:
            try:  # may share its COMMIT with other steps' (storage/sqlite/db.py); returns once committed
                with self.host.db.write(group=True) as tx:
                    self._write(steps, events, execution, ops, tx, state=state)
            except Fenced as fenced:
                self.drop(fenced)
            except Exception as exc:
                if isinstance(exc, Moved):  # a coordination its dispatch saved is another replica's now
                    self.host.coordination.forget(exc)
                self.broken(exc)
                raise
            return
        host = self.host
        if steps:
            host.store.save_steps(tx, self.id, steps)
        if events:  # before the ops' own events: a step starts before the coordination it requests
            host.events.append(tx, list(events))
        for op in ops:
            op(tx)
        if not host.store.update(tx, self.id, epoch=self.epoch, update_time=time.time(), **execution):
            raise Fenced(self.id, self.epoch)
        if state:
            host.write_state(tx, list(state))

    def _write_batch(self, b: _Batch, tx: Tx | None = None) -> None:
        """The checkpoint a batch gathered, if it gathered any."""
        if b.steps or b.events or b.execution or b.ops or b.state:
            self._write(list(b.steps.values()), b.events, b.execution, b.ops, tx, state=b.state)

    def abandon(self) -> None:
        """A run whose start was not committed (or runs later, loaded afresh): its timers go."""
        with self.lock:
            self._cancel_timers()

    def drop(self, fenced: Fenced) -> None:
        """Another replica owns the execution now: stop everything of this run (its timers, what it would
        start next); attempts in flight finish and their checkpoints are fenced in turn."""
        if self._stop_here():
            self.host.lost(self, fenced)

    def broken(self, exc: BaseException) -> None:
        """A checkpoint of this run failed to commit (the database refused or lost it): what the run holds
        in memory is ahead of the database now. It stops here as a fenced run does, and the engine loads
        the execution again from its last checkpoint (`WorkflowEngine.reload`)."""
        if self._stop_here():
            self._stop_cause = exc
            self.host.reload(self, exc)

    def superseded(self) -> None:
        """A run of this execution loaded at a newer epoch replaces this one (the engine has dropped it):
        it stops here, as a fenced run does, its writes fenced by the epoch."""
        self._stop_here()

    def _stop_here(self) -> bool:
        """Stop everything of this run (once: False if it had stopped already)."""
        with self.lock:
            if self.fenced:
                return False
            self.fenced = True
            self.status = MOVED
            self._cancel_timers()
        return True

    @contextmanager
    def _transaction(self, *, open_tx: bool = False) -> Iterator[Tx | None]:
        """Hold the lock and gather the checkpoints of one reaction (a step finished, a resume, ...) into one
        write; attempts and callbacks it produced start only after that write. `open_tx`: the write's
        transaction is opened first and yielded, for writes that must precede what the reaction decides
        (an inline agent's coordination outcome); if the block raises, nothing of it is written."""
        with self.lock:
            if self._batch is not None:
                assert not open_tx
                yield None
                return
            b = self._batch = _Batch.new()
            if open_tx:
                try:
                    with self.host.db.write(group=True) as tx:  # a COMMIT shared with other steps'
                        yield tx
                        self._batch = None
                        self._write_batch(b, tx)
                except Fenced as fenced:
                    self.drop(fenced)
                    return
                except Moved:  # its caller drops the run (the coordination moved with the execution)
                    raise
                except Exception as exc:
                    self.broken(exc)
                    raise
                finally:
                    self._batch = None
            else:
                try:
                    yield None
                finally:
                    self._batch = None
                    self._write_batch(b)
                    for job in b.jobs if not self.fenced else ():
                        self._dispatch(job)
            if open_tx:
                for job in b.jobs:
                    self._dispatch(job)
        if not self.fenced:  # a fenced checkpoint was not written: nothing follows from it
            self._run_after(b.after)

    def _run_after(self, callbacks: list[Callable[[], None]]) -> None:
        """The after-checkpoint callbacks, each on its own: one failing does not stop the rest."""
        for fn in callbacks:
            try:
                fn()
            except Exception:
                log.exception("workflow %s: after-checkpoint callback failed", self.id)

    def _after(self, fn: Callable[[], None]) -> None:
        """Run fn once the current checkpoint is written (at once outside a transaction)."""
        if self._batch is None:
            fn()
        else:
            self._batch.after.append(fn)

    def _step_event(self, type_: str, rec: StepRecord, **data: Any) -> PreparedEvent:
        extra = {"parent_id": rec.parent_id} if rec.parent_id else {}
        outcome = type_.rsplit(".", 1)[-1]
        if outcome in ("completed", "failed", "retrying"):
            self.host.metrics.record_step(
                time.time() - (rec.start_time or time.time()), outcome, kind=self._kind_name(rec)
            )
        return self._event(type_, step_id=rec.step_id, name=rec.name, attempt=rec.attempts, **extra, **data)

    # -- lifecycle (called by the engine, under no other lock) ------------------------------------------

    def begin(self, event: str | None, *, expect: tuple[str, ...] = (), **data: Any) -> bool:
        """Become RUNNING (admitted, resumed or recovered): re-attach in-flight attempts, arm timers, advance.
        False (and nothing done) when terminal, or when `expect` is given and the status is not in it."""
        with self._transaction():
            return self._begin(event, expect, data)

    def begin_in(
        self, tx: Tx, event: str | None, *, expect: tuple[str, ...] = (), **data: Any
    ) -> Callable[[], None] | None:
        """begin() inside the caller's transaction (the one that writes the new execution, or admits a
        batch of queued ones: its start and its first steps' commit with it); returns what to call once
        that transaction has committed, or None when it did not begin (see begin's `expect`)."""
        with self.lock:
            b = self._batch = _Batch.new()
            try:
                if not self._begin(event, expect, data):
                    return None
            finally:
                self._batch = None
            self._write_batch(b, tx)

        def committed() -> None:
            with self.lock:
                for job in b.jobs:
                    self._dispatch(job)
            self._run_after(b.after)

        return committed

    def _begin(self, event: str | None, expect: tuple[str, ...], data: dict[str, Any]) -> bool:
        if self.status in STOPPED or (expect and self.status not in expect):
            return False
        now = time.time()
        first = self.start_time is None
        self.status = RUNNING
        self.run_since = now
        self.start_time = self.start_time or now
        events = [self._event(event, **data)] if event else []
        if first and event != "workflow.execution.started":
            events.insert(0, self._event("workflow.execution.started"))
        self._commit(
            events=events,
            status=RUNNING,
            run_since=now,
            start_time=self.start_time,
            run_elapsed=self.run_elapsed,
        )
        self._arm_deadline()
        self._reattach()
        self.advance()
        return True

    def set_queued(self, event: str | None, **data: Any) -> None:
        with self._transaction():
            if self.status in STOPPED:
                return
            self._stop_clock()
            self.status = "queued"
            self._commit(
                events=[self._event(event, status="queued", **data)] if event else [],
                status="queued",
                run_since=None,
                run_elapsed=self.run_elapsed,
            )

    def pause(self, reason: str) -> str:
        """Pause; returns the status it had. Running attempts go on; nothing new starts."""
        with self._transaction():
            was = self.status
            if was in STOPPED or was == PAUSED:
                return was
            self._stop_clock()
            self.status = PAUSED
            self._commit(
                events=[self._event("workflow.execution.paused", reason=reason, previous_status=was)],
                status=PAUSED,
                run_since=None,
                run_elapsed=self.run_elapsed,
            )
            return was

    def cancel(self, reason: str) -> bool:
        return self.terminate(
            CANCELLED,
            TaskError("CANCELLED", reason or "cancelled by request"),
            "workflow.execution.cancelled",
            reason=reason,
        )

    def _stop_clock(self) -> None:
        if self.run_since is not None:
            self.run_elapsed += max(time.time() - self.run_since, 0.0)
            self.run_since = None
        if self._deadline:
            self._deadline.cancel()
            self._deadline = None

    def terminate(self, status: str, error: TaskError, event: str, **data: Any) -> bool:
        """End the execution (FAILED, CANCELLED, TIMED_OUT): unfinished steps become CANCELLED and their
        coordinations are cancelled."""
        with self._transaction():
            if self.status in STOPPED:
                return False
            now = time.time()
            self._stop_clock()
            changed, running = [], []
            for r in self.records.values():
                if r.status in (PENDING, RUNNING, RETRYING):
                    if r.status == RUNNING and r.coordination_id:
                        running.append(r.coordination_id)
                    r.status, r.end_time, r.next_retry_time = CANCELLED, now, None
                    changed.append(r)
            self.status = status
            self.error_message = error.message
            self._commit(
                changed,
                [self._event(event, status=status, error=error.to_dict(), **data)],
                state=self.host.end_state(self),
                status=status,
                error=error.to_dict(),
                end_time=now,
                run_since=None,
                run_elapsed=self.run_elapsed,
            )
            self._cancel_timers()
            reason = f"workflow execution {status}: {error.message}"
            self._after(lambda: self._cancel_coordinations(running, reason))
            self._after(lambda: self.host.finished(self))
        return True

    def _cancel_coordinations(self, ids: list[str], reason: str) -> None:
        for cid in ids:
            try:
                self.host.coordination.cancel(cid, reason)
            except Exception:  # already finished or gone
                pass

    def _cancel_timers(self) -> None:
        for t in (*self._retry_timers.values(), *self._wait_timers.values()):
            t.cancel()
        self._retry_timers.clear()
        self._wait_timers.clear()
        if self._deadline:
            self._deadline.cancel()
            self._deadline = None

    def _arm_deadline(self) -> None:
        if self._deadline:
            self._deadline.cancel()
        remaining = self.template.run_timeout - self.run_elapsed
        self._deadline = self.host.timers.after(remaining, self._deadline_due)

    def _deadline_due(self) -> None:
        with self._transaction():
            if self.status != RUNNING or self.run_since is None:
                return
            elapsed = self.run_elapsed + time.time() - self.run_since
            timeout = self.template.run_timeout
            if elapsed < timeout - 0.001:
                self._arm_deadline()
                return
        self.terminate(
            TIMED_OUT,
            TaskError("TIMEOUT", f"the workflow exceeded its timeout of {timeout:g}s", False),
            "workflow.execution.timed_out",
        )

    # -- scheduling ----------------------------------------------------------------------------------------

    def advance(self) -> None:
        """Start every step whose dependencies allow it, skip what cannot run, finish when all are done.
        In a graph whose order is topological one pass is enough: starting or skipping a step can only
        make ready the steps after it, which the same pass comes to (a retry falling due meanwhile has
        its own timer); otherwise passes repeat until one changes nothing."""
        with self._transaction():
            progress = True
            again = not self.graph.topological
            while progress and self.status == RUNNING:
                progress = False
                now = time.time()
                for sid in self.graph.order:
                    if self.status != RUNNING:
                        return
                    rec = self.records[sid]
                    if rec.status == PENDING:
                        verdict, why = self._readiness(sid)
                        if verdict == WAIT or (verdict == RUN and self._delayed(sid)):
                            continue
                        progress = True
                        if verdict == SKIP:
                            self._skip(rec, why)
                        else:
                            self._start(sid)
                    elif (
                        rec.status == RETRYING
                        and (rec.next_retry_time or 0) <= now
                        and sid not in self._inflight
                    ):
                        progress = True
                        self._attempt(sid)
                    elif rec.status == RUNNING and sid in self.children:
                        progress = self._pump(sid) or progress
                progress = progress and again
            # From the end: the last steps are the last to finish, the first one not done ends the look. A
            # loop, not all() over a generator: one left unfinished is closed by throwing GeneratorExit in.
            if self.status == RUNNING:
                records = self.records
                for s in reversed(self.graph.order):
                    if records[s].status not in STEP_DONE:
                        break
                else:
                    self._complete()

    def _readiness(self, sid: str) -> tuple[str, str]:
        deps = self.graph.deps[sid]
        for d in deps:
            r = self.records[d]
            if r.status in (COMPLETED, SKIPPED) or (r.status == FAILED and self.specs[d].allow_failure):
                continue
            return WAIT, ""
        for cond_id, branch in self.graph.branches[sid]:
            c = self.records[cond_id]
            if c.status != COMPLETED:
                return SKIP, f"condition {cond_id} did not run"
            if bool(c.structured) != (branch == "then"):
                other = "else" if branch == "then" else "then"
                return SKIP, f"condition {cond_id} took the {other} branch"
        if deps:
            for d in deps:  # (a loop: see advance)
                if self.records[d].status != SKIPPED:
                    break
            else:
                return SKIP, "every dependency was skipped"
        return RUN, ""

    def _skip(self, rec: StepRecord, why: str) -> None:
        rec.status, rec.end_time = SKIPPED, time.time()
        self._commit([rec], [self._step_event("workflow.step.skipped", rec, reason=why)])

    def _start(self, sid: str) -> None:
        kind = self.specs[sid].kind
        if isinstance(kind, ConditionSpec):
            self._evaluate(sid, kind)
        elif isinstance(kind, FanOutSpec):
            self._expand(sid, kind)
        elif isinstance(kind, WAITS):
            self._begin_wait(sid)
        elif isinstance(kind, SleepSpec):
            self._begin_sleep(sid, kind)
        else:
            self._attempt(sid)

    def _evaluate(self, sid: str, cond: ConditionSpec) -> None:
        src = self.records[cond.source_step_id]
        value = evaluate(cond.predicate, src.output, src.structured)
        rec = self.records[sid]
        now = time.time()
        rec.status, rec.attempts, rec.start_time, rec.end_time = COMPLETED, 1, now, now
        rec.output, rec.structured = ("true" if value else "false"), value
        self._commit(
            [rec],
            [
                self._step_event("workflow.step.started", rec, kind="condition"),
                self._step_event("workflow.step.completed", rec, result=value, duration=0.0),
            ],
        )

    def _expand(self, sid: str, fo: FanOutSpec) -> None:
        rec = self.records[sid]
        src = self.records[fo.items_from_step_id]
        items, why = items_of(src.output, src.structured, fo.items_path)
        if items is None:
            return self._fail_now(rec, TaskError("INVALID_ITEMS", why))
        if len(items) > fo.item_limit:
            if not fo.truncate_items:
                return self._fail_now(
                    rec, TaskError("TOO_MANY_ITEMS", f"{len(items)} elements; the limit is {fo.item_limit}")
                )
            items = items[: fo.item_limit]
        if fo.item_dependencies:
            order, why = item_order(items)
            if order is None:
                return self._fail_now(rec, TaskError("INVALID_ITEMS", why))
        now = time.time()
        kids = []
        spec = self.specs[sid]
        for i, item in enumerate(items):
            title = item.get("title") if isinstance(item, dict) else None
            name = str(title)[:200] if title else f"{spec.display_name} [{i}]"
            kids.append(StepRecord(step_id=f"{sid}[{i}]", position=i, name=name, parent_id=sid, item=item))
        rec.status, rec.attempts, rec.start_time = RUNNING, 1, now
        self._commit(
            [rec, *kids], [self._step_event("workflow.step.started", rec, kind="fan_out", items=len(items))]
        )
        for k in kids:
            self.records[k.step_id] = k
        self.children[sid] = [k.step_id for k in kids]
        self._index_child_deps(sid, self.children[sid])
        self._pump(sid)

    def _index_child_deps(self, parent: str, kids: list[str]) -> None:
        kind = self.specs[parent].kind
        if not (isinstance(kind, FanOutSpec) and kind.item_dependencies):
            return
        order, _ = item_order([self.records[k].item for k in kids])
        for i, k in enumerate(kids):
            self.child_deps[k] = [kids[j] for j in (order or {}).get(i, [])]

    def _pump(self, parent: str) -> bool:
        """Fan-out bookkeeping: start children up to max_parallel, finish the parent when they are done.
        Returns True when the parent finished."""
        prec = self.records[parent]
        fo = self.specs[parent].kind
        assert isinstance(fo, FanOutSpec)
        while prec.status == RUNNING:
            kids = [self.records[k] for k in self.children[parent]]
            failed = next((k for k in kids if k.status == FAILED), None)
            if failed is not None:
                self._fail_fan_out(prec, failed, kids)
                return True
            if all(k.status == COMPLETED for k in kids):
                self._complete_fan_out(prec, kids)
                return True
            if self.status != RUNNING:
                return False
            active = sum(1 for k in kids if k.status in (RUNNING, RETRYING))
            now = time.time()
            started = False
            for k in kids:
                if (
                    k.status == RETRYING
                    and (k.next_retry_time or 0) <= now
                    and k.step_id not in self._inflight
                ):
                    self._attempt(k.step_id)
                    started = True
                elif k.status == PENDING and active < fo.parallel:
                    deps = self.child_deps.get(k.step_id, ())
                    if all(self.records[d].status == COMPLETED for d in deps):
                        self._attempt(k.step_id)
                        active += 1
                        started = True
                if self.status != RUNNING:
                    return False
            if not started:
                return False
        return True

    def _fail_fan_out(self, prec: StepRecord, failed: StepRecord, kids: list[StepRecord]) -> None:
        now = time.time()
        running, changed = [], []
        for k in kids:
            if k.status in (PENDING, RUNNING, RETRYING):
                if k.status == RUNNING and k.coordination_id:
                    running.append(k.coordination_id)
                k.status, k.end_time, k.next_retry_time = CANCELLED, now, None
                changed.append(k)
        err = failed.error or TaskError("FAILED", "element failed")
        prec.error = TaskError(err.code, f"{failed.step_id} ({failed.name}) failed: {err.message}", False)
        prec.status, prec.end_time = FAILED, now
        self._commit(
            [prec, *changed], [self._step_event("workflow.step.failed", prec, error=prec.error.to_dict())]
        )
        self._after(lambda: self._cancel_coordinations(running, "another element of the fan-out failed"))
        if not self.specs[prec.step_id].allow_failure:
            self.terminate(FAILED, prec.error, "workflow.execution.failed", failed_step=prec.step_id)

    def _complete_fan_out(self, prec: StepRecord, kids: list[StepRecord]) -> None:
        prec.structured = [k.structured if k.structured is not None else k.output for k in kids]
        prec.output = "\n\n".join(k.output for k in kids)[:MAX_OUTPUT]
        prec.status, prec.end_time, prec.error = COMPLETED, time.time(), None
        self._commit(
            [prec],
            [
                self._step_event(
                    "workflow.step.completed",
                    prec,
                    items=len(kids),
                    agents=sorted({k.agent_id for k in kids if k.agent_id}),
                    duration=round(prec.end_time - (prec.start_time or prec.end_time), 3),
                )
            ],
            state=self.host.step_state(self, prec),
        )

    def _fail_now(self, rec: StepRecord, error: TaskError) -> None:
        """A step failed without an attempt (bad items, unrenderable task)."""
        now = time.time()
        rec.status, rec.error, rec.end_time = FAILED, error, now
        rec.start_time = rec.start_time or now
        self._commit([rec], [self._step_event("workflow.step.failed", rec, error=error.to_dict())])
        self._after_failure(rec, error)

    def _after_failure(self, rec: StepRecord, error: TaskError) -> None:
        if rec.parent_id:
            self._pump(rec.parent_id)
        elif not self.specs[rec.step_id].allow_failure:
            self.terminate(FAILED, error, "workflow.execution.failed", failed_step=rec.step_id)

    def _complete(self) -> None:
        sinks = self.graph.sinks()
        values = {s: self._value(self.records[s]) for s in sinks}
        if len(sinks) == 1:
            result = values[sinks[0]]
        else:
            result = {s: v for s, v in values.items() if self.records[s].status != SKIPPED}
        now = time.time()
        self._stop_clock()
        self.status = COMPLETED
        self._commit(
            state=self.host.end_state(self),
            events=[
                self._event(
                    "workflow.execution.completed",
                    status=COMPLETED,
                    duration=round(now - (self.start_time or now), 3),
                    steps=len(self.graph.order),
                )
            ],
            status=COMPLETED,
            result=result,
            end_time=now,
            run_since=None,
            run_elapsed=self.run_elapsed,
        )
        self._cancel_timers()
        self._after(lambda: self.host.finished(self))

    @staticmethod
    def _value(rec: StepRecord) -> Any:
        if rec.structured is not None:
            return rec.structured
        return rec.output if rec.status == COMPLETED else None

    # -- attempts --------------------------------------------------------------------------------------------

    def _spec_of(self, rec: StepRecord) -> StepSpec:
        return self.specs[rec.parent_id or rec.step_id]

    def _attempt(self, sid: str) -> None:
        rec = self.records[sid]
        if self._over_budget():  # before the next call, never after
            return
        try:
            call = self._render(rec)
        except Exception as exc:  # a template that cannot be rendered with these values
            return self._fail_now(rec, TaskError("RENDER_ERROR", f"cannot render the step: {exc}"))
        now = time.time()
        rec.attempts += 1
        rec.status, rec.next_retry_time, rec.coordination_id = RUNNING, None, ""
        rec.start_time = rec.start_time or now
        self._retry_timers.pop(sid, None)
        self._commit([rec], [self._step_event("workflow.step.started", rec, kind=self._kind_name(rec))])
        self._submit(rec, call, "")

    def _kind_name(self, rec: StepRecord) -> str:
        if rec.parent_id:
            return "fan_out_item"
        kind = self._spec_of(rec).kind
        return {
            CoordinationSpec: "coordination",
            ConditionSpec: "condition",
            FanOutSpec: "fan_out",
            WaitSpec: "wait",
            ApprovalSpec: "approval",
            SleepSpec: "sleep",
        }.get(type(kind), "agent_task")

    def _reattach(self) -> None:
        """After a restart (or a resume): wait again for attempts that were in flight; re-arm backoffs."""
        for rec in list(self.records.values()):
            if rec.step_id in self._inflight:
                continue
            if rec.status == RUNNING and rec.step_id not in self.children:
                kind = self._spec_of(rec).kind
                if isinstance(kind, ConditionSpec):
                    continue
                if isinstance(kind, (*WAITS, SleepSpec)):
                    self._rewait(rec)
                    continue
                try:
                    call = self._render(rec)
                except Exception as exc:
                    self._fail_now(rec, TaskError("RENDER_ERROR", f"cannot render the step: {exc}"))
                    continue
                self._submit(rec, call, rec.coordination_id)
            elif rec.status == RETRYING and rec.step_id not in self._retry_timers:
                self._arm_retry(rec)

    def _submit(self, rec: StepRecord, call: AgentCall, known_cid: str) -> None:
        spec = self._spec_of(rec)
        ctx = made(  # AttemptContext(...) without its frozen __init__: every field, in order
            AttemptContext,
            request_id=f"wf/{self.id}/{rec.step_id}/{rec.attempts}",
            correlation_id=self.correlation_id,
            priority=self.priority,
            timeout=spec.timeout or DEFAULT_STEP_TIMEOUT,
            traceparent=self.traceparent,
            execution_id=self.id,
            step_id=rec.step_id,
        )
        self._inflight.add(rec.step_id)
        placing = None
        if not known_cid and self._batch is not None:
            placing = self._place(call, ctx)
            if placing is not None:
                known_cid = rec.coordination_id = placing.prepared.id
        job = (self, rec.step_id, rec.attempts, call, ctx, known_cid, placing)
        if self._batch is not None:
            self._batch.jobs.append(job)  # requested only once the step's start is checkpointed
        else:
            self._dispatch(job)

    def _place(self, call: AgentCall, ctx: AttemptContext) -> _Placing | None:
        """Write the attempt's coordination in the checkpoint that starts the attempt (one commit, and the
        step row names its coordination from the start). None when the engine refuses it now (stopped,
        no capable agent, a bad task): the attempt then asks it itself, as run_attempt does."""
        coordination = self.host.coordination
        prepare = getattr(coordination, "prepare", None)
        if prepare is None:
            return None
        try:
            placing = _Placing(prepare(coordination_request(call, ctx)))
        except VoltorchError:
            return None

        def write(tx: Tx) -> None:
            placing.placed = coordination.submit_in(tx, placing.prepared)

        def after() -> None:
            if placing.placed is not None:
                coordination.run_after(placing.placed.after)

        self._commit(ops=(write,))
        self._after(after)
        return placing

    def _dispatch(self, job: tuple) -> None:
        pending = getattr(_jobs, "pending", None)
        if pending is not None:  # on a pool thread finishing an attempt: it may run this next (no hand-off)
            pending.append(job)
        else:
            self._pool_submit(job)

    def _pool_submit(self, job: tuple) -> None:
        """Hand a job to its pool: the coordination engine's agent pool when its agent runs inline (the
        agent's own thread then records the step and goes on with the next), else the workflow pool."""
        if _inline(job) is not None:
            try:
                self.host.coordination.spawn(_run_jobs, job, True)
                handed_off()
                return
            except RuntimeError:  # the agent pool is shut down: wait for the coordination instead
                job = (*job[:6], None)
        try:
            self.host.pool.submit(_run_jobs, job)
            handed_off()
        except RuntimeError:  # the pool is shut down: the server is stopping; recovery resumes it
            with self.lock:
                self._inflight.discard(job[1])

    def _attempt_thread(
        self,
        sid: str,
        attempt: int,
        call: AgentCall,
        ctx: AttemptContext,
        known_cid: str,
        placing: _Placing | None = None,
    ) -> None:
        result: AttemptResult | None
        inline = None
        if placing is not None:
            if placing.placed is None or not placing.placed.written:  # not written: ask as usual
                known_cid = ""
            else:
                inline = placing.placed.inline
        try:
            with internal_span(
                "workflow.step",
                context=context_from(self.traceparent) if self.traceparent else None,
                attributes={
                    "voltorch.execution_id": self.id,
                    "voltorch.step_id": sid,
                    "voltorch.attempt": attempt,
                    "voltorch.correlation_id": self.correlation_id,
                },
            ) as span:
                tp = current_trace().traceparent
                if inline is not None and self._coordination_started(sid, attempt, known_cid):
                    recorded = self._run_inline(sid, attempt, call, inline, tp, span)
                    if not recorded:  # the engine restarted meanwhile: wait for it to run it again
                        self._pool_submit((self, sid, attempt, call, _traced(ctx, tp), known_cid, None))
                    return
                ctx = _traced(ctx, tp)
                result = run_attempt(
                    self.host.coordination,
                    call,
                    ctx,
                    known_coordination_id=known_cid,
                    on_coordination=lambda cid: self._coordination_started(sid, attempt, cid),
                    stop=self.host.stopping,
                )
                if result is not None and result.error is not None:
                    span.set_status(trace.Status(trace.StatusCode.ERROR, result.error.message[:200]))
        except Exception as exc:
            if self._stopped_by(exc, sid, attempt):
                return
            log.exception("workflow %s step %s attempt %d crashed", self.id, sid, attempt)
            result = AttemptResult(error=TaskError("INTERNAL", f"step attempt crashed: {exc!r}", True))
        try:
            with self._transaction():
                self._inflight.discard(sid)
                if result is None or self.host.stopping.is_set():
                    return
                self._attempt_done(sid, attempt, result)
        except Exception as exc:
            if not self._stopped_by(exc, sid, attempt):
                log.exception("workflow %s: recording step %s failed", self.id, sid)

    def _stopped_by(self, exc: Exception, sid: str, attempt: int) -> bool:
        """Whether `exc` is the checkpoint failure that stopped this run (the engine logged why and goes on
        from the last committed checkpoint): then said in one line, not as a crash of the attempt. Any
        other exception keeps its traceback."""
        if exc is not self._stop_cause:
            return False
        log.warning(
            "workflow %s step %s attempt %d: not recorded by this run, which stopped (%s: %s)",
            self.id,
            sid,
            attempt,
            type(exc).__name__,
            exc,
        )
        return True

    def _run_inline(
        self, sid: str, attempt: int, call: AgentCall, inline: InlineTask, tp: str, span: Any
    ) -> bool:
        """Run the attempt's in-process agent in this thread, then commit its coordination's outcome, the
        step's checkpoint and whatever that makes ready in one transaction. False when the coordination
        engine no longer has the task (restarted): it runs it again and the attempt must wait for that."""
        coordination = self.host.coordination
        outcome = coordination.run_inline(inline, tp)
        if outcome is None:
            return False
        with self.host.recording(self) as current:
            if not current:  # the workflow engine stopped (or restarted): record the coordination alone
                with self.host.db.write() as tx:
                    c, after = coordination.complete_in(tx, inline, outcome)
                coordination.run_after(after)
                return c is not None
            try:
                recorded = self._record_inline(sid, attempt, call, inline, outcome, span)
            except Moved as moved:
                coordination.forget(moved)
                if moved.run.execution_id == self.id:  # its coordination was adopted elsewhere: so was it
                    self.drop(Fenced(self.id, self.epoch, "its coordination was adopted by another replica"))
                else:  # another one the outcome's dispatch gave out: only the checkpoint failed
                    self.broken(moved)
                return True
            return recorded

    def _record_inline(
        self, sid: str, attempt: int, call: AgentCall, inline: InlineTask, outcome: Any, span: Any
    ) -> bool:
        """Commit an inline attempt's coordination outcome with the step's checkpoint (see _run_inline)."""
        coordination = self.host.coordination
        with self._transaction(open_tx=True) as tx:
            assert tx is not None
            c, after = coordination.complete_in(tx, inline, outcome)
            self._after(lambda: coordination.run_after(after))
            if c is None or c.status not in COORDINATION_TERMINAL:
                return False
            self._inflight.discard(sid)
            result = outcome_of(c, call)
            if result.error is not None:
                span.set_status(trace.Status(trace.StatusCode.ERROR, result.error.message[:200]))
            self._attempt_done(sid, attempt, result)
        return True

    def _coordination_started(self, sid: str, attempt: int, cid: str) -> bool:
        with self.lock:
            rec = self.records[sid]
            if self.status in STOPPED or rec.status != RUNNING or rec.attempts != attempt:
                return False
            if rec.coordination_id != cid:
                rec.coordination_id = cid
                self._commit([rec])  # checkpoint before waiting: a restart re-attaches to this coordination
            return True

    def _attempt_done(self, sid: str, attempt: int, result: AttemptResult) -> None:
        rec = self.records[sid]
        if self.status in STOPPED or rec.status != RUNNING or rec.attempts != attempt:
            return  # cancelled meanwhile, or a superseded attempt
        now = time.time()
        rec.agent_id = result.agent_id or rec.agent_id
        rec.coordination_id = result.coordination_id or rec.coordination_id
        counted = self._add_usage(rec, result.usage)
        if counted:
            self._commit(counted, usage=self.usage.to_dict())
        if result.ok:
            rec.status, rec.output, rec.structured = COMPLETED, result.output[:MAX_OUTPUT], result.structured
            rec.error, rec.end_time = None, now
            self._commit(
                [rec],
                [
                    self._step_event(
                        "workflow.step.completed",
                        rec,
                        agent_id=rec.agent_id,
                        coordination_id=rec.coordination_id,
                        duration=round(now - (rec.start_time or now), 3),
                        output_preview=rec.output[:300],
                        usage=rec.usage.to_dict(),
                    )
                ],
                state=self.host.step_state(self, rec) if not rec.parent_id else (),
            )
            if self._budget_reached() and self._work_left() and self._over_budget():
                return
            if rec.parent_id:
                self._pump(rec.parent_id)
            self.advance()
            return
        err = result.error
        assert err is not None
        over = self._budget_reached()
        policy = self.template.retry_for(self._spec_of(rec))
        rec.error = err
        if (
            not over
            and err.retryable
            and err.code not in policy.non_retryable_errors
            and rec.attempts < policy.attempts
        ):
            delay = policy.delay(rec.attempts)
            rec.status, rec.next_retry_time = RETRYING, now + delay
            self._commit(
                [rec],
                [
                    self._step_event(
                        "workflow.step.retrying",
                        rec,
                        error=err.to_dict(),
                        delay=round(delay, 3),
                        next_attempt=rec.attempts + 1,
                        agent_id=rec.agent_id,
                    )
                ],
            )
            self._arm_retry(rec)
            return
        rec.status, rec.end_time = FAILED, now
        self._commit(
            [rec], [self._step_event("workflow.step.failed", rec, error=err.to_dict(), agent_id=rec.agent_id)]
        )
        if over and self._over_budget():  # the step keeps its own error; the run fails on the budget
            return
        self._after_failure(rec, err)
        self.advance()

    def _arm_retry(self, rec: StepRecord) -> None:
        sid = rec.step_id
        self._retry_timers[sid] = self.host.timers.at(rec.next_retry_time or 0, lambda: self._retry_due(sid))

    def _retry_due(self, sid: str) -> None:
        with self._transaction():
            self._retry_timers.pop(sid, None)
            rec = self.records[sid]
            if self.status != RUNNING or rec.status != RETRYING:
                return  # paused: resume picks it up; terminal: nothing to do
            if rec.parent_id:
                self._pump(rec.parent_id)
            else:
                self._attempt(sid)

    # -- waits: signals, approvals and durable timers --------------------------------------------------------

    def _signal_name(self, sid: str) -> str:
        kind = self.specs[sid].kind
        return kind.signal_name if isinstance(kind, ApprovalSpec) else kind.signal  # type: ignore[union-attr]

    def _begin_wait(self, sid: str) -> None:
        """A WaitStep / ApprovalStep starts: take a signal kept for it, else wait (no thread held)."""
        rec, kind, now = self.records[sid], self.specs[sid].kind, time.time()
        rec.status, rec.attempts, rec.start_time = RUNNING, 1, now
        name = self._signal_name(sid)
        events = [self._step_event("workflow.step.started", rec, kind=self._kind_name(rec), signal=name)]
        kept = self._kept(name)
        if kept is not None:
            self._commit([rec], events)
            self._receive(rec, kept)
            return
        ops = []
        deadline = None
        if kind.timeout:  # type: ignore[union-attr]
            t = TimerRow(sid, TIMEOUT, now + kind.timeout)  # type: ignore[union-attr]
            ops.append(self._add_timer(t))
            deadline = t.fire_at
        extra: dict[str, Any] = {}
        if isinstance(kind, ApprovalSpec):
            extra["prompt"] = render(kind.prompt, self._scope(rec))[:2000]
        events.append(
            self._step_event(
                "workflow.step.waiting",
                rec,
                kind="approval" if isinstance(kind, ApprovalSpec) else "signal",
                signal=name,
                deadline=deadline,
                **extra,
            )
        )
        self._commit([rec], events, ops=tuple(ops))
        self._after(self.host.wake_admission)

    def _begin_sleep(self, sid: str, kind: SleepSpec) -> None:
        rec, now = self.records[sid], time.time()
        rec.status, rec.attempts, rec.start_time = RUNNING, 1, now
        fire_at = kind.until if kind.until is not None else now + (kind.duration or 0.0)
        op = self._add_timer(TimerRow(sid, SLEEP, fire_at))
        self._commit(
            [rec],
            [
                self._step_event("workflow.step.started", rec, kind="sleep"),
                self._step_event("workflow.step.waiting", rec, kind="sleep", deadline=fire_at),
            ],
            ops=(op,),
        )
        self._after(self.host.wake_admission)

    def _delayed(self, sid: str) -> bool:
        """True while a ready step's start_after timer has not fired (arming it the first time)."""
        delay = self.specs[sid].start_after
        if not delay:
            return False
        t = self.timer_rows.get((sid, START_AFTER))
        if t is None:
            t = TimerRow(sid, START_AFTER, time.time() + delay)
            rec = self.records[sid]
            self._commit(
                events=[
                    self._step_event("workflow.step.waiting", rec, kind="start_after", deadline=t.fire_at)
                ],
                ops=(self._add_timer(t),),
            )
            self._after(self.host.wake_admission)
            return True
        if t.fired_at is not None:
            return False
        if t.fire_at <= time.time():
            self._fire(t)
            return False
        if (sid, START_AFTER) not in self._wait_timers:
            self._arm(t)
        return True

    def _add_timer(self, t: TimerRow) -> Callable[[Tx], None]:
        """Remember and arm a new durable timer; returns its write for the current checkpoint."""
        self.timer_rows[(t.step_id, t.kind)] = t
        self._after(lambda: self._arm(t))
        return lambda tx: self.host.timer_store.add(tx, self.id, t)

    def _arm(self, t: TimerRow) -> None:
        key = (t.step_id, t.kind)
        old = self._wait_timers.pop(key, None)
        if old is not None:
            old.cancel()
        if t.fired_at is None:
            self._wait_timers[key] = self.host.timers.at(t.fire_at, lambda: self._timer_due(*key))

    def _fire(self, t: TimerRow) -> None:
        """Mark a timer fired in the current checkpoint (the one that acts on it): it never fires twice."""
        now = time.time()
        t.fired_at = now
        self._wait_timers.pop((t.step_id, t.kind), None)
        rec = self.records[t.step_id]
        late = round(max(now - t.fire_at, 0.0), 3)
        self._commit(
            events=[
                self._step_event(
                    "workflow.timer.fired", rec, kind=t.kind, fire_at=t.fire_at, late_seconds=late
                )
            ],
            ops=(lambda tx: self.host.timer_store.fired(tx, self.id, t),),
        )

    def _timer_due(self, sid: str, kind: str) -> None:
        with self._transaction():
            self._wait_timers.pop((sid, kind), None)
            t = self.timer_rows.get((sid, kind))
            if t is None or t.fired_at is not None or self.status != RUNNING:
                return  # fired already, or paused / ended: resume re-arms it
            if kind == START_AFTER:
                self.advance()
                return
            rec = self.records[sid]
            if rec.status != RUNNING:
                return
            self._fire(t)
            if kind == SLEEP:
                self._finish_wait(
                    rec, {"slept_until": t.fire_at, "late_seconds": round(time.time() - t.fire_at, 3)}, ""
                )
            else:
                spec = self.specs[sid].kind
                name = self._signal_name(sid)
                if isinstance(spec, ApprovalSpec):
                    out = approval_timed_out(self._approval_data(rec, spec))
                else:
                    out = wait_outcome(name, None)
                self._finish_wait(rec, out, "timed out", timed_out=True)

    def _rewait(self, rec: StepRecord) -> None:
        """After a restart or a resume: a waiting step takes a signal kept meanwhile, else its timers are armed
        again (one whose time has passed fires at once, late)."""
        sid = rec.step_id
        if isinstance(self.specs[sid].kind, WAITS):
            kept = self._kept(self._signal_name(sid))
            if kept is not None:
                self._receive(rec, kept)
                return
        for kind in (SLEEP, TIMEOUT):
            t = self.timer_rows.get((sid, kind))
            if t is not None and t.fired_at is None:
                self._arm(t)

    def _kept(self, name: str) -> Signal | None:
        for sig in self.host.signals.kept(self.id, name):
            if sig.id not in self._consumed:
                return sig
        return None

    def deliver(self, sig: Signal) -> str:
        """A signal was persisted: hand it to the step waiting for it (the oldest); '' when none waits
        (it is kept for a later wait)."""
        with self._transaction():
            if self.status != RUNNING or sig.id in self._consumed:
                return ""
            waiting = [
                r
                for r in self.records.values()
                if r.status == RUNNING
                and not r.parent_id
                and isinstance(self.specs[r.step_id].kind, WAITS)
                and self._signal_name(r.step_id) == sig.name
            ]
            if not waiting:
                return ""
            stored = self.host.signals.get(sig.id)
            if stored is None or stored.consumed_by:
                return ""
            rec = min(waiting, key=lambda r: (r.start_time or 0.0, r.position))
            self._receive(rec, sig)
            return rec.step_id

    def _receive(self, rec: StepRecord, sig: Signal) -> None:
        """The waiting step rec completes with the signal (consumed in the same checkpoint)."""
        self._consumed.add(sig.id)
        now = time.time()
        self._commit(ops=(lambda tx: self.host.signals.consume(tx, sig.id, rec.step_id, now),))
        timeout = self._wait_timers.pop((rec.step_id, TIMEOUT), None)
        if timeout is not None:
            timeout.cancel()
        spec = self.specs[rec.step_id].kind
        if isinstance(spec, ApprovalSpec):
            out = approval_outcome(sig, self._approval_data(rec, spec))
            if out is None:
                return self._fail_now(
                    rec,
                    TaskError(
                        "INVALID_DECISION",
                        f"signal {sig.id}: an approval needs payload.decision approve, reject or edit",
                        False,
                    ),
                )
            self._finish_wait(rec, out, out["decision"], signal_id=sig.id, sender=sig.sender)
        else:
            self._finish_wait(rec, wait_outcome(sig.name, sig), "", signal_id=sig.id, sender=sig.sender)

    def _approval_data(self, rec: StepRecord, spec: ApprovalSpec) -> Any:
        return render_value(spec.data, self._scope(rec)) if spec.data else None

    def _finish_wait(self, rec: StepRecord, structured: dict[str, Any], text: str, **data: Any) -> None:
        now = time.time()
        payload = structured.get("payload", structured.get("data"))
        rec.status, rec.structured, rec.error, rec.end_time = COMPLETED, structured, None, now
        rec.output = (
            text or (payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False))
        )[:MAX_OUTPUT]
        self._commit(
            [rec],
            [
                self._step_event(
                    "workflow.step.completed",
                    rec,
                    duration=round(now - (rec.start_time or now), 3),
                    output_preview=rec.output[:300],
                    **data,
                )
            ],
            state=self.host.step_state(self, rec),
        )
        self.advance()

    def parked(self) -> bool:
        """Only waiting (for signals, approvals or timers): no attempt in flight, nothing to start. Read
        without the lock (a heuristic for admission; a parked run that wakes simply runs)."""
        if self.status != RUNNING or self._inflight:
            return False
        waiting = False
        for r in list(self.records.values()):
            if r.status == RETRYING or r.parent_id and r.status == RUNNING:
                return False
            if r.status == RUNNING:
                if not isinstance(self.specs[r.step_id].kind, (*WAITS, SleepSpec)):
                    return False
                waiting = True
            elif r.status == PENDING:
                t = self.timer_rows.get((r.step_id, START_AFTER))
                waiting = waiting or (t is not None and t.fired_at is None)
        return waiting

    def waiting(self) -> tuple[WaitingFor, ...]:
        """What the run waits for now (GetExecution)."""
        out = []
        with self.lock:
            for sid in self.graph.order:
                rec, kind = self.records[sid], self.specs[sid].kind
                if rec.status == RUNNING and isinstance(kind, WAITS):
                    t = self.timer_rows.get((sid, TIMEOUT))
                    approval = isinstance(kind, ApprovalSpec)
                    out.append(
                        WaitingFor(
                            step_id=sid,
                            kind="approval" if approval else "signal",
                            signal=self._signal_name(sid),
                            prompt=render(kind.prompt, self._scope(rec)) if approval else "",  # type: ignore[union-attr]
                            data=self._approval_data(rec, kind) if approval else None,  # type: ignore[arg-type]
                            deadline=t.fire_at if t is not None else None,
                        )
                    )
                elif rec.status == RUNNING and isinstance(kind, SleepSpec):
                    t = self.timer_rows.get((sid, SLEEP))
                    out.append(WaitingFor(sid, "sleep", deadline=t.fire_at if t else None))
                elif rec.status == PENDING:
                    t = self.timer_rows.get((sid, START_AFTER))
                    if t is not None and t.fired_at is None:
                        out.append(WaitingFor(sid, "start_after", deadline=t.fire_at))
        return tuple(out)

    # -- rendering ---------------------------------------------------------------------------------------------

    def _scope(self, rec: StepRecord) -> Scope:
        scope = Scope(params=self.params, steps=_StepViews(self.records))
        if rec.parent_id:
            scope.item, scope.item_index = rec.item, rec.position
        return scope

    def _render(self, rec: StepRecord) -> AgentCall:
        scope = self._scope(rec)
        kind = self._spec_of(rec).kind
        if isinstance(kind, FanOutSpec):
            kind = kind.task
        if isinstance(kind, AgentTaskSpec):
            context = render_value(kind.context, scope) if kind.context else {}
            deps = self.child_deps.get(rec.step_id)
            if deps:
                context = {
                    **context,
                    "dependencies": {self._item_id(d): self._value(self.records[d]) for d in deps},
                }
            # AgentCall(...) without its frozen __init__: every field, in order
            return made(
                AgentCall,
                task=render(kind.task, scope),
                mode="sequential",
                source_agent_id="",
                target_agent_id=render(kind.agent_id, scope),
                agent_ids=(),
                capabilities=tuple(c for c in (render(c, scope).strip() for c in kind.capabilities) if c),
                context=context,
                condition=None,
                json_output=kind.json_output,
                fallback_to_any_agent=kind.fallback_to_any_agent,
            )
        assert isinstance(kind, CoordinationSpec)
        return AgentCall(
            task=render(kind.task, scope),
            mode=kind.mode,
            source_agent_id=render(kind.source_agent_id, scope),
            target_agent_id=render(kind.target_agent_id, scope),
            agent_ids=tuple(render(a, scope) for a in kind.agent_ids),
            capabilities=tuple(c for c in (render(c, scope).strip() for c in kind.capabilities) if c),
            condition=kind.condition,
        )

    def _item_id(self, child_id: str) -> str:
        item = self.records[child_id].item
        if isinstance(item, dict) and isinstance(item.get("id"), str | int):
            return str(item["id"])
        return child_id
