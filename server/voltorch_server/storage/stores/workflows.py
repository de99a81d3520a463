"""The SQL of workflows: executions and their steps (workflow_executions, workflow_steps), signals
(workflow_signals) and durable step timers (workflow_timers), once for both backends: the implementations of
`components.workflows.ExecutionStore`, `SignalStore` and `TimerStore`. Callers own the transactions; every
checkpoint of a step is one `save_steps` and one `update` inside the run's one write."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ...agents.base import NO_USAGE, TokenUsage
from ...components.coordination import TaskError
from ...components.workflows import Signal, StepRecord, TimerRow
from ...json_encoders import encoder
from .._serial_writes import engine_writes

_ENCODE = encoder(separators=(",", ":"), ensure_ascii=False)  # one encoder, not one per call


_text = str.__str__  # a status (StrEnum) as the plain str it is: bound as such, not offered to adapters


def _j(v: Any) -> str | None:
    return None if v is None else _ENCODE(v)


def _unj(raw: str | None) -> Any:
    return None if raw is None else json.loads(raw)


_STEP_HEAD = (
    "INSERT INTO workflow_steps(execution_id, step_id, parent_id, position, name, status, attempts, output,"
    " structured, error, agent_id, coordination_id, item, start_time, end_time, next_retry_time, usage)"
)
_STEP_TAIL = (
    " ON CONFLICT(execution_id, step_id) DO UPDATE SET"
    " status=excluded.status, attempts=excluded.attempts, output=excluded.output,"
    " structured=excluded.structured, error=excluded.error, agent_id=excluded.agent_id,"
    " coordination_id=excluded.coordination_id, start_time=excluded.start_time,"
    " end_time=excluded.end_time, next_retry_time=excluded.next_retry_time, usage=excluded.usage"
)
_LIVE = "('pending','queued','running','paused')"  # not terminal: what an owner runs (partial index)


def _step_row(execution_id: str, s: StepRecord) -> tuple:
    return (
        execution_id,
        s.step_id,
        s.parent_id,
        s.position,
        s.name,
        _text(s.status),
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
        _j(s.usage.to_dict()) if s.usage is not NO_USAGE and s.usage != NO_USAGE else None,
    )


def _step_record(r: Any) -> StepRecord:
    structured, error, item, usage = r["structured"], r["error"], r["item"], r["usage"]
    return StepRecord(
        r["step_id"],
        r["position"],
        r["name"],
        r["parent_id"],
        r["status"],
        r["attempts"],
        r["output"],
        None if structured is None else json.loads(structured),
        None if error is None else TaskError.from_dict(json.loads(error)),
        r["agent_id"],
        r["coordination_id"],
        None if item is None else json.loads(item),
        r["start_time"],
        r["end_time"],
        r["next_retry_time"],
        NO_USAGE if usage is None else TokenUsage.from_dict(json.loads(usage)),  # NULL: none used
    )


class SqlExecutions:
    def __init__(self, db: Any):
        self.db = engine_writes(db)  # one engine transaction at a time per process (PostgreSQL)

    # -- writes ------------------------------------------------------------------------------------------

    def insert(self, tx: Any, row: dict[str, Any], steps: list[StepRecord]) -> None:
        cols = ", ".join(row)
        tx.execute(
            f"INSERT INTO workflow_executions({cols}) VALUES ({', '.join('?' * len(row))})",
            tuple(row.values()),
        )
        self.save_steps(tx, row["id"], steps)

    def save_step(self, tx: Any, execution_id: str, s: StepRecord) -> None:
        """Insert or overwrite one step row (the checkpoint of that step)."""
        self.save_steps(tx, execution_id, [s])

    def save_steps(self, tx: Any, execution_id: str, steps: Sequence[StepRecord]) -> None:
        """Insert or overwrite step rows (each distinct), in one statement: a workflow step's checkpoint
        writes the step that ended and the one it starts."""
        tx.insert_rows(_STEP_HEAD, [_step_row(execution_id, s) for s in steps], _STEP_TAIL)

    def update(self, tx: Any, execution_id: str, *, epoch: int | None = None, **values: Any) -> bool:
        for k in ("result", "error", "usage"):
            if k in values:
                values[k] = _j(values[k])
        if isinstance(values.get("status"), str):
            values["status"] = _text(values["status"])
        sets = ", ".join(f"{k} = ?" for k in values)
        sql, args = f"UPDATE workflow_executions SET {sets} WHERE id = ?", (*values.values(), execution_id)
        if epoch is not None:  # fenced: only while the execution is still at the writer's epoch
            sql, args = sql + " AND epoch = ?", (*args, epoch)
        return tx.execute(sql, args).rowcount == 1

    # -- ownership ---------------------------------------------------------------------------------------

    def own(self, tx: Any, execution_id: str, owner: str) -> Any:
        """Make `owner` the owner of a live (not terminal) execution at the next epoch; the row as it is now,
        or None when it is terminal or missing."""
        return tx.execute(
            "UPDATE workflow_executions SET owner = ?, epoch = epoch + 1"
            f" WHERE id = ? AND status IN {_LIVE} RETURNING *",
            (owner, execution_id),
        ).fetchone()

    def claim_queued(self, tx: Any, owner: str, limit: int) -> list[Any]:
        """Up to `limit` unowned queued executions, highest priority then oldest first, now `owner`'s at
        their next epoch (rows another replica is claiming are passed over)."""
        rows = tx.execute(
            "SELECT id FROM workflow_executions WHERE owner = '' AND status = 'queued'"
            f" ORDER BY priority DESC, create_time, id LIMIT ?{self.db.dialect.skip_locked}",
            (limit,),
        ).fetchall()
        return self._own_all(tx, [r["id"] for r in rows], owner)

    def claim_orphans(self, tx: Any, owner: str, alive_since: float, limit: int) -> list[Any]:
        """Up to `limit` live executions whose owner is no live member (no heartbeat since `alive_since`),
        now `owner`'s at their next epoch; each row with `previous_owner`."""
        rows = tx.execute(
            f"SELECT e.id, e.owner FROM workflow_executions e WHERE e.status IN {_LIVE}"
            " AND e.owner NOT IN ('', ?) AND NOT EXISTS (SELECT 1 FROM members m WHERE m.id = e.owner"
            " AND m.heartbeat_time >= ?)"
            f" ORDER BY e.priority DESC, e.create_time, e.id LIMIT ?{self.db.dialect.skip_locked}",
            (owner, alive_since, limit),
        ).fetchall()
        previous = {r["id"]: r["owner"] for r in rows}
        return [
            {**dict(r), "previous_owner": previous[r["id"]]} for r in self._own_all(tx, list(previous), owner)
        ]

    def _own_all(self, tx: Any, ids: list[str], owner: str) -> list[Any]:
        if not ids:
            return []
        return tx.execute(
            f"UPDATE workflow_executions SET owner = ?, epoch = epoch + 1 WHERE id IN ({','.join('?' * len(ids))})"
            " RETURNING id, status, priority, create_time, epoch, correlation_id, traceparent",
            (owner, *ids),
        ).fetchall()

    def owned(self, owner: str) -> list[Any]:
        """The live executions `owner` runs or queues (what a replica picks up again at its start)."""
        return self.db.query(
            f"SELECT id, status, priority, create_time FROM workflow_executions WHERE owner = ? AND status IN {_LIVE}"
            " ORDER BY create_time, id",
            (owner,),
        )

    def load(self, tx: Any, alive_since: float) -> tuple[list[str], dict[str, int], int]:
        """The live members (heartbeat since `alive_since`), how many executions each one runs or has
        claimed, and how many wait unowned. `tx` None: read outside a transaction."""
        q = self.db.query if tx is None else (lambda sql, args=(): tx.execute(sql, args).fetchall())
        members = [r[0] for r in q("SELECT id FROM members WHERE heartbeat_time >= ?", (alive_since,))]
        running: dict[str, int] = {}
        waiting = 0
        for owner, status, n in q(
            "SELECT owner, status, COUNT(*) FROM workflow_executions"
            " WHERE status IN ('pending','running','queued') GROUP BY owner, status"
        ):
            if owner == "":
                waiting += n if status == "queued" else 0
            else:  # what it runs and what it has claimed to run next
                running[owner] = running.get(owner, 0) + n
        return members, running, waiting

    # -- reads -------------------------------------------------------------------------------------------

    def row(self, execution_id: str, tx: Any = None) -> Any:
        sql = "SELECT * FROM workflow_executions WHERE id = ?"
        if tx is not None:
            return tx.execute(sql, (execution_id,)).fetchone()
        return self.db.query_one(sql, (execution_id,))

    def by_request(self, tx: Any, request_id: str) -> Any:
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
        if before is not None:
            where.append("(create_time < ? OR (create_time = ? AND id < ?))")
            args.extend([before[0], before[0], before[1]])
        return self.db.query(
            f"SELECT * FROM workflow_executions WHERE {' AND '.join(where)}"
            " ORDER BY create_time DESC, id DESC LIMIT ?",
            (*args, limit),
        )


