"""The StateStore's in-memory row cache and remembered revision must never show anything but the
committed database: after writes, rollbacks, TTL expiry, restarts and concurrent writers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_clock import FakeClock
from voltorch_server.components.events import EventLog
from voltorch_server.components.state import KVCache, Row, SetOp, StateStore
from voltorch_server.errors import Aborted, Conflict, NotFound
from voltorch_server.storage import Database
from voltorch_server.storage.stores import SqlEvents, SqlState


@pytest.fixture
def store(db: Database, clock: FakeClock) -> Iterator[StateStore]:
    s = StateStore(SqlState(db), EventLog(SqlEvents(db)), clock=clock)
    yield s
    s.stop()


def _db_row(db: Database, key: str) -> tuple | None:
    r = db.query_one("SELECT value, version, mod_revision FROM kv WHERE key = ?", (key,))
    return tuple(r) if r is not None else None


def _db_revision(db: Database) -> int:
    return db.query("SELECT value FROM meta WHERE name = 'revision'")[0][0]


def test_reads_follow_writes_deletes_and_ttl(store: StateStore, db: Database, clock: FakeClock) -> None:
    store.set("k", {"n": 1})
    assert store.get("k").value == {"n": 1}  # now cached
    store.set("k", {"n": 2}, ttl=10)
    assert store.get("k").value == {"n": 2}
    clock.now += 11
    with pytest.raises(NotFound):
        store.get("k")
    store.set("k", 3)  # the expired key is deleted and created afresh
    assert store.get("k").version == 1
    store.delete("k")
    with pytest.raises(NotFound):
        store.get("k")
    assert _db_row(db, "k") is None


def test_each_read_gets_its_own_value(store: StateStore) -> None:
    store.set("k", {"list": [1]})
    store.get("k").value["list"].append(2)  # a caller mutating what it got
    assert store.get("k").value == {"list": [1]}


def test_a_rolled_back_write_changes_neither_cache_nor_revision(store: StateStore, db: Database) -> None:
    store.set("k", "v1")
    store.get("k")
    with pytest.raises(Conflict):
        store.set("k", "v2", expected_version=7)
    result = store.transaction([], [SetOp("k", "v3"), SetOp("other", 1, expected_version=5)])
    assert not result.succeeded
    assert store.get("k").value == "v1" and _db_row(db, "k") == ('"v1"', 1, 1)
    _, rev = store.set("k", "v4")
    assert rev == 2 == _db_revision(db) == store.revision


def test_revision_is_reread_after_a_restart(store: StateStore, db: Database) -> None:
    store.set("a", 1)
    store.stop()
    with db.write() as tx:  # something the cache cannot know about while the component is down
        tx.execute("UPDATE meta SET value = 41 WHERE name = 'revision'")
        tx.execute("UPDATE kv SET value = '7' WHERE key = 'a'")
    store.start()
    assert store.get("a").value == 7
    assert store.set("b", 1)[1] == 42


def test_a_second_process_writing_the_database_is_noticed(store: StateStore, db_path: Path) -> None:
    """One server per database file is the design; a second writer must still never corrupt revisions."""
    store.set("k", 1)
    other_db = Database(db_path)
    try:
        StateStore(SqlState(other_db), EventLog(SqlEvents(other_db))).set(
            "k", 2
        )  # revision 2, behind this store's back
    finally:
        other_db.close()
    with pytest.raises(Aborted):
        store.set("k", 3)  # nothing written: this store's memory was stale
    kv, rev = store.set("k", 3)  # the retry starts afresh
    assert (rev, kv.version) == (3, 3)
    assert store.get("k").value == 3


def test_a_stale_fill_is_ignored() -> None:
    cache = KVCache()
    old, new = Row("k", "1", 1, 1, 1, None, 0.0), Row("k", "2", 2, 1, 2, None, 0.0)
    generation = cache.generation  # a reader about to query the database...
    cache.apply([("k", new)])  # ...while a write commits
    cache.fill(old, generation)  # the reader's (older) row must not replace the newer one
    assert cache.get("k") == new
    cache.apply([("k", None)])
    assert cache.get("k") is None


def test_bounded_by_entries_and_bytes() -> None:
    cache = KVCache(max_entries=3, max_bytes=1600)
    for i in range(5):
        cache.fill(Row(f"k{i}", "x", 1, 1, 1, None, 0.0), cache.generation)
    assert len(cache) == 3 and cache.get("k0") is None and cache.get("k4") is not None
    cache.fill(Row("big", "x" * 200, 1, 1, 1, None, 0.0), cache.generation)  # > max_bytes / 16
    assert cache.get("big") is None


def test_concurrent_compare_and_set_and_reads_stay_consistent(store: StateStore, db: Database) -> None:
    store.set("counter", 0)
    writers, increments = 4, 50
    errors: list[BaseException] = []
    done = threading.Event()

    def writer() -> None:
        try:
            made = 0
            while made < increments:
                kv = store.get("counter")
                try:
                    store.set("counter", kv.value + 1, expected_version=kv.version)
                    made += 1
                except Conflict:
                    pass
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        try:
            last = 0
            while not done.is_set():
                kv = store.get("counter")
                assert kv.version == kv.value + 1, kv  # value and version always from one commit
                assert kv.version >= last  # never goes back
                last = kv.version
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(writers)]
    readers = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads + readers:
        t.start()
    for t in threads:
        t.join(timeout=60)
    done.set()
    for t in readers:
        t.join(timeout=60)
    assert not errors, errors[0]
    total = writers * increments
    assert store.get("counter").value == total
    assert _db_row(db, "counter") == (str(total), total + 1, total + 1)
    assert store.revision == _db_revision(db) == total + 1
