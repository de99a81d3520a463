"""Coordination engines of several replicas on one database (components/coordination), on SQLite and
PostgreSQL, in one process sharing one event log: a worker connected to one replica is known to the
others; a coordination requested on another replica is handed over to the worker's and followed from
where it was requested; when the worker's replica dies the coordination is adopted and its task goes to
the worker, reconnected elsewhere, once more under a new attempt, the old attempt's result ignored."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from polling import until
from voltorch_server.agents.remote import Assignment, TaskResultMsg, WorkerHello, WorkerSession
from voltorch_server.components.coordination import CoordinationEngine, CoordinationRequest
from voltorch_server.components.events import EventLog
from voltorch_server.config import Config
from voltorch_server.errors import NotFound
from voltorch_server.storage.stores import Stores

BOTH_BACKENDS = True
CONFIG = Config(builtin_agents=False, member_timeout=1.0, worker_heartbeat_timeout=2.0)


class Cluster:
    def __init__(self, db) -> None:
        self.stores = Stores.build(db, db)
        self.events = EventLog(self.stores.events)
        self.events.start()
        self.engines: dict[str, CoordinationEngine] = {}
        self.alive: set[str] = set()
        self._stop = threading.Event()
        self._heart = threading.Thread(target=self._beats, daemon=True)
        self._heart.start()

    def _beats(self) -> None:
        while not self._stop.wait(0.1):
            for name in list(self.alive):
                self.beat(name)

    def replica(self, name: str) -> CoordinationEngine:
        self.beat(name)
        self.alive.add(name)
        engine = CoordinationEngine(self.stores.coordination, self.events, CONFIG, owner=name, shared=True)
        engine.start()
        self.engines[name] = engine
        return engine

    def beat(self, name: str, at: float | None = None) -> None:
        """The member's heartbeat row (what each replica's cluster component writes)."""
        now = time.time() if at is None else at
        with self.stores.coordination.db.write() as tx:
            tx.execute("DELETE FROM members WHERE id = ?", (name,))
            tx.execute(
                "INSERT INTO members(id, address, version, start_time, heartbeat_time, running_executions,"
                " connected_workers) VALUES (?, '', '', ?, ?, 0, 0)",
                (name, now, now),
            )

    def kill(self, name: str) -> None:
        """The replica stops (no clean shutdown of its rows) and its heartbeat is old: dead for everyone."""
        self.alive.discard(name)
        self.engines[name].stop()
        self.beat(name, at=time.time() - 60)

    def stop(self) -> None:
        self._stop.set()
        self._heart.join(5)
        for e in self.engines.values():
            e.stop()
        self.events.stop()


@pytest.fixture
def cluster(db) -> Iterator[Cluster]:
    c = Cluster(db)
    yield c
    c.stop()


def _assignment(session: WorkerSession) -> Assignment:
    msg = until(lambda: session.next_message(0.05))
    assert isinstance(msg, Assignment), msg
    return msg


def _status(engine: CoordinationEngine, agent_id: str) -> str:
    try:
        return engine.get_agent(agent_id).status
    except NotFound:  # not yet heard of
        return ""


def _owner(cluster: Cluster, coordination_id: str) -> str:
    return cluster.stores.coordination.row(coordination_id)["owner"]


def test_a_coordination_for_another_replicas_worker_is_handed_over_and_followed(cluster: Cluster) -> None:
    a, c = cluster.replica("a"), cluster.replica("c")
    session = c.connect_worker(WorkerHello("w1", capabilities=("translate",), max_concurrency=1))
    until(lambda: _status(a, "w1") == "idle")  # known on a: its session is on a live replica

    requested = a.request(CoordinationRequest(task="bonjour", required_capabilities=("translate",)))
    task = _assignment(session).task
    assert (task.coordination_id, task.attempt) == (requested.id, 1)
    assert _owner(cluster, requested.id) == "c" and requested.id not in a.runs.live
    assert a.wait(requested.id, 0.05).status == "running"  # followed from a, not finished
    session.receive(TaskResultMsg(task.task_id, 1, output="hello"))
    done = a.wait(requested.id, 10)
    assert (done.status, done.output) == ("completed", "hello")


def test_the_task_of_a_dead_replica_goes_once_more_to_its_worker_reconnected_elsewhere(
    cluster: Cluster,
) -> None:
    a, c = cluster.replica("a"), cluster.replica("c")
    first = c.connect_worker(WorkerHello("w1", capabilities=("slow",), max_concurrency=2))
    until(lambda: _status(a, "w1") == "idle")
    requested = a.request(CoordinationRequest(task="slowly", required_capabilities=("slow",)))
    old = _assignment(first).task

    cluster.kill("c")  # its worker's session is gone with it
    until(lambda: _status(a, "w1") == "offline")  # a dead replica's worker is disconnected
    b = cluster.replica("b")
    second = b.connect_worker(WorkerHello("w1", capabilities=("slow",), max_concurrency=2))
    new = _assignment(second).task  # adopted by a or b, dispatched to the worker on b
    assert (new.task_id, new.attempt) == (old.task_id, 2)
    second.receive(TaskResultMsg(old.task_id, 1, output="stale"))  # the old attempt's result: ignored
    assert a.wait(requested.id, 0.2).status == "running"
    second.receive(TaskResultMsg(new.task_id, 2, output="fresh"))
    done = a.wait(requested.id, 10)
    assert (done.status, done.output, done.results[0].attempts) == ("completed", "fresh", 2)
    assert _owner(cluster, requested.id) == "b"
    assert second.next_message(0.3) is None  # no third delivery
