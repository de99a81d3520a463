"""What bounds N workflows at once: `python -m bench._at_once [--server] [N] [ROUNDS] [KEY=VALUE...]`.

In process (no gRPC): builds the server's own `Runtime` (tracing, metrics, the workflows suite's offline
no-op agent, db_synchronous=FULL, `workflow_concurrency` N as the peers' row sets it), starts N 5-step
workflows at once (ROUNDS times, after one warm-up) and prints per step: wall time, CPU, commits, the
process's context switches, and the database writer lock (`Database.writer_held`, `commit_time`,
`writer_waited`): how long it was held (BEGIN to the callbacks after COMMIT), of that in COMMIT, and how
long callers waited for it. Held time per step close to the wall time per step means the writer lock is
the bound; well under it, something else is. `KEY=VALUE`: settings (e.g. `agent_threads=4`).
With `--server` (and `--profile=FILE`: cProfile of its threads): the same workflows through the SDK against a server process, as the peers' row of the
workflows suite drives it (`run()`, or start then wait with BENCH_PEER_START_WAIT=1), reading the counters from GetHealth; `KEY=VALUE` are then
environment variables of the server (e.g. `VOLTORCH_DB_GROUP_COMMIT=1`; `BENCH_SERVER_SRC` applies).
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from typing import Any

import psutil

from ._step_cost import _chain


def measure(n: int, rounds: int, settings: dict[str, Any]) -> list[dict[str, float]]:
    from voltorch_server.components.workflows import TERMINAL_EVENTS
    from voltorch_server.config import load
    from voltorch_server.runtime import Runtime

    tmp = tempfile.mkdtemp(prefix="voltorch-at-once-")
    config = load(
        None,
        host="127.0.0.1",
        port=0,
        db=os.path.join(tmp, "s.db"),
        db_synchronous="FULL",
        workflow_concurrency=max(n, 100),
        **settings,
    )
    rt = Runtime(config)
    db = rt.db
    rt.start()
    try:
        rt.coordination.register_agent(
            "bench-noop", kind="offline", capabilities=("bench",), max_concurrency=1000
        )
        rt.workflows.register_template(_chain(5))
        finished = threading.Semaphore(0)

        def on_event(e: Any) -> None:
            if e.type in TERMINAL_EVENTS:
                finished.release()

        rt.events.add_listener(on_event)
        proc = psutil.Process()
        out = []
        for r in range(rounds + 1):  # the first round warms up
            c0 = rt.storage.details().get("commits", 0)
            h0, w0, k0 = db.writer_held, db.writer_waited, db.commit_time
            cpu0, sw0, t0 = proc.cpu_times(), proc.num_ctx_switches(), time.perf_counter()
            for _ in range(n):
                rt.workflows.start_execution("chain5")
            for _ in range(n):
                if not finished.acquire(timeout=120):
                    raise RuntimeError("workflows did not finish")
            t1, cpu1, sw1 = time.perf_counter(), proc.cpu_times(), proc.num_ctx_switches()
            c1 = rt.storage.details().get("commits", 0)
            steps = n * 5
            if r:
                out.append(
                    {
                        "steps/s": steps / (t1 - t0),
                        "wall µs/step": (t1 - t0) * 1e6 / steps,
                        "cpu µs/step": (cpu1.user + cpu1.system - cpu0.user - cpu0.system) * 1e6 / steps,
                        "lock held µs/step": (db.writer_held - h0) * 1e6 / steps,
                        "of it COMMIT µs/step": (db.commit_time - k0) * 1e6 / steps,
                        "lock waited ms/step": (db.writer_waited - w0) * 1e3 / steps,
                        "commits/step": (float(c1) - float(c0)) / steps,
                        "switches/step": (sw1.voluntary + sw1.involuntary - sw0.voluntary - sw0.involuntary)
                        / steps,
                        "threads": threading.active_count(),
                    }
                )
        return out
    finally:
        rt.stop()


def measure_server(
    n: int, rounds: int, env: dict[str, str], profile: str | None = None
) -> list[dict[str, float]]:
    import voltorch

    from . import _peer_langgraph as lg
    from ._harness import ServerProcess
    from .suite_workflows import START_WAIT, TEMPLATE, _setup

    env = {"VOLTORCH_WORKFLOW_CONCURRENCY": str(max(n, 100)), "VOLTORCH_DB_SYNCHRONOUS": "FULL", **env}
    keys = ("commits", "writer_held", "commit_time", "writer_waited")

    def counters(client: Any) -> dict[str, float]:
        for c in client.health(refresh=True).components:
            if c.name == "storage":
                return {k: float(c.details.get(k, "nan")) for k in keys}
        return dict.fromkeys(keys, float("nan"))

    with ServerProcess("voltorch", env=env, profile=profile) as srv, voltorch.Client(srv.target) as client:
        _setup(srv.target)

        def run() -> None:
            if START_WAIT:
                eid = client.workflows.start(TEMPLATE).execution.id
                done = client.workflows.wait(eid, timeout=120)
            else:
                done = client.workflows.run(TEMPLATE, timeout=120)
            if done.status != "completed":
                raise RuntimeError(f"execution {done.id} did not complete")

        lg.sequential(run, 5)
        out = []
        for _ in range(rounds):
            d0, cpu0, sw0 = counters(client), srv.cpu_seconds(), srv.context_switches()
            wall, _ = lg.concurrent(run, n)
            d1, cpu1, sw1 = counters(client), srv.cpu_seconds(), srv.context_switches()
            steps = n * 5
            out.append(
                {
                    "steps/s": steps / wall,
                    "wall µs/step": wall * 1e6 / steps,
                    "cpu µs/step": (cpu1 - cpu0) * 1e6 / steps,
                    "lock held µs/step": (d1["writer_held"] - d0["writer_held"]) * 1e6 / steps,
                    "of it COMMIT µs/step": (d1["commit_time"] - d0["commit_time"]) * 1e6 / steps,
                    "lock waited ms/step": (d1["writer_waited"] - d0["writer_waited"]) * 1e3 / steps,
                    "commits/step": (d1["commits"] - d0["commits"]) / steps,
                    "switches/step": (sw1 - sw0) / steps,
                }
            )
        return out


def main() -> None:
    args = sys.argv[1:]
    server = "--server" in args
    profile = next((a.split("=", 1)[1] for a in args if a.startswith("--profile=")), None)
    args = [a for a in args if a != "--server" and not a.startswith("--profile=")]
    nums = [a for a in args if "=" not in a]
    n = int(nums[0]) if nums else 200
    rounds = int(nums[1]) if len(nums) > 1 else 3
    settings: dict[str, Any] = {}
    for a in args:
        if "=" in a:
            k, v = a.split("=", 1)
            settings[k] = v if server else int(v) if v.isdigit() else v
    print(f"load average {os.getloadavg()[0]:.2f}")
    rows = measure_server(n, rounds, settings, profile) if server else measure(n, rounds, settings)
    for row in rows:
        print("  ".join(f"{k} {v:,.1f}" for k, v in row.items()))


if __name__ == "__main__":
    main()
