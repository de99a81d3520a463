"""SQLite storage: one database file in WAL mode, named migrations, integrity checks."""

from .db import Database, Tx
from .integrity import DatabaseCorrupt, IntegrityResult, check_connection, check_file
from .migrations import MIGRATIONS, migrate

__all__ = [
    "MIGRATIONS",
    "Database",
    "DatabaseCorrupt",
    "IntegrityResult",
    "Tx",
    "check_connection",
    "check_file",
    "migrate",
]
