"""cpu_affinity: `voltorch serve` runs every thread on the CPUs the setting names (auto: one of those it
may use), refuses a setting it cannot follow at start, and its LLM call process runs on the CPUs the server
had before it confined itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import voltorch
from cli_process import clean_env, cli, serve, stop
from polling import until
from voltorch_server import cpus
from voltorch_server.config import load

MINE = sorted(os.sched_getaffinity(0))
needs_two = pytest.mark.skipif(len(MINE) < 2, reason="this process may use one CPU: nothing to confine it to")


def _threads_cpus(pid: int) -> dict[str, str]:
    """Each thread's allowed CPUs (as /proc lists them), by thread id."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except FileNotFoundError:
            continue  # the thread ended
        out[tid] = next(
            line.split()[1] for line in status.splitlines() if line.startswith("Cpus_allowed_list")
        )
    return out


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("auto", "auto"), ("ALL", "all"), ("3", {3}), ("0,2-3", {0, 2, 3}), (" 1 , 4-5 ", {1, 4, 5})],
)
def test_the_setting_reads_auto_all_or_a_list_of_cpus(text: str, parsed: object) -> None:
    assert cpus.parse(text) == parsed
    assert load(None, env={"VOLTORCH_CPU_AFFINITY": text}).cpu_affinity == text


@pytest.mark.parametrize("bad", ["", "one", "2-1", "-1", "0,,1", "0-99999"])
def test_a_setting_that_names_no_cpus_is_refused_by_name(bad: str) -> None:
    with pytest.raises(ValueError, match="cpu_affinity"):
        load(None, env={"VOLTORCH_CPU_AFFINITY": bad})


def test_a_cpu_this_process_may_not_use_is_refused_with_those_it_may() -> None:
    with pytest.raises(ValueError, match=r"CPU \d+ is not one this process may run on \(it may use"):
        cpus.plan(str(MINE[-1] + 1))


def test_serve_refuses_a_bad_setting_at_start(tmp_path: Path) -> None:
    done = cli("serve", "--port", "0", env=clean_env(VOLTORCH_CPU_AFFINITY="fast"), cwd=tmp_path)
    assert done.returncode == 2
    assert "cpu_affinity" in done.stderr and "Traceback" not in done.stderr


@needs_two
@pytest.mark.parametrize("setting", ["named", "auto", "all"])
def test_serve_runs_every_thread_where_the_setting_says(tmp_path: Path, setting: str) -> None:
    value = str(MINE[-1]) if setting == "named" else setting
    with serve(tmp_path, env={"VOLTORCH_CPU_AFFINITY": value}) as s:
        threads = _threads_cpus(s.proc.pid)
        with voltorch.Client(s.target, timeout=10) as client:
            [watcher] = [c for c in client.health().components if c.name == "watcher"]
        assert stop(s) == 0
    assert len(threads) > 5  # grpc's, the pool's, the components' own
    where = set(threads.values())
    if setting == "named":
        assert where == {value}
    elif setting == "auto":
        assert len(where) == 1 and int(where.pop()) in MINE  # one CPU, all of them on it
    else:
        assert where == {cpus.cpu_list(MINE)}
    assert f"cpu_affinity={value}" in s.stderr.read_text()  # said in the log
    assert watcher.details["cpus"] == next(iter(set(threads.values())))  # and in GetHealth


_CHILD = """
import json, os, sys
from voltorch_server import cpus
from voltorch_server.agents.llm_process import ProcessCalls
import psutil

cpus.apply(sys.argv[1])
calls = ProcessCalls()
calls.warm()
[child] = psutil.Process().children()
print(json.dumps({"server": sorted(os.sched_getaffinity(0)), "child": child.pid}), flush=True)
sys.stdin.read()  # until the test has looked
calls.close()
"""


@needs_two
def test_the_llm_call_process_runs_on_the_cpus_the_server_had() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(MINE[0])], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        seen = json.loads(proc.stdout.readline())
        assert seen["server"] == [MINE[0]]
        child = psutil.Process(seen["child"])
        until(
            lambda: sorted(child.cpu_affinity()) == MINE, why=child.cpu_affinity
        )  # it frees itself as it starts
    finally:
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0


@pytest.mark.parametrize(
    ("others_busy", "busy", "moved_to"),
    [
        (0.9, {1: 0.1}, 1),  # its CPU taken by other work, another idle: move
        (0.9, {1: 0.7}, None),  # the other as busy: stay (no chasing)
        (0.4, {1: 0.0}, None),  # others took less than half of it: stay
        (0.95, {1: 0.5, 2: 0.2, 3: 0.2}, 2),  # the idlest, the lowest number on a tie
        (0.9, {}, None),  # nowhere to go
    ],
)
def test_auto_moves_only_to_a_cpu_idler_by_a_margin(others_busy, busy, moved_to) -> None:
    assert cpus.choose(0, others_busy, busy) == moved_to


_HOG = """
import os, sys, time
os.sched_setaffinity(0, {int(sys.argv[1])})
end = time.monotonic() + 60  # bounded: the test kills it sooner
while time.monotonic() < end:
    pass
"""


@needs_two
def test_auto_moves_off_a_cpu_that_other_work_keeps_busy(tmp_path: Path) -> None:
    env = {"VOLTORCH_CPU_AFFINITY": "auto", "VOLTORCH_CPU_AFFINITY_RECHECK": "0.2"}
    with serve(tmp_path, env=env) as s:
        [first] = set(_threads_cpus(s.proc.pid).values())
        hog = subprocess.Popen([sys.executable, "-c", _HOG, first])
        try:
            moved = until(lambda: set(_threads_cpus(s.proc.pid).values()) - {first}, why=lambda: first)
        finally:
            hog.kill()
            hog.wait()
        assert len(moved) == 1 and moved.pop() in map(str, MINE)
        assert stop(s) == 0
    assert f"other work kept CPU {first} busy" in s.stderr.read_text()


def test_servers_started_together_get_one_cpu_each_in_turn() -> None:
    assert [cpus.spread(i) for i in range(2 * len(MINE))] == [str(c) for c in MINE] * 2
