"""The coordination engine's dispatcher: the queue scan that gives units to agents (with free
capacity, and room at their LLM endpoint), running
them (threaded agents on the pool, remote workers through their session), recording outcomes,
re-dispatching lost work, advancing the modes and finishing coordinations.

Everything here runs inside a journal transaction (database writer lock, then engine lock) except
_launch/_run_threaded, which run after commit."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import lru_cache, partial
from typing import Any

from opentelemetry import context as otel_context

from ...agents.base import Agent, AgentError, AgentOutput, AgentTask, CancelSignal, Outcome, Toolbox
from ...config import Config
from ...errors import Unavailable
from ...frozen import made, replaced
from ...handoffs import handed_off
from ...metrics import series_key
from ...storage import Tx
from ...telemetry import context_from, current_trace, internal_span
from ..events import NewEvent, Prepared, prepare_own
from ..shared import Component, TimerQueue
from ._agents import AgentState
from ._deltas import DELTA_EVENT, DeltaStream
from ._journal import Journal, Moved, RunTable
from ._model import AgentResult, Coordination, Selection, TaskError, evaluate
from ._runs import (
    PREVIEW,
    SOURCE,
    After,
    InlineTask,
    Run,
    Unit,
    checked,
    final_output,
    make_result,
    total_usage,
)
from ._selection import AgentView, choose, rank

log = logging.getLogger("voltorch.coordination")

STATS_EVERY = 1.0  # seconds between writes of an agent's statistics after successes


def _here_first(view: AgentView, state: AgentState) -> AgentView:
    """An agent's view when an agent here can take the task: another replica's worker is not eligible."""
    return view if state.connected or not state.elsewhere else replace(view, status="elsewhere")


def _has_room(state: AgentState, pending: dict[int, int]) -> bool:
    """LLM tasks wait here, in the priority queue, while their endpoint's window is full: a task that
    would only wait for the window holds no agent thread, and a later critical task still goes first.
    `pending`: tasks given to each endpoint in this scan, not yet asking its limiter."""
    limiter = state.runtime.endpoint_limiter() if state.runtime is not None else None
    return limiter is None or limiter.has_room(pending.get(id(limiter), 0))


class Assigned:
    """One unit given to an agent by a dispatch that may have to be withdrawn (`Dispatcher.recording`):
    the unit, its agent, its place in the queue, and what `_assign` changed, as it was before."""

    __slots__ = (
        "unit",
        "state",
        "place",
        "attempt",
        "cancel",
        "start_time",
        "start_mono",
        "launch",
        "status",
        "run_start_time",
        "participant",
        "run_attempt",
        "selection",
        "selection_text",
        "last_dispatch",
        "dispatched",
    )

    def __init__(self, unit: Unit, state: AgentState, place: tuple[float, int] | None):
        run, position = unit.run, unit.position
        self.unit, self.state, self.place = unit, state, place
        self.attempt, self.cancel, self.launch = unit.attempt, unit.cancel, unit.launch
        self.start_time, self.start_mono = unit.start_time, unit.start_mono
        self.status, self.run_start_time = run.status, run.start_time
        self.participant, self.run_attempt = run.participants[position], run.attempts[position]
        self.selection, self.selection_text = run.selection, run._selection_text
        self.last_dispatch = state.last_dispatch
        self.dispatched = 0.0  # the sequence number `_assign` gave the agent


@lru_cache(maxsize=4096)
def _load_key(agent_id: str) -> tuple:
    """The agent-load gauge's key of an agent, made once."""
    return series_key({"agent.id": agent_id})


