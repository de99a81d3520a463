"""voltorch.Worker: a remote agent from a Python function, against an in-process server."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import voltorch
from voltorch_server.components.events import EventFilter
from voltorch_server.config import Config

WAIT = 15.0


@pytest.fixture
def config(db_path: Path) -> Config:
    return Config(host="127.0.0.1", port=0, db=str(db_path), shutdown_grace=2.0, builtin_agents=False)


def test_handler_results_text_json_and_failures(client):
    def handler(task: voltorch.WorkerTask):
        if task.text == "text":
            return f"echo {task.context['n']}"
        if task.text == "json":
            return {"n": task.context["n"] * 2, "coordination": task.coordination_id}
        if task.text == "refuse":
            raise voltorch.TaskFailed("cannot do that", code="UNSUPPORTED", retryable=False)
        raise ValueError("handler bug")

    with voltorch.Worker(client, "w1", ["calc"], handler, max_concurrency=4, name="Calculator") as w:
        assert w.connected.wait(WAIT) and w.session_id
        agent = client.coordination.get_agent("w1")
        assert (agent.kind, agent.status, agent.name, agent.max_concurrency) == (
            "remote",
            "idle",
            "Calculator",
            4,
        )
        text = client.coordination.run(
            "text", required_capabilities=["calc"], context={"n": 2}, wait_timeout=WAIT
        )
        assert text.output == "echo 2" and text.structured_output is None
        js = client.coordination.run("json", source_agent_id="w1", context={"n": 21}, wait_timeout=WAIT)
        assert js.structured_output == {"n": 42, "coordination": js.id}
        refused = client.coordination.run("refuse", source_agent_id="w1", wait_timeout=WAIT)
        assert (
            refused.status == "failed" and refused.error.code == "UNSUPPORTED" and not refused.error.retryable
        )
        crashed = client.coordination.run("boom", source_agent_id="w1", wait_timeout=WAIT)
        assert crashed.error.code == "HANDLER_ERROR" and "handler bug" in crashed.error.message
        stats = client.coordination.get_agent("w1")
        assert (stats.tasks_completed, stats.tasks_failed) == (2, 2) and stats.success_rate == 0.5
    assert client.coordination.get_agent("w1").status == "offline"  # stop() disconnected it


def test_concurrent_tasks_up_to_max_concurrency(client):
    barrier = threading.Barrier(3, timeout=WAIT)

    def handler(task: voltorch.WorkerTask) -> str:
        barrier.wait()  # only returns when three tasks run at once
        return task.text

    with voltorch.Worker(client, "wide", ["w"], handler, max_concurrency=3) as w:
        assert w.connected.wait(WAIT)
        ids = [client.coordination.request(f"t{i}", source_agent_id="wide").id for i in range(3)]
        assert [client.coordination.wait(i, WAIT).output for i in ids] == ["t0", "t1", "t2"]


def test_cancelling_a_coordination_reaches_the_handler(client):
    entered = threading.Event()
    saw_cancel = threading.Event()

    def handler(task: voltorch.WorkerTask) -> str:
        entered.set()
        if task.cancelled.wait(WAIT):
            saw_cancel.set()
        return "too late"

    with voltorch.Worker(client, "stoppable", ["s"], handler) as w:
        assert w.connected.wait(WAIT)
        c = client.coordination.request("long job", source_agent_id="stoppable")
        assert entered.wait(WAIT)
        assert client.coordination.cancel(c.id, "changed plans").status == "cancelled"
        assert saw_cancel.wait(WAIT)
    assert client.coordination.get(c.id).status == "cancelled"


def test_the_worker_reconnects_after_the_server_side_restarts(server, client):
    with voltorch.Worker(client, "phoenix", ["p"], lambda t: "back") as w:
        assert w.connected.wait(WAIT)
        first = w.session_id
        after = server.runtime.events.last_sequence()
        engine = server.runtime.coordination
        engine.stop()  # what the watcher does to restart a component: the stream ends UNAVAILABLE
        engine.start()
        with server.runtime.events.subscribe(EventFilter(types=("agent.connected",)), after=after) as f:
            e = f.get(timeout=WAIT)  # the worker came back on its own
        assert e is not None and e.data["agent_id"] == "phoenix"
        assert w.connected.wait(WAIT)
        c = client.coordination.run("again", source_agent_id="phoenix", wait_timeout=WAIT)
        assert c.output == "back" and w.session_id != first


def test_unregistering_or_replacing_a_worker_ends_it_for_good(client):
    w = voltorch.Worker(client, "retired", ["r"], lambda t: "x").start()
    assert w.connected.wait(WAIT)
    client.coordination.unregister_agent("retired")
    assert w._thread is not None
    w._thread.join(WAIT)
    assert w.ended is not None
    assert not w._thread.is_alive() and w.ended.reason == "SESSION_UNREGISTERED"
    with pytest.raises(voltorch.NotFoundError):
        client.coordination.get_agent("retired")
    first = voltorch.Worker(client, "dup", ["d"], lambda t: "first").start()
    assert first.connected.wait(WAIT)
    with voltorch.Worker(client, "dup", ["d"], lambda t: "second") as second:
        assert second.connected.wait(WAIT)
        assert first._thread is not None
        first._thread.join(WAIT)
        assert first.ended is not None
        assert first.ended.reason == "SESSION_REPLACED"
        assert client.coordination.run("t", source_agent_id="dup", wait_timeout=WAIT).output == "second"
