"""Retention of the event log: drop events beyond a maximum age or count, oldest first (the deleting
is the store's `compact`, on the compaction thread here).

What has been compacted is recorded (the last sequence and time removed: `Floor`), so a reader asking
for a compacted position gets OUT_OF_RANGE naming the oldest one still available, even when compaction
emptied the log.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from ...errors import OutOfRange


@dataclass(frozen=True)
class Floor:
    """The compaction point: every event with sequence <= through_seq is gone."""

    through_seq: int
    through_time: float

    @property
    def oldest_available(self) -> int:
        return self.through_seq + 1

    def check_sequence(self, sequence: int, field_name: str) -> None:
        """OUT_OF_RANGE when `sequence` (inclusive start) was compacted away."""
        if sequence <= self.through_seq:
            raise compacted(self.oldest_available, f"{field_name}={sequence}")

    def check_time(self, when: float, field_name: str) -> None:
        if self.through_seq and when <= self.through_time:
            raise compacted(self.oldest_available, f"{field_name} lies before the oldest retained event;")


def compacted(oldest: int, what: str) -> OutOfRange:
    return OutOfRange(
        f"{what} asks for events that were compacted away; the oldest available sequence is {oldest}",
        reason="EVENTS_COMPACTED",
        metadata={"oldest_sequence": str(oldest)},
    )


LEASE_KEY = 0x766F6C01  # PostgreSQL advisory lock: the replica that compacts the event log


class Compactor:
    """Runs `fn` every `interval` seconds on a daemon thread until stopped."""

    def __init__(self, fn, interval: float, name: str = "events-compactor"):
        self.fn = fn
        self.interval = interval
        self.name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: BaseException | None = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.alive:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.fn()
                self.last_error = None
            except Exception as exc:  # surfaced by EventLog.check(); the next round retries
                self.last_error = exc
