"""The event log: the communication backbone every component publishes through.

Events are appended to SQLite with a monotonic sequence and then offered to in-process subscribers
(the gRPC Subscribe stream is one of them). Appending inside another component's write transaction
(`append(tx, ...)`) makes "write + its event" atomic.
"""

from __future__ import annotations

import fnmatch
import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .._ids import new_id
from ..errors import InvalidArgument
from ..priority import Priority
from ..storage import Database, Tx
from ..telemetry import current_trace, trace_ids_from
from ._base import Component
from ._follow import Broadcaster, Follower

MAX_TYPE_LEN = 256
_TYPE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


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


@dataclass
class NewEvent:
    """An event to publish; the log assigns sequence, id (unless given), time and trace ids."""

    type: str
    source: str = ""
    target: str = ""
    data: Any = None
    correlation_id: str = ""
    causation_id: str = ""
    priority: Priority | int = Priority.NORMAL
    traceparent: str = ""
    tracestate: str = ""
    id: str = ""


@dataclass(frozen=True)
class EventFilter:
    """Which events a subscriber or a listing wants. Empty fields match everything."""

    types: tuple[str, ...] = ()
    source: str = ""
    target: str = ""
    correlation_id: str = ""
    min_priority: Priority | int = 0
    _type_res: tuple[re.Pattern, ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        pats = []
        for i, glob in enumerate(self.types):
            validate_glob(glob, f"filter.types[{i}]")
            pats.append(re.compile(fnmatch.translate(glob)))
        object.__setattr__(self, "_type_res", tuple(pats))

    def matches(self, e: Event) -> bool:
        if self._type_res and not any(p.match(e.type) for p in self._type_res):
            return False
        if self.source and e.source != self.source:
            return False
        if self.target and e.target != self.target:
            return False
        if self.correlation_id and e.correlation_id != self.correlation_id:
            return False
        return not (self.min_priority and e.priority < self.min_priority)


def validate_glob(glob: str, field_name: str) -> None:
    if not glob or len(glob) > MAX_TYPE_LEN:
        raise InvalidArgument(field_name, "a type glob must be 1..256 characters")
    if not re.fullmatch(r"[A-Za-z0-9_.\-*?]+", glob):
        raise InvalidArgument(
            field_name, f"malformed type glob {glob!r}: use letters, digits, '.', '_', '-', '*' and '?'"
        )


def _row_to_event(row: Any) -> Event:
    return Event(
        sequence=row["seq"],
        id=row["id"],
        type=row["type"],
        source=row["source"],
        target=row["target"],
        data=json.loads(row["data"]),
        correlation_id=row["correlation_id"],
        causation_id=row["causation_id"],
        priority=Priority(row["priority"]),
        traceparent=row["traceparent"],
        tracestate=row["tracestate"],
        trace_id=row["trace_id"],
        span_id=row["span_id"],
        time=row["time"],
    )


class EventLog(Component):
    name = "events"

    def __init__(self, db: Database, *, subscriber_buffer: int = 1000):
        self.db = db
        self.subscriber_buffer = subscriber_buffer
        self._broadcaster: Broadcaster[Event] = Broadcaster()
        self._listeners: list[Callable[[Event], None]] = []

    # -- publishing -----------------------------------------------------------------------------

    def _validate(self, ev: NewEvent, field_prefix: str = "") -> None:
        if not ev.type:
            raise InvalidArgument(f"{field_prefix}type", "an event needs a type")
        if len(ev.type) > MAX_TYPE_LEN or not _TYPE_RE.match(ev.type):
            raise InvalidArgument(f"{field_prefix}type", f"malformed event type {ev.type!r}")
        try:
            Priority.of(ev.priority)
        except ValueError:
            raise InvalidArgument(f"{field_prefix}priority", f"unknown priority {ev.priority!r}") from None

    def append(self, tx: Tx, events: Iterable[NewEvent]) -> list[Event]:
        """Append events inside the caller's transaction; subscribers see them after commit."""
        out: list[Event] = []
        now = time.time()
        ambient = current_trace()
        for ev in events:
            self._validate(ev)
            ids = trace_ids_from(ev.traceparent, ev.tracestate) if ev.traceparent else ambient
            data = json.dumps(ev.data if ev.data is not None else {}, separators=(",", ":"))
            eid = ev.id or new_id("evt")
            cur = tx.execute(
                "INSERT INTO events(id, type, source, target, data, correlation_id, causation_id, priority,"
                " traceparent, tracestate, trace_id, span_id, time) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    eid,
                    ev.type,
                    ev.source,
                    ev.target,
                    data,
                    ev.correlation_id,
                    ev.causation_id,
                    int(Priority.of(ev.priority)),
                    ids.traceparent,
                    ids.tracestate,
                    ids.trace_id,
                    ids.span_id,
                    now,
                ),
            )
            out.append(
                Event(
                    sequence=cur.lastrowid,
                    id=eid,
                    type=ev.type,
                    source=ev.source,
                    target=ev.target,
                    data=json.loads(data),
                    correlation_id=ev.correlation_id,
                    causation_id=ev.causation_id,
                    priority=Priority.of(ev.priority),
                    traceparent=ids.traceparent,
                    tracestate=ids.tracestate,
                    trace_id=ids.trace_id,
                    span_id=ids.span_id,
                    time=now,
                )
            )
        tx.after_commit(lambda: self._deliver(out))
        return out

    def publish(self, *events: NewEvent) -> list[Event]:
        """Append events in their own transaction; returns them with their sequences."""
        with self.db.write() as tx:
            return self.append(tx, events)

    def emit(self, type: str, data: Any = None, **kw: Any) -> Event:
        """Shorthand for components: publish one event."""
        return self.publish(NewEvent(type=type, data=data, **kw))[0]

    def _deliver(self, events: list[Event]) -> None:
        self._broadcaster.publish(events)
        for listener in self._listeners:
            for e in events:
                try:
                    listener(e)
                except Exception:  # a listener's bug must not break publishing
                    pass

    # -- reading ----------------------------------------------------------------------------------

    def add_listener(self, fn: Callable[[Event], None]) -> None:
        """Call fn for every committed event, synchronously (keep it quick; never blocks publishers long)."""
        self._listeners.append(fn)

    def last_sequence(self) -> int:
        row = self.db.query_one("SELECT MAX(seq) FROM events")
        return row[0] or 0

    def read_after(self, after: int, limit: int, flt: EventFilter | None = None) -> list[Event]:
        rows = self.db.query("SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit))
        events = [_row_to_event(r) for r in rows]
        if flt is None:
            return events
        # Filtering in Python keeps glob semantics identical to live delivery; skip whole pages that
        # match nothing so a selective replay still makes progress.
        out = [e for e in events if flt.matches(e)]
        while not out and len(events) == limit:
            after = events[-1].sequence
            events = [
                _row_to_event(r)
                for r in self.db.query(
                    "SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
                )
            ]
            out = [e for e in events if flt.matches(e)]
        return out

    def subscribe(
        self, flt: EventFilter | None = None, *, after: int | None = None, capacity: int | None = None
    ) -> Follower[Event]:
        """Follow events after sequence `after` (replayed from the log), then live."""
        flt = flt or EventFilter()
        return Follower(
            self._broadcaster,
            match=flt.matches,
            replay=lambda a, n: self.read_after(a, n, flt),
            position=lambda e: e.sequence,
            after=after,
            capacity=capacity or self.subscriber_buffer,
        )

    def stop(self) -> None:
        self._broadcaster.close_all()
