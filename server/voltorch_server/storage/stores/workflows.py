"""The SQL of workflows' signals (workflow_signals) and durable step timers (workflow_timers), once for both
backends: the implementations of `components.workflows.SignalStore` and `TimerStore`. (Executions and
steps move here next; they are still in components/workflows/_executions.py.)"""

from __future__ import annotations

import json
from typing import Any

from ...components.workflows import Signal, TimerRow


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
        self.db = db

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
        self.db = db

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
