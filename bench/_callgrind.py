"""Instructions per SetKey, GetKey or Publish on a voltorch server (or per call of the bare grpcio echo) run
under callgrind: repeatable to ~0.2 %, unlike seconds on a shared machine, so a before/after of a few
percent can be settled.

    .venv/bin/python -m bench._callgrind CHECKOUT set|get|publish|echo [N]
    .venv/bin/python -m bench._callgrind CHECKOUT at-once [N]    # per step of N 5-step run()s at once

CHECKOUT is the tree whose server serves (e.g. a worktree of an older commit); the driver and
bench._serve are this tree's. Instrumentation is on only around the N measured calls (after a warm-up).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import grpc
from google.protobuf import struct_pb2
from voltorch.v1 import events_pb2, events_pb2_grpc, state_pb2, state_pb2_grpc

from ._serve import UNARY

_ROOT = Path(__file__).resolve().parents[1]


def callgrind_command(out: Path, module: str, *args: str) -> list[str]:
    """`python -m module args` under callgrind, instrumentation off until `instrument(pid, True)`; its
    dumps go to `out` (one file per dump, `out.N`)."""
    return [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}",
        sys.executable,
        "-m",
        module,
        *args,
    ]


def instrument(pid: int, on: bool) -> None:
    """Switch callgrind's instrumentation of process `pid` on or off."""
    subprocess.run(
        ["callgrind_control", "-i", "on" if on else "off", str(pid)], capture_output=True, check=True
    )


def dump_total(text: str) -> int:
    """The instructions a callgrind dump counted (its `totals:` line)."""
    return next((int(line.split()[1]) for line in text.splitlines() if line.startswith("totals:")), 0)


def total_instructions(folder: Path) -> int:
    """The instructions of every dump in `folder`."""
    return sum(dump_total(out.read_text(errors="replace")) for out in folder.glob("cg.out*"))


def _server(checkout: str, kind: str, **env: str) -> tuple[subprocess.Popen, Path, int]:
    """`checkout`'s server (bench._serve `kind`) under callgrind, instrumentation off: (process, the
    folder its dumps go to, its port). `env`: VOLTORCH_* settings."""
    tmp = Path(tempfile.mkdtemp(prefix="voltorch-callgrind-"))
    env = {"PYTHONPATH": f"{checkout}/sdk:{checkout}/server:{_ROOT}", "VOLTORCH_TRACING": "true", **env}
    cmd = callgrind_command(tmp / "cg.out", "bench._serve", kind, "--db", str(tmp / "bench.db"))
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=_ROOT,
        env={**os.environ, **env},
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    return proc, tmp, json.loads(proc.stdout.readline())["port"]


def instructions_per_call(checkout: str, op: str, n: int = 300) -> float:
    proc, tmp, port = _server(checkout, "echo" if op == "echo" else "voltorch")
    assert proc.stdin is not None
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = state_pb2_grpc.StateServiceStub(channel)
    events = events_pb2_grpc.EventServiceStub(channel)
    echo = channel.unary_unary(UNARY)
    value = struct_pb2.Value(string_value="x" * 100)
    # The events suite's Publish: a struct with a 100-byte string and a number.
    published = events_pb2.PublishRequest(
        event=events_pb2.Event(type="bench.publish", source="bench", correlation_id="bench-run")
    )
    published.event.data.struct_value.update({"data": "x" * 100, "i": 0})

    def call(i: int) -> None:
        if op == "set":
            stub.SetKey(state_pb2.SetKeyRequest(key=f"k{i % 50}", value=value), timeout=60)
        elif op == "publish":
            events.Publish(published, timeout=60)
        elif op == "echo":
            echo(b"x" * 100, timeout=60)
        else:
            stub.GetKey(state_pb2.GetKeyRequest(key="k0"), timeout=60)

    if op != "echo":
        stub.SetKey(state_pb2.SetKeyRequest(key="k0", value=value), timeout=60)
    for i in range(50):
        call(i)
    instrument(proc.pid, True)
    for i in range(n):
        call(i)
    instrument(proc.pid, False)
    proc.stdin.close()
    proc.wait(timeout=300)
    return total_instructions(tmp) / n


def instructions_per_step_at_once(checkout: str, n: int = 200) -> float:
    """Instructions per step of n 5-step workflows started at once through the SDK's run(), as the
    workflows suite's peer row drives them (db_synchronous=FULL), after 20 run one by one."""
    import voltorch

    from . import _peer_langgraph as lg
    from .suite_workflows import STEPS, TEMPLATE, _setup

    settings = {"VOLTORCH_WORKFLOW_CONCURRENCY": str(max(n, 100)), "VOLTORCH_DB_SYNCHRONOUS": "FULL"}
    proc, tmp, port = _server(checkout, "voltorch", **settings)
    assert proc.stdin is not None
    target = f"127.0.0.1:{port}"
    _setup(target)
    with voltorch.Client(target) as client:

        def run() -> None:
            client.workflows.run(TEMPLATE, timeout=600)

        for _ in range(20):
            run()
        instrument(proc.pid, True)
        lg.concurrent(run, n)
        instrument(proc.pid, False)
    proc.stdin.close()
    proc.wait(timeout=600)
    return total_instructions(tmp) / (n * STEPS)


if __name__ == "__main__":
    checkout, op = sys.argv[1], sys.argv[2]
    if op == "at-once":
        n = int(sys.argv[3]) if len(sys.argv) > 3 else 200
        per = instructions_per_step_at_once(checkout, n)
        print(f"{checkout} {n} workflows at once: {per / 1000:.0f}k instructions per step")
        raise SystemExit
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 300
    print(f"{checkout} {op}: {instructions_per_call(checkout, op, n) / 1000:.1f}k instructions per call")
