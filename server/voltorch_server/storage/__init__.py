"""Storage: SQLite (storage/sqlite: one database file in WAL mode, named migrations, integrity checks,
read-only inspection, the owner lock) or PostgreSQL (storage/postgres: several replicas on one database),
chosen by `--db`, behind one face: `Database.write()` gives a `Tx`, `query`/`snapshot` read, and
`Database.dialect` (_dialect.py) says what the two speak differently.

All SQL lives here: storage/stores holds one store per concept (state, events, system, schedules,
templates, workflows, members), each written once for both backends, which components reach only through
the store interface declared in their own package. (Imported as `storage.stores`, not from this face: the
stores build the components' dataclasses, and components import this face.)"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ._dialect import POSTGRES, SQLITE, Dialect
from ._errors import storage_error
from ._group_commit import GroupCommit, Pending, Take
from ._retry import TransactionConflict
from .sqlite import (
    MIGRATIONS,
    Database,
    IntegrityResult,
    OwnerLock,
    Tx,
    check_connection,
    check_file,
    connect_read_only,
    migrate,
)

__all__ = [
    "MIGRATIONS",
    "POSTGRES",
    "SQLITE",
    "Database",
    "Dialect",
    "GroupCommit",
    "IntegrityResult",
    "OwnerLock",
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
    "ping",
    "shown",
    "storage_error",
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


def ping(db: Any) -> None:
    """Raise unless the database answers (a damaged file, an unreachable server)."""
    db.query_one(db.dialect.ping)
