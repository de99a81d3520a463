"""WorkflowService: workflow steps per second and per-step overhead with no-op agents, and 1,000 concurrent
5-step workflows (wall time, peak server RSS).

Rows:

* `echo unary`: the bare grpcio baseline (its own process).
* `start+watch 5-step workflow (gRPC)`: each op is StartExecution of a 5-step chain on a no-op offline
  agent, then WatchExecution until its last event; the rate is in steps/s (5 per op).
* `engine coordination request+wait`: the CoordinationEngine alone in this process with a no-op function
  agent — what one agent call costs without a workflow around it.
* `engine workflow step (5-step chain)`: the WorkflowEngine in this process driving 5-step chains on the
  same no-op agent; rate in steps/s, p50/p99 per step, `cli µs/op` CPU per step.
* `per-step overhead`: the two rows above subtracted — latency (p50/p99) and CPU a workflow step adds to
  its agent call (checkpoints, events, scheduling).
* peers, `langgraph ...` beside `voltorch ...`: the same no-op linear workflow on LangGraph (SqliteSaver,
  durability="sync", in the driver process; the `bench` extra) and on a voltorch server process with
  db_synchronous=FULL driven through the SDK (`run()`: RunExecution, started and followed to its result in
  one call; BENCH_PEER_START_WAIT=1 for start() then wait()): 200 5-step and 200 1-step workflows one after another (p50/p99 = ms per workflow; rate = steps/s, workflows/s), the marginal ms of a
  step ((p50 5-step - p50 1-step) / 4), and 200 5-step workflows at once (steps/s). voltorch's rows carry
  issue 16's targets against LangGraph's (1-step <= 2x its time, marginal step and 200 at once >= 1.0x).
  One more voltorch row, without a target: the 1-step workflow driven the other way (start() then wait(),
  two RPCs; run() with BENCH_PEER_START_WAIT=1).
* `1000 concurrent workflows x 5 steps`: 1,000 executions started at once on a server process whose
  concurrency limit admits them all; the row passes when all complete and the server's peak RSS stays
  under 500 MB (`vs baseline` = 500 MB / peak RSS).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import grpc
import psutil
from voltorch.v1 import coordination_pb2 as cpb
from voltorch.v1 import coordination_pb2_grpc, workflows_pb2_grpc
from voltorch.v1 import workflows_pb2 as wpb

from ._harness import (
    Case,
    MakeOp,
    Op,
    Result,
    ServerProcess,
    closed_loop,
    echo_unary,
    percentile,
    run_cases,
    servers,
)

SUITE = "workflows"
STEPS = 5
TEMPLATE = "bench-chain"
MANY = 1000
RSS_BUDGET_MB = 500.0
MANY_TIMEOUT = 600.0


def _chain_pb() -> wpb.WorkflowTemplate:
    steps = [
        wpb.StepSpec(
            id=f"s{i}",
            agent_task=wpb.AgentTaskStep(capabilities=["bench"], task=f"step {i}"),
            depends_on=[f"s{i - 1}"] if i else [],
        )
        for i in range(STEPS)
    ]
    return wpb.WorkflowTemplate(name=TEMPLATE, steps=steps)


def _setup(target: str) -> None:
    """A no-op offline agent (no capability it knows: it only acknowledges) and the chain template."""
    with grpc.insecure_channel(target) as ch:
        coordination_pb2_grpc.CoordinationServiceStub(ch).RegisterAgent(
            cpb.RegisterAgentRequest(
                agent_id="bench-noop",
                kind=cpb.AGENT_KIND_OFFLINE,
                capabilities=["bench"],
                max_concurrency=1000,
            ),
            timeout=30,
        )
        workflows_pb2_grpc.WorkflowServiceStub(ch).RegisterTemplate(
            wpb.RegisterTemplateRequest(template=_chain_pb()), timeout=30
        )


def _start_watch() -> MakeOp:
    def make(ch: grpc.Channel) -> Op:
        stub = workflows_pb2_grpc.WorkflowServiceStub(ch)
        start = wpb.StartExecutionRequest(template_name=TEMPLATE)

        def op() -> int:
            e = stub.StartExecution(start, timeout=30).execution
            last = ""
            for resp in stub.WatchExecution(wpb.WatchExecutionRequest(execution_id=e.id), timeout=120):
                last = resp.event.type
            if last != "workflow.execution.completed":
                raise RuntimeError(f"execution {e.id} ended with {last}")
            return STEPS

        return op

    return make


# -- the engines in this process -----------------------------------------------------------------------


def _engine_round(args: Any) -> dict[str, Any]:
    """One window of coordination-only ops and one of workflow ops on the same engines (no gRPC)."""
    from voltorch_server.components.coordination import CoordinationEngine, CoordinationRequest
    from voltorch_server.components.events import EventLog
    from voltorch_server.components.state import StateStore
    from voltorch_server.components.workflows import TERMINAL_EVENTS, WorkflowEngine
    from voltorch_server.components.workflows.templates import AgentTaskSpec, StepSpec, Template
    from voltorch_server.config import Config
    from voltorch_server.storage import Database, migrate
    from voltorch_server.storage.stores import Stores

    with tempfile.TemporaryDirectory(prefix="voltorch-bench-wf-") as tmp:
        db = Database(os.path.join(tmp, "wf.db"))
        migrate(db)
        stores = Stores.build(db, db)
        events = EventLog(stores.events)
        state = StateStore(stores.state, events)
        coord = CoordinationEngine(stores.coordination, events, Config(builtin_agents=False))
        wf = WorkflowEngine(
            db,
            events,
            state,
            coord,
            executions=stores.executions,
            signals=stores.signals,
            timers=stores.timers,
            templates=stores.templates,
            concurrency=max(100, args.clients * 4),
        )
        for c in (events, state, coord, wf):
            c.start()
        coord.register_agent(
            "noop", kind="function", capabilities=("noop",), max_concurrency=1000, runtime=lambda t, c: ""
        )
        chain = tuple(
            StepSpec(
                f"s{i}", AgentTaskSpec("x", capabilities=("noop",)), depends_on=(f"s{i - 1}",) if i else ()
            )
            for i in range(STEPS)
        )
        wf.register_template(Template(name="chain", steps=chain))
        finished: dict[str, threading.Event] = {}
        lock = threading.Lock()

        def on_event(e: Any) -> None:
            if e.type in TERMINAL_EVENTS:
                with lock:
                    done = finished.get(e.correlation_id)
                if done is not None:
                    done.set()

        events.add_listener(on_event)

        def coordination_op() -> None:
            c = coord.request(CoordinationRequest(task="x", required_capabilities=("noop",)))
            if coord.wait(c.id, 30).status != "completed":
                raise RuntimeError(f"coordination {c.id} did not complete")

        def workflow_op() -> None:
            done = threading.Event()
            e, _ = wf.start_execution("chain")
            with lock:
                finished[e.id] = done
            if not done.is_set() and not wf.get(e.id).terminal:
                done.wait(60)
            with lock:
                finished.pop(e.id, None)
            if wf.get(e.id).status != "completed":
                raise RuntimeError(f"workflow {e.id} did not complete")

        out = {
            "coordination": _closed_loop(coordination_op, args),
            "workflow": _closed_loop(workflow_op, args),
        }
        for c in (wf, coord, state, events):
            c.stop()
        db.close()
    return out


def _closed_loop(op: Any, args: Any) -> tuple[int, float, float, list[int], list[str]]:
    """(ops, seconds, CPU seconds, latencies ns, errors) of `args.clients` threads for one window."""
    loop = closed_loop(op, clients=args.clients, warmup=args.warmup, duration=args.duration)
    return len(loop.samples), loop.seconds, loop.cpu, [ns for ns, _ in loop.samples], loop.errors


def _engine_rows(args: Any) -> list[Result]:
    rounds = [_engine_round(args) for _ in range(args.rounds)]
    rows = []
    stats = {}
    for key, name, per in (
        ("coordination", "engine coordination request+wait", 1),
        ("workflow", f"engine workflow step ({STEPS}-step chain)", STEPS),
    ):
        ms = [r[key] for r in rounds]
        items = sum(m[0] for m in ms) * per
        lat = sorted(x / per for m in ms for x in m[3])
        cpu = sum(m[2] for m in ms) / items * 1e6 if items else float("nan")
        rates = [m[0] * per / m[1] for m in ms]
        stats[key] = (percentile(lat, 0.5), percentile(lat, 0.99), cpu)
        rows.append(
            Result(
                suite=SUITE,
                name=name,
                rate=statistics.median(rates),
                p50_ms=stats[key][0],
                p99_ms=stats[key][1],
                client_us_per_item=cpu,
                unit="steps" if per > 1 else "calls",
                rounds=rates,
                errors=[e for m in ms for e in m[4]][:3],
            )
        )
    (c50, c99, ccpu), (w50, w99, wcpu) = stats["coordination"], stats["workflow"]
    rows.append(
        Result(
            suite=SUITE,
            name="per-step overhead (workflow step - coordination)",
            rate=float("nan"),
            p50_ms=w50 - c50,
            p99_ms=w99 - c99,
            client_us_per_item=wcpu - ccpu,
            unit="steps",
        )
    )
    return rows


# -- 1,000 concurrent workflows ---------------------------------------------------------------------------


def _many(args: Any) -> Result:
    env = {"VOLTORCH_WORKFLOW_CONCURRENCY": str(MANY)}
    errors: list[str] = []
    with ServerProcess("voltorch", env=env) as srv:
        _setup(srv.target)
        proc = psutil.Process(srv.proc.pid)
        peak = [proc.memory_info().rss]
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.wait(0.1):
                try:
                    rss = proc.memory_info().rss
                    for child in proc.children(recursive=True):
                        rss += child.memory_info().rss
                    peak[0] = max(peak[0], rss)
                except psutil.Error:
                    return

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        cpu0 = srv.cpu_seconds()
        began = time.perf_counter()
        with grpc.insecure_channel(srv.target) as ch:
            stub = workflows_pb2_grpc.WorkflowServiceStub(ch)
            start = wpb.StartExecutionRequest(template_name=TEMPLATE)
            with ThreadPoolExecutor(16) as pool:
                starts = list(
                    pool.map(lambda _: stub.StartExecution(start, timeout=60).execution, range(MANY))
                )
            queued = sum(e.status == wpb.EXECUTION_STATUS_QUEUED for e in starts)
            if queued:
                errors.append(f"{queued} of {MANY} were queued: the concurrency limit did not admit them all")
            started = time.perf_counter()
            finished: list[wpb.Execution] = []
            while time.perf_counter() - began < MANY_TIMEOUT:
                finished = _all_finished(stub)
                if len(finished) >= MANY:
                    break
                time.sleep(0.25)  # a bench may poll; the server is doing the work
            wall = time.perf_counter() - began
        sampling.set()
        sampler.join(5)
        cpu = srv.cpu_seconds() - cpu0
    completed = [e for e in finished if e.status == wpb.EXECUTION_STATUS_COMPLETED]
    if len(finished) < MANY:
        errors.append(f"only {len(finished)} of {MANY} finished within {MANY_TIMEOUT:.0f}s")
    elif len(completed) < MANY:
        errors.append(f"{MANY - len(completed)} of {MANY} did not complete")
    lat = sorted(int(e.end_time.ToNanoseconds() - e.create_time.ToNanoseconds()) for e in finished)
    peak_mb = peak[0] / 1e6
    return Result(
        suite=SUITE,
        name=f"{MANY} concurrent workflows x {STEPS} steps: all done in {wall:.1f}s "
        f"(started in {started - began:.1f}s), peak RSS {peak_mb:.0f} MB",
        rate=len(completed) * STEPS / wall if wall else 0.0,
        p50_ms=percentile(lat, 0.5),
        p99_ms=percentile(lat, 0.99),
        server_us_per_item=cpu / (len(completed) * STEPS) * 1e6 if completed else None,
        unit="steps",
        baseline=f"RSS budget {RSS_BUDGET_MB:.0f} MB",
        ratio=RSS_BUDGET_MB / peak_mb if peak_mb else None,
        target=1.0,
        errors=errors,
    )


def _all_finished(stub: Any) -> list[wpb.Execution]:
    out: list[wpb.Execution] = []
    for status in (
        wpb.EXECUTION_STATUS_COMPLETED,
        wpb.EXECUTION_STATUS_FAILED,
        wpb.EXECUTION_STATUS_CANCELLED,
        wpb.EXECUTION_STATUS_TIMED_OUT,
    ):
        token = ""
        while True:
            resp = stub.ListExecutions(
                wpb.ListExecutionsRequest(
                    status=status, template_name=TEMPLATE, page_size=1000, page_token=token
                ),
                timeout=60,
            )
            out.extend(resp.executions)
            token = resp.next_page_token
            if not token:
                break
    return out


# -- peers: the same linear workflow on LangGraph and on voltorch -----------------------------------------

PEER_RUNS = 200  # workflows per window: one after another, and all at once
# How the driver runs a voltorch workflow: the SDK's run() (RunExecution: start and result in one call), or
# with BENCH_PEER_START_WAIT=1 start() then wait() (two RPCs; what the rows measured before run() existed,
# and what a server without RunExecution gets). The 1-step row in the other shape is reported either way.
START_WAIT = os.environ.get("BENCH_PEER_START_WAIT") == "1"
OTHER_WAY = "run()" if START_WAIT else "start() then wait()"  # how the extra 1-step row drives it
ONE = "bench-one"  # a 1-step template: 5-step minus 1-step, over 4, is the marginal cost of a step


def _one_pb() -> wpb.WorkflowTemplate:
    return wpb.WorkflowTemplate(
        name=ONE,
        steps=[wpb.StepSpec(id="s0", agent_task=wpb.AgentTaskStep(capabilities=["bench"], task="x"))],
    )


Costs = dict[
    str, list[tuple[float, float, float, float]]
]  # shape -> windows' (CPU s, switches, commits, hand-offs)


def _per(
    costs: list[tuple[float, float, float, float]], items: int, i: int, scale: float = 1.0
) -> float | None:
    values = [c[i] for c in costs]
    if not values or any(v != v for v in values):  # nan: not counted (a server without the counters)
        return None
    return sum(values) / (items * len(values)) * scale


def _peer_rows(
    name: str, n: int, samples: dict[str, list[tuple[float, list[int]]]], costs: Costs | None = None
) -> dict[str, Result]:
    """Rows of one system from its windows: (wall seconds, per-workflow ns) per round and shape, and for a
    server its costs per window (server CPU, context switches, commits, hand-offs), reported per step."""

    def row(shape: str, label: str, per: int, unit: str) -> Result:
        windows = samples[shape]
        lat = sorted(x for _, part in windows for x in part)
        rates = [n * per / wall for wall, _ in windows]
        c = (costs or {}).get(shape, [])
        return Result(
            suite=SUITE,
            name=f"{name} {label}",
            rate=statistics.median(rates),
            p50_ms=percentile(lat, 0.5),
            p99_ms=percentile(lat, 0.99),
            server_us_per_item=_per(c, n * per, 0, 1e6),
            server_switches_per_item=_per(c, n * per, 1),
            commits_per_item=_per(c, n * per, 2),
            handoffs_per_item=_per(c, n * per, 3),
            unit=unit,
            rounds=rates,
        )

    rows = {
        "seq5": row("seq5", f"{STEPS}-step workflow, {n} one after another", STEPS, "steps"),
        "seq1": row("seq1", f"1-step workflow, {n} one after another", 1, "workflows"),
        "conc5": row("conc5", f"{STEPS}-step workflow, {n} at once", STEPS, "steps"),
    }
    if "seq1other" in samples:
        rows["seq1other"] = row(
            "seq1other", f"1-step workflow, {n} one after another, {OTHER_WAY}", 1, "workflows"
        )
    marginal = (rows["seq5"].p50_ms - rows["seq1"].p50_ms) / (STEPS - 1)

    def more(field: str) -> float | None:  # what a step adds: per workflow, 5-step minus 1-step, over 4
        five, one = getattr(rows["seq5"], field), getattr(rows["seq1"], field)
        return None if five is None or one is None else (five * STEPS - one) / (STEPS - 1)

    rows["marginal"] = Result(
        suite=SUITE,
        name=f"{name} marginal per step (p50 {STEPS}-step - 1-step) / {STEPS - 1}",
        rate=1000.0 / marginal if marginal > 0 else float("nan"),
        p50_ms=marginal,
        p99_ms=float("nan"),
        server_us_per_item=more("server_us_per_item"),
        server_switches_per_item=more("server_switches_per_item"),
        commits_per_item=more("commits_per_item"),
        handoffs_per_item=more("handoffs_per_item"),
        unit="steps",
    )
    return rows


def _counters(srv: ServerProcess, client: Any) -> tuple[float, float, float, float]:
    """The server's CPU seconds, context switches, commits and hand-offs so far (the last two from the
    storage component's health details; nan for a server that does not count them)."""
    details: dict[str, str] = {}
    for c in client.health(refresh=True).components:
        if c.name == "storage":
            details = c.details
    return (
        srv.cpu_seconds(),
        float(srv.context_switches()),
        float(details.get("commits", "nan")),
        float(details.get("handoffs", "nan")),
    )


