"""The SQL of the cluster's members (table members: one row per replica, refreshed by its heartbeat), once
for both backends: the implementation of `components.cluster.MembersPort`. On SQLite the table holds the
one server; on PostgreSQL every replica of the cluster."""

from __future__ import annotations

from typing import Any

from ...components.cluster import MemberRow

_COLUMNS = "id, address, version, start_time, heartbeat_time, running_executions, connected_workers"


class SqlMembers:
    def __init__(self, db: Any):
        self.db = db

    def upsert(self, row: MemberRow) -> None:
        """Write the whole row (a replica joining, or coming back under the same id)."""
        with self.db.write() as tx:
            tx.execute(
                f"""INSERT INTO members({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (id) DO UPDATE SET address = excluded.address, version = excluded.version,
                    start_time = excluded.start_time, heartbeat_time = excluded.heartbeat_time,
                    running_executions = excluded.running_executions,
                    connected_workers = excluded.connected_workers""",
                (
                    row.id,
                    row.address,
                    row.version,
                    row.start_time,
                    row.heartbeat_time,
                    row.running_executions,
                    row.connected_workers,
                ),
            )

    def all(self) -> list[MemberRow]:
        """Every member, oldest start first."""
        rows = self.db.query(f"SELECT {_COLUMNS} FROM members ORDER BY start_time, id")
        return [MemberRow(*tuple(r)) for r in rows]

    def prune(self, heartbeat_before: float) -> list[str]:
        """Delete the members whose last heartbeat is older than `heartbeat_before`; their ids."""
        with self.db.write() as tx:
            rows = tx.execute(
                "SELECT id FROM members WHERE heartbeat_time < ?", (heartbeat_before,)
            ).fetchall()
            tx.execute("DELETE FROM members WHERE heartbeat_time < ?", (heartbeat_before,))
        return sorted(r[0] for r in rows)

    def remove(self, member_id: str) -> None:
        """A replica leaving on a clean shutdown."""
        with self.db.write() as tx:
            tx.execute("DELETE FROM members WHERE id = ?", (member_id,))
