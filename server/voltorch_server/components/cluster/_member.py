"""A member of the cluster: its row as stored, and as GetHealth shows it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MemberRow:
    """One replica's heartbeat row (what it wrote last)."""

    id: str
    address: str
    version: str
    start_time: float
    heartbeat_time: float
    running_executions: int
    connected_workers: int


@dataclass(frozen=True)
class Member:
    id: str
    address: str  # where clients reach it (host:port)
    version: str
    start_time: float
    last_heartbeat: float
    alive: bool  # its last heartbeat is at most `member_timeout` old
    running_executions: int  # as it reported in its last heartbeat
    connected_workers: int
    local: bool  # the replica that answered
