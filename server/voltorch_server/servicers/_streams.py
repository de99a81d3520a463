"""Running a Follower as a gRPC server stream: notice cancelled clients, end overflowed streams clearly,
and pack what is ready into batched messages for clients that asked for them (`max_batch`)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from ..components import Closed, Follower, Overflow
from ..errors import InvalidArgument, ResourceExhausted, Unavailable
from ._tracing import count_events

T = TypeVar("T")

POLL_SECONDS = 0.25  # how soon a client stream's reader notices a cancelled client or a stopping server
# How long a quiet server stream sleeps between looks at its client: one that leaves wakes it at once
# (context.add_callback), a stopping server too (Closed); this only bounds a wake-up that never came.
IDLE_SECONDS = 5.0
MAX_BATCH_ITEMS = 500  # most items in one batched message, whatever the client asks for
MAX_BATCH_BYTES = 1 << 20  # a batched message stops growing past this (a larger item goes alone)
DRAIN = MAX_BATCH_ITEMS  # items taken per wake-up, batched or not: one wake-up per burst


def _byte_size(msg: Any) -> int:
    return msg.ByteSize()


@dataclass(frozen=True)
class Batching:
    """How a stream packs rendered items into one message: `combine(pieces)` builds it; `size(piece)`
    is a piece's encoded size (a message's ByteSize by default), so a message stays near MAX_BATCH_BYTES."""

    max_items: int
    combine: Callable[[list[Any]], Any]
    size: Callable[[Any], int] = _byte_size


class Coalescing:
    """How long a busy batched stream gathers items before its next message, shared by the streams of one
    service so that together they stay near `budget` messages per second.

    Every message costs its stream a wake-up and a gRPC send (~100 µs of server CPU, GIL hand-offs), so
    with many subscribers of a busy log one message per event would take more CPU than the server has and
    the backlog (hence the latency) would grow. After each message a stream sleeps until the next tick of
    a shared clock, `window` seconds apart, and then sends everything that arrived meanwhile in one
    message: one wake-up and one message per tick per busy stream, whatever the event rate. The window is
    active streams / budget, at most `max_window` (the latency bound); a stream counts as active while it
    sent a message in the last ACTIVE_SECONDS, so idle subscribers cost busy ones no latency. A stream
    that was quiet sends its next item at once, and sleeps (until the tick) only after a message that
    came less than a window after its previous one: a stream whose messages are already that far apart
    has nothing to gather, and a sleep would only add a wake-up and up to a window of latency.
    """

    ACTIVE_SECONDS = 0.1
    RECOUNT_SECONDS = 0.01  # how often the active streams are counted (by whichever stream asks)

    def __init__(self, budget: float, max_window: float):
        if budget <= 0 or max_window < 0:
            raise ValueError("budget must be positive and max_window not negative")
        self.budget = budget
        self.max_window = max_window
        self._last_sent: dict[int, float] = {}  # stream -> monotonic time of its last message
        self._ids = itertools.count()
        self._window = 0.0
        self._counted_at = -1.0

    def join(self) -> int:
        """A new stream's token (pass it to sent() and leave())."""
        return next(self._ids)

    def leave(self, token: int) -> None:
        self._last_sent.pop(token, None)

    def sent(self, token: int, now: float) -> float:
        """Note that stream `token` sent a message at `now`; returns how long it should sleep before
        taking what is ready for its next one (0 when there is no need: its messages are already a window
        or more apart, so there is nothing to gather, e.g. one subscriber of a log at 1,000 events/s)."""
        before = self._last_sent.get(token)
        self._last_sent[token] = now
        if now - self._counted_at >= self.RECOUNT_SECONDS:
            self._counted_at = now
            since = now - self.ACTIVE_SECONDS
            active = sum(1 for t in list(self._last_sent.values()) if t > since)
            self._window = min(active / self.budget, self.max_window)
        window = self._window
        if window <= 0 or before is None or now - before >= window:
            return 0.0
        return window - now % window

    @property
    def window(self) -> float:
        """The current window (seconds between ticks), as of the last count."""
        return self._window


