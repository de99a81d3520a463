"""The PostgreSQL database handle: the same face as the SQLite one (`write()` with `Tx.after_commit`,
`query`, `snapshot`), over a psycopg connection pool, for several replicas sharing one database.

What differs, and why:
- Order across replicas comes from counter rows (`voltorch_counters`) locked in the writing transaction
  with `SELECT … FOR UPDATE` and held until COMMIT: the next writer (on any replica) waits for that
  COMMIT before it reads the counter, so numbers are handed out gap-free in commit order — a reader
  that has seen N never later finds N-1 appear (a bigserial would be assigned at INSERT, visible at
  COMMIT, in another order). This is the `eventsourcing` PostgreSQL recorder's approach, with a row
  lock instead of a table lock so that state and events can be locked in one fixed order.
- The events counter (the log's head) is locked for as short a time as possible, by every writer on every
  replica: a transaction that is not a Publish buffers its events and numbers and inserts them in ONE
  statement just before COMMIT (`Tx.before_commit`: the event log's, `stores/events.py`), which locks the
  row, so it is held from that statement to COMMIT only — never across a transaction's other round trips
  and Python. (A Publish that reads the log first locks it with BEGIN; the error log, which needs its
  event's sequence at once, when it appends.) Nothing takes a Python lock while holding it; why nothing
  can deadlock on it: `storage/_serial_writes.py`.
- `Tx.notify(channel, head)` sends one NOTIFY per transaction just before COMMIT (before the
  `before_commit` statements: a NOTIFY is delivered at COMMIT whenever it was sent), with the new head
  position only (NOTIFY takes a global lock at commit: once per batch, never once per row). The event
  log's append sends its own with `pg_notify()` inside its one statement (`stores/events.py`).
- Round trips are latency (each a wake-up of a backend and of a thread, on a loaded machine more than
  the work): a group-committed Publish batch is one statement that is its own transaction
  (`write_one`: it locks the counter row by updating it), or, when it must read under the lock first
  (ids to deduplicate), three — BEGIN with its counter lock (`write(lock=…)`), the append, COMMIT; a
  follower reads only for commits it has not delivered (the NOTIFY's head says).
- Transactions run at READ COMMITTED and every writer takes its row locks in one order (the state
  revision, then the kv_history counter, then the events counter), so serialization failures and
  deadlocks cannot arise between voltorch's own writers. Should one come from elsewhere (another
  session on the database) it is a `TransactionConflict`: group-committed batches (state writes,
  Publish) are run again with a jittered backoff (`storage/_retry`); a plain `write()` block, the
  caller's code, cannot be, and its caller hears Aborted (CONCURRENT_WRITER, retry).
- A lost connection is Unavailable (retry), never an internal error; the pool replaces dead connections.
  A probe in the background (`_probe`) knows whether the database answers: while it does not, calls
  fail at once with Unavailable and the reason (instead of each waiting out the pool's timeout), and
  `check_reachable()` (the storage component's health check) answers without a round trip.
  Connections are not pinged when taken from the pool (a round trip per query): after the database
  restarts, each stale pooled connection fails one call with Unavailable before it is replaced.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import tuple_row
from psycopg_pool import ConnectionPool, PoolTimeout

from ...errors import Unavailable
from .._after_commit import AfterCommit, rolled_back
from .._dialect import POSTGRES
from .._retry import TransactionConflict
from ._probe import Probe

log = logging.getLogger("voltorch.db")

WAIT_SLICE = 0.25  # seconds a caller waits for a pooled connection between looks at the probe (`_take`)
RETRY_HINT = "the database is unreachable; retry shortly"
_QMARK = re.compile(r"\?")
_NAME = re.compile(r"\w+")


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


def unavailable(exc: BaseException | str) -> Unavailable:
    why = exc if isinstance(exc, str) else f"{type(exc).__name__}: {str(exc).strip()[:200]}"
    return Unavailable(f"{RETRY_HINT} ({why})", reason="DATABASE_UNAVAILABLE")


class _Conn:
    """A pooled connection seen through SQLite's calling convention (`?` placeholders)."""

    __slots__ = ("raw",)

    def __init__(self, raw: psycopg.Connection):
        self.raw = raw

    def execute(self, sql: str, params: tuple | list | dict = ()) -> psycopg.Cursor:
        return self.raw.execute(translate(sql), params or None, prepare=None)