class Dispatcher:
    """Gives queued units to agents and records what they did. It owns the agent thread pool and the
    generation (a stop() makes every in-flight callback of the previous one a no-op); it reads the
    agents and the runs it is given, and changes state only inside the journal's transactions.
    `observed` is the component it works for: its metrics and error recorder (which the Runtime hands
    the component after construction) are read when used."""

    def __init__(
        self,
        journal: Journal,
        runs: RunTable,
        agents: dict[str, AgentState],
        config: Config,
        observed: Component,
        toolbox: Toolbox | None = None,
        unrecord: Callable[[Run, int, list[Assigned], After], None] | None = None,
    ):
        self.journal = journal
        self.toolbox = toolbox  # how tool-calling agents call the tools other agents offer
        # Undoes in memory what an agent outcome's transaction did when it rolls back (the engine's
        # `_unrecord`, as for complete_in): else the run stays finished here while the database runs it.
        self.unrecord = unrecord
        self.runs = runs
        self.agents = agents
        self.config = config
        self.observed = observed
        self.running = False
        self.generation = 0
        self.pool: ThreadPoolExecutor | None = None
        self.delta_timers = TimerQueue("live-text")  # publishes live text kept too long (DeltaStream)
        self._dispatch_seq = itertools.count(1)
        # Set (engine lock held) while a dispatch may have to be withdrawn: every assignment's pre-image is
        # appended to it (CoordinationEngine.submit_in, whose transaction may roll back).
        self.recording: list[Assigned] | None = None

    def start(self) -> bool:
        """Under the engine lock: a new generation with a fresh pool (False when already running)."""
        if self.running:
            return False
        self.running = True
        self.generation += 1
        self.pool = ThreadPoolExecutor(max(1, self.config.agent_threads), thread_name_prefix="agent")
        self.delta_timers.start()
        return True

    def stop(self) -> ThreadPoolExecutor | None:
        """Under the engine lock: end the generation; returns the pool to shut down once unlocked."""
        self.running = False
        self.generation += 1
        pool, self.pool = self.pool, None
        return pool

    def require_running(self) -> None:
        if not self.running:
            raise Unavailable("coordination engine is stopped; retry shortly", reason="COMPONENT_STOPPED")

    def start_units(self, run: Run) -> None:
        if run.mode == "parallel":
            for i in range(len(run.plan)):
                if i not in run.results:
                    self._enqueue(run, i)
        else:
            self._advance_chain(run)

    def _enqueue(self, run: Run, position: int) -> Unit:
        unit = run.units.get(position)
        if unit is None:
            unit = Unit(run, position, f"{run.id}:{position}", attempt=run.attempts[position])
            run.units[position] = unit
        self.runs.queue.push(unit, int(run.priority), run.create_time)
        return unit

    def dispatch(self, tx: Tx, after: After) -> None:
        """Give queued units to agents with free capacity, best priority first. A unit whose agent is a
        remote worker connected to another replica hands its coordination over to that replica."""
        if not len(self.runs.queue) or not self.running:
            return
        now_mono = time.monotonic()
        # Free slots, counted only as far as the queue needs (each unit takes at most one): a step's dispatch
        # finds one unit queued and stops at the first agent with room.
        wanted, free = len(self.runs.queue), 0
        for a in self.agents.values():
            if a.connected:
                free += max(0, a.free)
            elif a.elsewhere:
                free += 1
            if free >= wanted:
                break
        blocked: set[tuple] = set()
        handed: set[str] = set()
        pending: dict[int, int] = {}  # id(endpoint limiter) -> tasks given to it in this scan
        for unit in self.runs.queue:
            if free <= 0:
                break
            run = unit.run
            if run.id in handed:
                continue
            named = run.plan[unit.position]
            key = (named, run.caps, run.excluded(unit.position) if not named else frozenset())
            if key in blocked:
                continue
            selection = None
            if named:
                state = self.agents.get(named)
                if state is None:
                    self._fail_unplaceable(
                        tx, after, run, "AGENT_UNREGISTERED", f"agent {named!r} was unregistered"
                    )
                    continue
                if not state.connected and state.elsewhere:
                    if self._hand_over(tx, after, run, state):
                        handed.add(run.id)
                    else:
                        blocked.add(key)
                    continue
                if not state.connected or state.free <= 0 or not _has_room(state, pending):
                    blocked.add(key)
                    continue
            else:
                views = [a.view(now_mono) for a in self.agents.values()]
                ranked = rank(views, run.caps, key[2])
                for c, _ in ranked:  # a loop: a generator left unfinished is closed by an exception
                    if not c.reason.startswith("missing capability") and c.agent_id not in key[2]:
                        break
                else:
                    self._fail_unplaceable(
                        tx,
                        after,
                        run,
                        "NO_CAPABLE_AGENT",
                        f"no registered agent has capabilities {', '.join(run.caps) or '(any)'}",
                    )
                    continue
                best, selection = choose(ranked, run.caps)
                if best is not None and not self.agents[best.id].connected:  # another replica's worker
                    if self._takes_here(run.caps, key[2]):  # ... only when no agent here can take it
                        ranked = rank([_here_first(v, self.agents[v.id]) for v in views], run.caps, key[2])
                        best, selection = choose(ranked, run.caps)
                    else:
                        if self._hand_over(tx, after, run, self.agents[best.id]):
                            handed.add(run.id)
                        else:
                            blocked.add(key)
                        continue
                if best is None or not _has_room(self.agents[best.id], pending):
                    blocked.add(key)
                    continue
                state = self.agents[best.id]
            place = self.runs.queue.take(unit)
            if self.recording is None:
                self._assign(tx, after, unit, state, selection)
            else:
                assigned = Assigned(unit, state, place)
                self.recording.append(assigned)
                self._assign(tx, after, unit, state, selection)
                assigned.dispatched = state.last_dispatch
            free -= 1
            limiter = state.runtime.endpoint_limiter() if state.runtime is not None else None
            if limiter is not None:
                pending[id(limiter)] = pending.get(id(limiter), 0) + 1

    def _takes_here(self, caps: tuple[str, ...], excluded: frozenset[str]) -> bool:
        """Whether an agent that runs here (in-process, or a worker connected here) has `caps`."""
        return any(
            a.connected and a.id not in excluded and all(c in a.capabilities for c in caps)
            for a in self.agents.values()
        )

    def _hand_over(self, tx: Tx, after: After, run: Run, state: AgentState) -> bool:
        """Give a coordination to the replica holding `state`'s worker session: that replica becomes its
        owner (fenced like every write), learns of it by the event and dispatches it there. Not while one
        of its tasks runs here (a parallel coordination waits for it); False then."""
        if any(u.agent_id is not None for u in run.units.values()):
            return False
        to = state.elsewhere
        if run.unwritten is not None:  # requested in this transaction: inserted as the other replica's
            run.unwritten["owner"] = to
            self.journal.write_new(tx, run)
        else:
            self.journal.save(tx, run)
            if not self.journal.store.hand_over(tx, run.id, self.journal.owner, to):
                raise Moved(run)
        self.journal.emit(
            tx,
            "coordination.handed_over",
            {
                "coordination_id": run.id,
                "from_replica": self.journal.owner,
                "to_replica": to,
                "agent_id": state.id,
                "execution_id": run.execution_id,
                "step_id": run.step_id,
            },
            run,
        )
        after.calls.append(partial(self.journal.drop, run, f"handed over to replica {to}"))
        return True

    def _fail_unplaceable(self, tx: Tx, after: After, run: Run, code: str, message: str) -> None:
        if not run.terminal:
            self.finish(tx, after, run, "failed", TaskError(code, message))

    def _assign(
        self, tx: Tx, after: After, unit: Unit, state: AgentState, selection: Selection | None
    ) -> None:
        run = unit.run
        now = time.time()
        state.load += 1
        self.observed.metrics.agent_load.set_at(state.load, _load_key(state.id))
        state.last_dispatch = next(self._dispatch_seq)
        unit.attempt += 1
        unit.agent_id = state.id
        unit.cancel = CancelSignal()
        unit.start_time, unit.start_mono = now, time.monotonic()
        run.attempts[unit.position] = unit.attempt
        run.participants[unit.position] = state.id
        if selection is not None:
            if run.selection is None:
                run.selection = selection
            else:
                run.selection = Selection(
                    run.selection.selected_agent_ids + selection.selected_agent_ids,
                    run.selection.candidates,
                    f"{run.selection.explanation}; position {unit.position}: {selection.explanation}",
                )
        data: dict[str, Any] = {
            "coordination_id": run.id,
            "task_id": unit.task_id,
            "attempt": unit.attempt,
            "agent_id": state.id,
            "position": unit.position,
        }
        # the selection's JSON as its row column has it (encoded once), not its candidates encoded again
        raw = {"selection": run.selection_text(selection, self.runs.texts)} if selection is not None else None
        if selection is None:
            data["selection"] = None
        if run.status == "queued":
            run.status = "running"
            run.start_time = now
            self.journal.emit(
                tx,
                "coordination.started",
                {**data, "mode": run.mode, "queue_wait": round(now - run.create_time, 6)},
                run,
                raw=raw,
            )
        if len(run.plan) > 1 or unit.attempt > 1:  # a single first task: coordination.started says it all
            self.journal.emit(tx, "coordination.task.started", data, run, raw=raw)
        self.journal.save(tx, run)
        # AgentTask(...) without its frozen __init__: every field, in order
        task = made(
            AgentTask,
            task_id=unit.task_id,
            coordination_id=run.id,
            text=run.task,
            context=run.context_for(unit.position),
            capabilities=run.caps,
            attempt=unit.attempt,
            deadline=run.deadline,
            traceparent=run.traceparent,
            correlation_id=run.correlation_id,
            priority=run.priority,
            execution_id=run.execution_id,
            step_id=run.step_id,
            agent_id=state.id,
            agent_capabilities=state.capabilities,
            on_delta=None,
            on_last_delta=None,
            toolbox=None,
        )
        assert state.runtime is not None
        unit.launch = partial(self._launch, unit, unit.attempt, state.runtime, task)
        after.launches.append(unit.launch)

    def give_back(self, a: Assigned) -> None:
        """Undo one `_assign` of a transaction that rolled back (engine lock held; the newest first): the
        agent's slot freed, the unit and its run as they were, the unit queued again in its place (unless
        its run is gone from the run table). Left as it is when the same transaction changed it since
        (finished its run, re-queued it): that is not this assignment's to undo."""
        unit, state, run = a.unit, a.state, a.unit.run
        if unit.agent_id != state.id or unit.attempt != a.attempt + 1:
            return
        state.load = max(0, state.load - 1)
        self.observed.metrics.agent_load.set_at(state.load, _load_key(state.id))
        if state.last_dispatch == a.dispatched:
            state.last_dispatch = a.last_dispatch
        position = unit.position
        unit.attempt, unit.agent_id, unit.cancel, unit.launch = a.attempt, None, a.cancel, a.launch
        unit.start_time, unit.start_mono = a.start_time, a.start_mono
        run.status, run.start_time = a.status, a.run_start_time
        run.participants[position], run.attempts[position] = a.participant, a.run_attempt
        run.selection, run._selection_text = a.selection, a.selection_text
        if (
            a.place is not None
            and self.runs.live.get(run.id) is run
            and not run.terminal
            and run.units.get(position) is unit
        ):
            self.runs.queue.put_back(unit, a.place)

    def take_inline(self, run: Run, after: After) -> InlineTask | None:
        """The task of a one-task coordination just given to an in-process agent in this transaction,
        taken out of `after`'s launches so that the caller runs it in its own thread (run_inline)."""
        unit = run.units.get(0)
        if len(run.plan) != 1 or unit is None or unit.agent_id is None or unit.launch not in after.launches:
            return None
        launch = unit.launch
        assert isinstance(launch, partial)
        _unit, attempt, runtime, task = launch.args
        if not runtime.threaded:
            return None
        after.launches.remove(launch)
        unit.launch = None  # it holds the unit: no cycle left for the collector
        return InlineTask(unit, attempt, runtime, task)

    def run_inline(self, it: InlineTask, traceparent: str = "") -> Outcome | None:
        """Run an inline task in this thread as the pool would (run_threaded); None when it must not run.
        `traceparent`: the caller's current span, which the agent's span joins: this thread's context is its
        parent, not a context parsed back from the text ('' when the caller has no span)."""
        cancel = it.unit.cancel
        if cancel is None or cancel.is_set() or not self.running:
            return None
        deltas = it.deltas = self._deltas(it.unit.run, it.task, hold=True)
        return self._run_threaded(
            it.runtime, it.task, cancel, None, self.generation, deltas, traceparent, current=bool(traceparent)
        )

    def complete(self, tx: Tx, after: After, it: InlineTask, outcome: Outcome) -> Coordination | None:
        """Record an inline task's outcome (engine lock held, inside the caller's transaction); the
        coordination then, or None when the engine no longer has it (restarted: it runs it again)."""
        run = it.unit.run
        if not self.running or self.runs.live.get(run.id) is not run:
            return None
        held = it.deltas.drain() if it.deltas is not None else []
        if held:  # the live text before the outcome, in its transaction
            self.journal.events.append(tx, [self._delta_prepared(run, d) for d in held])
        self.record(tx, after, it.unit, it.attempt, checked(outcome))
        return run.final or run.snapshot(self.runs.position(run))

    def _launch(self, unit: Unit, attempt: int, runtime: Agent, task: AgentTask) -> None:
        unit.launch = None  # it holds the unit: no cycle left for the collector
        cancel = unit.cancel
        assert cancel is not None

        def done(outcome: Outcome) -> None:
            self._on_done(unit, attempt, outcome)

        generation = self.generation
        if runtime.threaded:
            pool = self.pool
            if pool is None:
                return
            deltas = self._deltas(unit.run, task)
            try:
                pool.submit(self._run_threaded, runtime, task, cancel, done, generation, deltas)
            except RuntimeError:  # pool shut down: the engine is stopping
                return
            handed_off()
        else:
            try:
                runtime.start(task, cancel, done)
                handed_off()  # to the worker's stream
            except Exception as exc:
                done(
                    AgentError(f"agent failed to start the task: {exc}", code="AGENT_CRASHED", retryable=True)
                )

    def _deltas(self, run: Run, task: AgentTask, *, hold: bool = False) -> DeltaStream:
        """The live text of one attempt, published with the coordination's correlation (so WatchExecution
        and Subscribe deliver it next to the step's other events)."""
        base = {
            "coordination_id": run.id,
            "task_id": task.task_id,
            "attempt": task.attempt,
            "agent_id": task.agent_id,
            "execution_id": run.execution_id,
            "step_id": run.step_id,
        }

        def publish(data: dict) -> None:
            self.journal.events.publish(self._delta_event(run, data))

        return DeltaStream(
            publish,
            base,
            interval=self.config.delta_interval,
            chars=self.config.delta_chars,
            hold=hold,
            timers=self.delta_timers,
        )

    @staticmethod
    def _delta_prepared(run: Run, data: dict) -> Prepared:
        """The held live text of an inline step, appended with its outcome: the engine's own event, prepared
        as such (`prepare_own`: the same event `_delta_event` makes, without checking its constants)."""
        return prepare_own(
            DELTA_EVENT,
            SOURCE,
            data,
            correlation_id=run.correlation_id,
            priority=run.priority,
            traceparent=run.traceparent,
        )

    @staticmethod
    def _delta_event(run: Run, data: dict) -> NewEvent:
        return NewEvent(
            type=DELTA_EVENT,
            source=SOURCE,
            data=data,
            correlation_id=run.correlation_id,
            priority=run.priority,
            traceparent=run.traceparent,
        )

    def _run_threaded(
        self,
        runtime: Agent,
        task: AgentTask,
        cancel: CancelSignal,
        done: Callable | None,
        generation: int,
        deltas: DeltaStream,
        parent: str = "",
        *,
        current: bool = False,
    ) -> Outcome | None:
        """Run a task on an in-process agent; its outcome goes to `done` (None: returned instead). The
        agent's span joins `parent` (a traceparent; the task's own when empty), or with `current` this
        thread's current span, whose traceparent `parent` is. The task the agent gets is made once, here:
        with its live-text callbacks, the toolbox and the agent span's trace."""
        if cancel.is_set() or generation != self.generation:
            return None
        parent = parent or task.traceparent
        ctx = context_from(parent) if parent and not current else None
        with internal_span("agent.task", context=ctx) as span:
            span.set_attribute("voltorch.agent_id", task.agent_id)
            span.set_attribute("voltorch.task_id", task.task_id)
            span.set_attribute("voltorch.attempt", task.attempt)
            task = replaced(
                task,
                on_delta=deltas.write,
                on_last_delta=deltas.write_last,
                toolbox=self.toolbox,
                traceparent=current_trace().traceparent or parent,
            )
            try:
                outcome: Outcome = runtime.run(task, cancel)
                if not isinstance(outcome, AgentOutput):
                    raise TypeError(f"run() returned {type(outcome).__name__}, not AgentOutput")
            except AgentError as exc:
                outcome = exc
            except Exception as exc:
                log.exception("agent %s crashed on %s", task.agent_id, task.task_id)
                outcome = AgentError(f"agent crashed: {type(exc).__name__}: {exc}", code="AGENT_CRASHED")
            if isinstance(outcome, AgentError):
                span.set_attribute("voltorch.error_code", outcome.code)
            deltas.flush()  # the last of the live text comes before the result
            span.set_attribute("voltorch.delta_batches", deltas.batches)
        if done is None:
            return outcome
        if generation == self.generation:
            done(outcome)
        return None

    def _on_done(self, unit: Unit, attempt: int, outcome: Outcome) -> None:
        if not self.running:
            return
        outcome = checked(outcome)
        try:
            # an agent's outcome: its COMMIT may be shared with other outcomes' and steps'
            with self.journal.txn(group=True) as (tx, after):
                assigned: list[Assigned] = []
                if self.unrecord is not None:
                    tx.after_rollback(partial(self.unrecord, unit.run, self.generation, assigned, after))
                self.recording = assigned
                try:
                    self.record(tx, after, unit, attempt, outcome)
                finally:
                    self.recording = None
        except Exception:
            log.exception("recording the outcome of %s failed", unit.task_id)

    def record(self, tx: Tx, after: After, unit: Unit, attempt: int, outcome: Outcome) -> None:
        """Record what an agent did with a unit (engine lock held), then dispatch what it freed."""
        run = unit.run
        if (
            unit.attempt != attempt
            or unit.agent_id is None
            or run.terminal
            or self.runs.live.get(run.id) is not run
        ):
            return  # superseded, cancelled, timed out or from before a restart: ignored
        state = self.agents.get(unit.agent_id)
        latency = time.monotonic() - unit.start_mono
        if (
            isinstance(outcome, AgentError)
            and outcome.code == "WORKER_LOST"
            and unit.attempt < self.config.coordination_max_attempts
        ):
            self.requeue(tx, after, unit, state, outcome.message, record=True)
        else:
            self._release(unit, state)
            result = make_result(unit, state.id if state else "", outcome, latency)
            if state is not None:
                state.record(result.error is None, latency, result.error)
                self.save_stats(tx, state, at_once=result.error is not None)
                self.observed.metrics.record_agent_task(state.id, latency, success=result.error is None)
            self._record_result(tx, after, run, result)
        self.dispatch(tx, after)

    def save_stats(self, tx: Tx, state: AgentState, *, at_once: bool = False) -> None:
        """Write an agent's statistics: at once after a failure (and at most every STATS_EVERY seconds
        otherwise); a success in between leaves them for the engine's timer (`write_stats`), so a step
        does not rewrite its agent's row with every outcome. A crash loses at most that much of them."""
        now = time.monotonic()
        if at_once or now - state.stats_time >= STATS_EVERY:
            self.journal.store.update_agent_stats(tx, state)
            state.stats_time, state.stats_unwritten = now, False
        else:
            state.stats_unwritten = True

    def stats_unwritten(self) -> list[AgentState]:
        """Agents whose statistics have changed since they were last written (engine lock held)."""
        return [a for a in self.agents.values() if a.stats_unwritten]

    def release(self, unit: Unit) -> None:
        """Free the agent slot a unit holds (engine lock held), its run being withdrawn."""
        self._release(unit, self.agents.get(unit.agent_id) if unit.agent_id is not None else None)

    def _release(self, unit: Unit, state: AgentState | None) -> None:
        if state is not None and unit.agent_id == state.id:
            state.load = max(0, state.load - 1)
            self.observed.metrics.agent_load.set_at(state.load, _load_key(state.id))
        unit.agent_id = None

    def requeue(
        self, tx: Tx, after: After, unit: Unit, state: AgentState | None, reason: str, *, record: bool
    ) -> None:
        """Give a task back to the queue for another attempt (lost worker, forced unregister)."""
        run = unit.run
        agent_id = unit.agent_id
        latency = time.monotonic() - unit.start_mono
        if unit.cancel is not None:
            after.cancels.append((unit.cancel, f"re-dispatched: {reason}"))
        self._release(unit, state)
        if record and state is not None:
            err = TaskError("WORKER_LOST", reason[:4096], True)
            state.record(False, latency, err)
            self.save_stats(tx, state, at_once=True)
        if run.plan[unit.position] == "":
            run.participants[unit.position] = ""
        self.journal.emit(
            tx,
            "coordination.task.redispatched",
            {
                "coordination_id": run.id,
                "task_id": unit.task_id,
                "attempt": unit.attempt,
                "next_attempt": unit.attempt + 1,
                "agent_id": agent_id,
                "position": unit.position,
                "reason": reason[:1024],
            },
            run,
        )
        self.journal.save(tx, run)
        self.runs.queue.push(unit, int(run.priority), run.create_time)

    def _record_result(self, tx: Tx, after: After, run: Run, result: AgentResult) -> None:
        if run.mode == "conditional" and result.position == 1:
            result = replace(result, condition_result=True)
        run.results[result.position] = result
        run.units.pop(result.position, None)
        data = {
            "coordination_id": run.id,
            "task_id": result.task_id,
            "attempt": result.attempts,
            "agent_id": result.agent_id,
            "position": result.position,
            "latency": round(result.latency, 6),
            "usage": result.usage.to_dict(),
        }
        if len(run.plan) == 1:
            pass  # a single task: coordination.completed / failed says it all
        elif result.error:
            self.journal.emit(tx, "coordination.task.failed", {**data, "error": result.error.to_dict()}, run)
        else:
            self.journal.emit(tx, "coordination.task.completed", data, run)
        self.progress(tx, after, run)

    def progress(self, tx: Tx, after: After, run: Run) -> None:
        """After results changed: queue what comes next, or finish the coordination."""
        if run.mode == "parallel":
            if len(run.results) < len(run.plan):
                for i in range(len(run.plan)):
                    if i not in run.results and i not in run.units:
                        self._enqueue(run, i)
                self.journal.save(tx, run)
                return
            results = [run.results[i] for i in sorted(run.results)]
            if any(r.ok for r in results):
                self.finish(tx, after, run, "completed", None)
                return
            errors = [r.error for r in results if r.error]
            message = "; ".join(
                f"{r.agent_id}: {r.error.code}: {r.error.message}" for r in results if r.error
            )
            self.finish(
                tx,
                after,
                run,
                "failed",
                TaskError("ALL_AGENTS_FAILED", message[:4096], any(e.retryable for e in errors)),
            )
            return
        failed = next((run.results[i] for i in sorted(run.results) if run.results[i].error), None)
        if failed is not None:
            self.finish(tx, after, run, "failed", failed.error)
            return
        self._advance_chain(run)
        if len(run.results) == len(run.plan):
            self.finish(tx, after, run, "completed", None)
        else:
            self.journal.save(tx, run)

    def _advance_chain(self, run: Run) -> None:
        """Queue the next slot of a chain mode (evaluating the condition before a conditional target)."""
        pos = len(run.results)
        if pos >= len(run.plan) or pos in run.units:
            return
        if run.mode == "conditional" and pos == 1:
            source = run.results[0]
            assert run.condition is not None
            holds = evaluate(run.condition, source.output, source.structured_output)
            if not holds:
                run.results[1] = AgentResult(
                    run.plan[1], 1, f"{run.id}:1", 0, skipped=True, condition_result=False
                )
                return
        self._enqueue(run, pos)

    def finish(self, tx: Tx, after: After, run: Run, status: str, error: TaskError | None) -> None:
        """Make a coordination terminal: output, in-flight tasks stopped, event, persisted, waiters woken."""
        now = time.time()
        for unit in list(run.units.values()):
            self.runs.queue.remove(unit)
            if unit.agent_id is None:
                continue
            state = self.agents.get(unit.agent_id)
            if unit.cancel is not None:
                after.cancels.append((unit.cancel, error.message if error else status))
            if error is not None:
                latency = time.monotonic() - unit.start_mono
                run.results[unit.position] = make_result(
                    unit,
                    unit.agent_id,
                    AgentError(error.message, code=error.code, retryable=error.retryable),
                    latency,
                )
                if state is not None and status == "timed_out":
                    state.record(False, latency, error)
                    self.save_stats(tx, state, at_once=True)
            self._release(unit, state)
        run.units.clear()
        run.status = status
        run.error = error
        run.end_time = now
        if status == "completed":
            run.output, run.structured_output = final_output(run)
        self.journal.emit(
            tx,
            f"coordination.{status}",
            {
                "coordination_id": run.id,
                "mode": run.mode,
                "status": status,
                "agent_ids": run.participants,
                "output": run.output[:PREVIEW],
                "error": error.to_dict() if error else None,
                "duration": round(now - run.create_time, 6),
                "usage": total_usage(run).to_dict(),
                "results": [
                    {
                        "agent_id": r.agent_id,
                        "task_id": r.task_id,
                        "attempts": r.attempts,
                        "latency": round(r.latency, 6),
                        "error_code": r.error.code if r.error else "",
                        "skipped": r.skipped,
                    }
                    for r in (run.results[i] for i in sorted(run.results))
                ],
                "execution_id": run.execution_id,
                "step_id": run.step_id,
            },
            run,
        )
        self.journal.save(tx, run)
        run.final = run.snapshot()
        after.calls.append(lambda: self._observe(run))
        after.finished.append(run)  # leaves _live after commit, so get() never reads a stale row

    def _observe(self, run: Run) -> None:
        """Metrics of a finished coordination and, for a failure, a recorded error in its trace."""
        self.observed.metrics.record_coordination(
            (run.end_time or time.time()) - run.create_time, run.status, mode=run.mode
        )
        if run.status not in ("failed", "timed_out") or run.error is None:
            return
        token = otel_context.attach(context_from(run.traceparent)) if run.traceparent else None
        try:
            self.observed.record_error(
                f"COORDINATION_{run.status.upper()}",
                f"coordination {run.id} {run.status}: {run.error.code}: {run.error.message}",
                correlation_id=run.correlation_id,
                details={"coordination_id": run.id, "mode": run.mode, "agent_ids": run.participants},
            )
        finally:
            if token is not None:
                otel_context.detach(token)
