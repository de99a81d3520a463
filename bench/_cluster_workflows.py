"""The workflows part of the cluster suite: workflows completed per second and failover time.

Throughput: five-step workflows (five offline agent steps in a chain, the built-in agents) run in a
closed loop, WORKFLOWS_IN_FLIGHT at a time, each started through the next replica in turn and waited
for; on 1 replica with SQLite and on 1, 2 and 3 replicas sharing one PostgreSQL, in the same run. On
PostgreSQL the row also counts the database's committed transactions per workflow (`pg_stat_database`,
reads included: the `commits` column), and stderr the share of busy backends waiting for a lock, the
transactions rolled back and the deadlocks PostgreSQL detected.

Failover: three replicas with a member timeout of FAILOVER_MEMBER_TIMEOUT s; FAILOVER_EXECUTIONS
executions started, each sleeping (a durable SleepStep) after its first step; the replica that owns the
most is SIGKILLed and the time is measured from the SIGKILL to each of its executions' "taken over"
`workflow.execution.resumed` event being committed (polled in the database every POLL s): the time for
its executions to run again elsewhere. Target: the member timeout + 1 s.
"""

from __future__ import annotations

import itertools
import statistics
import sys
import threading
import time
from argparse import Namespace
from collections import Counter
from collections.abc import Callable
from typing import Any

import psycopg
import voltorch
from voltorch import AgentTask, ParameterSpec, SleepStep, Step, WorkflowTemplate

from ._harness import Result

WORKFLOWS_IN_FLIGHT = 24
FAILOVER_MEMBER_TIMEOUT = 3.0
FAILOVER_EXECUTIONS = 30
POLL = 0.02
WAIT = 120.0
ENV = {"VOLTORCH_BUILTIN_AGENTS": "true", "VOLTORCH_MEMBER_TIMEOUT": f"{FAILOVER_MEMBER_TIMEOUT:g}"}
STEPS = (("analyse", "analysis"), ("plan", "planning"), ("code", "coding"), ("test", "testing"),
         ("review", "review"))  # fmt: skip


def five_steps() -> WorkflowTemplate:
    """Five offline agent steps in a chain."""
    steps: list[Step] = []
    previous: list[str] = []
    for step_id, capability in STEPS:
        steps.append(
            Step(step_id, AgentTask(f"{step_id} {{{{ params.n }}}}", [capability]), depends_on=previous)
        )
        previous = [step_id]
    return WorkflowTemplate(name="bench-five", parameters=[ParameterSpec("n", required=True)], steps=steps)


def naps(seconds: float) -> WorkflowTemplate:
    """An agent step, then a long durable sleep (where the executions are when their owner is killed)."""
    return WorkflowTemplate(
        name="bench-naps",
        parameters=[ParameterSpec("n", required=True)],
        steps=[
            Step("analyse", AgentTask("analyse {{ params.n }}", ["analysis"])),
            Step("nap", SleepStep(duration=seconds), depends_on=["analyse"]),
            Step("review", AgentTask("review {{ params.n }}", ["review"]), depends_on=["nap"]),
        ],
    )


def _rows(dsn: str, sql: str, args: tuple = ()) -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(sql, args).fetchall()


def _pg_commits(dsn: str) -> tuple[int, int, int]:
    """Committed and rolled-back transactions of this database so far (reads included), and the deadlocks
    PostgreSQL detected in it (each broke a cycle of row locks by failing a transaction: the engines'
    transactions of different replicas run side by side). The statistics are flushed by each backend at
    most once a second: the caller lets a second pass first."""
    commits, rollbacks, deadlocks = _rows(
        dsn,
        "SELECT xact_commit, xact_rollback, deadlocks FROM pg_stat_database WHERE datname = current_database()",
    )[0]
    return int(commits), int(rollbacks), int(deadlocks)


class _LockWaits:
    """Samples pg_stat_activity while a window runs: of the database's busy backends (in a transaction
    or a query), how many wait for a lock (the head counter row every write transaction locks first)."""

    def __init__(self, dsn: str):
        self.dsn, self.busy, self.waiting = dsn, 0, 0
        self.statements: Counter[str] = Counter()  # what the waiting backends run (its first words)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> _LockWaits:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _sample(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self._stop.wait(0.05):
                rows = conn.execute(
                    "SELECT wait_event_type, left(regexp_replace(query, '\\s+', ' ', 'g'), 48)"
                    " FROM pg_stat_activity WHERE datname = current_database()"
                    " AND pid <> pg_backend_pid() AND state IN ('active', 'idle in transaction')"
                ).fetchall()
                self.busy += len(rows)
                waiting = [q for w, q in rows if w == "Lock"]
                self.waiting += len(waiting)
                self.statements.update(waiting)

    def share(self) -> float:
        return self.waiting / self.busy if self.busy else 0.0


def _closed_loop(targets: list[str], seconds: float) -> tuple[int, float, list[float]]:
    """WORKFLOWS_IN_FLIGHT drivers, each starting a workflow and waiting for it, again and again, for
    `seconds`: (workflows completed, elapsed s, each one's latency in ms)."""
    clients = [voltorch.Client(t, timeout=30) for t in targets]
    clients[0].workflows.register_template(five_steps())
    numbers = itertools.count()
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    began = time.monotonic()
    stop_at = began + seconds

    def drive(k: int) -> None:
        client = clients[k % len(clients)]
        while time.monotonic() < stop_at:
            t0 = time.monotonic()
            try:
                eid = client.workflows.start("bench-five", parameters={"n": str(next(numbers))}).execution.id
                status = client.workflows.wait(eid, timeout=WAIT).status
            except Exception as exc:  # counted, not fatal: the row shows it
                with lock:
                    errors.append(repr(exc))
                return
            with lock:
                if status == "completed":
                    latencies.append((time.monotonic() - t0) * 1000)
                else:
                    errors.append(f"{eid} {status}")

    threads = [threading.Thread(target=drive, args=(k,)) for k in range(WORKFLOWS_IN_FLIGHT)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + WAIT)
    elapsed = time.monotonic() - began
    for c in clients:
        c.close()
    if errors:
        raise RuntimeError(f"{len(errors)} workflow(s) went wrong: {errors[0]}")
    return len(latencies), elapsed, latencies


