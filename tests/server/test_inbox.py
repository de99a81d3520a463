"""servicers.Inbox: a client stream's requests read ahead on their own thread, bounded by weight,
taken in groups."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from polling import until
from voltorch_server.servicers import Inbox


class Source:
    """Requests (ints weighing themselves) handed out as the test releases them; counts what was pulled."""

    def __init__(self, items: list[int]):
        self.items = items
        self.pulled = 0
        self.released = threading.Semaphore(0)

    def __iter__(self) -> Iterator[int]:
        for item in self.items:
            self.released.acquire()
            self.pulled += 1
            yield item


def test_groups_are_bounded_by_weight_and_keep_the_order() -> None:
    src = Source([1, 2, 3, 4, 5, 6])
    inbox = Inbox(iter(src), limit=100, name="t", weight=lambda n: n)
    for _ in src.items:
        src.released.release()
    until(lambda: src.pulled == 6)
    groups = []
    while (group := inbox.take(6, timeout=5.0)) is not None:
        groups.append(group)
    assert groups == [[1, 2, 3], [4], [5], [6]]  # each <= 6 in weight, at least one request


def test_the_reader_stops_at_the_limit_until_requests_are_taken() -> None:
    src = Source([1] * 50)
    inbox = Inbox(iter(src), limit=10, name="t")
    for _ in src.items:
        src.released.release()
    until(lambda: src.pulled >= 11)  # the 11th is pulled only once the 10th is in the inbox
    first = inbox.take(1000, timeout=0)
    assert first == [1] * 10  # the 11th waits in the reader for room, not in the inbox
    taken = len(first)
    while (group := inbox.take(1000, timeout=5.0)) is not None:
        taken += len(group)
    assert taken == 50 and src.pulled == 50


def test_a_failed_read_is_raised_after_what_came_before() -> None:
    def requests() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("undecodable")

    inbox = Inbox(requests(), limit=10, name="t")
    got: list[int] = []
    try:
        while (group := inbox.take(10, timeout=5.0)) is not None:
            got += group
    except ValueError as exc:
        assert str(exc) == "undecodable"
    else:
        raise AssertionError("the failure was not raised")
    assert got == [1, 2]
