"""Shared pieces of every benchmark suite: server processes, a closed-loop load driver, results, a table.

How the numbers are made honest (and why this shape):

* Each server runs in its OWN PROCESS (`bench._serve`): the bare-grpcio echo baseline and the voltorch
  server. In one process the client threads and the server threads would share one GIL, so the
  client's Python work would be charged to the server and the two would slow each other unevenly.
  The parent process is only the load driver.
* Baseline and voltorch are measured IN THE SAME RUN, by the SAME driver (same client count, same
  channel setup, same payload size), alternately for `rounds` rounds, so a noisy neighbour or a
  thermal dip hits both; calls/s is the median of the rounds, latencies are pooled.
* The driver is closed-loop: `clients` threads each issue one call, wait for the answer, issue the
  next. calls/s is completed calls over the measuring window (after a warm-up); p50/p99 are per-call
  wall latencies seen by the client.
* The driver itself costs CPU (this machine has 2 cores): if the client is the bottleneck, both sides
  look alike and the ratio is flattered. So every row also reports the SERVER process's CPU time per
  call (user + system, all threads, from psutil), which does not depend on the client, and the
  client's CPU per call; compare `srv µs/call` to see what the server really pays per call.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import psutil

from ._serve import STREAM, UNARY, encode_stream_request

Op = Callable[[], int | None]  # one unit of work; returns how many items it moved (None = 1)
MakeOp = Callable[[grpc.Channel], Op]  # builds one client's op from its channel

_ROOT = Path(__file__).resolve().parent.parent
_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 8 * 1024 * 1024),
    ("grpc.use_local_subchannel_pool", 1),  # one TCP connection per client channel
]


# -- server processes ------------------------------------------------------------------------------


class ServerProcess:
    """A benchmark server in a child process; `target` to connect, `cpu_seconds()` to meter it."""

    def __init__(
        self,
        kind: str,
        *,
        profile: str | None = None,
        env: dict[str, str] | None = None,
        start_timeout: float = 30.0,
        db: str | None = None,
    ):
        """`env` adds variables for the child, e.g. {"VOLTORCH_TRACING": "false"}; `db` a database path
        or postgresql:// DSN instead of a fresh SQLite file."""
        self.kind = kind
        self.profile = profile
        self._tmp = tempfile.TemporaryDirectory(prefix=f"voltorch-bench-{kind}-")
        cmd = [sys.executable, "-m", "bench._serve", kind]
        if kind == "voltorch":
            cmd += ["--db", db or os.path.join(self._tmp.name, "bench.db")]
        if profile:
            cmd += ["--profile", profile]
        child_env = {**os.environ, **(env or {})}
        # BENCH_SERVER_SRC=<another checkout>: its server and SDK serve instead of this tree's (the
        # driver stays this tree's), so a before/after comparison runs the same bench against both.
        src = child_env.get("BENCH_SERVER_SRC", "") if kind == "voltorch" else ""
        paths = [os.path.join(src, "sdk"), os.path.join(src, "server")] if src else []
        child_env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [*paths, str(_ROOT), child_env.get("PYTHONPATH")])
        )
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=_ROOT, env=child_env, text=True
        )
        line = _readline(self.proc, start_timeout)
        try:
            self.port = int(json.loads(line)["port"])
        except (ValueError, KeyError, TypeError):
            self.stop()
            raise RuntimeError(f"{kind} server did not start (said {line!r})") from None
        self.target = f"127.0.0.1:{self.port}"
        self._ps = psutil.Process(self.proc.pid)

    def cpu_seconds(self) -> float:
        """The server's CPU with its children's (the LLM call process): the cost of its work wherever it ran."""
        t = self._ps.cpu_times()
        return t.user + t.system + self.children_cpu_seconds()

    def children_cpu_seconds(self) -> float:
        """Live children's CPU, and that of the children the server reaped (a call process that died and
        was started again, say): a round's figures keep what a dead child spent."""
        total = 0.0
        with contextlib.suppress(psutil.Error):
            t = self._ps.cpu_times()
            total += t.children_user + t.children_system
            for child in self._ps.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    t = child.cpu_times()
                    total += t.user + t.system
        return total

    def context_switches(self) -> int:
        """Voluntary + involuntary switches of all the server's threads (a thread handing over the GIL
        or waiting on a lock shows up here; on a small VM each costs several µs of CPU). Asked of the
        process itself (`_serve`: one getrusage), else counted thread by thread."""
        try:
            self.proc.stdin.write("usage\n")  # type: ignore[union-attr]
            self.proc.stdin.flush()  # type: ignore[union-attr]
            return int(json.loads(_readline(self.proc, 10.0))["switches"])
        except (OSError, ValueError, KeyError):
            pass
        total = 0
        for t in self._ps.threads():
            with contextlib.suppress(psutil.Error):
                total += sum(psutil.Process(t.id).num_ctx_switches())
        return total

    def gc_pauses(self) -> dict[str, float]:
        """The server's garbage-collector pauses since the previous call (`_serve.GcPauses.take`):
        collections, full (generation 2) ones, max_ms, total_ms; {} when the server did not answer."""
        try:
            self.proc.stdin.write("gc\n")  # type: ignore[union-attr]
            self.proc.stdin.flush()  # type: ignore[union-attr]
        except OSError:
            return {}
        line = _readline(self.proc, 10.0)
        try:
            return dict(json.loads(line))
        except ValueError:
            return {}

    def probe_records(self) -> dict[str, list]:
        """The server's stage records since the previous call (`--probe`, see `_probe`); {} without."""
        try:
            self.proc.stdin.write("probe\n")  # type: ignore[union-attr]
            self.proc.stdin.flush()  # type: ignore[union-attr]
        except OSError:
            return {}
        try:
            path = json.loads(_readline(self.proc, 30.0))["path"]
        except (ValueError, KeyError):
            return {}
        if not path:
            return {}
        with open(path) as f:
            records = json.load(f)
        os.unlink(path)
        return records

    def stop(self, timeout: float = 30.0) -> None:
        """Close stdin (the child's signal to shut down) and wait; kill it if it hangs."""
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()  # type: ignore[union-attr]
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._tmp.cleanup()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _readline(proc: subprocess.Popen, timeout: float) -> str:
    box: list[str] = []
    t = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    t.start()
    t.join(timeout)
    return box[0] if box else ""


