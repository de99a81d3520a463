"""A priority gate: while urgent work runs, background threads wait before running their Python.

Why: CPython's GIL is not handed over in order. A thread that releases it for a blocking call (a
sqlite3 statement, a socket read) gets it back only when the thread holding it blocks too, or after
the switch interval (5 ms). The thread holding the database's writer lock drops the GIL at every
statement, and with ~128 LLM calls in flight some agent thread whose socket read just returned takes
it and runs its Python (HTTP parsing, the answer's JSON) while every write of the server waits.

Urgent work ("writers": the writer lock's holder) calls `close()` when it begins and `open()` when it
ends; background threads ("readers": the threads reading LLM answers) call `wait()` when a blocking call
returns, before their Python: it returns at once while no writer is inside, else once the last one
has left (or at its timeout: priority, not exclusion). A writer's own `wait()` passes (it is urgent
work); writers nest and may overlap (each `close()` has its `open()`).

What it buys (`python -m bench llm`, bench/README.md): the writer lock held 15-40 % less per LLM call;
the wall time did not move beyond the shared machine's noise (the server's CPU per call bounds it), so
the server's `write_priority` setting that composes it is off by default.
Not kept: writers also waiting (bounded) for the readers already running to reach their next blocking
call (the writer's wait drops the GIL once more per hold and takes it back through the same race: 3.8-5.1x
the ideal with a 2 ms wait against 2.0-3.2x without); a reader passing after one wake-up instead of
waiting until no writer is inside (no fewer context switches, the same hold times).
"""

from __future__ import annotations

import threading
from time import monotonic

__all__ = ["PriorityGate"]


class _Mine(threading.local):
    writing = 0  # this thread's writer holds (nested close()s)


class PriorityGate:
    """Readers `wait()` while a writer is between `close()` and `open()`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._opened = threading.Condition(self._lock)
        self._writers = 0  # writer holds inside (all threads)
        self._mine = _Mine()
        self.waits = 0  # readers' waits for writers (each a GIL race the holder did not lose)

    @property
    def writers(self) -> int:
        return self._writers

    def close(self) -> None:
        """A writer begins: readers wait until its `open()`."""
        with self._lock:
            self._writers += 1
            self._mine.writing += 1

    def open(self) -> None:
        """A writer ends; when it was the last one inside, waiting readers go on."""
        mine = self._mine
        if not mine.writing:
            raise RuntimeError("PriorityGate.open() without close() on this thread")
        with self._lock:
            mine.writing -= 1
            self._writers -= 1
            if not self._writers:
                self._opened.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        """A reader resumes: return once no writer is inside (False: it stopped waiting at `timeout`)."""
        if not self._writers or self._mine.writing:  # the common case: no lock taken
            return True
        with self._lock:
            if not self._writers:
                return True
            self.waits += 1
            deadline = None if timeout is None else monotonic() + timeout
            while self._writers:
                left = None if deadline is None else deadline - monotonic()
                if left is not None and left <= 0:
                    return False
                self._opened.wait(left)
        return True
