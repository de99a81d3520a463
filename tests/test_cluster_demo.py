"""`make cluster` (python -m voltorch_server.cluster_demo): three replicas on PostgreSQL run the complete
workflow, the owner of the execution is SIGKILLed mid-run and another replica finishes it; an interrupt
stops every process it started and removes their folders."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pg
import polling
import psutil
import psycopg
import pytest

pytestmark = pytest.mark.timeout(240)
REPLICA_LINE = re.compile(r"(replica-\d)\s+(\S+)\s+pid (\d+)\s+log (\S+)")


def _command(postgres: pg.PostgresServer) -> list[str]:
    return [sys.executable, "-m", "voltorch_server.cluster_demo", "--postgres", postgres.admin_dsn,
            "--timeout", "150"]  # fmt: skip


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOLTORCH_")}
    env.pop("OPENAI_API_KEY", None)  # the offline agents: no network in tests
    return {**env, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}


def _databases(postgres: pg.PostgresServer) -> set[str]:
    with psycopg.connect(postgres.admin_dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'voltorch_cluster%'")
        return {r[0] for r in rows.fetchall()}


def test_make_cluster_finishes_the_run_on_another_replica(
    postgres: pg.PostgresServer, tmp_path: Path
) -> None:
    before = _databases(postgres)
    proc = subprocess.run(
        _command(postgres), capture_output=True, text=True, timeout=200, env=_env(), cwd=tmp_path
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    replicas = {m.group(1): int(m.group(3)) for m in REPLICA_LINE.finditer(out)}
    assert sorted(replicas) == ["replica-0", "replica-1", "replica-2"]
    killed = re.search(r"SIGKILL (replica-\d) \(pid (\d+)", out)
    took = re.search(
        r"(replica-\d) took execution (wfx_\w+) over\s+([\d.]+)s after the SIGKILL of (replica-\d)", out
    )
    assert killed and took, out
    assert took.group(4) == killed.group(1) != took.group(1)
    assert replicas[killed.group(1)] == int(killed.group(2))
    # Not before the lease ran out: the member timeout (3 s) after the victim's last heartbeat, which
    # beats every timeout / 4 (so at most 0.75 s before the SIGKILL).
    assert float(took.group(3)) >= 3.0 - 0.75 - 0.1
    assert f"Execution {took.group(2)} resumed" in out  # the live steps show the run going on elsewhere
    assert re.search(r"✔ summary\s", out) and "Workflow completed" in out
    assert re.search(rf"Failover: {killed.group(1)} was SIGKILLed mid-run; {took.group(1)} took", out)
    assert not [pid for pid in replicas.values() if psutil.pid_exists(pid)]  # every replica stopped
    assert _databases(postgres) == before  # its database dropped


def test_an_interrupt_stops_everything_it_started(postgres: pg.PostgresServer, tmp_path: Path) -> None:
    proc = subprocess.Popen(
        _command(postgres),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        cwd=tmp_path,
    )
    lines: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        lines.extend(proc.stdout)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        polling.until(lambda: any("started through the cluster client" in line for line in lines), timeout=150,
                      why=lambda: "".join(lines))  # fmt: skip
        proc.send_signal(signal.SIGINT)  # as Ctrl-C does
        # 130 from its own handler, or its death by SIGINT (which a shell reports as 130 too): in ~5 % of
        # runs CPython 3.11 exits by SIGINT although the handler ran (it had printed, no second SIGINT came,
        # the clean-up was done), most likely its unhandled-interrupt flag left set by a nested evaluation
        assert proc.wait(timeout=90) in (130, -signal.SIGINT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    reader.join(10)
    found = [REPLICA_LINE.search(line) for line in lines]
    started = [m for m in found if m]
    assert len(started) == 3
    assert not [m for m in started if psutil.pid_exists(int(m.group(3)))]
    folder = Path(started[0].group(4)).parents[1]
    assert folder.name.startswith("voltorch-cluster-") and not folder.exists()
    assert not [d for d in _databases(postgres) if d.startswith(f"voltorch_cluster_{proc.pid}_")]
