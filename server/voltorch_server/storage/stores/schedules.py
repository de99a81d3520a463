"""The SQL of schedules (table workflow_schedules: one row each, with next_tick as the durable cursor), once
for both backends: the implementation of `components.schedules.SchedulesPort`."""

from __future__ import annotations

import json
from typing import Any

from ...components.schedules import Schedule
from .._serial_writes import engine_writes

_COLUMNS = (
    "id",
    "template_name",
    "template_version",
    "parameters",
    "cron",
    "interval",
    "start_time",
    "time_zone",
    "overlap",
    "catchup",
    "paused",
    "description",
    "next_tick",
    "last_tick",
    "last_execution_id",
    "buffered_tick",
    "ticks_started",
    "ticks_skipped",
    "create_time",
)


def _row(s: Schedule) -> tuple[Any, ...]:
    values = {
        **s.__dict__,
        "parameters": json.dumps(s.parameters, separators=(",", ":")),
        "paused": int(s.paused),
    }
    return tuple(values[c] for c in _COLUMNS)


def _schedule(r: Any) -> Schedule:
    return Schedule(
        **{
            **{c: r[c] for c in _COLUMNS},
            "parameters": json.loads(r["parameters"]),
            "paused": bool(r["paused"]),
            "last_execution_id": r["last_execution_id"] or "",
        }
    )


class SqlSchedules:
    def __init__(self, db: Any):
        self.db = engine_writes(db)  # one engine transaction at a time per process (PostgreSQL)

    def insert(self, tx: Any, s: Schedule) -> None:
        tx.execute(
            f"INSERT INTO workflow_schedules({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
            _row(s),
        )

    def save(self, tx: Any, s: Schedule) -> None:
        sets = ", ".join(f"{c} = ?" for c in _COLUMNS[1:])
        tx.execute(f"UPDATE workflow_schedules SET {sets} WHERE id = ?", (*_row(s)[1:], s.id))

    def delete(self, tx: Any, schedule_id: str) -> bool:
        return tx.execute("DELETE FROM workflow_schedules WHERE id = ?", (schedule_id,)).rowcount > 0

    def get(self, schedule_id: str, tx: Any | None = None) -> Schedule | None:
        sql = "SELECT * FROM workflow_schedules WHERE id = ?"
        r = (
            tx.execute(sql, (schedule_id,)).fetchone()
            if tx is not None
            else self.db.query_one(sql, (schedule_id,))
        )
        return None if r is None else _schedule(r)

    def page(self, after: str, limit: int) -> list[Schedule]:
        rows = self.db.query(
            "SELECT * FROM workflow_schedules WHERE id > ? ORDER BY id LIMIT ?", (after, limit)
        )
        return [_schedule(r) for r in rows]

    def due(self, now: float) -> list[Schedule]:
        """Unpaused schedules with a tick at or before now, or a buffered tick waiting for its turn."""
        rows = self.db.query(
            "SELECT * FROM workflow_schedules WHERE paused = 0 AND (next_tick <= ? OR buffered_tick IS NOT NULL)"
            " ORDER BY next_tick, id",
            (now,),
        )
        return [_schedule(r) for r in rows]

    def active(self) -> int:
        r = self.db.query_one("SELECT COUNT(*) FROM workflow_schedules WHERE paused = 0")
        return int(r[0]) if r is not None else 0

    def earliest(self) -> float | None:
        r = self.db.query_one("SELECT MIN(next_tick) FROM workflow_schedules WHERE paused = 0")
        return None if r is None else r[0]
