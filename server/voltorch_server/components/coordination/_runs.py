"""The engine's in-memory records of live coordinations (guarded by its lock) and the pure helpers
that turn agent outcomes into results and results into a coordination's output."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from ...agents.base import NO_USAGE, Agent, AgentError, AgentTask, CancelSignal, Latch, Outcome, TokenUsage
from ...errors import InvalidArgument
from ...frozen import made
from ...json_encoders import encoder
from ...priority import Priority
from ._deltas import DeltaStream
from ._model import (
    MAX_OUTPUT_BYTES,
    TERMINAL,
    AgentResult,
    Candidate,
    Coordination,
    CoordinationCondition,
    CoordinationRequest,
    Selection,
    TaskError,
    check_json,
)
from ._rows import resolved_target

SOURCE = "coordination"  # the source of every event the engine publishes
_NOBODY: frozenset[str] = frozenset()
PREVIEW = 1000  # characters of task / output text copied into events


_dumps = encoder()  # json.dumps(value)
_compact = encoder(separators=(",", ":"))  # one encoder for every row, not one per call
_encode = encoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False)  # as events are
_hashed = encoder(sort_keys=True, default=str)  # a request's digest (json.dumps' defaults)


@lru_cache(maxsize=1024)
def small_list_json(items: tuple[Any, ...]) -> str:
    """json.dumps(list(items)) for the few short lists a coordination's row repeats (its plan, capabilities,
    participants, attempt counts): made once per distinct list. Only for str and int items (True == 1 and
    1.0 == 1 would find each other's text)."""
    return _dumps(list(items))


class SelectionTexts:
    """Selections as JSON, their candidates' parts kept: what `_encode(sel.to_dict())` writes. An agent's
    candidate is the same (frozen) object from one dispatch to the next while nothing it shows changes
    (selection.rank), and its floats (`repr` of each score, rate and latency) are the costliest part of
    a selection's JSON. Owned by the engine's run table (guarded by the engine lock, as the runs are)."""

    __slots__ = ("_kept",)

    def __init__(self) -> None:
        self._kept: dict[int, tuple[Candidate, str]] = {}  # id -> (the candidate, kept alive; its JSON)

    def candidate(self, c: Candidate) -> str:
        kept = self._kept.get(id(c))
        if kept is not None and kept[0] is c:
            return kept[1]
        text = _encode(c.to_dict())
        if len(self._kept) >= 4096:  # a few new ones a step: forget them all now and then
            self._kept.clear()
        self._kept[id(c)] = (c, text)
        return text

    def of(self, sel: Selection) -> str:
        candidate = self.candidate
        candidates = ",".join([candidate(c) for c in sel.candidates])
        return (
            f'{{"selected_agent_ids":{_encode(list(sel.selected_agent_ids))},"candidates":[{candidates}],'
            f'"explanation":{_encode(sel.explanation)}}}'
        )


@dataclass(eq=False)
class Unit:
    """One slot of a coordination: waiting in the queue, or in flight on an agent."""

    run: Run
    position: int
    task_id: str
    attempt: int = 0
    agent_id: str | None = None  # set while in flight
    cancel: CancelSignal | None = None
    start_time: float = 0.0
    start_mono: float = 0.0
    launch: Callable[[], None] | None = None  # how its current attempt starts (in After.launches)


@dataclass(eq=False)
class Run:
    """The live, mutable state of one non-terminal coordination (guarded by the engine lock)."""

    id: str
    request_id: str
    mode: str
    source: str
    requested_agent_ids: tuple[str, ...]
    caps: tuple[str, ...]
    task: str
    context: dict[str, Any]
    priority: Priority
    timeout: float
    deadline: float
    condition: CoordinationCondition | None
    correlation_id: str
    trace_id: str
    traceparent: str
    max_agents: int
    execution_id: str
    step_id: str
    create_time: float
    plan: list[str]
    status: str = "queued"
    participants: list[str] = field(default_factory=list)
    attempts: list[int] = field(default_factory=list)
    results: dict[int, AgentResult] = field(default_factory=dict)
    output: str = ""
    structured_output: Any = None
    error: TaskError | None = None
    selection: Selection | None = None
    start_time: float | None = None
    end_time: float | None = None
    units: dict[int, Unit] = field(default_factory=dict)
    done: Latch = field(default_factory=Latch)  # set once it is terminal (threading.Event's calls)
    final: Coordination | None = None
    # A new coordination's fixed columns until its row is inserted, at the end of the transaction that
    # requested it (`Journal.write_new`): one INSERT with the state dispatch gave it, no UPDATE after it.
    unwritten: dict[str, Any] | None = None
    _selection_text: tuple[Selection, str] | None = field(default=None, repr=False)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def excluded(self, position: int) -> frozenset[str]:
        """Agents a selected slot must not take: the named ones and those other slots got. Every dispatch
        asks it of every queued unit (units waiting on a full LLM endpoint can be hundreds): a lone
        slot that names nobody, the common case, excludes nobody without building a set."""
        if len(self.plan) == 1 and not self.plan[0] and not self.source:
            return _NOBODY
        named = {a for a in self.plan if a}
        if self.source:
            named.add(self.source)
        others = {a for i, a in enumerate(self.participants) if a and i != position}
        return frozenset(named | others)

    def context_for(self, position: int) -> dict[str, Any]:
        if self.mode == "parallel" or position == 0:
            return dict(self.context)
        prev = self.results.get(position - 1)
        ctx = dict(self.context)
        if prev is not None:
            ctx["previous_output"] = prev.output
            ctx["previous_structured_output"] = prev.structured_output
            ctx["previous_agent_id"] = prev.agent_id
        return ctx

    def row(self, texts: SelectionTexts) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "agent_ids": small_list_json(tuple(self.participants)),
            "attempts": small_list_json(tuple(self.attempts)),
            "results": _compact([self.results[i].to_dict() for i in sorted(self.results)]),
            "output": self.output,
            "structured_output": None if self.structured_output is None else _compact(self.structured_output),
            "error": _dumps(self.error.to_dict()) if self.error else None,
            "selection": None if self.selection is None else self.selection_text(self.selection, texts),
            "start_time": self.start_time,
            "end_time": self.end_time,
        }

    def selection_text(self, sel: Selection, texts: SelectionTexts) -> str:
        """A selection as JSON, encoded once when it is the run's: its column and the event that announces
        it (coordination.started) carry the same text, and the row is written again with every change of
        the coordination (a selection lists every candidate)."""
        cached = self._selection_text
        if cached is not None and cached[0] is sel:
            return cached[1]
        text = texts.of(sel)
        if sel is self.selection:
            self._selection_text = (sel, text)
        return text

    def snapshot(self, queue_position: int = 0) -> Coordination:
        """The coordination as callers see it, made as Coordination(...) makes it (every field, in order)
        without the frozen dataclass's __init__ (an object.__setattr__ for each of 26 fields): a workflow
        step takes one of every coordination it finishes."""
        c = made(
            Coordination,
            id=self.id,
            status=self.status,
            mode=self.mode,
            task=self.task,
            request_id=self.request_id,
            source_agent_id=self.source,
            target_agent_id=resolved_target(self.mode, self.source, self.plan, self.participants),
            agent_ids=tuple(self.participants),
            required_capabilities=self.caps,
            context=self.context,
            priority=self.priority,
            timeout=self.timeout,
            condition=self.condition,
            correlation_id=self.correlation_id,
            trace_id=self.trace_id,
            results=tuple(self.results[i] for i in sorted(self.results)),
            output=self.output,
            structured_output=self.structured_output,
            error=self.error,
            selection=self.selection,
            queue_position=queue_position,
            create_time=self.create_time,
            start_time=self.start_time,
            end_time=self.end_time,
            execution_id=self.execution_id,
            step_id=self.step_id,
        )
        return c


