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
from voltorch_server.app import VoltorchServer
from voltorch_server.config import Config


def test_a_list_of_addresses_becomes_one_grpc_address_list() -> None:
    def dialed(target) -> str:
        with voltorch.Client(target) as c:
            return c.grpc_target

    assert voltorch.Client("127.0.0.1:1, 127.0.0.2:2,").targets == ["127.0.0.1:1", "127.0.0.2:2"]
    assert dialed(["127.0.0.1:1", "127.0.0.2:2"]) == "ipv4:127.0.0.1:1,127.0.0.2:2"
    assert dialed("127.0.0.1:1,127.0.0.2:2") == "ipv4:127.0.0.1:1,127.0.0.2:2"
    assert dialed(["[::1]:1", "[::1]:2"]) == "ipv6:[::1]:1,[::1]:2"
    # Host names in a list are resolved now (localhost: without a network).
    target = dialed(["localhost:1", "127.0.0.1:2"])
    assert target.startswith("ipv4:") and target.endswith(",127.0.0.1:2")
    # One address (a DNS name may have several) is grpc's to resolve.
    assert dialed("h1.example:50051") == "h1.example:50051"


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (["127.0.0.1:1", "[::1]:2"], "mix IPv4 and IPv6"),
        (["127.0.0.1:1", "127.0.0.2"], "'127.0.0.2' is not host:port"),
        (" , ", "no server address"),
    ],
)
def test_a_bad_list_is_refused_naming_the_address(target, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        voltorch.Client(target)


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


def test_writes_the_channel_may_retry_always_carry_a_request_id(client: voltorch.Client) -> None:
    """A retried StartExecution (its replica died before answering) must not start a second execution."""
    started = client.workflows.execute_complete("write a haiku", skip_review=True)
    assert started.execution.request_id.startswith("sdk-")
    again = client.workflows.execute_complete(
        "write a haiku", skip_review=True, request_id=started.execution.request_id
    )
    assert again.existing and again.execution.id == started.execution.id
    coordination, existing = client.coordination.submit("summarise", required_capabilities=["analysis"])
    assert coordination.request_id.startswith("sdk-") and not existing
    mine = client.workflows.execute_complete("another", request_id="mine-1")
    assert mine.execution.request_id == "mine-1"  # the caller's own key is kept
