"""SQLite storage: one database file in WAL mode, named migrations, group commit, read-only inspection
(inspect.py)."""

from ._group_commit import GroupCommit, Pending, Take
from .db import Database, Tx
from .migrations import MIGRATIONS, migrate

__all__ = ["MIGRATIONS", "Database", "GroupCommit", "Pending", "Take", "Tx", "migrate"]