def throughput(name: str, targets: list[str], dsn: str | None, args: Namespace, meter: Any) -> Result:
    """One row: workflows completed per second (median of the rounds), latency, CPU and (PostgreSQL)
    transactions per workflow."""
    seconds = max(5.0, 4 * args.duration)
    rates, lat, cpu, commits, errors = [], [], [], [], []
    for _ in range(args.rounds):
        try:
            if dsn:
                time.sleep(1.1)  # the backends flush their statistics at most once a second
                c0 = _pg_commits(dsn)
            cpu0 = meter.cpu_seconds()
            if dsn:
                with _LockWaits(dsn) as waits:
                    done, elapsed, latencies = _closed_loop(targets, seconds)
                print(
                    f"{name}: {waits.share():.0%} of the busy PostgreSQL backends' samples wait for a lock "
                    f"({waits.busy / max(elapsed / 0.05, 1):.1f} busy on average); waiting most in: "
                    + "; ".join(f"{n}x {q!r}" for q, n in waits.statements.most_common(3)),
                    file=sys.stderr,
                )
            else:
                done, elapsed, latencies = _closed_loop(targets, seconds)
            cpu.append((meter.cpu_seconds() - cpu0) / max(done, 1) * 1e6)
            if dsn:
                time.sleep(1.1)
                c1 = _pg_commits(dsn)
                commits.append((c1[0] - c0[0]) / max(done, 1))
                print(
                    f"{name}: {c1[1] - c0[1]} transactions rolled back, {c1[2] - c0[2]} deadlocks detected",
                    file=sys.stderr,
                )
            rates.append(done / elapsed)
            lat += latencies
        except Exception as exc:
            errors.append(repr(exc))
    lat.sort()
    return Result(
        suite="cluster",
        name=f"{name} workflows (5 offline steps, {WORKFLOWS_IN_FLIGHT} in flight)",
        rate=statistics.median(rates) if rates else 0.0,
        p50_ms=lat[len(lat) // 2] if lat else float("nan"),
        p99_ms=lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else float("nan"),
        server_us_per_item=statistics.median(cpu) if cpu else None,
        commits_per_item=statistics.median(commits) if commits else None,
        unit="workflows",
        rounds=rates,
        errors=errors,
    )


def failover(targets: list[str], kill: Callable[[int], None], dsn: str) -> Result:
    """SIGKILL the replica owning the most of FAILOVER_EXECUTIONS sleeping executions; seconds until each
    of its executions is taken over (its resumed event committed)."""
    errors: list[str] = []
    seconds: list[float] = []
    client = voltorch.Client(targets[0], timeout=30)
    try:
        client.workflows.register_template(naps(60.0))
        ids = [
            client.workflows.start("bench-naps", parameters={"n": str(i)}).execution.id
            for i in range(FAILOVER_EXECUTIONS)
        ]
        deadline = time.monotonic() + WAIT
        while True:  # every execution in its nap: its first step done, owned by a replica
            napping = [e for e in ids if client.workflows.get(e).step("nap").status == "running"]
            if len(napping) == len(ids):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(napping)} of {len(ids)} executions reached their nap")
            time.sleep(0.1)
        owned = _rows(dsn, "SELECT id, owner FROM workflow_executions WHERE id = ANY(%s)", (ids,))
        owners: dict[str, list[str]] = {}
        for eid, owner in owned:
            owners.setdefault(owner, []).append(eid)
        victim = max(owners, key=lambda o: len(owners[o]))
        mine = owners[victim]
        index = int(victim.rsplit("-", 1)[-1])
        killed_at = time.monotonic()
        kill(index)
        pending = set(mine)
        while pending and time.monotonic() < killed_at + WAIT:
            taken = _rows(
                dsn,
                "SELECT data FROM events WHERE type = 'workflow.execution.resumed' AND data LIKE %s",
                (f"%taken over from replica {victim}%",),
            )
            now = time.monotonic()
            for (data,) in taken:
                for eid in [e for e in pending if e in data]:
                    pending.discard(eid)
                    seconds.append(now - killed_at)
            time.sleep(POLL)
        if pending:
            errors.append(f"{len(pending)} of {len(mine)} executions not taken over within {WAIT:g}s")
        for eid in ids:  # the naps would last a minute: done measuring
            try:
                client.workflows.cancel(eid, reason="bench done")
            except voltorch.VoltorchError:
                pass  # ended already
    except Exception as exc:
        errors.append(repr(exc))
    finally:
        client.close()
    seconds.sort()
    budget = FAILOVER_MEMBER_TIMEOUT + 1.0
    worst = seconds[-1] if seconds else float("nan")
    return Result(
        suite="cluster",
        name=f"pg x3 failover: SIGKILL -> {len(seconds)} executions taken over (member timeout "
        f"{FAILOVER_MEMBER_TIMEOUT:g} s)",
        rate=len(seconds) / worst if seconds and worst > 0 else 0.0,
        p50_ms=seconds[len(seconds) // 2] * 1000 if seconds else float("nan"),
        p99_ms=worst * 1000,
        unit="executions",
        baseline=f"budget {budget:g} s (member timeout + 1 s)",
        ratio=budget / worst if seconds and worst > 0 else None,
        target=1.0,
        rounds=seconds,
        errors=errors,
    )
