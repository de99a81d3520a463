"""The event log: the communication backbone every component publishes through.

Events are appended with a monotonic, gap-free sequence (the SQL is the store's: `EventsPort`,
storage/stores/events.py) and then offered to in-process subscribers (the gRPC Subscribe stream is one
of them). Appending inside another component's write transaction (`append(tx, ...)`) makes "write + its
event" atomic. Subscribers replay from the log and then follow live (`_follow.Follower`); ListEvents
pages through it; retention compacts its old end.
"""

from __future__ import annotations

import builtins
import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from ..._ids import new_id
from ...errors import InvalidArgument, NotFound
from ...frozen import blank, made
from ...priority import Priority
from ...storage import GroupCommit, Pending, Take, Tx
from ...telemetry import TraceIds, current_trace
from ..shared import (
    PAGE_BYTES,
    Broadcaster,
    Component,
    Follower,
    decode_token,
    encode_token,
    fitting,
    is_count,
    page_size,
    wire_bytes,
)
from . import _retention as retention
from ._causal import CausalNode, causal_order
from ._filter import EventFilter, validate_glob, validate_type
from ._new import NewEvent, Prepared, prepare
from ._store_port import EventsPort

MAX_BATCH = 1000
NOTIFY_CHANNEL = "voltorch_events"  # PostgreSQL: NOTIFYed once per transaction with the new head sequence
DEFAULT_CORRELATION_EVENTS = 1000
MAX_CORRELATION_EVENTS = 10000


__all__ = [
    "Correlation",
    "Event",
    "EventFilter",
    "EventLog",
    "EventPage",
    "NewEvent",
    "Receipt",
    "validate_glob",
    "validate_type",
]


@dataclass(frozen=True)
class Event:
    sequence: int
    id: str
    type: str
    source: str
    target: str
    data: Any
    correlation_id: str
    causation_id: str
    priority: Priority
    traceparent: str
    tracestate: str
    trace_id: str
    span_id: str
    time: float


_compact = json.JSONEncoder(separators=(",", ":")).encode  # a page's data, measured as the log stores it


class _LazyData:
    """`Event.data` of an event the log built from the JSON it wrote (`_events`): decoded on first read, then
    kept in the instance (a non-data descriptor: an instance's own `data` wins, so an event built with its
    data, as the store's readers and the dataclass constructor do, never comes here). Most of a step's
    events are read by nobody but the listeners that look at their type: decoding each one's data back
    was ~6 % of a workflow step's thread."""

    def __get__(self, e: Event | None, owner: type | None = None) -> Any:
        if e is None:
            return self
        d = e.__dict__
        data = d["data"] = json.loads(d["_data_json"])  # two readers at once decode equal values
        return data


# Set on the class after the dataclass decorator made its fields (as a class attribute in the body it would
# be the field's default).
Event.data = _LazyData()


@dataclass(frozen=True)
class Receipt:
    """Where a published event landed; `duplicate` when its id was already in the log."""

    event: Event
    duplicate: bool = False

    @property
    def sequence(self) -> int:
        return self.event.sequence


@dataclass(frozen=True)
class EventPage:
    events: list[Event]
    next_page_token: str
    head_sequence: int


@dataclass(frozen=True)
class Correlation:
    nodes: list[CausalNode[Event]]
    root_ids: list[str]
    truncated: bool


def _event_type(e: Event) -> str:
    return e.type


def _sequence(e: Event) -> int:
    return e.sequence


def _exact_types(flt: EventFilter) -> tuple[str, ...] | None:
    """The filter's types when every one is exact (no glob): live delivery then only asks this filter
    about events of those types; None when any type is a glob or the filter names no type."""
    if flt.types and not any("*" in t or "?" in t for t in flt.types):
        return flt.types
    return None


def _reads_log(p: Prepared) -> bool:
    """Whether appending `p` reads the log first: its id (a repeat yields the original event) or its
    cause's correlation id (the cause inherits it when `p` names none)."""
    return bool(p.id) or (bool(p.causation_id) and not p.correlation_id)


