"""The workflow engine through its Python API with every store on one database, SQLite and PostgreSQL.

The server-level workflow tests run on SQLite; these run the same stores on PostgreSQL too: executions,
steps (fan-out children), signals, durable timers, paging, idempotent starts and recovery after a
restart, plus the execution store's own contract (a step checkpoint overwrites its row)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from engines import WAIT, Engines, build
from polling import until
from voltorch_server.agents.base import AgentTask, CancelSignal
from voltorch_server.components.coordination import CoordinationRequest
from voltorch_server.components.workflows import (
    AgentTaskSpec,
    FanOutSpec,
    SleepSpec,
    StepRecord,
    StepSpec,
    Template,
    WaitSpec,
)
from voltorch_server.errors import InvalidArgument, Unavailable
from voltorch_server.storage.stores import Stores

BOTH_BACKENDS = True  # every test using `db` runs on SQLite and on PostgreSQL (tests/conftest.py)


def task(text: str) -> AgentTaskSpec:
    return AgentTaskSpec(text, capabilities=("upper",))


def test_a_chain_with_a_fan_out_runs_and_reads_back_nested(engines: Engines) -> None:
    wf = engines.workflows
    wf.register_template(
        Template(
            name="fan",
            steps=(
                StepSpec(
                    "items", AgentTaskSpec('["a", "b", "c"]', capabilities=("upper",), json_output=True)
                ),
                StepSpec("each", FanOutSpec("items", task("item {{item}}")), depends_on=("items",)),
                StepSpec("last", task("done"), depends_on=("each",)),
            ),
        )
    )
    started, existing = wf.start_execution("fan", request_id="r-1")
    assert not existing
    done = engines.finished(started.id)
    assert done.status == "completed"
    assert [s.step_id for s in done.steps] == ["items", "each", "last"]
    assert [c.output for c in done.steps[1].children] == ["ITEM A", "ITEM B", "ITEM C"]
    assert done.steps[2].output == "DONE"
    again, existing = wf.start_execution("fan", request_id="r-1")
    assert existing and again.id == started.id


def test_steps_declared_before_what_they_wait_for_still_run_in_dependency_order(engines: Engines) -> None:
    """`advance` makes one pass over a graph whose template order is topological; a template that names a
    step before its dependencies (or before the condition gating it) is walked again until nothing moves."""
    from voltorch_server.components.coordination import CoordinationCondition
    from voltorch_server.components.workflows import ConditionSpec

    wf = engines.workflows
    gate = ConditionSpec("first", CoordinationCondition(contains="FIRST"), then_steps=("gated",))
    wf.register_template(
        Template(
            name="backwards",
            steps=(  # a condition completes as it starts: what it makes ready comes before it here
                StepSpec("last", task("last"), depends_on=("gated",)),
                StepSpec("gated", task("gated")),
                StepSpec("gate", gate, depends_on=("first",)),
                StepSpec("first", task("first")),
            ),
        )
    )
    started, _ = wf.start_execution("backwards")
    done = engines.finished(started.id)
    assert done.status == "completed"
    assert {s.step_id: s.output for s in done.steps} == {
        "last": "LAST",
        "gated": "GATED",
        "gate": "true",
        "first": "FIRST",
    }
    by_step = {s.step_id: s for s in done.steps}
    assert by_step["gated"].start_time >= by_step["gate"].end_time
    assert by_step["last"].start_time >= by_step["gated"].end_time


def test_signals_and_durable_timers_are_kept_in_the_database(engines: Engines) -> None:
    wf = engines.workflows
    wf.register_template(
        Template(
            name="waits",
            steps=(
                StepSpec("nap", SleepSpec(duration=0.05)),
                StepSpec("go", WaitSpec("go"), depends_on=("nap",)),
            ),
        )
    )
    e, _ = wf.start_execution("waits")
    sig, existing = wf.signal(e.id, "go", {"n": 1}, request_id="s-1", sender="t")
    assert not existing
    assert wf.signal(e.id, "go", {"n": 1}, request_id="s-1", sender="t")[0].id == sig.id
    done = engines.finished(e.id)
    assert done.status == "completed"
    kept = wf.signals.get(sig.id)
    assert kept is not None and kept.consumed_by == "go"
    timers = wf.timer_store.of_execution(e.id)
    assert [(t.step_id, t.kind) for t in timers] == [("nap", "sleep")]
    assert timers[0].fired_at is not None


def test_list_filters_and_pages_newest_first(engines: Engines) -> None:
    wf = engines.workflows
    wf.register_template(Template(name="one", steps=(StepSpec("a", task("x")),)))
    wf.register_template(Template(name="two", steps=(StepSpec("a", task("y")),)))
    ids = [wf.start_execution("one" if i % 2 else "two")[0].id for i in range(5)]
    for i in ids:
        engines.finished(i)
    page, token = wf.list(page_size_=2)
    rest, last = wf.list(page_size_=10, page_token=token)
    assert not last
    assert [x.id for x in page + rest] == ids[::-1]
    ones, _ = wf.list(template_name="one", status="completed", include_steps=True)
    assert [x.id for x in ones] == [ids[3], ids[1]]
    assert ones[0].steps[0].output == "X"
    assert wf.list(status="running")[0] == []
    with pytest.raises(InvalidArgument):
        wf.list(status="sleeping")


def test_a_running_execution_resumes_after_a_restart(db) -> None:
    first = build(db)
    gate = threading.Event()
    entered = threading.Event()

    def held(t: AgentTask, cancel: CancelSignal) -> str:
        entered.set()
        gate.wait(WAIT)
        return "late"

    first.coordination.register_agent("held", kind="function", capabilities=("held",), runtime=held)
    first.workflows.register_template(
        Template(
            name="resume",
            steps=(
                StepSpec("a", task("a")),
                StepSpec("b", AgentTaskSpec("b", capabilities=("held",)), depends_on=("a",)),
                StepSpec("c", task("c"), depends_on=("b",)),
            ),
        )
    )
    e, _ = first.workflows.start_execution("resume")
    assert entered.wait(WAIT)
    first.stop()
    gate.set()
    second = build(db)
    try:
        second.coordination.register_agent(
            "held", kind="function", capabilities=("held",), runtime=lambda t, c: "again", replace=True
        )
        done = second.finished(e.id)
        assert done.status == "completed"
        assert [s.output for s in done.steps] == ["A", "again", "C"]
    finally:
        second.stop()


def test_a_step_checkpoint_overwrites_its_row(db) -> None:
    stores = Stores.build(db, db)
    store = stores.executions
    row = {
        "id": "e1",
        "request_id": None,
        "request_digest": "d",
        "template_name": "t",
        "template_version": 1,
        "definition": "{}",
        "status": "running",
        "parameters": "{}",
        "priority": 0,
        "labels": "{}",
        "correlation_id": "e1",
        "traceparent": "",
        "trace_id": "",
        "create_time": 1.5,
        "update_time": 1.5,
    }
    with db.write() as tx:
        store.insert(tx, row, [StepRecord("s", 0, "s"), StepRecord("s[0]", 0, "s", parent_id="s")])
    step = StepRecord("s", 0, "s", status="completed", attempts=2, output="out", structured={"k": [1]})
    with db.write() as tx:
        store.save_step(tx, "e1", step)
        store.update(tx, "e1", status="completed", result={"r": 1}, end_time=2.5)
    assert [(s.step_id, s.status, s.attempts, s.structured) for s in store.steps("e1")] == [
        ("s", "completed", 2, {"k": [1]}),
        ("s[0]", "pending", 0, None),
    ]
    stored = store.row("e1")
    assert (stored["status"], stored["result"], stored["end_time"]) == ("completed", '{"r":1}', 2.5)
    assert [r["id"] for r in store.ids_with_status("completed")] == ["e1"]

    def page(before: tuple[float, str] | None) -> list[str]:
        rows = store.page(
            status="", template_name="t", created_after=1.5, created_before=None, before=before, limit=5
        )
        return [r["id"] for r in rows]

    assert page(None) == ["e1"]
    assert page((1.5, "e1")) == []


# The checkpoint of step "a" done (its first attempt) is refused by the database: a real failed write.
_REFUSE_FIRST_CHECKPOINT = {
    "sqlite": [
        "CREATE TRIGGER refuse_a BEFORE INSERT ON workflow_steps WHEN NEW.step_id = 'a'"
        " AND NEW.status = 'completed' AND NEW.attempts = 1 BEGIN SELECT RAISE(ABORT, 'not today'); END"
    ],
    "postgres": [
        "CREATE FUNCTION refuse_a() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'not today'; END $$"
        " LANGUAGE plpgsql",
        "CREATE TRIGGER refuse_a BEFORE INSERT ON workflow_steps FOR EACH ROW WHEN (NEW.step_id = 'a'"
        " AND NEW.status = 'completed' AND NEW.attempts = 1) EXECUTE FUNCTION refuse_a()",
    ],
}
_ALLOW_CHECKPOINT = {
    "sqlite": ["DROP TRIGGER refuse_a"],
    "postgres": ["DROP TRIGGER refuse_a ON workflow_steps", "DROP FUNCTION refuse_a()"],
}


def _sql(db: Any, statements: dict[str, list[str]]) -> None:
    """The statements of the database's dialect, in one transaction."""
    with db.write() as tx:
        for sql in statements[db.kind]:
            tx.execute(sql)


