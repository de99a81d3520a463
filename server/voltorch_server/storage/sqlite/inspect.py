"""What a database file holds, read without changing it: tables and row counts, the schema version
(migrations applied, pending, or unknown to this version) and SQLite's integrity check.
Behind `voltorch db info` (`voltorch db check` is integrity.check_file alone); sqlite-utils does the
introspection."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from .integrity import check_connection, connect_read_only
from .migrations import MIGRATIONS, MIGRATIONS_TABLE


@dataclass(frozen=True)
class DatabaseInfo:
    path: str
    tables: dict[str, int]  # table -> rows (SQLite's own sqlite_* tables left out)
    applied: list[str]  # migrations recorded in the database, in the order they ran
    pending: list[str]  # migrations this version would apply when a server opens the database
    unknown: list[str]  # recorded migrations this version does not know (made by a newer voltorch)
    integrity: list[str]  # PRAGMA integrity_check (integrity.py): ["ok"] when sound, else SQLite's findings

    @property
    def schema_version(self) -> str:
        """The newest migration applied ("" for a database no server has opened)."""
        return self.applied[-1] if self.applied else ""

    @property
    def ok(self) -> bool:
        return self.integrity == ["ok"]


def inspect_database(path: str | Path) -> DatabaseInfo:
    """Inspect the database at `path` read-only. FileNotFoundError when there is no file;
    sqlite3.DatabaseError when it is not a SQLite database."""
    file = Path(path)
    conn = connect_read_only(file)
    try:
        db = sqlite_utils.Database(conn, recursive_triggers=False, execute_plugins=False)
        names = [n for n in db.table_names() if not n.startswith("sqlite_")]
        tables = {name: db[name].count for name in names}
        applied = (
            [row[0] for row in conn.execute(f"SELECT name FROM {MIGRATIONS_TABLE} ORDER BY rowid")]
            if MIGRATIONS_TABLE in tables
            else []
        )
        integrity = list(check_connection(conn, str(file), full=True).problems) or ["ok"]
    finally:
        conn.close()
    known = [name for name, _ in MIGRATIONS]
    return DatabaseInfo(
        path=str(file),
        tables=tables,
        applied=applied,
        pending=[n for n in known if n not in applied],
        unknown=[n for n in applied if n not in known],
        integrity=integrity,
    )
