"""Schedules on the wire: Schedule, both directions.

The SDK reads answers into Schedule and writes a CreateSchedule request from Schedule.new; the server
writes its own schedules with the same schedule_pb, as they are (ScheduleLike: times as datetimes or
epoch seconds, to the nanosecond) and reads a request with schedule_from_pb(request=True). The two
fields the server names differently, its next and last tick, are given to schedule_pb apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from ..v1 import workflows_pb2
from ._conditions import enum_name, seconds_from_pb
from ._enums import CATCHUP_POLICIES, OVERLAP_POLICIES, EnumTable
from ._executions import Time
from ._templates import Seconds
from ._values import from_struct, to_datetime, to_duration, to_struct, to_timestamp


@dataclass(frozen=True)
class Schedule:
    id: str
    template_name: str
    template_version: int  # 0 = the latest at each tick
    parameters: dict[str, Any]
    cron: str
    interval: float | None  # seconds
    time_zone: str
    overlap: str  # skip | buffer_one | allow
    catchup: str  # skip | latest | all
    paused: bool
    description: str
    start_time: datetime | None
    # Output only (kept by the server):
    next_tick_time: datetime | None = None
    last_tick_time: datetime | None = None
    last_execution_id: str = ""
    create_time: datetime | None = None
    ticks_started: int = 0
    ticks_skipped: int = 0

    @classmethod
    def new(
        cls,
        template_name: str,
        parameters: dict[str, Any] | None = None,
        *,
        cron: str = "",
        interval: Seconds | None = None,
        time_zone: str = "",
        overlap: str = "skip",
        catchup: str = "latest",
        paused: bool = False,
        start_time: datetime | float | None = None,
        schedule_id: str = "",
        version: int = 0,
        description: str = "",
    ) -> Schedule:
        """A schedule to create (no output field set); an unknown policy name is a ValueError. A start
        time given in epoch seconds is kept to the microsecond, as a datetime."""
        _known(OVERLAP_POLICIES, overlap, "overlap policy")
        _known(CATCHUP_POLICIES, catchup, "catch-up policy")
        return cls(
            id=schedule_id,
            template_name=template_name,
            template_version=version,
            parameters=dict(parameters or {}),
            cron=cron,
            interval=interval.total_seconds() if isinstance(interval, timedelta) else interval,
            time_zone=time_zone,
            overlap=overlap,
            catchup=catchup,
            paused=paused,
            description=description,
            start_time=datetime.fromtimestamp(start_time, UTC)
            if isinstance(start_time, int | float)
            else start_time,
        )


def _known(table: EnumTable[Any], name: str, what: str) -> None:
    if name not in table.numbers:
        raise ValueError(f"unknown {what} {name!r}; one of {', '.join(table.numbers)}")


class ScheduleLike(Protocol):
    """What schedule_pb reads (the SDK's Schedule, or the server's)."""

    @property
    def id(self) -> str: ...
    @property
    def template_name(self) -> str: ...
    @property
    def template_version(self) -> int: ...
    @property
    def parameters(self) -> dict[str, Any]: ...
    @property
    def cron(self) -> str: ...
    @property
    def interval(self) -> float | None: ...
    @property
    def time_zone(self) -> str: ...
    @property
    def overlap(self) -> str: ...
    @property
    def catchup(self) -> str: ...
    @property
    def paused(self) -> bool: ...
    @property
    def description(self) -> str: ...
    @property
    def start_time(self) -> Time: ...
    @property
    def last_execution_id(self) -> str: ...
    @property
    def create_time(self) -> Time: ...
    @property
    def ticks_started(self) -> int: ...
    @property
    def ticks_skipped(self) -> int: ...


def schedule_pb(s: ScheduleLike, *, next_tick_time: Time, last_tick_time: Time) -> workflows_pb2.Schedule:
    """`next_tick_time`, `last_tick_time`: the SDK's s.next_tick_time and s.last_tick_time, the server's
    s.next_tick and s.last_tick. `parameters` is always written (an empty Struct when there are none)."""
    return workflows_pb2.Schedule(
        id=s.id,
        template_name=s.template_name,
        template_version=s.template_version,
        parameters=to_struct(s.parameters),
        cron=s.cron,
        interval=to_duration(s.interval),
        time_zone=s.time_zone,
        overlap=OVERLAP_POLICIES.numbers[s.overlap],
        catchup=CATCHUP_POLICIES.numbers[s.catchup],
        paused=s.paused,
        description=s.description,
        next_tick_time=to_timestamp(next_tick_time),
        last_tick_time=to_timestamp(last_tick_time),
        last_execution_id=s.last_execution_id,
        create_time=to_timestamp(s.create_time),
        ticks_started=s.ticks_started,
        ticks_skipped=s.ticks_skipped,
        start_time=to_timestamp(s.start_time),
    )


def schedule_from_pb(
    m: workflows_pb2.Schedule, field: str = "schedule", *, request: bool = False
) -> Schedule:
    """Read as a request: an unknown policy or a negative interval is a WireError naming the field, and a
    zero interval counts as unset."""
    return Schedule(
        id=m.id,
        template_name=m.template_name,
        template_version=m.template_version,
        parameters=from_struct(m.parameters),
        cron=m.cron,
        interval=seconds_from_pb(m, "interval", f"{field}.interval", request=request),
        time_zone=m.time_zone,
        overlap=enum_name(
            OVERLAP_POLICIES.names, m.overlap, f"{field}.overlap", unspecified="skip", request=request
        ),
        catchup=enum_name(
            CATCHUP_POLICIES.names, m.catchup, f"{field}.catchup", unspecified="latest", request=request
        ),
        paused=m.paused,
        description=m.description,
        start_time=to_datetime(m.start_time, m.HasField("start_time")),
        next_tick_time=to_datetime(m.next_tick_time, m.HasField("next_tick_time")),
        last_tick_time=to_datetime(m.last_tick_time, m.HasField("last_tick_time")),
        last_execution_id=m.last_execution_id,
        create_time=to_datetime(m.create_time, m.HasField("create_time")),
        ticks_started=m.ticks_started,
        ticks_skipped=m.ticks_skipped,
    )
