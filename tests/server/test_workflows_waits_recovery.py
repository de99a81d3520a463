"""Waits and timers survive kill -9: a run that waits for approval is approved after a restart and finishes;
a sleep whose time passed while the server was down fires once (late) after the restart, never twice."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import voltorch
from cli_process import serve
from polling import until
from voltorch import AgentTask, ApprovalStep, SleepStep, Step, WorkflowTemplate

WAIT = 30.0


def kill(server) -> None:
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(timeout=WAIT)


@pytest.mark.timeout(120)
def test_a_run_waiting_for_approval_is_approved_after_kill_9(tmp_path: Path):
    db = tmp_path / "approval.db"
    template = WorkflowTemplate(
        name="reviewed",
        steps=[
            Step("draft", AgentTask("Draft the notes", ["documentation"])),
            Step(
                "review", ApprovalStep(prompt="Publish?", data="{{steps.draft.output}}"), depends_on=["draft"]
            ),
            Step(
                "publish",
                AgentTask("Publish {{steps.review.result.data}}", ["documentation"]),
                depends_on=["review"],
            ),
        ],
    )
    with serve(tmp_path, "--db", str(db)) as server:
        with voltorch.Client(server.target, timeout=10) as client:
            client.workflows.register_template(template)
            eid = client.workflows.start("reviewed").execution.id
            until(lambda: client.workflows.get(eid).waiting)
        kill(server)
    with serve(tmp_path, "--db", str(db)) as server, voltorch.Client(server.target, timeout=10) as client:
        waiting = until(lambda: client.workflows.get(eid).waiting)
        assert [(w.step_id, w.kind, w.prompt) for w in waiting] == [("review", "approval", "Publish?")]
        client.workflows.approve(eid, by="eve", request_id="approve-1")
        e = client.workflows.wait(eid, timeout=WAIT)
        started = [
            ev.step_id
            for ev in client.workflows.watch(eid, timeout=WAIT)
            if ev.type == "workflow.step.started"
        ]
    assert e.status == "completed", (e.error, (tmp_path / "serve.stderr").read_text()[-3000:])
    review = e.step("review").structured_output
    assert (review["decision"], review["decided_by"]) == ("approved", "eve")
    assert sorted(started) == ["draft", "publish", "review"]  # nothing ran twice


@pytest.mark.timeout(120)
def test_a_timer_due_while_the_server_was_down_fires_once_late(tmp_path: Path):
    db = tmp_path / "sleep.db"
    template = WorkflowTemplate(
        name="napper",
        steps=[
            Step("nap", SleepStep(duration=1.0)),
            Step("after", AgentTask("wake up", ["documentation"]), depends_on=["nap"]),
        ],
    )
    with serve(tmp_path, "--db", str(db)) as server:
        with voltorch.Client(server.target, timeout=10) as client:
            client.workflows.register_template(template)
            eid = client.workflows.start("napper").execution.id
            (waiting,) = until(lambda: client.workflows.get(eid).waiting)
        kill(server)
    assert waiting.kind == "sleep" and waiting.deadline is not None
    fire_at = waiting.deadline.timestamp()
    until(lambda: time.time() > fire_at + 0.2)  # the timer's time passes while no server runs
    with serve(tmp_path, "--db", str(db)) as server:
        with voltorch.Client(server.target, timeout=10) as client:
            e = client.workflows.wait(eid, timeout=WAIT)
        kill(server)  # and once more after it fired: a restart must not fire it again
    with serve(tmp_path, "--db", str(db)) as server, voltorch.Client(server.target, timeout=10) as client:
        fired = [ev for ev in client.workflows.watch(eid, timeout=WAIT) if ev.type == "workflow.timer.fired"]
        assert client.workflows.get(eid).status == "completed"
    assert e.status == "completed", (e.error, (tmp_path / "serve.stderr").read_text()[-3000:])
    assert len(fired) == 1 and fired[0].step_id == "nap"
    assert fired[0].data["late_seconds"] >= 0.2  # fired late, after the restart
