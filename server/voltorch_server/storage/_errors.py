"""Which exceptions say something about the storage itself (a damaged file), rather than about the caller."""

from __future__ import annotations

import sqlite3

# sqlite3 errors that say nothing about the file: a violated constraint or a misused API is a bug
# of the caller, reported where it happened.
_NOT_STORAGE = (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError)


def storage_error(exc: BaseException | None) -> sqlite3.DatabaseError | None:
    """The SQLite error behind exc (itself or a cause), when it is one about the storage."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, _NOT_STORAGE):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None