def _profile_path(args: Any, name: str) -> str | None:
    """Where `--profile DIR` puts this server's cProfile stats (None without --profile)."""
    return os.path.join(args.profile, f"{name}.pstats") if getattr(args, "profile", None) else None


def _peers(args: Any) -> list[Result]:
    """LangGraph (SqliteSaver, sync durability, in this process) beside voltorch (a server process with
    db_synchronous=FULL, driven through the SDK: run(), or start() then wait()) on the same no-op linear
    workflow; interleaved rounds of: 1-step and 5-step workflows one after another, 5-step all at once."""
    n = 50 if args.quick else PEER_RUNS
    try:
        from . import _peer_langgraph as lg
    except ImportError as exc:  # pragma: no cover - the bench extra installs it
        return [Result(SUITE, "langgraph peer", float("nan"), float("nan"), float("nan"), errors=[str(exc)])]
    import voltorch

    env = {"VOLTORCH_WORKFLOW_CONCURRENCY": str(max(n, 100)), "VOLTORCH_DB_SYNCHRONOUS": "FULL"}
    samples: dict[str, dict[str, list[tuple[float, list[int]]]]] = {
        "langgraph": {"seq5": [], "seq1": [], "conc5": []},
        "voltorch": {"seq5": [], "seq1": [], "conc5": [], "seq1other": []},
    }
    costs: Costs = {"seq5": [], "seq1": [], "conc5": [], "seq1other": []}
    with (
        tempfile.TemporaryDirectory(prefix="voltorch-bench-peers-") as tmp,
        ServerProcess("voltorch", env=env, profile=_profile_path(args, "peers")) as srv,
        voltorch.Client(srv.target) as client,
    ):
        _setup(srv.target)
        with grpc.insecure_channel(srv.target) as ch:
            workflows_pb2_grpc.WorkflowServiceStub(ch).RegisterTemplate(
                wpb.RegisterTemplateRequest(template=_one_pb()), timeout=30
            )

        def voltorch_run(template: str, start_wait: bool = START_WAIT) -> None:
            if start_wait:  # two RPCs
                done = client.workflows.wait(client.workflows.start(template).execution.id, timeout=120)
            else:
                done = client.workflows.run(template, timeout=120)
            if done.status != "completed":
                raise RuntimeError(f"voltorch execution {done.id} ended {done.status}")

        chains = {1: lg.Chain(1, tmp), STEPS: lg.Chain(STEPS, tmp)}
        runs = {
            "langgraph": (chains[STEPS].run, chains[1].run),
            "voltorch": (lambda: voltorch_run(TEMPLATE), lambda: voltorch_run(ONE)),
        }
        try:
            for five, one in runs.values():  # warm-up: imports, caches, connections
                lg.sequential(five, 5)
                lg.sequential(one, 5)
            for _ in range(args.rounds):
                for name, (five, one) in runs.items():
                    shapes = [
                        ("seq5", partial(lg.sequential, five, n)),
                        ("seq1", partial(lg.sequential, one, n)),
                        ("conc5", partial(lg.concurrent, five, n)),
                    ]
                    if name == "voltorch":
                        other = partial(voltorch_run, ONE, not START_WAIT)
                        shapes.append(("seq1other", partial(lg.sequential, other, n)))
                    for shape, window in shapes:
                        before = _counters(srv, client) if name == "voltorch" else None
                        samples[name][shape].append(window())
                        if before is not None:
                            after = _counters(srv, client)
                            costs[shape].append(tuple(a - b for a, b in zip(after, before, strict=True)))  # type: ignore[arg-type]
        finally:
            for c in chains.values():
                c.close()
    peer = _peer_rows("langgraph", n, samples["langgraph"])
    ours = _peer_rows("voltorch", n, samples["voltorch"], costs)
    # Targets of issue 16 (one commit per step): marginal step <= LangGraph's, a 1-step workflow <= 2x
    # LangGraph's, 200 at once >= 1.0x LangGraph's steps/s.
    for key, target in (("seq5", None), ("seq1", 0.5), ("conc5", 1.0)):
        ours[key].baseline, ours[key].target = "langgraph", target
        ours[key].ratio = ours[key].rate / peer[key].rate if peer[key].rate else None
    sw = ours["seq1other"]
    sw.baseline, sw.ratio = "langgraph", sw.rate / peer["seq1"].rate if peer["seq1"].rate else None
    m = ours["marginal"]
    m.baseline, m.target = "langgraph", 1.0
    m.ratio = peer["marginal"].p50_ms / m.p50_ms if m.p50_ms > 0 else None
    rows = [r for key in ("seq5", "seq1", "marginal", "conc5") for r in (peer[key], ours[key])]
    return [*rows, sw]


def run(args: Any) -> list[Result]:
    select = (getattr(args, "select", None) or "").lower()
    results: list[Result] = []
    with servers("echo", "voltorch", profile_dir=args.profile) as srv:
        _setup(srv["voltorch"].target)
        echo = "echo unary"
        cases = [
            Case(echo, "echo", echo_unary(64)),
            Case(
                f"start+watch {STEPS}-step workflow (gRPC)",
                "voltorch",
                _start_watch(),
                baseline=echo,
                unit="steps",
            ),
        ]
        results += run_cases(SUITE, cases, srv, args)
    if not select or "engine" in select or "overhead" in select:
        results += _engine_rows(args)
    if not select or "langgraph" in select or "peer" in select:
        results += _peers(args)
    if not select or "concurrent" in select:
        results.append(_many(args))
    return results
