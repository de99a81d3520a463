"""Storage: SQLite (one database file in WAL mode, named migrations, group commit, integrity checks in
integrity.py, read-only inspection in inspect.py) or PostgreSQL (storage/postgres: several replicas on
one database), chosen by `--db`."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ._group_commit import GroupCommit, Pending, Take
from ._retry import TransactionConflict
from .db import Database, Tx
from .integrity import IntegrityResult, check_connection, check_file, connect_read_only
from .migrations import MIGRATIONS, migrate

__all__ = [
    "MIGRATIONS",
    "Database",
    "GroupCommit",
    "IntegrityResult",
    "Pending",
    "Take",
    "TransactionConflict",
    "Tx",
    "check_connection",
    "check_file",
    "connect_read_only",
    "is_postgres_url",
    "migrate",
    "migrate_any",
    "open_database",
    "shown",
]


def is_postgres_url(db: str) -> bool:
    """`--db postgresql://…` (or postgres://) is a PostgreSQL DSN; anything else is a SQLite file path."""
    return db.startswith(("postgresql://", "postgres://"))


def shown(db: str) -> str:
    """`db` as it may be printed or logged: a DSN's password replaced by ***."""
    if not is_postgres_url(db):
        return db
    parts = urlsplit(db)
    if parts.password is None:
        return db
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def open_database(db: str, *, synchronous: str = "NORMAL") -> Any:
    """The database `db` names, migrated: a SQLite `Database` for a path, a `PgDatabase` for a DSN."""
    if is_postgres_url(db):
        from .postgres import PgDatabase  # psycopg is only imported when PostgreSQL is used

        database: Any = PgDatabase(db)
    else:
        database = Database(db, synchronous=synchronous)
    migrate_any(database)
    return database


def migrate_any(database: Any) -> list[str]:
    """Apply the pending named migrations of either backend."""
    if database.kind == "postgres":
        from .postgres import migrate as migrate_pg

        return migrate_pg(database)
    return migrate(database)
