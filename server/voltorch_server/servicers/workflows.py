"""WorkflowService: proto <-> WorkflowEngine."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
from voltorch import wire
from voltorch.v1 import workflows_pb2, workflows_pb2_grpc

from ..auth import parse_tokens
from ..components.events import Event
from ..components.schedules import Schedule, Scheduler
from ..components.workflows import CompleteOptions, Execution, Signal, WorkflowEngine
from ..components.workflows.templates import Template
from ..errors import InvalidArgument
from ..priority import parse_priority
from ._auth import caller_role
from ._convert import struct_to_py, ts, ts_to_float, value_to_py
from ._streams import MAX_BATCH_ITEMS, Batching, batch_limit, pump
from ._wire import enum_name, reading, to_server, to_wire
from .events import event_pb

# -- proto <-> component: the mapping is voltorch.wire's ---------------------------------------------------


def template(pb: workflows_pb2.WorkflowTemplate, field: str = "template") -> Template:
    with reading():
        return to_server(wire.template_from_pb(pb, field, request=True))


def template_pb(t: Template) -> workflows_pb2.WorkflowTemplate:
    pb = wire.template_pb(to_wire(t))
    pb.builtin = t.builtin
    if t.create_time is not None:
        pb.create_time.CopyFrom(ts(t.create_time))
    return pb


def signal_pb(s: Signal) -> workflows_pb2.Signal:
    return wire.signal_pb(s, s.consumed_by)


def schedule_from_pb(pb: workflows_pb2.Schedule) -> Schedule:
    """A CreateSchedule request's schedule (output-only fields ignored)."""
    with reading():
        return to_server(wire.schedule_from_pb(pb, "schedule", request=True))


def schedule_pb(s: Schedule) -> workflows_pb2.Schedule:
    """voltorch.wire's mapping, given the server's schedule as it is and its ticks under the wire's names."""
    return wire.schedule_pb(s, next_tick_time=s.next_tick, last_tick_time=s.last_tick)


def execution_pb(e: Execution) -> workflows_pb2.Execution:
    """voltorch.wire's mapping, given the server's execution as it is (no copy on GetExecution's path)."""
    return wire.execution_pb(e)


def _options(pb: workflows_pb2.CompleteWorkflowOptions) -> CompleteOptions:
    with reading():
        return to_server(wire.complete_options_from_pb(pb, "options", request=True))


