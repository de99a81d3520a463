"""Several `voltorch serve` processes on one PostgreSQL database, each in a folder of its own: the replicas
of the cluster tests and of `make cluster`."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from . import cpus

LISTENING = re.compile(r"voltorch listening on (\S+):(\d+)")
START_TIMEOUT = 60.0


class Replica:
    def __init__(self, proc: subprocess.Popen, target: str, log: Path):
        self.proc = proc
        self.target = target
        self.log = log

    def kill(self) -> None:
        """SIGKILL: no shutdown of any kind."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


def _pump(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def start(dsn: str, folder: Path, settings: dict[str, str] | None = None) -> Replica:
    """One replica; `settings` are VOLTORCH_* variables (e.g. {"VOLTORCH_MEMBER_TIMEOUT": "2"})."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOLTORCH_")}
    env["VOLTORCH_BUILTIN_AGENTS"] = "false"
    env.update(settings or {})
    log = folder / "serve.stderr"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "voltorch_server.cli", "serve", "--port", "0", "--db", dsn],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
            cwd=folder,
        )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    while True:
        try:
            line = lines.get(timeout=START_TIMEOUT)
        except queue.Empty:
            proc.kill()
            raise RuntimeError(f"replica printed no 'listening' line: {log.read_text()[-2000:]}") from None
        if line is None:
            raise RuntimeError(f"replica exited early: {log.read_text()[-2000:]}")
        match = LISTENING.search(line)
        if match:
            return Replica(proc, f"{match.group(1)}:{match.group(2)}", log)


@contextmanager
def replicas(
    dsn: str, folder: Path, n: int, settings: dict[str, str] | None = None
) -> Iterator[list[Replica]]:
    """n replicas started together (they apply the migrations once, under the advisory lock); replica i
    has the id replica-i."""
    started: list[Replica] = []
    results: list[Replica | BaseException] = [RuntimeError("not started")] * n

    def one(i: int) -> None:
        try:
            own = {
                "VOLTORCH_REPLICA_ID": f"replica-{i}",
                "VOLTORCH_CPU_AFFINITY": cpus.spread(i),
                **(settings or {}),
            }
            results[i] = start(dsn, folder / f"replica-{i}", own)
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join(START_TIMEOUT + 10)
        for r in results:
            if isinstance(r, BaseException):
                raise r
            started.append(r)
        yield started
    finally:
        for t in threads:  # interrupted while starting: the ones still starting are stopped too
            t.join(START_TIMEOUT + 10)
        for r in results:
            if isinstance(r, Replica) and r.proc.poll() is None:
                r.proc.send_signal(signal.SIGTERM)
        for r in results:
            if isinstance(r, Replica):
                try:
                    r.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    r.proc.kill()
                    r.proc.wait(timeout=10)
