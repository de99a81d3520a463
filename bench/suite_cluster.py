"""Several replicas on one PostgreSQL: GetKey, durable SetKey, Publish and cross-replica Subscribe
delivery with 1, 2 and 3 replicas on PostgreSQL, next to 1 replica on SQLite and the bare echo.

Clients are spread over the replicas (client i talks to replica i mod n). `srv µs/op` is the CPU of
every replica process plus PostgreSQL's own (the postmaster and its backends), per op, so the cost per
core is visible on a small machine. "Subscribe delivery" is a closed loop: a client publishes through
one replica and waits for the event on a subscription held on the next replica (publish → deliver).
"publish->deliver @1,000/s across replicas" (2 and 3 replicas) is open loop: events published through
replica 0 on schedule, one subscriber on replica 1, each event's latency from its Publish call.

The workflows part (bench/_cluster_workflows.py, issue 12): workflows completed per second on SQLite x1
and PostgreSQL x1/x2/x3, and the time from a replica's SIGKILL to its executions taken over elsewhere.

Targets (issue 11): server CPU per GetKey on PostgreSQL <= 1.2x SQLite's; per durable SetKey <= 2x
SQLite's including PostgreSQL's CPU; publish -> deliver p99 across replicas < 10 ms at 1k events/s.
The PostgreSQL server is a throwaway one (voltorch_server.throwaway_postgres, as the tests'), or VOLTORCH_BENCH_POSTGRES_DSN.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import statistics
from argparse import Namespace
from collections.abc import Iterator
from typing import Any

import grpc
import psutil
import voltorch
from voltorch.v1 import state_pb2, state_pb2_grpc
from voltorch.wire import to_value as py_to_value
from voltorch_server import cpus
from voltorch_server import throwaway_postgres as pg

from . import _cluster_workflows as workflows
from ._harness import Case, MakeOp, Op, Result, ServerProcess, echo_unary, percentile, run_cases
from .suite_events import _latency

KEYS = 64
LATENCY_RATE = 1000.0  # events/s published for the cross-replica publish -> deliver row
LATENCY_BUDGET_MS = 10.0  # its p99 target (issue 11)
PAYLOAD_VALUE = {"data": "x" * 128}


class Cluster:
    """n replicas on one database, metered together (and with PostgreSQL when we started it)."""

    def __init__(self, dsn: str, n: int, postgres_pid: int | None, env: dict[str, str] | None = None):
        self.replicas: list[ServerProcess] = []
        try:
            for i in range(n):
                own = {  # one core each in turn, unless the user exported a cpu_affinity of their own
                    "VOLTORCH_CPU_AFFINITY": os.environ.get("VOLTORCH_CPU_AFFINITY") or cpus.spread(i),
                    **(env or {}),
                    "VOLTORCH_REPLICA_ID": f"replica-{i}",
                }
                self.replicas.append(ServerProcess("voltorch", db=dsn, env=own))
        except BaseException:
            self.stop()
            raise
        self.targets = [r.target for r in self.replicas]
        self.target = self.targets[0]
        self._pg = psutil.Process(postgres_pid) if postgres_pid else None
        self._next = itertools.count()

    def _pg_procs(self) -> list[psutil.Process]:
        if self._pg is None:
            return []
        return [self._pg, *self._pg.children(recursive=True)]

    def cpu_seconds(self) -> float:
        total = sum(r.cpu_seconds() for r in self.replicas)
        for p in self._pg_procs():
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def context_switches(self) -> int:
        return sum(r.context_switches() for r in self.replicas)

    def channel(self, offset: int = 0) -> grpc.Channel:
        """A channel to the next replica in turn (offset: that many replicas further on)."""
        return grpc.insecure_channel(self.next_target(offset))

    def next_target(self, offset: int = 0) -> str:
        i = next(self._next)
        return self.targets[(i + offset) % len(self.targets)]

    def kill(self, i: int) -> None:
        """SIGKILL replica i: no shutdown of any kind."""
        self.replicas[i].proc.kill()
        self.replicas[i].proc.wait(timeout=10)

    def stop(self) -> None:
        for r in self.replicas:
            r.stop()


def _spread(cluster: Cluster | None, make: MakeOp) -> MakeOp:
    """Client i of a cluster talks to replica i mod n (the harness's channel goes to replica 0)."""
    if cluster is None:
        return make
    return lambda ch: make(cluster.channel())


def _populate(target: str, clients: int) -> None:
    with grpc.insecure_channel(target) as ch:
        stub = state_pb2_grpc.StateServiceStub(ch)
        value = py_to_value(PAYLOAD_VALUE)
        ops = [
            state_pb2.StateOperation(set=state_pb2.SetKeyRequest(key=f"bench/c{c}/k{i}", value=value))
            for c in range(clients)
            for i in range(KEYS)
        ]
        stub.Transaction(state_pb2.TransactionRequest(on_success=ops), timeout=60)


def _get(clients: int) -> MakeOp:
    ids = itertools.count()

    def make(ch: grpc.Channel) -> Op:
        stub = state_pb2_grpc.StateServiceStub(ch)
        c = next(ids) % clients
        reqs = itertools.cycle([state_pb2.GetKeyRequest(key=f"bench/c{c}/k{i}") for i in range(KEYS)])

        def op() -> None:
            stub.GetKey(next(reqs), timeout=30)

        return op

    return make


def _set() -> MakeOp:
    ids = itertools.count()

    def make(ch: grpc.Channel) -> Op:
        stub = state_pb2_grpc.StateServiceStub(ch)
        c, value = next(ids), py_to_value(PAYLOAD_VALUE)
        reqs = itertools.cycle(
            [state_pb2.SetKeyRequest(key=f"bench/w{c}/k{i}", value=value) for i in range(KEYS)]
        )

        def op() -> None:
            stub.SetKey(next(reqs), timeout=30)

        return op

    return make


def _publish(cluster: Cluster | None, target: str) -> MakeOp:
    def make(ch: grpc.Channel) -> Op:
        events = voltorch.Client(cluster.next_target() if cluster else target, timeout=30).events

        def op() -> None:
            events.publish("bench.published", PAYLOAD_VALUE)

        return op

    return make


def _delivery(cluster: Cluster | None, target: str) -> MakeOp:
    """Publish through one replica, wait for the event on a subscription held on the next one."""
    ids = itertools.count()

    def make(ch: grpc.Channel) -> Op:
        c = next(ids)
        pub = cluster.next_target() if cluster else target
        sub = cluster.targets[(cluster.targets.index(pub) + 1) % len(cluster.targets)] if cluster else target
        publisher = voltorch.Client(pub, timeout=30).events
        subscriber = voltorch.Client(sub, timeout=30).events
        kind = f"bench.delivery.c{c}"
        stream = iter(subscriber.subscribe(kind, heartbeats=True, heartbeat_interval=1))
        next(stream)  # the first heartbeat: the subscription is established

        def op() -> None:
            seq = publisher.publish(kind, PAYLOAD_VALUE).sequence
            for item in stream:
                if getattr(item, "sequence", 0) >= seq:
                    return

        return op

    return make


def _cases(cluster: Cluster | None, target: str, server: str, clients: int) -> list[Case]:
    return [
        Case(f"{server} GetKey", server, _spread(cluster, _get(clients))),
        Case(f"{server} SetKey (durable)", server, _spread(cluster, _set())),
        Case(f"{server} Publish (durable)", server, _publish(cluster, target)),
        Case(f"{server} Subscribe delivery", server, _delivery(cluster, target)),
    ]


def _cross_latency(cluster: Cluster, name: str, args: Namespace) -> list[Result]:
    """Publish through replica 0 at LATENCY_RATE events/s (open loop), one subscriber on replica 1:
    publish -> deliver across replicas (the events suite's paced measurement, split over two replicas)."""
    row = f"{name} publish->deliver @{LATENCY_RATE:,.0f}/s across replicas"
    if getattr(args, "select", None) and args.select.lower() not in row.lower():
        return []
    runs = [
        _latency(cluster, 1, LATENCY_RATE, args, args.payload, sub_target=cluster.targets[1])
        for _ in range(args.rounds)
    ]
    lat = sorted(x for run in runs for x in run.latencies_ns)
    p99 = percentile(lat, 0.99)
    cut = [c for run in runs for c in run.cut_off]
    return [
        Result(
            suite="cluster",
            name=row,
            rate=statistics.median(r.publish_rate for r in runs),
            p50_ms=percentile(lat, 0.50),
            p99_ms=p99,
            server_us_per_item=statistics.median(r.cpu_us for r in runs),
            server_switches_per_item=statistics.median(r.switches for r in runs),
            client_us_per_item=statistics.median(r.client_us for r in runs),
            unit="events",
            baseline=f"p99 budget {LATENCY_BUDGET_MS:g} ms",
            ratio=LATENCY_BUDGET_MS / p99 if lat and p99 > 0 else None,
            target=1.0,
            rounds=[percentile(r.latencies_ns, 0.99) for r in runs],
            errors=([f"{len(cut)} subscriber(s) cut off: {cut[0]}"] if cut else [])
            + ([] if lat else ["no event was delivered"]),
        )
    ]


@contextlib.contextmanager
def _postgres() -> Iterator[tuple[Any, int | None]]:
    dsn = os.environ.get("VOLTORCH_BENCH_POSTGRES_DSN")
    server = pg.PostgresServer.existing(dsn) if dsn else None
    if server is None:
        bindir = pg.find_bindir()
        if bindir is None:
            raise RuntimeError("no PostgreSQL server binaries; set VOLTORCH_BENCH_POSTGRES_DSN")
        server = pg.PostgresServer.start(bindir)
    try:
        yield server, server.pid
    finally:
        server.stop()


def _wanted(row: str, args: Namespace) -> bool:
    select = getattr(args, "select", None)
    return not select or select.lower() in row.lower()


def _workflows(args: Namespace, postgres: Any, pid: int | None) -> list[Result]:
    """Workflows completed per second on SQLite x1 and PostgreSQL x1/x2/x3, then the failover time
    (bench/_cluster_workflows.py)."""
    results: list[Result] = []
    if _wanted("sqlite x1 workflows", args):
        with ServerProcess("voltorch", env=workflows.ENV) as sqlite:
            results.append(workflows.throughput("sqlite x1", [sqlite.target], None, args, sqlite))
    for n in (1, 2, 3):
        if not _wanted(f"pg x{n} workflows", args):
            continue
        dsn = postgres.new_database("voltorch_bench")
        cluster = Cluster(dsn, n, pid, env=workflows.ENV)
        try:
            results.append(workflows.throughput(f"pg x{n}", cluster.targets, dsn, args, cluster))
        finally:
            cluster.stop()
            postgres.drop_database(dsn)
    if _wanted("pg x3 failover", args):
        dsn = postgres.new_database("voltorch_bench")
        cluster = Cluster(dsn, 3, pid, env=workflows.ENV)
        try:
            results.append(workflows.failover(cluster.targets, cluster.kill, dsn))
        finally:
            cluster.stop()
            postgres.drop_database(dsn)
    base = next((r for r in results if r.name.startswith("sqlite x1 workflows")), None)
    for r in results:
        if r.name.startswith("pg x") and "workflows" in r.name and base is not None and base.rate:
            r.baseline = base.name.split(" (")[0]
            r.ratio = r.rate / base.rate
    return results


def run(args: Namespace) -> list[Result]:
    results: list[Result] = []
    select = (getattr(args, "select", None) or "").lower()
    if "workflow" in select or "failover" in select:  # -k: only the workflows part, no state rows
        with _postgres() as (postgres, pid):
            return _workflows(args, postgres, pid)
    with ServerProcess("echo") as echo, ServerProcess("voltorch") as sqlite:
        _populate(sqlite.target, args.clients)
        cases = [
            Case("echo", "echo", echo_unary(200)),
            *_cases(None, sqlite.target, "sqlite x1", args.clients),
        ]
        results += run_cases("cluster", cases, {"echo": echo, "sqlite x1": sqlite}, args)
    with _postgres() as (postgres, pid):
        for n in (1, 2, 3):
            dsn = postgres.new_database()
            cluster = Cluster(dsn, n, pid)
            try:
                _populate(cluster.target, args.clients)
                name = f"pg x{n}"
                cases = _cases(cluster, cluster.target, name, args.clients)
                results += run_cases("cluster", cases, {name: cluster}, args)  # type: ignore[dict-item]
                if n > 1:
                    results += _cross_latency(cluster, name, args)
            finally:
                cluster.stop()
                postgres.drop_database(dsn)
        results += _workflows(args, postgres, pid)
    # Each row against SQLite's same operation (calls/s); the CPU per op is in its own column.
    by_name = {r.name: r for r in results}
    for r in results:
        if r.name.startswith("pg x") and r.unit == "calls":
            base = by_name.get("sqlite x1 " + r.name.split(" ", 2)[2])
            if base is not None and base.rate:
                r.baseline, r.ratio = base.name, r.rate / base.rate
        elif r.name.startswith("sqlite") and r.unit == "calls" and "echo" in by_name:  # -k may leave echo out
            echo_rate = by_name["echo"].rate
            r.baseline, r.ratio = "echo", r.rate / echo_rate if echo_rate else None
    return results
