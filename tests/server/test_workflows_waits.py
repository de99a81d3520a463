"""Signals, human approval and durable timers, end to end through the SDK against a real server: WaitStep
(kept signals, timeouts a ConditionStep branches on), ApprovalStep (approve / reject / edit, who decided),
SleepStep and start_after, idempotent signals, GetExecution's `waiting`, and a waiting run holding no
concurrency slot. Crash recovery with real processes is in test_workflows_waits_recovery.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import voltorch
from polling import until
from templates import APPROVAL
from voltorch import (
    AgentTask,
    ApprovalStep,
    Condition,
    ConditionStep,
    SleepStep,
    Step,
    WaitStep,
    WorkflowTemplate,
)
from voltorch_server.app import VoltorchServer
from voltorch_server.config import Config

WAIT = 30.0


def waiting_on(client: voltorch.Client, eid: str, step_id: str) -> voltorch.WaitingFor:
    def find():
        return next((w for w in client.workflows.get(eid).waiting if w.step_id == step_id), None)

    return until(find)


def events_of(client: voltorch.Client, eid: str, type_: str) -> list:
    return [ev for ev in client.workflows.watch(eid, timeout=WAIT) if ev.type == type_]


def test_a_signal_sent_before_anyone_waits_is_kept_and_delivered_once(client):
    client.workflows.register_template(
        WorkflowTemplate(
            name="gates",
            steps=[
                Step("gate", WaitStep("first")),
                Step("go", WaitStep("go"), depends_on=["gate"]),
            ],
        )
    )
    eid = client.workflows.start("gates").execution.id
    w = waiting_on(client, eid, "gate")
    assert (w.kind, w.signal, w.deadline) == ("signal", "first", None)
    early = client.workflows.signal(eid, "go", {"x": 1}, request_id="go-1")
    assert not early.existing and early.signal.consumed_by_step == ""  # kept: nobody waits for it yet
    again = client.workflows.signal(eid, "go", {"x": 1}, request_id="go-1")
    assert again.existing and again.signal.id == early.signal.id
    with pytest.raises(voltorch.AlreadyExistsError) as err:
        client.workflows.signal(eid, "go", {"x": 2}, request_id="go-1")
    assert err.value.reason == "REQUEST_ID_REUSED"
    client.workflows.signal(eid, "first", "open", sender="tester")
    e = client.workflows.wait(eid, timeout=WAIT)
    assert e.status == "completed", e.error
    assert e.step("gate").structured_output["payload"] == "open"
    assert e.step("gate").structured_output["sender"] == "tester"
    go = e.step("go").structured_output
    assert go == {
        "signal": "go",
        "timed_out": False,
        "payload": {"x": 1},
        "signal_id": early.signal.id,
        "sender": "anonymous",
    }
    assert len(events_of(client, eid, "workflow.signal.received")) == 2  # the repeated request: nothing new
    assert e.waiting == []
    with pytest.raises(voltorch.FailedPreconditionError) as finished:
        client.workflows.signal(eid, "go", 1)
    assert finished.value.reason == "EXECUTION_FINISHED"


def test_bad_signals_are_refused_naming_the_field(client):
    with pytest.raises(voltorch.InvalidArgumentError) as err:
        client.workflows.signal("wfx-nope", "bad name!")
    assert err.value.field_violations[0].field == "name"
    with pytest.raises(voltorch.NotFoundError) as missing:
        client.workflows.signal("wfx-nope", "go")
    assert missing.value.reason == "EXECUTION_NOT_FOUND"


def test_a_signal_payload_that_is_not_json_is_refused(client):
    """An Infinity payload was delivered: the waiting step completed with the output 'Infinity' (not JSON)."""
    client.workflows.register_template(WorkflowTemplate(name="gate", steps=[Step("gate", WaitStep("go"))]))
    eid = client.workflows.start("gate").execution.id
    waiting_on(client, eid, "gate")
    with pytest.raises(voltorch.InvalidArgumentError) as err:
        client.workflows.signal(eid, "go", {"n": float("inf")})
    assert err.value.field_violations[0].field == "payload"
    assert client.workflows.get(eid).status == "running"
    assert events_of_now(client, eid, "workflow.signal.received") == []


def test_a_signal_payload_holding_a_nul_is_refused(client):
    """A string payload with a NUL became the waiting step's output: PostgreSQL refused the write (INTERNAL,
    the execution left running) and SQLite stored it. Nested, it would reach a later step's task."""
    client.workflows.register_template(WorkflowTemplate(name="gate", steps=[Step("gate", WaitStep("go"))]))
    eid = client.workflows.start("gate").execution.id
    waiting_on(client, eid, "gate")
    for payload, field in (("a\x00b", "payload"), ({"notes": ["x\x00"]}, "payload")):
        with pytest.raises(voltorch.InvalidArgumentError) as err:
            client.workflows.signal(eid, "go", payload)
        assert err.value.field_violations[0].field == field
        assert "NUL" in err.value.field_violations[0].description
    assert client.workflows.get(eid).status == "running"
    assert events_of_now(client, eid, "workflow.signal.received") == []


