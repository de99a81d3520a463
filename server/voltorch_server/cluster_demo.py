"""`make cluster`: a cluster losing a replica mid-run, in one command.

Starts a throwaway PostgreSQL, three `voltorch serve` replicas on loopback (replica-0..2, built-in offline
agents, a short member timeout) and runs the complete workflow through a client of all three, printing its
steps live as `make run` does. The task list waits for approval: meanwhile the replica that owns the
execution is killed (SIGKILL), another takes it over once the lease runs out (the owner's heartbeat older
than the member timeout), the approval goes through whichever replica is up, and the run finishes there.
Exits 0 when the workflow completed on another replica. Ctrl-C (or the end) stops everything it started:
the replicas, PostgreSQL, their temp folders.

    python -m voltorch_server.cluster_demo [--replicas 3] [--member-timeout 3] [--postgres DSN]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console

from .cli_output import console
from .demo import SEED_REQUIREMENT, follow, report
from .replica_processes import Replica, replicas
from .throwaway_postgres import PostgresServer, find_bindir


@dataclass
class Takeover:
    """What the failover did: who was killed, who took the execution over, how long that took."""

    killed: str
    by: str = ""
    seconds: float = 0.0


class Failover:
    """Waits for the run to wait for approval, SIGKILLs its owner, watches the execution move, approves it."""

    def __init__(self, client: Any, reps: list[Replica], execution_id: str, out: Console):
        self.client, self.reps, self.eid, self.out = client, reps, execution_id, out
        self.result: Takeover | None = None
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._moves: Any = None

    def run(self, timeout: float) -> None:
        try:
            self._run(time.monotonic() + timeout)
        except BaseException as exc:  # the main thread's exit code says it too
            if not self._stop.is_set():
                self.error = exc
                self.out.print(f"[red]The failover went wrong: {exc!r}[/]")

    def cancel(self) -> None:
        """Stop waiting (the run ended, or Ctrl-C): the thread returns promptly, before the client closes."""
        self._stop.set()
        moves = self._moves
        if moves is not None:
            moves.close()

    def _run(self, deadline: float) -> None:
        while not self.client.workflows.get(self.eid).waiting:
            if self._stop.wait(0.1) or time.monotonic() > deadline:
                return  # the run ended (or the caller gave up) before it waited
        owner = self._owner()
        victim = next(r for i, r in enumerate(self.reps) if f"replica-{i}" == owner)
        survivors = [r.target for r in self.reps if r is not victim]
        with self.client.events.subscribe("workflow.execution.moved", heartbeats=True) as moves:
            self._moves = moves
            if self._stop.is_set():
                return
            next(iter(moves))  # the first heartbeat: the subscription is established
            self.out.print(
                f"[bold red]SIGKILL {owner}[/] (pid {victim.proc.pid}, {victim.target}): it owns execution "
                f"{self.eid}; the others take it over once its heartbeat is older than the member timeout"
            )
            killed_at = time.monotonic()
            victim.kill()
            for ev in moves:
                data = getattr(ev, "data", None)
                if isinstance(data, dict) and data.get("execution_id") == self.eid:
                    self.result = Takeover(owner, str(data.get("owner")), time.monotonic() - killed_at)
                    break
                if self._stop.is_set() or time.monotonic() > deadline:
                    return
        took = self.result
        if took is None:
            return
        self.out.print(
            f"[bold green]{took.by} took execution {self.eid} over[/] {took.seconds:.2f}s after the SIGKILL "
            f"of {owner}; approving the task list through the live replicas ({', '.join(survivors)})"
        )
        self.client.workflows.approve(self.eid, comment="approved by make cluster after the failover")

    def _owner(self) -> str:
        """The replica holding the execution's lease (Execution.replica_id, read through any replica)."""
        owner = self.client.workflows.get(self.eid).replica_id
        if not owner:
            raise RuntimeError(f"execution {self.eid} is not owned by any replica")
        return str(owner)


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # the same clean-up as Ctrl-C


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m voltorch_server.cluster_demo", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--requirement", default=SEED_REQUIREMENT)
    p.add_argument("--replicas", type=int, default=3, help="how many replicas (at least 2)")
    p.add_argument("--member-timeout", type=float, default=3.0, help="seconds without heartbeat: dead")
    p.add_argument(
        "--postgres",
        default="",
        help="an existing server's DSN (its user may CREATE DATABASE) instead of a throwaway one",
    )
    p.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds")
    args = p.parse_args(argv)
    if args.replicas < 2:
        p.error("--replicas: at least 2 (one is killed)")
    if args.member_timeout <= 0:
        p.error("--member-timeout: must be positive")

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    out = console()
    with ExitStack() as stack:
        folder = Path(tempfile.mkdtemp(prefix="voltorch-cluster-"))
        stack.callback(shutil.rmtree, folder, ignore_errors=True)
        if args.postgres:
            postgres = PostgresServer.existing(args.postgres)
            dsn = postgres.new_database("voltorch_cluster")
            stack.callback(postgres.drop_database, dsn)
        else:
            bindir = find_bindir()
            if bindir is None:
                print(
                    "voltorch: no PostgreSQL server binaries (initdb, postgres) on this machine: install "
                    "postgresql, or give --postgres DSN",
                    file=sys.stderr,
                )
                return 2
            out.print("Starting a throwaway PostgreSQL…")
            postgres = PostgresServer.start(bindir)
            stack.callback(postgres.stop)
            dsn = postgres.new_database("voltorch_cluster")
        out.print(f"PostgreSQL: {dsn}")
        settings = {"VOLTORCH_MEMBER_TIMEOUT": f"{args.member_timeout:g}", "VOLTORCH_BUILTIN_AGENTS": "true"}
        reps = stack.enter_context(replicas(dsn, folder, args.replicas, settings))
        for i, r in enumerate(reps):
            out.print(f"  replica-{i}  {r.target}  pid {r.proc.pid}  log {r.log}")
        import voltorch

        client = stack.enter_context(voltorch.Client([r.target for r in reps], timeout=30))
        return _headline(client, reps, out, args)
    return 1  # unreachable: the with block returns (mypy cannot tell)


