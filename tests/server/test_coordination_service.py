"""CoordinationService over gRPC: agents, coordinations, errors with field names, and the worker stream —
including a worker process killed with SIGKILL in the middle of a task."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import grpc
import pytest
import voltorch
from voltorch.v1 import coordination_pb2 as pb
from voltorch_server.components.events import EventFilter
from voltorch_server.config import Config

WAIT = 15.0


@pytest.fixture
def config(db_path: Path) -> Config:
    return Config(
        host="127.0.0.1",
        port=0,
        db=str(db_path),
        shutdown_grace=2.0,
        worker_heartbeat_interval=0.2,
        worker_heartbeat_timeout=2.0,
    )


def wait_event(server, type_: str, predicate=lambda e: True, after: int = 0):
    """Block until an event of `type_` matching predicate is in the log (no sleeps)."""
    with server.runtime.events.subscribe(EventFilter(types=(type_,)), after=after) as follower:
        while True:
            e = follower.get(timeout=WAIT)
            assert e is not None, f"no {type_} event within {WAIT}s"
            if predicate(e):
                return e


def test_agents_over_grpc(client):
    builtin = {a.id: a for a in client.coordination.list_agents()}
    assert {"analyst", "planner", "coder", "tester", "writer", "reviewer"} <= set(builtin)
    assert builtin["analyst"].kind == "offline" and builtin["analyst"].status == "idle"
    a = client.coordination.register_agent(
        "helper", kind="offline", capabilities=["x"], max_concurrency=2, labels={"team": "a"}
    )
    assert (a.id, a.kind, a.capabilities, a.max_concurrency, a.labels) == (
        "helper",
        "offline",
        ("x",),
        2,
        {"team": "a"},
    )
    with pytest.raises(voltorch.AlreadyExistsError):
        client.coordination.register_agent("helper", kind="offline")
    llm = client.coordination.register_agent(
        "gpt",
        kind="llm",
        capabilities=["analysis"],
        llm=voltorch.LlmSettings(
            model="m", base_url="http://127.0.0.1:9/v1", temperature=0.5, timeout=3, max_tokens=9
        ),
    )
    assert llm.llm == voltorch.LlmSettings(
        model="m", base_url="http://127.0.0.1:9/v1", temperature=0.5, timeout=3, max_tokens=9
    )
    assert client.coordination.update_capabilities("helper", ["y"], mode="add").capabilities == ("x", "y")
    assert [a.id for a in client.coordination.list_agents(capabilities=["y"])] == ["helper"]
    assert [a.id for a in client.coordination.list_agents(kind="llm")] == ["gpt"]
    remote = client.coordination.register_agent("pre", kind="remote", capabilities=["z"])
    assert remote.status == "offline"
    assert client.coordination.unregister_agent("helper").id == "helper"
    with pytest.raises(voltorch.NotFoundError):
        client.coordination.get_agent("helper")
    with pytest.raises(voltorch.InvalidArgumentError) as exc:
        client.coordination.register_agent("fn", kind="function")
    assert exc.value.fields == ["kind"]
    with pytest.raises(voltorch.InvalidArgumentError) as exc:
        client.coordination.register_agent("bad id", kind="offline")
    assert exc.value.fields == ["agent_id"]


def test_coordination_round_trip_with_builtin_offline_agents(client):
    c = client.coordination.run(
        "Create a simple user authentication system with login and registration functionality",
        required_capabilities=["analysis"],
        priority="high",
        timeout=30,
        correlation_id="corr-svc",
        context={"project": "demo"},
        wait_timeout=WAIT,
    )
    assert c.status == "completed" and c.agent_ids == ("analyst",)
    assert c.priority == voltorch.Priority.HIGH and c.timeout == 30 and c.correlation_id == "corr-svc"
    assert c.context == {"project": "demo"}
    assert c.structured_output["generated_by"].startswith("voltorch offline agent")
    assert c.selection.selected_agent_ids == ("analyst",) and c.selection.explanation
    assert c.selection.candidates[0].reason == "selected: best score"
    assert c.results[0].latency > 0 and c.end_time >= c.start_time >= c.create_time
    cond = client.coordination.run(
        "Review it",
        mode="conditional",
        source_agent_id="reviewer",
        target_agent_id="writer",
        condition=voltorch.Condition.field_equals("approved", True),
        wait_timeout=WAIT,
    )
    assert (
        cond.status == "completed" and cond.results[1].skipped and cond.results[1].condition_result is False
    )
    assert cond.condition == voltorch.Condition.field_equals("approved", True)
    assert [x.id for x in client.coordination.list(correlation_id="corr-svc")] == [c.id]
    assert client.coordination.get(c.id).id == c.id


def test_errors_name_the_field(client):
    with pytest.raises(voltorch.InvalidArgumentError) as exc:
        client.coordination.request("")
    assert exc.value.fields == ["task"]
    with pytest.raises(voltorch.NotFoundError) as nf:
        client.coordination.request("t", source_agent_id="ghost")
    assert nf.value.metadata["field"] == "source_agent_id" and "ghost" in nf.value.message
    with pytest.raises(voltorch.FailedPreconditionError):
        client.coordination.request("t", required_capabilities=["telepathy"])
    with pytest.raises(voltorch.InvalidArgumentError) as exc:
        client.coordination.request("t", mode="conditional", source_agent_id="analyst")
    assert exc.value.fields == ["condition"]
    with pytest.raises(grpc.RpcError) as raw:  # an enum value the SDK would not send
        client.stubs.coordination.RequestCoordination(pb.RequestCoordinationRequest(task="t", mode=42))  # type: ignore[arg-type]  # an unknown enum number on purpose (proto3 enums are open; the stubs are not)
    assert raw.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "mode" in raw.value.details()
    with pytest.raises(voltorch.NotFoundError):
        client.coordination.get("coord_missing")


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda c: c.coordination.get_agent(""), "agent_id"),
        (lambda c: c.coordination.unregister_agent(""), "agent_id"),
        (lambda c: c.coordination.update_capabilities("", ["x"]), "agent_id"),
        (lambda c: c.coordination.get(""), "coordination_id"),
        (lambda c: c.coordination.get("", wait=1), "coordination_id"),
        (lambda c: c.coordination.cancel(""), "coordination_id"),
    ],
)
def test_an_empty_id_is_invalid_argument_not_a_missing_thing(client, call, field):
    """An unset id answered NOT_FOUND ("agent '' is not registered"), unlike every other service's ids."""
    with pytest.raises(voltorch.InvalidArgumentError) as exc:
        call(client)
    assert exc.value.fields == [field] and exc.value.reason == "FIELD_REQUIRED"


