"""Durable step timers in SQLite (sleep steps, start_after delays, wait timeouts): one row per (step, kind),
with fired_at set in the same checkpoint that acts on the timer — so it fires once, never twice, and a
restarted server re-arms what has not fired (late when it was down at the time). Only SQL lives here."""

from __future__ import annotations

from dataclasses import dataclass

from ...storage import Database, Tx

SLEEP, START_AFTER, TIMEOUT = "sleep", "start_after", "timeout"


@dataclass
class TimerRow:
    step_id: str
    kind: str
    fire_at: float
    fired_at: float | None = None


class TimerStore:
    def __init__(self, db: Database):
        self.db = db

    def add(self, tx: Tx, execution_id: str, t: TimerRow) -> None:
        tx.execute(
            "INSERT OR IGNORE INTO workflow_timers(execution_id, step_id, kind, fire_at) VALUES (?,?,?,?)",
            (execution_id, t.step_id, t.kind, t.fire_at),
        )

    def fired(self, tx: Tx, execution_id: str, t: TimerRow) -> None:
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
