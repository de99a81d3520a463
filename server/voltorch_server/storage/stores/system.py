"""The SQL of the system view (tables errors and metric_samples), once for both backends: the
implementation of `components.system.SystemPort`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ...components.system import ErrorRecord
from ._ids import carrying_ids

_ERROR_COLUMNS = "id, component, code, message, trace_id, span_id, correlation_id, time, details, event_seq"
_SAMPLE_COLUMNS = "name, attributes, time, value, histogram"


def _error(r: Any) -> ErrorRecord:
    return ErrorRecord(
        id=r["id"],
        component=r["component"],
        code=r["code"],
        message=r["message"],
        trace_id=r["trace_id"],
        span_id=r["span_id"],
        correlation_id=r["correlation_id"],
        time=r["time"],
        details=json.loads(r["details"]),
        event_sequence=r["event_seq"] or 0,
    )


class SqlSystem:
    def __init__(self, db: Any):
        self.db = db

    # -- errors ------------------------------------------------------------------------------------

    def insert_error(self, tx: Any, row: tuple) -> None:
        """One error row, its values in the order of the table's columns (id … details, event_seq)."""
        tx.execute(f"INSERT INTO errors({_ERROR_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)", row)

    def errors(
        self, equal: dict[str, str], since: float | None, before: int | None, limit: int
    ) -> list[tuple[ErrorRecord, int]]:
        """Errors with their positions, newest first: every non-empty column of `equal` as
        given, at or after `since`, before position `before`."""
        where: list[str] = []
        params: list[str | float | int] = []
        for column, value in equal.items():
            if value:
                where.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            where.append("time >= ?")
            params.append(since)
        if before is not None:
            where.append("seq < ?")
            params.append(before)
        sql = f"SELECT seq, {_ERROR_COLUMNS} FROM errors" + (" WHERE " + " AND ".join(where) if where else "")
        rows = self.db.query(sql + " ORDER BY seq DESC LIMIT ?", (*params, limit))
        return [(_error(r), r["seq"]) for r in rows]

    def errors_carrying(
        self, trace_ids: set[str], correlation_ids: set[str], limit: int
    ) -> list[ErrorRecord]:
        """Errors carrying any of the trace or correlation ids, oldest first."""
        where, params = carrying_ids(trace_ids, correlation_ids)
        if not where:
            return []
        rows = self.db.query(
            f"SELECT {_ERROR_COLUMNS} FROM errors WHERE {where} ORDER BY seq LIMIT ?", (*params, limit)
        )
        return [_error(r) for r in rows]

    def prune_errors(self, older_than: float) -> int:
        with self.db.write() as tx:
            return tx.execute("DELETE FROM errors WHERE time < ?", (older_than,)).rowcount

    # -- metric history ----------------------------------------------------------------------------

    def record_samples(self, rows: Sequence[tuple], older_than: float | None) -> None:
        """Append sample rows (name, attributes, time, value, histogram) and, given `older_than`, drop the
        samples before it, in one transaction."""
        with self.db.write() as tx:
            tx.executemany(f"INSERT INTO metric_samples({_SAMPLE_COLUMNS}) VALUES (?,?,?,?,?)", rows)
            if older_than is not None:
                tx.execute("DELETE FROM metric_samples WHERE time < ?", (older_than,))

    def samples(self, since: float) -> list[Any]:
        """Sample rows from `since`, by name, attributes and time."""
        return self.db.query(
            f"SELECT {_SAMPLE_COLUMNS} FROM metric_samples WHERE time >= ? ORDER BY name, attributes, time",
            (since,),
        )
