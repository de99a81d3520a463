"""StateStore.set_in: state keys written inside another component's transaction (a workflow checkpoint's),
on SQLite and PostgreSQL; on SQLite also inside transactions that share one COMMIT (`write(group=True)`),
where a part's keys are in the database's open transaction, not yet committed, while the next part runs."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from polling import until
from voltorch_server.components.events import EventLog, NewEvent
from voltorch_server.components.state import StateStore
from voltorch_server.errors import InvalidArgument, NotFound
from voltorch_server.storage import Database
from voltorch_server.storage.stores import SqlEvents, SqlState

BOTH_BACKENDS = True  # every test using `db` runs on SQLite and on PostgreSQL (tests/conftest.py)
WAIT = 10.0


@pytest.fixture
def events(db: Database) -> EventLog:
    return EventLog(SqlEvents(db))


@pytest.fixture
def store(db: Database, events: EventLog) -> Iterator[StateStore]:
    s = StateStore(SqlState(db), events)
    yield s
    s.stop()


def _changed(events: EventLog) -> list[tuple[str, int]]:
    return [
        (e.data["key"], e.data["revision"]) for e in events.read_after(0, 1000) if e.type == "state.changed"
    ]


def test_keys_commit_with_the_callers_transaction_each_a_revision_after_its_events(
    store: StateStore, events: EventLog, db: Database
) -> None:
    store.set("before", 0)
    watch = store.watch(prefix="k.")
    with db.write() as tx:
        events.append(tx, [NewEvent(type="step.done", source="test")])
        kvs = store.set_in(tx, [("k.a", {"x": 1}), ("k.b", [1, 2]), ("k.a", 2)])
        with pytest.raises(NotFound):  # nothing visible before the COMMIT
            store.get("k.a")
    assert [(kv.key, kv.version, kv.mod_revision) for kv in kvs] == [
        ("k.a", 1, 2),
        ("k.b", 1, 3),
        ("k.a", 2, 4),
    ]
    assert store.get("k.a").value == 2 and store.get("k.b").value == [1, 2]
    assert [e.type for e in events.read_after(0, 100)] == ["state.changed", "step.done"] + [
        "state.changed"
    ] * 3
    assert _changed(events) == [("before", 1), ("k.a", 2), ("k.b", 3), ("k.a", 4)]
    heard = watch.take(WAIT)
    assert [(c.kv.key, c.revision) for c in heard] == [("k.a", 2), ("k.b", 3), ("k.a", 4)]
    watch.close()
    kv, revision = store.set("k.a", 3)  # the store's own writes go on from there
    assert (kv.version, revision) == (3, 5)


def test_a_rolled_back_transaction_writes_no_key_and_the_next_write_goes_on(
    store: StateStore, events: EventLog, db: Database
) -> None:
    store.set("a", 1)
    with pytest.raises(RuntimeError), db.write() as tx:
        store.set_in(tx, [("a", 2), ("b", 1)])
        raise RuntimeError("the checkpoint failed")
    assert store.get("a").value == 1 and store.revision == 1
    with pytest.raises(NotFound):
        store.get("b")
    assert _changed(events) == [("a", 1)]
    kv, revision = store.set("a", 3)
    assert (kv.version, revision) == (2, 2)
    with db.write() as tx:
        (b,) = store.set_in(tx, [("b", 1)])
    assert (b.version, b.mod_revision) == (1, 3)
    assert _changed(events) == [("a", 1), ("a", 2), ("b", 3)]


def test_an_invalid_value_is_left_out_and_reported_or_raises_before_anything_is_written(
    store: StateStore, db: Database
) -> None:
    reported: list[tuple[str, str]] = []
    with db.write() as tx:
        store.set_in(
            tx, [("big", "x" * (1 << 20)), ("ok", 1)], invalid=lambda k, e: reported.append((k, e.reason))
        )
    assert reported == [("big", "VALUE_TOO_LARGE")]
    assert store.get("ok").value == 1
    with pytest.raises(NotFound):
        store.get("big")
    with pytest.raises(InvalidArgument), db.write() as tx:
        store.set_in(tx, [("fine", 1), ("bad key", 1)])
    with pytest.raises(NotFound):
        store.get("fine")
    assert store.revision == 1


# -- SQLite: parts of one shared COMMIT -----------------------------------------------------------------


class _Writer(threading.Thread):
    """A `write(group=True)` on its own thread: runs `body(tx)` inside, keeps what it raised."""

    def __init__(self, db: Database, body: Callable[[Any], object]):
        super().__init__(daemon=True)
        self.db, self.body = db, body
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.db.write(group=True) as tx:
                self.body(tx)
        except BaseException as exc:
            self.error = exc


def _then(db: Database, body: Callable[[Any], object], second: threading.Thread) -> Callable[[Any], object]:
    """body, then start `second` and wait until it asks for the writer lock: the part ends with a writer
    waiting, so its transaction is left open for that writer's part (one shared COMMIT)."""

    def run(tx: Any) -> None:
        body(tx)
        second.start()
        until(lambda: len(db._asking) > 0, WAIT)

    return run


