"""The engines' write transactions one at a time within a process, on PostgreSQL as on SQLite.

Every transaction that appends events locks the event log's head (a counter row) until it commits. The
engines' transactions (coordination, workflows, schedules, templates) buffer their events and number them
in ONE statement just before COMMIT (`EventLog`, `PgDatabase.write`'s `before_commit`): the head row is
locked from that statement to COMMIT only, so transactions of other replicas, state writes and Publish
never wait for an engine transaction's round trips and Python, only for its last statement.

Why that cannot deadlock. A wait-for cycle through a Python lock is one PostgreSQL cannot detect (it would
hang); cycles made only of row locks it detects and breaks (`TransactionConflict`, rare: see below).
- Whoever holds the head row runs no Python lock while it does: an engine or state transaction holds it
  from its last statement to COMMIT (its `after_commit` callbacks run after COMMIT, the row released); a
  Publish holds it for its one statement (`write_one`), or, when it must read the log first, from BEGIN to
  COMMIT taking nothing but the group commit's queue mutex, which no one holds while waiting (a leaf); a
  caller that needs its event's sequence in its transaction (`EventLog.append(numbered=True)`: the error
  log) holds it from that append to COMMIT and takes no lock in between (it inserts its error row).
  So waiting for the head row while holding a Python lock (an engine's, this serialisation's, a live-text
  stream's) closes no cycle: the holder always reaches COMMIT.
- The head row is always the last row a transaction locks (before: the state revision, then the
  kv_history counter, then the head; after it only new rows are inserted, which wait for no one): no
  transaction waits for another row while holding the head.
- Here, `SerialWrites` keeps the engines' transactions one at a time within a process (one per database
  handle: every engine store wraps its `db` with `engine_writes`, however it was built), taken before BEGIN
  (and before a pooled connection) and held through the `after_commit` callbacks, exactly where SQLite's
  BEGIN IMMEDIATE takes its writer lock: the engines take their own locks in the order they already take
  them on SQLite (an engine lock before the transaction, or inside it: never a transaction while holding a
  lock taken inside one), and within a replica no two engine transactions hold rows while one of them
  waits for a Python lock the other holds. Across replicas there is no Python lock: two engine
  transactions that lock each other's rows form a cycle of row locks only, which PostgreSQL detects.

Without this lock the engines' transactions of one replica would run concurrently, which they never have
(SQLite's writer lock, then the head row from BEGIN, serialised them): their own locks would then have to
be checked against every row lock their transactions take."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def engine_writes(db: Any) -> Any:
    """The handle the engines' stores write through: on PostgreSQL the one `SerialWrites` of `db` (every
    engine store built on the same database handle, i.e. in the same process, shares its lock, however it
    was built); SQLite's `db` itself (its writer lock serialises every transaction already)."""
    if db.dialect.name != "postgres" or isinstance(db, SerialWrites):
        return db
    serial = getattr(db, "engine_writes", None)
    if serial is None:
        with _made:
            serial = getattr(db, "engine_writes", None)
            if serial is None:
                serial = db.engine_writes = SerialWrites(db)
    return serial


_made = threading.Lock()  # one SerialWrites per database handle, whichever store asks first


class SerialWrites:
    """`db` whose `write()` runs one at a time in this process; everything else is `db`'s."""

    def __init__(self, db: Any):
        self._db = db
        self._lock = threading.RLock()  # re-entrant as SQLite's writer lock

    @contextmanager
    def write(self, *, lock: str | None = None, group: bool = False) -> Iterator[Any]:
        with self._lock, self._db.write(lock=lock, group=group) as tx:
            yield tx

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)