def _refusal_logged(caplog: pytest.LogCaptureFixture) -> None:
    """Until a checkpoint refused by _REFUSE_FIRST_CHECKPOINT's trigger has been logged (by the engine that
    loads the execution again, or by the step attempt that met it)."""
    until(
        lambda: any(
            "not today" in r.getMessage() or (r.exc_info and "not today" in str(r.exc_info[1]))
            for r in caplog.records
        )
    )


def test_a_step_whose_checkpoint_fails_goes_on_from_the_last_committed_one(
    engines: Engines, caplog: pytest.LogCaptureFixture
) -> None:
    """An in-process agent's step records its coordination's outcome in the step's checkpoint. When that
    checkpoint fails to commit (here the database refuses it), the run does not go on from a memory that
    is ahead of the database (step "a" done, "b" started, neither written): it stops, and the execution is
    loaded again from its last committed checkpoint, as after a restart, and goes on once the database
    takes the checkpoint. The coordination whose outcome was lost runs again and is written completed."""
    db = engines.stores.executions.db
    _sql(db, _REFUSE_FIRST_CHECKPOINT)
    wf = engines.workflows
    wf.register_template(
        Template(
            name="refused", steps=(StepSpec("a", task("a")), StepSpec("b", task("b"), depends_on=("a",)))
        )
    )
    started, _ = wf.start_execution("refused")
    _refusal_logged(caplog)
    _sql(db, _ALLOW_CHECKPOINT)  # the database takes checkpoints again
    done = engines.finished(started.id)
    assert done.status == "completed"
    assert [(s.step_id, s.status, s.attempts, s.output) for s in done.steps] == [
        ("a", "completed", 1, "A"),
        ("b", "completed", 1, "B"),
    ]
    coordinations = engines.coordination.list(correlation_id=started.id)[0]
    assert len(coordinations) == 2
    for c in coordinations:
        assert engines.coordination.wait(c.id, WAIT).status == "completed"
    assert engines.coordination.active_count == 0
    resumed = [e for e in engines.events.read_after(0, 1000) if e.type == "workflow.execution.resumed"]
    assert resumed and all("a checkpoint failed to commit" in e.data["reason"] for e in resumed)