def _signal(r: Any) -> Signal:
    return Signal(
        id=r["id"],
        execution_id=r["execution_id"],
        name=r["name"],
        payload=json.loads(r["payload"]),
        request_id=r["request_id"] or "",
        sender=r["sender"],
        create_time=r["create_time"],
        consumed_by=r["consumed_by"] or "",
    )


class SqlSignals:
    def __init__(self, db: Any):
        self.db = engine_writes(db)  # one engine transaction at a time per process (PostgreSQL)

    def insert(self, tx: Any, s: Signal, digest: str) -> None:
        tx.execute(
            "INSERT INTO workflow_signals(id, execution_id, name, payload, request_id, request_digest, sender,"
            " create_time) VALUES (?,?,?,?,?,?,?,?)",
            (
                s.id,
                s.execution_id,
                s.name,
                json.dumps(s.payload, separators=(",", ":"), ensure_ascii=False),
                s.request_id or None,
                digest,
                s.sender,
                s.create_time,
            ),
        )

    def by_request(self, tx: Any, execution_id: str, request_id: str) -> tuple[Signal, str] | None:
        """The signal sent with this request id, and its request digest."""
        r = tx.execute(
            "SELECT * FROM workflow_signals WHERE execution_id = ? AND request_id = ?",
            (execution_id, request_id),
        ).fetchone()
        return None if r is None else (_signal(r), r["request_digest"])

    def get(self, signal_id: str) -> Signal | None:
        r = self.db.query_one("SELECT * FROM workflow_signals WHERE id = ?", (signal_id,))
        return None if r is None else _signal(r)

    def kept(self, execution_id: str, name: str, limit: int = 100) -> list[Signal]:
        """Signals of that name nobody has consumed yet, oldest first."""
        rows = self.db.query(
            "SELECT * FROM workflow_signals WHERE execution_id = ? AND name = ? AND consumed_by IS NULL"
            " ORDER BY create_time, id LIMIT ?",
            (execution_id, name, limit),
        )
        return [_signal(r) for r in rows]

    def consume(self, tx: Any, signal_id: str, step_id: str, when: float) -> None:
        tx.execute(
            "UPDATE workflow_signals SET consumed_by = ?, consume_time = ? WHERE id = ? AND consumed_by IS NULL",
            (step_id, when, signal_id),
        )

    def of_execution(self, execution_id: str) -> list[Signal]:
        rows = self.db.query(
            "SELECT * FROM workflow_signals WHERE execution_id = ? ORDER BY create_time, id", (execution_id,)
        )
        return [_signal(r) for r in rows]


class SqlTimers:
    def __init__(self, db: Any):
        self.db = engine_writes(db)  # one engine transaction at a time per process (PostgreSQL)

    def add(self, tx: Any, execution_id: str, t: TimerRow) -> None:
        tx.execute(
            "INSERT INTO workflow_timers(execution_id, step_id, kind, fire_at) VALUES (?,?,?,?)"
            " ON CONFLICT DO NOTHING",
            (execution_id, t.step_id, t.kind, t.fire_at),
        )

    def fired(self, tx: Any, execution_id: str, t: TimerRow) -> None:
        tx.execute(
            "UPDATE workflow_timers SET fired_at = ? WHERE execution_id = ? AND step_id = ? AND kind = ?",
            (t.fired_at, execution_id, t.step_id, t.kind),
        )

    def of_execution(self, execution_id: str) -> list[TimerRow]:
        rows = self.db.query(
            "SELECT step_id, kind, fire_at, fired_at FROM workflow_timers WHERE execution_id = ?",
            (execution_id,),
        )
        return [TimerRow(r["step_id"], r["kind"], r["fire_at"], r["fired_at"]) for r in rows]
