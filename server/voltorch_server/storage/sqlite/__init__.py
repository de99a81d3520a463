"""SQLite storage, the embedded default: one database file in WAL mode (db.py: one writer, a reader per
thread, background checkpoints), named migrations, integrity checks, read-only inspection and the
owner lock that keeps a second server off the file."""

from . import _params  # noqa: F401  (None bound without sqlite3's adapter search; see the module)
from .db import Database, Tx
from .integrity import IntegrityResult, check_connection, check_file, connect_read_only
from .migrations import MIGRATIONS, migrate
from .owner import OwnerLock

__all__ = [
    "MIGRATIONS",
    "Database",
    "IntegrityResult",
    "OwnerLock",
    "Tx",
    "check_connection",
    "check_file",
    "connect_read_only",
    "migrate",
]
