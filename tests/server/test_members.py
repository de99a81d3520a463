"""Cluster members (issue 12, item 1): each replica's heartbeat row, liveness by one rule for every reader,
pruning by one replica, GetHealth and `voltorch cluster`. On both backends (SQLite: the one server)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import voltorch
from cli_process import cli
from fake_clock import FakeClock
from voltorch_server.app import VoltorchServer
from voltorch_server.components.cluster import Cluster
from voltorch_server.config import Config
from voltorch_server.storage.stores import SqlMembers

BOTH_BACKENDS = True


def _cluster(db, clock: FakeClock, replica_id: str, load=(0, 0)) -> Cluster:
    c = Cluster(
        SqlMembers(db), replica_id=replica_id, timeout=10.0, retention=60.0, load=lambda: load, clock=clock
    )
    c.address = f"{replica_id}.example:50051"
    return c


def test_a_member_is_alive_until_its_heartbeat_is_older_than_the_timeout_for_every_reader(db) -> None:
    clock = FakeClock()
    a, b = _cluster(db, clock, "a", load=(3, 2)), _cluster(db, clock, "b")
    assert a.beat() and b.beat()
    seen = {m.id: m for m in b.members()}
    assert set(seen) == {"a", "b"}
    assert seen["a"].alive and seen["a"].address == "a.example:50051" and not seen["a"].local
    assert (seen["a"].running_executions, seen["a"].connected_workers) == (3, 2)
    assert seen["b"].local
    clock.now += 6.0
    assert b.beat()  # b keeps beating, a has stopped
    clock.now += 4.0  # a's heartbeat is now exactly the timeout old: still alive
    assert all(m.alive for m in a.members())
    clock.now += 0.5
    for reader in (a, b):  # the same verdict whoever reads
        assert {m.id: m.alive for m in reader.members()} == {"a": False, "b": True}
    assert a.beat()  # a beats again: alive again
    assert all(m.alive for m in b.members())


def test_dead_members_are_pruned_after_the_retention_by_one_replica(db, backend: str) -> None:
    clock = FakeClock()
    a, b, dead = _cluster(db, clock, "a"), _cluster(db, clock, "b"), _cluster(db, clock, "dead")
    try:
        assert dead.beat() and a.beat() and b.beat()
        clock.now += 10.0 + 59.0
        assert a.beat() and b.beat()
        assert a.prune() == [] and b.prune() == []  # dead, but within the retention: still listed
        assert {m.id: m.alive for m in a.members()}["dead"] is False
        clock.now += 2.0
        assert a.beat() and b.beat()
        pruned = [a.prune(), b.prune()]
        if backend == "postgres":  # the prune lease: the first to ask holds it, the other does nothing
            assert pruned == [["dead"], []]
        else:
            assert pruned[0] == ["dead"]
        assert [m.id for m in b.members()] == ["a", "b"]
    finally:
        for c in (a, b, dead):
            c.stop()


def test_get_health_lists_this_server_as_an_alive_member(config: Config) -> None:
    with (
        VoltorchServer(replace(config, replica_id="replica-one")) as server,
        voltorch.Client(server.target, timeout=10) as client,
    ):
        h = client.health()
        assert h.replica_id == "replica-one"
        [m] = h.members
        assert (m.id, m.address, m.version, m.alive, m.local) == (
            "replica-one",
            server.target,
            voltorch.__version__,
            True,
            True,
        )
        assert m.start_time is not None and m.last_heartbeat is not None
        assert m.last_heartbeat >= m.start_time
        assert client.health(refresh=True).component("cluster").status == "HEALTHY"
        listed = json.loads(_ok(cli("cluster", "-o", "json", "--target", server.target)))
        assert [(x["id"], x["alive"], x["local"]) for x in listed] == [("replica-one", True, True)]
        table = _ok(cli("cluster", "-o", "table", "--target", server.target))
        assert "replica-one *" in table and "alive" in table
    # A clean shutdown leaves the list.
    with (
        VoltorchServer(replace(config, replica_id="replica-two")) as server,
        voltorch.Client(server.target, timeout=10) as client,
    ):
        assert [m.id for m in client.health().members] == ["replica-two"]


def test_a_generated_replica_id_is_new_at_each_start(config: Config) -> None:
    ids = []
    for _ in range(2):
        with VoltorchServer(config) as server, voltorch.Client(server.target, timeout=10) as client:
            ids.append(client.health().replica_id)
    assert ids[0] and ids[1] and ids[0] != ids[1]


def test_a_member_timeout_that_is_not_positive_is_refused() -> None:
    with pytest.raises(ValueError, match="member_timeout"):
        Config().with_overrides(member_timeout="0")


@pytest.mark.parametrize("bad", ["has space", "x" * 129, "tab\there", "é"])
def test_a_replica_id_that_cannot_name_a_member_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="replica_id"):
        Config().with_overrides(replica_id=bad)


def test_a_negative_member_retention_is_refused() -> None:
    with pytest.raises(ValueError, match="member_retention"):
        Config().with_overrides(member_retention="-1")
    assert Config().with_overrides(replica_id="host-1.a_b:2").replica_id == "host-1.a_b:2"


def _ok(result) -> str:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result.stdout
