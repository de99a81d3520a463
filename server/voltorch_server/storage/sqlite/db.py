"""The database handle shared by every component.

One writer connection guarded by a lock (SQLite allows one writer at a time anyway) and one read
connection per thread (WAL lets readers run beside the writer and see the last committed state).
`write()` runs a transaction and, while still holding the writer lock, runs the callbacks registered
with `Tx.after_commit` — so subscribers see committed records in commit order. If it rolls back instead
(its block raised, or its COMMIT failed), the callbacks registered with `Tx.after_rollback` run, the last
first, once the rollback is done: they undo in memory what was done inside it.

WAL checkpoints (copying committed pages from the WAL into the database file, with an fsync) run on a
background thread instead of inside whichever COMMIT crossed SQLite's auto-checkpoint threshold: that
COMMIT used to hold the writer lock for the fsync (milliseconds), stalling every writer behind it.
Durability is unchanged: a COMMIT still returns only once its pages are in the WAL.

Shared COMMITs (`write(group=True)`, the workflow steps' transactions): writers queue on the writer lock
and each runs its transaction's statements in turn, so many concurrent steps each paid a COMMIT (with
synchronous=FULL an fsync) of their own, inside the lock. A transaction that may share its COMMIT runs its
part and, when other writers are already waiting for the lock, leaves the transaction open for them: the
next one runs its part inside a SAVEPOINT (a part that fails is rolled back alone and only its caller
hears of it), and whoever finds nobody waiting (or the group full) commits once for all. Every caller
returns only after the COMMIT that holds its part (nothing is acknowledged before it is durable; a
crash before it loses the parts of callers that have not returned, as it would one transaction), and
each gets its own outcome. The after-commit callbacks of every part run after that COMMIT, in the order
of the parts, under the writer lock, on the committing thread; if that COMMIT fails, every part's rollback
callbacks run there instead (the newest part's first), and a part rolled back alone runs its own at once. A writer that may not share (the default)
commits what others left open first, then runs alone; so do re-entrant writes (from a callback).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from itertools import chain
from pathlib import Path
from time import perf_counter, thread_time
from typing import Any, Protocol, TypeVar

from ...handoffs import handed_off
from .._after_commit import AfterCommit, rolled_back
from .._dialect import SQLITE
from .integrity import IntegrityResult, check_connection

log = logging.getLogger("voltorch.db")

CHECKPOINT_EVERY = 100  # commits between background checkpoints (~ SQLite's default of 1000 pages)
CHECKPOINT_IDLE = 5.0  # seconds: also checkpoint what a quiet period left in the WAL
# Under a steady stream of commits a checkpoint never catches up with the last frames, so the WAL
# never starts over: past this many frames the checkpointer pauses writers (takes the writer lock)
# for a short final pass. Most of the copying has been done by then, beside the writers; the pass's
# syncs still hold every commit for 2-13 ms. An event commit writes ~6 frames: at 2,000 frames that
# pause came 3 times a second at 1,000 publishes/s and 2-13 % of the events waited in one, more than the
# 1 % that sets a p99 (bench/README.md, "Where the p99 went, second look"); at 8,000 (a WAL of ~32 MB)
# it comes every ~1.3 s.
WAL_RESTART_FRAMES = 8000
# The writer still checkpoints by itself past this many WAL pages (only if the background one is stuck).
WRITER_AUTOCHECKPOINT_PAGES = 20_000


GROUP_MAX = 32  # transactions sharing one COMMIT at most (write(group=True)); 1: each commits alone
T = TypeVar("T")

_MAX_PARAMETERS = 32_000  # bound parameters per statement (SQLite's default limit is 32766)


@lru_cache(maxsize=256)
def _placeholders(rows: int, width: int) -> str:
    one = "(" + ",".join("?" * width) + ")"
    return ",".join([one] * rows)


@lru_cache(maxsize=256)
def _rows_sql(head: str, rows: int, width: int, tail: str) -> str:
    """The statement of `Tx.insert_rows`, one object per shape: sqlite3 finds its prepared statement by the
    text, whose hash a string keeps once computed (a step's statements are ~600 characters each)."""
    return f"{head} VALUES {_placeholders(rows, width)}{tail}"


class Listening(Protocol):
    """What `listen()` returns on a database other processes write (PostgreSQL)."""

    def stop(self) -> None: ...


class Lease(Protocol):
    """What `try_lock()` returns: `held()` says (and, when free, makes) this process the holder."""

    def held(self) -> bool: ...

    def close(self) -> None: ...


class Tx:
    """An open write transaction."""

    __slots__ = ("conn", "_before", "_after", "_undo", "unwritten", "error", "calls")

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        self.calls = 0  # sqlite3 calls made through it (each releases the GIL: a chance to lose it)
        self._before: list[Callable[[], None]] = []
        self._after = AfterCommit()
        self._undo: list[Callable[[], None]] = []  # its rollback callbacks (`after_rollback`)
        self.unwritten: Any = None  # the event log's events of this transaction, written at COMMIT
        self.error: BaseException | None = None  # its after-commit callbacks' failure (a shared COMMIT)

    def execute(self, sql: str, params: tuple | list | dict = ()) -> sqlite3.Cursor:
        self.calls += 1
        return self.conn.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[tuple | list | dict]) -> sqlite3.Cursor:
        """One prepared statement run for every row, without a Python round trip per row."""
        self.calls += 1
        return self.conn.executemany(sql, rows)

    def insert_rows(self, head: str, rows: Sequence[Sequence[Any]], tail: str = "") -> None:
        """`{head} VALUES (?,…),(?,…),… {tail}` for every row, as few statements as SQLite's limit on
        parameters allows. Why not executemany: it steps once per row and every step releases the GIL,
        which on a busy server hands it to another thread and back: two thread switches per row."""
        if not rows:
            return
        width = len(rows[0])
        per = max(1, _MAX_PARAMETERS // width)
        for i in range(0, len(rows), per):
            chunk = rows[i : i + per]
            self.calls += 1
            self.conn.execute(_rows_sql(head, len(chunk), width, tail), list(chain(*chunk)))

    def before_commit(self, fn: Callable[[], None]) -> None:
        """Run fn inside the transaction just before its COMMIT (if fn raises, it rolls back): the event
        log writes all of a transaction's events there, in one statement."""
        self._before.append(fn)

    def after_commit(self, fn: Callable[[], None], *, first: bool = False) -> None:
        """Run fn once the transaction has committed (never if it rolls back); `first`: before the
        others (a cache that must be current before anyone hears of the commit; see AfterCommit)."""
        self._after.add(fn, first)

    def after_rollback(self, fn: Callable[[], None]) -> None:
        """Run fn once the transaction has rolled back (never if it commits): to undo in memory what was
        done inside it. Callbacks run the last registered first, under the writer lock, on the thread that
        rolled it back (a shared COMMIT that failed: the committing one); one that fails is logged, and the
        caller hears of the transaction's own error. A part of a shared COMMIT that is rolled back alone
        runs its own at once; a shared COMMIT that fails runs every part's (and none's after-commit ones)."""
        self._undo.append(fn)

    def _rolled_back(self) -> None:
        rolled_back(self._undo, self._after)

    def _committed(self) -> None:
        """Committed: its rollback callbacks are forgotten (they may hold it), its after-commit ones run."""
        self._undo.clear()
        self._after.run()

    def holds(self, name: str) -> bool:
        """Always: the writer lock, taken with BEGIN, keeps every number ours."""
        return True

    def counter(self, name: str) -> int:
        """The newest number AUTOINCREMENT gave table `name` (the writer lock keeps it ours)."""
        self.calls += 1
        row = self.conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (name,)).fetchone()
        return row[0] if row else 0

    def set_counter(self, name: str, value: int) -> None:
        """Nothing to do: inserting an explicit id advances AUTOINCREMENT by itself."""

    def notify(self, channel: str, head: int) -> None:
        """Nothing to do: one process, whose subscribers hear of commits through `after_commit`."""


