"""LLM-bound throughput: 200 complete workflows against a local OpenAI-compatible endpoint that answers
after 0.3 s and takes at most 128 calls at once (429 with retry-after-ms above that), default settings.

The endpoint is the tests' stub (tests/server/openai_stub.py) in its own process, so neither its GIL nor
the client's is the server's bottleneck; workflows are started from a few threads and their completion
is read by listing executions (no stream per workflow in the client).

Rows:

* `200 complete workflows`: ExecuteCompleteWorkflow x 200 started at once on a server process whose
  built-in agents are LLM agents on the stub; rate in workflows/s, p50/p99 of one workflow's run time
  (create to end). `vs baseline` = ideal / wall, ideal = the critical path (one workflow alone, measured
  first) x the waves the capacity allows (ceil(200 / 128)); target 1 / 1.5 (wall <= 1.5 x ideal).
* `peak LLM calls in flight`: the most calls the stub served at once; `vs baseline` = peak / capacity,
  target 0.8.
* `429 answers`: how many calls the stub turned away (the limiter's price for finding the capacity).

`--rounds` rounds (default 3) on one server, each on a cold limiter (RestartComponent "llm"): the
workflow row is the median round by ratio, the peak the highest, the 429s the total.

Bounded: every wait has a deadline (TIMEOUT); a row that misses it reports an error. `-v` prints the
timeline (calls in flight at the stub, workflows finished) every 0.25 s.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import voltorch

from ._harness import Result, ServerProcess, percentile

SUITE = "llm"
WORKFLOWS = 200
LATENCY = 0.3
CAPACITY = 128
TIMEOUT = 180.0
KEY_ENV = "VOLTORCH_BENCH_LLM_KEY"
TERMINAL = [f"workflow.execution.{s}" for s in ("completed", "failed", "cancelled", "timed_out")]
REQUIREMENT = "Build a CLI calculator with add and subtract"
_STUB = Path(__file__).resolve().parent.parent / "tests" / "server" / "openai_stub.py"


def _machine_busy() -> float:
    """Seconds of CPU the whole machine spent busy (all cores, /proc/stat), for the -v timeline."""
    with open("/proc/stat") as f:
        fields = [float(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


class StubProcess:
    """The OpenAI-compatible stub in a child process; `stats()` reads its counters."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(_STUB),
                "--latency",
                str(LATENCY),
                "--capacity",
                str(CAPACITY),
                "--keep-alive",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        try:
            self.base_url = json.loads(line)["base_url"]
        except (ValueError, KeyError):
            self.close()
            raise RuntimeError(f"the LLM stub did not start (said {line!r})") from None
        self.root = self.base_url.removesuffix("/v1")
        self._ps = psutil.Process(self.proc.pid)

    def cpu_seconds(self) -> float:
        """The stub's CPU so far: it shares the machine with the server, so the suite says how much."""
        t = self._ps.cpu_times()
        return t.user + t.system

    def stats(self, reset: bool = False) -> dict[str, int]:
        req = urllib.request.Request(
            self.root + ("/stats/reset" if reset else "/stats"), method="POST" if reset else "GET"
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()  # type: ignore[union-attr]
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _finished(client: voltorch.Client, ids: set[str]) -> list[voltorch.Execution]:
    return [e for e in client.workflows.list(page_size=1000) if e.id in ids and e.done]


def _fresh_limiter(client: voltorch.Client) -> None:
    """Start the endpoint's limiter afresh, as after a restart (a server without one: nothing to do)."""
    try:
        client.orchestrator.restart_component("llm", "bench round")
    except voltorch.errors.NotFoundError:
        pass


def _storage(client: voltorch.Client) -> dict[str, float]:
    """The storage component's counters: commits, and the writer lock's held, COMMIT and holder's CPU seconds,
    its holds and the sqlite3 calls in them (SQLite)."""
    for c in client.orchestrator.health(refresh=True).components:
        if c.name == "storage":
            keys = ("commits", "writer_held", "commit_time", "writer_cpu", "writer_holds", "writer_calls")
            return {k: float(v) for k, v in c.details.items() if k in keys}
    return {}


def _warm_up(client: voltorch.Client) -> None:
    """One workflow before the rounds, untimed: the first round's critical path is then not the server's
    start-up (its LLM call process importing, its first clients connecting), which would inflate the
    ideal and flatter the round's ratio."""
    one = client.workflows.execute_complete(REQUIREMENT).execution
    if client.workflows.wait(one.id, timeout=TIMEOUT).status != "completed":
        raise RuntimeError("the warm-up workflow did not complete")


def _round(client: voltorch.Client, stub: StubProcess, srv: ServerProcess, verbose: bool) -> dict[str, Any]:
    """One round on a cold endpoint limiter: one workflow alone (the critical path), then 200 at once."""
    _fresh_limiter(client)
    stub.stats(reset=True)
    t0 = time.monotonic()
    one = client.workflows.execute_complete(REQUIREMENT).execution
    if client.workflows.wait(one.id, timeout=TIMEOUT).status != "completed":
        raise RuntimeError("a single complete workflow did not complete")
    critical = time.monotonic() - t0
    calls_alone = stub.stats()["served"]
    _fresh_limiter(client)
    stub.stats(reset=True)
    began, began_wall = time.monotonic(), time.time()
    cpu0, stub_cpu0, store0 = srv.cpu_seconds(), stub.cpu_seconds(), _storage(client)
    driver_cpu0 = time.process_time()
    child_cpu0 = srv.children_cpu_seconds()
    switches0 = srv.context_switches()
    ended: set[str] = set()
    all_ended = threading.Event()
    ids: set[str] = set()

    def follow() -> None:  # one filtered stream, not one per workflow: the client stays cheap
        for ev in client.events.subscribe(TERMINAL, from_time=began_wall - 1):
            if isinstance(ev, voltorch.Event):  # not a heartbeat
                ended.add(ev.data.get("execution_id", ""))
            if all_ended.is_set() or (len(ids) == WORKFLOWS and ids <= ended):
                all_ended.set()
                break

    threading.Thread(target=follow, daemon=True).start()
    samples: list[tuple[float, int, int, float, float, float]] = []

    def sample() -> None:  # calls in flight, workflows ended; cores busy: server, its child, the machine
        t0, cpu0, child0, busy0 = (
            time.monotonic(),
            srv.cpu_seconds(),
            srv.children_cpu_seconds(),
            _machine_busy(),
        )
        while not all_ended.wait(0.25):
            now, cpu, child, busy = (
                time.monotonic(),
                srv.cpu_seconds(),
                srv.children_cpu_seconds(),
                _machine_busy(),
            )
            dt = max(1e-6, now - t0)
            own = (cpu - child) - (cpu0 - child0)
            in_flight = stub.stats()["in_flight"]
            samples.append(
                (
                    now - began,
                    in_flight,
                    len(ended & ids),
                    own / dt,
                    (child - child0) / dt,
                    (busy - busy0) / dt,
                )
            )
            t0, cpu0, child0, busy0 = now, cpu, child, busy

    threading.Thread(target=sample, daemon=True).start()
    with ThreadPoolExecutor(64) as pool:  # started at once, as 64 clients would
        ids.update(
            pool.map(lambda _: client.workflows.execute_complete(REQUIREMENT).execution.id, range(WORKFLOWS))
        )
    if not all_ended.wait(max(0.0, began + TIMEOUT - time.monotonic())):
        all_ended.set()
    done = _finished(client, ids)
    ends = [e.end_time.timestamp() for e in done if e.end_time is not None]
    starts = [e.create_time.timestamp() for e in done if e.create_time is not None]
    wall = max(ends) - min(starts) if ends and starts else time.monotonic() - began
    server_cpu = srv.cpu_seconds() - cpu0
    child_cpu = srv.children_cpu_seconds() - child_cpu0
    switches = srv.context_switches() - switches0
    stub_cpu = stub.cpu_seconds() - stub_cpu0
    driver_cpu = time.process_time() - driver_cpu0
    stats = stub.stats()
    calls = max(1, stats["served"] + stats["rejected"])
    store = {k: v - store0.get(k, float("nan")) for k, v in _storage(client).items()}
    comps = {c.name: c for c in client.orchestrator.health(refresh=True).components}
    health = comps["llm"].details if "llm" in comps else {}  # none before the limiter existed
    endpoint = next((v for k, v in health.items() if k.startswith("endpoint ")), "")
    ideal = critical * math.ceil(WORKFLOWS / CAPACITY)
    if verbose:
        print(
            "llm: t / in flight / done / cores busy: server, its LLM call process, machine: "
            + " ".join(f"{t:.2f}/{n}/{d}/{c:.1f}/{k:.1f}/{m:.1f}" for t, n, d, c, k, m in samples),
            flush=True,
        )
    print(
        f"llm: one workflow {critical:.2f}s ({calls_alone} calls); {WORKFLOWS} in {wall:.2f}s vs ideal"
        f" {ideal:.2f}s = {wall / ideal:.2f}x; server CPU {server_cpu:.1f}s ({server_cpu / calls * 1000:.2f} ms per LLM"
        f" call, of which its LLM call process {child_cpu / calls * 1000:.2f};"
        f" {switches / calls:.0f} context switches), stub CPU {stub_cpu:.1f}s, this driver's {driver_cpu:.1f}s; per call: {store.get('commits', float('nan')) / calls:.2f} commits,"
        f" writer lock held {store.get('writer_held', float('nan')) * 1e3 / calls:.2f} ms (COMMIT"
        f" {store.get('commit_time', float('nan')) * 1e3 / calls:.2f}, holder's CPU"
        f" {store.get('writer_cpu', float('nan')) * 1e3 / calls:.2f}; sqlite3 calls per hold"
        f" {store.get('writer_calls', float('nan')) / max(1, store.get('writer_holds', 0)):.1f});"
        f" peak {stats['peak_in_flight']};"
        f" 429s {stats['rejected']}; limiter: {endpoint}",
        flush=True,
    )
    return {
        "wall": wall,
        "ideal": ideal,
        "done": done,
        "peak": stats["peak_in_flight"],
        "rejected": stats["rejected"],
    }


def run(args: Any) -> list[Result]:
    names = (
        f"{WORKFLOWS} complete workflows ({LATENCY:g} s calls, capacity {CAPACITY})",
        "peak LLM calls in flight",
        "429 answers",
    )
    stub = None
    rounds: list[dict[str, Any]] = []
    try:
        stub = StubProcess()
        env = {
            "VOLTORCH_OPENAI_BASE_URL": stub.base_url,
            "VOLTORCH_OPENAI_API_KEY_ENV": KEY_ENV,
            KEY_ENV: "sk-bench",
            "VOLTORCH_OPENAI_MODEL": "stub-model",
        }
        profile = (
            os.path.join(args.profile, "llm-voltorch.pstats") if getattr(args, "profile", None) else None
        )
        with (
            ServerProcess("voltorch", env=env, profile=profile) as srv,
            voltorch.Client(srv.target, timeout=30) as client,
        ):
            _warm_up(client)
            for _ in range(max(1, args.rounds)):
                rounds.append(_round(client, stub, srv, getattr(args, "verbose", False)))
    except Exception as exc:
        if stub is not None:
            stub.close()
        return [Result(SUITE, n, 0.0, float("nan"), float("nan"), errors=[str(exc)[:200]]) for n in names]
    stub.close()
    median = sorted(rounds, key=lambda r: r["wall"] / r["ideal"])[len(rounds) // 2]
    done = median["done"]
    failed = sum(1 for r in rounds for e in r["done"] if e.status != "completed")
    missing = sum(WORKFLOWS - len(r["done"]) for r in rounds)
    errors = (
        [f"{failed + missing} of {WORKFLOWS * len(rounds)} did not complete"] if failed or missing else []
    )
    ns = sorted(int((e.end_time - e.create_time).total_seconds() * 1e9) for e in done)
    peak = max(r["peak"] for r in rounds)
    return [
        Result(
            SUITE,
            names[0],
            WORKFLOWS / median["wall"],
            percentile(ns, 0.5),
            percentile(ns, 0.99),
            unit="workflows",
            baseline="ideal",
            ratio=median["ideal"] / median["wall"],
            target=round(1 / 1.5, 2),
            rounds=[r["wall"] for r in rounds],
            errors=errors,
        ),
        Result(
            SUITE,
            names[1],
            float(peak),
            float("nan"),
            float("nan"),
            unit="calls",
            baseline="capacity",
            ratio=peak / CAPACITY,
            target=0.8,
        ),
        Result(
            SUITE,
            names[2],
            float(sum(r["rejected"] for r in rounds)),
            float("nan"),
            float("nan"),
            unit="429s",
        ),
    ]