# -- the load driver -------------------------------------------------------------------------------


@dataclass
class Measurement:
    """One measuring window of one case."""

    items: int  # calls (or streamed messages) completed inside the window
    seconds: float
    latencies_ns: list[int]  # per op, for ops that started and finished inside the window
    server_cpu: float | None  # seconds of server-process CPU inside the window
    server_switches: int | None  # context switches of the server's threads inside the window
    client_cpu: float  # seconds of this (driver) process's CPU inside the window
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else 0.0


def drive(
    target: str,
    make_op: MakeOp,
    *,
    clients: int,
    duration: float,
    warmup: float,
    max_calls: int = 10_000_000,
    server: ServerProcess | None = None,
) -> Measurement:
    """Run `clients` closed-loop threads, each with its own channel, for warm-up + `duration` seconds
    (or until `max_calls` ops have been measured); meter the server process over the window."""
    channels = [grpc.insecure_channel(target, options=_CHANNEL_OPTIONS) for _ in range(clients)]
    try:
        for ch in channels:
            grpc.channel_ready_future(ch).result(timeout=10)
        ops = [make_op(ch) for ch in channels]
        per_thread_max = max(1, max_calls // clients)
        start = threading.Barrier(clients + 1)
        stop = threading.Event()
        window: dict[str, int] = {}
        lat: list[list[int]] = [[] for _ in range(clients)]
        counts = [0] * clients
        errors: list[str] = []

        def worker(i: int) -> None:
            op, mine = ops[i], lat[i]
            clock = time.perf_counter_ns
            start.wait()
            t0, n = window["t0"], 0
            try:
                while not stop.is_set():
                    a = clock()
                    got = op()
                    b = clock()
                    if a >= t0 and not stop.is_set():
                        mine.append(b - a)
                        n += 1 if got is None else got
                        if len(mine) >= per_thread_max:
                            stop.set()
            except Exception as exc:  # recorded and reported; the row is marked as failed
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
                stop.set()
            counts[i] = n

        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
        for t in threads:
            t.start()
        window["t0"] = time.perf_counter_ns() + int(warmup * 1e9)
        start.wait()
        stop.wait(max(0.0, window["t0"] / 1e9 - time.perf_counter()))
        cpu0 = server.cpu_seconds() if server else None
        sw0 = server.context_switches() if server else None
        ccpu0, w0 = time.process_time(), time.perf_counter()
        stop.wait(duration)
        stop.set()
        w1, ccpu1 = time.perf_counter(), time.process_time()
        cpu1 = server.cpu_seconds() if server else None
        sw1 = server.context_switches() if server else None
        for t in threads:
            t.join(30)
        return Measurement(
            items=sum(counts),
            seconds=w1 - w0,
            latencies_ns=[x for part in lat for x in part],
            server_cpu=(cpu1 - cpu0) if cpu0 is not None and cpu1 is not None else None,
            server_switches=(sw1 - sw0) if sw0 is not None and sw1 is not None else None,
            client_cpu=ccpu1 - ccpu0,
            errors=errors,
        )
    finally:
        for ch in channels:
            ch.close()


@dataclass
class Loop:
    """One measuring window of an in-process closed loop (see closed_loop)."""

    seconds: float
    cpu: float  # seconds of this process's CPU inside the window
    samples: list[tuple[int, Any]]  # (ns, what op returned) per op that started inside the window
    errors: list[str]


def closed_loop(op: Callable[[], Any], *, clients: int, warmup: float, duration: float) -> Loop:
    """Run op() in `clients` closed-loop threads in this process (no gRPC: an engine benchmarked alone)
    for warm-up + `duration` seconds; the first error stops the window and is reported."""
    stop = threading.Event()
    t0 = time.perf_counter_ns() + int(warmup * 1e9)
    samples: list[list[tuple[int, Any]]] = [[] for _ in range(clients)]
    errors: list[str] = []

    def client(i: int) -> None:
        mine = samples[i]
        try:
            while not stop.is_set():
                a = time.perf_counter_ns()
                got = op()
                b = time.perf_counter_ns()
                if a >= t0 and not stop.is_set():
                    mine.append((b - a, got))
        except Exception as exc:  # recorded and reported; the row is marked as failed
            errors.append(f"{type(exc).__name__}: {exc}"[:200])
            stop.set()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    stop.wait(warmup)
    cpu0, w0 = time.process_time(), time.perf_counter()
    stop.wait(duration)
    stop.set()
    w1, cpu1 = time.perf_counter(), time.process_time()
    for t in threads:
        t.join(60)
    return Loop(w1 - w0, cpu1 - cpu0, [x for part in samples for x in part], errors)


def echo_unary(payload_bytes: int) -> MakeOp:
    """The baseline unary call: send `payload_bytes` bytes, get them back."""
    payload = b"x" * payload_bytes

    def make(ch: grpc.Channel) -> Op:
        call = ch.unary_unary(UNARY, request_serializer=None, response_deserializer=None)

        def op() -> None:
            call(payload, timeout=30)

        return op

    return make


def echo_stream(count: int, payload_bytes: int) -> MakeOp:
    """The baseline server stream: one call that yields `count` messages of `payload_bytes` bytes."""
    request = encode_stream_request(count, b"x" * payload_bytes)

    def make(ch: grpc.Channel) -> Op:
        call = ch.unary_stream(STREAM, request_serializer=None, response_deserializer=None)

        def op() -> int:
            n = 0
            for _ in call(request, timeout=60):
                n += 1
            return n

        return op

    return make


# -- cases, rounds, results ------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One row of a suite: an op against one of the suite's servers, optionally judged against a baseline row."""

    name: str
    server: str  # key into the servers mapping given to run_cases
    make_op: MakeOp
    baseline: str | None = None  # name of the baseline case to compare with
    target: float | None = None  # minimum calls/s ratio vs the baseline
    unit: str = "calls"


@dataclass
class Result:
    suite: str
    name: str
    rate: float
    p50_ms: float
    p99_ms: float
    server_us_per_item: float | None = None
    server_switches_per_item: float | None = None
    client_us_per_item: float | None = None
    commits_per_item: float | None = None  # database commits per item (the workflows suite's steps)
    handoffs_per_item: float | None = None  # cross-thread hand-offs on the step path per item
    unit: str = "calls"
    baseline: str | None = None
    ratio: float | None = None
    target: float | None = None
    rounds: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool | None:
        if self.errors:
            return False
        if self.target is None or self.ratio is None:
            return None
        return self.ratio >= self.target


def percentile(sorted_ns: Sequence[int], q: float) -> float:
    if not sorted_ns:
        return float("nan")
    i = min(len(sorted_ns) - 1, max(0, int(round(q * len(sorted_ns) + 0.5)) - 1))
    return sorted_ns[i] / 1e6


_percentile = percentile  # the old name, still imported by suite_events.py


def run_cases(
    suite: str, cases: Sequence[Case], servers: dict[str, ServerProcess], args: Any
) -> list[Result]:
    """Measure every case `args.rounds` times, interleaved (round 1 of all, round 2 of all, ...).

    With `args.select`, only cases whose name contains it, plus the baselines they are judged against."""
    if getattr(args, "select", None):
        chosen = {c.name for c in cases if args.select.lower() in c.name.lower()}
        chosen |= {c.baseline for c in cases if c.name in chosen and c.baseline}
        cases = [c for c in cases if c.name in chosen]
    per_case: dict[str, list[Measurement]] = {c.name: [] for c in cases}
    for r in range(args.rounds):
        for c in cases:
            srv = servers[c.server]
            m = drive(
                srv.target,
                c.make_op,
                clients=args.clients,
                duration=args.duration,
                warmup=args.warmup,
                max_calls=args.max_calls,
                server=srv,
            )
            per_case[c.name].append(m)
            if args.verbose:
                print(f"  [{suite}] round {r + 1} {c.name}: {m.rate:,.0f} {c.unit}/s", file=sys.stderr)
    results: dict[str, Result] = {}
    for c in cases:
        ms = per_case[c.name]
        lat = sorted(x for m in ms for x in m.latencies_ns)
        items = sum(m.items for m in ms)
        srv_cpu = [m.server_cpu for m in ms]
        sw = [m.server_switches for m in ms]
        results[c.name] = Result(
            suite=suite,
            name=c.name,
            rate=statistics.median(m.rate for m in ms),
            p50_ms=percentile(lat, 0.50),
            p99_ms=percentile(lat, 0.99),
            server_us_per_item=(sum(srv_cpu) / items * 1e6) if items and None not in srv_cpu else None,  # type: ignore[arg-type]
            server_switches_per_item=(sum(sw) / items) if items and None not in sw else None,  # type: ignore[arg-type]
            client_us_per_item=(sum(m.client_cpu for m in ms) / items * 1e6) if items else None,
            unit=c.unit,
            baseline=c.baseline,
            target=c.target,
            rounds=[m.rate for m in ms],
            errors=[e for m in ms for e in m.errors][:3],
        )
    for res in results.values():
        if res.baseline:
            base = results[res.baseline]
            res.ratio = res.rate / base.rate if base.rate else None
    return list(results.values())


@contextlib.contextmanager
def servers(*kinds: str, profile_dir: str | None = None) -> Iterator[dict[str, ServerProcess]]:
    """Start one server process per kind ("echo", "voltorch"); with profile_dir, voltorch is profiled."""
    started: dict[str, ServerProcess] = {}
    try:
        for kind in kinds:
            prof = os.path.join(profile_dir, f"{kind}.pstats") if profile_dir and kind != "echo" else None
            started[kind] = ServerProcess(kind, profile=prof)
        yield started
    finally:
        for s in started.values():
            s.stop()


# -- output ------------------------------------------------------------------------------------------


def print_results(results: Sequence[Result], title: str = "voltorch benchmarks") -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    counted = any(r.commits_per_item is not None or r.handoffs_per_item is not None for r in results)
    columns = [
        ("suite", "left"),
        ("benchmark", "left"),
        ("rate/s", "right"),
        ("p50 ms", "right"),
        ("p99 ms", "right"),
        ("srv µs/op", "right"),
        ("srv sw/op", "right"),
        ("cli µs/op", "right"),
    ]
    if counted:  # the workflows suite: what a step costs in commits and thread hand-offs
        columns += [("commits/step", "right"), ("hand-offs/step", "right")]
    columns += [("vs baseline", "right"), ("target", "right"), ("result", "left")]
    for col, just in columns:
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for r in results:
        verdict = {True: "[green]PASS[/]", False: "[red]MISS[/]", None: ""}[r.passed]
        if r.errors:
            verdict = f"[red]ERROR[/] {r.errors[0]}"
        counts = (
            [
                f"{r.commits_per_item:.2f}" if r.commits_per_item is not None else "-",
                f"{r.handoffs_per_item:.2f}" if r.handoffs_per_item is not None else "-",
            ]
            if counted
            else []
        )
        table.add_row(
            r.suite,
            r.name,
            f"{r.rate:,.0f} {r.unit}",
            f"{r.p50_ms:.2f}",
            f"{r.p99_ms:.2f}",
            f"{r.server_us_per_item:.0f}" if r.server_us_per_item is not None else "-",
            f"{r.server_switches_per_item:.1f}" if r.server_switches_per_item is not None else "-",
            f"{r.client_us_per_item:.0f}" if r.client_us_per_item is not None else "-",
            *counts,
            f"{r.ratio:.2f}x {r.baseline}" if r.ratio is not None else "",
            f">= {r.target:.2f}x" if r.target is not None else "",
            verdict,
        )
    console = Console()
    console.width = max(console.width, 175 if counted else 150)  # rich falls back to 80 columns when piped
    console.print(table)
