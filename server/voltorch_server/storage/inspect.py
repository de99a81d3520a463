"""What a database file holds, read without changing it: tables and row counts, the schema version
(migrations applied, pending, or unknown to this version) and SQLite's integrity check.
Behind `voltorch db info` and `voltorch db check`; sqlite-utils does the introspection."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import sqlite_utils

from .migrations import MIGRATIONS, MIGRATIONS_TABLE


@dataclass(frozen=True)
class DatabaseInfo:
    path: str
    tables: dict[str, int]  # table -> rows (SQLite's own sqlite_* tables left out)
    applied: list[str]  # migrations recorded in the database, in the order they ran
    pending: list[str]  # migrations this version would apply when a server opens the database
    unknown: list[str]  # recorded migrations this version does not know (made by a newer voltorch)
    integrity: list[str]  # PRAGMA integrity_check: ["ok"] when sound, else SQLite's findings

    @property
    def schema_version(self) -> str:
        """The newest migration applied ("" for a database no server has opened)."""
        return self.applied[-1] if self.applied else ""

    @property
    def ok(self) -> bool:
        return self.integrity == ["ok"]


def _open_read_only(path: str | Path) -> sqlite3.Connection:
    """The file opened read-only: inspecting must not create a missing file or change an existing one."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no database file at {file}")
    return sqlite3.connect(f"file:{quote(str(file.resolve()))}?mode=ro", uri=True)


def _integrity(conn: sqlite3.Connection) -> list[str]:
    try:
        return [row[0] for row in conn.execute("PRAGMA integrity_check")]
    except sqlite3.DatabaseError as exc:  # damaged beyond what the check can walk (e.g. the header)
        return [str(exc)]


def integrity_check(path: str | Path) -> list[str]:
    """SQLite's full `PRAGMA integrity_check` (every page, index and constraint) on the file, read-only:
    ["ok"] when sound, else its findings. FileNotFoundError when there is no file."""
    conn = _open_read_only(path)
    try:
        return _integrity(conn)
    finally:
        conn.close()


def inspect_database(path: str | Path) -> DatabaseInfo:
    """Inspect the database at `path` read-only. FileNotFoundError when there is no file;
    sqlite3.DatabaseError when it is not a SQLite database."""
    file = Path(path)
    conn = _open_read_only(file)
    try:
        db = sqlite_utils.Database(conn, recursive_triggers=False, execute_plugins=False)
        names = [n for n in db.table_names() if not n.startswith("sqlite_")]
        tables = {name: db[name].count for name in names}
        applied = (
            [row[0] for row in conn.execute(f"SELECT name FROM {MIGRATIONS_TABLE} ORDER BY rowid")]
            if MIGRATIONS_TABLE in tables
            else []
        )
        integrity = _integrity(conn)
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