def _events(seqs: Iterable[int], rows: list[tuple], priorities: list[Priority], now: float) -> list[Event]:
    """The appended rows (see EventLog._rows) as events, numbered `seqs`, at time `now`; their data is
    decoded from the row's JSON when first read (`_LazyData`). Built as the store's `row_to_event` builds
    a read one: the frozen dataclass's __init__ sets each field through object.__setattr__."""
    out = []
    for s, row, priority in zip(seqs, rows, priorities, strict=True):
        e = blank(Event)
        d = e.__dict__
        (
            d["id"],
            d["type"],
            d["source"],
            d["target"],
            d["_data_json"],
            d["correlation_id"],
            d["causation_id"],
            _,
            d["traceparent"],
            d["tracestate"],
            d["trace_id"],
            d["span_id"],
        ) = row
        d["sequence"], d["priority"], d["time"] = s, priority, now
        out.append(e)
    return out


class _Unwritten:
    """A transaction's events appended so far, written together just before its COMMIT (`Tx.before_commit`:
    one statement), delivered after it; kept on the transaction (`tx.unwritten`).
    SQLite: numbered as they are appended, from the head read in the transaction (the writer lock makes it
    the only open one; one log per database appends in it: the server builds one).
    PostgreSQL: numbered by that statement, which locks the head only then (held to COMMIT); the events
    the caller got back carry sequence 0 until COMMIT (see `EventLog.append`)."""

    __slots__ = ("head", "now", "rows", "events", "by_id")

    def __init__(self, head: int):
        # SQLite: the last sequence handed out in this transaction, the newest time, the rows in the order
        # of the store's COLUMNS. PostgreSQL: the head before them and their time, set at COMMIT; the rows
        # without seq and time.
        self.head = head
        self.now = 0.0
        self.rows: list[tuple] = []
        self.events: list[Event] = []
        self.by_id: dict[str, Event] = {}


