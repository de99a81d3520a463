"""Crash recovery: a server stopped (gracefully, or with SIGKILL) mid-workflow continues every running
execution from its last checkpoint when it starts again; finished steps never run twice and the in-flight
step re-attaches to its coordination. The workflow is held mid-flight by an agent the test controls."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path

import grpc
import pytest
import voltorch
import voltorch_server.errors
from voltorch import AgentTask, Step, WorkflowTemplate
from voltorch.v1 import coordination_pb2 as cpb
from voltorch.v1 import coordination_pb2_grpc
from voltorch_server.agents.base import AgentTask as ServerTask
from voltorch_server.agents.base import CancelSignal
from voltorch_server.app import VoltorchServer
from voltorch_server.config import Config

WAIT = 30.0

TEMPLATE = WorkflowTemplate(
    name="held",
    steps=[
        Step("first", AgentTask("analyse: a small CLI calculator", ["analysis"])),
        Step("held", AgentTask("hold {{steps.first.result.summary}}", ["held"]), depends_on=["first"]),
        Step("side", AgentTask("document the calculator", ["documentation"]), depends_on=["first"]),
        Step("last", AgentTask("summarise", ["summary"]), depends_on=["held", "side"]),
    ],
)


def started_count(client: voltorch.Client, execution_id: str) -> Counter:
    return Counter(
        ev.step_id
        for ev in client.workflows.watch(execution_id, timeout=WAIT)
        if ev.type == "workflow.step.started"
    )


# -- graceful stop, in process ----------------------------------------------------------------------------


def test_restart_continues_from_the_last_checkpoint(tmp_path: Path):
    cfg = Config(host="127.0.0.1", port=0, db=str(tmp_path / "r.db"), shutdown_grace=1.0)
    entered = threading.Event()
    calls: list[str] = []

    def hold(task: ServerTask, cancel: CancelSignal) -> str:
        calls.append(task.coordination_id)
        entered.set()
        cancel.wait(WAIT)  # held until the server stops
        return "too late"

    srv = VoltorchServer(cfg).start()
    try:
        srv.runtime.coordination.register_agent(
            "holder", kind="function", capabilities=("held",), runtime=hold
        )
        with voltorch.Client(srv.target, timeout=10) as client:
            client.workflows.register_template(TEMPLATE)
            eid = client.workflows.start("held").execution.id
            assert entered.wait(WAIT)
            before = client.workflows.get(eid)
    finally:
        srv.stop(grace=1.0)
    assert before.status == "running" and before.step("first").status == "completed"

    srv = VoltorchServer(cfg).start()
    try:
        srv.runtime.coordination.register_agent(
            "holder",
            kind="function",
            capabilities=("held",),
            runtime=lambda task, cancel: calls.append(task.coordination_id) or "released",
            replace=True,
        )
        with voltorch.Client(srv.target, timeout=10) as client:
            after = client.workflows.wait(eid, timeout=WAIT)
            counts = started_count(client, eid)
            resumed = [
                ev
                for ev in client.workflows.watch(eid, timeout=WAIT)
                if ev.type == "workflow.execution.resumed"
            ]
    finally:
        srv.stop(grace=1.0)
    assert after.status == "completed", after.error
    assert after.step("held").output == "released"
    assert counts == {"first": 1, "held": 1, "side": 1, "last": 1}  # nothing ran twice
    assert after.step("first").coordination_id == before.step("first").coordination_id
    assert len(set(calls)) == 1 and after.step("held").coordination_id == calls[0]  # re-attached
    assert after.step("held").attempts == 1
    assert (
        resumed
        and resumed[0].data["reason"] == "recovered after a restart (continuing from the last checkpoint)"
    )


# -- kill -9, real server processes --------------------------------------------------------------------------


class RawWorker:
    """A remote worker speaking the Connect protocol with the raw stubs: it records assignments and
    answers only when told to, so the test decides when the held step finishes."""

    def __init__(self, target: str, agent_id: str, capabilities: list[str]):
        self.channel = grpc.insecure_channel(target)
        stub = coordination_pb2_grpc.CoordinationServiceStub(self.channel)
        self.outbox: queue.Queue = queue.Queue()
        self.outbox.put(
            cpb.WorkerMessage(
                hello=cpb.WorkerHello(agent_id=agent_id, capabilities=capabilities, max_concurrency=4)
            )
        )
        self.assignments: queue.Queue = queue.Queue()
        self.welcome = threading.Event()
        self.call = stub.Connect(iter(self.outbox.get, None))
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for msg in self.call:
                kind = msg.WhichOneof("message")
                if kind == "welcome":
                    self.welcome.set()
                elif kind == "assignment":
                    self.assignments.put(msg.assignment)
        except grpc.RpcError:
            pass

    def answer(self, a: cpb.TaskAssignment, output: str) -> None:
        self.outbox.put(
            cpb.WorkerMessage(result=cpb.TaskResult(task_id=a.task_id, attempt=a.attempt, output=output))
        )

    def close(self) -> None:
        self.outbox.put(None)
        self.call.cancel()
        self.channel.close()


def serve(db: Path, log: Path) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("OPENAI_API_KEY", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "voltorch_server.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--db",
            str(db),
        ],
        stdout=subprocess.PIPE,
        stderr=log.open("ab"),
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "voltorch listening on 127.0.0.1:PORT (db ...)"
    m = re.search(r"listening on (\S+)", line)
    if not m:
        proc.kill()
        raise AssertionError(f"server did not start: {line!r}\n{log.read_text()}")
    return proc, m.group(1)


@pytest.mark.timeout(90)
def test_sigkill_mid_workflow_then_restart_finishes_it(tmp_path: Path):
    db, log = tmp_path / "crash.db", tmp_path / "server.log"
    proc, target = serve(db, log)
    try:
        worker = RawWorker(target, "holder", ["held"])
        assert worker.welcome.wait(WAIT)
        with voltorch.Client(target, timeout=10) as client:
            client.workflows.register_template(TEMPLATE)
            eid = client.workflows.start("held", request_id="crash-1").execution.id
            first = worker.assignments.get(timeout=WAIT)  # the held step is now in flight
            assert first.step_id == "held" and first.execution_id == eid
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=WAIT)
        worker.close()
    finally:
        if proc.poll() is None:
            proc.kill()

    proc, target = serve(db, log)
    try:
        worker = RawWorker(target, "holder", ["held"])
        again = worker.assignments.get(timeout=WAIT)  # re-dispatched to the reconnected worker
        assert again.coordination_id == first.coordination_id  # the same coordination: re-attached
        assert again.step_id == "held"
        worker.answer(again, "held step done after the crash")
        with voltorch.Client(target, timeout=10) as client:
            e = client.workflows.wait(eid, timeout=WAIT)
            counts = started_count(client, eid)
            assert client.workflows.start(
                "held", request_id="crash-1"
            ).existing  # the request id survived too
        worker.close()
        assert worker.assignments.empty()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=WAIT)
    assert e.status == "completed", (e.error, log.read_text()[-3000:])
    assert e.step("held").output == "held step done after the crash"
    assert e.step("held").coordination_id == first.coordination_id and e.step("held").attempts == 1
    assert counts == {"first": 1, "held": 1, "side": 1, "last": 1}  # finished steps never ran twice
    assert e.step("first").agent_id == "analyst" and e.step("last").status == "completed"


# -- the watcher's RestartComponent ----------------------------------------------------------------------


def test_restarting_the_workflow_component_mid_step_loses_nothing(client, server):
    entered, release = threading.Event(), threading.Event()
    calls: list[str] = []

    def hold(task: ServerTask, cancel: CancelSignal) -> str:
        calls.append(task.step_id)
        entered.set()
        release.wait(WAIT)
        return "held through a restart"

    server.runtime.coordination.register_agent(
        "holder", kind="function", capabilities=("held",), runtime=hold
    )
    client.workflows.register_template(TEMPLATE)
    eid = client.workflows.start("held").execution.id
    assert entered.wait(WAIT)
    assert client.health(refresh=True).active_workflows == 1
    assert client.restart_component("workflows", "test").status == "HEALTHY"
    release.set()
    e = client.workflows.wait(eid, timeout=WAIT)
    assert e.status == "completed" and e.step("held").output == "held through a restart"
    assert calls == ["held"] and started_count(client, eid) == {"first": 1, "held": 1, "side": 1, "last": 1}


def test_a_step_that_finds_the_coordination_engine_stopped_waits_for_it(client, server):
    """A stopped (restarting) coordination engine is not the step's failure: no attempt is used up and
    the step starts once (this is how a server stop used to turn a step into a retry, run twice)."""
    engine = server.runtime.coordination
    refused = threading.Event()
    request = engine.request

    def spy(req):
        try:
            return request(req)
        except voltorch_server.errors.Unavailable:
            refused.set()
            raise

    engine.request = spy
    engine.stop()
    try:
        client.workflows.register_template(
            WorkflowTemplate(name="one", steps=[Step("a", AgentTask("analyse: a note", ["analysis"]))])
        )
        eid = client.workflows.start("one").execution.id
        assert refused.wait(WAIT)
    finally:
        engine.start()
    e = client.workflows.wait(eid, timeout=WAIT)
    assert e.status == "completed" and e.step("a").attempts == 1
    assert started_count(client, eid) == {"a": 1}


def _record_then_stop(order: list[str], name: str, stop: Callable[[], None]) -> None:
    order.append(name)
    stop()


def test_server_stop_stops_a_component_before_those_it_uses(config, monkeypatch):
    srv = VoltorchServer(config).start()
    order: list[str] = []
    for c in srv.runtime.components.values():
        monkeypatch.setattr(c, "stop", partial(_record_then_stop, order, c.name, c.stop))
    srv.stop(grace=1.0)
    first = list(dict.fromkeys(order))  # stop() is idempotent and called again on close
    assert first == [
        "watcher",
        "cluster",
        "schedules",
        "workflows",
        "coordination",
        "llm",
        "state",
        "events",
        "storage",
    ]


# -- kill -9 in the middle of a burst of multi-step workflows -------------------------------------------------

BURST, CHAIN = 60, 5


def _finished_steps(db: Path) -> dict[tuple[str, str], tuple]:
    """(execution, step) -> (status, coordination, attempts, end time) of every step recorded finished."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT execution_id, step_id, status, coordination_id, attempts, end_time FROM workflow_steps"
            " WHERE status IN ('completed', 'failed', 'skipped')"
        ).fetchall()
    finally:
        conn.close()
    return {(r[0], r[1]): tuple(r[2:]) for r in rows}


