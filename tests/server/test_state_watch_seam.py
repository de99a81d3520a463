"""PostgreSQL: a Watch that begins while its replica delivers a commit gets that commit, live or replayed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from voltorch_server.components.events import EventLog
from voltorch_server.components.state import StateStore
from voltorch_server.storage import open_database
from voltorch_server.storage.stores import SqlEvents, SqlState


@pytest.fixture
def store(pg_dsn: str) -> Iterator[StateStore]:
    db = open_database(pg_dsn)
    s = StateStore(SqlState(db), EventLog(SqlEvents(db)))
    yield s
    s.stop()
    db.close()


def test_a_watch_begun_while_a_commit_is_delivered_gets_it(store: StateStore) -> None:
    """The watch registers after the delivery took its list of subscribers (so not live) and replays
    before the delivery is done: the replay, bounded by what this replica delivered, must include it."""
    store.set("k", 0)
    begun: list[Any] = []

    def during_delivery(change: Any) -> bool:
        if not begun:  # the commit of k=1 is being offered to subscribers now
            watch = store.watch(key="k", start_revision=change.revision)
            begun.append((watch, watch.get(timeout=0)))
        return False

    store._broadcaster.register(during_delivery, 10)  # a subscriber the delivery calls, before the watch
    store.set("k", 1)
    [(watch, first)] = begun
    got = first or watch.get(timeout=10)  # replayed: it was delivered when the watch began
    assert got is not None and got.kv.value == 1
    watch.close()
