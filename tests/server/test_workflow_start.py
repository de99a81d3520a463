"""Starting executions: concurrent starts keep the concurrency limit, the reply is the execution as its
start left it, a start that fails leaves nothing written and nothing held (its deadline cancelled too);
and the complete workflow's requirement.<id> keys are written in the transaction of the checkpoint that
produces them. SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import voltorch
from engines import WAIT, Engines
from polling import until
from voltorch_server.agents.base import AgentTask, CancelSignal
from voltorch_server.app import VoltorchServer
from voltorch_server.components.workflows import (
    TERMINAL_EVENTS,
    AgentTaskSpec,
    ParameterSpec,
    StepSpec,
    Template,
)
from voltorch_server.components.workflows.templates import INTEGER
from voltorch_server.errors import AlreadyExists

BOTH_BACKENDS = True  # every test using `db` runs on SQLite and on PostgreSQL (tests/conftest.py)


@pytest.fixture
def held(engines: Engines) -> Iterator[threading.Event]:
    """An agent ("held") whose tasks wait for the returned event: their executions keep running."""
    gate = threading.Event()

    def hold(t: AgentTask, cancel: CancelSignal) -> str:
        gate.wait(WAIT)
        return "done"

    engines.coordination.register_agent(
        "held", kind="function", capabilities=("held",), max_concurrency=64, runtime=hold
    )
    engines.workflows.register_template(
        Template(
            name="held",
            parameters=(ParameterSpec("n", INTEGER, default=0, has_default=True),),
            steps=(
                StepSpec("a", AgentTaskSpec("a {{n}}", capabilities=("held",))),
                StepSpec("b", AgentTaskSpec("b", capabilities=("upper",)), depends_on=("a",)),
            ),
        )
    )
    yield gate
    gate.set()


def _rows(engines: Engines) -> list[Any]:
    return engines.stores.executions.page(
        status="", template_name="", created_after=None, created_before=None, before=None, limit=1000
    )


def test_concurrent_starts_run_up_to_the_limit_and_queue_the_rest(engines: Engines, held) -> None:
    wf = engines.workflows
    wf.concurrency = 3
    with ThreadPoolExecutor(12) as pool:
        replies = list(pool.map(lambda i: wf.start_execution("held", parameters={"n": i})[0], range(12)))
    assert len({r.id for r in replies}) == 12
    assert sorted(r.status for r in replies) == ["queued"] * 9 + ["running"] * 3
    assert wf.details()["active_workflows"] == 3 and wf.details()["queued_workflows"] == 9
    for r in replies:  # the reply is what the start committed: the same as reading it now
        if r.status == "running":
            assert r == wf.get(r.id)
            assert [s.status for s in r.steps] == ["running", "pending"] and r.start_time is not None
        else:
            assert [s.status for s in r.steps] == ["pending", "pending"]
            assert r.status == wf.get(r.id).status == "queued"
    held.set()
    for r in replies:
        assert engines.finished(r.id).status == "completed"
    # A run frees its slot just after its terminal commit (whose event `finished` waits on), not in it.
    until(lambda: wf.details()["active_workflows"] == 0, why=wf.details)


def _queue_behind_one(engines: Engines, n: int) -> list[Any]:
    """n executions of "held" queued behind one that holds the only slot."""
    wf = engines.workflows
    wf.concurrency = 1
    wf.start_execution("held")
    queued = [wf.start_execution("held", parameters={"n": i})[0] for i in range(n)]
    assert {e.status for e in queued} == {"queued"}
    return queued


def test_queued_executions_are_admitted_together_in_one_transaction(engines: Engines, held) -> None:
    """When the limit rises, admission begins the queued executions (and their first steps) in one write:
    one transaction each made its one thread wait for the writer lock once per execution behind a busy
    server's steps, and executions queued in the first second of a burst began seconds later."""
    wf = engines.workflows
    queued = _queue_behind_one(engines, 12)
    db = engines.stores.executions.db
    before = db.commits
    wf.concurrency = 20
    wf.wake_admission()
    until(lambda: all(wf.get(e.id).status == "running" for e in queued), why=wf.details)
    assert db.commits - before == 1  # (one commit each before)
    for e in queued:
        assert [s.status for s in wf.get(e.id).steps] == ["running", "pending"]
    held.set()
    for e in queued:
        assert engines.finished(e.id).status == "completed"


