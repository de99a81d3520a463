"""The PostgreSQL database handle: the same face as the SQLite one (`write()` with `Tx.after_commit`,
`query`, `snapshot`), over a psycopg connection pool, for several replicas sharing one database.

What differs, and why:
- Order across replicas comes from counter rows (`voltorch_counters`) locked in the writing transaction
  with `SELECT … FOR UPDATE` and held until COMMIT: the next writer (on any replica) waits for that
  COMMIT before it reads the counter, so numbers are handed out gap-free in commit order — a reader
  that has seen N never later finds N-1 appear (a bigserial would be assigned at INSERT, visible at
  COMMIT, in another order). This is the `eventsourcing` PostgreSQL recorder's approach, with a row
  lock instead of a table lock so that state and events can be locked in one fixed order.
- `Tx.notify(channel, head)` sends one NOTIFY per transaction just before COMMIT, with the new head
  position only (NOTIFY takes a global lock at commit: once per batch, never once per row).
- Transactions run at READ COMMITTED and every writer takes its row locks in one order (the state
  revision, then the kv_history counter, then the events counter), so serialization failures and
  deadlocks cannot arise between voltorch's own writers; should one come from elsewhere it is Aborted
  (CONCURRENT_WRITER, retry) rather than internal. (No retry loop here: a transaction's body is the
  caller's code, which `write()` cannot run again.)
- A lost connection is Unavailable (retry), never an internal error; the pool replaces dead connections.
  Connections are not pinged when taken from the pool (a round trip per query): after the database
  restarts, each stale pooled connection fails one call with Unavailable before it is replaced.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool, PoolTimeout

from ...errors import Aborted, Unavailable
from .._dialect import POSTGRES

log = logging.getLogger("voltorch.db")

RETRY_HINT = "the database is unreachable; retry shortly"
_QMARK = re.compile(r"\?")


@lru_cache(maxsize=1024)
def translate(sql: str) -> str:
    """SQLite's `?` placeholders as psycopg's `%s` (a literal `%` doubled first)."""
    return _QMARK.sub("%s", sql.replace("%", "%%"))


class PgRow(tuple):
    """A row readable by position (like a tuple) and by column name (like sqlite3.Row)."""

    __slots__ = ()
    _index: dict[str, int] = {}

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, str):
            return tuple.__getitem__(self, self._index[i])
        return tuple.__getitem__(self, i)

    def keys(self) -> list[str]:
        return list(self._index)


@lru_cache(maxsize=512)
def _row_class(names: tuple[str, ...]) -> type[PgRow]:
    return type("Row", (PgRow,), {"__slots__": (), "_index": {n: i for i, n in enumerate(names)}})


def _row_factory(cursor: psycopg.Cursor) -> Callable[[Sequence[Any]], Any]:
    desc = cursor.description
    if desc is None:
        return tuple
    cls = _row_class(tuple(d.name for d in desc))
    return lambda values: cls(values)


def unavailable(exc: BaseException) -> Unavailable:
    return Unavailable(
        f"{RETRY_HINT} ({type(exc).__name__}: {str(exc).strip()[:200]})", reason="DATABASE_UNAVAILABLE"
    )


class _Conn:
    """A pooled connection seen through SQLite's calling convention (`?` placeholders)."""

    __slots__ = ("raw",)

    def __init__(self, raw: psycopg.Connection):
        self.raw = raw

    def execute(self, sql: str, params: tuple | list | dict = ()) -> psycopg.Cursor:
        return self.raw.execute(translate(sql), params or None, prepare=None)


