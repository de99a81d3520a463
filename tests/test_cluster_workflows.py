"""Workflows across replicas (issue 12, item 3): real `voltorch serve` processes on one PostgreSQL, the
built-in offline agents on each. A replica SIGKILLed mid-run loses nothing: its executions are taken over
once its lease (member heartbeat) expires and finish on the others, no completed step running again; a
replica SIGSTOPped past its lease writes nothing for executions that moved, and says so in its log; new
executions spread over the replicas; pause, resume and cancel work from any replica."""

from __future__ import annotations

import json
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pg
import polling
import psycopg
import pytest
import replicas
import voltorch
from voltorch import AgentTask, ParameterSpec, SleepStep, Step, WaitStep, WorkflowTemplate
from voltorch.v1 import workflows_pb2 as wpb
from voltorch.wire import to_struct

pytestmark = pytest.mark.timeout(300)
SETTINGS = {"VOLTORCH_MEMBER_TIMEOUT": "2", "VOLTORCH_BUILTIN_AGENTS": "true"}  # deaths seen quickly
# Where no replica dies: a timeout no heartbeat misses on a loaded machine (no takeover by mistake).
STEADY = {**SETTINGS, "VOLTORCH_MEMBER_TIMEOUT": "10"}
WAIT = 120.0


def _template(name: str, nap: float) -> WorkflowTemplate:
    """Five steps: three offline agents with two durable sleeps between them (time to kill mid-run)."""
    return WorkflowTemplate(
        name=name,
        parameters=[ParameterSpec("n", required=True)],
        steps=[
            Step("analyse", AgentTask("analyse {{ params.n }}", ["analysis"])),
            Step("nap1", SleepStep(duration=nap), depends_on=["analyse"]),
            Step("plan", AgentTask("plan {{ params.n }}", ["planning"]), depends_on=["nap1"]),
            Step("nap2", SleepStep(duration=nap), depends_on=["plan"]),
            Step("review", AgentTask("review {{ params.n }}", ["review"]), depends_on=["nap2"]),
        ],
    )


def _rows(dsn: str, sql: str, args: tuple = ()) -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(sql, args).fetchall()


def _owners(dsn: str, ids: list[str]) -> dict[str, str]:
    return dict(_rows(dsn, "SELECT id, owner FROM workflow_executions WHERE id = ANY(%s)", (ids,)))


def _running_on(dsn: str, ids: list[str], owner: str) -> list[str]:
    """The executions of `ids` that `owner` runs (not yet ended)."""
    rows = _rows(
        dsn,
        "SELECT id FROM workflow_executions WHERE id = ANY(%s) AND owner = %s"
        " AND status NOT IN ('completed', 'failed', 'cancelled', 'timed_out')",
        (ids, owner),
    )
    return [r[0] for r in rows]


def _completed_steps(dsn: str, ids: list[str]) -> Counter:
    """(execution, step) -> how many workflow.step.completed events were committed for it."""
    wanted = set(ids)
    out: Counter = Counter()
    for (data,) in _rows(dsn, "SELECT data FROM events WHERE type = 'workflow.step.completed'"):
        d = json.loads(data)
        if d["execution_id"] in wanted:
            out[(d["execution_id"], d["step_id"])] += 1
    return out


def _start_many(client: voltorch.Client, template: str, n: int, threads: int = 10) -> list[str]:
    ids: list[str] = [""] * n
    stop = threading.Event()

    def run(k: int) -> None:
        for i in range(k, n, threads):
            if stop.is_set():
                return
            ids[i] = client.workflows.start(
                template, parameters={"n": str(i)}, request_id=f"{template}-{i}"
            ).execution.id

    workers = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    try:
        for w in workers:
            w.join(WAIT)
    finally:  # interrupted (pytest-timeout): no start goes on behind the next test's back
        stop.set()
        for w in workers:
            w.join(WAIT)
    assert all(ids)
    return ids


def _all_completed(client: voltorch.Client, ids: list[str]) -> None:
    for eid in ids:
        e = client.workflows.wait(eid, timeout=WAIT)
        assert e.status == "completed", (eid, e.status, e.error)