_FAIL_BEGIN = {
    "sqlite": [
        "CREATE TRIGGER fail_begin BEFORE UPDATE OF status ON workflow_executions"
        " WHEN NEW.status = 'running' BEGIN SELECT RAISE(ABORT, 'no begin today'); END"
    ],
    "postgres": [
        "CREATE FUNCTION fail_begin() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'no begin today'; END $$"
        " LANGUAGE plpgsql",
        "CREATE TRIGGER fail_begin BEFORE UPDATE ON workflow_executions FOR EACH ROW"
        " WHEN (NEW.status = 'running') EXECUTE FUNCTION fail_begin()",
    ],
}
_ALLOW_BEGIN = {
    "sqlite": ["DROP TRIGGER fail_begin"],
    "postgres": ["DROP TRIGGER fail_begin ON workflow_executions", "DROP FUNCTION fail_begin()"],
}


def test_an_admission_that_fails_to_commit_begins_none_and_admits_them_later(
    engines: Engines, held, caplog: pytest.LogCaptureFixture
) -> None:
    wf = engines.workflows
    queued = _queue_behind_one(engines, 5)
    db = engines.stores.executions.db
    with db.write() as tx:  # the database refuses to make an execution running (a real failed write)
        for sql in _FAIL_BEGIN[db.kind]:
            tx.execute(sql)
    wf.concurrency = 20
    wf.wake_admission()
    until(lambda: any("workflow admission failed" in r.getMessage() for r in caplog.records))
    assert wf.details()["queued_workflows"] == 5 and wf.details()["active_workflows"] == 1
    for e in queued:
        got = wf.get(e.id)
        assert got.status == "queued" and [s.status for s in got.steps] == ["pending", "pending"]
    assert engines.coordination.list(correlation_id=queued[0].id)[0] == []  # no first step was requested
    with db.write() as tx:
        for sql in _ALLOW_BEGIN[db.kind]:
            tx.execute(sql)
    wf.wake_admission()
    until(lambda: all(wf.get(e.id).status == "running" for e in queued), why=wf.details)
    held.set()
    for e in queued:
        assert engines.finished(e.id).status == "completed"


class _Watched:
    """A run's lock that reports when the admission thread asks for it (then takes it as the lock would)."""

    def __init__(self, asked: threading.Event):
        self._lock = threading.RLock()
        self._asked = asked

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if threading.current_thread().name == "workflow-admission":
            self._asked.set()
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def test_admission_does_not_deadlock_with_a_queued_execution_being_cancelled(
    engines: Engines, held, monkeypatch
) -> None:
    """A cancel holds its run's lock, then waits for the writer lock to write; admission must not hold
    the writer lock while it waits for that run's lock (as one write for a whole batch did: each took
    the other's lock and the server's writes stopped, on SQLite)."""
    wf = engines.workflows
    first, second = _queue_behind_one(engines, 2)
    asked = threading.Event()  # admission asks for the second run's lock
    with wf._lock:
        run = wf._load_locked(second.id)
    assert run is not None
    run.lock = _Watched(asked)
    end_state = wf.end_state

    def cancelling(r: Any) -> Any:  # in the cancel's checkpoint, its run's lock held, before its write
        if r is run:
            wf.concurrency = 20
            wf.wake_admission()
            assert asked.wait(WAIT)
        return end_state(r)

    monkeypatch.setattr(wf, "end_state", cancelling)
    cancel = threading.Thread(target=wf.cancel, args=(second.id,), daemon=True)
    cancel.start()
    cancel.join(WAIT)
    assert not cancel.is_alive(), "the cancel and admission wait for each other"
    assert wf.get(second.id).status == "cancelled"
    until(lambda: wf.get(first.id).status == "running", why=wf.details)
    held.set()
    assert engines.finished(first.id).status == "completed"
    until(lambda: wf.details()["active_workflows"] == 0 and wf.details()["queued_workflows"] == 0)


