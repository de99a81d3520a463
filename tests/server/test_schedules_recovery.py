"""A schedule due while the server was killed (-9): after the restart its tick starts exactly one execution
(catch-up policy "latest"), and a further kill and restart never starts that tick again."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import voltorch
from cli_process import serve
from polling import until
from voltorch import AgentTask, Step, WorkflowTemplate
from voltorch_server.components.schedules import tick_request_id

WAIT = 30.0


def kill(server) -> None:
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(timeout=WAIT)


def runs(client: voltorch.Client) -> list[voltorch.Execution]:
    return [e for e in client.workflows.list() if e.labels.get("schedule") == "due"]


@pytest.mark.timeout(120)
def test_a_tick_due_during_kill_9_starts_exactly_one_execution(tmp_path: Path):
    db = tmp_path / "sched.db"
    with serve(tmp_path, "--db", str(db)) as server:
        with voltorch.Client(server.target, timeout=10) as client:
            client.workflows.register_template(
                WorkflowTemplate(
                    name="report", steps=[Step("r", AgentTask("daily report", ["documentation"]))]
                )
            )
            s = client.schedules.create(
                "report", interval=3600, start_time=time.time() + 1.0, schedule_id="due"
            )
        kill(server)  # before its first tick
    assert s.next_tick_time is not None
    tick = s.next_tick_time.timestamp()
    until(lambda: time.time() > tick + 0.2)  # the tick falls due while no server runs
    for _ in range(2):  # restart; then kill again after the tick started, and restart once more
        with serve(tmp_path, "--db", str(db)) as server:
            with voltorch.Client(server.target, timeout=10) as client:
                (run,) = until(lambda: runs(client))
                after = until(lambda: (x := client.schedules.get("due")).ticks_started and x)
            kill(server)
    with serve(tmp_path, "--db", str(db)) as server, voltorch.Client(server.target, timeout=10) as client:
        assert client.workflows.wait(run.id, timeout=WAIT).status == "completed"
        final = runs(client)
        schedule = client.schedules.get("due")
    assert [e.id for e in final] == [run.id], (tmp_path / "serve.stderr").read_text()[-3000:]
    assert run.request_id == tick_request_id("due", tick)
    assert after.ticks_started == schedule.ticks_started == 1
    assert schedule.next_tick_time is not None
    assert schedule.next_tick_time.timestamp() == pytest.approx(tick + 3600, abs=1e-3)
