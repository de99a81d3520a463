"""What the event log needs from storage, in its own terms: rows in, events out.

Implemented once for SQLite and PostgreSQL by `storage.stores.SqlEvents`; the app builds it and hands it
to `EventLog`. `tx` is the caller's write transaction; `conn` a connection of `db.snapshot()`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from ._filter import EventFilter
from ._retention import Floor

if TYPE_CHECKING:
    from ._log import Event


class EventsPort(Protocol):
    db: Any  # the database it reads and the log writes through (`write()`, `listen`, `try_lock`)
    explicit_ids: bool  # sequences come from `lock_head` (PostgreSQL), not from the database's insert
    head_counter: str  # the counter `lock_head` locks; `db.write(lock=…)` locks it with BEGIN (PostgreSQL)

    # in a write transaction
    def lock_head(self, tx: Any) -> int: ...
    def append_locked(self, tx: Any, head: int, rows: list[tuple], now: float, channel: str) -> float: ...
    def last_time_in(self, tx: Any) -> float: ...
    def insert_numbered(self, tx: Any, rows: list[tuple]) -> None: ...
    def by_id_in(self, tx: Any, event_id: str) -> Event | None: ...

    # PostgreSQL, outside any transaction: the append is its own (one statement)
    def append_alone(self, rows: list[tuple], now: float, channel: str) -> tuple[int, float]: ...

    # reads
    def head(self) -> int: ...
    def newest(self) -> int | None: ...
    def after(self, seq: int, limit: int) -> list[Event]: ...
    def get(self, event_id: str) -> Event | None: ...
    def floor(self, conn: Any = None) -> Floor: ...
    def first_at(self, when: float) -> int | None: ...
    def matching_after(self, conn: Any, after: int, flt: EventFilter | None, limit: int) -> list[Event]: ...
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
    ) -> tuple[list[Event], int]: ...
    def of_correlation(self, correlation_id: str, limit: int) -> list[Event]: ...
    def carrying(self, trace_ids: set[str], correlation_ids: set[str], limit: int) -> list[Event]: ...

    # retention (in its own transactions)
    def compact(self, *, now: float, max_age: float, max_count: int) -> int: ...
