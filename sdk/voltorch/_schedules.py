"""client.schedules: start a workflow template on a cron expression or at an interval — create, get, list,
delete, trigger, pause and unpause. Each tick starts exactly one execution (request id
"schedule/<id>/<tick time>")."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from voltorch.v1 import workflows_pb2, workflows_pb2_grpc

from ._rpc import call, new_request_id, pages
from ._workflows import StartResult
from .wire import (
    CATCHUP_POLICIES,
    OVERLAP_POLICIES,
    Seconds,
    execution_from_pb,
    from_duration,
    from_struct,
    to_datetime,
    to_duration,
    to_struct,
    to_timestamp,
)


@dataclass(frozen=True)
class Schedule:
    id: str
    template_name: str
    template_version: int
    parameters: dict[str, Any]
    cron: str
    interval: float | None  # seconds
    time_zone: str
    overlap: str  # skip | buffer_one | allow
    catchup: str  # skip | latest | all
    paused: bool
    description: str
    start_time: datetime | None
    next_tick_time: datetime | None
    last_tick_time: datetime | None
    last_execution_id: str
    create_time: datetime | None
    ticks_started: int
    ticks_skipped: int


def _schedule(pb: workflows_pb2.Schedule) -> Schedule:
    def when(name: str) -> datetime | None:
        return to_datetime(getattr(pb, name), pb.HasField(name))

    return Schedule(
        id=pb.id,
        template_name=pb.template_name,
        template_version=pb.template_version,
        parameters=from_struct(pb.parameters),
        cron=pb.cron,
        interval=from_duration(pb.interval) if pb.HasField("interval") else None,
        time_zone=pb.time_zone,
        overlap=OVERLAP_POLICIES.names.get(pb.overlap, "skip"),
        catchup=CATCHUP_POLICIES.names.get(pb.catchup, "latest"),
        paused=pb.paused,
        description=pb.description,
        start_time=when("start_time"),
        next_tick_time=when("next_tick_time"),
        last_tick_time=when("last_tick_time"),
        last_execution_id=pb.last_execution_id,
        create_time=when("create_time"),
        ticks_started=pb.ticks_started,
        ticks_skipped=pb.ticks_skipped,
    )


def _enum(table: Any, name: str, what: str) -> Any:  # the enum number (a ValueType for the stubs)
    if name not in table.numbers:
        raise ValueError(f"unknown {what} {name!r}; one of {', '.join(table.numbers)}")
    return table.numbers[name]


class SchedulesClient:
    def __init__(self, stub: workflows_pb2_grpc.WorkflowServiceStub, timeout: float | None):
        self.stub = stub
        self.timeout = timeout

    def create(
        self,
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
        """Start `template_name` at every tick of `cron` (in `time_zone`) or every `interval`."""
        pb = workflows_pb2.Schedule(
            id=schedule_id,
            template_name=template_name,
            template_version=version,
            parameters=to_struct(parameters),
            cron=cron,
            interval=to_duration(interval),
            time_zone=time_zone,
            overlap=_enum(OVERLAP_POLICIES, overlap, "overlap policy"),
            catchup=_enum(CATCHUP_POLICIES, catchup, "catch-up policy"),
            paused=paused,
            description=description,
            start_time=to_timestamp(start_time),
        )
        resp = call(
            self.stub.CreateSchedule, workflows_pb2.CreateScheduleRequest(schedule=pb), timeout=self.timeout
        )
        return _schedule(resp.schedule)

    def get(self, schedule_id: str) -> Schedule:
        req = workflows_pb2.GetScheduleRequest(schedule_id=schedule_id)
        return _schedule(call(self.stub.GetSchedule, req, timeout=self.timeout).schedule)

    def list(self, *, page_size: int = 0) -> Iterator[Schedule]:
        def fetch(token: str) -> tuple[list[Schedule], str]:
            req = workflows_pb2.ListSchedulesRequest(page_size=page_size, page_token=token)
            resp = call(self.stub.ListSchedules, req, timeout=self.timeout)
            return [_schedule(s) for s in resp.schedules], resp.next_page_token

        return pages(fetch)

    def delete(self, schedule_id: str) -> None:
        call(
            self.stub.DeleteSchedule,
            workflows_pb2.DeleteScheduleRequest(schedule_id=schedule_id),
            timeout=self.timeout,
        )

    def trigger(self, schedule_id: str, *, request_id: str = "") -> StartResult:
        """Start one execution now, outside the ticks."""
        req = workflows_pb2.TriggerScheduleRequest(
            schedule_id=schedule_id, request_id=new_request_id(request_id)
        )
        resp = call(self.stub.TriggerSchedule, req, timeout=self.timeout)
        return StartResult(execution_from_pb(resp.execution), resp.existing)

    def pause(self, schedule_id: str) -> Schedule:
        req = workflows_pb2.PauseScheduleRequest(schedule_id=schedule_id)
        return _schedule(call(self.stub.PauseSchedule, req, timeout=self.timeout).schedule)

    def unpause(self, schedule_id: str) -> Schedule:
        """Ticks missed while paused are not started; the next tick is computed from now."""
        req = workflows_pb2.UnpauseScheduleRequest(schedule_id=schedule_id)
        return _schedule(call(self.stub.UnpauseSchedule, req, timeout=self.timeout).schedule)