class _Group:
    """The open transaction of `write(group=True)` parts that are done and wait for their shared COMMIT."""

    __slots__ = ("parts", "committed", "waited", "error")

    def __init__(self) -> None:
        self.parts: list[Tx] = []
        # Both changed only with the writer lock held. A part that finds its group still open when it lets
        # the lock go makes `waited` and waits on it; almost always the group is committed by then (nobody
        # asked for the lock), and no Event (a Condition and its lock, ~10k instructions) is made.
        self.committed = False
        self.waited: threading.Event | None = None
        self.error: BaseException | None = None  # the COMMIT failed: nothing of any part was written

    def settle(self) -> None:
        """Committed or failed (writer lock held): a part waiting for it goes on."""
        self.committed = True
        if self.waited is not None:
            self.waited.set()


class _WriterLock:
    """`Database.writer_lock`: the writer lock, taken as `write()` takes it (counted while waiting, held
    re-entrantly), and once taken, what a group left open is committed first (outside a transaction a
    statement would otherwise land in the group's, and its callbacks run before that COMMIT)."""

    __slots__ = ("_db",)

    def __init__(self, db: Database):
        self._db = db

    def __enter__(self) -> _WriterLock:
        db = self._db
        db._asking.append(None)
        try:
            db._lock.acquire()
        finally:
            db._asking.pop()
        db._depth += 1
        if db._group is not None and db._depth == 1:  # (deeper: inside a part, whose transaction it is)
            db._commit_group(db._group)
        return self

    def __exit__(self, *exc: object) -> None:
        db = self._db
        db._depth -= 1
        db._lock.release()


