"""The database handle shared by every component.

One writer connection guarded by a lock (SQLite allows one writer at a time anyway) and one read
connection per thread (WAL lets readers run beside the writer and see the last committed state).
`write()` runs a transaction and, while still holding the writer lock, runs the callbacks registered
with `Tx.after_commit` — so subscribers see committed records in commit order.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils


class Tx:
    """An open write transaction."""

    __slots__ = ("conn", "_after")

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        self._after: list[Callable[[], None]] = []

    def execute(self, sql: str, params: tuple | list | dict = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Run fn once the transaction has committed (never if it rolls back)."""
        self._after.append(fn)


class Database:
    def __init__(self, path: str | Path, *, synchronous: str = "NORMAL"):
        self.path = str(path)
        self.memory = self.path == ":memory:"
        if not self.memory:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._synchronous = synchronous
        self._lock = threading.RLock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self._writer = self._connect()
        self._writer.execute("PRAGMA journal_mode=WAL")
        self.utils = sqlite_utils.Database(self._writer)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    @contextmanager
    def write(self) -> Iterator[Tx]:
        """A write transaction (BEGIN IMMEDIATE … COMMIT), rolled back if the block raises."""
        with self._lock:
            if self._closed:
                raise RuntimeError("database is closed")
            tx = Tx(self._writer)
            self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield tx
            except BaseException:
                self._writer.execute("ROLLBACK")
                raise
            self._writer.execute("COMMIT")
            for fn in tx._after:
                fn()

    def read(self) -> sqlite3.Connection:
        """This thread's read connection (sees the last committed state)."""
        if self.memory:
            return self._writer
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def query(self, sql: str, params: tuple | list | dict = ()) -> list[sqlite3.Row]:
        return self.read().execute(sql, params).fetchall()

    def query_one(self, sql: str, params: tuple | list | dict = ()) -> sqlite3.Row | None:
        return self.read().execute(sql, params).fetchone()

    def close(self) -> None:
        """Checkpoint the WAL and close every connection."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with self._readers_lock:
                for conn in self._readers:
                    try:
                        conn.close()
                    except sqlite3.Error:
                        pass
                self._readers.clear()
            try:
                self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass
            self._writer.close()