_INSERT_HEAD = re.compile(r"\s*INSERT INTO (\w+)\s*\(([^)]*)\)\s*")
_unnest_cache: dict[tuple[str, str], str] = {}


def _unnest_sql(raw: psycopg.Connection, head: str, tail: str) -> str:
    """`head SELECT * FROM unnest(%s::type[], …) tail`, the column types read from the catalog once."""
    sql = _unnest_cache.get((head, tail))
    if sql is None:
        m = _INSERT_HEAD.fullmatch(head)
        assert m is not None, f"not an INSERT INTO table(columns): {head!r}"
        columns = [c.strip() for c in m[2].split(",")]
        types: dict[str, str] = dict(
            raw.execute(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
                " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
                (m[1],),
            ).fetchall()
        )
        arrays = ", ".join(f"%s::{types[c]}[]" for c in columns)
        sql = _unnest_cache[(head, tail)] = f"{head} SELECT * FROM unnest({arrays}){tail}"
    return sql


class PgTx:
    """An open write transaction (see storage.Tx)."""

    __slots__ = ("conn", "_before", "_after", "_undo", "_notify", "_counters", "unwritten")

    def __init__(self, conn: _Conn):
        self.conn = conn
        self._before: list[Callable[[], None]] = []
        self._after = AfterCommit()
        self._undo: list[Callable[[], None]] = []  # its rollback callbacks (`after_rollback`)
        self._notify: dict[str, str] = {}
        self._counters: dict[str, int] = {}  # the counters this transaction has locked, as it left them
        self.unwritten: Any = None  # the event log's events of this transaction, written at COMMIT

    def execute(self, sql: str, params: tuple | list | dict = ()) -> psycopg.Cursor:
        return self.conn.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[tuple | list | dict]) -> psycopg.Cursor:
        cur = self.conn.raw.cursor()
        cur.executemany(translate(sql), list(rows))
        return cur

    def insert_rows(self, head: str, rows: Sequence[Sequence[Any]], tail: str = "") -> None:
        """`head` ("INSERT INTO table(columns)") the rows, with `tail` (e.g. ON CONFLICT …), in one
        statement whatever their number: one array per column, unnested. Its text never changes, so
        psycopg converts it once and PostgreSQL runs it prepared; a VALUES list per row count made
        each batch a new statement to parse (client and server) — a third of a write's CPU."""
        if not rows:
            return
        raw = self.conn.raw
        sql = _unnest_sql(raw, head, tail)
        raw.execute(sql, [list(column) for column in zip(*rows, strict=True)], prepare=None)

    def before_commit(self, fn: Callable[[], None]) -> None:
        """Run fn inside the transaction, after its NOTIFYs were sent, just before its COMMIT (if fn
        raises, it rolls back): the event log numbers and writes all of a transaction's events there, in
        one statement that locks the head, held from there to COMMIT only. fn takes no Python lock."""
        self._before.append(fn)

    def after_commit(self, fn: Callable[[], None], *, first: bool = False) -> None:
        self._after.add(fn, first)

    def after_rollback(self, fn: Callable[[], None]) -> None:
        """Run fn once the transaction has rolled back (or failed to commit), never after a commit: to undo
        in memory what was done inside it. The last registered runs first, in this thread; one that fails
        is logged, and the caller hears of the transaction's own error."""
        self._undo.append(fn)

    def holds(self, name: str) -> bool:
        """Whether this transaction has locked the counter `name` (`counter`, or `write(lock=name)`)."""
        return name in self._counters

    def counter(self, name: str) -> int:
        """The counter's value, its row locked until this transaction ends (see the module docstring).
        Asked again in the same transaction, it is known without a round trip: nobody else can change
        a row this transaction has locked."""
        value = self._counters.get(name)
        if value is None:
            row = self.execute(
                "SELECT value FROM voltorch_counters WHERE name = ? FOR UPDATE", (name,)
            ).fetchone()
            assert row is not None, f"no counter {name!r}: the migrations create every one"
            value = self._counters[name] = row[0]
        return value

    def set_counter(self, name: str, value: int) -> None:
        self.execute("UPDATE voltorch_counters SET value = ? WHERE name = ?", (value, name))
        if name in self._counters:
            self._counters[name] = value

    def counter_advanced(self, name: str, value: int) -> None:
        """A statement of this transaction (which has locked the counter) set it to `value`."""
        self._counters[name] = value

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
        self._probe = Probe(dsn)
        self._timeout = timeout
        self._closed = False
        self.commits = 0  # transactions committed by this replica (the bench reports commits per step)

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        down = self._probe.status()
        if down:  # fail now rather than after the pool's timeout; the probe notices the database return
            raise unavailable(down)
        try:
            raw = self._take()
            try:
                with raw:  # the pool's own `connection()` behaviour: roll back on error
                    yield raw
            finally:
                self._pool.putconn(raw)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            if isinstance(exc, pg_errors.SerializationFailure | pg_errors.DeadlockDetected):
                raise TransactionConflict(
                    f"concurrent transactions conflicted; retry ({exc})", reason="CONCURRENT_WRITER"
                ) from None
            error = unavailable(exc)
            self._probe.failed(error.message)
            raise error from None

    def _take(self) -> psycopg.Connection:
        """A pooled connection, waited for in slices of WAIT_SLICE: a caller that began waiting before the
        probe knew the database was gone (its connections terminated, none to be made) hears
        Unavailable within a slice of the probe knowing it, not after the pool's whole timeout."""
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                return self._pool.getconn(timeout=max(0.0, min(WAIT_SLICE, deadline - time.monotonic())))
            except PoolTimeout:
                down = self._probe.status()
                if down:
                    raise unavailable(down) from None
                if time.monotonic() >= deadline:
                    raise

    def check_reachable(self) -> None:
        """Unavailable (with the reason) while the database does not answer; no round trip."""
        down = self._probe.status()
        if down:
            raise unavailable(down)

    @contextmanager
    def write(self, *, lock: str | None = None, group: bool = False) -> Iterator[PgTx]:
        """A write transaction; `after_commit` callbacks run once it has committed, in this thread.
        (`group`: SQLite's shared COMMIT; here every transaction commits alone: a shared one would hold
        its row locks, the event log's head among them, across the whole group.)

        `lock`: a counter the transaction locks first (`PgTx.counter`), in the same round trip as BEGIN
        (one simple-protocol query; its name is a literal there). The group-committed Publish's, whose
        every round trip in the lock's hold is one more wait for the next batch, on every replica."""
        if self._closed:
            raise RuntimeError("database is closed")
        tx: PgTx | None = None
        try:
            with self._connection() as raw:
                tx = PgTx(_Conn(raw))
                if lock is None:
                    with raw.transaction():
                        yield tx
                        self._finish(raw, tx)
                else:
                    yield from self._locked_first(raw, tx, lock)
        except BaseException:
            # Rolled back (psycopg's transaction() or _locked_first did it), or its COMMIT failed. (A
            # connection lost during COMMIT leaves its outcome unknown: taken as rolled back here.)
            if tx is not None:
                rolled_back(tx._undo, tx._after)
            raise
        assert tx is not None
        self.commits += 1  # not exact: transactions commit concurrently here (a bench figure)
        tx._undo.clear()  # they may hold the transaction: no cycle left for the collector
        tx._after.run()

    def write_one(self, sql: str, params: tuple | list = ()) -> Any:
        """One statement that is a whole write transaction (autocommit: BEGIN and COMMIT travel with it,
        one round trip); its first row, as a tuple. Its row locks are held until it commits, its NOTIFYs sent then."""
        if self._closed:
            raise RuntimeError("database is closed")
        with self._connection() as raw:
            cur = raw.cursor(row_factory=tuple_row)  # read by position: no row class from the description
            row = cur.execute(translate(sql), params or None).fetchone()
        self.commits += 1
        return row

    @staticmethod
    def _finish(raw: psycopg.Connection, tx: PgTx) -> None:
        """What a transaction does before its COMMIT: its NOTIFYs (one statement for every channel), then
        the `before_commit` callbacks (the event log's append, which locks the head: last, so that only
        COMMIT follows it)."""
        if tx._notify:
            calls = ", ".join(["pg_notify(%s, %s)"] * len(tx._notify))
            raw.execute(f"SELECT {calls}", [v for item in tx._notify.items() for v in item])
        for fn in tx._before:
            fn()
        tx._before.clear()  # they hold the transaction: no cycle left for the collector

    @staticmethod
    def _locked_first(raw: psycopg.Connection, tx: PgTx, name: str) -> Iterator[PgTx]:
        """BEGIN and lock the counter `name` in one round trip, run the body (`yield`), COMMIT; ROLLBACK
        if the body raises (psycopg's `transaction()` would add a SAVEPOINT inside this BEGIN)."""
        assert _NAME.fullmatch(name), f"not a counter name: {name!r}"
        try:
            cur = raw.execute(f"BEGIN; SELECT value FROM voltorch_counters WHERE name = '{name}' FOR UPDATE")
            cur.nextset()
            row = cur.fetchone()
            assert row is not None, f"no counter {name!r}: the migrations create every one"
            tx._counters[name] = row[0]
            yield tx
            PgDatabase._finish(raw, tx)
            raw.execute("COMMIT")
        except BaseException:
            if raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE and not raw.closed:
                try:
                    raw.execute("ROLLBACK")
                except psycopg.Error:
                    pass  # the connection is broken: the pool discards it
            raise

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

    def listen(
        self, channels: Sequence[str], wake: Callable[[int | None], None], idle: float = 1.0
    ) -> Listener:
        return Listener(self.dsn, channels, wake, idle)

    def try_lock(self, key: int) -> Lease:
        return Lease(self.dsn, key)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._probe.close()
            self._pool.close()


