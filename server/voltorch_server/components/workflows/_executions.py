"""Workflow executions in SQLite: the execution row, one row per step (fan-out children included), and the
read models returned to callers. Every checkpoint is one of these writes inside the caller's transaction."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ...agents.base import TokenUsage
from ...errors import InvalidArgument
from ...priority import Priority
from ...storage import Database, Tx
from .._paging import decode_token, encode_token, page_size
from ..coordination import TaskError
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
    usage: TokenUsage = field(default_factory=TokenUsage)


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
    usage: TokenUsage = field(default_factory=TokenUsage)


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
    usage: TokenUsage = field(default_factory=TokenUsage)
    budget: Budget | None = None
    waiting: tuple[WaitingFor, ...] = ()

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


def _j(v: Any) -> str | None:
    return None if v is None else json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def _unj(raw: str | None) -> Any:
    return None if raw is None else json.loads(raw)


def save_step(tx: Tx, execution_id: str, s: StepRecord) -> None:
    """Insert or overwrite one step row (the checkpoint of that step)."""
    tx.execute(
        "INSERT INTO workflow_steps(execution_id, step_id, parent_id, position, name, status, attempts, output,"
        " structured, error, agent_id, coordination_id, item, start_time, end_time, next_retry_time, usage)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(execution_id, step_id) DO UPDATE SET"
        " status=excluded.status, attempts=excluded.attempts, output=excluded.output,"
        " structured=excluded.structured, error=excluded.error, agent_id=excluded.agent_id,"
        " coordination_id=excluded.coordination_id, start_time=excluded.start_time,"
        " end_time=excluded.end_time, next_retry_time=excluded.next_retry_time, usage=excluded.usage",
        (
            execution_id,
            s.step_id,
            s.parent_id,
            s.position,
            s.name,
            s.status,
            s.attempts,
            s.output,
            _j(s.structured),
            _j(s.error.to_dict() if s.error else None),
            s.agent_id,
            s.coordination_id,
            _j(s.item),
            s.start_time,
            s.end_time,
            s.next_retry_time,
            _j(s.usage.to_dict()) if s.usage != TokenUsage() else None,
        ),
    )


def _step_record(r: Any) -> StepRecord:
    return StepRecord(
        step_id=r["step_id"],
        position=r["position"],
        name=r["name"],
        parent_id=r["parent_id"],
        status=r["status"],
        attempts=r["attempts"],
        output=r["output"],
        structured=_unj(r["structured"]),
        error=TaskError.from_dict(_unj(r["error"])),
        agent_id=r["agent_id"],
        coordination_id=r["coordination_id"],
        item=_unj(r["item"]),
        start_time=r["start_time"],
        end_time=r["end_time"],
        next_retry_time=r["next_retry_time"],
        usage=TokenUsage.from_dict(_unj(r["usage"])),
    )


def _public(s: StepRecord, children: tuple[StepExecution, ...] = ()) -> StepExecution:
    return StepExecution(
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


class ExecutionStore:
    """SQL for executions and steps; callers own the transactions."""

    def __init__(self, db: Database):
        self.db = db

    # -- writes ------------------------------------------------------------------------------------------

    def insert(self, tx: Tx, row: dict[str, Any], steps: list[StepRecord]) -> None:
        cols = ", ".join(row)
        tx.execute(
            f"INSERT INTO workflow_executions({cols}) VALUES ({', '.join('?' * len(row))})",
            tuple(row.values()),
        )
        for s in steps:
            save_step(tx, row["id"], s)

    def update(self, tx: Tx, execution_id: str, **values: Any) -> None:
        for k in ("result", "error", "usage"):
            if k in values:
                values[k] = _j(values[k])
        sets = ", ".join(f"{k} = ?" for k in values)
        tx.execute(f"UPDATE workflow_executions SET {sets} WHERE id = ?", (*values.values(), execution_id))

    # -- reads -------------------------------------------------------------------------------------------

    def row(self, execution_id: str, tx: Tx | None = None) -> Any:
        sql = "SELECT * FROM workflow_executions WHERE id = ?"
        if tx is not None:
            return tx.execute(sql, (execution_id,)).fetchone()
        return self.db.query_one(sql, (execution_id,))

    def by_request(self, tx: Tx, request_id: str) -> Any:
        return tx.execute("SELECT * FROM workflow_executions WHERE request_id = ?", (request_id,)).fetchone()

    def steps(self, execution_id: str) -> list[StepRecord]:
        rows = self.db.query(
            "SELECT * FROM workflow_steps WHERE execution_id = ? ORDER BY parent_id, position",
            (execution_id,),
        )
        return [_step_record(r) for r in rows]

    def ids_with_status(self, *statuses: str) -> list[Any]:
        marks = ", ".join("?" * len(statuses))
        return self.db.query(
            f"SELECT id, status, priority, create_time FROM workflow_executions WHERE status IN ({marks})"
            " ORDER BY create_time, id",
            statuses,
        )

    def execution(self, row: Any, *, with_steps: bool = True) -> Execution:
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
            steps=nest(self.steps(row["id"])) if with_steps else (),
            usage=TokenUsage.from_dict(_unj(row["usage"])),
            budget=loads(row["definition"]).budget,
        )

    def list(
        self,
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
        pos = decode_token(page_token, query)
        where: list[str] = ["1=1"]
        args: list[str | float] = []
        if status:
            where.append("status = ?")
            args.append(status)
        if template_name:
            where.append("template_name = ?")
            args.append(template_name)
        # create_time is on a microsecond grid and times travel as floats: half a microsecond of slack
        # selects an execution by its own create_time even from a client whose conversion is a little off,
        # without taking in the neighbouring microsecond.
        if created_after is not None:
            where.append("create_time >= ?")
            args.append(created_after - 5e-7)
        if created_before is not None:
            where.append("create_time < ?")
            args.append(created_before - 5e-7)
        if pos is not None:
            if not (isinstance(pos, list) and len(pos) == 2):
                raise InvalidArgument("page_token", "malformed page token", reason="PAGE_TOKEN_INVALID")
            where.append("(create_time < ? OR (create_time = ? AND id < ?))")
            args.extend([pos[0], pos[0], pos[1]])
        rows = self.db.query(
            f"SELECT * FROM workflow_executions WHERE {' AND '.join(where)}"
            " ORDER BY create_time DESC, id DESC LIMIT ?",
            (*args, size + 1),
        )
        out = [self.execution(r, with_steps=include_steps) for r in rows[:size]]
        token = (
            encode_token(query, [rows[size - 1]["create_time"], rows[size - 1]["id"]])
            if len(rows) > size
            else ""
        )
        return out, token
