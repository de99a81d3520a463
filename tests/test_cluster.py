"""A client of a whole cluster (issue 12, items 1 and 4): three real `voltorch serve` processes on one
PostgreSQL; GetHealth lists the three members; a client given every replica keeps working when one is
SIGKILLed (reads and idempotent writes succeed, a subscription resumes with nothing missed and nothing
twice, a remote worker reconnects to another replica under its identity); `voltorch cluster` shows the
killed replica dead once its heartbeat is older than the member timeout."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import polling
import psycopg
import pytest
import replicas
import voltorch
from cli_process import cli

pytestmark = pytest.mark.timeout(180)
MEMBER_TIMEOUT = "2"  # seconds: the killed replica is declared dead quickly


def _subscribers(direct: list[voltorch.Client]) -> list[int]:
    """Open subscriptions on each replica (each holds its own, e.g. the workflow engine's, too)."""
    return [int(c.health(refresh=True).component("events").details["subscribers"]) for c in direct]


def _replica_serving_subscribers(direct: list[voltorch.Client], before: list[int]) -> list[int]:
    """[the index of the one replica with a subscription more than `before`] ([] while none or several)."""
    busy = [i for i, (n, was) in enumerate(zip(_subscribers(direct), before, strict=True)) if n > was]
    return busy if len(busy) == 1 else []


def test_a_client_of_every_replica_keeps_working_when_one_is_killed(pg_dsn: str, tmp_path: Path) -> None:
    settings = {"VOLTORCH_MEMBER_TIMEOUT": MEMBER_TIMEOUT}
    with replicas.replicas(pg_dsn, tmp_path, 3, settings) as reps:
        direct = [voltorch.Client(r.target, timeout=10) for r in reps]
        cluster = voltorch.Client([r.target for r in reps], timeout=10)
        assert cluster.targets == [r.target for r in reps]

        members = cluster.health().members
        assert sorted((m.id, m.address, m.alive) for m in members) == [
            (f"replica-{i}", r.target, True) for i, r in enumerate(reps)
        ]

        # A subscription through the cluster client, on whichever replica the channel picked.
        before = _subscribers(direct)
        sub = cluster.events.subscribe("test.*", from_sequence=1)
        got: list[int] = []
        first = threading.Event()

        def consume() -> None:
            for e in sub:
                assert isinstance(e, voltorch.Event)
                got.append(e.sequence)
                first.set()

        consumer = threading.Thread(target=consume, daemon=True)
        consumer.start()
        published: list[int] = []
        for j in range(40):
            published.append(direct[0].events.publish("test.tick", {"j": j}).sequence)
        assert first.wait(30)
        [victim] = polling.until(lambda: _replica_serving_subscribers(direct, before))
        publisher_at = next(i for i in range(3) if i != victim)
        cluster.state.set("config", {"replicas": 3})  # before the kill (SetKey is not retried)

        reps[victim].kill()  # the subscriber's replica dies mid-stream
        for j in range(40, 100):
            published.append(direct[publisher_at].events.publish("test.tick", {"j": j}).sequence)

        # Reads and idempotent writes through the cluster client succeed (retried on a live replica).
        for i in range(12):
            assert cluster.state.get("config").value == {"replicas": 3}
            assert cluster.health().status
            started = cluster.workflows.execute_complete(f"requirement {i}", request_id=f"req-{i}")
            assert started.execution.id
        polling.until(lambda: len(got) >= len(published), timeout=60)
        assert got == published  # every event once, in order, across the failover
        sub.close()
        consumer.join(10)

        # Every survivor, and `voltorch cluster`, sees the killed replica dead after the timeout.
        def dead_in_cli() -> list | None:
            out = cli("cluster", "-o", "json", "--target", ",".join(r.target for r in reps))
            assert out.returncode == 0, out.stderr
            listed = json.loads(out.stdout)
            state = {m["id"]: m["alive"] for m in listed}
            return listed if state.get(f"replica-{victim}") is False else None

        listed = polling.until(dead_in_cli, timeout=30)
        assert sorted((m["id"], m["alive"]) for m in listed) == sorted(
            (f"replica-{i}", i != victim) for i in range(3)
        )
        for i, c in enumerate(direct):
            if i != victim:
                assert {m.id: m.alive for m in c.health().members}[f"replica-{victim}"] is False
        for c in [cluster, *direct]:
            c.close()


def test_a_remote_worker_reconnects_to_another_replica_under_its_identity(
    pg_dsn: str, tmp_path: Path
) -> None:
    with replicas.replicas(pg_dsn, tmp_path, 3) as reps:
        direct = [voltorch.Client(r.target, timeout=10) for r in reps]
        cluster = voltorch.Client(",".join(r.target for r in reps), timeout=10)
        worker = voltorch.Worker(cluster, "summarizer-1", ["summarize"], lambda task: {"ok": True})
        worker.max_backoff = 0.5
        worker.start()

        def connected_at(exclude: int | None = None) -> int | None:
            """The replica holding the worker's session (every replica sees the worker connected)."""
            with psycopg.connect(pg_dsn, autocommit=True) as conn:
                row = conn.execute("SELECT session_replica FROM agents WHERE id = 'summarizer-1'").fetchone()
            i = int(row[0].removeprefix("replica-")) if row and row[0] else None
            return None if i is None or i == exclude else i + 1  # truthy for polling.until

        first = polling.until(connected_at) - 1
        session = polling.until(lambda: worker.session_id)
        reps[first].kill()
        second = polling.until(lambda: connected_at(exclude=first), timeout=60) - 1
        assert second != first
        agent = direct[second].coordination.get_agent("summarizer-1")
        assert list(agent.capabilities) == ["summarize"]
        others = [c for i, c in enumerate(direct) if i not in (first, second)]
        assert polling.until(lambda: all(_seen_connected(c, "summarizer-1") for c in others))
        assert worker.agent_id == "summarizer-1"
        assert polling.until(lambda: worker.session_id != session)  # a new session, the same agent
        worker.stop()
        for c in [cluster, *direct]:
            c.close()


def _seen_connected(client: voltorch.Client, agent_id: str) -> bool:
    return client.coordination.get_agent(agent_id).status != "offline"