class WorkflowServicer(workflows_pb2_grpc.WorkflowServiceServicer):
    def __init__(self, engine: WorkflowEngine, schedules: Scheduler, tokens: dict[str, str] | None = None):
        self.engine = engine
        self.schedules = schedules
        self.tokens = tokens or {}

    def RegisterTemplate(
        self, request: workflows_pb2.RegisterTemplateRequest, context: grpc.ServicerContext
    ) -> workflows_pb2.RegisterTemplateResponse:
        if not request.HasField("template"):
            raise InvalidArgument("template", "a template is required")
        t = self.engine.register_template(template(request.template))
        return workflows_pb2.RegisterTemplateResponse(template=template_pb(t))

    def GetTemplate(
        self, request: workflows_pb2.GetTemplateRequest, context: grpc.ServicerContext
    ) -> workflows_pb2.GetTemplateResponse:
        return workflows_pb2.GetTemplateResponse(
            template=template_pb(self.engine.get_template(request.name, request.version))
        )

    def ListTemplates(
        self, request: workflows_pb2.ListTemplatesRequest, context: grpc.ServicerContext
    ) -> workflows_pb2.ListTemplatesResponse:
        items, token = self.engine.list_templates(
            request.category, request.all_versions, request.page_size, request.page_token
        )
        return workflows_pb2.ListTemplatesResponse(
            templates=[template_pb(t) for t in items], next_page_token=token
        )

    def StartExecution(
        self, request: workflows_pb2.StartExecutionRequest, context: grpc.ServicerContext
    ) -> workflows_pb2.StartExecutionResponse:
        execution, existing = self._start(request)
        return workflows_pb2.StartExecutionResponse(execution=execution_pb(execution), existing=existing)

    def _start(self, request: workflows_pb2.StartExecutionRequest) -> tuple[Execution, bool]:
        return self.engine.start_execution(request.template_name, **_start_args(request))

    def ExecuteCompleteWorkflow(
        self, request: workflows_pb2.ExecuteCompleteWorkflowRequest, context: grpc.ServicerContext
    ) -> workflows_pb2.ExecuteCompleteWorkflowResponse:
        execution, existing = self.engine.execute_complete(
            request.requirement,
            options=_options(request.options),
            request_id=request.request_id,
            priority=parse_priority(request.priority),
            labels=dict(request.labels),
        )
        return workflows_pb2.ExecuteCompleteWorkflowResponse(
            execution=execution_pb(execution), existing=existing
        )

    def GetExecution(
        self, request: workflows_pb2.GetExecutionRequest, context: grpc.ServicerContext
    ) -> workflows_pb2.GetExecutionResponse:
        return workflows_pb2.GetExecutionResponse(
            execution=execution_pb(self.engine.get(request.execution_id))
        )

    def ListExecutions(
        self, request: workflows_pb2.ListExecutionsRequest, context: grpc.ServicerContext
    ) -> workflows_pb2.ListExecutionsResponse:
        items, token = self.engine.list(
            status=enum_name(wire.EXECUTION_STATUSES.names, request.status, "status"),
            template_name=request.template_name,
            created_after=ts_to_float(request.created_after) if request.HasField("created_after") else None,
            created_before=ts_to_float(request.created_before)
            if request.HasField("created_before")
            else None,
            include_steps=request.include_steps,
            page_size_=request.page_size,
            page_token=request.page_token,
        )
        return workflows_pb2.ListExecutionsResponse(
            executions=[execution_pb(e) for e in items], next_page_token=token
        )

    def CancelExecution(
        self, request: workflows_pb2.CancelExecutionRequest, context: grpc.ServicerContext
    ) -> workflows_pb2.CancelExecutionResponse:
        e = self.engine.cancel(request.execution_id, request.reason)
        return workflows_pb2.CancelExecutionResponse(execution=execution_pb(e))

    def PauseExecution(
        self, request: workflows_pb2.PauseExecutionRequest, context: grpc.ServicerContext
    ) -> workflows_pb2.PauseExecutionResponse:
        e = self.engine.pause(request.execution_id, request.reason)
        return workflows_pb2.PauseExecutionResponse(execution=execution_pb(e))

    def ResumeExecution(
        self, request: workflows_pb2.ResumeExecutionRequest, context: grpc.ServicerContext
    ) -> workflows_pb2.ResumeExecutionResponse:
        e = self.engine.resume(request.execution_id)
        return workflows_pb2.ResumeExecutionResponse(execution=execution_pb(e))

    def SignalExecution(
        self, request: workflows_pb2.SignalExecutionRequest, context: grpc.ServicerContext
    ) -> workflows_pb2.SignalExecutionResponse:
        sig, existing = self.engine.signal(
            request.execution_id,
            request.name,
            value_to_py(request.payload) if request.HasField("payload") else None,
            request_id=request.request_id,
            sender=request.sender or caller_role(self.tokens, context),
        )
        return workflows_pb2.SignalExecutionResponse(signal=signal_pb(sig), existing=existing)

    def CreateSchedule(
        self, request: workflows_pb2.CreateScheduleRequest, context: grpc.ServicerContext
    ) -> workflows_pb2.CreateScheduleResponse:
        if not request.HasField("schedule"):
            raise InvalidArgument("schedule", "a schedule is required", reason="FIELD_REQUIRED")
        s = self.schedules.create(schedule_from_pb(request.schedule))
        return workflows_pb2.CreateScheduleResponse(schedule=schedule_pb(s))

    def GetSchedule(
        self, request: workflows_pb2.GetScheduleRequest, context: grpc.ServicerContext
    ) -> workflows_pb2.GetScheduleResponse:
        return workflows_pb2.GetScheduleResponse(
            schedule=schedule_pb(self.schedules.get(request.schedule_id))
        )

    def ListSchedules(
        self, request: workflows_pb2.ListSchedulesRequest, context: grpc.ServicerContext
    ) -> workflows_pb2.ListSchedulesResponse:
        items, token = self.schedules.list(request.page_size, request.page_token)
        return workflows_pb2.ListSchedulesResponse(
            schedules=[schedule_pb(s) for s in items], next_page_token=token
        )

    def DeleteSchedule(
        self, request: workflows_pb2.DeleteScheduleRequest, context: grpc.ServicerContext
    ) -> workflows_pb2.DeleteScheduleResponse:
        self.schedules.delete(request.schedule_id)
        return workflows_pb2.DeleteScheduleResponse()

    def TriggerSchedule(
        self, request: workflows_pb2.TriggerScheduleRequest, context: grpc.ServicerContext
    ) -> workflows_pb2.TriggerScheduleResponse:
        execution, existing = self.schedules.trigger(request.schedule_id, request.request_id)
        return workflows_pb2.TriggerScheduleResponse(execution=execution_pb(execution), existing=existing)

    def PauseSchedule(
        self, request: workflows_pb2.PauseScheduleRequest, context: grpc.ServicerContext
    ) -> workflows_pb2.PauseScheduleResponse:
        return workflows_pb2.PauseScheduleResponse(
            schedule=schedule_pb(self.schedules.pause(request.schedule_id))
        )

    def UnpauseSchedule(
        self, request: workflows_pb2.UnpauseScheduleRequest, context: grpc.ServicerContext
    ) -> workflows_pb2.UnpauseScheduleResponse:
        s = self.schedules.unpause(request.schedule_id)
        return workflows_pb2.UnpauseScheduleResponse(schedule=schedule_pb(s))

    def WatchExecution(
        self, request: workflows_pb2.WatchExecutionRequest, context: grpc.ServicerContext
    ) -> Iterator[workflows_pb2.WatchExecutionResponse]:
        max_batch = batch_limit(request.max_batch)
        follower, is_last = self.engine.watch(
            request.execution_id, request.from_sequence, terminal_only=request.terminal_only
        )
        yield from self._pump(
            context,
            request.execution_id,
            follower,
            is_last,
            # terminal_only: the one message is the result, so it carries the final execution.
            request.include_execution or request.terminal_only,
            Batching(max_batch, _watch_batch) if max_batch else None,
        )

    def RunExecution(
        self, request: workflows_pb2.RunExecutionRequest, context: grpc.ServicerContext
    ) -> Iterator[workflows_pb2.RunExecutionResponse]:
        # Everything the request can get wrong is found before the start writes anything.
        if not request.HasField("start"):
            raise InvalidArgument("start", "the execution to start is required", reason="FIELD_REQUIRED")
        max_batch = batch_limit(request.max_batch) or MAX_BATCH_ITEMS
        try:
            # Followed from before its start commits: none of its events is read back from the log.
            execution, existing, follower, is_last = self.engine.run_execution(
                request.start.template_name,
                terminal_only=request.terminal_only,
                **_start_args(request.start),
            )
        except InvalidArgument as exc:
            raise exc.within("start") from None
        messages = self._pump(
            context,
            execution.id,
            follower,
            is_last,
            request.include_execution or request.terminal_only,
            Batching(max_batch, _run_batch),
        )
        try:
            started = workflows_pb2.StartExecutionResponse(
                execution=execution_pb(execution), existing=existing
            )
            yield workflows_pb2.RunExecutionResponse(start=started)
            yield from messages
        finally:
            follower.close()  # pump() closes it too, but only once it has begun

    def _pump(
        self,
        context: grpc.ServicerContext,
        execution_id: str,
        follower: Any,
        is_last: Callable[[Event], bool],
        attach: bool,
        batching: Batching | None,
    ) -> Iterator[Any]:
        """The messages of an execution's followed events; `attach`: each carries the execution."""

        def render(e: Event) -> workflows_pb2.WatchExecutionResponse:
            resp = workflows_pb2.WatchExecutionResponse(event=event_pb(e))
            if attach:
                resp.execution.CopyFrom(execution_pb(self.engine.get(execution_id)))
            return resp

        return pump(
            follower,
            context,
            render,
            resume_point=lambda pos: ("from_sequence", pos),
            stop=is_last,
            batching=batching,
        )


def _start_args(request: workflows_pb2.StartExecutionRequest) -> dict[str, Any]:
    """A StartExecutionRequest's fields but the template's name, as start_execution's keywords."""
    return {
        "template_version": request.template_version,
        "parameters": struct_to_py(request.parameters),
        "request_id": request.request_id,
        "priority": parse_priority(request.priority),
        "labels": dict(request.labels),
        "correlation_id": request.correlation_id,
    }


def _watch_batch(updates: list[workflows_pb2.WatchExecutionResponse]) -> workflows_pb2.WatchExecutionResponse:
    return workflows_pb2.WatchExecutionResponse(updates=updates)


def _run_batch(updates: list[workflows_pb2.WatchExecutionResponse]) -> workflows_pb2.RunExecutionResponse:
    return workflows_pb2.RunExecutionResponse(updates=updates)


def register(server: grpc.Server, runtime) -> list[str]:
    tokens = parse_tokens(runtime.config.auth_tokens, runtime.config.auth_tokens_file)
    workflows_pb2_grpc.add_WorkflowServiceServicer_to_server(
        WorkflowServicer(runtime.workflows, runtime.schedules, tokens), server
    )
    return ["voltorch.v1.WorkflowService"]