class PgTx:
    """An open write transaction (see storage.Tx)."""

    __slots__ = ("conn", "_after", "_notify")

    def __init__(self, conn: _Conn):
        self.conn = conn
        self._after: list[Callable[[], None]] = []
        self._notify: dict[str, str] = {}

    def execute(self, sql: str, params: tuple | list | dict = ()) -> psycopg.Cursor:
        return self.conn.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[tuple | list | dict]) -> psycopg.Cursor:
        cur = self.conn.raw.cursor()
        cur.executemany(translate(sql), list(rows))
        return cur

    def insert_rows(self, head: str, rows: Sequence[Sequence[Any]], tail: str = "") -> None:
        if not rows:
            return
        width = len(rows[0])
        one = "(" + ",".join(["%s"] * width) + ")"
        per = max(1, 30_000 // width)
        for i in range(0, len(rows), per):
            chunk = rows[i : i + per]
            params = [v for r in chunk for v in r]
            self.conn.raw.execute(f"{head} VALUES {','.join([one] * len(chunk))}{tail}", params)

    def after_commit(self, fn: Callable[[], None]) -> None:
        self._after.append(fn)

    def counter(self, name: str) -> int:
        """The counter's value, its row locked until this transaction ends (see the module docstring)."""
        row = self.execute(
            "SELECT value FROM voltorch_counters WHERE name = ? FOR UPDATE", (name,)
        ).fetchone()
        assert row is not None, f"no counter {name!r}: the migrations create every one"
        return row[0]

    def set_counter(self, name: str, value: int) -> None:
        self.execute("UPDATE voltorch_counters SET value = ? WHERE name = ?", (value, name))

    def notify(self, channel: str, head: int) -> None:
        """NOTIFY `channel` with `head` once, just before COMMIT (the last call wins)."""
        self._notify[channel] = str(head)


class PgDatabase:
    kind = "postgres"
    dialect = POSTGRES  # what its SQL says differently from SQLite's (storage/_dialect.py)
    memory = False
    # Numbers are handed out by locked counter rows (PgTx.counter), not by the database's autoincrement.
    explicit_ids = True
    SEQUENCE_HEAD = "SELECT value FROM voltorch_counters WHERE name = ?"

    def __init__(self, dsn: str, *, min_size: int = 2, max_size: int = 32, timeout: float = 5.0):
        self.path = self.dsn = dsn
        self._pool = ConnectionPool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            open=False,
            kwargs={"autocommit": True, "row_factory": _row_factory},
            name="voltorch",
        )
        try:
            self._pool.open(wait=True, timeout=timeout)
        except PoolTimeout as exc:
            self._pool.close()
            raise unavailable(exc) from None
        self._closed = False

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        try:
            with self._pool.connection() as raw:
                yield raw
        except (psycopg.OperationalError, PoolTimeout) as exc:
            if isinstance(exc, pg_errors.SerializationFailure | pg_errors.DeadlockDetected):
                raise Aborted(
                    f"concurrent transactions conflicted; retry ({exc})", reason="CONCURRENT_WRITER"
                ) from None
            raise unavailable(exc) from None

    @contextmanager
    def write(self) -> Iterator[PgTx]:
        """A write transaction; `after_commit` callbacks run once it has committed, in this thread."""
        if self._closed:
            raise RuntimeError("database is closed")
        with self._connection() as raw:
            tx = PgTx(_Conn(raw))
            with raw.transaction():
                yield tx
                for channel, head in tx._notify.items():
                    raw.execute("SELECT pg_notify(%s, %s)", (channel, head))
        for fn in tx._after:
            fn()

    @contextmanager
    def snapshot(self) -> Iterator[_Conn]:
        """A connection whose reads all see one committed state."""
        with self._connection() as raw, raw.transaction():
            raw.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield _Conn(raw)

    def query(self, sql: str, params: tuple | list | dict = ()) -> list[Any]:
        with self._connection() as raw:
            return raw.execute(translate(sql), params or None).fetchall()

    def query_one(self, sql: str, params: tuple | list | dict = ()) -> Any:
        with self._connection() as raw:
            return raw.execute(translate(sql), params or None).fetchone()

    def sequence_head(self, name: str) -> int:
        row = self.query_one(self.SEQUENCE_HEAD, (name,))
        return row[0] if row else 0

    def owns(self, tx: Any) -> bool:
        return isinstance(tx, PgTx)

    def listen(self, channels: Sequence[str], wake: Callable[[], None], idle: float = 1.0) -> Listener:
        return Listener(self.dsn, channels, wake, idle)

    def try_lock(self, key: int) -> Lease:
        return Lease(self.dsn, key)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._pool.close()


class Listener:
    """One thread that LISTENs on channels and calls `wake()` on every notification, after a reconnect,
    and every `idle` seconds (a missed notification only delays, never loses: readers go by position)."""

    def __init__(self, dsn: str, channels: Sequence[str], wake: Callable[[], None], idle: float):
        self._dsn, self._channels, self._wake, self._idle = dsn, list(channels), wake, idle
        self._stop = threading.Event()
        self._conn: psycopg.Connection | None = None
        self._thread = threading.Thread(target=self._run, name="pg-listener", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._dsn, autocommit=True, connect_timeout=5) as conn:
                    self._conn = conn
                    for ch in self._channels:
                        conn.execute(f'LISTEN "{ch}"')
                    self._call()
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=self._idle, stop_after=1):
                            pass
                        self._call()
            except psycopg.Error as exc:
                if not self._stop.is_set():
                    log.warning("listener lost its connection (%s); reconnecting", exc)
                    self._stop.wait(0.2)
            finally:
                self._conn = None

    def _call(self) -> None:
        try:
            self._wake()
        except Exception:
            log.exception("catching up after a notification failed")

    def stop(self) -> None:
        """Stop listening. Not waited for: the thread notices within `idle` seconds, and it only ever
        calls `wake()`, which reads by position (harmless once the caller has stopped)."""
        self._stop.set()


class Lease:
    """A session-level advisory lock for a singleton job: `held()` takes it when free (or says whether
    this replica still has it). The lock goes with its connection: a dead replica's is released by
    PostgreSQL, and another replica's next `held()` takes it."""

    def __init__(self, dsn: str, key: int):
        self._dsn, self._key = dsn, key
        self._conn: psycopg.Connection | None = None
        self._lock = threading.Lock()

    def held(self) -> bool:
        with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg.connect(self._dsn, autocommit=True, connect_timeout=5)
                # Session-level and re-entrant: the holder gets true again (PostgreSQL counts the
                # holds; they all go with the session), any other session false while it lives.
                row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()
                return bool(row and row[0])
            except psycopg.Error:
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                return False

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
