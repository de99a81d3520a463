"""`voltorch serve` as a real process: it listens, answers stock gRPC tools, and stops cleanly."""

from __future__ import annotations

import os
import queue
import re
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
import voltorch
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

LISTENING = re.compile(r"voltorch listening on (\S+):(\d+)")


class Serve:
    """A running `voltorch serve` subprocess and the address it printed."""

    def __init__(self, proc: subprocess.Popen, lines: queue.Queue, target: str, banner: str, stderr: Path):
        self.proc = proc
        self.lines = lines
        self.target = target
        self.banner = banner
        self.stderr = stderr


def _pump(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


@contextmanager
def serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Serve]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("VOLTORCH_")}
    stderr = open(tmp_path / "serve.stderr", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "voltorch_server.cli", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env={**base, **(env or {})},
        cwd=tmp_path,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    try:
        while True:
            try:
                line = lines.get(timeout=30)
            except queue.Empty:
                pytest.fail("voltorch serve printed no 'listening' line within 30 s")
            if line is None:
                pytest.fail(f"voltorch serve exited early: {(tmp_path / 'serve.stderr').read_text()}")
            match = LISTENING.search(line)
            if match:
                break
        yield Serve(proc, lines, f"{match.group(1)}:{match.group(2)}", line, tmp_path / "serve.stderr")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        stderr.close()


def _stop(s: Serve) -> int:
    s.proc.send_signal(signal.SIGTERM)
    try:
        return s.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        s.proc.kill()
        printed = []
        while not s.lines.empty():
            printed.append(s.lines.get_nowait())
        pytest.fail(
            f"no exit 15 s after SIGTERM; stdout after the banner: {printed}; "
            f"stderr: {s.stderr.read_text()[-2000:]}"
        )


def test_serve_answers_the_sdk_health_reflection_and_stops_on_sigterm(tmp_path: Path) -> None:
    db = tmp_path / "data" / "state.db"
    with serve(tmp_path, "--db", str(db)) as s:
        assert str(db) in s.banner
        with voltorch.Client(s.target, timeout=10) as client:
            client.state.set("cli.key", {"answer": 42})
            assert client.state.get("cli.key").value == {"answer": 42}
        with grpc.insecure_channel(s.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for service in ("", "voltorch.v1.StateService"):
                reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING, service
            services = ProtoReflectionDescriptorDatabase(channel).get_services()
            assert "voltorch.v1.StateService" in services
            assert "grpc.health.v1.Health" in services
            nope = channel.unary_unary("/voltorch.v1.StateService/Nope")
            with pytest.raises(grpc.RpcError) as info:
                nope(b"", timeout=10)
            assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
        # An open watch is ended by the shutdown with a status naming where to resume.
        with voltorch.Client(s.target, timeout=10) as client:
            watch = client.state.watch("cli.key", start_revision=1, resume=False)
            assert next(watch).kv.value == {"answer": 42}
            ended: queue.Queue = queue.Queue()

            def drain() -> None:
                try:
                    for _ in watch:
                        pass
                    ended.put(None)
                except voltorch.VoltorchError as exc:
                    ended.put(exc)

            threading.Thread(target=drain, daemon=True).start()
            assert _stop(s) == 0
            err = ended.get(timeout=10)
        assert isinstance(err, voltorch.UnavailableError), err
        assert err.metadata["start_revision"] == "2"
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT value, version FROM kv WHERE key = 'cli.key'").fetchone()
    assert row == ('{"answer":42}', 1)


def test_serve_takes_the_database_from_voltorch_db(tmp_path: Path) -> None:
    db = tmp_path / "from-env.db"
    with serve(tmp_path, env={"VOLTORCH_DB": str(db)}) as s:
        assert str(db) in s.banner
        with voltorch.Client(s.target, timeout=10) as client:
            client.state.set("env.key", "yes")
        assert _stop(s) == 0
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT value FROM kv WHERE key = 'env.key'").fetchone() == ('"yes"',)
    assert not (tmp_path / "voltorch.db").exists()  # the default path was not used


def test_serve_ui_port_prints_the_console_url_and_serves_it(tmp_path: Path) -> None:
    import json
    import urllib.request

    with serve(tmp_path, "--db", str(tmp_path / "ui.db"), "--ui-port", "-1") as s:
        line = s.lines.get(timeout=30)  # bounded: printed right after the banner
        match = re.search(r"voltorch console on (http://\S+)", line or "")
        assert match, line
        url = match.group(1)
        with urllib.request.urlopen(url, timeout=10) as r:
            assert b"voltorch console" in r.read()
        with urllib.request.urlopen(url + "api/health", timeout=10) as r:
            assert json.loads(r.read())["status"] == "HEALTHY"
        assert _stop(s) == 0
