"""Replay-then-follow over an append-only table, shared by state Watch and event Subscribe.

A `Broadcaster` fans committed records out to bounded per-subscriber buffers: publishing never blocks,
and a subscriber whose buffer is full is marked overflowed instead of slowing anyone. A `Follower`
registers for live records *before* replaying from the table, then drops live records it already
replayed, so the seam between history and live has neither a gap nor a duplicate.

Publishing runs once per commit for every subscriber, so it is kept to plain operations: a buffer is
a `collections.deque` (append and popleft are atomic, no lock), a subscriber is woken through a
`threading.Event` only when it is actually waiting, and subscribers that name exact keys (event types)
are only offered records with those keys.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Hashable, Iterable
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


class _Sub(Generic[T]):
    """One subscriber's bounded buffer. Only the publisher appends (publishes are serialised by the
    caller, e.g. the database's writer lock) and only the follower pops, so len() never exceeds capacity."""

    __slots__ = ("match", "keys", "items", "capacity", "ready", "overflowed", "closed")

    def __init__(self, match: Callable[[T], bool] | None, capacity: int, keys: frozenset | None):
        self.match = match
        self.keys = keys
        self.items: deque[T] = deque()
        self.capacity = max(capacity, 1)  # never unbounded (a 0 would be, with queue.Queue)
        self.ready = threading.Event()  # set when items arrive (or overflow/close) after the follower looked
        self.overflowed = False
        self.closed = False


class Broadcaster(Generic[T]):
    """Offers published records to subscribers. With `key` (e.g. an event's type), a subscriber that
    registers with `keys` is only asked about records whose key is among them."""

    def __init__(self, key: Callable[[T], Hashable] | None = None) -> None:
        self._lock = threading.Lock()
        self._key = key
        self._subs: tuple[_Sub[T], ...] = ()
        # Routes, rebuilt (copy on write) on every register/unregister: subscribers asked about every
        # record, and subscribers by key.
        self._all: tuple[_Sub[T], ...] = ()
        self._by_key: dict[Hashable, tuple[_Sub[T], ...]] = {}

    def register(
        self, match: Callable[[T], bool] | None, capacity: int, keys: Iterable[Hashable] | None = None
    ) -> _Sub[T]:
        """A new subscriber; `keys` (only used when the broadcaster has a key function) narrows which
        records `match` is asked about: a record whose key is not in `keys` never matches. `match`
        None: every record offered matches (e.g. `keys` say all the subscriber wants)."""
        sub: _Sub[T] = _Sub(match, capacity, frozenset(keys) if keys is not None and self._key else None)
        with self._lock:
            self._add_locked(sub)
        return sub

    def unregister(self, sub: _Sub[T]) -> None:
        """Idempotent. The routes change by the one subscriber (copies made in C, not rebuilt from every
        subscriber): streams come and go by the hundred when as many workflows are followed at once."""
        with self._lock:
            if sub in self._subs:
                self._remove_locked(sub)

    def renew(self, sub: _Sub[T]) -> _Sub[T]:
        """A fresh buffer in place of `sub` (which overflowed), asking for the same records; `sub` itself
        when it is no longer subscribed: close_all took it (it is, or is about to be, marked closed), and
        a subscriber that close_all missed would follow a stopped source forever."""
        with self._lock:
            if sub not in self._subs:
                return sub
            self._remove_locked(sub)
            fresh: _Sub[T] = _Sub(sub.match, sub.capacity, sub.keys)
            self._add_locked(fresh)
        return fresh

    # Readers (publish) take the routes without the lock: a subscriber joins the routes before the list of
    # subscribers (publish skips an empty list), and leaves them before it, each route a new copy.

    def _add_locked(self, sub: _Sub[T]) -> None:
        if sub.keys is None:
            self._all = (*self._all, sub)
        else:
            by_key = dict(self._by_key)
            for k in sub.keys:
                by_key[k] = (*by_key.get(k, ()), sub)
            self._by_key = by_key
        self._subs = (*self._subs, sub)

    def _remove_locked(self, sub: _Sub[T]) -> None:
        if sub.keys is None:
            self._all = _without(self._all, sub)
        else:
            by_key = dict(self._by_key)
            for k in sub.keys:
                rest = _without(by_key[k], sub)
                if rest:
                    by_key[k] = rest
                else:
                    del by_key[k]
            self._by_key = by_key
        self._subs = _without(self._subs, sub)

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)

    def publish(self, items: Iterable[T]) -> None:
        """Offer committed items to every subscriber; never blocks. Calls must not overlap."""
        if not self._subs:
            return
        everyone, by_key, key = self._all, self._by_key, self._key
        for item in items:
            if by_key:
                keyed = by_key.get(key(item))  # type: ignore[misc]  # by_key is only filled when a key is set
                targets = everyone + keyed if keyed else everyone
            else:
                targets = everyone
            for sub in targets:
                if sub.overflowed or sub.closed:
                    continue
                match = sub.match
                if match is not None and not match(item):
                    continue
                buf = sub.items
                if len(buf) >= sub.capacity:
                    sub.overflowed = True
                    sub.ready.set()
                    continue
                buf.append(item)
                if not sub.ready.is_set():
                    sub.ready.set()

    def close_all(self) -> None:
        """Wake every subscriber with a 'closed' signal (they resume elsewhere or reconnect)."""
        with self._lock:
            subs = self._subs
            # Readers (publish) take the routes without the lock: they go before the list of subscribers.
            self._all, self._by_key, self._subs = (), {}, ()
        for sub in subs:
            sub.closed = True
            sub.ready.set()


