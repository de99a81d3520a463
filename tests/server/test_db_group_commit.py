"""Shared COMMITs (storage/sqlite/db.py, `write(group=True)`): a transaction that finds writers waiting
leaves its transaction open for them; each caller returns once the COMMIT holding its part is done, with
its own outcome; a part that fails is rolled back alone; a COMMIT that fails fails every part of it. Two
workflow steps finishing together commit together, and a rebuild of the engines runs neither again."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from engines import build
from polling import until
from voltorch_server.agents.base import AgentTask, CancelSignal
from voltorch_server.components.system import Storage
from voltorch_server.components.workflows import AgentTaskSpec, StepSpec, Template
from voltorch_server.config import load
from voltorch_server.storage import Database, migrate

WAIT = 10.0


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    d = Database(tmp_path / "g.db", synchronous="FULL")
    with d.write() as tx:
        tx.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
        tx.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        tx.execute(
            "CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES parent(id)"
            " DEFERRABLE INITIALLY DEFERRED)"
        )
    yield d
    d.close()


def _committed(db: Database, sql: str = "SELECT v FROM t ORDER BY id") -> list[Any]:
    """What another connection sees committed."""
    conn = sqlite3.connect(db.path)
    try:
        return [r[0] for r in conn.execute(sql)]
    finally:
        conn.close()


class _Writer(threading.Thread):
    """A `write(group=True)` on its own thread: runs `body(tx)` inside, keeps what it raised."""

    def __init__(self, db: Database, body: Callable[[Any], None], *, group: bool = True):
        super().__init__(daemon=True)
        self.db, self.body, self.group = db, body, group
        self.error: BaseException | None = None
        self.returned = threading.Event()
        self.seen_at_return: list[Any] = []

    def run(self) -> None:
        try:
            with self.db.write(group=self.group) as tx:
                self.body(tx)
        except BaseException as exc:
            self.error = exc
        self.seen_at_return = _committed(self.db)
        self.returned.set()


def _first_waits_for(db: Database, first_body: Callable[[Any], None], second: threading.Thread) -> _Writer:
    """A group writer whose part ends only once `second` is waiting for the writer lock: it then leaves
    the transaction open for it."""

    def body(tx: Any) -> None:
        first_body(tx)
        second.start()
        until(lambda: len(db._asking) > 0, WAIT)  # the second writer asks for the writer lock

    return _Writer(db, body)


def _shared(db: Database, first_body: Callable[[Any], None], second: _Writer) -> _Writer:
    """Run `first_body`'s part, then `second`'s in the transaction it leaves open; both finished."""
    first = _first_waits_for(db, first_body, second)
    first.start()
    first.join(WAIT)
    second.join(WAIT)
    return first


def test_two_concurrent_steps_share_one_commit_and_each_returns_once_it_is_durable(db: Database) -> None:
    heard: list[str] = []

    def second_body(tx: Any) -> None:
        tx.execute("INSERT INTO t (v) VALUES ('b')")
        tx.after_commit(lambda: heard.append("b"))

    def first_body(tx: Any) -> None:
        tx.execute("INSERT INTO t (v) VALUES ('a')")
        tx.after_commit(lambda: heard.append("a"))

    commits = db.commits
    second = _Writer(db, second_body)
    first = _shared(db, first_body, second)
    assert first.error is None and second.error is None
    assert db.commits == commits + 1  # one COMMIT for both
    assert first.seen_at_return == ["a", "b"]  # the first returned only once the shared COMMIT was done
    assert second.seen_at_return == ["a", "b"]
    assert heard == ["a", "b"]  # callbacks after the COMMIT, in the order of the parts


def test_three_parts_of_one_group_each_return_once_their_shared_commit_is_done(db: Database) -> None:
    """The second part too finds the group open (a third writer waits): both wait for the one COMMIT."""

    def insert(v: str) -> Callable[[Any], None]:
        return lambda tx: tx.execute("INSERT INTO t (v) VALUES (?)", (v,))

    commits = db.commits
    third = _Writer(db, insert("c"))
    second = _first_waits_for(db, insert("b"), third)
    first = _first_waits_for(db, insert("a"), second)
    first.start()
    for w in (first, second, third):
        w.join(WAIT)
        assert not w.is_alive() and w.error is None
    assert db.commits == commits + 1
    assert first.seen_at_return == second.seen_at_return == third.seen_at_return == ["a", "b", "c"]


def test_a_part_that_fails_is_rolled_back_alone_and_only_its_caller_hears(db: Database) -> None:
    def second_body(tx: Any) -> None:
        tx.execute("INSERT INTO t (v) VALUES ('b')")
        raise ValueError("the second step's own failure")

    second = _Writer(db, second_body)
    first = _shared(db, lambda tx: tx.execute("INSERT INTO t (v) VALUES ('a')"), second)
    assert first.error is None
    assert isinstance(second.error, ValueError)
    assert _committed(db) == ["a"]
    with db.write(group=True) as tx:  # the writer goes on as usual
        tx.execute("INSERT INTO t (v) VALUES ('c')")
    assert _committed(db) == ["a", "c"]


def test_a_commit_that_fails_fails_every_part_and_writes_nothing(db: Database) -> None:
    """The second part breaks a deferred foreign key: the shared COMMIT is refused, for both parts."""
    second = _Writer(db, lambda tx: tx.execute("INSERT INTO child (parent) VALUES (42)"))
    first = _shared(db, lambda tx: tx.execute("INSERT INTO t (v) VALUES ('a')"), second)
    assert isinstance(first.error, sqlite3.IntegrityError)
    assert isinstance(second.error, sqlite3.IntegrityError)
    assert _committed(db) == [] and _committed(db, "SELECT parent FROM child") == []
    with db.write(group=True) as tx:
        tx.execute("INSERT INTO t (v) VALUES ('c')")
    assert _committed(db) == ["c"]


def test_a_part_rolled_back_alone_runs_its_rollback_callbacks_and_the_others_commit(db: Database) -> None:
    heard: list[str] = []

    def second_body(tx: Any) -> None:
        tx.execute("INSERT INTO t (v) VALUES ('b')")
        tx.after_rollback(lambda: heard.append(f"b rolled back, the group still open: {_committed(db)}"))
        tx.after_commit(lambda: heard.append("b committed"))
        raise ValueError("the second step's own failure")

    def first_body(tx: Any) -> None:
        tx.execute("INSERT INTO t (v) VALUES ('a')")
        tx.after_rollback(lambda: heard.append("a rolled back"))
        tx.after_commit(lambda: heard.append("a committed"))

    second = _Writer(db, second_body)
    first = _shared(db, first_body, second)
    assert first.error is None and isinstance(second.error, ValueError)
    assert heard == ["b rolled back, the group still open: []", "a committed"]
    assert _committed(db) == ["a"]


def test_a_commit_that_fails_runs_every_parts_rollback_callbacks_and_no_after_commit_one(
    db: Database,
) -> None:
    """The second part breaks a deferred foreign key: the shared COMMIT is refused; both parts' rollback
    callbacks run (the newest part's first), once it is rolled back, and neither part's after-commit ones."""
    heard: list[str] = []

    def second_body(tx: Any) -> None:
        tx.execute("INSERT INTO child (parent) VALUES (42)")
        tx.after_rollback(lambda: heard.append(f"b rolled back: {db._writer.in_transaction}"))
        tx.after_commit(lambda: heard.append("b committed"))

    def first_body(tx: Any) -> None:
        tx.execute("INSERT INTO t (v) VALUES ('a')")
        tx.after_rollback(lambda: heard.append(f"a rolled back: {db._writer.in_transaction}"))
        tx.after_commit(lambda: heard.append("a committed"))

    second = _Writer(db, second_body)
    first = _shared(db, first_body, second)
    assert isinstance(first.error, sqlite3.IntegrityError)
    assert isinstance(second.error, sqlite3.IntegrityError)
    assert heard == ["b rolled back: False", "a rolled back: False"]
    assert _committed(db) == []


def test_a_failing_callback_is_its_own_parts_error_after_the_commit(db: Database) -> None:
    def first_body(tx: Any) -> None:
        tx.execute("INSERT INTO t (v) VALUES ('a')")
        tx.after_commit(lambda: (_ for _ in ()).throw(RuntimeError("a's callback")))

    second = _Writer(db, lambda tx: tx.execute("INSERT INTO t (v) VALUES ('b')"))
    first = _shared(db, first_body, second)
    assert isinstance(first.error, RuntimeError)
    assert second.error is None
    assert _committed(db) == ["a", "b"]


def test_a_writer_that_may_not_share_commits_the_open_group_first(db: Database) -> None:
    alone_saw: list[Any] = []

    def alone_body(tx: Any) -> None:
        alone_saw.extend(_committed(db))  # the group's part is committed before this transaction begins
        tx.execute("INSERT INTO t (v) VALUES ('alone')")

    commits = db.commits
    alone = _Writer(db, alone_body, group=False)
    first = _first_waits_for(db, lambda tx: tx.execute("INSERT INTO t (v) VALUES ('a')"), alone)
    first.start()
    first.join(WAIT)
    alone.join(WAIT)
    assert first.error is None and alone.error is None
    assert alone_saw == ["a"]
    assert db.commits == commits + 2
    assert _committed(db) == ["a", "alone"]


def test_with_group_commit_off_every_transaction_commits_alone(tmp_path: Path) -> None:
    db = Database(tmp_path / "one.db", group_max=1)
    try:
        with db.write() as tx:
            tx.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
        commits = db.commits
        at_first_commit: list[Any] = []

        def first_body(tx: Any) -> None:
            tx.execute("INSERT INTO t (v) VALUES ('a')")
            tx.after_commit(lambda: at_first_commit.extend(_committed(db)))

        second = _Writer(db, lambda tx: tx.execute("INSERT INTO t (v) VALUES ('b')"))
        first = _shared(db, first_body, second)
        assert first.error is None and second.error is None
        assert at_first_commit == ["a"]  # committed on its own, before the second ran
        assert db.commits == commits + 2
    finally:
        db.close()


def test_a_writer_from_an_after_commit_callback_runs_alone(db: Database) -> None:
    """Callbacks run under the writer lock: a write from one is re-entrant and must not wait for a group."""

    def nested() -> None:
        with db.write(group=True) as tx:
            tx.execute("INSERT INTO t (v) VALUES ('nested')")

    with db.write(group=True) as tx:
        tx.execute("INSERT INTO t (v) VALUES ('outer')")
        tx.after_commit(nested)
    assert _committed(db) == ["outer", "nested"]


# -- workflow steps: their transactions share COMMITs --------------------------------------------------


class _HandsOn(Database):
    """A database whose next step transaction (`group=True`) ends its part only once another writer
    waits for the lock (`arm()`): that step's part is then left open for the other's."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.armed = threading.Event()
        self.waited = threading.Event()
        self.groups: list[int] = []  # parts per shared COMMIT

    def arm(self) -> None:
        self.armed.set()

    @contextmanager
    def write(self, *, lock: str | None = None, group: bool = False) -> Iterator[Any]:
        with super().write(lock=lock, group=group) as tx:
            yield tx
            if group and self.armed.is_set() and not self.waited.is_set():
                self.armed.clear()
                self.waited.set()  # the other step goes on now and asks for the writer lock
                until(lambda: len(self._asking) > 0, WAIT)

    def _commit_group(self, group: Any) -> None:
        self.groups.append(len(group.parts))
        super()._commit_group(group)


def test_two_workflows_steps_finishing_together_share_a_commit_and_a_rebuild_reruns_neither(
    tmp_path: Path,
) -> None:
    db = _HandsOn(tmp_path / "wf.db", synchronous="FULL")
    migrate(db)
    engines = build(db)
    calls: list[str] = []

    def first(task: AgentTask, cancel: CancelSignal) -> str:
        calls.append("first")
        db.arm()  # this step's record waits for the second's
        return "one"

    def second(task: AgentTask, cancel: CancelSignal) -> str:
        assert db.waited.wait(WAIT)  # finishes while the first step's part waits in the open transaction
        calls.append("second")
        return "two"

    try:
        for name, fn in (("first", first), ("second", second)):
            engines.coordination.register_agent(name, kind="function", capabilities=(name,), runtime=fn)
            engines.workflows.register_template(
                Template(name=name, steps=(StepSpec("s", AgentTaskSpec("x", capabilities=(name,))),))
            )
        b, _ = engines.workflows.start_execution("second")
        a, _ = engines.workflows.start_execution("first")
        assert engines.finished(a.id).status == "completed"
        assert engines.finished(b.id).status == "completed"
        assert db.groups and max(db.groups) >= 2  # the two steps' records went in with one COMMIT
    finally:
        engines.stop()
    again = build(db)  # as a restarted server: nothing that finished runs again
    try:
        assert again.workflows.get(a.id).status == "completed"
        assert again.workflows.get(b.id).status == "completed"
        assert sorted(calls) == ["first", "second"]
    finally:
        again.stop()
        db.close()


def test_the_storage_details_say_how_long_the_writer_lock_was_held_and_in_commit(db: Database) -> None:
    storage = Storage(db)
    before = storage.details()
    with db.write() as tx:
        tx.execute("INSERT INTO t (v) VALUES ('a')")
    after = storage.details()
    assert after["commits"] == before["commits"] + 1
    assert after["writer_held"] > before["writer_held"]
    assert after["commit_time"] > before["commit_time"]  # a COMMIT with synchronous=FULL: an fsync
    assert after["writer_held"] - before["writer_held"] >= after["commit_time"] - before["commit_time"]
    assert after["writer_waited"] >= before["writer_waited"]
    # one hold (outermost), its holder's CPU, and its sqlite3 calls: BEGIN, the INSERT, COMMIT
    assert after["writer_holds"] == before["writer_holds"] + 1
    assert after["writer_calls"] == before["writer_calls"] + 3
    assert 0 < after["writer_cpu"] - before["writer_cpu"] <= after["writer_held"] - before["writer_held"]
    # of the holder's CPU, what its COMMIT took (the fsync's share of a workflow step, for the bench)
    assert 0 < after["commit_cpu"] - before["commit_cpu"] <= after["writer_cpu"] - before["writer_cpu"]


def test_a_nested_write_is_counted_in_its_outer_hold(db: Database) -> None:
    """Counters of holds: a write() inside a write() (an after-commit callback's) is the same hold."""
    storage = Storage(db)
    before = storage.details()

    def again() -> None:
        with db.write() as inner:
            inner.execute("INSERT INTO t (v) VALUES ('b')")

    with db.write() as tx:
        tx.execute("INSERT INTO t (v) VALUES ('a')")
        tx.after_commit(again)
    after = storage.details()
    assert after["writer_holds"] == before["writer_holds"] + 1
    assert after["writer_calls"] >= before["writer_calls"] + 5  # two INSERTs, BEGIN, COMMIT, and the inner's


def test_an_insert_alone_commits_the_open_group_first_and_is_its_own_transaction(db: Database) -> None:
    """A Publish's one-statement transaction under the writer lock (`insert_alone`): it must not land in the
    open transaction of a group, nor hear of its rows before they are committed."""
    seen: list[Any] = []

    def then(last: int) -> int:
        seen.extend(_committed(db))
        return last

    class _Insert(threading.Thread):
        def run(self) -> None:
            db.insert_alone("INSERT INTO t (v)", [("alone",)], then)

    commits = db.commits
    alone = _Insert(daemon=True)
    first = _first_waits_for(db, lambda tx: tx.execute("INSERT INTO t (v) VALUES ('a')"), alone)
    first.start()
    first.join(WAIT)
    alone.join(WAIT)
    assert first.error is None
    assert seen == ["a", "alone"]  # both committed when its callback ran
    assert db.commits == commits + 2


@pytest.mark.parametrize("value", ["0", "1001", "many"])
def test_a_group_size_out_of_range_is_refused_naming_the_setting(value: str) -> None:
    with pytest.raises(ValueError, match=f"db_group_commit.*{value}"):
        load(env={"VOLTORCH_DB_GROUP_COMMIT": value})
