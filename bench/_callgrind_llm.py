"""Instructions per LLM call of the LLM agent alone (its `openai` client, httpx, the endpoint limiter),
T threads at once against the suite's stub, with tracing and metrics as in a server, under callgrind: repeatable to well under 1 %, unlike the
suite's seconds on a shared machine, so a change to the call path can be settled.

    .venv/bin/python -m bench._callgrind_llm CHECKOUT [THREADS [CALLS]]

CHECKOUT is the tree whose agent runs (e.g. a worktree of an older commit). THREADS (default 128, the
suite's capacity) calls are in flight at once, as in the suite; each thread makes one call to warm up,
then CALLS (default 4) measured ones. The stub (tests/server/openai_stub.py, this tree's) runs in its own
process, outside callgrind.

    .venv/bin/python -m bench._callgrind_llm --server CHECKOUT [WORKFLOWS] [--profile OUT]

The whole server instead (bench._serve, CHECKOUT's server, LLM agents on the stub, as in `bench llm`):
after one workflow to warm up, WORKFLOWS (default 30) ExecuteCompleteWorkflow started at once and waited
for; prints the server's instructions per LLM call (every thread: gRPC, the start, the steps, live text,
the agents). With --profile OUT it runs outside callgrind with cProfile on every thread (CPU time) and
writes the merged stats to OUT and a summary to OUT.txt.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ._callgrind import callgrind_command, instrument, total_instructions

_ROOT = Path(__file__).resolve().parents[1]
_STUB = _ROOT / "tests" / "server" / "openai_stub.py"
KEY_ENV = "VOLTORCH_BENCH_LLM_KEY"


def _worker(base_url: str, threads: int, calls: int) -> None:
    """Runs under callgrind: warm up, say so, run the measured calls on "go", say when done."""
    from voltorch_server.agents.base import AgentTask, CancelSignal
    from voltorch_server.agents.limiter import Limiters, LimitSettings
    from voltorch_server.agents.llm import LlmAgent, LlmSettings
    from voltorch_server.metrics import Metrics
    from voltorch_server.telemetry import install

    install()  # tracing and metrics as in a server (spans sampled out: nothing exports)
    limiters = Limiters(LimitSettings(max_in_flight=2 * threads, initial_window=threads))
    agent = LlmAgent(
        LlmSettings(model="stub-model", base_url=base_url, api_key_env=KEY_ENV),
        env={KEY_ENV: "sk-bench"},
        limiters=limiters,
        on_call=Metrics.for_server().record_llm_call,
    )
    go = threading.Event()
    warm = threading.Barrier(threads + 1)
    done = threading.Barrier(threads + 1)

    def call(i: int) -> None:
        task = AgentTask(
            f"t{i}",
            "c1",
            "Build a CLI calculator with add and subtract",
            traceparent=f"00-{i + 1:032x}-{i + 1:016x}-01",
            agent_id="analyst",
            agent_capabilities=("analysis",),
            on_delta=lambda _text: None,
            on_last_delta=lambda _text: None,
        )
        agent.run(task, CancelSignal())

    def thread(t: int) -> None:
        call(t)
        warm.wait()
        go.wait()
        for k in range(calls):
            call(t * calls + k)
        done.wait()

    for t in range(threads):
        threading.Thread(target=thread, args=(t,), daemon=True).start()
    warm.wait()
    print("ready", flush=True)
    sys.stdin.readline()
    go.set()
    done.wait()
    print("done", flush=True)
    sys.stdin.readline()
    agent.close()


@contextmanager
def _stub(*options: str) -> Iterator[str]:
    """The suite's OpenAI-compatible stub (0.3 s answers) in its own process; yields its base URL."""
    stub = subprocess.Popen(
        [sys.executable, str(_STUB), "--latency", "0.3", *options, "--keep-alive"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert stub.stdout is not None and stub.stdin is not None
    try:
        yield json.loads(stub.stdout.readline())["base_url"]
    finally:
        stub.stdin.close()
        stub.wait(timeout=30)


def instructions_per_call(checkout: str, threads: int = 128, calls: int = 4) -> float:
    tmp = Path(tempfile.mkdtemp(prefix="voltorch-callgrind-llm-"))
    with _stub() as base_url:
        return _agent_instructions(checkout, tmp, base_url, threads, calls)


def _agent_instructions(checkout: str, tmp: Path, base_url: str, threads: int, calls: int) -> float:
    env = {**os.environ, "PYTHONPATH": f"{checkout}/sdk:{checkout}/server:{_ROOT}"}
    cmd = callgrind_command(
        tmp / "cg.out", "bench._callgrind_llm", "--worker", base_url, str(threads), str(calls)
    )
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the agent under callgrind did not warm up")
        instrument(proc.pid, True)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        if proc.stdout.readline().strip() != "done":
            raise RuntimeError("the agent under callgrind did not finish its calls")
        instrument(proc.pid, False)
        proc.stdin.close()
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    return total_instructions(tmp) / (threads * calls)


# The server's activities in a cProfile of `--server --profile`: inclusive CPU of these functions (file
# suffix, name); an indented one is part of the one above it, except the dispatch: a step's task is
# submitted in the start (the first step) and in the previous step's outcome (the next ones).
SPLIT = (
    ("ExecuteCompleteWorkflow (gRPC handler)", "servicers/workflows.py", "ExecuteCompleteWorkflow"),
    ("  the start (validate, insert, begin)", "workflows/_engine.py", "_start"),
    ("workflow runner threads", "workflows/_run.py", "_run_jobs"),
    ("  LLM agent (openai, httpx, limiter)", "agents/llm.py", "run"),
    ("  live text", "coordination/_deltas.py", "write_last"),
    ("  (a task submitted: in start and outcome)", "coordination/_engine.py", "submit_in"),
    ("  the outcome recorded (step records)", "workflows/_run.py", "_record_inline"),
    ("events Subscribe stream", "servicers/events.py", "Subscribe"),
)


def split(path: str) -> str:
    """The share of the server's CPU each activity of SPLIT took, from a --profile run's stats."""
    import pstats

    stats = pstats.Stats(path)
    total = stats.total_tt  # type: ignore[attr-defined]
    functions: dict = stats.stats  # type: ignore[attr-defined]
    lines = [f"{'activity':44} {'share of server CPU':>20}"]
    for label, suffix, name in SPLIT:
        cum = sum(v[3] for (f, _l, n), v in functions.items() if n == name and f.endswith(suffix))
        lines.append(f"{label:44} {cum / total * 100:19.1f}%")
    return "\n".join(lines)


def server_run(checkout: str, workflows: int = 30, profile: str = "") -> float:
    """Instructions per LLM call of the whole server (or, with `profile`, its cProfile to that path)."""
    sys.path[:0] = [f"{_ROOT}/sdk", str(_ROOT)]
    tmp = Path(tempfile.mkdtemp(prefix="voltorch-callgrind-llm-server-"))
    with _stub("--capacity", "128") as base_url:
        return _server_instructions(checkout, tmp, base_url, workflows, profile)


def _server_instructions(checkout: str, tmp: Path, base_url: str, workflows: int, profile: str) -> float:
    import voltorch  # on the path server_run gave

    from .suite_llm import REQUIREMENT, TERMINAL

    stats = base_url.removesuffix("/v1") + "/stats"
    env = {
        **os.environ,
        "PYTHONPATH": f"{checkout}/sdk:{checkout}/server:{_ROOT}",
        "VOLTORCH_OPENAI_BASE_URL": base_url,
        "VOLTORCH_OPENAI_API_KEY_ENV": KEY_ENV,
        KEY_ENV: "sk-bench",
        "VOLTORCH_OPENAI_MODEL": "stub-model",
    }
    serve = ["bench._serve", "voltorch", "--db", str(tmp / "bench.db")]
    if profile:
        cmd = [sys.executable, "-m", *serve, "--profile", profile]
    else:
        cmd = callgrind_command(tmp / "cg.out", *serve)
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
        cwd=_ROOT,
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        port = json.loads(proc.stdout.readline())["port"]
        with voltorch.Client(f"127.0.0.1:{port}", timeout=600) as client:
            one = client.workflows.execute_complete(REQUIREMENT).execution
            client.workflows.wait(one.id, timeout=600)
            urllib.request.urlopen(urllib.request.Request(stats + "/reset", method="POST"), timeout=10).read()
            if not profile:
                instrument(proc.pid, True)
            ended: list[str] = []
            stream = client.events.subscribe(TERMINAL, from_time=time.time())  # as the suite follows them
            ids = [client.workflows.execute_complete(REQUIREMENT).execution.id for _ in range(workflows)]
            for ev in stream:
                if isinstance(ev, voltorch.Event):  # not a heartbeat
                    if ev.type != TERMINAL[0]:
                        raise RuntimeError(f"{ev.data.get('execution_id')} did not complete: {ev.type}")
                    ended.append(ev.data.get("execution_id", ""))
                    if set(ids) <= set(ended):
                        break
            if not profile:
                instrument(proc.pid, False)
            with urllib.request.urlopen(stats, timeout=10) as r:
                calls = json.loads(r.read())["served"]
        proc.stdin.close()
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    if profile:
        return 0.0
    return total_instructions(tmp) / calls


if __name__ == "__main__":
    if sys.argv[1] == "--server":
        args = [a for a in sys.argv[2:] if not a.startswith("--profile")]
        prof = next((a.split("=", 1)[1] for a in sys.argv[2:] if a.startswith("--profile=")), "")
        n = int(args[1]) if len(args) > 1 else 30
        per_call = server_run(args[0], n, prof)
        if prof:
            print(split(prof))
        else:
            print(
                f"{args[0]}: {per_call / 1e6:.2f} M instructions per LLM call, whole server ({n} workflows)"
            )
    elif sys.argv[1] == "--worker":
        _worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        checkout = sys.argv[1]
        threads = int(sys.argv[2]) if len(sys.argv) > 2 else 128
        calls = int(sys.argv[3]) if len(sys.argv) > 3 else 4
        per_call = instructions_per_call(checkout, threads, calls)
        print(f"{checkout}: {per_call / 1000:.1f}k instructions per LLM call ({threads} threads x {calls})")