def batch_limit(max_batch: int, field: str = "max_batch") -> int:
    """The items per message for a request's max_batch: 0 = unbatched (one item per message)."""
    if max_batch < 0:
        raise InvalidArgument(field, f"must not be negative (got {max_batch})")
    return min(max_batch, MAX_BATCH_ITEMS)


def pump(
    follower: Follower[T] | Any,
    context: grpc.ServicerContext,
    render: Callable[[T], Any],
    *,
    resume_point: Callable[[int], tuple[str, int]],
    stop: Callable[[T], bool] | None = None,
    idle: Callable[[], Any | None] | None = None,
    batching: Batching | None = None,
    coalescing: Coalescing | None = None,
    wait: float = IDLE_SECONDS,
) -> Iterator[Any]:
    """Yield messages for the followed items until the client goes away.

    Every wake-up takes all that is ready (up to DRAIN items). Without `batching` each item is one
    message, render(item); with it, consecutive rendered items are combined into messages of at most
    `batching.max_items` items and about MAX_BATCH_BYTES, and with `coalescing` too, the stream sleeps
    after each message until the next tick of the shared window (see Coalescing), so what arrives
    meanwhile shares one message. `stop(item)` ends the stream after that item.
    resume_point(position) names where a client should resume, as (field name, value), for the
    status that ends an overflowed or server-closed stream. idle() is called whenever no item came
    for `wait` seconds; a message it returns (e.g. a heartbeat) is sent. The follower is woken when the
    RPC ends (a client that leaves), so a quiet stream does not poll for it.
    """
    take = follower.take
    coalesce = coalescing if batching is not None else None
    token = coalesce.join() if coalesce is not None else 0
    try:
        if not context.add_callback(follower.wake):
            return  # the RPC has already ended
        while True:
            items = take(wait, DRAIN)
            if not items:
                # Only a quiet stream needs to look: grpc stops pulling items from a cancelled one.
                if not context.is_active():
                    return
                if idle is not None:
                    msg = idle()
                    if msg is not None:
                        yield msg
                continue
            last = False
            if stop is not None:
                for i, item in enumerate(items):
                    if stop(item):
                        items, last = items[: i + 1], True
                        break
            if batching is None:
                for item in items:
                    count_events(1)
                    yield render(item)
            else:
                for msg, n in _batches([render(item) for item in items], batching):
                    count_events(n)
                    yield msg
            if last:
                return
            if coalesce is not None and len(items) < DRAIN:
                pause = coalesce.sent(token, time.monotonic())
                if pause > 0:
                    time.sleep(pause)  # coalescing until the tick (<= max_window), not synchronisation
    except Overflow as exc:
        name, value = resume_point(exc.resume_from)
        raise ResourceExhausted(
            f"subscriber fell behind its buffer; resume with {name}={value} to lose nothing",
            reason="SUBSCRIBER_OVERFLOW",
            metadata={name: str(value)},
        ) from None
    except Closed as exc:
        name, value = resume_point(exc.resume_from)
        raise Unavailable(
            f"stream closed by the server (restart or shutdown); resume with {name}={value}",
            reason="STREAM_CLOSED",
            metadata={name: str(value)},
        ) from None
    finally:
        if coalesce is not None:
            coalesce.leave(token)
        follower.close()


def _batches(pieces: list[Any], batching: Batching) -> Iterator[tuple[Any, int]]:
    """Pieces combined into messages of at most max_items pieces and about MAX_BATCH_BYTES, with the
    number of pieces in each."""
    max_items, size = batching.max_items, batching.size
    group: list[Any] = []
    total = 0
    for piece in pieces:
        n = size(piece)
        if group and (len(group) >= max_items or total + n > MAX_BATCH_BYTES):
            yield batching.combine(group), len(group)
            group, total = [], 0
        group.append(piece)
        total += n
    if group:
        yield batching.combine(group), len(group)
