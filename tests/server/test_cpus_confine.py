"""cpu_affinity where the process cannot see its threads (no /proc), and the CPUs its children get."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

MINE = sorted(os.sched_getaffinity(0))
needs_two = pytest.mark.skipif(len(MINE) < 2, reason="this process may use one CPU")


_NO_PROC = """
import os, sys
from voltorch_server import cpus
real = os.listdir
def listdir(path="."):
    if str(path).startswith("/proc"):
        raise FileNotFoundError(2, "No such file or directory", path)
    return real(path)
os.listdir = listdir
print(cpus.apply(sys.argv[1]))
print(sorted(os.sched_getaffinity(0)))
"""


@needs_two
@pytest.mark.parametrize("setting", ["auto", "named"])
def test_the_default_does_not_stop_the_server_where_proc_is_not_mounted(setting: str) -> None:
    """A sandbox without /proc (or a platform with sched_setaffinity but no /proc/self/task): the default
    `auto` made `voltorch serve` refuse to start ("bad configuration: ... /proc/self/task")."""
    value = str(MINE[-1]) if setting == "named" else setting
    done = subprocess.run(
        [sys.executable, "-c", _NO_PROC, value], capture_output=True, text=True, timeout=60, env=os.environ
    )
    assert done.returncode == 0, done.stderr
    if setting == "named":
        assert done.stdout.splitlines()[-1] == f"[{MINE[-1]}]"  # the calling thread is confined at least


_LEAK = """
import os, subprocess, sys
from voltorch_server import cpus
cpus.apply(sys.argv[1])
print(subprocess.run([sys.executable, "-c", "import os; print(os.environ.get('_VOLTORCH_CHILD_CPUS'))"],
                     capture_output=True, text=True).stdout.strip())
"""


@needs_two
def test_the_servers_cpus_are_not_handed_to_every_child() -> None:
    """Only the LLM call process should learn the CPUs the server had: any other child (a function agent's
    subprocess, a nested `voltorch serve` with cpu_affinity=all whose LLM process would then move to the
    outer server's CPUs) inherited _VOLTORCH_CHILD_CPUS through os.environ."""
    done = subprocess.run(
        [sys.executable, "-c", _LEAK, str(MINE[0])],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "None"
