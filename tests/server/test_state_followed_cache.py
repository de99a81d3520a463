"""PostgreSQL: each replica's committed-row cache is kept true by its follower (components/state/
_followed.py). Two StateStores on two handles of one database stand for two replicas."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from polling import until
from voltorch_server.components.events import EventLog
from voltorch_server.components.state import StateStore
from voltorch_server.storage import open_database
from voltorch_server.storage.stores import SqlEvents, SqlState


@pytest.fixture
def replicas(pg_dsn: str) -> Iterator[tuple[StateStore, StateStore]]:
    dbs = [open_database(pg_dsn), open_database(pg_dsn)]
    stores = [StateStore(SqlState(db), EventLog(SqlEvents(db))) for db in dbs]
    yield stores[0], stores[1]
    for s, db in zip(stores, dbs, strict=True):
        s.stop()
        db.close()


def test_a_write_never_computes_from_a_row_another_replica_has_changed(
    replicas: tuple[StateStore, StateStore],
) -> None:
    """B caches k at version 1 (its own write); A writes version 2, which B's follower has not heard of
    (B is not started: no listener). B's next compare-and-set catches up first, so it sees version 2."""
    a, b = replicas
    b.set("k", "b1")
    assert b._cache.get("k") is not None  # B's own commit is applied to its cache
    a.set("k", "a2")
    kv, _ = b.set("k", "b3", expected_version=2)
    assert (kv.value, kv.version) == ("b3", 3)
    assert a.get("k").version == 3


def test_reads_on_a_replica_see_what_its_watch_delivered_and_never_go_back(
    replicas: tuple[StateStore, StateStore],
) -> None:
    a, b = replicas
    b.start()
    until(lambda: b._listener is not None and b._listener.live, timeout=10)
    b.set("k", 0)
    assert b.get("k").value == 0  # served from B's cache from now on
    with b.watch(key="k") as watch:
        for i in range(1, 21):
            a.set("k", i)
            change = watch.get(timeout=10)
            assert change is not None and change.kv.value == i
            # The cache took the change before the watcher heard of it.
            assert b.get("k").value == i
    a.delete("k")
    until(lambda: b._cache.get("k") is None, timeout=10)
    with pytest.raises(Exception, match="not found"):
        b.get("k")


def test_a_replica_whose_follower_is_down_reads_the_database(
    replicas: tuple[StateStore, StateStore],
) -> None:
    a, b = replicas
    b.set("k", 1)
    assert b._cache.get("k") is not None
    a.set("k", 2)  # B hears nothing: no listener
    assert b.get("k").value == 2