def test_agent_ids_are_bounded(client):
    """A pipeline may repeat agents: 100 000 ids were queued as one coordination, whose row and results then
    outgrew what GetCoordination and ListCoordinations can answer."""
    with pytest.raises(voltorch.InvalidArgumentError) as exc:
        client.coordination.request("t", mode="pipeline", agent_ids=["analyst"] * 65)
    assert exc.value.fields == ["agent_ids"]
    assert list(client.coordination.list()) == []  # nothing queued


def test_cancel_and_long_poll_over_grpc(client):
    client.coordination.register_agent("parked", kind="remote", capabilities=["p"])
    c = client.coordination.request("t", source_agent_id="parked", request_id="rq-1")
    assert c.status == "queued" and c.queue_position == 1
    again, existing = client.coordination.submit("t", source_agent_id="parked", request_id="rq-1")
    assert existing and again.id == c.id
    still = client.coordination.get(c.id, wait=0.2)  # long-poll gives up, returns the current state
    assert still.status == "queued"
    cancelled = client.coordination.cancel(c.id, "no longer needed")
    assert cancelled.status == "cancelled" and "no longer needed" in cancelled.error.message
    assert client.coordination.wait(c.id, 1).status == "cancelled"
    with pytest.raises(voltorch.FailedPreconditionError):
        done = client.coordination.run("t", source_agent_id="analyst", wait_timeout=WAIT)
        client.coordination.cancel(done.id)


def test_connect_requires_a_hello_first(client):
    stream = client.stubs.coordination.Connect(iter([pb.WorkerMessage(heartbeat=pb.WorkerHeartbeat())]))
    with pytest.raises(grpc.RpcError) as exc:
        list(stream)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "hello" in exc.value.details()


WORKER_SCRIPT = textwrap.dedent(
    """
    import sys, threading, voltorch

    def handle(task):
        print("STARTED", task.task_id, task.attempt, flush=True)
        threading.Event().wait()  # never finishes: the test kills this process

    client = voltorch.Client(sys.argv[1], timeout=10)
    voltorch.Worker(client, "doomed", ["crunch"], handle).run()
    """
)


def test_a_worker_killed_mid_task_has_its_task_redispatched_and_completed_elsewhere(server, client, tmp_path):
    script = tmp_path / "doomed_worker.py"
    script.write_text(WORKER_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), server.target], stdout=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    stdout = proc.stdout
    assert stdout is not None
    threading.Thread(target=lambda: [lines.put(x) for x in stdout], daemon=True).start()
    try:
        wait_event(server, "agent.connected", lambda e: e.data["agent_id"] == "doomed")
        c = client.coordination.request("crunch the numbers", required_capabilities=["crunch"])
        started = lines.get(timeout=WAIT).split()
        assert started[0] == "STARTED" and started[2] == "1"
        assert client.coordination.get_agent("doomed").current_load == 1

        def survive(task: voltorch.WorkerTask) -> dict:
            return {"done_by": "survivor", "attempt": task.attempt}

        with voltorch.Worker(client, "survivor", ["crunch"], survive) as survivor:
            assert survivor.connected.wait(WAIT)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(WAIT)
            done = client.coordination.wait(c.id, WAIT)
        assert done.status == "completed"
        assert done.structured_output == {"done_by": "survivor", "attempt": 2}
        assert done.agent_ids == ("survivor",) and done.results[0].attempts == 2
        assert client.coordination.get_agent("doomed").status == "offline"
        redispatched = wait_event(server, "coordination.task.redispatched")
        assert redispatched.data["agent_id"] == "doomed" and redispatched.data["next_attempt"] == 2
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(WAIT)


def test_worker_progress_is_published(server, client):
    def handler(task: voltorch.WorkerTask) -> str:
        task.progress("half way", 0.5, {"step": 1})
        return "finished"

    with voltorch.Worker(client, "chatty", ["talk"], handler) as w:
        assert w.connected.wait(WAIT)
        c = client.coordination.run("go", required_capabilities=["talk"], wait_timeout=WAIT)
        assert c.output == "finished"
    e = wait_event(server, "coordination.task.progress")
    assert e.data["message"] == "half way" and e.data["fraction"] == 0.5 and e.data["details"] == {"step": 1}
    assert e.correlation_id == c.correlation_id
