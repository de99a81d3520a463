"""PostgreSQL: the event log's head (the events counter row) is locked only from a transaction's last
statement to its COMMIT (storage/_serial_writes.py). An engine transaction open for a while (round trips,
Python) keeps neither a Publish nor another replica's engine transaction waiting; its events are numbered
at COMMIT, in commit order, gap-free; the engines' transactions still run one at a time per replica."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from voltorch_server.components.events import EventLog, NewEvent
from voltorch_server.storage import open_database
from voltorch_server.storage.stores import Stores

WAIT = 10.0  # seconds a step may take before it counts as blocked


class Replica:
    """One replica's handles on the shared database: its pool, its stores, its event log."""

    def __init__(self, dsn: str):
        self.db = open_database(dsn)
        self.stores = Stores.build(self.db, self.db)
        self.log = EventLog(self.stores.events)
        self.engines: Any = self.stores.executions.db  # the engines' handle (SerialWrites)

    def close(self) -> None:
        self.log.stop()
        self.db.close()


@pytest.fixture
def replicas(pg_dsn: str) -> Iterator[list[Replica]]:
    made = [Replica(pg_dsn), Replica(pg_dsn)]
    yield made
    for r in made:
        r.close()


def _in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:  # reported by the test
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def test_an_open_engine_transaction_blocks_no_publish(replicas: list[Replica]) -> None:
    a, b = replicas
    with pytest.raises(RuntimeError), a.engines.write() as tx:  # rolled back: its event leaves no gap
        a.log.append(tx, [NewEvent("engine.undone")])
        raise RuntimeError("rolled back")
    with a.engines.write() as tx:
        [mine] = a.log.append(tx, [NewEvent("engine.step")])
        assert mine.sequence == 0  # numbered at COMMIT
        # A one-statement Publish, one that reads the log first (an id) and one through another replica:
        # each commits while this transaction is open (before: each waited for it, the head locked at BEGIN).
        t, out = _in_thread(
            lambda: [
                a.log.publish(NewEvent("a.plain"))[0],
                a.log.publish(NewEvent("a.read", id="evt-read"))[0],
                b.log.publish(NewEvent("b.plain"))[0],
            ]
        )
        t.join(WAIT)
        blocked = t.is_alive()
    t.join(WAIT)
    assert not blocked, "a Publish waited for an open engine transaction"
    assert "error" not in out, out
    assert [e.sequence for e in out["value"]] == [1, 2, 3]
    assert mine.sequence == 4  # committed after them: numbered after them
    logged = a.log.read_after(0, 10)
    assert [(e.sequence, e.type) for e in logged] == [
        (1, "a.plain"),
        (2, "a.read"),
        (3, "b.plain"),
        (4, "engine.step"),
    ]
    assert logged[-1] == mine and logged[-1].time >= logged[-2].time


def test_engine_transactions_of_two_replicas_run_side_by_side(replicas: list[Replica]) -> None:
    a, b = replicas
    with a.engines.write() as tx:
        [first] = a.log.append(tx, [NewEvent("a.opened.first")])

        def other_replica() -> list[int]:
            with b.engines.write() as tx_b:
                events = b.log.append(tx_b, [NewEvent("b.one"), NewEvent("b.two")])
            return [e.sequence for e in events]

        t, out = _in_thread(other_replica)
        t.join(WAIT)
        blocked = t.is_alive()
    t.join(WAIT)
    assert not blocked, "an engine transaction waited for another replica's"
    assert out.get("value") == [1, 2], out  # committed first: numbered first, gap-free
    assert first.sequence == 3
    follower = a.log.subscribe(after=0)
    assert [follower.get(timeout=WAIT).sequence for _ in range(3)] == [1, 2, 3]  # type: ignore[union-attr]


def test_the_engine_transactions_of_one_replica_run_one_at_a_time(replicas: list[Replica]) -> None:
    a, _ = replicas
    entered = threading.Event()

    def second() -> None:
        with a.engines.write():
            entered.set()

    with a.engines.write():
        t, out = _in_thread(second)
        overlapped = entered.wait(0.5)  # bounded: it must not get in while this one is open
    t.join(WAIT)
    assert not overlapped, "two engine transactions of one replica were open at once"
    assert entered.is_set() and "error" not in out


def test_a_numbered_append_has_its_sequence_inside_its_transaction(replicas: list[Replica]) -> None:
    a, _ = replicas
    with a.db.write() as tx:
        [earlier] = a.log.append(tx, [NewEvent("x.earlier")])
        [numbered] = a.log.append(tx, [NewEvent("x.numbered")], numbered=True)
        assert numbered.sequence == 2  # known now (the error log keeps it with the error)
        [later] = a.log.append(tx, [NewEvent("x.later")])
    assert (earlier.sequence, numbered.sequence, later.sequence) == (1, 2, 3)  # in the order appended
    assert [e.type for e in a.log.read_after(0, 10)] == ["x.earlier", "x.numbered", "x.later"]
