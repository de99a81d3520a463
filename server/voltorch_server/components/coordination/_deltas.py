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
    ):
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

    def flush(self) -> None:
        """Publish what is left (the task ended)."""
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if not self._pending:
            return
        text = "".join(self._pending)
        data = {**self._base, "offset": self._offset, "delta": text}
        self._pending, self._size = [], 0
        self._offset += len(text)
        self._last = self._clock()
        try:
            self._publish(data)
            self.batches += 1
        except Exception:  # live text is a courtesy: failing to show it never fails the task
            log.warning("publishing live output of %s failed", self._base.get("task_id"), exc_info=True)
