"""Group commit: concurrent state writes share one transaction, yet each keeps its own result, its own
revision, its own error and its own events, and a batch that fails leaves nothing behind."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest
from opentelemetry import trace
from voltorch_server import telemetry
from voltorch_server.components.events import EventLog
from voltorch_server.components.state import SetOp, StateStore
from voltorch_server.errors import Conflict, NotFound
from voltorch_server.storage import Database, GroupCommit, Pending, Take, TransactionConflict
from voltorch_server.storage.sqlite import db as storage_db
from voltorch_server.storage.stores import SqlEvents, SqlState


@pytest.fixture
def events(db: Database) -> EventLog:
    return EventLog(SqlEvents(db))


@pytest.fixture
def store(db: Database, events: EventLog) -> Iterator[StateStore]:
    s = StateStore(SqlState(db), events)  # not started: no TTL sweeper writing beside the tests
    yield s
    s.stop()


def _has_length(items: Any, n: int) -> bool:
    return len(items) == n


def _wait_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll a condition nothing signals (how many callers have queued), bounded."""
    pause = threading.Event()
    for _ in range(int(timeout / 0.002)):
        if check():
            return
        pause.wait(0.002)  # bounded
    raise AssertionError("condition not reached in time")


def _in_threads(
    calls: list[Callable[[], Any]], queue: Any = None
) -> tuple[list[threading.Thread], list[Any]]:
    """Start one thread per call; outcomes[i] is its result or the exception it raised. With a group
    commit's queue, each thread is started once the one before it has queued (so in a known order)."""
    outcomes: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            outcomes[i] = calls[i]()
        except Exception as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    queued = len(queue) if queue is not None else 0
    for i, t in enumerate(threads):
        t.start()
        if queue is not None:
            _wait_until(partial(_has_length, queue, queued + i + 1))
    return threads, outcomes


def _queued_batch(
    store: StateStore, db: Database, calls: list[Callable[[], Any]]
) -> tuple[list[Any], list[int]]:
    """Run calls so that all of them land in ONE batch: the writer lock is held while they queue (the
    leader opens the transaction before it takes anything). Returns their outcomes and the sizes of the
    batches that ran."""
    sizes: list[int] = []
    group = store._group
    run = group._run

    def recording(take: Take) -> None:
        sizes.append(0)

        def counted() -> list[Pending]:
            ops = take()
            sizes[-1] += len(ops)
            return ops

        run(counted)

    group._run = recording
    try:
        with db.write():  # the first caller leads and waits for this lock; the others queue behind it
            threads, outcomes = _in_threads(calls, group._queue)
        for t in threads:
            t.join(10)
    finally:
        group._run = run
    return outcomes, sizes


def _revision(db: Database) -> int:
    return db.query("SELECT value FROM meta WHERE name = 'revision'")[0][0]


def _state_events(events: EventLog) -> list[dict]:
    return [e.data for e in events.read_after(0, 10_000) if e.type == "state.changed"]


# -- the mechanism ----------------------------------------------------------------------------------


def test_each_caller_gets_its_own_result_or_error_and_batches_are_bounded() -> None:
    sizes: list[int] = []
    gate = threading.Event()

    def run(take: Take) -> None:
        ops = take()
        sizes.append(len(ops))
        gate.wait(10)  # the first batch holds on while the others queue
        while ops:
            for p in ops:
                if p.op < 0:
                    p.error = ValueError(p.op)
                else:
                    p.result = p.op * 10
            ops = take()  # those that queued meanwhile join, up to the bound
            sizes[-1] += len(ops)

    group = GroupCommit(run, max_batch=4)
    threads, outcomes = _in_threads([partial(group.submit, i) for i in range(1)])
    _wait_until(lambda: len(sizes) == 1)
    more, more_outcomes = _in_threads([partial(group.submit, i) for i in (1, -2, 3, 4, 5, 6)], group._queue)
    gate.set()
    for t in threads + more:
        t.join(10)
    assert outcomes == [0]
    assert [o if not isinstance(o, ValueError) else "error" for o in more_outcomes] == [
        10,
        "error",
        30,
        40,
        50,
        60,
    ]
    assert sizes == [4, 3]  # the first transaction took in three late-comers, up to max_batch
    assert not group._queue


