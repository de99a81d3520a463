"""TimerQueue: timers run at their time, and the thread is woken only when it would otherwise sleep past a
new timer (a live-text stream arms and cancels one per workflow step: a wake-up each was a thread switch)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from voltorch_server.components.coordination import DeltaStream
from voltorch_server.components.shared import TimerQueue


class _CountingCondition(threading.Condition):
    def __init__(self) -> None:
        super().__init__()
        self.notified = 0

    def notify(self, n: int = 1) -> None:
        self.notified += 1
        super().notify(n)


@pytest.fixture
def timers() -> Iterator[tuple[TimerQueue, _CountingCondition]]:
    queue = TimerQueue("test-timers")
    cond = queue._cond = _CountingCondition()
    queue.start()
    yield queue, cond
    queue.stop()


def _asleep(queue: TimerQueue) -> None:
    """Wait until the queue's thread sleeps in wait() (bounded)."""
    end = time.monotonic() + 10
    while time.monotonic() < end:
        with queue._cond:
            if queue._wake_at != float("-inf") and queue._cond._waiters:  # type: ignore[attr-defined]
                return
        time.sleep(0.001)  # bounded: polls a condition no event reports, until the deadline above
    raise AssertionError("the timer thread never went to sleep")


def test_timers_run_in_order_whether_or_not_the_thread_is_woken(timers) -> None:
    queue, cond = timers
    ran: list[str] = []
    done = threading.Event()
    _asleep(queue)
    queue.after(0.2, lambda: ran.append("far"))  # idle queue: wakes the thread
    _asleep(queue)
    early = threading.Event()
    queue.after(0.05, lambda: (ran.append("early"), early.set()))  # before the thread's wake-up: wakes it
    assert early.wait(10)
    _asleep(queue)
    woken = cond.notified
    queue.after(0.25, lambda: (ran.append("late"), done.set()))  # after "far": no wake-up, "far" comes first
    assert cond.notified == woken
    assert done.wait(10)
    assert ran == ["early", "far", "late"]


def test_a_timer_behind_a_cancelled_one_still_runs(timers) -> None:
    """The thread sleeps until a timer that is then cancelled; a later one added meanwhile (no wake-up) runs
    when the thread wakes for the cancelled one and sleeps again until it."""
    queue, cond = timers
    _asleep(queue)
    first = queue.after(0.05, lambda: None)
    _asleep(queue)
    first.cancel()
    woken = cond.notified
    done = threading.Event()
    queue.after(0.1, done.set)
    assert cond.notified == woken
    assert done.wait(10)


def test_armed_and_cancelled_every_step_wakes_the_thread_rarely(timers) -> None:
    """The live-text pattern: arm a timer 0.1 s ahead, cancel it a moment later, again and again."""
    queue, cond = timers
    _asleep(queue)
    woken = cond.notified
    queue.after(0.5, lambda: None).cancel()  # an idle queue: the thread is woken to sleep until its time
    _asleep(queue)
    for _ in range(200):
        queue.after(0.5, lambda: None).cancel()
    assert cond.notified - woken == 1  # the first, not one per timer
    assert len(queue) == 0


def test_live_text_streams_armed_within_an_interval_share_one_wake_up(timers) -> None:
    """Each inline workflow step arms its live-text stream's timer and cancels it when the step ends: their
    times are rounded up to the interval, so the timer thread wakes once per interval, not once per step."""
    queue, cond = timers
    _asleep(queue)
    published: list[dict] = []
    streams = [
        DeltaStream(published.append, {"task_id": f"t{i}"}, interval=30.0, hold=True, timers=queue)
        for i in range(50)
    ]
    woken = cond.notified
    streams[0].write("some text")  # kept (held), its timer armed: the idle thread is woken to sleep until it
    _asleep(queue)
    for ds in streams[1:]:
        ds.write("some text")
    whens = {t.when for _, _, t in queue._heap}
    assert len(whens) <= 2 and all(w % 30.0 == 0 for w in whens)  # (a boundary may fall among them)
    assert cond.notified - woken == 1
    for ds in streams:
        ds.flush()
        assert ds.drain() == [{"task_id": ds._base["task_id"], "offset": 0, "delta": "some text"}]
    assert len(queue) == 0 and published == []
