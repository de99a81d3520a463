"""What one marginal workflow step costs inside the server, without gRPC: `python -m bench._step_cost [N]`.

Builds the server's own `Runtime` (tracing, metrics, the offline no-op agent of the workflows suite,
db_synchronous=FULL) in this process, runs N sequential 5-step and N sequential 1-step workflows of the
suite's chain, and prints per marginal step ((5-step - 1-step) / 4 per workflow): CPU, wall time, SQL
statements, commits, events, the process's context switches, and of the CPU what the writer's
transactions held (`writer_cpu`) and what their COMMITs took (`commit_cpu`; `commit_ms` their wall
time): with `--synchronous NORMAL` beside the default FULL, what a per-commit fsync costs. Under `valgrind --tool=callgrind
--instr-atstart=no` with `--callgrind` it switches instrumentation on around the measured runs only, so
instructions per step can be read from the callgrind output (repeatable where seconds are not); there the
statements are not counted (the counter's expanded SQL would be counted as the step's instructions).
With `--bare` the steps keep no coordination record (`_bare_step`): a bound, to read what that record costs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from ._callgrind import callgrind_command, dump_total


def _chain(steps: int) -> Any:
    from voltorch_server.components.workflows.templates import AgentTaskSpec, StepSpec, Template

    return Template(
        name=f"chain{steps}",
        steps=tuple(
            StepSpec(
                f"s{i}",
                AgentTaskSpec(f"step {i}", capabilities=("bench",)),
                depends_on=(f"s{i - 1}",) if i else (),
            )
            for i in range(steps)
        ),
    )


def measure(
    n: int, callgrind: bool = False, profile: str = "", synchronous: str = "FULL", bare: bool = False
) -> dict[str, float]:
    from voltorch_server.components.workflows import TERMINAL_EVENTS
    from voltorch_server.config import load
    from voltorch_server.runtime import Runtime

    tmp = tempfile.mkdtemp(prefix="voltorch-step-cost-")
    # Under callgrind a run takes minutes: the watcher's periodic rounds would be counted as steps.
    quiet: dict[str, Any] = {"watch_interval": 3600.0, "metrics_interval": 3600.0} if callgrind else {}
    config = load(
        None, host="127.0.0.1", port=0, db=os.path.join(tmp, "s.db"), db_synchronous=synchronous, **quiet
    )
    rt = Runtime(config)
    rt.start()
    try:
        rt.coordination.register_agent(
            "bench-noop", kind="offline", capabilities=("bench",), max_concurrency=1000
        )
        if bare:
            from ._bare_step import BareCoordination

            rt.workflows.coordination = BareCoordination(rt.coordination, "bench-noop")
        for s in (1, 5):
            rt.workflows.register_template(_chain(s))
        done = threading.Event()
        counts = {"events": 0}

        def on_event(e: Any) -> None:
            counts["events"] += 1
            if e.type in TERMINAL_EVENTS:
                done.set()

        rt.events.add_listener(on_event)
        statements: list[int] = [0]
        with rt.db.write() as tx:
            conn = tx.conn
        if not callgrind:
            # Not under callgrind, where only instructions are read: Python's sqlite3 hands a trace callback
            # each statement's SQL with its values expanded into it (the step's outputs, its events' JSON),
            # ~0.4 M instructions per marginal step that are the counter's, not the step's.
            conn.set_trace_callback(lambda _s: statements.__setitem__(0, statements[0] + 1))
        proc = psutil.Process()

        def run(name: str, k: int) -> dict[str, float]:
            for _ in range(k):
                done.clear()
                e, _ = rt.workflows.start_execution(name)
                if not done.wait(30):
                    raise RuntimeError(f"{e.id} did not finish")
                while not rt.workflows.get(e.id).terminal:
                    time.sleep(0.001)
            return {}

        def window(name: str, warm: bool = True) -> dict[str, float]:
            if warm:
                run(name, 5)
            s0, e0 = statements[0], counts["events"]
            d0 = rt.storage.details()
            cpu0, sw0, t0 = proc.cpu_times(), proc.num_ctx_switches(), time.perf_counter()
            run(name, n)
            t1, cpu1, sw1 = time.perf_counter(), proc.cpu_times(), proc.num_ctx_switches()
            d1 = rt.storage.details()

            def per(key: str, scale: float = 1.0) -> float:
                return (float(d1.get(key, 0)) - float(d0.get(key, 0))) * scale / n

            return {
                "wall_ms": (t1 - t0) * 1e3 / n,
                "cpu_ms": (cpu1.user + cpu1.system - cpu0.user - cpu0.system) * 1e3 / n,
                "switches": (sw1.voluntary + sw1.involuntary - sw0.voluntary - sw0.involuntary) / n,
                "statements": (statements[0] - s0) / n,
                "events": (counts["events"] - e0) / n,
                "commits": per("commits"),
                "writer_cpu_ms": per("writer_cpu", 1e3),
                "commit_cpu_ms": per("commit_cpu", 1e3),
                "commit_ms": per("commit_time", 1e3),
            }

        def callgrind_control(*opts: str) -> None:
            if callgrind:
                subprocess.run(
                    ["callgrind_control", *opts, str(os.getpid())], capture_output=True, check=True
                )

        if profile:
            from . import _profile

            _profile.enable()
        run("chain5", 5)
        callgrind_control("-i", "on")
        five = window("chain5", warm=False)
        callgrind_control("-d", "chain5")  # a dump per window: instructions of each shape
        run("chain1", 5)
        callgrind_control("-z")
        one = window("chain1", warm=False)
        callgrind_control("-d", "chain1")
        callgrind_control("-i", "off")
        if profile:
            from . import _profile

            print(_profile.dump(profile, 30))
        conn.set_trace_callback(None)
        out = {f"5-step {k}": v for k, v in five.items()}
        out |= {f"1-step {k}": v for k, v in one.items()}
        out |= {f"marginal {k}": (five[k] - one[k]) / 4 for k in five}
        return out
    finally:
        rt.stop()


def under_callgrind(n: int) -> dict[str, float]:
    """Instructions per workflow and per marginal step (all threads), this module run under callgrind."""
    tmp = Path(tempfile.mkdtemp(prefix="voltorch-step-cost-cg-"))
    subprocess.run(
        callgrind_command(tmp / "cg.out", "bench._step_cost", str(n), "--callgrind"),
        cwd=Path(__file__).resolve().parents[1],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    totals: dict[str, int] = {}
    for out in tmp.glob("cg.out*"):
        text = out.read_text(errors="replace")
        shape = next(
            (ln.split("chain")[-1] for ln in text.splitlines() if ln.startswith("desc: Trigger: dump chain")),
            "",
        )
        if shape:
            totals[shape] = totals.get(shape, 0) + dump_total(text)
    five, one = totals["5"] / n, totals["1"] / n
    return {
        "5-step instructions": five,
        "1-step instructions": one,
        "marginal instructions": (five - one) / 4,
    }


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench._step_cost")
    p.add_argument("n", type=int, nargs="?", default=200)
    p.add_argument("--callgrind", action="store_true", help="(run by --instructions under callgrind)")
    p.add_argument("--instructions", action="store_true", help="run N of each under callgrind; count")
    p.add_argument("--profile", default="", help="cProfile of every thread to this file")
    p.add_argument("--synchronous", default="FULL", help="db_synchronous (FULL, as the bench; NORMAL)")
    p.add_argument("--bare", action="store_true", help="steps without a coordination record (a bound)")
    args = p.parse_args()
    if args.instructions:
        for k, v in under_callgrind(args.n).items():
            print(f"{k:24} {v / 1e6:10.3f} M")
        return
    for k, v in measure(args.n, args.callgrind, args.profile, args.synchronous, args.bare).items():
        print(f"{k:24} {v:10.3f}")


if __name__ == "__main__":
    main()