def events_of_now(client: voltorch.Client, eid: str, type_: str) -> list:
    return [ev for ev in client.events.list(type_) if ev.correlation_id == eid]


def test_a_wait_that_times_out_says_so_and_a_condition_branches_on_it(client):
    client.workflows.register_template(
        WorkflowTemplate(
            name="timeout-branch",
            steps=[
                Step("reply", WaitStep("reply", timeout=0.3)),
                Step(
                    "check",
                    ConditionStep("reply", Condition.field_equals("timed_out", True), ["remind"], ["thank"]),
                    depends_on=["reply"],
                ),
                Step("remind", SleepStep(duration=0.01)),
                Step("thank", SleepStep(duration=0.01)),
            ],
        )
    )
    eid = client.workflows.start("timeout-branch").execution.id
    assert waiting_on(client, eid, "reply").deadline is not None
    e = client.workflows.wait(eid, timeout=WAIT)
    assert e.status == "completed", e.error
    assert e.step("reply").structured_output == {"signal": "reply", "timed_out": True, "payload": None}
    assert e.step("remind").status == "completed" and e.step("thank").status == "skipped"
    fired = events_of(client, eid, "workflow.timer.fired")
    assert sorted((ev.step_id, ev.data["kind"]) for ev in fired) == [
        ("remind", "sleep"),
        ("reply", "timeout"),
    ]


@pytest.mark.parametrize("decision", ["approve", "reject", "edit"])
def test_approval_outcomes_are_recorded_with_who_decided(client, decision):
    client.workflows.register_template(APPROVAL)
    eid = client.workflows.start("publish").execution.id
    w = waiting_on(client, eid, "review")
    draft = client.workflows.get(eid).step("draft").output
    assert (w.kind, w.signal, w.prompt, w.data) == ("approval", "approval", "Publish these notes?", draft)
    if decision == "approve":
        client.workflows.approve(eid, by="alice", comment="ship it")
    elif decision == "reject":
        client.workflows.reject(eid, by="bob", comment="too long")
    else:
        client.workflows.edit(eid, "Short notes.", by="carol")
    e = client.workflows.wait(eid, timeout=WAIT)
    assert e.status == "completed", e.error
    out = e.step("review").structured_output
    expected = {
        "approve": ("approved", True, "alice", draft),
        "reject": ("rejected", False, "bob", draft),
        "edit": ("edited", True, "carol", "Short notes."),
    }[decision]
    assert (out["decision"], out["approved"], out["decided_by"], out["data"]) == expected
    assert e.step("announce").status == ("skipped" if decision == "reject" else "completed")
    completed = [ev for ev in events_of(client, eid, "workflow.step.completed") if ev.step_id == "review"]
    assert completed[0].data["sender"] == expected[2]
    waiting = [ev for ev in events_of(client, eid, "workflow.step.waiting") if ev.step_id == "review"]
    assert waiting[0].data["kind"] == "approval" and waiting[0].data["prompt"] == "Publish these notes?"


def test_a_decision_without_a_known_verdict_fails_the_step(client):
    client.workflows.register_template(APPROVAL)
    eid = client.workflows.start("publish").execution.id
    waiting_on(client, eid, "review")
    client.workflows.signal(eid, "approval", {"decision": "maybe"})
    e = client.workflows.wait(eid, timeout=WAIT)
    assert e.status == "failed" and e.step("review").error.code == "INVALID_DECISION"


def test_the_approver_is_the_callers_role_when_no_name_is_given(tmp_path: Path):
    token, admin = "agent-token-0123456789", "admin-token-0123456789"
    tokens = f"agent:{token},admin:{admin}"
    cfg = Config(host="127.0.0.1", port=0, db=str(tmp_path / "a.db"), auth_tokens=tokens)
    srv = VoltorchServer(cfg).start()
    try:
        with voltorch.Client(srv.target, token=admin, timeout=10) as client:
            client.workflows.register_template(APPROVAL)
        with voltorch.Client(srv.target, token=token, timeout=10) as client:
            eid = client.workflows.start("publish").execution.id
            waiting_on(client, eid, "review")
            client.workflows.approve(eid)
            e = client.workflows.wait(eid, timeout=WAIT)
    finally:
        srv.stop(grace=1.0)
    assert e.step("review").structured_output["decided_by"] == "agent"


