"""Live text of a running task: what a streaming agent writes is gathered and published as
`agent.output.delta` events, in batches (every `interval` seconds or `chars` characters) so the event log
grows per batch, not per token. The final output is unchanged: it is the task's result, as before.

Publishing waits for the event log's head (a database lock), which a step's transaction holds while it
writes the outcome and takes the rest of the text (`drain()`): a stream therefore never publishes while
holding its own lock. Batches are taken out in order under the lock and published outside it by one thread
at a time (`_send`); `flush()`, called when the agent has returned and before any transaction, waits for
them, so nothing published live comes after what the outcome writes."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from ..shared import Timer, TimerQueue

log = logging.getLogger("voltorch.coordination")

DELTA_EVENT = "agent.output.delta"
DELTA_INTERVAL = 0.1  # seconds between batches at most
DELTA_CHARS = 200  # characters that make a batch at once
HELD_MAX_CHARS = 16_384  # kept text joined into one batch at most (events carry at most 1 MiB of data)


class DeltaStream:
    """One task attempt's text as it grows. `publish(data)` appends one event; `base` is the data every
    batch carries (coordination, task, agent, execution and step ids); each batch adds `offset` (characters
    published before it in this attempt) and `delta` (the new text)."""

    def __init__(
        self,
        publish: Callable[[dict[str, Any]], None],
        base: dict[str, Any],
        *,
        interval: float = DELTA_INTERVAL,
        chars: int = DELTA_CHARS,
        clock: Callable[[], float] = time.monotonic,
        hold: bool = False,
        timers: TimerQueue | None = None,
    ):
        """`hold`: batches cut before `interval` has passed since the last published one (or the start)
        are kept, not published: a task that ends that soon has them written with its outcome, in the
        same transaction (`drain()`); one that runs longer publishes them with its next batch. What is left
        at the end (`flush()`) and the text the agent marks as its last (`write_last()`) are kept for
        `drain()` too, whatever their age: the outcome's write follows at once. Kept text is one batch (up
        to HELD_MAX_CHARS), not one per cut: it is written or published at one moment anyway.

        `timers` (one thread shared by every stream): text not published yet goes out once `interval` has
        passed since the last batch and since the last write, so a model that pauses right after a burst
        does not hold back what it wrote until its next token or its end (a model that goes on writing
        publishes its batches itself, as before). Without it such text waits for the next write, `flush()`
        or `drain()`."""
        self._publish = publish
        self._base = base
        self._interval = interval
        self._chars = chars
        self._clock = clock
        self._timers = timers
        # The stream's lock, taken as a plain RLock (a Condition's `with` is two Python calls: an agent writes
        # its text piece by piece), and the condition on the same lock, notified when the sender is done
        # (flush() waits for that): made by the first flush() that has to wait (a step's stream, whose
        # text is held for its outcome, never does).
        self._lock = threading.RLock()
        self._idle: threading.Condition | None = None
        self._pending: list[str] = []
        self._size = 0
        self._offset = 0
        self._last = self._last_write = clock()
        self._held: list[dict[str, Any]] | None = [] if hold else None
        self._outbox: list[dict[str, Any]] = []  # taken to publish, in order, not published yet
        self._sending = False  # a thread is publishing the outbox (outside the lock)
        self._timer: Timer | None = None
        self._ended = False  # the agent returned (flush()): the rest waits for the end, not the timer
        # The newest text is the agent's last (write_last()): it waits for the end too, unless a write follows.
        self._last_piece = False
        self.batches = 0

    def write(self, text: str) -> None:
        """Add text; publish the batch when it is big enough or old enough."""
        if not text:
            return
        with self._lock:
            self._pending.append(text)
            self._size += len(text)
            self._last_piece = False
            self._last_write = self._clock()
            if self._ended and self._held is not None:
                return  # after the end (a late write): kept for drain(), with the rest
            if self._size >= self._chars or self._clock() - self._last >= self._interval:
                self._flush_locked()
            self._arm_locked()
            ready = bool(self._outbox)
        if ready:
            self._send()

    def write_last(self, text: str) -> None:
        """Add the text that ends the output (the agent returns right after): it waits for the end
        (`flush()`, or `drain()` with `hold`) instead of making a batch of its own, so an answer that
        arrives whole is one write with the outcome rather than two."""
        if not text:
            return
        with self._lock:
            self._pending.append(text)
            self._size += len(text)
            self._last_piece = True
            self._disarm_locked()

    def flush(self) -> None:
        """The task ended: publish what is left (with `hold`, keep it all for drain()), and return once
        every batch taken before is published. Called with no transaction open: it may wait for the
        database, as publishing does."""
        with self._lock:
            self._ended = True
            self._disarm_locked()
            if self._held is not None:
                self._cut()
            else:
                self._flush_locked()
        self._send()
        with self._lock:
            if not self._idle_locked():
                if self._idle is None:
                    self._idle = threading.Condition(self._lock)
                self._idle.wait_for(self._idle_locked)

    def drain(self) -> list[dict[str, Any]]:
        """With `hold`: every batch not published yet, the rest of the text included (the caller writes
        them with the task's outcome, inside its transaction: this never waits for a publish; flush()
        before it did)."""
        with self._lock:
            if self._held is None:
                return []
            self._cut()
            out = self._outbox + self._held  # taken but not picked up by a sender yet: still in order
            self._outbox, self._held = [], []
            return out

    def _cut(self) -> dict[str, Any] | None:
        if not self._pending:
            return None
        text = "".join(self._pending)
        self._pending, self._size = [], 0
        held = self._held
        if held and len(held[-1]["delta"]) + len(text) <= HELD_MAX_CHARS:
            # Kept batches are written (or published) together: the text joins the kept one instead of
            # being an event of its own (an inline step's answer is one event, not one per 200 characters).
            held[-1]["delta"] += text
            self._offset += len(text)
            return held[-1]
        data = {**self._base, "offset": self._offset, "delta": text}
        self._offset += len(text)
        self.batches += 1
        if held is not None:
            held.append(data)
        return data

    def _flush_locked(self) -> None:
        """Cut the pending text and take it (and what was kept) out for publishing, unless `hold` keeps it."""
        data = self._cut()
        if self._held is not None:
            if not self._held or self._clock() - self._last < self._interval:
                return  # kept: written with the outcome, or published with the next batch or by the timer
            batch, self._held = self._held, []
        elif data is None:
            return
        else:
            batch = [data]
        self._outbox.extend(batch)
        self._last = self._clock()

    def _disarm_locked(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm_locked(self) -> None:
        """Have the shared timer look at this stream when the text not published yet is due."""
        if self._timers is None or self._ended or self._last_piece or self._timer is not None:
            return
        if not self._pending and not self._held:
            return
        due = max(self._last, self._last_write) + self._interval - self._clock()
        when = time.time() + max(due, 0.0)
        if self._interval > 0:
            # Rounded up to a multiple of the interval: the streams armed within one interval (a workflow step
            # arms one and cancels it when it ends, one per ~1 ms) share one wake-up of the timer thread, not
            # one each. Kept text goes out at most one interval later than it is due.
            when = math.ceil(when / self._interval) * self._interval
        self._timer = self._timers.at(when, self._due)

    def _due(self) -> None:
        """On the timer thread: `interval` has passed since the last batch and the last write; publish
        what waits since."""
        with self._lock:
            self._timer = None
            if self._ended or self._last_piece:
                return
            if self._clock() - max(self._last, self._last_write) >= self._interval:
                self._flush_locked()
            self._arm_locked()  # a write or a batch meanwhile made it early: look again when due
            ready = bool(self._outbox)
        if ready:
            self._send()

    def _idle_locked(self) -> bool:
        return not self._sending and not self._outbox

    def _send(self) -> None:
        """Publish the outbox, outside the lock. One sender at a time, in order: a thread that finds
        another sending leaves its batches to it (the sender takes the outbox until it is empty)."""
        with self._lock:
            if self._sending or not self._outbox:
                return
            self._sending = True
        try:
            while True:
                with self._lock:
                    batch, self._outbox = self._outbox, []
                    if not batch:
                        self._sending = False
                        if self._idle is not None:
                            self._idle.notify_all()
                        return
                try:
                    for d in batch:
                        self._publish(d)
                except Exception:  # live text is a courtesy: failing to show it never fails the task
                    log.warning(
                        "publishing live output of %s failed", self._base.get("task_id"), exc_info=True
                    )
        except BaseException:
            with self._lock:
                self._sending = False
                if self._idle is not None:
                    self._idle.notify_all()
            raise
