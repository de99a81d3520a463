"""Replay-then-follow over an append-only table, shared by state Watch and event Subscribe.

A `Broadcaster` fans committed records out to bounded per-subscriber queues: publishing never blocks,
and a subscriber whose queue is full is marked overflowed instead of slowing anyone. A `Follower`
registers for live records *before* replaying from the table, then drops live records it already
replayed, so the seam between history and live has neither a gap nor a duplicate.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


class Overflow(Exception):
    """The subscriber fell behind its buffer; resume from `resume_from` (inclusive) loses nothing."""

    def __init__(self, resume_from: int):
        super().__init__(f"subscriber fell behind; resume from {resume_from}")
        self.resume_from = resume_from


class Closed(Exception):
    """The source was shut down (e.g. the component restarted); resume from `resume_from`."""

    def __init__(self, resume_from: int):
        super().__init__(f"stream closed by the server; resume from {resume_from}")
        self.resume_from = resume_from


_CLOSED = object()


class _Sub(Generic[T]):
    __slots__ = ("match", "queue", "overflowed", "closed")

    def __init__(self, match: Callable[[T], bool], capacity: int):
        self.match = match
        self.queue: queue.Queue = queue.Queue(maxsize=capacity)
        self.overflowed = False
        self.closed = False


class Broadcaster(Generic[T]):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: list[_Sub[T]] = []

    def register(self, match: Callable[[T], bool], capacity: int) -> _Sub[T]:
        sub: _Sub[T] = _Sub(match, capacity)
        with self._lock:
            self._subs = [*self._subs, sub]
        return sub

    def unregister(self, sub: _Sub[T]) -> None:
        with self._lock:
            self._subs = [s for s in self._subs if s is not sub]

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)

    def publish(self, items: Iterable[T]) -> None:
        """Offer committed items to every subscriber; never blocks."""
        subs = self._subs
        if not subs:
            return
        for item in items:
            for sub in subs:
                if sub.overflowed or sub.closed or not sub.match(item):
                    continue
                try:
                    sub.queue.put_nowait(item)
                except queue.Full:
                    sub.overflowed = True

    def close_all(self) -> None:
        """Wake every subscriber with a 'closed' signal (they resume elsewhere or reconnect)."""
        with self._lock:
            subs, self._subs = self._subs, []
        for sub in subs:
            sub.closed = True
            try:
                sub.queue.put_nowait(_CLOSED)
            except queue.Full:
                pass


class Follower(Generic[T]):
    """Iterate records after `after` (exclusive): first from `replay`, then live from the broadcaster.

    `replay(after, limit)` returns up to `limit` matching records with position > after, in order.
    `position(record)` gives the record's monotonic position (sequence / history id).
    Call `get(timeout)` in a loop; it returns None on timeout so callers can notice cancellation.
    """

    def __init__(
        self,
        broadcaster: Broadcaster[T],
        *,
        match: Callable[[T], bool],
        replay: Callable[[int, int], list[T]] | None,
        position: Callable[[T], int],
        after: int | None,
        capacity: int,
        batch: int = 500,
    ):
        self._b = broadcaster
        self._match = match
        self._replay = replay
        self._position = position
        self._capacity = capacity
        self._batch = batch
        self._sub = broadcaster.register(match, capacity)
        self._pending: list[T] = []
        self._replaying = after is not None and replay is not None
        self.last = after if after is not None else -1

    def _refill_from_log(self) -> None:
        assert self._replay is not None
        while True:
            batch = self._replay(self.last, self._batch)
            if batch:
                self._pending = batch
                return
            if self._sub.overflowed:
                # The live queue overflowed while we replayed a long backlog: start live again and
                # replay what we missed; the log has it.
                self._b.unregister(self._sub)
                self._sub = self._b.register(self._match, self._capacity)
                continue
            self._replaying = False
            return

    def get(self, timeout: float | None = None) -> T | None:
        while True:
            if self._pending:
                item = self._pending.pop(0)
                self.last = self._position(item)
                return item
            if self._replaying:
                self._refill_from_log()
                if self._pending:
                    continue
            if self._sub.overflowed and self._sub.queue.empty():
                raise Overflow(self.last + 1)
            try:
                item = self._sub.queue.get(timeout=timeout)
            except queue.Empty:
                if self._sub.overflowed:
                    raise Overflow(self.last + 1) from None
                return None
            if item is _CLOSED:
                raise Closed(self.last + 1)
            pos = self._position(item)
            if pos <= self.last:
                continue  # already replayed
            self.last = pos
            return item

    def caught_up(self) -> bool:
        """True when nothing matched is waiting: every live record offered so far has been returned."""
        return not self._pending and not self._replaying and not self._sub.overflowed and self._sub.queue.empty()

    def close(self) -> None:
        self._b.unregister(self._sub)

    def __enter__(self) -> Follower[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