def _coordinations_per_step(db: Path) -> Counter:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT execution_id, step_id FROM coordinations WHERE execution_id != ''")
        return Counter((r[0], r[1]) for r in rows)
    finally:
        conn.close()


@pytest.mark.timeout(120)
def test_sigkill_during_a_burst_of_workflows_reruns_no_finished_step(tmp_path: Path):
    """Steps commit their checkpoint, coordination and the next step's start together: a server killed
    while dozens of chains run re-runs none of the steps it had recorded finished, and finishes the rest."""
    db, log = tmp_path / "burst.db", tmp_path / "server.log"
    chain = WorkflowTemplate(
        name="burst",
        steps=[
            Step(
                f"s{i}",
                AgentTask(f"step {i}", ["burst"]),
                depends_on=[f"s{i - 1}"] if i else [],
                start_after=None if i else 2.0,  # every chain is started before the first runs
            )
            for i in range(CHAIN)
        ],
    )
    proc, target = serve(db, log)
    try:
        with voltorch.Client(target, timeout=10) as client:
            client.coordination.register_agent(
                "burst-agent", kind="offline", capabilities=["burst"], max_concurrency=BURST
            )
            client.workflows.register_template(chain)
            completions = client.events.subscribe("workflow.step.completed", from_sequence=1)

            def kill_midway() -> None:  # once a share of the steps is done, while the burst goes on
                for n, _ in enumerate(completions, 1):
                    if n >= BURST * CHAIN // 2:
                        break
                proc.send_signal(signal.SIGKILL)

            killer = threading.Thread(target=kill_midway)
            killer.start()
            ids: list[str] = []
            with contextlib.suppress(voltorch.VoltorchError):
                for _ in range(BURST):
                    ids.append(client.workflows.start("burst").execution.id)
            killer.join(WAIT)
            proc.wait(timeout=WAIT)
            completions.close()
    finally:
        if proc.poll() is None:
            proc.kill()
    started = set(ids)
    before = {k: v for k, v in _finished_steps(db).items() if k[0] in started}
    assert 0 < len(before) < len(ids) * CHAIN, f"the kill must land mid-burst ({len(before)} steps done)"

    proc, target = serve(db, log)
    try:
        with voltorch.Client(target, timeout=10) as client:
            done = [client.workflows.wait(eid, timeout=WAIT) for eid in ids]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=WAIT)
    assert [e.status for e in done] == ["completed"] * len(ids), log.read_text()[-3000:]
    after = _finished_steps(db)
    assert all((eid, f"s{i}") in after for eid in ids for i in range(CHAIN))
    rerun = [key for key, was in before.items() if after[key] != was]
    assert rerun == []  # same status, coordination, attempts and end time: not run again
    per_step = _coordinations_per_step(db)
    assert [key for key in before if per_step[key] != 1] == []  # no second coordination for a finished step
