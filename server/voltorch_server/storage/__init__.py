"""SQLite storage: one database file in WAL mode, named migrations, read-only inspection (inspect.py)."""

from .db import Database, Tx
from .migrations import MIGRATIONS, migrate

__all__ = ["MIGRATIONS", "Database", "Tx", "migrate"]
