"""Live text of a running task: what a streaming agent writes is gathered and published as
`agent.output.delta` events, in batches (every `interval` seconds or `chars` characters) so the event log
grows per batch, not per token. The final output is unchanged: it is the task's result, as before."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

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
    ):
        """`hold`: batches cut before `interval` has passed since the last published one (or the start)
        are kept, not published: a task that ends that soon has them written with its outcome, in the
        same transaction (`drain()`); one that runs longer publishes them with its next batch. What is left
        at the end (`flush()`) and the text the agent marks as its last (`write_last()`) are kept for
        `drain()` too, whatever their age: the outcome's write follows at once. Kept text is one batch (up
        to HELD_MAX_CHARS), not one per cut: it is written or published at one moment anyway."""
        self._publish = publish
        self._base = base
        self._interval = interval
        self._chars = chars
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self._size = 0
        self._offset = 0
        self._last = clock()
        self._held: list[dict[str, Any]] | None = [] if hold else None
        self.batches = 0

    def write(self, text: str) -> None:
        """Add text; publish the batch when it is big enough or old enough."""
        if not text:
            return
        with self._lock:
            self._pending.append(text)
            self._size += len(text)
            if self._size >= self._chars or self._clock() - self._last >= self._interval:
                self._flush_locked()

    def write_last(self, text: str) -> None:
        """Add the text that ends the output (the agent returns right after): it waits for the end
        (`flush()`, or `drain()` with `hold`) instead of making a batch of its own, so an answer that
        arrives whole is one write with the outcome rather than two."""
        if not text:
            return
        with self._lock:
            self._pending.append(text)
            self._size += len(text)

    def flush(self) -> None:
        """Publish what is left (the task ended); with `hold`, keep it all for drain()."""
        with self._lock:
            if self._held is not None:
                self._cut()
                return
            self._flush_locked()

    def drain(self) -> list[dict[str, Any]]:
        """With `hold`: every batch not published yet, the rest of the text included (the caller writes
        them with the task's outcome)."""
        with self._lock:
            if self._held is None:
                return []
            self._cut()
            out, self._held = self._held, []
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
        data = self._cut()
        if data is None:
            return
        if self._held is not None:
            if self._clock() - self._last < self._interval:
                return  # kept: written with the outcome, or published with the next batch
            batch, self._held = self._held, []
        else:
            batch = [data]
        self._last = self._clock()
        try:
            for d in batch:
                self._publish(d)
        except Exception:  # live text is a courtesy: failing to show it never fails the task
            log.warning("publishing live output of %s failed", self._base.get("task_id"), exc_info=True)