class EventLog(Component):
    name = "events"

    def __init__(
        self,
        store: EventsPort,
        *,
        subscriber_buffer: int = 1000,
        retention_seconds: float = 0.0,
        retention_count: int = 0,
        compaction_interval: float = 60.0,
        clock: Callable[[], float] = time.time,
    ):
        self.store = store
        self.db = db = store.db  # its transactions (`write()`), followers and leases
        self.subscriber_buffer = subscriber_buffer
        self.retention_seconds = retention_seconds
        self.retention_count = retention_count
        self.clock = clock
        self._broadcaster: Broadcaster[Event] = Broadcaster(key=_event_type)
        self._listeners: list[Callable[[Event], None]] = []
        self._listeners_lock = threading.Lock()
        self._last_time: float | None = None  # event times never decrease with sequence
        self._delivered = self.last_sequence()  # every event <= this has been offered to subscribers
        self._compactor = retention.Compactor(self._compact_if_leader, compaction_interval)
        self._group = GroupCommit(self._publish_group)
        # PostgreSQL: other replicas append too. Events reach this replica's subscribers only through
        # `_catch_up`, which reads new rows by position (after a local commit, or when the listener
        # hears a NOTIFY); the lease makes compaction a singleton among replicas.
        self._shared = db.kind == "postgres"
        self._deliver_lock = threading.Lock()
        self._listener: Any = None
        self._lease: Any = db.try_lock(retention.LEASE_KEY) if self._shared else None
        self._stopped = False

    # -- lifecycle --------------------------------------------------------------------------------

    @property
    def retains_all(self) -> bool:
        return self.retention_seconds <= 0 and self.retention_count <= 0

    def start(self) -> None:
        self._stopped = False  # a restart (the watcher's stop() then start()) takes publishers' streams again
        if not self.retains_all:
            self._compactor.start()
        if self._shared and self._listener is None:
            self._listener = self.db.listen([NOTIFY_CHANNEL], self._catch_up)

    def stop(self) -> None:
        """Stop compaction and end every open subscription with a resume point (Closed)."""
        self._stopped = True
        self._compactor.stop()
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
        if self._lease is not None:
            self._lease.close()
        self._broadcaster.close_all()

    def check(self) -> None:
        self.store.newest()
        if not self.retains_all and not self._compactor.alive:
            raise RuntimeError("the event compaction thread is not running")
        if self._compactor.last_error is not None:
            raise RuntimeError(f"event compaction failed: {self._compactor.last_error}")

    @property
    def stopped(self) -> bool:
        """Stopped (the server is stopping, or the component restarting): a publisher's stream ends rather
        than take more (`stop()`; `start()` clears it)."""
        return self._stopped

    @property
    def subscriber_count(self) -> int:
        return self._broadcaster.subscriber_count

    def details(self) -> dict[str, Any]:
        """For GetHealth; "subscribers" also feeds the voltorch.subscribers gauge."""
        return {
            "subscribers": self.subscriber_count,
            "head_sequence": self.last_sequence(),
            "oldest_sequence": self.oldest_available(),
        }

    # -- publishing -------------------------------------------------------------------------------

    def append(self, tx: Tx, events: Iterable[NewEvent | Prepared], *, numbered: bool = False) -> list[Event]:
        """Append events inside the caller's transaction; subscribers see them after commit.

        Raises InvalidArgument before writing anything when an event is malformed (the caller's
        transaction then rolls back). A repeated id yields the original event, appending nothing.
        A `Prepared` event (a component's own, already valid) is appended as it is, with its trace.

        On PostgreSQL, in a transaction that has not locked the head (the engines', state writes), the
        events are numbered just before COMMIT, in one statement that locks the head only then (so no
        transaction waits for this one's other statements): the events returned here carry sequence 0
        until the transaction has committed, and then their sequence and time (the same objects, numbered
        before subscribers are offered them). `numbered`: the caller reads their sequences inside its
        transaction (the error log keeps an error's with it): they are appended now, the head locked
        until COMMIT, so the caller must take no Python lock before its COMMIT (storage/_serial_writes.py).
        An id looked up there (a repeat, a cause) is read without the head locked: an id repeated by a
        concurrent transaction fails this one at COMMIT (the unique index), rather than yield the original.
        """
        prepared = [ev if isinstance(ev, Prepared) else prepare(ev) for ev in events]
        if (
            not self.store.explicit_ids
            and prepared
            and self.db.owns(tx)
            and not any(map(_reads_log, prepared))
        ):
            return self._append_new(tx.unwritten or self._unwritten(tx), prepared)  # SQLite, nothing to read
        if not self.db.owns(tx):
            # A transaction on another database: a component still on its replica's own SQLite file
            # while the log is on PostgreSQL (coordination and workflows, until they move there too).
            # Its events are appended now, in their own transaction, so the caller has their sequences;
            # should the caller's transaction roll back, they stay (the log says more, never less).
            return [r.event for r in self._append_own(prepared)]
        # The events without a Receipt each (a frozen dataclass): a workflow step appends ~6.
        slots, new = self._append_slots(tx, prepared, numbered)
        return [k.event if isinstance(k, Receipt) else new[k[0]] for k in slots]

    def publish(self, *events: NewEvent) -> list[Event]:
        """Append events in their own transaction; returns them with their sequences."""
        return [r.event for r in self._append_own([prepare(ev) for ev in events])]

    def _append_own(self, prepared: list[Prepared]) -> list[Receipt]:
        """Append `prepared` atomically in a transaction of their own: on PostgreSQL one statement when
        nothing must be read first (`_append_alone`), else the counter row locked with BEGIN."""
        if self._shared and not any(_reads_log(p) for p in prepared):
            return self._append_alone(prepared) if prepared else []
        with self.db.write(lock=self.store.head_counter if self._shared else None) as tx:
            return self._append_prepared(tx, prepared)

    def emit(self, type: str, data: Any = None, **kw: Any) -> Event:
        """Shorthand for components: publish one event."""
        return self.publish(NewEvent(type=type, data=data, **kw))[0]

    def publish_one(self, event: NewEvent, *, field: str = "event") -> Receipt:
        """Publish one event; errors name fields under `field` (e.g. 'event.type').

        Concurrent calls share one transaction and one COMMIT (`storage/_group_commit`): under load a
        commit, its GIL hand-offs and its wake-up of subscribers are paid once for many publishes."""
        prepared = prepare(event, f"{field}." if field else "")
        if prepared.trace is None:  # the caller's trace: another caller's thread may write the batch
            prepared.trace = current_trace()  # (a new object of this call's: set in place)
        return self._group.submit(prepared, len(prepared.data_json))

    def _publish_group(self, take: Take) -> None:
        if not self._shared:
            # The writer lock first (re-entrant: write() takes it again), so callers queueing while it is
            # taken join this batch.
            with self.db.writer_lock:
                ops = take()
                if self._last_time is not None and not any(_reads_log(p.op) for p in ops):
                    # Nothing to read first: the batch is one INSERT and its own transaction (one sqlite
                    # call instead of four: BEGIN, the head, the rows, COMMIT).
                    self._insert_alone(ops)
                    return
                with self.db.write() as tx:
                    while ops:
                        self._append_ops(tx, ops)
                        ops = take()
            return
        ops = take()
        if not any(_reads_log(p.op) for p in ops):
            # PostgreSQL, nothing to read first: the batch is one statement and its own transaction (one
            # round trip). Callers queueing meanwhile form the next batch.
            for p, receipt in zip(ops, self._append_alone([p.op for p in ops]), strict=True):
                p.result = receipt
            return
        # An id to look up under the lock (a repeat yields the original): wait for the events counter row
        # first (locked with BEGIN, one round trip), as SQLite waits for its writer lock, so the callers
        # queueing meanwhile join this batch.
        with self.db.write(lock=self.store.head_counter) as tx:
            while ops:
                self._append_ops(tx, ops)
                ops = take()

    def _insert_alone(self, ops: list[Pending]) -> None:
        for p, receipt in zip(ops, self._insert_prepared([p.op for p in ops]), strict=True):
            p.result = receipt

    def _insert_prepared(self, prepared: list[Prepared]) -> list[Receipt]:
        """SQLite, under the writer lock: append `prepared` (none reads the log) in one INSERT that is its
        own transaction, numbered by AUTOINCREMENT; delivered under the writer lock once committed."""
        _, rows, priorities = self._rows(None, prepared, None)  # each a new row, in order
        assert self._last_time is not None
        now = max(self.clock(), self._last_time)

        def committed(last: int) -> list[Event]:
            new = _events(range(last - len(rows) + 1, last + 1), rows, priorities, now)
            self._deliver(new, now)
            return new

        return [Receipt(e) for e in self.store.insert_alone(rows, now, committed)]

    def publish_each(
        self, events: Sequence[NewEvent], *, field: str = "event"
    ) -> list[Receipt | InvalidArgument]:
        """Publish events one by one as publish_one does, committed together: per event its receipt, or
        the InvalidArgument that refused it (errors name fields under `field`; nothing of a refused event
        is written, the others are). A publisher's stream hands in what arrived together: one COMMIT (one
        INSERT on SQLite when no event reads the log) and one wake-up of subscribers for all of them."""
        prefix = f"{field}." if field else ""
        outcome: list[Receipt | InvalidArgument | int] = []
        prepared: list[Prepared] = []
        for ev in events:
            try:
                p = prepare(ev, prefix)
            except InvalidArgument as exc:
                outcome.append(exc)
                continue
            outcome.append(len(prepared))
            prepared.append(p)
        receipts: list[Receipt] = []
        for i in range(0, len(prepared), MAX_BATCH):
            receipts += self._commit_together(prepared[i : i + MAX_BATCH])
        return [receipts[k] if isinstance(k, int) else k for k in outcome]

    def _commit_together(self, prepared: list[Prepared]) -> list[Receipt]:
        """Append `prepared` atomically in a transaction of their own, the cheapest way the log allows."""
        if not self._shared and not any(map(_reads_log, prepared)):
            with self.db.writer_lock:
                if self._last_time is not None:
                    return self._insert_prepared(prepared)
        return self._append_own(prepared)

    def _append_ops(self, tx: Tx, ops: list[Pending]) -> None:
        for p, receipt in zip(ops, self._append_prepared(tx, [p.op for p in ops]), strict=True):
            p.result = receipt

    def publish_batch(self, events: Sequence[NewEvent], *, field: str = "events") -> list[Receipt]:
        """Publish 1..1000 events atomically with consecutive sequences, in order; errors name the index."""
        if not events:
            raise InvalidArgument(field, "a batch needs at least one event")
        if len(events) > MAX_BATCH:
            raise InvalidArgument(field, f"at most {MAX_BATCH} events per batch (got {len(events)})")
        return self._append_own([prepare(ev, f"{field}[{i}].") for i, ev in enumerate(events)])

    def _append_prepared(self, tx: Tx, prepared: list[Prepared], numbered: bool = False) -> list[Receipt]:
        slots, new = self._append_slots(tx, prepared, numbered)
        return [k if isinstance(k, Receipt) else Receipt(new[k[0]], duplicate=k[1]) for k in slots]

    def _append_slots(
        self, tx: Tx, prepared: list[Prepared], numbered: bool = False
    ) -> tuple[list[Receipt | tuple[int, bool]], list[Event]]:
        """Append `prepared` in `tx`: per event, the receipt of one already in the log or (the index of its
        new event, whether it repeats an id earlier in this batch); and the new events."""
        if not prepared:
            return [], []
        store = self.store
        explicit = store.explicit_ids
        pending: _Unwritten | None = tx.unwritten
        if explicit and (numbered or store.holds_head(tx)):
            if pending is not None:  # appended earlier in this transaction: written first, numbered first
                self._write_unwritten(tx, pending)
            return self._append_locked(tx, prepared)
        # The transaction's events are inserted together just before its COMMIT (a workflow step appends ~7
        # in five calls: one statement instead of seven). SQLite numbers them now (its writer lock keeps the
        # head ours); PostgreSQL in that statement, which locks the head from there to COMMIT only.
        if pending is None:
            pending = self._unwritten(tx)
        slots, rows, priorities = self._rows(tx, prepared, pending)
        if explicit:
            now = self.clock()  # the events' time, and their sequences, are the append's at COMMIT
            seqs: Iterable[int] = [0] * len(rows)
        else:
            assert self._last_time is not None
            now = max(self.clock(), self._last_time, pending.now)
            seqs = range(pending.head + 1, pending.head + 1 + len(rows))
        new = _events(seqs, rows, priorities, now)
        if new:
            if explicit:
                pending.rows.extend(rows)
            else:
                pending.head += len(rows)
                pending.now = now
                pending.rows.extend((s, *row, now) for s, row in zip(seqs, rows, strict=True))
            pending.events.extend(new)
            pending.by_id.update((e.id, e) for e in new)
        return slots, new

    def _unwritten(self, tx: Tx) -> _Unwritten:
        """The transaction's first append: its events are written just before its COMMIT, delivered after."""
        store = self.store
        pending = tx.unwritten = _Unwritten(0 if store.explicit_ids else store.lock_head(tx))
        tx.before_commit(partial(self._write_unwritten, tx, pending))
        tx.after_commit(partial(self._deliver_unwritten, pending))
        if not store.explicit_ids and self._last_time is None:
            self._last_time = store.last_time_in(tx)
        return pending

    def _append_new(self, pending: _Unwritten, prepared: list[Prepared]) -> list[Event]:
        """SQLite: events that read nothing from the log (no id, no cause to inherit a correlation from:
        the engines' own, `_reads_log`), as `_append_slots` appends them, their rows and events made in one
        pass. A workflow step appends ~5 times."""
        assert self._last_time is not None  # read by the transaction's first append (`_unwritten`)
        now = max(self.clock(), self._last_time, pending.now)
        seq = pending.head
        rows, events, by_id = pending.rows, pending.events, pending.by_id
        ambient: TraceIds | None = None
        new = []
        for p in prepared:
            ids = p.trace
            if ids is None:
                ids = ambient = ambient or current_trace()
            seq += 1
            eid = new_id("evt")
            priority = p.priority
            rows.append(
                (
                    seq,
                    eid,
                    p.type,
                    p.source,
                    p.target,
                    p.data_json,
                    p.correlation_id,
                    p.causation_id,
                    int(priority),
                    ids.traceparent,
                    ids.tracestate,
                    ids.trace_id,
                    ids.span_id,
                    now,
                )
            )
            e = made(
                Event,
                sequence=seq,
                id=eid,
                type=p.type,
                source=p.source,
                target=p.target,
                _data_json=p.data_json,
                correlation_id=p.correlation_id,
                causation_id=p.causation_id,
                priority=priority,
                traceparent=ids.traceparent,
                tracestate=ids.tracestate,
                trace_id=ids.trace_id,
                span_id=ids.span_id,
                time=now,
            )
            new.append(e)
            by_id[eid] = e
        pending.head, pending.now = seq, now
        events.extend(new)
        return new

    def _append_locked(
        self, tx: Tx, prepared: list[Prepared]
    ) -> tuple[list[Receipt | tuple[int, bool]], list[Event]]:
        """PostgreSQL, the head locked with BEGIN (a Publish that reads the log first): the counter row
        stays locked until COMMIT, so sequences are gap-free in commit order across replicas; the rows are
        written now in one statement, which also reads the newest time under the lock (another replica may
        have written), and the callers get their sequences."""
        store = self.store
        seq = store.lock_head(tx)
        slots, rows, priorities = self._rows(tx, prepared, None)
        now = store.append_locked(tx, seq, rows, self.clock(), NOTIFY_CHANNEL) if rows else 0.0
        new = _events(range(seq + 1, seq + 1 + len(rows)), rows, priorities, now)
        if new:
            tx.after_commit(lambda: self._catch_up(mine=new))
        return slots, new

    def _append_alone(self, prepared: list[Prepared]) -> list[Receipt]:
        """PostgreSQL: append events that need nothing read from the log (`_reads_log` false for each) in
        one statement that is its own transaction (`append_alone`); this replica's subscribers hear them
        once it has committed."""
        _, rows, priorities = self._rows(None, prepared, None)  # no ids: each event is a new row, in order
        head, now = self.store.append_alone(rows, self.clock(), NOTIFY_CHANNEL)
        new = _events(range(head + 1, head + 1 + len(rows)), rows, priorities, now)
        self._catch_up(mine=new)
        return [Receipt(e) for e in new]

    def _rows(
        self, tx: Tx | None, prepared: list[Prepared], pending: _Unwritten | None
    ) -> tuple[list[Receipt | tuple[int, bool]], list[tuple], list[Priority]]:
        """The new rows of `prepared`, in the order of the store's COLUMNS without seq and time, with their
        priorities, and per event: the receipt of an event already in the log, else (the index of its new
        row, whether it repeats an id earlier in this batch). Looks ids up through `tx`, which only events
        that `_reads_log` need."""
        ambient: TraceIds | None = None
        slots: list[Receipt | tuple[int, bool]] = []
        in_batch: dict[str, int] = {}  # id -> index of its new row
        rows: list[tuple] = []
        priorities: list[Priority] = []
        for p in prepared:
            if p.id:
                earlier = in_batch.get(p.id)
                if earlier is not None:
                    slots.append((earlier, True))
                    continue
                found = self._logged(tx, p.id, pending)
                if found is not None:
                    slots.append(Receipt(found, duplicate=True))
                    continue
            correlation_id = p.correlation_id
            if not correlation_id and p.causation_id:
                local = in_batch.get(p.causation_id)
                if local is not None:
                    correlation_id = rows[local][5]
                else:
                    cause = self._logged(tx, p.causation_id, pending)
                    correlation_id = cause.correlation_id if cause is not None else ""
            if p.trace is None and ambient is None:
                ambient = current_trace()
            ids = p.trace or ambient
            assert ids is not None
            eid = p.id or new_id("evt")
            in_batch[eid] = len(rows)
            slots.append((len(rows), False))
            priorities.append(p.priority)
            rows.append(
                (
                    eid,
                    p.type,
                    p.source,
                    p.target,
                    p.data_json,
                    correlation_id,
                    p.causation_id,
                    int(p.priority),
                    ids.traceparent,
                    ids.tracestate,
                    ids.trace_id,
                    ids.span_id,
                )
            )
        return slots, rows, priorities

    def _logged(self, tx: Tx | None, event_id: str, pending: _Unwritten | None) -> Event | None:
        """The event with this id in the log, or appended earlier in this transaction and not written yet."""
        found = pending.by_id.get(event_id) if pending is not None else None
        return found if found is not None else self.store.by_id_in(tx, event_id)

    def _write_unwritten(self, tx: Tx, pending: _Unwritten) -> None:
        """Just before COMMIT. On PostgreSQL this statement locks the head, held to COMMIT: nothing here
        may take a Python lock (storage/_serial_writes.py says why); the events are numbered after."""
        tx.unwritten = None
        rows, pending.rows = pending.rows, []  # written once (also when a numbered append came first)
        if not rows:
            return
        if self.store.explicit_ids:
            pending.head, pending.now = self.store.append_at_commit(tx, rows, self.clock(), NOTIFY_CHANNEL)
        else:
            self.store.insert_numbered(tx, rows)

    def _deliver_unwritten(self, pending: _Unwritten) -> None:
        # Only after commit (never on rollback) does the clamp advance and do subscribers hear.
        if not pending.events:
            return
        if self.store.explicit_ids:
            for seq, e in enumerate(pending.events, pending.head + 1):  # the events the callers got back
                d = e.__dict__
                d["sequence"], d["time"] = seq, pending.now
            self._catch_up(mine=pending.events)
        else:
            self._deliver(pending.events, pending.now)

    def _catch_up(self, head: int | None = None, mine: list[Event] | None = None) -> None:
        """PostgreSQL: offer every committed event past the last delivered one to this replica's
        subscribers, in sequence order, read by position. `mine`, just committed here, is delivered as it
        is when it is next in line: no read needed. `head` is a NOTIFY's payload (None: read anyway,
        e.g. after a reconnect): it is never trusted for content, only to skip the read when this
        replica has already delivered that commit (its own, or one an earlier read took in)."""
        with self._deliver_lock:
            if mine:
                if mine[-1].sequence <= self._delivered:
                    return
                if mine[0].sequence == self._delivered + 1:
                    self._deliver(mine, mine[-1].time)
                    return
            elif head is not None and head <= self._delivered:
                return
            while True:
                events = self.store.after(self._delivered, MAX_BATCH)
                if not events:
                    # Compaction may have removed what was never delivered here: move past it.
                    self._delivered = max(self._delivered, self.oldest_available() - 1)
                    return
                self._deliver(events, events[-1].time)
                if len(events) < MAX_BATCH:  # everything committed when it was read
                    return

    def _deliver(self, events: list[Event], now: float) -> None:
        # Runs under the database's writer lock, right after commit: delivery is in sequence order.
        self._last_time = now
        self._broadcaster.publish(events)
        self._delivered = events[-1].sequence
        for listener in self._listeners:
            for e in events:
                try:
                    listener(e)
                except Exception:  # a listener's bug must not break publishing
                    pass

    # -- in-process reading -----------------------------------------------------------------------

    def add_listener(self, fn: Callable[[Event], None]) -> None:
        """Call fn for every committed event, synchronously (keep it quick; never blocks publishers long)."""
        with self._listeners_lock:
            self._listeners = [*self._listeners, fn]

    def remove_listener(self, fn: Callable[[Event], None]) -> None:
        with self._listeners_lock:
            self._listeners = [f for f in self._listeners if f is not fn]

    def last_sequence(self) -> int:
        """The newest sequence ever assigned (0 for an empty log), compacted or not."""
        return self.store.head()

    @property
    def delivered_sequence(self) -> int:
        """Every event up to this sequence has been offered to subscribers."""
        return self._delivered

    def oldest_available(self) -> int:
        return self.store.floor().oldest_available

    def _snapshot(self) -> Any:
        """A connection whose reads all see one committed state (compaction cannot slip in between)."""
        return self.db.snapshot()

    def get(self, event_id: str) -> Event:
        event = self.store.get(event_id)
        if event is None:
            raise NotFound("event", event_id)
        return event

    def read_after(self, after: int, limit: int, flt: EventFilter | None = None) -> list[Event]:
        """Up to `limit` events with sequence > after matching flt, in order.

        OUT_OF_RANGE when events after `after` were compacted (the reader would silently miss them).
        """
        with self._snapshot() as conn:
            self.store.floor(conn).check_sequence(after + 1, "from_sequence")
            return self.store.matching_after(conn, after, flt, limit)

    def start_position(self, *, from_sequence: int | None = None, from_time: float | None = None) -> int:
        """The `after` (exclusive) a subscription starting there needs; validates and checks retention.

        Neither given = live only: after the newest event now.
        """
        if from_sequence is not None and from_time is not None:
            raise InvalidArgument("from_time", "give from_sequence or from_time, not both")
        if from_sequence is not None:
            if from_sequence < 1:
                raise InvalidArgument("from_sequence", f"must be >= 1 (got {from_sequence})")
            self.store.floor().check_sequence(from_sequence, "from_sequence")
            return from_sequence - 1
        if from_time is not None:
            self.store.floor().check_time(from_time, "from_time")
            seq = self.store.first_at(from_time)
            return seq - 1 if seq is not None else self.last_sequence()
        return self.last_sequence()

    def subscribe(
        self,
        flt: EventFilter | None = None,
        *,
        after: int | None = None,
        from_sequence: int | None = None,
        from_time: float | None = None,
        capacity: int | None = None,
    ) -> Follower[Event]:
        """Follow matching events: replayed from the log, then live, without a gap or a duplicate.

        Start after sequence `after` (exclusive), at `from_sequence` (inclusive), at the first event
        with time >= `from_time`, or (none given) with the next event published.
        """
        if after is None:
            after = self.start_position(from_sequence=from_sequence, from_time=from_time)
        elif after < 0:
            raise InvalidArgument("after", f"must not be negative (got {after})")
        return self._follower(flt or EventFilter(), after, capacity)

    def follow_new(self, flt: EventFilter) -> Follower[Event]:
        """Follow matching events offered from now on, reading nothing from the log: for a caller that
        subscribes before the events it wants are written (a run's own events, its start still to commit)."""
        return self._follower(flt, None, None)

    def _follower(self, flt: EventFilter, after: int | None, capacity: int | None) -> Follower[Event]:
        keys = _exact_types(flt)
        # Offered only events of its exact types (the broadcaster routes them by type), a follower is asked
        # about the rest of its filter only: no type patterns per event (a WatchExecution waiting for the
        # end checks its correlation id, not four regexes, for every execution's terminal event), and
        # nothing at all when the types are all it asks.
        rest = replace(flt, types=()) if keys is not None else flt
        return Follower(
            self._broadcaster,
            match=None if rest == EventFilter() else rest.matches,
            replay=lambda a, n: self.read_after(a, n, flt),
            position=_sequence,
            after=after,
            capacity=capacity or self.subscriber_buffer,
            keys=keys,
        )

    # -- listing ----------------------------------------------------------------------------------

    def list(
        self,
        flt: EventFilter | None = None,
        *,
        page_size_: int = 0,
        page_token: str = "",
        descending: bool = False,
        start_sequence: int = 0,
        end_sequence: int = 0,
        start_time: float | None = None,
        end_time: float | None = None,
    ) -> EventPage:
        """One page of the log, ascending by sequence (or descending), with the subscription filter."""
        flt = flt or EventFilter()
        size = page_size(page_size_)
        if start_sequence < 0:
            raise InvalidArgument("start_sequence", f"must not be negative (got {start_sequence})")
        if end_sequence < 0:
            raise InvalidArgument("end_sequence", f"must not be negative (got {end_sequence})")
        query = {
            "f": flt.key(),
            "desc": descending,
            "seq": [start_sequence, end_sequence],
            "time": [start_time, end_time],
        }
        position = decode_token(page_token, query, shape=is_count)
        with self._snapshot() as conn:
            floor = self.store.floor(conn)
            if start_sequence and position is None:
                floor.check_sequence(start_sequence, "start_sequence")
            if position is not None and not descending:
                floor.check_sequence(position + 1, "page_token")
            rows, head = self.store.page(
                conn,
                flt,
                start_sequence=start_sequence,
                end_sequence=end_sequence,
                start_time=start_time,
                end_time=end_time,
                position=position,
                descending=descending,
                limit=size + 1,
            )
        events = rows[: fitting(wire_bytes(_compact(e.data)) for e in rows[:size])]
        token = encode_token(query, events[-1].sequence) if len(rows) > len(events) else ""
        return EventPage(events, token, head)

    def carrying(self, trace_ids: set[str], correlation_ids: set[str], limit: int) -> builtins.list[Event]:
        """Events carrying any of the trace or correlation ids, by sequence (GetTrace's timeline)."""
        return self.store.carrying(trace_ids, correlation_ids, limit)

    def correlation(self, correlation_id: str, max_events: int = 0) -> Correlation:
        """Every event of a correlation in causal order (causes before effects; ties by sequence)."""
        if not correlation_id:
            raise InvalidArgument("correlation_id", "required", reason="FIELD_REQUIRED")
        if len(correlation_id) > 256:
            raise InvalidArgument("correlation_id", "at most 256 characters")
        if max_events < 0:
            raise InvalidArgument("max_events", f"must not be negative (got {max_events})")
        limit = min(max_events or DEFAULT_CORRELATION_EVENTS, MAX_CORRELATION_EVENTS)
        rows = self.store.of_correlation(correlation_id, limit + 1)
        if not rows:
            raise NotFound("correlation", correlation_id, f"no event has correlation id {correlation_id!r}")
        # No pages here: what fits one answer (3 MiB of data and per-event overhead), then truncated.
        kept = fitting((wire_bytes(_compact(e.data)) + 256 for e in rows[:limit]), budget=3 * PAGE_BYTES)
        nodes = causal_order(rows[:kept])
        return Correlation(nodes, [n.event.id for n in nodes if not n.parent_id], len(rows) > kept)

    # -- retention --------------------------------------------------------------------------------

    def _compact_if_leader(self) -> int:
        """Compaction on one replica at a time: the one holding the lease (PostgreSQL), else this one."""
        if self._lease is not None and not self._lease.held():
            return 0
        return self.compact()

    def compact(self, now: float | None = None) -> int:
        """Drop events beyond the configured retention; returns how many. Safe beside readers."""
        return self.store.compact(
            now=self.clock() if now is None else now,
            max_age=self.retention_seconds,
            max_count=self.retention_count,
        )