def _both(
    db: Database,
    first: Callable[[Any], object],
    second: Callable[[Any], object],
    *,
    first_fails: bool = False,
) -> tuple[_Writer, _Writer]:
    """Two parts of one shared COMMIT (the first's transaction left open for the second); `first_fails`:
    the first part raises once the second waits (its whole transaction rolls back: the second then runs
    alone, after the first's keys were written and undone)."""
    w2 = _Writer(db, second)
    body = _then(db, first, w2)
    if first_fails:
        inner = body

        def body(tx: Any) -> None:
            inner(tx)
            raise ValueError("the first step's checkpoint failed")

    w1 = _Writer(db, body)
    w1.start()
    w1.join(WAIT)
    w2.join(WAIT)
    assert not w1.is_alive() and not w2.is_alive()
    return w1, w2


@pytest.mark.backends("sqlite")  # shared COMMITs are SQLite's (PostgreSQL commits each alone)
def test_two_parts_of_one_commit_each_write_keys(store: StateStore, events: EventLog, db: Database) -> None:
    """The second part's keys are computed against the first's, written but not committed when it runs
    (memory and the cache hold only committed rows: it reads them from its transaction)."""
    store.set("k", 0)
    store.get("k")  # cached, at version 1
    commits = db.commits
    w1, w2 = _both(
        db, lambda tx: store.set_in(tx, [("k", 1)]), lambda tx: store.set_in(tx, [("k", 2), ("b", 1)])
    )
    assert w1.error is None and w2.error is None
    assert db.commits == commits + 1  # one COMMIT for both parts
    k = store.get("k")
    assert (k.value, k.version, k.mod_revision) == (2, 3, 3)
    assert _changed(events) == [("k", 1), ("k", 2), ("k", 3), ("b", 4)]
    kv, revision = store.set("k", 3)
    assert (kv.version, revision) == (4, 5)


@pytest.mark.backends("sqlite")  # shared COMMITs are SQLite's (PostgreSQL commits each alone)
def test_a_part_rolled_back_after_writing_keys_leaves_the_others_and_the_next_writes_right(
    store: StateStore, events: EventLog, db: Database
) -> None:
    store.set("k", 0)

    def fails(tx: Any) -> None:
        store.set_in(tx, [("k", 2), ("c", 1)])
        raise ValueError("the second step's checkpoint failed")

    w1, w2 = _both(db, lambda tx: store.set_in(tx, [("k", 1)]), fails)
    assert w1.error is None and isinstance(w2.error, ValueError)
    assert (store.get("k").value, store.get("k").version, store.revision) == (1, 2, 2)
    with pytest.raises(NotFound):
        store.get("c")
    kv, revision = store.set("c", 5)  # after the rolled-back part: read afresh, no conflict
    assert (kv.version, revision) == (1, 3)
    assert _changed(events) == [("k", 1), ("k", 2), ("c", 3)]


@pytest.mark.backends("sqlite")  # shared COMMITs are SQLite's (PostgreSQL commits each alone)
def test_a_first_part_rolled_back_after_writing_keys_leaves_the_next_part_right(
    store: StateStore, events: EventLog, db: Database
) -> None:
    store.set("k", 0)

    w1, w2 = _both(
        db, lambda tx: store.set_in(tx, [("k", 1)]), lambda tx: store.set_in(tx, [("k", 2)]), first_fails=True
    )
    assert isinstance(w1.error, ValueError) and w2.error is None
    k = store.get("k")
    assert (k.value, k.version, k.mod_revision) == (2, 2, 2)
    assert _changed(events) == [("k", 1), ("k", 2)]
    assert store.set("k", 3)[1] == 3


@pytest.mark.backends("sqlite")
def test_two_parts_of_one_transaction_leave_memory_at_the_later(store: StateStore, db: Database) -> None:
    """Each part's cache update comes first (before subscribers), and the parts keep their order: the
    remembered revision is the later part's, so the next write is not refused as another writer's."""
    store.set("before", 0)
    with db.write() as tx:
        store.set_in(tx, [("k.a", 1)])
        store.set_in(tx, [("k.b", 2)])
    assert store.revision == 3
    kv, revision = store.set("after", 1)
    assert revision == 4 and kv.key == "after"


@pytest.mark.backends("sqlite")
def test_one_key_twice_in_one_transaction_reads_the_later(store: StateStore, db: Database) -> None:
    store.set("k", 0)
    assert store.get("k").value == 0  # cached
    with db.write() as tx:
        store.set_in(tx, [("k", 1)])
        store.set_in(tx, [("k", 2)])
    assert store.get("k").value == 2
