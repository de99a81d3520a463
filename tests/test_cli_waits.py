"""`voltorch workflows signal|approve|reject`, what `workflows get` shows of a waiting run, and
`voltorch schedules ...`, as real CLI processes against an in-process server."""

from __future__ import annotations

import json
import subprocess

from cli_process import CLI, clean_env, cli
from polling import until
from voltorch import ApprovalStep, SleepStep, Step, WaitStep, WorkflowTemplate


def ok(result) -> str:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result.stdout


def test_workflows_signal_approve_and_reject(server, client):
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
    t = ("--target", server.target, "-o", "table")
    assert "sent" in ok(cli("workflows", "signal", eid, "--name", "go", "--payload", '{"v": 2}', *t))
    assert "approved" in ok(cli("workflows", "approve", eid, "--by", "dana", "--comment", "fine", *t))
    sent = json.loads(
        ok(
            cli(
                "workflows",
                "reject",
                eid,
                "--name",
                "veto",
                "--request-id",
                "r1",
                "--target",
                server.target,
                "-o",
                "json",
            )
        )
    )
    assert sent["signal"]["name"] == "veto" and sent["existing"] is False
    e = client.workflows.wait(eid, timeout=30)
    assert e.step("go").structured_output["payload"] == {"v": 2}
    approved = e.step("ok").structured_output
    assert (approved["decision"], approved["decided_by"], approved["comment"]) == ("approved", "dana", "fine")
    assert e.step("no").structured_output["decision"] == "rejected"


def test_workflows_get_shows_what_a_run_waits_for(server, client):
    client.workflows.register_template(
        WorkflowTemplate(name="cli-wait", steps=[Step("ok", ApprovalStep(prompt="Ship it?"))])
    )
    eid = client.workflows.start("cli-wait").execution.id
    until(lambda: client.workflows.get(eid).waiting)  # the step has begun waiting
    out = ok(cli("workflows", "get", eid, "--target", server.target, "-o", "table"))
    assert "waiting" in out and "approval" in out and "Ship it?" in out


def test_schedules_commands(server, client):
    client.workflows.register_template(WorkflowTemplate(name="cli-sched", steps=[Step("w", WaitStep("go"))]))
    t = ("--target", server.target, "-o", "table")
    out = ok(
        cli(
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
            *t,
        )
    )
    assert "nightly: next tick" in out
    out = ok(cli("schedules", "list", *t))
    assert "nightly" in out and "Europe/Paris" in out and "buffer_one" in out
    listed = [
        json.loads(line) for line in ok(cli("schedules", "list", "--target", server.target)).splitlines()
    ]
    assert [s["id"] for s in listed] == ["nightly"]
    execution_id = ok(cli("schedules", "trigger", "nightly", *t)).strip()
    assert client.workflows.get(execution_id).labels == {"schedule": "nightly"}
    assert "paused" in ok(cli("schedules", "pause", "nightly", *t))
    assert "active" in ok(cli("schedules", "unpause", "nightly", *t))
    assert "cli-sched" in ok(cli("schedules", "get", "nightly", *t))
    assert "deleted" in ok(cli("schedules", "delete", "nightly", *t))
    gone = cli("schedules", "get", "nightly", *t)
    assert gone.returncode == 1 and "NOT_FOUND" in gone.stderr


def test_run_with_approve_tasks_shows_the_wait_and_finishes_once_approved(server, client):
    proc = subprocess.Popen(
        [*CLI, "run", "--approve-tasks", "A CLI calculator", "--target", server.target],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    try:

        def asking() -> list:  # the run asks for approval (or the CLI has ended: fail at once)
            assert proc.poll() is None, "voltorch run ended before asking for approval"
            return [e for e in client.workflows.list(status="running") if client.workflows.get(e.id).waiting]

        waiting = until(asking, 60)
        client.workflows.approve(waiting[0].id, by="tester")
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "waiting for approval" in out and f"voltorch workflows approve|reject {waiting[0].id}" in out
    assert (
        client.workflows.get(waiting[0].id).step("approve_tasks").structured_output["decided_by"] == "tester"
    )


def test_workflows_start_wait_shows_the_end_and_exits_by_it(server, client):
    client.workflows.register_template(WorkflowTemplate(name="cli-nap", steps=[Step("nap", SleepStep(0.01))]))
    client.workflows.register_template(
        WorkflowTemplate(name="cli-late", steps=[Step("never", WaitStep("never"))], timeout=0.05)
    )
    t = ("--target", server.target, "-o", "json")
    ended = json.loads(ok(cli("workflows", "start", "cli-nap", "--wait", *t)))
    assert ended["status"] == "completed" and ended["template_name"] == "cli-nap"
    [only] = client.workflows.list(template_name="cli-nap")
    assert only.id == ended["id"]
    late = cli("workflows", "start", "cli-late", "--wait", *t)
    assert late.returncode == 1, (late.stdout, late.stderr)
    assert json.loads(late.stdout)["status"] == "timed_out"