def test_a_checkpoint_the_database_always_refuses_fails_the_execution_naming_why(engines: Engines) -> None:
    """A checkpoint refused every time (not an outage: the database answers, and refuses this write) does
    not have the execution loaded and its step re-attached forever: after `reload_attempts` failures in a
    row it fails, CHECKPOINT_FAILED, with the database's error in its message."""
    db = engines.stores.executions.db
    _sql(db, _REFUSE_FIRST_CHECKPOINT)
    wf = engines.workflows
    wf.reload_first, wf.reload_attempts = 0.001, 3
    wf.register_template(Template(name="always", steps=(StepSpec("a", task("a")),)))
    started, _ = wf.start_execution("always")
    done = engines.finished(started.id)
    assert done.status == "failed"
    assert done.error is not None and done.error.code == "CHECKPOINT_FAILED"
    assert "4 checkpoints in a row failed to commit" in done.error.message
    assert "not today" in done.error.message
    assert [(s.step_id, s.status) for s in done.steps] == [("a", "cancelled")]
    assert engines.coordination.active_count == 0


def test_a_failed_checkpoint_after_a_restart_goes_on_from_the_last_committed_one(
    db, caplog: pytest.LogCaptureFixture
) -> None:
    """On one database (no other replica) a restarted server runs what an earlier process started, whose
    rows still name that process's replica: a checkpoint of such an execution that fails to commit is
    loaded again all the same (it is not left running in the database with no run in memory)."""
    first = build(db)
    first.workflows.register_template(
        Template(
            name="later",
            steps=(StepSpec("go", WaitSpec("go")), StepSpec("a", task("a"), depends_on=("go",))),
        )
    )
    e, _ = first.workflows.start_execution("later")
    first.stop()
    _sql(db, _REFUSE_FIRST_CHECKPOINT)
    second = build(db)
    try:
        second.workflows.signal(e.id, "go", {})
        _refusal_logged(caplog)
        _sql(db, _ALLOW_CHECKPOINT)  # the database takes checkpoints again
        done = second.finished(e.id)
        assert done.status == "completed"
        assert [(s.step_id, s.status, s.output) for s in done.steps] == [
            ("go", "completed", "{}"),
            ("a", "completed", "A"),
        ]
    finally:
        second.stop()