class Follower(Generic[T]):
    """Iterate records after `after` (exclusive): first from `replay`, then live from the broadcaster.

    `replay(after, limit)` returns up to `limit` matching records with position > after, in order.
    `position(record)` gives the record's monotonic position (sequence / history id).
    `keys`: exact broadcaster keys outside which `match` is always false (None: no such promise).
    Call `get(timeout)` in a loop; it returns None on timeout so callers can notice cancellation.
    """

    def __init__(
        self,
        broadcaster: Broadcaster[T],
        *,
        match: Callable[[T], bool] | None,
        replay: Callable[[int, int], list[T]] | None,
        position: Callable[[T], int],
        after: int | None,
        capacity: int,
        batch: int = 500,
        keys: Iterable[Hashable] | None = None,
    ):
        self._b = broadcaster
        self._replay = replay
        self._position = position
        self._batch = batch
        self._sub = broadcaster.register(match, capacity, keys)
        self._pending: deque[T] = deque()
        self._replaying = after is not None and replay is not None
        self.last = after if after is not None else -1
        self._woken = False  # wake() was called: the wait it ended returns empty-handed

    def _refill_from_log(self) -> None:
        assert self._replay is not None
        while True:
            batch = self._replay(self.last, self._batch)
            if batch:
                self._pending = deque(batch)
                return
            if self._sub.overflowed:
                # The live buffer overflowed while we replayed a long backlog: start live again and
                # replay what we missed; the log has it. Not after close_all: get() ends with Closed.
                fresh = self._b.renew(self._sub)
                if fresh is not self._sub:
                    self._sub = fresh
                    continue
            self._replaying = False
            return

    def get(self, timeout: float | None = None) -> T | None:
        waited = False
        while True:
            if self._pending:
                item = self._pending.popleft()
                self.last = self._position(item)
                return item
            if self._replaying:
                self._refill_from_log()
                if self._pending:
                    continue
            sub = self._sub
            try:
                item = sub.items.popleft()
            except IndexError:
                # Empty: everything offered before an overflow or a close has been returned.
                if sub.closed:  # first: an overflowed buffer closed by a stop is the stop's
                    raise Closed(self.last + 1) from None
                if sub.overflowed:
                    raise Overflow(self.last + 1) from None
                if waited or self._woken:
                    self._woken = False
                    return None
                sub.ready.clear()
                if sub.items or sub.overflowed or sub.closed or self._woken:
                    continue  # arrived (or woken) between the popleft and the clear
                waited = not sub.ready.wait(timeout)
                continue
            pos = self._position(item)
            if pos <= self.last:
                continue  # already replayed
            self.last = pos
            return item

    def take(self, timeout: float | None = None, limit: int = 500) -> list[T]:
        """Every item that is ready, in order, at most `limit` (>= 1): from the replayed batch, else
        from the live buffer; waits (like get()) only when nothing is ready; [] on timeout.

        One call drains what a burst of publishes left, so a subscriber wakes once per batch rather
        than once per record, and one that is caught up gets each record alone, as soon as it arrives.
        `last` is the position of the last item returned: yield them all before acting on it."""
        if not self._pending and self._replaying:
            self._refill_from_log()
        pending = self._pending
        if pending:
            if len(pending) <= limit:
                items = list(pending)
                pending.clear()
            else:
                items = [pending.popleft() for _ in range(limit)]
            self.last = self._position(items[-1])
            return items
        first = self.get(timeout)
        if first is None:
            return []
        items = [first]
        buf, position, last = self._sub.items, self._position, self.last
        while len(items) < limit:
            try:
                item = buf.popleft()
            except IndexError:
                break
            pos = position(item)
            if pos > last:  # else already replayed
                last = pos
                items.append(item)
        self.last = last
        return items

    def wake(self) -> None:
        """End a wait in get() or take() now: it returns None / [] if nothing is ready, so its caller looks
        again at why it waits (a stream whose client has gone). Any thread may call it."""
        self._woken = True  # before the event: a get() that clears it then sees the flag
        self._sub.ready.set()

    def caught_up(self) -> bool:
        """True when nothing matched is waiting: every live record offered so far has been returned."""
        sub = self._sub
        return not self._pending and not self._replaying and not sub.overflowed and not sub.items

    def close(self) -> None:
        self._b.unregister(self._sub)

    def __enter__(self) -> Follower[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _without(subs: tuple[_Sub[T], ...], sub: _Sub[T]) -> tuple[_Sub[T], ...]:
    rest = list(subs)
    rest.remove(sub)  # by identity: a _Sub has no __eq__
    return tuple(rest)