def test_an_admission_that_fails_to_commit_holds_no_agent(
    engines: Engines, caplog: pytest.LogCaptureFixture
) -> None:
    """The first step's coordination of an execution whose admission rolled back was placed in the
    coordination engine inside that transaction: it must not keep the agent's one slot from the
    execution's next admission."""
    wf = engines.workflows
    calls: list[str] = []

    def once(t: AgentTask, cancel: CancelSignal) -> str:
        calls.append(t.coordination_id)
        return "done"

    engines.coordination.register_agent(
        "one", kind="function", capabilities=("one",), max_concurrency=1, runtime=once
    )
    wf.register_template(
        Template(name="one", steps=(StepSpec("a", AgentTaskSpec("a", capabilities=("one",))),))
    )
    wf.concurrency = 0
    e = wf.start_execution("one")[0]
    db = engines.stores.executions.db
    with db.write() as tx:
        for sql in _FAIL_BEGIN[db.kind]:
            tx.execute(sql)
    wf.concurrency = 5
    wf.wake_admission()
    until(lambda: any("workflow admission failed" in r.getMessage() for r in caplog.records))
    with db.write() as tx:
        for sql in _ALLOW_BEGIN[db.kind]:
            tx.execute(sql)
    wf.wake_admission()
    until(lambda: calls, 5.0, lambda: wf.get(e.id))  # the step's one agent is free for it
    assert engines.finished(e.id).status == "completed"


def test_concurrent_starts_with_one_request_id_make_one_execution_and_hold_no_slot(
    engines: Engines, held
) -> None:
    wf = engines.workflows
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda _: wf.start_execution("held", request_id="same"), range(8)))
    (new,) = [e for e, existing in replies if not existing]
    assert {e.id for e, _ in replies} == {new.id}
    assert len(_rows(engines)) == 1
    assert wf.details()["active_workflows"] == 1  # the repeats gave their slots back
    with pytest.raises(AlreadyExists):  # the same id for another request: nothing written, nothing held
        wf.start_execution("held", request_id="same", parameters={"n": 2})
    assert len(_rows(engines)) == 1 and wf.details()["active_workflows"] == 1


def test_a_start_whose_transaction_fails_leaves_nothing_written_or_held(
    engines: Engines, held, monkeypatch
) -> None:
    """The failure comes after the execution's insert and its first step's begin (with the first step's
    coordination): all of it rolls back, and its slot, run and timers go."""
    wf = engines.workflows
    events_before = engines.events.last_sequence()

    def fails(tx: Any, values: Any) -> None:
        raise RuntimeError("the state write failed")

    monkeypatch.setattr(wf, "write_state", fails)
    with pytest.raises(RuntimeError, match="the state write failed"):
        wf._start(
            wf.get_template("held"),
            {"n": 1},
            "digest",
            "req-1",
            0,
            {},
            "",
            state=lambda eid, status: [(f"k.{eid}", status)],
        )
    assert _rows(engines) == []
    assert engines.events.last_sequence() == events_before
    assert engines.coordination.list()[0] == []
    details = wf.details()
    assert details["active_workflows"] == 0 and details["timers"] == 0 and not wf._runs
    monkeypatch.undo()
    e, existing = wf.start_execution("held", request_id="req-1", parameters={"n": 1})  # the id is free
    assert not existing and e.status == "running"


# -- the complete workflow's requirement.<id> keys ------------------------------------------------------

