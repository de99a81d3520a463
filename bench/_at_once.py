"""What bounds N workflows at once inside the server, without gRPC: `python -m bench._at_once [N] [ROUNDS]`.

Builds the server's own `Runtime` (tracing, metrics, the workflows suite's offline no-op agent,
db_synchronous=FULL, `workflow_concurrency` N as the peers' row sets it) in this process, starts N 5-step
workflows at once (ROUNDS times) and prints per step: wall time, CPU, commits, the process's context
switches, and the database writer lock (`Database.writer_held`, `commit_time`, `writer_waited`): how long
it was held (BEGIN to the callbacks after COMMIT), of that in COMMIT, and how long callers waited for it. Held time per step close to the wall
time per step means the writer lock is the bound; held time well under it means something else is.
Settings can be given as `KEY=VALUE` after the counts (e.g. `agent_threads=4`).
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


def main() -> None:
    args = sys.argv[1:]
    nums = [a for a in args if "=" not in a]
    n = int(nums[0]) if nums else 200
    rounds = int(nums[1]) if len(nums) > 1 else 3
    settings: dict[str, Any] = {}
    for a in args:
        if "=" in a:
            k, v = a.split("=", 1)
            settings[k] = int(v) if v.isdigit() else v
    print(f"load average {os.getloadavg()[0]:.2f}")
    for row in measure(n, rounds, settings):
        print("  ".join(f"{k} {v:,.1f}" for k, v in row.items()))


if __name__ == "__main__":
    main()