def test_a_batch_that_raises_fails_every_caller_in_it_and_the_next_batch_runs() -> None:
    boom = RuntimeError("disk full")
    calls = []

    def run(take: Take) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise boom  # before taking anything: the leader's own operation still hears of it
        for p in take():
            p.result = "ok"

    group = GroupCommit(run)
    with pytest.raises(RuntimeError) as first:
        group.submit(1)
    assert first.value is boom
    assert group.submit(2) == "ok"


def test_a_batch_rolled_back_by_a_conflict_runs_again_and_callers_get_the_committed_attempt() -> None:
    """A serialization failure or deadlock (TransactionConflict) rolls the whole batch back: it runs again
    with the same operations first, and each caller gets the result of the attempt that committed."""
    attempts: list[list[int]] = []
    committed: list[list[int]] = []

    def run(take: Take) -> None:
        done: list[int] = []
        while ops := take():
            for p in ops:
                p.result = (p.op, len(attempts))  # set anew by every attempt
                done.append(p.op)
        attempts.append(done)
        if len(attempts) < 3:
            raise TransactionConflict("deadlock detected", reason="CONCURRENT_WRITER")
        committed.append(done)

    group = GroupCommit(run)
    assert group.submit(7) == (7, 2)
    assert attempts == [[7], [7], [7]] and committed == [[7]]

    def never(take: Take) -> None:
        take()
        raise TransactionConflict("could not serialize access", reason="CONCURRENT_WRITER")

    with pytest.raises(TransactionConflict):  # retries are bounded: the client hears Aborted
        GroupCommit(never).submit(1)


# -- the state store --------------------------------------------------------------------------------


def test_concurrent_writers_get_dense_ordered_revisions_seen_once_by_watch_and_events(
    store: StateStore, db: Database, events: EventLog
) -> None:
    follower = store.watch(prefix="")
    writers, per_writer = 8, 25

    def work(w: int) -> list[tuple[int, int]]:
        out = []
        for i in range(per_writer):
            kv, rev = store.set(f"w{w}/k{i % 5}", {"w": w, "i": i})
            assert kv.value == {"w": w, "i": i} and kv.mod_revision == rev
            out.append((rev, kv.version))
        return out

    threads, outcomes = _in_threads([partial(work, w) for w in range(writers)])
    for t in threads:
        t.join(30)
    total = writers * per_writer
    revisions = sorted(rev for out in outcomes for rev, _ in out)
    assert revisions == list(range(1, total + 1))  # one each, no gap, no repeat
    for out in outcomes:
        assert [rev for rev, _ in out] == sorted(rev for rev, _ in out)  # a caller's writes stay in order
        assert [v for _, v in out] == [1] * 5 + [2] * 5 + [3] * 5 + [4] * 5 + [5] * 5
    seen: list[Any] = []
    try:
        while len(seen) < total:
            c = follower.get(timeout=10)
            assert c is not None, "watch stalled"
            seen.append(c)
    finally:
        follower.close()
    assert [c.revision for c in seen] == list(range(1, total + 1))
    assert [c.id for c in seen] == sorted(c.id for c in seen)
    assert [e["revision"] for e in _state_events(events)] == list(range(1, total + 1))
    assert _revision(db) == total == store.revision
    history = db.query("SELECT id, revision FROM kv_history ORDER BY id")
    assert [r["revision"] for r in history] == list(range(1, total + 1))
    assert [r["id"] for r in history] == [c.id for c in seen]