def test_sleep_and_start_after_are_timers_that_fire_once(client):
    client.workflows.register_template(
        WorkflowTemplate(
            name="timers",
            steps=[
                Step("nap", SleepStep(duration=0.2)),
                Step(
                    "later",
                    AgentTask("after a delay", ["documentation"]),
                    depends_on=["nap"],
                    start_after=0.2,
                ),
            ],
        )
    )
    eid = client.workflows.start("timers").execution.id
    assert waiting_on(client, eid, "nap").kind == "sleep"
    assert waiting_on(client, eid, "later").kind == "start_after"
    e = client.workflows.wait(eid, timeout=WAIT)
    assert e.status == "completed", e.error
    fired = events_of(client, eid, "workflow.timer.fired")
    assert sorted((ev.step_id, ev.data["kind"]) for ev in fired) == [
        ("later", "start_after"),
        ("nap", "sleep"),
    ]
    nap, later = e.step("nap"), e.step("later")
    assert nap.end_time <= later.start_time
    assert (later.start_time - nap.end_time).total_seconds() >= 0.19


def test_invalid_wait_steps_are_refused_naming_the_field(client):
    bad = WorkflowTemplate(
        name="bad-waits",
        steps=[
            Step("a", WaitStep("")),
            Step("b", SleepStep()),
            Step("c", ApprovalStep(prompt="{{steps.zzz.output}}")),
        ],
    )
    with pytest.raises(voltorch.InvalidArgumentError) as err:
        client.workflows.register_template(bad)
    fields = [v.field for v in err.value.field_violations]
    assert fields == [
        "template.steps[0].wait.signal",
        "template.steps[1].sleep",
        "template.steps[2].approval.prompt",
    ], err.value.field_violations
    negative = WorkflowTemplate(name="neg", steps=[Step("d", WaitStep("ok"), start_after=-1)])
    with pytest.raises(voltorch.InvalidArgumentError) as err:
        client.workflows.register_template(negative)
    assert err.value.reason == "DURATION_INVALID"
    assert err.value.field_violations[0].field == "template.steps[0].start_after"


def test_a_steps_attempt_timeout_on_a_wait_is_refused_not_ignored(client):
    """Step.timeout bounds an agent's attempt; a wait has none, so it never applied: a run meant to stop
    waiting after it waited on. The wait's own timeout is the one to set."""
    for kind, own in (
        (WaitStep("go"), "wait.timeout"),
        (ApprovalStep(prompt="ok?"), "approval.timeout"),
        (SleepStep(duration=5), "sleep.duration"),
    ):
        t = WorkflowTemplate(name="bounded-wait", steps=[Step("w", kind, timeout=0.3)])
        with pytest.raises(voltorch.InvalidArgumentError) as err:
            client.workflows.register_template(t)
        (v,) = err.value.field_violations
        assert v.field == "template.steps[0].timeout" and own in v.description


def test_a_waiting_run_holds_no_concurrency_slot(tmp_path: Path):
    cfg = Config(host="127.0.0.1", port=0, db=str(tmp_path / "c.db"), workflow_concurrency=1)
    srv = VoltorchServer(cfg).start()
    try:
        with voltorch.Client(srv.target, timeout=10) as client:
            client.workflows.register_template(
                WorkflowTemplate(name="hold", steps=[Step("w", WaitStep("go"))])
            )
            client.workflows.register_template(
                WorkflowTemplate(name="work", steps=[Step("t", AgentTask("document", ["documentation"]))])
            )
            waiting = client.workflows.start("hold").execution.id
            waiting_on(client, waiting, "w")
            other = client.workflows.wait(client.workflows.start("work").execution.id, timeout=WAIT)
            assert other.status == "completed"  # ran while the other execution waits: no slot held
            assert client.workflows.get(waiting).status == "running"
            client.workflows.signal(waiting, "go")
            assert client.workflows.wait(waiting, timeout=WAIT).status == "completed"
    finally:
        srv.stop(grace=1.0)


def test_the_complete_workflow_can_ask_approval_of_its_task_list(client):
    started = client.workflows.execute_complete("A CLI calculator", approve_tasks=True, max_tasks=3)
    eid = started.execution.id
    w = waiting_on(client, eid, "approve_tasks")
    tasks = w.data
    assert isinstance(tasks, list) and len(tasks) >= 2
    assert client.workflows.get(eid).step("execute_tasks").status == "pending"  # no fan-out yet
    client.workflows.edit(eid, tasks[:1], by="lead")
    e = client.workflows.wait(eid, timeout=WAIT)
    assert e.status == "completed", e.error
    assert len(e.step("execute_tasks").children) == 1
    assert e.step("approve_tasks").structured_output["decided_by"] == "lead"


def test_a_rejected_task_list_skips_the_fan_out(client):
    eid = client.workflows.execute_complete("A CLI calculator", approve_tasks=True).execution.id
    waiting_on(client, eid, "approve_tasks")
    client.workflows.reject(eid, comment="not these")
    e = client.workflows.wait(eid, timeout=WAIT)
    assert e.status == "completed", e.error
    assert [e.step(s).status for s in ("execute_tasks", "review", "summary")] == ["skipped"] * 3
