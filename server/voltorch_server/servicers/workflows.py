"""WorkflowService: proto <-> WorkflowEngine."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
from voltorch._enums import names, values
from voltorch.v1 import coordination_pb2, workflows_pb2, workflows_pb2_grpc

from ..components import _complete_workflow as complete
from ..components._coordination_model import CoordinationCondition
from ..components._executions import Execution, StepExecution
from ..components._templates import (
    AgentTask,
    ConditionSpec,
    CoordinationSpec,
    FanOutSpec,
    ParameterSpec,
    RetryPolicy,
    StepSpec,
    Template,
)
from ..components.events import Event
from ..components.workflows import WorkflowEngine
from ..errors import InvalidArgument
from ..priority import parse_priority
from ._convert import (
    duration,
    duration_to_seconds,
    py_to_struct,
    py_to_value,
    struct_to_py,
    ts,
    ts_to_float,
    value_to_py,
)
from ._coordination_pb import MODE_NAMES, MODES, condition_from_pb, condition_pb, enum_name, task_error_pb
from ._streams import Batching, batch_limit, pump
from .events import event_pb

_PARAM_TYPES = names(workflows_pb2.ParameterType) | {workflows_pb2.PARAMETER_TYPE_UNSPECIFIED: "string"}
_PARAM_TYPES_PB = values(workflows_pb2.ParameterType)
_EXEC_STATUS = values(workflows_pb2.ExecutionStatus)
_EXEC_STATUS_NAMES = names(workflows_pb2.ExecutionStatus)
_STEP_STATUS = values(workflows_pb2.StepStatus)


# -- proto -> component ----------------------------------------------------------------------------------


def _seconds(msg: Any, name: str, field: str) -> float | None:
    return duration_to_seconds(getattr(msg, name), field) if msg.HasField(name) else None


def _predicate(pb: coordination_pb2.CoordinationCondition) -> CoordinationCondition | None:
    """None when no predicate is set: template validation then names the field."""
    return condition_from_pb(pb) if pb.WhichOneof("predicate") else None


def retry(pb: workflows_pb2.RetryPolicy, field: str) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=pb.max_attempts,
        initial_backoff=_seconds(pb, "initial_backoff", f"{field}.initial_backoff"),
        backoff_multiplier=pb.backoff_multiplier,
        max_backoff=_seconds(pb, "max_backoff", f"{field}.max_backoff"),
        non_retryable_errors=tuple(pb.non_retryable_errors),
    )


def _agent_task(pb: workflows_pb2.AgentTaskStep) -> AgentTask:
    return AgentTask(
        task=pb.task,
        agent_id=pb.agent_id,
        capabilities=tuple(pb.capabilities),
        context=struct_to_py(pb.context) if pb.HasField("context") else None,
        json_output=pb.json_output,
        fallback_to_any_agent=pb.fallback_to_any_agent,
    )


def _kind(pb: workflows_pb2.StepSpec, field: str) -> Any:
    which = pb.WhichOneof("kind")
    if which == "agent_task":
        return _agent_task(pb.agent_task)
    if which == "coordination":
        c = pb.coordination
        return CoordinationSpec(
            task=c.task,
            mode=enum_name(MODE_NAMES, c.mode, f"{field}.coordination.mode", unspecified="sequential"),
            source_agent_id=c.source_agent_id,
            target_agent_id=c.target_agent_id,
            agent_ids=tuple(c.agent_ids),
            capabilities=tuple(c.capabilities),
            condition=_predicate(c.condition) if c.HasField("condition") else None,
        )
    if which == "condition":
        c = pb.condition
        return ConditionSpec(
            source_step_id=c.source_step_id,
            predicate=_predicate(c.predicate) if c.HasField("predicate") else None,
            then_steps=tuple(c.then_steps),
            else_steps=tuple(c.else_steps),
        )
    if which == "fan_out":
        f = pb.fan_out
        return FanOutSpec(
            items_from_step_id=f.items_from_step_id,
            task=_agent_task(f.task),
            items_path=f.items_path,
            max_parallel=f.max_parallel,
            max_items=f.max_items,
            truncate_items=f.truncate_items,
            item_dependencies=f.item_dependencies,
        )
    return None


def _param(pb: workflows_pb2.ParameterSpec, field: str) -> ParameterSpec:
    if pb.type not in _PARAM_TYPES:
        raise InvalidArgument(f"{field}.type", f"unknown parameter type {pb.type}")
    return ParameterSpec(
        name=pb.name,
        type=_PARAM_TYPES[pb.type],
        required=pb.required,
        default=value_to_py(pb.default_value) if pb.HasField("default_value") else None,
        has_default=pb.HasField("default_value"),
        min=pb.min if pb.HasField("min") else None,
        max=pb.max if pb.HasField("max") else None,
        pattern=pb.pattern,
        enum=tuple(value_to_py(v) for v in pb.enum_values),
        description=pb.description,
    )


def template(pb: workflows_pb2.WorkflowTemplate, field: str = "template") -> Template:
    return Template(
        name=pb.name,
        version=pb.version,
        description=pb.description,
        category=pb.category,
        parameters=tuple(_param(p, f"{field}.parameters[{i}]") for i, p in enumerate(pb.parameters)),
        steps=tuple(
            StepSpec(
                id=s.id,
                kind=_kind(s, f"{field}.steps[{i}]"),
                name=s.name,
                depends_on=tuple(s.depends_on),
                retry=retry(s.retry, f"{field}.steps[{i}].retry") if s.HasField("retry") else None,
                timeout=_seconds(s, "timeout", f"{field}.steps[{i}].timeout"),
                allow_failure=s.allow_failure,
            )
            for i, s in enumerate(pb.steps)
        ),
        default_retry=retry(pb.default_retry, f"{field}.default_retry")
        if pb.HasField("default_retry")
        else None,
        timeout=_seconds(pb, "timeout", f"{field}.timeout"),
        labels=dict(pb.labels),
    )


# -- component -> proto ----------------------------------------------------------------------------------


def _retry_pb(r: RetryPolicy) -> workflows_pb2.RetryPolicy:
    return workflows_pb2.RetryPolicy(
        max_attempts=r.max_attempts,
        initial_backoff=duration(r.initial_backoff),
        backoff_multiplier=r.backoff_multiplier,
        max_backoff=duration(r.max_backoff),
        non_retryable_errors=r.non_retryable_errors,
    )


def _agent_task_pb(a: AgentTask) -> workflows_pb2.AgentTaskStep:
    pb = workflows_pb2.AgentTaskStep(
        agent_id=a.agent_id,
        capabilities=a.capabilities,
        task=a.task,
        json_output=a.json_output,
        fallback_to_any_agent=a.fallback_to_any_agent,
    )
    if a.context is not None:
        pb.context.CopyFrom(py_to_struct(a.context))
    return pb


def _step_pb(s: StepSpec) -> workflows_pb2.StepSpec:
    pb = workflows_pb2.StepSpec(
        id=s.id,
        name=s.name,
        depends_on=s.depends_on,
        timeout=duration(s.timeout),
        allow_failure=s.allow_failure,
    )
    if s.retry:
        pb.retry.CopyFrom(_retry_pb(s.retry))
    k = s.kind
    if isinstance(k, AgentTask):
        pb.agent_task.CopyFrom(_agent_task_pb(k))
    elif isinstance(k, CoordinationSpec):
        pb.coordination.CopyFrom(
            workflows_pb2.CoordinationStep(
                mode=MODES[k.mode],
                source_agent_id=k.source_agent_id,
                target_agent_id=k.target_agent_id,
                agent_ids=k.agent_ids,
                capabilities=k.capabilities,
                task=k.task,
                condition=condition_pb(k.condition) if k.condition else None,
            )
        )
    elif isinstance(k, ConditionSpec):
        pb.condition.CopyFrom(
            workflows_pb2.ConditionStep(
                source_step_id=k.source_step_id,
                predicate=condition_pb(k.predicate),
                then_steps=k.then_steps,
                else_steps=k.else_steps,
            )
        )
    elif isinstance(k, FanOutSpec):
        pb.fan_out.CopyFrom(
            workflows_pb2.FanOutStep(
                items_from_step_id=k.items_from_step_id,
                items_path=k.items_path,
                task=_agent_task_pb(k.task),
                max_parallel=k.max_parallel,
                max_items=k.max_items,
                truncate_items=k.truncate_items,
                item_dependencies=k.item_dependencies,
            )
        )
    return pb


def _param_pb(p: ParameterSpec) -> workflows_pb2.ParameterSpec:
    pb = workflows_pb2.ParameterSpec(
        name=p.name,
        type=_PARAM_TYPES_PB[p.type],
        required=p.required,
        pattern=p.pattern,
        enum_values=[py_to_value(v) for v in p.enum],
        description=p.description,
    )
    if p.has_default:
        pb.default_value.CopyFrom(py_to_value(p.default))
    if p.min is not None:
        pb.min = p.min
    if p.max is not None:
        pb.max = p.max
    return pb


def template_pb(t: Template) -> workflows_pb2.WorkflowTemplate:
    pb = workflows_pb2.WorkflowTemplate(
        name=t.name,
        version=t.version,
        description=t.description,
        category=t.category,
        parameters=[_param_pb(p) for p in t.parameters],
        steps=[_step_pb(s) for s in t.steps],
        timeout=duration(t.timeout),
        labels=t.labels,
        builtin=t.builtin,
        create_time=ts(t.create_time),
    )
    if t.default_retry:
        pb.default_retry.CopyFrom(_retry_pb(t.default_retry))
    return pb


def _step_execution_pb(s: StepExecution) -> workflows_pb2.StepExecution:
    pb = workflows_pb2.StepExecution(
        step_id=s.step_id,
        name=s.name,
        status=_STEP_STATUS.get(s.status, workflows_pb2.STEP_STATUS_UNSPECIFIED),
        attempts=s.attempts,
        output=s.output,
        error=task_error_pb(s.error),
        agent_id=s.agent_id,
        coordination_id=s.coordination_id,
        start_time=ts(s.start_time),
        end_time=ts(s.end_time),
        next_retry_time=ts(s.next_retry_time),
        children=[_step_execution_pb(c) for c in s.children],
    )
    if s.structured_output is not None:
        pb.structured_output.CopyFrom(py_to_value(s.structured_output))
    return pb


def execution_pb(e: Execution) -> workflows_pb2.Execution:
    pb = workflows_pb2.Execution(
        id=e.id,
        request_id=e.request_id,
        template_name=e.template_name,
        template_version=e.template_version,
        status=_EXEC_STATUS[e.status],
        parameters=py_to_struct(e.parameters),
        steps=[_step_execution_pb(s) for s in e.steps],
        error=task_error_pb(e.error),
        priority=int(e.priority),
        labels=e.labels,
        correlation_id=e.correlation_id,
        trace_id=e.trace_id,
        create_time=ts(e.create_time),
        start_time=ts(e.start_time),
        end_time=ts(e.end_time),
        update_time=ts(e.update_time),
    )
    if e.result is not None:
        pb.result.CopyFrom(py_to_value(e.result))
    return pb


def _options(pb: workflows_pb2.CompleteWorkflowOptions) -> complete.Options:
    return complete.Options(
        max_tasks=pb.max_tasks,
        max_parallel=pb.max_parallel,
        skip_review=pb.skip_review,
        timeout=_seconds(pb, "timeout", "options.timeout"),
        step_timeout=_seconds(pb, "step_timeout", "options.step_timeout"),
        retry=retry(pb.retry, "options.retry") if pb.HasField("retry") else None,
    )


class WorkflowServicer(workflows_pb2_grpc.WorkflowServiceServicer):
    def __init__(self, engine: WorkflowEngine):
        self.engine = engine

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
        execution, existing = self.engine.start_execution(
            request.template_name,
            template_version=request.template_version,
            parameters=struct_to_py(request.parameters),
            request_id=request.request_id,
            priority=parse_priority(request.priority),
            labels=dict(request.labels),
            correlation_id=request.correlation_id,
        )
        return workflows_pb2.StartExecutionResponse(execution=execution_pb(execution), existing=existing)

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
        if request.status not in _EXEC_STATUS_NAMES and request.status:
            raise InvalidArgument("status", f"unknown status {request.status}")
        items, token = self.engine.list(
            status=_EXEC_STATUS_NAMES.get(request.status, ""),
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

    def WatchExecution(
        self, request: workflows_pb2.WatchExecutionRequest, context: grpc.ServicerContext
    ) -> Iterator[workflows_pb2.WatchExecutionResponse]:
        max_batch = batch_limit(request.max_batch)
        follower, is_last = self.engine.watch(request.execution_id, request.from_sequence)

        def render(e: Event) -> workflows_pb2.WatchExecutionResponse:
            resp = workflows_pb2.WatchExecutionResponse(event=event_pb(e))
            if request.include_execution:
                resp.execution.CopyFrom(execution_pb(self.engine.get(request.execution_id)))
            return resp

        yield from pump(
            follower,
            context,
            render,
            resume_point=lambda pos: ("from_sequence", pos),
            stop=is_last,
            batching=Batching(max_batch, _watch_batch) if max_batch else None,
        )


def _watch_batch(updates: list[workflows_pb2.WatchExecutionResponse]) -> workflows_pb2.WatchExecutionResponse:
    return workflows_pb2.WatchExecutionResponse(updates=updates)


def register(server: grpc.Server, runtime) -> list[str]:
    workflows_pb2_grpc.add_WorkflowServiceServicer_to_server(WorkflowServicer(runtime.workflows), server)
    return ["voltorch.v1.WorkflowService"]
