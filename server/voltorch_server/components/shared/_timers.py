"""One thread that runs callbacks at given times (retry backoffs, workflow deadlines, live text kept too
long) — instead of a sleeping thread per waiting step or stream. Cancelled timers drop their callback at
once so they hold no memory (their heap entry goes when due)."""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable

log = logging.getLogger("voltorch.timers")


class Timer:
    __slots__ = ("when", "fn")

    def __init__(self, when: float, fn: Callable[[], None]):
        self.when = when
        self.fn: Callable[[], None] | None = fn

    def cancel(self) -> None:
        self.fn = None


class TimerQueue:
    def __init__(self, name: str = "timers"):
        self.name = name
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopped = False
        # When the thread, asleep in wait(), wakes by itself (inf: only when notified); -inf while it is awake
        # (it looks at the heap again before sleeping). A timer due after that needs no wake-up: a live-text
        # stream arms one per workflow step and cancels it when the step ends, which woke this thread (a
        # thread switch) for every step.
        self._wake_at = -math.inf

    def start(self) -> None:
        with self._cond:
            self._stopped = False
            if self._thread and self._thread.is_alive():
                return
            self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify_all()
        if self._thread and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def at(self, when: float, fn: Callable[[], None]) -> Timer:
        """Run fn (on the timer thread; keep it short) at wall-clock time `when`."""
        timer = Timer(when, fn)
        with self._cond:
            heapq.heappush(self._heap, (when, next(self._seq), timer))
            if when < self._wake_at:
                self._cond.notify()
        return timer

    def after(self, delay: float, fn: Callable[[], None]) -> Timer:
        return self.at(time.time() + max(delay, 0.0), fn)

    def __len__(self) -> int:
        """Timers not cancelled (a cancelled one stays in the heap, without its callback, until due)."""
        return sum(1 for _, _, t in self._heap if t.fn is not None)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    # A cancelled timer is dropped when due, not at once: the thread keeps sleeping until its
                    # time, so a timer armed after it (the next step's) needs no wake-up.
                    if self._heap and self._heap[0][0] <= time.time():
                        break
                    timeout = self._heap[0][0] - time.time() if self._heap else None
                    self._wake_at = self._heap[0][0] if self._heap else math.inf
                    self._cond.wait(timeout)
                    self._wake_at = -math.inf
                if self._stopped:
                    return
                _, _, timer = heapq.heappop(self._heap)
                fn, timer.fn = timer.fn, None
            if fn is None:
                continue
            try:
                fn()
            except Exception:
                log.exception("timer callback failed")


def doubling(first: float, times: int, cap: float) -> float:
    """A retry's delay: `first` seconds, doubled `times` times, at most `cap`."""
    return min(first * 2**times, cap)
