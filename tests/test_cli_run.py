"""`voltorch run` as a user meets it (issue 9, item 13): Ctrl-C stops following (or cancels) without a
question or a traceback and says how to get back; the execution is announced once; progress never counts
backwards; text is cut only with an ellipsis; the closing commands run as printed."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from cli_process import CLI, clean_env
from voltorch_server.cli_output import shorten

WAIT = 30.0


def _path_env() -> dict[str, str]:
    """`voltorch` on PATH, as after `source .venv/bin/activate`."""
    env = clean_env()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture
def held_analyst(server, client):
    """The built-in analyst replaced by one that holds its task until cancelled (or WAIT s)."""
    entered = threading.Event()
    analyst = next(a for a in client.coordination.list_agents() if a.id == "analyst")

    def hold(task, cancel) -> str:
        entered.set()
        cancel.wait(WAIT)  # bounded
        return "released"

    server.runtime.coordination.register_agent(
        "analyst", kind="function", capabilities=tuple(analyst.capabilities), runtime=hold, replace=True
    )
    return entered


def _start_run(server, *extra: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [*CLI, "run", "A CLI calculator", "--target", server.target, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    match = re.match(r"Execution (wfx_\w+) started", first)
    assert match, first + proc.stderr.read() if proc.poll() is not None else first
    return proc, match.group(1)


def test_ctrl_c_stops_following_and_says_how_to_reattach_or_cancel(server, client, held_analyst):
    proc, eid = _start_run(server)
    assert held_analyst.wait(WAIT)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "?" not in out  # no question asked
    assert eid in out and "keeps running" in out
    assert client.workflows.get(eid).status == "running"  # only the following stopped
    commands = [
        line.split(":", 1)[1].strip()
        for line in out.splitlines()
        if line.strip().startswith(("re-attach", "cancel"))
    ]
    assert [c.split()[:3] for c in commands] == [
        ["voltorch", "workflows", "watch"],
        ["voltorch", "workflows", "cancel"],
    ]
    cancel = subprocess.run(
        shlex.split(commands[1]), capture_output=True, text=True, timeout=60, env=_path_env()
    )
    assert cancel.returncode == 0, cancel.stderr
    assert client.workflows.wait(eid, timeout=WAIT).status == "cancelled"
    watch = subprocess.run(
        shlex.split(commands[0]), capture_output=True, text=True, timeout=60, env=_path_env()
    )
    assert watch.returncode == 0 and "cancelled" in watch.stdout, watch.stdout + watch.stderr


def test_ctrl_c_with_cancel_on_interrupt_cancels(server, client, held_analyst):
    proc, eid = _start_run(server, "--cancel-on-interrupt")
    assert held_analyst.wait(WAIT)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 130 and "Traceback" not in err, out + err
    assert f"Cancelled execution {eid}" in out
    assert client.workflows.wait(eid, timeout=WAIT).status == "cancelled"


@pytest.mark.timeout(120)
def test_run_output_announces_once_counts_up_and_closes_with_runnable_commands(server, client):
    run = subprocess.run(
        [*CLI, "run", "Build a CLI calculator with history and unit conversion", "--target", server.target],
        capture_output=True,
        text=True,
        timeout=100,
        env=clean_env(),
    )
    out = run.stdout
    assert run.returncode == 0, out + run.stderr
    started = re.search(r"Execution (wfx_\w+)", out)
    assert started is not None
    eid = started.group(1)
    assert len([line for line in out.splitlines() if line.startswith("Execution ")]) == 1, out
    progress = [tuple(map(int, m)) for m in re.findall(r"\[(\d+)/(\d+)\]", out)]
    assert progress, out
    totals = [total for _done, total in progress]
    assert totals == sorted(totals), progress  # the denominator never shrinks back
    assert [done for done, _ in progress] == list(range(1, len(progress) + 1))
    assert progress[-1][0] == progress[-1][1]  # ends at n/n
    # Every step name is printed whole, or cut at a word with an ellipsis.
    execution = client.workflows.get(eid)
    for step in [s for top in execution.steps for s in (top, *top.children)]:
        assert step.name in out or shorten(step.name, 48) in out or shorten(step.name, 50) in out, step.name
    # The closing commands run as printed.
    closing = out[out.index("Look again") :].splitlines()[1:]
    commands = [line.strip() for line in closing if line.strip().startswith("voltorch ")]
    assert len(commands) == 2, closing
    for command in commands:
        assert f"--target {server.target}" in command  # not the default address: it is spelled out
        done = subprocess.run(
            shlex.split(command), capture_output=True, text=True, timeout=60, env=_path_env()
        )
        assert done.returncode == 0 and eid in done.stdout, (command, done.stdout, done.stderr)


def test_shorten_cuts_at_a_word_with_an_ellipsis():
    assert shorten("short", 10) == "short"
    assert shorten("Implement the user registration service", 20) == "Implement the user…"
    assert shorten("Supercalifragilisticexpialidocious", 10) == "Supercali…"
    assert len(shorten("a " * 100, 30)) <= 30


def test_run_takes_a_budget(server, client):
    run = subprocess.run(
        [*CLI, "run", "A CLI calculator", "--target", server.target, "--detach", "--max-llm-calls", "40"],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )
    assert run.returncode == 0, run.stdout + run.stderr
    execution = client.workflows.get(run.stdout.strip().split()[-1])
    assert execution.budget is not None and execution.budget.max_llm_calls == 40
