"""SQLite storage: one database file in WAL mode, named migrations, group commit, integrity checks
(integrity.py) and read-only inspection (inspect.py)."""

from ._group_commit import GroupCommit, Pending, Take
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
    "Tx",
    "check_connection",
    "check_file",
    "connect_read_only",
    "migrate",
]