@dataclass
class After:
    """Work to do once a transaction has committed and the locks are released."""

    launches: list[Callable[[], None]] = field(default_factory=list)  # agents starting their tasks
    cancels: list[tuple[CancelSignal, str]] = field(default_factory=list)
    finished: list[Run] = field(default_factory=list)
    calls: list[Callable[[], None]] = field(default_factory=list)  # closing runtimes, metrics, error records


@dataclass(frozen=True)
class Prepared:
    """A checked and planned coordination request, not yet written (CoordinationEngine.prepare)."""

    req: CoordinationRequest
    id: str
    priority: Priority
    timeout: float
    context_raw: str
    digest: str
    plan: list[str]


@dataclass(eq=False)
class InlineTask:
    """A task given to an in-process agent that the submitting thread runs itself (no agent pool);
    `deltas`: its live text, the batches not yet published are written with its outcome."""

    unit: Unit
    attempt: int
    runtime: Agent
    task: AgentTask
    deltas: DeltaStream | None = None


@dataclass(frozen=True)
class Placed:
    """What submit_in() did: the coordination's id, the task to run inline if any, the after-commit work;
    `written` is False when the engine had stopped meanwhile (nothing was written)."""

    id: str
    inline: InlineTask | None
    after: After
    written: bool = True


def request_hash(req: CoordinationRequest, priority: Priority, timeout: float) -> str:
    body = {
        "task": req.task,
        "mode": req.mode,
        "source": req.source_agent_id,
        "target": req.target_agent_id,
        "agents": list(req.agent_ids),
        "caps": list(req.required_capabilities),
        "context": req.context,
        "priority": int(priority),
        "timeout": timeout,
        "condition": req.condition.to_dict() if req.condition else None,
        "correlation_id": req.correlation_id,
        "max_agents": req.max_agents,
        "execution_id": req.execution_id,
        "step_id": req.step_id,
    }
    return hashlib.sha256(_hashed(body).encode()).hexdigest()