def test_workflows_of_a_killed_replica_complete_on_the_others(pg_dsn: str, tmp_path: Path) -> None:
    with replicas.replicas(pg_dsn, tmp_path, 3, SETTINGS) as reps:
        a, b = (voltorch.Client(r.target, timeout=30) for r in reps[:2])
        a.workflows.register_template(_template("chain", 0.4))
        ids = _start_many(a, "chain", 100)
        # Mid-run: some steps done, replica-0 running some of the executions.
        polling.until(lambda: len(_completed_steps(pg_dsn, ids)) >= 60)
        reps[0].kill()
        moved = _running_on(pg_dsn, ids, "replica-0")
        assert moved, "replica-0 was running none of the executions"

        _all_completed(b, ids)
        steps = _completed_steps(pg_dsn, ids)
        assert len(steps) == 5 * len(ids)  # every step of every execution completed...
        assert set(steps.values()) == {1}  # ...exactly once: no completed step ran again
        finally_at = _owners(pg_dsn, ids)
        assert not [eid for eid in moved if finally_at[eid] == "replica-0"]
        e = b.workflows.get(moved[0])  # the API says who runs it, and at which epoch of its lease
        assert e.replica_id == finally_at[moved[0]] != "replica-0" and e.epoch >= 2
        taken = _rows(
            pg_dsn,
            "SELECT COUNT(*) FROM events WHERE type = 'workflow.execution.resumed' AND data LIKE %s",
            ("%taken over from replica replica-0%",),
        )[0][0]
        assert taken >= 1  # those it was running resumed elsewhere (its queued ones simply started there)
        for c in (a, b):
            c.close()


def test_a_replica_paused_past_its_lease_writes_nothing_for_executions_that_moved(
    pg_dsn: str, tmp_path: Path
) -> None:
    with replicas.replicas(pg_dsn, tmp_path, 2, SETTINGS) as reps:
        a, b = (voltorch.Client(r.target, timeout=30) for r in reps)
        a.workflows.register_template(_template("naps", 3.0))
        ids = _start_many(a, "naps", 12, threads=4)
        polling.until(lambda: len(_completed_steps(pg_dsn, ids)) >= len(ids))  # all in their first nap
        mine = _running_on(pg_dsn, ids, "replica-0")
        assert mine
        reps[0].proc.send_signal(signal.SIGSTOP)
        try:
            polling.until(
                lambda: all(o == "replica-1" for o in _owners(pg_dsn, mine).values()),
                timeout=WAIT,
                why=lambda: _owners(pg_dsn, mine),
            )
        finally:
            reps[0].proc.send_signal(signal.SIGCONT)  # its naps are over by now: it wakes and would go on
        _all_completed(b, ids)
        steps = _completed_steps(pg_dsn, ids)
        assert len(steps) == 5 * len(ids) and set(steps.values()) == {1}

        def says_so() -> bool:
            text = reps[0].log.read_text()
            return all(f"workflow {eid}: moved to another replica" in text for eid in mine)

        polling.until(says_so, why=lambda: reps[0].log.read_text()[-3000:])
        assert {o for o in _owners(pg_dsn, mine).values()} == {"replica-1"}
        for c in (a, b):
            c.close()


@pytest.fixture(scope="module")
def steady_replicas(
    postgres: pg.PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, list[replicas.Replica]]]:
    """Three STEADY replicas on a database of their own, shared by the tests where no replica dies: each
    looks only at the executions it started (by id) under templates of its own names, so neither sees the
    other's; starting three replicas is a third of such a test's time."""
    dsn = postgres.new_database()
    with replicas.replicas(dsn, tmp_path_factory.mktemp("steady"), 3, STEADY) as reps:
        yield dsn, reps
    postgres.drop_database(dsn)


_UNFINISHED = (
    "SELECT id FROM workflow_executions WHERE status NOT IN ('completed', 'failed', 'cancelled', 'timed_out')"
)


@pytest.fixture
def steady(
    steady_replicas: tuple[str, list[replicas.Replica]],
) -> Iterator[tuple[str, list[replicas.Replica]]]:
    """The shared replicas, idle for each test: what one left running (failed or timed out mid-way: up to
    300 executions, or gated ones waiting for a signal) is cancelled before the next one starts, so that
    neither's assertions or time limit depend on the other's leftovers, whatever their order."""
    dsn, reps = steady_replicas
    yield dsn, reps
    left = [eid for (eid,) in _rows(dsn, _UNFINISHED)]
    if left:
        with voltorch.Client(reps[0].target, timeout=30) as c:
            for eid in left:
                try:
                    c.workflows.cancel(eid, reason="left by a failed test")
                except voltorch.errors.FailedPreconditionError:
                    pass  # it ended meanwhile
        polling.until(lambda: not _rows(dsn, _UNFINISHED), timeout=WAIT)


