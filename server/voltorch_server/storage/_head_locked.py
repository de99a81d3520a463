"""One lock order for the engines' transactions on PostgreSQL.

Every transaction that appends events locks the event log's head (a counter row) until it commits. On
SQLite that lock is the one writer lock, taken by BEGIN IMMEDIATE before anything else; on PostgreSQL it
would be taken mid-transaction, after a coordination or workflow engine had taken its own Python lock, and
two transactions taking the two in opposite orders deadlock (one holding the row and waiting for the
engine lock, the other the reverse). The coordination and workflow stores therefore write through a
`HeadLocked` handle: each write locks the head first, with BEGIN, as SQLite does."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any


class HeadLocked:
    """`db` whose `write()` locks the counter `head` first; everything else is `db`'s."""

    def __init__(self, db: Any, head: str):
        self._db, self._head = db, head

    def write(self, *, lock: str | None = None) -> AbstractContextManager[Any]:
        return self._db.write(lock=lock or self._head)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)
