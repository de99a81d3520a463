"""CoordinationService: coordinations per second with no-op agents, and the engine's dispatch overhead.

Rows:

* `echo unary`: the bare grpcio baseline (its own process).
* `request+wait, offline agent`: each op is one coordination over gRPC — RequestCoordination to an
  offline agent, then GetCoordination long-polling until it is terminal (2 RPCs, 2 durable
  transactions with their events, a thread hand-off to the agent and back).
* `request+wait, remote worker`: the same against a no-op remote worker connected through Connect
  (the worker runs in this driver process and answers at once): adds the stream round trip.
* `engine request+wait, function agent`: the CoordinationEngine in this process with a no-op function
  agent, no gRPC — what a coordination costs the engine itself (`cli µs/call` is all of it).
* `engine dispatch (request->agent start)`: the same runs; p50/p99 are the time from request() to the
  agent being called — the dispatch overhead per request.
"""

from __future__ import annotations

import os
import queue
import statistics
import tempfile
import threading
import time
from typing import Any

import grpc
from voltorch.v1 import coordination_pb2 as pb
from voltorch.v1 import coordination_pb2_grpc

from ._harness import Case, MakeOp, Op, Result, closed_loop, echo_unary, percentile, run_cases, servers

OFFLINE = "bench-offline"
WORKER = "bench-worker"


def _request_wait(agent_id: str) -> MakeOp:
    def make(ch: grpc.Channel) -> Op:
        stub = coordination_pb2_grpc.CoordinationServiceStub(ch)
        req = pb.RequestCoordinationRequest(task="noop", source_agent_id=agent_id)
        wait = pb.GetCoordinationRequest()
        wait.wait_timeout.FromSeconds(30)
        terminal = {pb.COORDINATION_STATUS_COMPLETED, pb.COORDINATION_STATUS_FAILED}

        def op() -> None:
            c = stub.RequestCoordination(req, timeout=30).coordination
            wait.coordination_id = c.id
            while c.status not in terminal:
                c = stub.GetCoordination(wait, timeout=60).coordination
            if c.status != pb.COORDINATION_STATUS_COMPLETED:
                raise RuntimeError(f"coordination {c.id} ended {c.status}: {c.error.message}")

        return op

    return make


class _NoopWorker:
    """A remote worker speaking the raw Connect protocol that answers every task at once."""

    def __init__(self, target: str, agent_id: str, concurrency: int):
        self.channel = grpc.insecure_channel(target)
        self.out: queue.Queue[pb.WorkerMessage | None] = queue.Queue()
        self.out.put(
            pb.WorkerMessage(
                hello=pb.WorkerHello(agent_id=agent_id, capabilities=["bench"], max_concurrency=concurrency)
            )
        )
        self.ready = threading.Event()
        stub = coordination_pb2_grpc.CoordinationServiceStub(self.channel)
        self.call = stub.Connect(iter(self.out.get, None))
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("bench worker got no welcome")

    def _serve(self) -> None:
        try:
            for msg in self.call:
                kind = msg.WhichOneof("message")
                if kind == "welcome":
                    self.ready.set()
                elif kind == "assignment":
                    a = msg.assignment
                    self.out.put(
                        pb.WorkerMessage(
                            result=pb.TaskResult(task_id=a.task_id, attempt=a.attempt, output="ok")
                        )
                    )
        except grpc.RpcError:
            pass

    def close(self) -> None:
        self.out.put(None)
        self.call.cancel()
        self.channel.close()


def _setup(target: str) -> None:
    with grpc.insecure_channel(target) as ch:
        stub = coordination_pb2_grpc.CoordinationServiceStub(ch)
        stub.RegisterAgent(
            pb.RegisterAgentRequest(
                agent_id=OFFLINE, kind=pb.AGENT_KIND_OFFLINE, capabilities=["bench"], max_concurrency=1000
            ),
            timeout=30,
        )


def _engine_round(args: Any) -> tuple[float, float, list[tuple[int, int]], list[str]]:
    """One measuring window of the engine alone, in this process: no gRPC, a no-op function agent.
    Returns (coordinations/s, CPU µs per coordination, [(total ns, request->agent ns)], errors)."""
    from voltorch_server.components.coordination import CoordinationEngine, CoordinationRequest
    from voltorch_server.components.events import EventLog
    from voltorch_server.config import Config
    from voltorch_server.storage import Database, migrate
    from voltorch_server.storage.stores import SqlCoordination, SqlEvents

    with tempfile.TemporaryDirectory(prefix="voltorch-bench-engine-") as tmp:
        db = Database(os.path.join(tmp, "engine.db"))
        migrate(db)
        engine = CoordinationEngine(
            SqlCoordination(db), EventLog(SqlEvents(db)), Config(builtin_agents=False)
        )
        engine.start()
        entered: dict[str, int] = {}

        def noop(task: Any, cancel: Any) -> str:
            entered[task.coordination_id] = time.perf_counter_ns()
            return ""

        engine.register_agent("noop", kind="function", max_concurrency=1000, runtime=noop)
        req = CoordinationRequest(task="noop", source_agent_id="noop")

        def op() -> int:  # -> ns from request to the agent being called
            a = time.perf_counter_ns()
            c = engine.request(req)
            done = engine.wait(c.id, 30)
            if done.status != "completed":
                raise RuntimeError(f"{c.id} ended {done.status}")
            return entered.pop(c.id, a) - a

        loop = closed_loop(op, clients=args.clients, warmup=args.warmup, duration=args.duration)
        engine.stop()
        db.close()
    items = len(loop.samples)
    rate = items / loop.seconds if loop.seconds > 0 else 0.0
    cpu = loop.cpu / items * 1e6 if items else float("nan")
    return rate, cpu, loop.samples, loop.errors


def _engine_rows(args: Any) -> list[Result]:
    rates, cpus, pairs, errors = [], [], [], []
    for _ in range(args.rounds):
        rate, cpu, lat, errs = _engine_round(args)
        rates.append(rate)
        cpus.append(cpu)
        pairs += lat
        errors += errs
    total = sorted(x for x, _ in pairs)
    dispatch = sorted(d for _, d in pairs)

    def row(name: str, lat: list[int], client_us: float | None) -> Result:
        return Result(
            suite="coordination",
            name=name,
            rate=statistics.median(rates),
            p50_ms=percentile(lat, 0.5),
            p99_ms=percentile(lat, 0.99),
            client_us_per_item=client_us,
            rounds=rates,
            errors=errors[:3],
        )

    return [
        row("engine request+wait, function agent", total, statistics.median(cpus)),
        row("engine dispatch (request->agent start)", dispatch, None),
    ]


def run(args: Any) -> list[Result]:
    with servers("echo", "voltorch", profile_dir=args.profile) as srv:
        target = srv["voltorch"].target
        _setup(target)
        worker = _NoopWorker(target, WORKER, concurrency=max(64, args.clients * 2))
        try:
            echo = "echo unary"
            cases = [
                Case(echo, "echo", echo_unary(64)),
                Case("request+wait, offline agent", "voltorch", _request_wait(OFFLINE), baseline=echo),
                Case("request+wait, remote worker", "voltorch", _request_wait(WORKER), baseline=echo),
            ]
            results = run_cases("coordination", cases, srv, args)
        finally:
            worker.close()
    if not getattr(args, "select", None) or "engine" in args.select.lower():
        results += _engine_rows(args)
    return results
