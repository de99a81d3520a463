"""The SQL of the event log (tables events and event_compaction), once for both backends: the
implementation of `components.events.EventsPort`."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from ...components.events import Event, EventFilter, Floor
from ...frozen import blank
from ...json_encoders import encoder
from ...priority import Priority
from ._ids import carrying_ids

COLUMNS = (
    "seq, id, type, source, target, data, correlation_id, causation_id, priority,"
    " traceparent, tracestate, trace_id, span_id, time"
)
_INSERTED = (
    "id, type, source, target, data, correlation_id, causation_id, priority,"
    " traceparent, tracestate, trace_id, span_id, time"
)
# PostgreSQL: a batch's rows travel as ONE parameter, a JSON array of rows (each an array in the order of
# _INSERTED without time), numbered by their position: `json.dumps` is C, where psycopg converts a Python
# list to an array parameter in Python, element by element (one array per column had cost as much CPU as
# the rest of the append).
_ROWS = "json_array_elements(?::json) WITH ORDINALITY AS r(e, n)"
_NUMBERED = """r.e->>0, r.e->>1, r.e->>2, r.e->>3, r.e->>4, r.e->>5, r.e->>6, (r.e->>7)::integer,
        r.e->>8, r.e->>9, r.e->>10, r.e->>11"""
# PostgreSQL, the events counter row already locked by the caller's transaction (`lock_head`): the whole
# append in ONE statement, one round trip whatever the batch's size — the time clamp (the newest event
# time, kept in the counter row: read under the lock, it is the previous holder's), the rows (`_ROWS`,
# numbered from the head), the counter advanced, and the NOTIFY (sent at COMMIT,
# with the new head only). Its text never changes, so it runs prepared.
_APPEND_LOCKED = f"""WITH t AS (
    SELECT GREATEST(?::float8, time) AS time FROM voltorch_counters WHERE name = 'events'
),
ins AS (
    INSERT INTO events(seq, {_INSERTED})
    SELECT ?::bigint + r.n, {_NUMBERED}, t.time
    FROM t, {_ROWS}
),
adv AS (UPDATE voltorch_counters SET value = ?, time = t.time FROM t WHERE name = 'events')
SELECT t.time, pg_notify(?, ?)::text FROM t"""
# PostgreSQL, the append alone, or last, in its transaction: no transaction open, the append IS the
# transaction (autocommit: one round trip for BEGIN, the rows and COMMIT); or just before the COMMIT of one
# that has not locked the counter (`append_at_commit`: only COMMIT follows, so the row is held from this
# statement to COMMIT and never across the transaction's other statements). The UPDATE of the counter
# row locks it, waiting for any other writer's COMMIT (on any replica), and at READ COMMITTED is then
# evaluated on the row as that COMMIT left it (the increment pattern): the head and the newest time it
# returns are the latest, the rows are numbered after them, and the lock is held until this transaction
# commits — gap-free in commit order, as with `lock_head`. Only the counter row carries what the previous
# writer did: the statement's snapshot predates that COMMIT, so nothing else (e.g. MAX(time) of events)
# could be read here.
_APPEND_ALONE = f"""WITH c AS (
    UPDATE voltorch_counters SET value = value + ?, time = GREATEST(time, ?::float8)
    WHERE name = 'events' RETURNING value, time
),
ins AS (
    INSERT INTO events(seq, {_INSERTED})
    SELECT c.value - ?::bigint + r.n, {_NUMBERED}, c.time
    FROM c, {_ROWS}
)
SELECT c.value, c.time, pg_notify(?, c.value::text)::text FROM c"""
_BY_ID = f"SELECT {COLUMNS} FROM events WHERE id = ?"
_AFTER = f"SELECT {COLUMNS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?"
_LAST_TIME = "SELECT COALESCE(MAX(time), 0) FROM events"
_FLOOR = "SELECT through_seq, through_time FROM event_compaction WHERE id = 1"
_COUNTER = "events"
CHUNK = 5000  # rows deleted per transaction, so publishers never wait long on the writer lock

T = TypeVar("T")

_json_loads = json.loads
_json_dumps = encoder(ensure_ascii=False, separators=(",", ":"))
_PRIORITIES = {int(p): p for p in Priority}


# The correlation and trace indexes are partial (`WHERE column != ''`): SQLite uses one for `column = ?`
# only when the query repeats that condition (it cannot know a bound parameter is not '').
_INDEXED = {"correlation_id": " AND correlation_id != ''", "trace_id": " AND trace_id != ''"}


def row_to_event(row: Any) -> Event:
    """An Event from a row of COLUMNS. Replay builds one per delivered event, so this skips the frozen
    dataclass __init__ (one object.__setattr__ per field) and fills the instance dict directly."""
    e = blank(Event)
    d = e.__dict__
    (
        d["sequence"],
        d["id"],
        d["type"],
        d["source"],
        d["target"],
        data,
        d["correlation_id"],
        d["causation_id"],
        priority,
        d["traceparent"],
        d["tracestate"],
        d["trace_id"],
        d["span_id"],
        d["time"],
    ) = row
    d["data"] = _json_loads(data)
    d["priority"] = _PRIORITIES[priority]
    return e


def _floor(row: Any) -> Floor:
    return Floor(row[0], row[1]) if row else Floor(0, 0.0)


class SqlEvents:
    """The event log's rows. `tx` is the caller's write transaction; `conn` a connection of
    `db.snapshot()` (one committed state across several reads)."""

    def __init__(self, db: Any):
        self.db = db
        self.dialect = db.dialect
        self.explicit_ids = db.explicit_ids  # PostgreSQL numbers events from its locked counter row
        self.head_counter = _COUNTER

    # -- in a write transaction --------------------------------------------------------------------

    def holds_head(self, tx: Any) -> bool:
        """Whether `tx` has locked the head already (`lock_head`, `db.write(lock=head_counter)`; SQLite:
        always, its writer lock)."""
        return tx.holds(_COUNTER)

    def lock_head(self, tx: Any) -> int:
        """The newest sequence; on PostgreSQL its counter row stays locked until the transaction ends, so
        sequences are handed out gap-free in commit order across replicas."""
        return tx.counter(_COUNTER)

    def append_locked(self, tx: Any, head: int, rows: list[tuple], now: float, channel: str) -> float:
        """PostgreSQL: append `rows` (each in the order of COLUMNS without seq and time) as head+1, head+2…
        with the events counter locked by `lock_head` (at `head`), advance it and NOTIFY `channel` with
        the new head, in one statement; returns the events' time (`now`, or the newest time if later)."""
        last = head + len(rows)
        time = tx.execute(
            _APPEND_LOCKED, (now, head, _json_dumps(rows), last, channel, str(last))
        ).fetchone()[0]
        tx.counter_advanced(_COUNTER, last)
        return time

    def append_alone(self, rows: list[tuple], now: float, channel: str) -> tuple[int, float]:
        """PostgreSQL, outside any transaction: append `rows` (as for `append_locked`) in one statement
        that is its own transaction — lock and advance the counter, insert, NOTIFY `channel`, COMMIT: one
        round trip. Returns (the head before these rows, their time)."""
        n = len(rows)
        head, time, _ = self.db.write_one(_APPEND_ALONE, (n, now, n, _json_dumps(rows), channel))
        return head - n, time

    def append_at_commit(self, tx: Any, rows: list[tuple], now: float, channel: str) -> tuple[int, float]:
        """PostgreSQL, the last statement of `tx` (which has not locked the head) before its COMMIT:
        append `rows` (as for `append_locked`) in one statement that locks and advances the counter and
        NOTIFYs `channel` (delivered at COMMIT). Returns (the head before these rows, their time)."""
        n = len(rows)
        head, time, _ = tx.execute(_APPEND_ALONE, (n, now, n, _json_dumps(rows), channel)).fetchone()
        tx.counter_advanced(_COUNTER, head)
        return head - n, time

    def last_time_in(self, tx: Any) -> float:
        return tx.execute(_LAST_TIME).fetchone()[0]

    def insert_numbered(self, tx: Any, rows: list[tuple]) -> None:
        """SQLite: append events already numbered (each row in the order of COLUMNS, its sequence from
        `lock_head` on, which the writer lock keeps ours), as few statements as the parameter limit
        allows: one for a workflow step's events. AUTOINCREMENT follows explicit sequences by itself.
        (PostgreSQL numbers and appends a batch in one statement: `append_locked`.)"""
        tx.insert_rows(f"INSERT INTO events({COLUMNS})", rows)

    def insert_alone(self, rows: list[tuple], now: float, then: Callable[[int], T]) -> T:
        """SQLite, outside any transaction: append `rows` (each in the order of COLUMNS without seq and
        time) at time `now` in one INSERT that is its own transaction; AUTOINCREMENT numbers them (the
        writer lock makes them consecutive, after the head). `then(the last one's sequence)` runs under the
        writer lock once they are committed. (PostgreSQL's one-statement append: `append_alone`.)"""
        return self.db.insert_alone(f"INSERT INTO events({_INSERTED})", [(*row, now) for row in rows], then)

    def by_id_in(self, tx: Any, event_id: str) -> Event | None:
        row = tx.execute(_BY_ID, (event_id,)).fetchone()
        return row_to_event(row) if row is not None else None

    # -- reads -------------------------------------------------------------------------------------

    def head(self) -> int:
        """The newest sequence ever assigned (0 for an empty log), compacted or not."""
        return self.db.sequence_head(_COUNTER)

    def newest(self) -> int | None:
        row = self.db.query_one("SELECT seq FROM events ORDER BY seq DESC LIMIT 1")
        return row[0] if row else None

    def after(self, seq: int, limit: int) -> list[Event]:
        return [row_to_event(r) for r in self.db.query(_AFTER, (seq, limit))]

    def get(self, event_id: str) -> Event | None:
        row = self.db.query_one(_BY_ID, (event_id,))
        return row_to_event(row) if row is not None else None

    def floor(self, conn: Any = None) -> Floor:
        """The compaction point, as `conn` (else the database) sees it."""
        return _floor(self.db.query_one(_FLOOR) if conn is None else conn.execute(_FLOOR).fetchone())

    def first_at(self, when: float) -> int | None:
        """The sequence of the first event with time >= when."""
        row = self.db.query_one("SELECT seq FROM events WHERE time >= ? ORDER BY time, seq LIMIT 1", (when,))
        return row[0] if row else None

    def _where(self, flt: EventFilter | None) -> tuple[list[str], list[Any]]:
        """The filter's conditions (the same as EventFilter.matches) as WHERE clauses and parameters."""
        clauses: list[str] = []
        params: list[Any] = []
        if flt is None:
            return clauses, params
        if flt.types:
            op = self.dialect.glob_operator
            clauses.append("(" + " OR ".join(f"type {op} ?" for _ in flt.types) + ")")
            params.extend(self.dialect.glob_pattern(t) for t in flt.types)
        for name in ("source", "target", "correlation_id", "trace_id"):
            value = getattr(flt, name)
            if value:
                clauses.append(f"{name} = ?" + _INDEXED.get(name, ""))
                params.append(value)
        if flt.min_priority:
            clauses.append("priority >= ?")
            params.append(int(flt.min_priority))
        return clauses, params

    def matching_after(self, conn: Any, after: int, flt: EventFilter | None, limit: int) -> list[Event]:
        clauses, params = self._where(flt)
        where = "".join(f" AND {c}" for c in clauses)
        rows = conn.execute(
            f"SELECT {COLUMNS} FROM events WHERE seq > ?{where} ORDER BY seq LIMIT ?", (after, *params, limit)
        ).fetchall()
        return [row_to_event(r) for r in rows]

    def page(
        self,
        conn: Any,
        flt: EventFilter,
        *,
        start_sequence: int,
        end_sequence: int,
        start_time: float | None,
        end_time: float | None,
        position: int | None,
        descending: bool,
        limit: int,
    ) -> tuple[list[Event], int]:
        """Events matching flt within the bounds (all optional: 0/None), past `position` in the listing's
        direction, and the head sequence read in the same snapshot."""
        clauses, params = self._where(flt)
        for clause, value, given in (
            ("seq >= ?", start_sequence, start_sequence),
            ("seq < ?", end_sequence, end_sequence),
            ("time >= ?", start_time, start_time is not None),
            ("time < ?", end_time, end_time is not None),
            ("seq < ?" if descending else "seq > ?", position, position is not None),
        ):
            if given:
                clauses.append(clause)
                params.append(value)
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        head_row = conn.execute(self.db.SEQUENCE_HEAD, (_COUNTER,)).fetchone()
        rows = conn.execute(
            f"SELECT {COLUMNS} FROM events{where} ORDER BY seq {'DESC' if descending else 'ASC'} LIMIT ?",
            (*params, limit),
        ).fetchall()
        return [row_to_event(r) for r in rows], head_row[0] if head_row else 0

    def of_correlation(self, correlation_id: str, limit: int) -> list[Event]:
        rows = self.db.query(
            f"SELECT {COLUMNS} FROM events WHERE correlation_id = ?{_INDEXED['correlation_id']} ORDER BY seq LIMIT ?",
            (correlation_id, limit),
        )
        return [row_to_event(r) for r in rows]

    def carrying(self, trace_ids: set[str], correlation_ids: set[str], limit: int) -> list[Event]:
        """Events carrying any of the trace or correlation ids, by sequence."""
        where, params = carrying_ids(trace_ids, correlation_ids)
        if not where:
            return []
        rows = self.db.query(
            f"SELECT {COLUMNS} FROM events WHERE {where} ORDER BY seq LIMIT ?", (*params, limit)
        )
        return [row_to_event(r) for r in rows]

    # -- retention ---------------------------------------------------------------------------------

    def compact(self, *, now: float, max_age: float, max_count: int) -> int:
        """Delete events older than max_age seconds or beyond the newest max_count (0 = no limit),
        recording the compaction point. Returns how many went. Works in chunks of CHUNK rows, each its
        own transaction."""
        if max_age <= 0 and max_count <= 0:
            return 0
        db = self.db
        cut = 0
        if max_count > 0:
            row = db.query_one("SELECT COALESCE(MAX(seq), 0) FROM events")
            head = row[0] if row else 0
            cut = max(cut, head - max_count)
        if max_age > 0:
            # Event times never decrease with sequence (the log clamps them), so the time index finds the cut.
            row = db.query_one(
                "SELECT seq FROM events WHERE time < ? ORDER BY time DESC, seq DESC LIMIT 1", (now - max_age,)
            )
            if row:
                cut = max(cut, row[0])
        deleted = 0
        while True:
            with db.write() as tx:
                floor = self.floor(tx)  # the row is updated below: PostgreSQL locks it on first write
                upto = min(cut, floor.through_seq + CHUNK)
                if upto <= floor.through_seq:
                    return deleted
                last = tx.execute(
                    "SELECT seq, time FROM events WHERE seq <= ? ORDER BY seq DESC LIMIT 1", (upto,)
                ).fetchone()
                n = tx.execute("DELETE FROM events WHERE seq <= ?", (upto,)).rowcount
                through_time = max(floor.through_time, last[1]) if last else floor.through_time
                tx.execute(
                    "UPDATE event_compaction SET through_seq = ?, through_time = ? WHERE id = 1",
                    (upto, through_time),
                )
                deleted += n