def test_a_conflict_in_a_batch_fails_only_that_write(
    store: StateStore, db: Database, events: EventLog
) -> None:
    store.set("cas", "v1")
    outcomes, sizes = _queued_batch(
        store,
        db,
        [
            lambda: store.set("a", 1),
            lambda: store.set("cas", "v2", expected_version=1),
            lambda: store.set("b", 2),
            lambda: store.set("cas", "v3", expected_version=1),  # loses: the write before it made version 2
            lambda: store.delete("missing"),
            lambda: store.transaction([], [SetOp("c", 3), SetOp("a", 4, expected_version=1)]),
        ],
    )
    assert sizes == [6]  # the leader took everything that queued while it waited to open the transaction
    a, cas2, b, cas3, missing, txn = outcomes
    assert isinstance(cas3, Conflict) and isinstance(missing, NotFound)
    assert (a[0].version, cas2[0].version, b[0].version) == (1, 2, 1)
    assert txn.succeeded and [kv.key for kv in txn.kvs] == ["c", "a"]
    assert sorted([a[1], cas2[1], b[1], txn.revision]) == [2, 3, 4, 5]
    assert store.get("cas").value == "v2" and store.get("a").value == 4 and store.get("c").value == 3
    assert _revision(db) == 5
    assert [(e["key"], e["revision"]) for e in _state_events(events)][1:] == sorted(
        [("a", a[1]), ("cas", cas2[1]), ("b", b[1]), ("c", txn.revision), ("a", txn.revision)],
        key=lambda x: x[1],
    )


def test_a_batch_whose_sql_fails_writes_nothing_and_every_caller_hears(
    store: StateStore, db: Database, events: EventLog
) -> None:
    store.set("before", 0)
    follower = store.watch(prefix="")
    append = events.append

    def failing(tx: Any, evs: Any) -> Any:
        append(tx, evs)  # the rows are in the transaction...
        raise RuntimeError("the disk is full")  # ...and then it fails

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(events, "append", failing)
        outcomes, sizes = _queued_batch(
            store, db, [lambda: store.set("x", 1), lambda: store.set("y", 2), lambda: store.delete("before")]
        )
    assert sizes == [3]
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    assert _revision(db) == 1 == store.revision
    assert db.query("SELECT COUNT(*) FROM kv")[0][0] == 1
    assert db.query("SELECT COUNT(*) FROM kv_history")[0][0] == 1
    assert len(_state_events(events)) == 1
    assert store.get("before").value == 0
    with pytest.raises(NotFound):
        store.get("x")
    kv, rev = store.set("x", 3)  # the next write carries on where the last commit left off
    assert (rev, kv.version) == (2, 1)
    change = follower.get(timeout=10)  # and it is the first thing watchers hear
    assert change is not None and (change.revision, change.kv.key) == (2, "x")
    follower.close()
    assert [r["revision"] for r in db.query("SELECT revision FROM kv_history ORDER BY id")] == [1, 2]


def test_events_carry_each_callers_trace_whoever_leads_the_batch(
    store: StateStore, db: Database, events: EventLog
) -> None:
    telemetry.install()
    expected: dict[str, str] = {}

    def traced(key: str) -> Callable[[], Any]:
        def call() -> Any:
            with telemetry.tracer.start_as_current_span(f"write {key}"):
                expected[key] = format(trace.get_current_span().get_span_context().trace_id, "032x")
                return store.set(key, key)

        return call

    _queued_batch(store, db, [traced("t1"), traced("t2"), traced("t3")])
    got = {e.data["key"]: e.trace_id for e in events.read_after(0, 100) if e.type == "state.changed"}
    assert got == expected and len(set(got.values())) == 3


def test_rows_go_in_with_as_few_statements_as_the_parameter_limit_allows(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage_db, "_MAX_PARAMETERS", 7 * 3)  # three kv rows per statement
    statements: list[str] = []
    with db.write() as tx:
        db._writer.set_trace_callback(statements.append)
        try:
            tx.insert_rows(
                "INSERT INTO kv(key, value, version, create_revision, mod_revision, expire_at, update_time)",
                [(f"k{i}", str(i), 1, 1, 1, None, 0.0) for i in range(7)],
            )
        finally:
            db._writer.set_trace_callback(None)
    assert len(statements) == 3  # 3 + 3 + 1 rows
    assert [r["value"] for r in db.query("SELECT value FROM kv ORDER BY key")] == [str(i) for i in range(7)]
