"""The stream iterators outlive a server killed without a word (SIGKILL: no resume point sent): state.watch
and workflows.watch reopen where they were once a server answers again (in a cluster, another replica;
here the same server restarted), with nothing missed and nothing twice (issue 12, item 4)."""

from __future__ import annotations

import threading
from pathlib import Path

import polling
import pytest
import voltorch
from cli_process import serve
from voltorch import ApprovalStep, Step, WorkflowTemplate

pytestmark = pytest.mark.timeout(120)


def _collect(it, out: list, done: threading.Event) -> None:
    try:
        for item in it:
            out.append(item)
    except Exception as exc:  # the test sees how the iterator ended
        out.append(exc)
    done.set()


def test_watches_resume_after_their_server_is_killed(tmp_path: Path) -> None:
    db = str(tmp_path / "failover.db")
    template = WorkflowTemplate(
        name="needs-a-yes", steps=[Step("review", ApprovalStep(prompt="ok?", timeout=3600))]
    )
    with serve(tmp_path, "--db", db) as first:
        port = first.target.rsplit(":", 1)[1]
        client = voltorch.Client(first.target, timeout=10)
        client.workflows.register_template(template)
        run = client.workflows.start("needs-a-yes").execution
        changes: list = []
        updates: list = []
        watch_done, run_done = threading.Event(), threading.Event()
        threading.Thread(
            target=_collect, args=(client.state.watch(prefix="k/", start_revision=1), changes, watch_done)
        ).start()
        threading.Thread(target=_collect, args=(client.workflows.watch(run.id), updates, run_done)).start()
        for i in range(5):
            client.state.set(f"k/{i}", i)
        polling.until(lambda: len(changes) >= 5)
        polling.until(lambda: any(getattr(u, "type", "") == "workflow.step.waiting" for u in updates))
        first.proc.kill()  # SIGKILL: the streams end with UNAVAILABLE and no resume point
        first.proc.wait(timeout=10)
        with serve(tmp_path, "--db", db, "--port", port) as second:
            writer = voltorch.Client(second.target, timeout=10)  # the watches' channel reconnects by itself
            for i in range(5, 10):
                writer.state.set(f"k/{i}", i)
            polling.until(lambda: len(changes) >= 10, timeout=60)
            writer.workflows.approve(run.id)
            assert run_done.wait(60)
            assert not [x for x in changes + updates if isinstance(x, Exception)], changes + updates
            assert [c.revision for c in changes] == list(range(1, 11))  # none missed, none twice
            assert [c.key for c in changes] == [f"k/{i}" for i in range(10)]
            logged = [e.sequence for e in writer.events.list(correlation_id=run.id)]
            seen = [u.event.sequence for u in updates]
            assert seen == logged  # every event of the execution once, in order, across the kill
            assert updates[-1].type == "workflow.execution.completed"
            client.close()
            writer.close()
            second.proc.terminate()
