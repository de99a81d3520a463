"""client.schedules: start a workflow template on a cron expression or at an interval — create, get, list,
delete, trigger, pause and unpause. Each tick starts exactly one execution (request id
"schedule/<id>/<tick time>")."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from voltorch.v1 import workflows_pb2, workflows_pb2_grpc

from ._rpc import call, new_request_id, pages
from ._workflows import StartResult
from .wire import Schedule, Seconds, execution_from_pb, schedule_from_pb, schedule_pb


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
        new = Schedule.new(
            template_name,
            parameters,
            cron=cron,
            interval=interval,
            time_zone=time_zone,
            overlap=overlap,
            catchup=catchup,
            paused=paused,
            start_time=start_time,
            schedule_id=schedule_id,
            version=version,
            description=description,
        )
        pb = schedule_pb(new, next_tick_time=None, last_tick_time=None)
        resp = call(
            self.stub.CreateSchedule, workflows_pb2.CreateScheduleRequest(schedule=pb), timeout=self.timeout
        )
        return schedule_from_pb(resp.schedule)

    def get(self, schedule_id: str) -> Schedule:
        req = workflows_pb2.GetScheduleRequest(schedule_id=schedule_id)
        return schedule_from_pb(call(self.stub.GetSchedule, req, timeout=self.timeout).schedule)

    def list(self, *, page_size: int = 0) -> Iterator[Schedule]:
        def fetch(token: str) -> tuple[list[Schedule], str]:
            req = workflows_pb2.ListSchedulesRequest(page_size=page_size, page_token=token)
            resp = call(self.stub.ListSchedules, req, timeout=self.timeout)
            return [schedule_from_pb(s) for s in resp.schedules], resp.next_page_token

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
        return schedule_from_pb(call(self.stub.PauseSchedule, req, timeout=self.timeout).schedule)

    def unpause(self, schedule_id: str) -> Schedule:
        """Ticks missed while paused are not started; the next tick is computed from now."""
        req = workflows_pb2.UnpauseScheduleRequest(schedule_id=schedule_id)
        return schedule_from_pb(call(self.stub.UnpauseSchedule, req, timeout=self.timeout).schedule)
