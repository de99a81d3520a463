"""`voltorch serve` as a real process: it listens, answers stock gRPC tools, and stops cleanly."""

from __future__ import annotations

import queue
import re
import sqlite3
import threading
from pathlib import Path

import grpc
import pytest
import voltorch
from cli_process import serve, stop
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
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
            assert stop(s) == 0
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
        assert stop(s) == 0
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
        assert stop(s) == 0