KEYS = {"analyse": "analysis", "generate_tasks": "tasks", "execute_tasks": "results", "review": "review"}


def test_each_requirement_key_is_committed_with_the_checkpoint_that_writes_it(
    server: VoltorchServer, client: voltorch.Client
) -> None:
    """When a checkpoint's events are delivered (right after its COMMIT), the key it writes is already in
    the database: the start's record, each step's key, the end's record."""
    runtime = server.runtime
    seen: list[tuple[str, str, Any]] = []

    def stored(key: str) -> Any:
        row = runtime.state.store.row(key)  # the database itself, not the cache
        return None if row is None else row.value

    def on_event(e: Any) -> None:
        data = e.data if isinstance(e.data, dict) else {}
        eid = data.get("execution_id", "")
        if not eid or data.get("template") != "complete-workflow":
            return
        if e.type == "workflow.execution.started" or e.type in TERMINAL_EVENTS:
            seen.append((e.type, "", stored(f"requirement.{eid}")))
        elif e.type == "workflow.step.completed" and data.get("step_id") in (*KEYS, "summary"):
            part = KEYS.get(data["step_id"], "summary")
            seen.append((e.type, data["step_id"], stored(f"requirement.{eid}.{part}")))

    runtime.events.add_listener(on_event)
    try:
        e = client.workflows.execute_complete("A todo list with due dates").execution
        done = client.workflows.wait(e.id, timeout=WAIT)
        until(lambda: len(seen) == 7, WAIT, lambda: seen)
    finally:
        runtime.events.remove_listener(on_event)
    assert done.status == "completed"
    assert [(t, s) for t, s, _ in seen] == [
        ("workflow.execution.started", ""),
        *(("workflow.step.completed", s) for s in (*KEYS, "summary")),
        ("workflow.execution.completed", ""),
    ]
    assert all(v is not None for _, _, v in seen), seen
    assert '"status":"running"' in seen[0][2] and '"status":"completed"' in seen[-1][2]
    assert client.state.get(f"requirement.{e.id}.summary").value == done.result["summary"]


def test_the_reply_is_read_before_the_first_step_goes_to_its_agent(engines: Engines) -> None:
    """The reply is read, then the first step handed to the agent pool: the RPC's response is not kept
    waiting behind the step, which runs while the client turns to wait for it (bench/README.md)."""
    wf = engines.workflows
    wf.register_template(
        Template(name="one", steps=(StepSpec("a", AgentTaskSpec("a", capabilities=("upper",))),))
    )
    order: list[str] = []
    spawn, get = engines.coordination.spawn, wf.get

    def spawning(*args: Any) -> None:
        order.append("spawn")
        spawn(*args)

    def getting(execution_id: str) -> Any:
        order.append("get")
        return get(execution_id)

    engines.coordination.spawn = spawning
    wf.get = getting
    e, _ = wf.start_execution("one")
    assert order[:2] == ["get", "spawn"]
    assert e.status == "running" and [s.status for s in e.steps] == ["running"]
    assert engines.finished(e.id).status == "completed"


def test_a_start_whose_reply_cannot_be_read_still_runs_its_first_step(engines: Engines) -> None:
    """The reply is read before the first step is handed off; if that read fails (a lost connection to
    PostgreSQL, say), the committed execution still runs: the caller gets the error, not a stuck run."""
    wf = engines.workflows
    wf.register_template(
        Template(name="one", steps=(StepSpec("a", AgentTaskSpec("a", capabilities=("upper",))),))
    )
    get = wf.get
    failed: list[str] = []

    def failing_once(execution_id: str) -> Any:
        if not failed:
            failed.append(execution_id)
            raise RuntimeError("the read failed")
        return get(execution_id)

    wf.get = failing_once
    with pytest.raises(RuntimeError, match="the read failed"):
        wf.start_execution("one")
    assert engines.finished(failed[0]).status == "completed"