def _headline(client: Any, reps: list[Replica], out: Console, args: argparse.Namespace) -> int:
    agents = client.coordination.list_agents()
    out.print(f"Agents on every replica: {', '.join(a.id for a in agents)} (offline)")
    out.print(f"Requirement: [italic]{args.requirement}[/]")
    started = client.workflows.execute_complete(args.requirement, approve_tasks=True)
    eid = started.execution.id
    out.print(f"[bold]Execution {eid}[/] started through the cluster client ({len(reps)} targets)")
    failover = Failover(client, reps, eid, out)
    thread = threading.Thread(target=failover.run, args=(args.timeout,), daemon=True)
    thread.start()
    try:
        execution = follow(client, eid, out, timeout=args.timeout)
    finally:
        failover.cancel()
        thread.join(30)
    report(client, execution, out, where=False)
    if failover.error is not None:
        return 1
    took = failover.result
    if took is None:
        out.print("[red]No replica took the execution over[/]")
        return 1
    out.print(
        f"\n[bold]Failover:[/] {took.killed} was SIGKILLed mid-run; [bold]{took.by}[/] took the execution "
        f"over after {took.seconds:.2f}s (member timeout {args.member_timeout:g}s) and finished it."
    )
    for m in client.health().members:
        state = "[green]alive[/]" if m.alive else "[red]dead[/]"
        out.print(f"  {m.id:<10} {m.address:<22} {state}")
    return 0 if execution.status == "completed" else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C: everything started was stopped on the way out
        print(
            "\ninterrupted: the replicas and PostgreSQL are stopped, their folders removed", file=sys.stderr
        )
        sys.exit(130)
