"""The operator CLI commands against a real in-process server."""

from __future__ import annotations

import time

from voltorch_server.cli import main


def run(capsys, server, *argv: str) -> tuple[int, str]:
    code = main([*argv, "--target", server.target])
    return code, capsys.readouterr().out


def test_state_set_get_and_list(capsys, server):
    assert run(capsys, server, "state", "set", "project.config", '{"maxRetries": 3}')[0] == 0
    code, out = run(capsys, server, "state", "get", "project.config")
    assert code == 0 and '"maxRetries": 3' in out
    assert "project.config = " in run(capsys, server, "state", "list", "project.")[1]


def test_missing_key_is_a_clear_error(capsys, server):
    assert main(["state", "get", "nope", "--target", server.target]) == 1
    assert "NOT_FOUND" in capsys.readouterr().err


def test_events_lists_newest_first_with_filters(capsys, server, client):
    client.state.set("k", 1)
    code, out = run(capsys, server, "events", "--type", "state.*")
    assert code == 0
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines and all("state.changed" in line for line in lines)


def test_agents_health_metrics_and_errors(capsys, server, client):
    code, out = run(capsys, server, "agents")
    assert code == 0 and "analyst" in out and "offline" in out
    code, out = run(capsys, server, "health")
    assert "state" in out and "coordination" in out
    assert code in (0, 1)
    code, out = run(capsys, server, "metrics")
    assert code == 0 and "voltorch." in out
    assert run(capsys, server, "errors")[0] == 0  # no server-side failures recorded: an empty list


def test_errors_by_correlation_tells_the_story(capsys, server, client):
    client.events.publish("demo.started", {"n": 1}, correlation_id="corr-1")
    client.events.publish("demo.failed", {"n": 2}, correlation_id="corr-1")
    code, out = run(capsys, server, "errors", "--correlation", "corr-1")
    assert code == 0
    assert out.index("demo.started") < out.index("demo.failed")


def test_workflows_signal_approve_and_reject(capsys, server, client):
    from voltorch import ApprovalStep, Step, WaitStep, WorkflowTemplate

    client.workflows.register_template(
        WorkflowTemplate(
            name="cli-waits",
            steps=[
                Step("go", WaitStep("go")),
                Step("ok", ApprovalStep(prompt="Ship {{steps.go.result.payload.v}}?"), depends_on=["go"]),
                Step("no", ApprovalStep(signal="veto"), depends_on=["ok"]),
            ],
        )
    )
    eid = client.workflows.start("cli-waits").execution.id
    code, out = run(capsys, server, "workflows", "signal", eid, "--name", "go", "--payload", '{"v": 2}')
    assert code == 0 and "sent" in out
    code, out = run(capsys, server, "workflows", "approve", eid, "--by", "dana", "--comment", "fine")
    assert code == 0 and "approved" in out
    code, out = run(capsys, server, "workflows", "reject", eid, "--name", "veto", "--request-id", "r1")
    assert code == 0 and "rejected" in out
    e = client.workflows.wait(eid, timeout=30)
    assert e.step("go").structured_output["payload"] == {"v": 2}
    ok = e.step("ok").structured_output
    assert (ok["decision"], ok["decided_by"], ok["comment"]) == ("approved", "dana", "fine")
    assert e.step("no").structured_output["decision"] == "rejected"


def test_workflows_get_shows_what_a_run_waits_for(capsys, server, client):
    from voltorch import ApprovalStep, Step, WorkflowTemplate

    client.workflows.register_template(
        WorkflowTemplate(name="cli-wait", steps=[Step("ok", ApprovalStep(prompt="Ship it?"))])
    )
    eid = client.workflows.start("cli-wait").execution.id
    deadline = time.monotonic() + 30
    while not client.workflows.get(eid).waiting:  # bounded wait for the step to begin waiting
        assert time.monotonic() < deadline
        time.sleep(0.02)
    code, out = run(capsys, server, "workflows", "get", eid)
    assert code == 0 and "waiting" in out and "approval" in out and "Ship it?" in out


def test_schedules_commands(capsys, server, client):
    from voltorch import Step, WaitStep, WorkflowTemplate

    client.workflows.register_template(WorkflowTemplate(name="cli-sched", steps=[Step("w", WaitStep("go"))]))
    code, out = run(
        capsys,
        server,
        "schedules",
        "create",
        "nightly",
        "--template",
        "cli-sched",
        "--cron",
        "0 2 * * *",
        "--time-zone",
        "Europe/Paris",
        "--overlap",
        "buffer_one",
    )
    assert code == 0 and "nightly: next tick" in out
    code, out = run(capsys, server, "schedules", "list")
    assert code == 0 and "nightly" in out and "0 2 * * * (Europe/Paris)" in out and "buffer_one" in out
    code, out = run(capsys, server, "schedules", "trigger", "nightly")
    assert code == 0 and client.workflows.get(out.strip()).labels == {"schedule": "nightly"}
    assert "paused" in run(capsys, server, "schedules", "pause", "nightly")[1]
    assert "active" in run(capsys, server, "schedules", "unpause", "nightly")[1]
    code, out = run(capsys, server, "schedules", "get", "nightly")
    assert code == 0 and "cli-sched" in out
    assert "deleted" in run(capsys, server, "schedules", "delete", "nightly")[1]
    assert main(["schedules", "get", "nightly", "--target", server.target]) == 1
    assert "NOT_FOUND" in capsys.readouterr().err