def test_new_executions_spread_over_the_replicas(steady: tuple[str, list[replicas.Replica]]) -> None:
    pg_dsn, reps = steady
    # Starts on one replica queue behind each other for the event head row (see README, "One lock
    # order"): under a burst of 300 a start may wait long, and this test is about where they run.
    a = voltorch.Client(reps[0].target, timeout=WAIT)
    a.workflows.register_template(_template("spread", 1.0))  # the naps, not CPU, set the pace
    ids = _start_many(a, "spread", 300, threads=20)  # all through one replica
    _all_completed(a, ids)
    share = Counter(_owners(pg_dsn, ids).values())
    assert set(share) == {"replica-0", "replica-1", "replica-2"}, share
    assert min(share.values()) >= 0.2 * len(ids), share
    a.close()


def test_pause_resume_and_cancel_from_different_replicas(steady: tuple[str, list[replicas.Replica]]) -> None:
    pg_dsn, reps = steady
    a, b, c = (voltorch.Client(r.target, timeout=30) for r in reps)
    a.workflows.register_template(_template("controlled", 1.0))

    one = a.workflows.start("controlled", parameters={"n": "1"}).execution.id
    assert a.workflows.pause(one).status == "paused"
    assert c.workflows.get(one).status == "paused"  # seen from any replica
    assert b.workflows.resume(one).status in ("running", "queued")
    assert c.workflows.wait(one, timeout=WAIT).status == "completed"

    two = b.workflows.start("controlled", parameters={"n": "2"}).execution.id
    assert a.workflows.pause(two).status == "paused"
    assert b.workflows.resume(two).status in ("running", "queued")
    cancelled = c.workflows.cancel(two, reason="changed my mind")
    assert cancelled.status == "cancelled"
    assert a.workflows.get(two).status == "cancelled"
    steps = _completed_steps(pg_dsn, [one, two])
    assert set(steps.values()) == {1}

    # A signal sent through any replica reaches the step waiting on the replica that runs it.
    a.workflows.register_template(
        WorkflowTemplate(
            name="gated",
            steps=[
                Step("gate", WaitStep("go")),
                Step("after", AgentTask("after {{ steps.gate.output }}", ["review"]), depends_on=["gate"]),
            ],
        )
    )
    gated = [a.workflows.start("gated").execution.id for _ in range(6)]  # spread over the replicas
    polling.until(lambda: all(b.workflows.get(g).waiting for g in gated))
    for g in gated:
        c.workflows.signal(g, "go", {"by": "c"})
    for g in gated:
        assert b.workflows.wait(g, timeout=WAIT).status == "completed"
    for client in (a, b, c):
        client.close()


def test_run_execution_follows_executions_that_other_replicas_run(
    steady: tuple[str, list[replicas.Replica]],
) -> None:
    """RunExecution on one replica: the executions it starts spread over the replicas, and each call's
    stream follows its execution to the result wherever it runs (the events come through PostgreSQL)."""
    pg_dsn, reps = steady

    def run(client: voltorch.Client, i: int) -> list[wpb.RunExecutionResponse]:
        start = wpb.StartExecutionRequest(
            template_name="ran", parameters=to_struct({"n": str(i)}), request_id=f"ran-{i}"
        )
        req = wpb.RunExecutionRequest(start=start, terminal_only=True)
        return list(client.stubs.workflows.RunExecution(req, timeout=WAIT))

    with voltorch.Client(reps[0].target, timeout=WAIT) as a:
        a.workflows.register_template(_template("ran", 0.5))
        with ThreadPoolExecutor(9) as pool:
            runs = list(pool.map(lambda i: run(a, i), range(9)))
    ids = [messages[0].start.execution.id for messages in runs]
    ends = [u.execution for messages in runs for m in messages[1:] for u in m.updates]
    assert [e.id for e in ends] == ids  # one terminal event each, with the final execution
    assert all(e.status == wpb.EXECUTION_STATUS_COMPLETED for e in ends), ends
    owners = _owners(pg_dsn, ids)
    assert set(owners.values()) - {"replica-0"}, owners  # some ran elsewhere: followed across replicas
