"""Workflow executions: the step record the scheduler checkpoints, the read models returned to callers, and
`ExecutionStore`, what the engine needs from storage (the execution row, one row per step, fan-out children
included; implemented by `storage.stores.SqlExecutions`). Every checkpoint is one of its writes inside the
caller's transaction."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from ...agents.base import NO_USAGE, TokenUsage
from ...errors import InvalidArgument
from ...frozen import made
from ...priority import Priority
from ..coordination import TaskError
from ..shared import decode_token, encode_token, fitting, is_pair, page_size, row_bytes, wire_bytes
from ._waits import WaitingFor
from .templates import Budget, loads


class Status(StrEnum):
    """Statuses of executions and of their steps (one vocabulary: a step is never queued, paused or
    timed out; an execution is never skipped or retrying)."""

    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


PENDING, QUEUED, RUNNING, PAUSED = Status.PENDING, Status.QUEUED, Status.RUNNING, Status.PAUSED
COMPLETED, FAILED, CANCELLED, TIMED_OUT = Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.TIMED_OUT
SKIPPED, RETRYING = Status.SKIPPED, Status.RETRYING
TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED, TIMED_OUT})
EXECUTION_STATUSES = (PENDING, QUEUED, RUNNING, PAUSED, COMPLETED, FAILED, CANCELLED, TIMED_OUT)
STEP_DONE = frozenset({COMPLETED, FAILED, SKIPPED, CANCELLED})


@dataclass
class StepRecord:
    """The mutable state of one step (or fan-out child) as the scheduler keeps it and checkpoints it."""

    step_id: str
    position: int
    name: str
    parent_id: str = ""
    status: str = PENDING
    attempts: int = 0
    output: str = ""
    structured: Any = None
    error: TaskError | None = None
    agent_id: str = ""
    coordination_id: str = ""
    item: Any = None
    start_time: float | None = None
    end_time: float | None = None
    next_retry_time: float | None = None
    usage: TokenUsage = NO_USAGE


@dataclass(frozen=True)
class StepExecution:
    step_id: str
    name: str
    status: str
    attempts: int
    output: str
    structured_output: Any
    error: TaskError | None
    agent_id: str
    coordination_id: str
    start_time: float | None
    end_time: float | None
    next_retry_time: float | None
    children: tuple[StepExecution, ...] = ()
    usage: TokenUsage = NO_USAGE


@dataclass(frozen=True)
class Execution:
    id: str
    request_id: str
    template_name: str
    template_version: int
    status: str
    parameters: dict[str, Any]
    result: Any
    error: TaskError | None
    priority: Priority
    labels: dict[str, str]
    correlation_id: str
    trace_id: str
    create_time: float
    start_time: float | None
    end_time: float | None
    update_time: float
    steps: tuple[StepExecution, ...] = field(default=())
    usage: TokenUsage = NO_USAGE
    budget: Budget | None = None
    waiting: tuple[WaitingFor, ...] = ()
    replica_id: str = ""  # the owner of its lease ("" while queued unclaimed)
    epoch: int = 0

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


def _unj(raw: str | None) -> Any:
    return None if raw is None else json.loads(raw)


def _public(s: StepRecord, children: tuple[StepExecution, ...] = ()) -> StepExecution:
    """The step as the caller sees it: StepExecution(...) without the frozen dataclass's __init__ (an
    object.__setattr__ per field), as the coordination's selection objects are made (every field, in order)."""
    e = made(
        StepExecution,
        step_id=s.step_id,
        name=s.name,
        status=s.status,
        attempts=s.attempts,
        output=s.output,
        structured_output=s.structured,
        error=s.error,
        agent_id=s.agent_id,
        coordination_id=s.coordination_id,
        start_time=s.start_time,
        end_time=s.end_time,
        next_retry_time=s.next_retry_time,
        children=children,
        usage=s.usage,
    )
    return e


def nest(records: list[StepRecord]) -> tuple[StepExecution, ...]:
    """Top-level steps in template order with their fan-out children in item order."""
    kids: dict[str, list[StepRecord]] = {}
    for r in records:
        if r.parent_id:
            kids.setdefault(r.parent_id, []).append(r)
    top = sorted((r for r in records if not r.parent_id), key=lambda r: r.position)
    return tuple(
        _public(r, tuple(_public(c) for c in sorted(kids.get(r.step_id, ()), key=lambda c: c.position)))
        for r in top
    )


