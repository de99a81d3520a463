"""Signals sent to executions, in SQLite: kept (persisted) until a WaitStep or ApprovalStep consumes them,
oldest first. Only SQL lives here; callers own the transactions."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ...storage import Database, Tx


@dataclass(frozen=True)
class Signal:
    id: str
    execution_id: str
    name: str
    payload: Any
    request_id: str
    sender: str
    create_time: float
    consumed_by: str = ""


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


class SignalStore:
    def __init__(self, db: Database):
        self.db = db

    def insert(self, tx: Tx, s: Signal, digest: str) -> None:
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

    def by_request(self, tx: Tx, execution_id: str, request_id: str) -> tuple[Signal, str] | None:
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

    def consume(self, tx: Tx, signal_id: str, step_id: str, when: float) -> None:
        tx.execute(
            "UPDATE workflow_signals SET consumed_by = ?, consume_time = ? WHERE id = ? AND consumed_by IS NULL",
            (step_id, when, signal_id),
        )

    def of_execution(self, execution_id: str) -> list[Signal]:
        rows = self.db.query(
            "SELECT * FROM workflow_signals WHERE execution_id = ? ORDER BY create_time, id", (execution_id,)
        )
        return [_signal(r) for r in rows]
