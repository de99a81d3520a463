"""Coordination across replicas (issue 12, item 2): real `voltorch serve` processes on one PostgreSQL and a
real `voltorch.Worker`. A coordination requested on replica A whose agent is a worker connected to
replica C is handed over to C, which dispatches it to the worker, while A's waiters follow it through the
event log; a workflow step on A is served the same way; when C is killed with a task in flight, the worker
reconnects to B and the task is re-dispatched to it exactly once."""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path

import polling
import psycopg
import pytest
import replicas
import voltorch
from voltorch import AgentTask, Step, WorkflowTemplate

pytestmark = pytest.mark.timeout(180)
SETTINGS = {"VOLTORCH_MEMBER_TIMEOUT": "2"}
WAIT = 60.0


def _one(dsn: str, sql: str, args: tuple = ()) -> tuple | None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(sql, args).fetchone()


def _session_replica(dsn: str, agent_id: str) -> str:
    row = _one(dsn, "SELECT session_replica FROM agents WHERE id = %s", (agent_id,))
    return row[0] if row else ""


def _owner(dsn: str, coordination_id: str) -> str:
    row = _one(dsn, "SELECT owner FROM coordinations WHERE id = %s", (coordination_id,))
    return row[0] if row else ""


def _handovers(dsn: str, coordination_id: str) -> list[tuple[str, str]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT data FROM events WHERE type = 'coordination.handed_over' ORDER BY seq"
        ).fetchall()
    data = [json.loads(r[0]) for r in rows]
    return [(d["from_replica"], d["to_replica"]) for d in data if d["coordination_id"] == coordination_id]


def _known_on(client: voltorch.Client, agent_id: str) -> bool:
    """The replica behind `client` sees the worker as connected (to it or to another live replica)."""
    try:
        return client.coordination.get_agent(agent_id).status != "offline"
    except voltorch.NotFoundError:
        return False


def test_a_worker_on_replica_c_serves_coordinations_and_steps_requested_on_a(
    pg_dsn: str, tmp_path: Path
) -> None:
    with replicas.replicas(pg_dsn, tmp_path, 3, SETTINGS) as reps:
        a = voltorch.Client(reps[0].target, timeout=30)
        only_c = voltorch.Client(reps[2].target, timeout=30)
        served: list[str] = []

        def handle(task: voltorch.WorkerTask) -> dict:
            served.append(task.coordination_id)
            return {"translated": task.text.upper()}

        worker = voltorch.Worker(only_c, "translator-1", ["translate"], handle).start()
        polling.until(lambda: _session_replica(pg_dsn, "translator-1") == "replica-2")
        polling.until(lambda: _known_on(a, "translator-1"), why=lambda: a.coordination.list_agents())

        requested = a.coordination.request("bonjour", required_capabilities=["translate"], timeout=WAIT)
        done = a.coordination.wait(requested.id, timeout=WAIT)
        assert done.status == "completed", done.error
        assert done.structured_output == {"translated": "BONJOUR"}
        assert served == [requested.id]
        assert _handovers(pg_dsn, requested.id) == [("replica-0", "replica-2")]
        assert _owner(pg_dsn, requested.id) == "replica-2"

        a.workflows.register_template(
            WorkflowTemplate(
                name="translate-once",
                steps=[Step("translate", AgentTask("merci", ["translate"]))],
            )
        )
        execution = a.workflows.start("translate-once").execution.id
        finished = a.workflows.wait(execution, timeout=WAIT)
        assert finished.status == "completed", finished.error
        assert len(served) == 2  # the step's coordination went to the worker on replica-2 too
        worker.stop()
        for c in (a, only_c):
            c.close()


def test_killing_the_workers_replica_redispatches_its_task_once_to_the_worker_on_another(
    pg_dsn: str, tmp_path: Path
) -> None:
    with replicas.replicas(pg_dsn, tmp_path, 3, SETTINGS) as reps:
        a = voltorch.Client(reps[0].target, timeout=30)
        b_or_c = voltorch.Client([reps[1].target, reps[2].target], timeout=30)
        release = threading.Event()
        deliveries: Counter = Counter()
        attempts: list[int] = []

        def handle(task: voltorch.WorkerTask) -> dict:
            deliveries[task.task_id] += 1
            attempts.append(task.attempt)
            assert release.wait(WAIT)
            return {"attempt": task.attempt}

        worker = voltorch.Worker(b_or_c, "slow-1", ["slow"], handle, max_concurrency=2)
        worker.max_backoff = 0.5
        worker.start()
        holder = polling.until(lambda: _session_replica(pg_dsn, "slow-1"))
        other = {"replica-1": "replica-2", "replica-2": "replica-1"}[holder]
        polling.until(lambda: _known_on(a, "slow-1"))

        requested = a.coordination.request("take your time", required_capabilities=["slow"], timeout=WAIT)
        polling.until(lambda: sum(deliveries.values()) == 1)
        assert _owner(pg_dsn, requested.id) == holder
        reps[int(holder[-1])].kill()

        polling.until(lambda: _session_replica(pg_dsn, "slow-1") == other, timeout=WAIT)
        polling.until(lambda: sum(deliveries.values()) == 2, timeout=WAIT, why=lambda: deliveries)
        release.set()
        done = a.coordination.wait(requested.id, timeout=WAIT)
        assert done.status == "completed", done.error
        assert attempts == [1, 2]
        assert done.structured_output == {"attempt": 2}  # the first attempt's result counts for nothing
        assert done.results[0].attempts == 2
        assert _owner(pg_dsn, requested.id) == other
        assert list(deliveries.values()) == [2]  # delivered twice in all: re-dispatched exactly once
        worker.stop()
        for c in (a, b_or_c):
            c.close()