class ExecutionStore(Protocol):
    """The executions and their steps in storage; callers own the transactions (`tx`: inside one)."""

    db: Any  # the database the engine writes through (`write()`)

    def insert(self, tx: Any, row: dict[str, Any], steps: list[StepRecord]) -> None: ...
    def save_step(self, tx: Any, execution_id: str, s: StepRecord) -> None:
        """Insert or overwrite one step row (the checkpoint of that step)."""
        ...

    def save_steps(self, tx: Any, execution_id: str, steps: Sequence[StepRecord]) -> None:
        """Insert or overwrite several step rows (distinct steps) in one statement."""
        ...

    def update(self, tx: Any, execution_id: str, *, epoch: int | None = None, **values: Any) -> bool:
        """Set columns of the execution row (result, error and usage given as values, stored as JSON).
        With `epoch`: only if the row is still at that epoch (fencing); False when it is not."""
        ...

    def own(self, tx: Any, execution_id: str, owner: str) -> Any:
        """Make `owner` the owner of a live execution at the next epoch; its row, None when terminal."""
        ...

    def claim_queued(self, tx: Any, owner: str, limit: int) -> list[Any]:
        """Up to `limit` unowned queued executions (priority, then age), now `owner`'s at the next epoch."""
        ...

    def claim_orphans(self, tx: Any, owner: str, alive_since: float, limit: int) -> list[Any]:
        """Up to `limit` live executions of members dead since `alive_since`, now `owner`'s (with
        `previous_owner`)."""
        ...

    def owned(self, owner: str) -> list[Any]: ...
    def load(self, tx: Any, alive_since: float) -> tuple[list[str], dict[str, int], int]:
        """The live members, how many executions each runs, how many wait unowned (`tx` None: no tx)."""
        ...

    def row(self, execution_id: str, tx: Any = None) -> Any: ...
    def by_request(self, tx: Any, request_id: str) -> Any: ...
    def steps(self, execution_id: str) -> list[StepRecord]: ...
    def ids_with_status(self, *statuses: str) -> list[Any]: ...
    def page(
        self,
        *,
        status: str,
        template_name: str,
        created_after: float | None,
        created_before: float | None,
        before: tuple[float, str] | None,
        limit: int,
    ) -> list[Any]:
        """Execution rows newest first (create_time, then id), filtered; `before`: the last row of the
        previous page."""
        ...


def execution(store: ExecutionStore, row: Any, *, with_steps: bool = True) -> Execution:
    """A stored execution row (and its steps, read from `store`) as the caller sees it."""
    return Execution(
        id=row["id"],
        request_id=row["request_id"] or "",
        template_name=row["template_name"],
        template_version=row["template_version"],
        status=row["status"],
        parameters=json.loads(row["parameters"]),
        result=_unj(row["result"]),
        error=TaskError.from_dict(_unj(row["error"])),
        priority=Priority(row["priority"]),
        labels=json.loads(row["labels"]),
        correlation_id=row["correlation_id"],
        trace_id=row["trace_id"],
        create_time=row["create_time"],
        start_time=row["start_time"],
        end_time=row["end_time"],
        update_time=row["update_time"],
        steps=nest(store.steps(row["id"])) if with_steps else (),
        usage=TokenUsage.from_dict(_unj(row["usage"])),
        budget=loads(row["definition"]).budget,
        replica_id=row["owner"],
        epoch=row["epoch"],
    )


def list_executions(
    store: ExecutionStore,
    *,
    status: str = "",
    template_name: str = "",
    created_after: float | None = None,
    created_before: float | None = None,
    include_steps: bool = False,
    page_size_: int = 0,
    page_token: str = "",
) -> tuple[list[Execution], str]:
    if status and status not in EXECUTION_STATUSES:
        raise InvalidArgument("status", f"unknown status {status!r}", reason="ENUM_VALUE_INVALID")
    size = page_size(page_size_)
    query = {"s": status, "t": template_name, "a": created_after, "b": created_before}
    pos = decode_token(page_token, query, shape=is_pair)
    rows = store.page(
        status=status,
        template_name=template_name,
        created_after=created_after,
        created_before=created_before,
        before=None if pos is None else (pos[0], pos[1]),
        limit=size + 1,
    )
    out = [execution(store, r, with_steps=include_steps) for r in rows[:size]]
    weights = (
        row_bytes(r, skip=("definition",)) + _steps_bytes(e.steps) for r, e in zip(rows, out, strict=False)
    )
    out = out[: fitting(weights)]
    n = len(out)
    token = encode_token(query, [rows[n - 1]["create_time"], rows[n - 1]["id"]]) if len(rows) > n else ""
    return out, token


def _steps_bytes(steps: tuple[StepExecution, ...]) -> int:
    """Roughly what steps weigh on the wire: their outputs, a fan-out's children twice (their outputs are
    its structured_output too)."""
    return sum(wire_bytes(s.output) + 2 * _steps_bytes(s.children) for s in steps)
