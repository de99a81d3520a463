"""Who runs an execution (components/workflows/_ownership.py), on SQLite and PostgreSQL: the store's
claims (an epoch per claim, queued work by priority, only dead members' executions taken over), a run
fenced once its execution was claimed elsewhere (it writes nothing and is dropped), and the fair share."""

from __future__ import annotations

import time

import pytest
from engines import Engines
from polling import until
from voltorch_server.components.workflows import AgentTaskSpec, StepSpec, Template, WaitSpec, fair_share

BOTH_BACKENDS = True


def _waiting(engines: Engines, name: str) -> str:
    engines.workflows.register_template(
        Template(
            name=name,
            steps=(
                StepSpec("gate", WaitSpec("go")),
                StepSpec("after", AgentTaskSpec("after", capabilities=("upper",)), depends_on=("gate",)),
            ),
        )
    )
    e, _ = engines.workflows.start_execution(name)
    until(lambda: engines.workflows.get(e.id).steps[0].status == "running")
    return e.id


def test_a_run_whose_execution_was_claimed_elsewhere_writes_nothing(engines: Engines) -> None:
    eid = _waiting(engines, "fenced")
    executions = engines.stores.executions
    with executions.db.write() as tx:
        claimed = executions.own(tx, eid, "another-replica")
    assert claimed is not None and claimed["epoch"] == 2 and claimed["owner"] == "another-replica"
    run = engines.workflows._runs[eid]
    engines.workflows.signal(eid, "go", {"ok": True})  # handed to the stale run: its checkpoint is fenced
    assert run.fenced and eid not in engines.workflows._runs
    steps = {s.step_id: s for s in executions.steps(eid)}
    assert steps["gate"].status == "running" and steps["after"].status == "pending"
    assert [s.consumed_by for s in engines.stores.signals.of_execution(eid)] == [""]  # not consumed
    row = executions.row(eid)
    assert (row["owner"], row["epoch"]) == ("another-replica", 2)


def test_claims_take_queued_work_by_priority_and_only_dead_members_executions(engines: Engines) -> None:
    executions = engines.stores.executions
    eid = _waiting(engines, "claims")
    now = time.time()
    with executions.db.write() as tx:
        for i, prio in enumerate((1, 3, 2)):
            row = dict(executions.row(eid))
            row.update(id=f"q{i}", request_id=None, status="queued", owner="", epoch=0, priority=prio)
            executions.insert(tx, row, [])
        tx.execute(
            "INSERT INTO members(id, address, version, start_time, heartbeat_time, running_executions,"
            " connected_workers) VALUES ('alive', '', '', ?, ?, 0, 0), ('dead', '', '', ?, ?, 0, 0)",
            (now, now, now, now - 60),
        )
        tx.execute("UPDATE workflow_executions SET owner = 'dead', epoch = 4 WHERE id = 'q2'")
        executions.update(tx, eid, owner="alive")
    with executions.db.write() as tx:
        claimed = executions.claim_queued(tx, "me", 1)
    assert [(r["id"], r["epoch"]) for r in claimed] == [("q1", 1)]  # the highest priority unowned
    with executions.db.write() as tx:
        orphans = executions.claim_orphans(tx, "me", now - 10, 10)
    assert [(r["id"], r["epoch"], r["previous_owner"]) for r in orphans] == [("q2", 5, "dead")]
    members, running, waiting = executions.load(None, now - 10)
    # "me" has claimed q1 and q2 (its load, though not begun); q0 is still unowned
    assert set(members) == {"alive"} and running == {"alive": 1, "me": 2} and waiting == 1
    with executions.db.write() as tx:
        assert not executions.update(tx, "q2", epoch=4, status="running")  # fenced: it is at epoch 5


def test_the_fair_share_is_an_equal_part_of_what_runs_and_waits() -> None:
    assert fair_share(["a", "b", "c"], {"a": 2, "b": 0, "c": 1}, "b", 3) == 2
    assert fair_share(["a", "b", "c"], {"a": 2, "b": 0, "c": 1}, "a", 3) == 0
    assert fair_share(["a", "b"], {"gone": 50}, "a", 1) == 1  # dead members' counts are not shares
    assert fair_share([], {}, "me", 1) == 1  # alone (its own heartbeat not yet written): takes it
    assert fair_share(["me"], {"me": 40}, "me", 0) == 0


def test_admission_drops_a_queued_execution_claimed_elsewhere_and_begins_the_others(
    engines: Engines, caplog: pytest.LogCaptureFixture
) -> None:
    """Queued executions begin together in one transaction: one of them claimed by another replica since
    its run was loaded fences that write. The others begin at once without it (not after a failed round of
    admission), and it is dropped here, not begun at the next round."""
    wf, executions = engines.workflows, engines.stores.executions
    wf.register_template(
        Template(name="one", steps=(StepSpec("a", AgentTaskSpec("a", capabilities=("upper",))),))
    )
    wf.concurrency = 0
    first, claimed, last = (wf.start_execution("one", parameters={})[0].id for _ in range(3))
    assert {wf.get(e).status for e in (first, claimed, last)} == {"queued"}
    with wf._lock:
        run = wf._load_locked(claimed)  # loaded here (a control request, say) at its epoch
    assert run is not None
    with executions.db.write() as tx:
        assert executions.own(tx, claimed, "another-replica") is not None
    wf.concurrency = 10
    wf.wake_admission()
    for eid in (first, last):
        assert engines.finished(eid).status == "completed"
    until(lambda: run.fenced and claimed not in wf._runs, why=wf.details)
    assert wf.get(claimed).status == "queued"
    row = executions.row(claimed)
    assert (row["owner"], row["epoch"]) == ("another-replica", 2)
    assert wf.details()["queued_workflows"] == 0
    assert not [r for r in caplog.records if "workflow admission failed" in r.getMessage()]
