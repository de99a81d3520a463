"""StateStore at the component level: what the SDK tests cannot reach directly.

A controllable clock makes TTL expiry deterministic (no waiting), and the Follower returned by
watch() is driven by hand to prove the replay/live seam and the resume points.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from fake_clock import FakeClock
from voltorch_server.components import Closed
from voltorch_server.components.events import EventLog
from voltorch_server.components.state import (
    Condition,
    SetOp,
    StateStore,
)
from voltorch_server.errors import Conflict, InvalidArgument, NotFound
from voltorch_server.storage import Database
from voltorch_server.storage.stores import SqlEvents, SqlState

BOTH_BACKENDS = True  # every test using `db` runs on SQLite and on PostgreSQL (tests/conftest.py)


@pytest.fixture
def events(db: Database) -> EventLog:
    return EventLog(SqlEvents(db))


@pytest.fixture
def store(db: Database, events: EventLog, clock: FakeClock) -> Iterator[StateStore]:
    s = StateStore(SqlState(db), events, clock=clock)  # not started: no background sweeper racing the tests
    yield s
    s.stop()


def _state_events(events: EventLog) -> list[dict]:
    return [e.data for e in events.read_after(0, 10_000) if e.type == "state.changed"]


def test_global_revision_and_per_key_versions(store: StateStore) -> None:
    assert store.revision == 0
    a1, r1 = store.set("a", 1)
    a2, r2 = store.set("a", 2)
    b1, r3 = store.set("b", "x")
    assert (r1, r2, r3) == (1, 2, 3)
    assert (a1.version, a2.version, b1.version) == (1, 2, 1)
    assert a2.create_revision == 1 and a2.mod_revision == 2
    assert b1.create_revision == 3
    r4, prev = store.delete("a")
    assert r4 == 4 and prev.version == 2 and prev.value == 2
    a_again, r5 = store.set("a", 3)
    # A key created again starts over: version 1, a new create_revision.
    assert (a_again.version, a_again.create_revision, r5) == (1, 5, 5)
    assert store.get("a") == a_again
    assert store.revision == 5


def test_ttl_expiry_follows_the_clock_and_the_sweep_records_a_delete(
    store: StateStore, events: EventLog, clock: FakeClock
) -> None:
    kv, _ = store.set("lease", {"owner": "w1"}, ttl=10)
    store.set("forever", 1)
    assert kv.expire_time == pytest.approx(clock.now + 10)
    clock.now += 10.5
    # Expired but not yet swept: invisible to Get and List already.
    with pytest.raises(NotFound):
        store.get("lease")
    assert [k.key for k in store.list()[0]] == ["forever"]
    revision = store.revision
    assert store.expire_due() == 1
    assert store.expire_due() == 0
    assert store.revision == revision + 1
    newest = store.history("lease")[0][0]
    assert (newest.type, newest.kv.version, newest.revision) == ("DELETE", 1, revision + 1)
    assert _state_events(events)[-1] == {
        "key": "lease",
        "type": "delete",
        "version": 1,
        "revision": revision + 1,
        "value": None,
    }


def test_writing_an_expired_key_records_its_expiry_then_creates_it_anew(
    store: StateStore, clock: FakeClock
) -> None:
    store.set("k", "old", ttl=5)
    clock.now += 6
    # Compare-and-set "must not exist" holds for an expired key.
    kv, revision = store.set("k", "new", expected_version=0)
    assert (kv.version, kv.create_revision) == (1, revision)
    changes = store.history("k")[0]
    assert [(c.type, c.revision) for c in changes] == [
        ("PUT", revision),
        ("DELETE", revision),
        ("PUT", revision - 1),
    ]


def test_delete_of_an_expired_key_is_not_found_and_writes_nothing(
    store: StateStore, clock: FakeClock
) -> None:
    store.set("k", 1, ttl=1)
    clock.now += 2
    revision = store.revision
    with pytest.raises(NotFound):
        store.delete("k")
    assert store.revision == revision


def test_version_conflict_names_key_and_versions(store: StateStore) -> None:
    store.set("k", 1)
    with pytest.raises(Conflict) as info:
        store.set("k", 2, expected_version=5)
    assert info.value.metadata == {"key": "k", "expected_version": "5", "current_version": "1"}
    assert info.value.violations[0].subject == "k"
    with pytest.raises(Conflict):
        store.delete("missing", expected_version=3)


@pytest.mark.parametrize(
    ("value", "field"),
    [(float("nan"), "value"), (object(), "value"), ("x" * (1 << 20), "value")],
)
def test_values_that_are_not_json_or_too_big_are_rejected(store: StateStore, value, field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        store.set("k", value)
    assert info.value.violations[0].field == field
    assert store.revision == 0


def test_transaction_shares_one_revision_and_events_in_order(store: StateStore, events: EventLog) -> None:
    store.set("a", 1)
    result = store.transaction(
        [Condition("a", version_equals=1)],
        [SetOp("a", 2), SetOp("b", 3)],
    )
    assert result.succeeded and result.revision == 2
    assert [(k.key, k.mod_revision) for k in result.kvs] == [("a", 2), ("b", 2)]
    assert [(e["key"], e["revision"]) for e in _state_events(events)] == [("a", 1), ("a", 2), ("b", 2)]


def test_follower_replays_then_follows_live_without_gap_or_duplicate(store: StateStore) -> None:
    for i in range(30):
        store.set(f"k{i % 3}", i)
    follower = store.watch(prefix="", start_revision=10)
    done = threading.Event()

    def writer() -> None:
        for i in range(30, 150):
            store.set(f"k{i % 3}", i)
        done.set()

    t = threading.Thread(target=writer)
    t.start()
    got: list[Any] = []
    try:
        while len(got) < 141:
            c = follower.get(timeout=10)
            assert c is not None, "watch stalled"
            got.append(c.revision)
    finally:
        follower.close()
        t.join()
    assert got == list(range(10, 151))


def test_watch_from_a_future_revision_skips_what_commits_before_it(store: StateStore) -> None:
    store.set("k", 0)
    follower = store.watch(key="k", start_revision=4)
    try:
        for i in range(1, 6):
            store.set("k", i)
        got = [follower.get(timeout=5) for _ in range(3)]
    finally:
        follower.close()
    assert [(c.revision, c.kv.value) for c in got if c is not None] == [(4, 3), (5, 4), (6, 5)]


def test_watch_names_exact_resume_points_when_the_component_stops(
    db: Database, events: EventLog, clock: FakeClock
) -> None:
    store = StateStore(SqlState(db), events, clock=clock)
    store.set("x", 1)
    store.set("y", 1)
    idle = store.watch(key="x")  # only new changes; nothing delivered before the stop
    busy = store.watch(prefix="", start_revision=1)
    first = busy.get(timeout=5)
    assert first is not None and first.revision == 1
    store.stop()
    with pytest.raises(Closed) as idle_closed:
        idle.get(timeout=5)
    # Resume right after the current revision, not from the start of history.
    assert store.revision_at(idle_closed.value.resume_from) == 3
    delivered = [1]
    with pytest.raises(Closed) as busy_closed:
        while True:
            change = busy.get(timeout=5)
            assert change is not None
            delivered.append(change.revision)
    # The replayed backlog is still delivered; then the stream ends naming the next revision.
    assert delivered == [1, 2]
    assert store.revision_at(busy_closed.value.resume_from) == 3


def test_transaction_reads_its_conditions_against_expired_keys(store: StateStore, clock: FakeClock) -> None:
    store.set("lock", "holder", ttl=5)
    clock.now += 6
    result = store.transaction([Condition("lock", exists=False)], [SetOp("lock", "me", ttl=5)])
    assert result.succeeded
    assert store.get("lock").value == "me"


def test_restore_skips_snapshot_items_whose_ttl_has_passed(store: StateStore, clock: FakeClock) -> None:
    store.set("s/short", 1, ttl=5)
    store.set("s/long", 2)
    snap = store.snapshot("s/")
    assert snap.key_count == 2
    clock.now += 6
    result = store.restore(snap.id)
    assert (result.keys_restored, result.keys_deleted) == (1, 0)
    assert [k.key for k in store.list("s/")[0]] == ["s/long"]


def test_snapshots_list_newest_first_even_within_one_microsecond(store: StateStore) -> None:
    ids = [store.snapshot(description=str(i)).id for i in range(7)]
    seen, token = [], ""
    while True:
        page, token = store.list_snapshots(3, token)
        seen += [s.id for s in page]
        if not token:
            break
    assert seen == ids[::-1]