def test_an_execution_paused_while_it_waits_to_be_loaded_again_resumes(
    engines: Engines, caplog: pytest.LogCaptureFixture
) -> None:
    """An execution whose checkpoint failed waits (its backoff) to be loaded again at its next epoch; paused
    meanwhile (a run loaded for the request, at the old epoch), it is paused, and its resume once it has
    been loaded again is not lost to a run of the old epoch, fenced."""
    db = engines.stores.executions.db
    _sql(db, _REFUSE_FIRST_CHECKPOINT)
    wf = engines.workflows
    wf.reload_first = 1.0  # the pause below comes well within it
    wf.register_template(
        Template(name="paused", steps=(StepSpec("a", task("a")), StepSpec("b", task("b"), depends_on=("a",))))
    )
    started, _ = wf.start_execution("paused")
    _refusal_logged(caplog)
    epoch = engines.stores.executions.row(started.id)["epoch"]
    assert wf.pause(started.id).status == "paused"
    _sql(db, _ALLOW_CHECKPOINT)  # the database takes checkpoints again
    until(lambda: engines.stores.executions.row(started.id)["epoch"] > epoch)  # loaded again
    assert wf.resume(started.id).status == "running"
    done = engines.finished(started.id)
    assert done.status == "completed"
    assert [(s.step_id, s.status, s.output) for s in done.steps] == [
        ("a", "completed", "A"),
        ("b", "completed", "B"),
    ]


def test_an_unrelated_coordination_moved_away_does_not_strand_the_step_that_met_it(engines: Engines) -> None:
    """A step's checkpoint that records its in-process agent's outcome also gives the freed agent the next
    queued coordination; when that one (not the execution's) turns out to be another replica's now (Moved),
    the checkpoint rolls back. The execution did not move: it is loaded again and goes on here, rather
    than being dropped as if it had (left running in the database with no run anywhere)."""
    gate = threading.Event()
    entered = threading.Event()

    def solo(t: AgentTask, cancel: CancelSignal) -> str:
        if t.text == "a":
            entered.set()
            gate.wait(WAIT)
        return t.text.upper()

    engines.coordination.register_agent(
        "solo", kind="function", capabilities=("solo",), max_concurrency=1, runtime=solo
    )
    wf = engines.workflows
    wf.register_template(
        Template(name="solo", steps=(StepSpec("a", AgentTaskSpec("a", capabilities=("solo",))),))
    )
    started, _ = wf.start_execution("solo")
    assert entered.wait(WAIT)
    other = engines.coordination.request(CoordinationRequest(task="other", required_capabilities=("solo",)))
    assert other.status == "queued"  # the agent's one slot is the step's
    db = engines.stores.executions.db
    with db.write() as tx:  # adopted by another replica meanwhile
        tx.execute("UPDATE coordinations SET owner = 'elsewhere' WHERE id = ?", (other.id,))
    gate.set()
    done = engines.finished(started.id)
    assert done.status == "completed"
    assert [(s.step_id, s.status, s.output) for s in done.steps] == [("a", "completed", "A")]


def test_checkpoints_lost_to_an_outage_are_waited_out_not_counted_towards_failing(
    engines: Engines, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint lost because the database does not answer (Unavailable) is an outage: the execution is
    loaded again, with backoff, as many times as it takes, and never failed for it (only checkpoints the
    database answers and refuses count towards CHECKPOINT_FAILED)."""
    wf = engines.workflows
    wf.reload_first, wf.reload_attempts = 0.001, 1
    store = engines.stores.executions
    save = store.save_steps
    lost: list[str] = []

    def down_for_a_while(tx: Any, execution_id: str, steps: Any) -> None:
        if len(lost) < 4 and any(s.step_id == "a" and s.status == "completed" for s in steps):
            lost.append(execution_id)
            raise Unavailable("the database does not answer")
        save(tx, execution_id, steps)

    monkeypatch.setattr(store, "save_steps", down_for_a_while)
    wf.register_template(Template(name="outage", steps=(StepSpec("a", task("a")),)))
    started, _ = wf.start_execution("outage")
    done = engines.finished(started.id)
    assert done.status == "completed" and done.steps[0].output == "A"
    assert lost == [started.id] * 4