class Database:
    kind = "sqlite"
    dialect = SQLITE  # what its SQL says differently from PostgreSQL's (storage/_dialect.py)
    explicit_ids = False  # AUTOINCREMENT numbers rows (PostgreSQL's counters are explicit)
    SEQUENCE_HEAD = "SELECT seq FROM sqlite_sequence WHERE name = ?"  # a table's newest number

    def __init__(self, path: str | Path, *, synchronous: str = "NORMAL", group_max: int = GROUP_MAX):
        self.path = str(path)
        self.group_max = group_max
        self.memory = self.path == ":memory:"
        if not self.memory:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._synchronous = synchronous
        self._lock = threading.RLock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self.commits = 0  # transactions committed (the bench reports commits per workflow step)
        # Seconds the writer lock was waited for and held (BEGIN to the last after-commit callback), and of
        # that in COMMIT: held close to the wall time means the writer lock bounds the throughput (bench).
        self.writer_waited = 0.0
        self.writer_held = 0.0
        self.commit_time = 0.0
        self.commit_cpu = 0.0  # the committing thread's CPU in COMMIT: its fsync's share of a step (bench)
        # Of the writer lock's holds (outermost `write()`s): how many, the holder's own CPU in them (far
        # below writer_held: the holder waited, for the GIL or a CPU) and the sqlite3 calls made in them
        # (each releases the GIL, so each is a chance to wait for it again).
        self.writer_holds = 0
        self.writer_cpu = 0.0
        self.writer_calls = 0
        self._group: _Group | None = None  # parts done, their COMMIT not yet run (writer lock held to change)
        self._asking: list[None] = []  # one entry per thread waiting for the writer lock (append/pop: atomic)
        self._depth = 0  # the writer lock's re-entrant holds (changed only by its holder)
        self._writer_lock = _WriterLock(self)
        self._writer = self._connect()
        self._writer.execute("PRAGMA journal_mode=WAL")
        self._checkpointer: _Checkpointer | None = None
        if not self.memory:
            self._writer.execute(f"PRAGMA wal_autocheckpoint={WRITER_AUTOCHECKPOINT_PAGES}")
            self._checkpointer = _Checkpointer(self._connect(), self._lock)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    @contextmanager
    def write(self, *, lock: str | None = None, group: bool = False) -> Iterator[Tx]:
        """A write transaction (BEGIN IMMEDIATE … COMMIT), rolled back if the block raises. (`lock` is
        PostgreSQL's counter locked with BEGIN: here BEGIN IMMEDIATE takes the one writer lock.) `group`:
        it may share its COMMIT with concurrent writers' (see the module); it returns once committed."""
        asking = self._asking
        asking.append(None)
        asked = perf_counter()
        try:
            self._lock.acquire()
        finally:  # counted only while waiting: a part leaves its transaction open only for a real writer
            asking.pop()
        self._depth += 1
        began, cpu = perf_counter(), thread_time()
        conn = self._writer
        tx: Tx | None = None
        mine: _Group | None = None  # the group holding this part, once it is done
        try:
            if self._closed:
                raise RuntimeError("database is closed")
            shared = self._group
            alone = not group or self._depth > 1 or self.group_max <= 1
            if shared is not None and alone:  # what others left open commits first
                self._commit_group(shared)
                shared = None
            tx = Tx(conn)
            if shared is None:
                tx.execute("BEGIN IMMEDIATE")
            else:
                self._in_group(shared, "SAVEPOINT part", part=tx)
            try:
                yield tx
                for fn in tx._before:
                    fn()
                tx._before.clear()  # they hold the transaction: no cycle left for the collector
            except BaseException:
                try:
                    if shared is None:
                        tx.execute("ROLLBACK")
                    else:  # this part only: the others' stay, to be committed
                        self._in_group(shared, "ROLLBACK TO part", "RELEASE part", part=tx)
                finally:  # (if the group failed, its rollback ran this part's callbacks first)
                    tx._rolled_back()
                raise
            if shared is not None:
                self._in_group(shared, "RELEASE part", part=tx)  # failed: the group rolled back, tx first
            elif alone:
                self._commit(tx)
                return
            else:
                shared = self._group = _Group()
            shared.parts.append(tx)
            mine = shared
        finally:
            open_group = self._group
            if open_group is not None and (not asking or len(open_group.parts) >= self.group_max):
                self._commit_group(open_group)  # nobody to take it on (or full): commit it now
            self.writer_waited += began - asked
            self.writer_held += perf_counter() - began
            if tx is not None:
                self.writer_calls += tx.calls
            if self._depth == 1:  # the outermost hold (a nested one's CPU and calls are in it)
                self.writer_holds += 1
                self.writer_cpu += thread_time() - cpu
            if mine is not None and not mine.committed and mine.waited is None:  # (one for all its parts)
                mine.waited = threading.Event()  # a writer that was waiting takes the transaction on
            self._depth -= 1
            self._lock.release()
        assert mine is not None and tx is not None  # the other paths returned or raised
        if mine.waited is not None:
            mine.waited.wait()  # until that writer commits it
        if mine.error is not None:
            raise mine.error
        if tx.error is not None:
            raise tx.error

    def _commit(self, tx: Tx) -> None:
        """COMMIT a transaction of one part, then its callbacks (writer lock held)."""
        committing, cpu = perf_counter(), thread_time()
        self.writer_calls += 1
        try:
            self._writer.execute("COMMIT")
        except BaseException:
            try:
                if self._writer.in_transaction:  # e.g. SQLITE_BUSY: never leave it open for the next writer
                    self._writer.execute("ROLLBACK")
            finally:
                tx._rolled_back()
            raise
        self._committed(committing, cpu)
        tx._committed()

    def _committed(self, since: float, cpu: float) -> None:
        self.commits += 1
        self.commit_time += perf_counter() - since
        self.commit_cpu += thread_time() - cpu
        if self._checkpointer is not None:
            self._checkpointer.committed()

    def _in_group(self, group: _Group, *statements: str, part: Tx) -> None:
        """Statements of a `part` in a shared transaction; if one fails, the whole group is rolled back and
        fails (its state is not known any more), and so does this part (its rollback callbacks run first:
        it is the newest)."""
        try:
            for sql in statements:
                self.writer_calls += 1
                self._writer.execute(sql)
        except BaseException as exc:
            self._fail_group(group, exc, part)
            raise

    def _fail_group(self, group: _Group, exc: BaseException, part: Tx | None = None) -> None:
        """Roll the whole group back (writer lock held): every part's rollback callbacks run, the newest
        part's first (`part`, one not yet in the group, before all), and it is settled with `exc`."""
        self._group = None
        try:
            if self._writer.in_transaction:
                self._writer.execute("ROLLBACK")
        finally:
            if part is not None:
                part._rolled_back()
            for tx in reversed(group.parts):
                tx._rolled_back()
        group.error = exc
        group.settle()
        handed_off(len(group.parts))

    def _commit_group(self, group: _Group) -> None:
        """COMMIT the parts of a group, then each part's callbacks in order (writer lock held). Never raises:
        a failed COMMIT is every part's error, a failing callback its part's."""
        self._group = None
        committing, cpu = perf_counter(), thread_time()
        self.writer_calls += 1
        try:
            self._writer.execute("COMMIT")
        except BaseException as exc:
            try:
                self._fail_group(group, exc)
            except BaseException:  # the ROLLBACK failed too: the parts hear of the COMMIT's failure
                group.error = exc
                group.settle()
            return
        self._committed(committing, cpu)
        for tx in group.parts:
            try:
                tx._committed()
            except BaseException as exc:
                tx.error = exc
        group.settle()
        handed_off(len(group.parts) - 1)

    @property
    def writer_lock(self) -> _WriterLock:
        """The lock `write()` holds (re-entrant): a writer that must decide what to write while it alone
        writes (e.g. take a batch, then write it alone or in a transaction) takes it first. Taking it
        commits what a group of `write(group=True)` parts left open: what its holder writes is its own."""
        return self._writer_lock

    def insert_alone(self, head: str, rows: Sequence[Sequence[Any]], then: Callable[[int], T]) -> T:
        """`{head} VALUES (?,…),(?,…),…` for every row (as many as one statement takes) as a whole write
        transaction: outside BEGIN … COMMIT, SQLite begins and commits it inside the statement — one sqlite
        call (one release of the GIL, where a thread switch may come) instead of BEGIN, the statement and
        COMMIT. `then(the last row id it inserted)` runs right after, under the writer lock, as
        `Tx.after_commit` callbacks do (subscribers hear in commit order)."""
        assert rows and len(rows) * len(rows[0]) <= _MAX_PARAMETERS, "one statement's worth of rows"
        sql = f"{head} VALUES {_placeholders(len(rows), len(rows[0]))}"
        with self._writer_lock:
            if self._closed:
                raise RuntimeError("database is closed")
            last = self._writer.execute(sql, list(chain(*rows))).lastrowid
            assert last is not None  # an INSERT of at least one row
            self.commits += 1
            if self._checkpointer is not None:
                self._checkpointer.committed()
            return then(last)

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

    def check_integrity(self, *, full: bool = False) -> IntegrityResult:
        """PRAGMA quick_check (integrity_check when full) from this thread's read connection."""
        return check_connection(self.read(), self.path, full=full)

    def query(self, sql: str, params: tuple | list | dict = ()) -> list[sqlite3.Row]:
        return self.read().execute(sql, params).fetchall()

    def query_one(self, sql: str, params: tuple | list | dict = ()) -> sqlite3.Row | None:
        return self.read().execute(sql, params).fetchone()

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A connection whose reads all see one committed state."""
        if self.memory:  # one shared connection: borrow the writer's transaction for consistency
            with self.write() as tx:
                yield tx.conn
            return
        conn = self.read()
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def sequence_head(self, name: str) -> int:
        """The newest number AUTOINCREMENT gave table `name` (0 before the first)."""
        row = self.query_one(self.SEQUENCE_HEAD, (name,))
        return row[0] if row else 0

    def owns(self, tx: Any) -> bool:
        """Whether tx is a transaction of this kind of database."""
        return isinstance(tx, Tx)

    def listen(
        self, channels: Sequence[str], wake: Callable[[int | None], None], idle: float = 1.0
    ) -> Listening | None:
        """No one else writes this file: there is nothing to listen to."""
        return None

    def try_lock(self, key: int) -> Lease | None:
        """One server per file (storage/sqlite/owner.py): its singleton jobs need no lease."""
        return None

    def close(self) -> None:
        """Checkpoint the WAL and close every connection."""
        if self._checkpointer is not None:
            self._checkpointer.stop()
        with self._lock:
            if self._closed:
                return
            if self._group is not None:  # parts that were waiting for a writer: committed first
                self._commit_group(self._group)
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


class _Checkpointer:
    """Checkpoints the WAL from its own connection and thread, every `every` commits or after a quiet
    CHECKPOINT_IDLE seconds. PASSIVE: it never waits for readers or the writer."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        writer_lock: threading.RLock,
        *,
        every: int = CHECKPOINT_EVERY,
        restart_frames: int = WAL_RESTART_FRAMES,
    ):
        self._conn = conn
        self._writer_lock = writer_lock
        self.every = every
        self.restart_frames = restart_frames
        self._commits = 0  # since the last pass (a plain counter: the writer lock guards it)
        self.pauses = 0  # passes that paused the writers (took the writer lock)
        self._due = threading.Event()
        self._running = threading.Lock()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="db-checkpoint", daemon=True)
        self._thread.start()

    def committed(self) -> None:
        self._commits += 1
        if self._commits >= self.every:
            self._due.set()

    def _run(self) -> None:
        while not self._stopping:
            self._due.wait(CHECKPOINT_IDLE)
            self._due.clear()
            if self._stopping or not self._commits:
                continue
            try:
                self.run_once()
            except sqlite3.Error as exc:  # the writer's own auto-checkpoint is the fallback
                log.warning("background WAL checkpoint failed: %s", exc)
        with self._running:
            self._conn.close()

    def run_once(self) -> None:
        """One pass: checkpoint beside the writers; if the WAL is long, finish with writers paused."""
        with self._running:
            self._commits = 0
            if self._checkpoint() >= self.restart_frames:
                with self._writer_lock:
                    self.pauses += 1
                    self._checkpoint()  # no commit can slip in: the WAL starts over at the next one

    def _checkpoint(self) -> int:
        """One PASSIVE checkpoint; returns the WAL's length in frames."""
        _busy, frames, _done = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return frames

    def stop(self) -> None:
        self._stopping = True
        self._due.set()
        self._thread.join(timeout=30)
