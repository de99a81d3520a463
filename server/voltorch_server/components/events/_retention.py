"""Retention of the event log: drop events beyond a maximum age or count, oldest first.

What has been compacted is recorded (table `event_compaction`: the last sequence and time removed), so a
reader asking for a compacted position gets OUT_OF_RANGE naming the oldest one still available,
even when compaction emptied the log.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from ...errors import OutOfRange
from ...storage import Database

CHUNK = 5000  # rows deleted per transaction, so publishers never wait long on the writer lock


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
_FLOOR = "SELECT through_seq, through_time FROM event_compaction WHERE id = 1"


def read_floor(conn) -> Floor:
    """The floor as `conn` (an open connection or transaction, or else the database) sees it."""
    row = conn.query_one(_FLOOR) if hasattr(conn, "query_one") else conn.execute(_FLOOR).fetchone()
    return Floor(row[0], row[1]) if row else Floor(0, 0.0)


def compact(db: Database, *, now: float, max_age: float, max_count: int) -> int:
    """Delete events older than max_age seconds or beyond the newest max_count (0 = no limit).

    Returns how many were deleted. Works in chunks of CHUNK rows, each its own transaction.
    """
    if max_age <= 0 and max_count <= 0:
        return 0
    cut = 0
    if max_count > 0:
        row = db.query_one("SELECT COALESCE(MAX(seq), 0) FROM events")
        head = row[0] if row else 0
        cut = max(cut, head - max_count)
    if max_age > 0:
        # Event times never decrease with sequence (the log clamps them), so the time index finds the cut.
        row = db.query_one(
            "SELECT seq FROM events WHERE time < ? ORDER BY time DESC, seq DESC LIMIT 1", (now - max_age,)
        )
        if row:
            cut = max(cut, row[0])
    deleted = 0
    while True:
        with db.write() as tx:
            floor = read_floor(tx.conn)  # the row is updated below: PostgreSQL locks it on first write
            upto = min(cut, floor.through_seq + CHUNK)
            if upto <= floor.through_seq:
                return deleted
            last = tx.execute(
                "SELECT seq, time FROM events WHERE seq <= ? ORDER BY seq DESC LIMIT 1", (upto,)
            ).fetchone()
            n = tx.execute("DELETE FROM events WHERE seq <= ?", (upto,)).rowcount
            through_time = max(floor.through_time, last[1]) if last else floor.through_time
            tx.execute(
                "UPDATE event_compaction SET through_seq = ?, through_time = ? WHERE id = 1",
                (upto, through_time),
            )
            deleted += n


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
