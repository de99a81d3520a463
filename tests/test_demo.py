"""`make run` (python -m voltorch_server.demo) and `voltorch run`: the headline path as a user runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from voltorch_server.demo import SEED_REQUIREMENT


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("OPENAI_API_KEY", None)  # the offline agents: no network in tests
    return env


@pytest.mark.timeout(120)
def test_make_run_demo_runs_the_complete_workflow(tmp_path: Path):
    db = tmp_path / "voltorch.db"
    proc = subprocess.run(
        [sys.executable, "-m", "voltorch_server.demo", "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=110,
        env=_env(),
        cwd=tmp_path,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert SEED_REQUIREMENT in out
    for step in ("analyse", "generate_tasks", "execute_tasks", "execute_tasks[0]", "review", "summary"):
        assert re.search(rf"✔ {re.escape(step)}\s", out), step  # each step printed as it completed
    assert "Workflow completed" in out
    assert "# Summary" in out or "Summary" in out
    for agent in ("analyst", "planner", "coder", "tester", "writer", "reviewer"):
        assert agent in out
    assert "offline" in out
    found = re.search(r"execution (wfx_\w+)", out)
    assert found is not None
    eid = found.group(1)
    assert str(db.resolve()) in out
    for key in ("", ".analysis", ".tasks", ".results", ".review", ".summary"):
        assert f"requirement.{eid}{key}\n" in out
    assert db.exists()


@pytest.mark.timeout(120)
def test_voltorch_run_against_a_running_server(tmp_path: Path):
    log = tmp_path / "serve.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "voltorch_server.cli", "serve", "--port", "0", "--db", str(tmp_path / "s.db")],
        stdout=subprocess.PIPE,
        stderr=log.open("wb"),
        text=True,
        env=_env(),
    )
    try:
        assert server.stdout is not None
        listening = re.search(r"listening on (\S+)", server.stdout.readline())
        assert listening is not None
        target = listening.group(1)
        cli = [sys.executable, "-m", "voltorch_server.cli"]
        run = subprocess.run(
            [*cli, "run", "A CLI calculator with history", "--target", target, "--skip-review"],
            capture_output=True,
            text=True,
            timeout=100,
            env=_env(),
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert "✔ summary" in run.stdout and "Workflow completed" in run.stdout
        started = re.search(r"Execution (wfx_\w+)", run.stdout)
        assert started is not None
        eid = started.group(1)
        listed = subprocess.run(
            [*cli, "workflows", "--target", target], capture_output=True, text=True, timeout=60, env=_env()
        )
        assert eid in listed.stdout and "completed" in listed.stdout
        got = subprocess.run(
            [*cli, "workflows", "get", eid, "--json", "--target", target],
            capture_output=True,
            text=True,
            timeout=60,
            env=_env(),
        )
        assert got.returncode == 0 and '"status": "completed"' in got.stdout
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.timeout(120)
def test_make_run_joins_the_server_that_owns_the_database(tmp_path: Path):
    """`make serve` and `make run` on the same default ./voltorch.db: run uses the running server."""
    import voltorch
    from cli_process import serve, stop

    db = tmp_path / "voltorch.db"
    with serve(tmp_path, "--db", str(db)) as owner:
        proc = subprocess.run(
            [sys.executable, "-m", "voltorch_server.demo", "--db", str(db)],
            capture_output=True,
            text=True,
            timeout=110,
            env=_env(),
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"server {owner.target}" in proc.stdout and "already owns" in proc.stdout
        started = re.search(r"Execution (wfx_\w+)", proc.stdout)
        assert started is not None
        eid = started.group(1)
        with voltorch.Client(owner.target, timeout=10) as c:
            assert c.workflows.get(eid).status == "completed"  # it ran on the owner
        assert stop(owner) == 0
