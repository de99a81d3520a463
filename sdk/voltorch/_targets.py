"""Reaching a cluster: several server addresses as one grpc channel, and the service config that spreads
calls over them and retries the idempotent ones when a replica goes away.

grpc's C core resolves `ipv4:a:p,b:p` and `ipv6:[a]:p,[b]:p` into a fixed list of addresses (one family
per list); a single name goes to its DNS resolver, which returns every address the name has. Either way
the `round_robin` policy keeps a connection to each address and sends each call to the next ready one,
so a dead replica is skipped as soon as its connection drops. Host names in a list are resolved once,
here, when the client is made (a DNS name that should follow changes is better given alone).
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Sequence

# Unary calls safe to send again after UNAVAILABLE: reads, and writes the API makes idempotent (by a
# request id the SDK always sends, or by their nature). A server stream is retried only until its first
# message (grpc's rule); afterwards the SDK's iterators resume it from their last position.
IDEMPOTENT: dict[str, tuple[str, ...]] = {
    "voltorch.v1.StateService": (
        "GetKey", "ListKeys", "GetHistory", "ListSnapshots", "Watch",
    ),
    "voltorch.v1.EventService": ("ListEvents", "GetCorrelation", "Subscribe"),
    "voltorch.v1.CoordinationService": (
        "GetAgent", "ListAgents", "GetCoordination", "ListCoordinations", "RequestCoordination",
    ),
    "voltorch.v1.WorkflowService": (
        "GetTemplate", "ListTemplates", "GetExecution", "ListExecutions", "GetSchedule", "ListSchedules",
        "StartExecution", "ExecuteCompleteWorkflow", "SignalExecution", "TriggerSchedule",
        "WatchExecution", "RunExecution",
    ),
    "voltorch.v1.OrchestratorService": (
        "GetHealth", "ListComponents", "GetMetrics", "ListErrors", "GetTrace",
    ),
}  # fmt: skip

CHANNEL_OPTIONS: list[tuple[str, object]] = [
    # This client's own connections: grpc otherwise shares them between channels of one process, so a new
    # client to a server that just restarted would inherit an older client's wait before reconnecting.
    ("grpc.use_local_subchannel_pool", 1),
    # A replica (or a server) that comes back is reconnected within seconds, not grpc's default two minutes.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 5000),
]

RETRY_POLICY = {
    "maxAttempts": 5,  # grpc's upper limit: the first attempt and four retries
    "initialBackoff": "0.1s",
    "maxBackoff": "1s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}


def service_config() -> str:
    """The `grpc.service_config` channel option: round_robin over every address, retries as above."""
    names = [{"service": s, "method": m} for s, methods in IDEMPOTENT.items() for m in methods]
    return json.dumps(
        {
            "loadBalancingConfig": [{"round_robin": {}}],
            "methodConfig": [{"name": names, "retryPolicy": RETRY_POLICY}],
        }
    )


def split(target: str | Sequence[str]) -> list[str]:
    """The addresses of a target: a list, or a string of comma-separated host:port (VOLTORCH_TARGET)."""
    items = target.split(",") if isinstance(target, str) else list(target)
    out = [t.strip() for t in items if t.strip()]
    if not out:
        raise ValueError("no server address given")
    return out


def channel_target(addresses: Sequence[str]) -> tuple[str, str | None]:
    """The grpc target for `addresses` and the authority to present (None: grpc's own). One address is
    given to grpc as it is; several become an `ipv4:`/`ipv6:` list (host names resolved now)."""
    if len(addresses) == 1:
        return addresses[0], None
    v4: list[str] = []
    v6: list[str] = []
    authority = None
    for address in addresses:
        host, port = _host_port(address)
        try:
            literal = ipaddress.ip_address(host)
            found: list[tuple[int, str]] = [(literal.version, str(literal))]
        except ValueError:
            authority = authority or address
            found = _resolve(host, port, address)
        for version, ip in found:
            (v4 if version == 4 else v6).append(f"{ip}:{port}" if version == 4 else f"[{ip}]:{port}")
    if v4 and v6:
        raise ValueError(
            f"the addresses {', '.join(addresses)} mix IPv4 and IPv6: grpc takes one family per list"
        )
    scheme, found_all = ("ipv4", v4) if v4 else ("ipv6", v6)
    return f"{scheme}:{','.join(dict.fromkeys(found_all))}", authority


def _host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"server address {address!r} is not host:port")
    return host.strip("[]"), int(port)


def _resolve(host: str, port: int, address: str) -> list[tuple[int, str]]:
    """The IPv4 addresses of a host name, else its IPv6 ones."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ValueError(f"server address {address!r}: cannot resolve {host!r} ({exc.strerror})") from None
    v4 = [(4, str(info[4][0])) for info in infos if info[0] == socket.AF_INET]
    v6 = [(6, str(info[4][0])) for info in infos if info[0] == socket.AF_INET6]
    return v4 or v6
