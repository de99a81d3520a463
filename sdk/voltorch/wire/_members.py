"""Cluster members: GetHealthResponse.members <-> Member."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from voltorch.v1 import orchestrator_pb2 as pb

from ._values import to_datetime, to_timestamp


@dataclass(frozen=True)
class Member:
    """A replica of the cluster (with SQLite, the one server)."""

    id: str
    address: str  # host:port
    version: str
    start_time: datetime | None
    last_heartbeat: datetime | None
    alive: bool  # its last heartbeat is at most the server's member_timeout old
    running_executions: int  # at its last heartbeat
    connected_workers: int  # at its last heartbeat
    local: bool  # the replica that answered


def member_pb(m: Member) -> pb.Member:
    return pb.Member(
        id=m.id,
        address=m.address,
        version=m.version,
        start_time=to_timestamp(m.start_time),
        last_heartbeat=to_timestamp(m.last_heartbeat),
        alive=m.alive,
        running_executions=m.running_executions,
        connected_workers=m.connected_workers,
        local=m.local,
    )


def member_from_pb(m: pb.Member) -> Member:
    return Member(
        id=m.id,
        address=m.address,
        version=m.version,
        start_time=to_datetime(m.start_time, m.HasField("start_time")),
        last_heartbeat=to_datetime(m.last_heartbeat, m.HasField("last_heartbeat")),
        alive=m.alive,
        running_executions=m.running_executions,
        connected_workers=m.connected_workers,
        local=m.local,
    )