class Listener:
    """One thread that LISTENs on channels and calls `wake(head)` as soon as a notification arrives, with
    the highest integer payload of the notifications that arrived together (a hint, never content); and
    `wake(None)` after a reconnect and every `idle` seconds without one (a missed notification only
    delays, never loses: readers go by position). `live`: listening, and caught up once since
    connecting (so every commit from now on wakes it)."""

    def __init__(self, dsn: str, channels: Sequence[str], wake: Callable[[int | None], None], idle: float):
        self._dsn, self._channels, self._wake, self._idle = dsn, list(channels), wake, idle
        self.live = False
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
                    self.live = self._call(None)
                    while not self._stop.is_set():
                        # Returns as soon as one arrives (with any others in the same packet).
                        heads = [_head(n.payload) for n in conn.notifies(timeout=self._idle, stop_after=1)]
                        if self._stop.is_set():  # stopped meanwhile: its database may be closed already
                            break
                        known = heads and None not in heads
                        self.live = self._call(max(heads) if known else None)  # type: ignore[type-var]
            except psycopg.Error as exc:
                if not self._stop.is_set():
                    if self._conn is not None:  # once per outage (the probe tells when it ends)
                        log.warning("listener lost its connection (%s); reconnecting", exc)
                    self._stop.wait(0.2)
            finally:
                self.live = False
                self._conn = None

    def _call(self, head: int | None) -> bool:
        """wake(head); whether it succeeded."""
        try:
            self._wake(head)
            return True
        except Exception:
            if not self._stop.is_set():  # else the caller stopped (and may have closed its database)
                log.exception("catching up after a notification failed")
            return False

    def stop(self) -> None:
        """Stop listening. Not waited for: the thread notices within `idle` seconds, and it only ever
        calls `wake()`, which reads by position (harmless once the caller has stopped)."""
        self.live = False
        self._stop.set()


def _head(payload: str) -> int | None:
    """A notification's payload as the head it announces; None when it is not a number."""
    try:
        return int(payload)
    except ValueError:
        return None


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