def checked(outcome: Outcome) -> Outcome:
    """Enforce output limits on what an agent returned."""
    if isinstance(outcome, AgentError):
        return outcome
    if len(outcome.output.encode()) > MAX_OUTPUT_BYTES:
        return AgentError(
            f"output is {len(outcome.output.encode())} bytes; the limit is {MAX_OUTPUT_BYTES}",
            code="INVALID_OUTPUT",
        )
    if "\x00" in outcome.output:  # a text column on PostgreSQL cannot hold one (JSON escapes its own)
        return AgentError(
            "output holds a NUL character (U+0000), which text cannot store", code="INVALID_OUTPUT"
        )
    if outcome.structured_output is not None:
        try:
            check_json(outcome.structured_output, "structured_output", MAX_OUTPUT_BYTES)
        except InvalidArgument as exc:
            return AgentError(f"structured output rejected: {exc.message}", code="INVALID_OUTPUT")
    return outcome


def make_result(unit: Unit, agent_id: str, outcome: Outcome, latency: float) -> AgentResult:
    """AgentResult(...) as its constructor makes it (every field, in order), without the frozen dataclass's
    __init__."""
    if isinstance(outcome, AgentError):
        output, structured = "", None
        error: TaskError | None = TaskError(outcome.code, outcome.message[:4096], outcome.retryable)
    else:
        output, structured, error = outcome.output, outcome.structured_output, None
    r = made(
        AgentResult,
        agent_id=agent_id,
        position=unit.position,
        task_id=unit.task_id,
        attempts=unit.attempt,
        output=output,
        structured_output=structured,
        error=error,
        latency=latency,
        usage=outcome.usage,
        skipped=False,
        condition_result=None,
        start_time=unit.start_time,
        end_time=time.time(),
    )
    return r


def final_output(run: Run) -> tuple[str, Any]:
    results = [run.results[i] for i in sorted(run.results)]
    if run.mode == "parallel":
        ok = [r for r in results if r.ok]
        text = "\n\n".join(r.output for r in ok)
        structured = [
            (r.structured_output if r.structured_output is not None else r.output) if r.ok else None
            for r in results
        ]
        return text, structured
    ran = [r for r in results if not r.skipped]
    last = ran[-1] if ran else None
    return (last.output, last.structured_output) if last else ("", None)


def total_usage(run: Run) -> TokenUsage:
    return sum((r.usage for r in run.results.values()), NO_USAGE)
