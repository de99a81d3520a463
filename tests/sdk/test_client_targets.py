"""Client targets for a cluster (issue 12, item 4): a list (or a comma-separated string, as VOLTORCH_TARGET
and --target take it) becomes one round-robin channel over every address; bad lists are refused clearly."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import polling
import pytest
import voltorch
from cli_process import cli
from voltorch._targets import IDEMPOTENT, channel_target, service_config, split
from voltorch_server.app import VoltorchServer
from voltorch_server.config import Config


def test_a_list_of_addresses_becomes_one_grpc_address_list() -> None:
    assert split("127.0.0.1:1, 127.0.0.2:2,") == ["127.0.0.1:1", "127.0.0.2:2"]
    assert channel_target(["127.0.0.1:1", "127.0.0.2:2"]) == ("ipv4:127.0.0.1:1,127.0.0.2:2", None)
    assert channel_target(["[::1]:1", "[::1]:2"]) == ("ipv6:[::1]:1,[::1]:2", None)
    # Host names are resolved now; the first one is the authority the channel presents.
    target, authority = channel_target(["localhost:1", "127.0.0.1:2"])
    assert target.startswith("ipv4:") and target.endswith(",127.0.0.1:2") and authority == "localhost:1"
    # One address (a DNS name may have several) is grpc's to resolve.
    assert channel_target(["h1.example:50051"]) == ("h1.example:50051", None)


@pytest.mark.parametrize(
    ("addresses", "message"),
    [
        (["127.0.0.1:1", "[::1]:2"], "mix IPv4 and IPv6"),
        (["127.0.0.1:1", "127.0.0.2"], "'127.0.0.2' is not host:port"),
    ],
)
def test_a_bad_list_is_refused_naming_the_address(addresses: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        voltorch.Client(addresses)


def test_an_empty_target_is_refused() -> None:
    with pytest.raises(ValueError, match="no server address"):
        split(" , ")


def test_the_service_config_retries_only_idempotent_calls_on_unavailable() -> None:
    config = json.loads(service_config())
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    [method] = config["methodConfig"]
    assert method["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    retried = {(n["service"], n["method"]) for n in method["name"]}
    assert ("voltorch.v1.StateService", "GetKey") in retried
    assert ("voltorch.v1.WorkflowService", "StartExecution") in retried  # the SDK always sends a request id
    for not_idempotent in ("SetKey", "DeleteKey", "Transaction"):
        assert ("voltorch.v1.StateService", not_idempotent) not in retried
    assert ("voltorch.v1.EventService", "Publish") not in retried
    assert sum(len(m) for m in IDEMPOTENT.values()) == len(retried)


@pytest.fixture
def two_servers(tmp_path: Path) -> Iterator[list[VoltorchServer]]:
    servers = [
        VoltorchServer(
            Config(host="127.0.0.1", port=0, db=str(tmp_path / f"{name}.db"), replica_id=name)
        ).start()
        for name in ("a", "b")
    ]
    yield servers
    for s in servers:
        s.stop(grace=1.0)


def _answering(c: voltorch.Client) -> set[str]:
    """The replicas that answer c's calls, once both have (bounded)."""
    seen: set[str] = set()
    return polling.until(lambda: seen.add(c.health().replica_id) or (seen if len(seen) == 2 else None))


def test_calls_go_round_robin_over_the_listed_servers(two_servers, monkeypatch) -> None:
    targets = [s.target for s in two_servers]
    with voltorch.Client(targets, timeout=10) as c:
        assert c.targets == targets and c.target == ",".join(targets)
        assert _answering(c) == {"a", "b"}
    monkeypatch.setenv("VOLTORCH_TARGET", ",".join(targets))  # the CLI's and the SDK's variable
    with voltorch.Client(timeout=10) as c:
        assert c.targets == targets
        assert _answering(c) == {"a", "b"}
    out = cli("cluster", "-o", "json", "--target", ",".join(targets))
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)) == 1  # two separate SQLite servers: each its own one member
