"""client.workflows: templates, durable executions (start, get, list, cancel, pause, resume, watch) and the
headline `execute_complete(requirement)`."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from voltorch.v1 import coordination_pb2, workflows_pb2, workflows_pb2_grpc

from ._convert import (
    from_duration,
    from_struct,
    from_value,
    to_datetime,
    to_duration,
    to_struct,
    to_timestamp,
    to_value,
)
from ._coordination import Condition, TaskError, condition_from_pb, condition_pb, task_error_from_pb
from ._enums import names, values
from ._events import Event, event_from_pb
from ._priority import Priority
from ._rpc import STREAM_BATCH, call, pages, stream
from .errors import ResourceExhaustedError, UnavailableError

Seconds = float | timedelta

TERMINAL = frozenset({"completed", "failed", "cancelled", "timed_out"})

_PARAM_TYPES = values(workflows_pb2.ParameterType)
_PARAM_NAMES = names(workflows_pb2.ParameterType) | {workflows_pb2.PARAMETER_TYPE_UNSPECIFIED: "string"}
_MODES = values(coordination_pb2.CoordinationMode)
_MODE_NAMES = names(coordination_pb2.CoordinationMode) | {
    coordination_pb2.COORDINATION_MODE_UNSPECIFIED: "sequential"
}
_EXEC_STATUS = names(workflows_pb2.ExecutionStatus)
_EXEC_STATUS_PB = values(workflows_pb2.ExecutionStatus)
_STEP_STATUS = names(workflows_pb2.StepStatus)
_UNSET: Any = object()


# -- template definitions ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParameterSpec:
    """A template parameter. type: string, number, integer, boolean, list or object."""

    name: str
    type: str = "string"
    required: bool = False
    default: Any = _UNSET  # leave unset for "no default"
    min: float | None = None  # value for number/integer, length for string/list
    max: float | None = None
    pattern: str = ""  # re.fullmatch, strings only
    enum: Sequence[Any] = ()
    description: str = ""


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 0  # 0 = inherit (template default, else 3); 1 = no retry
    initial_backoff: Seconds | None = None  # None = 1 s
    backoff_multiplier: float = 0.0  # 0 = 2.0
    max_backoff: Seconds | None = None  # None = 60 s
    non_retryable_errors: Sequence[str] = ()  # TaskError codes, e.g. "INVALID_OUTPUT"


@dataclass(frozen=True)
class AgentTask:
    """Run `task` (a text template) on one agent: by `capabilities` or by `agent_id`."""

    task: str
    capabilities: Sequence[str] = ()
    agent_id: str = ""
    context: dict[str, Any] | None = None
    json_output: bool = False
    fallback_to_any_agent: bool = False


@dataclass(frozen=True)
class CoordinationStep:
    task: str
    mode: str = "sequential"  # sequential | parallel | conditional | pipeline
    source_agent_id: str = ""
    target_agent_id: str = ""
    agent_ids: Sequence[str] = ()
    capabilities: Sequence[str] = ()
    condition: Condition | None = None  # conditional mode


@dataclass(frozen=True)
class ConditionStep:
    source_step_id: str
    predicate: Condition
    then_steps: Sequence[str] = ()
    else_steps: Sequence[str] = ()


@dataclass(frozen=True)
class FanOut:
    items_from_step_id: str
    task: AgentTask
    items_path: str = ""
    max_parallel: int = 0
    max_items: int = 0
    truncate_items: bool = False
    item_dependencies: bool = False


StepKind = AgentTask | CoordinationStep | ConditionStep | FanOut


@dataclass(frozen=True)
class Step:
    id: str
    kind: StepKind
    name: str = ""
    depends_on: Sequence[str] = ()
    retry: RetryPolicy | None = None
    timeout: Seconds | None = None  # per attempt; None = 10 min
    allow_failure: bool = False


@dataclass(frozen=True)
class WorkflowTemplate:
    name: str
    steps: Sequence[Step]
    description: str = ""
    category: str = ""
    parameters: Sequence[ParameterSpec] = ()
    default_retry: RetryPolicy | None = None
    timeout: Seconds | None = None  # whole execution; None = 1 h
    labels: dict[str, str] = field(default_factory=dict)
    version: int = 0  # 0 = next version when registering
    builtin: bool = False
    create_time: datetime | None = None


# -- executions --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepExecution:
    step_id: str
    name: str
    status: str  # pending | running | retrying | completed | failed | skipped | cancelled
    attempts: int
    output: str
    structured_output: Any
    error: TaskError | None
    agent_id: str
    coordination_id: str
    start_time: datetime | None
    end_time: datetime | None
    next_retry_time: datetime | None
    children: list[StepExecution]


@dataclass(frozen=True)
class Execution:
    id: str
    request_id: str
    template_name: str
    template_version: int
    status: str  # pending | queued | running | paused | completed | failed | cancelled | timed_out
    parameters: dict[str, Any]
    steps: list[StepExecution]
    result: Any
    error: TaskError | None
    priority: Priority
    labels: dict[str, str]
    correlation_id: str
    trace_id: str
    create_time: datetime | None
    start_time: datetime | None
    end_time: datetime | None
    update_time: datetime | None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    def step(self, step_id: str) -> StepExecution:
        for s in self.steps:
            if s.step_id == step_id:
                return s
        raise KeyError(step_id)


@dataclass(frozen=True)
class StartResult:
    execution: Execution
    existing: bool  # the request_id matched an earlier start; nothing new was started


@dataclass(frozen=True)
class WorkflowEvent:
    """One event of an execution, with the execution's state when watch(include_execution=True)."""

    event: Event
    execution: Execution | None = None

    @property
    def type(self) -> str:
        return self.event.type

    @property
    def data(self) -> Any:
        return self.event.data

    @property
    def step_id(self) -> str:
        return self.event.data.get("step_id", "") if isinstance(self.event.data, dict) else ""


# -- conversions -------------------------------------------------------------------------------------------


def _seconds(v: Seconds | None) -> Any:
    return to_duration(v) if v is not None else None


def _retry_pb(r: RetryPolicy) -> workflows_pb2.RetryPolicy:
    return workflows_pb2.RetryPolicy(
        max_attempts=r.max_attempts,
        initial_backoff=_seconds(r.initial_backoff),
        backoff_multiplier=r.backoff_multiplier,
        max_backoff=_seconds(r.max_backoff),
        non_retryable_errors=list(r.non_retryable_errors),
    )


def _retry(pb: workflows_pb2.RetryPolicy) -> RetryPolicy:
    return RetryPolicy(
        pb.max_attempts,
        from_duration(pb.initial_backoff) if pb.HasField("initial_backoff") else None,
        pb.backoff_multiplier,
        from_duration(pb.max_backoff) if pb.HasField("max_backoff") else None,
        tuple(pb.non_retryable_errors),
    )


def _agent_task_pb(a: AgentTask) -> workflows_pb2.AgentTaskStep:
    pb = workflows_pb2.AgentTaskStep(
        agent_id=a.agent_id,
        capabilities=list(a.capabilities),
        task=a.task,
        json_output=a.json_output,
        fallback_to_any_agent=a.fallback_to_any_agent,
    )
    if a.context is not None:
        pb.context.CopyFrom(to_struct(a.context))
    return pb


def _agent_task(pb: workflows_pb2.AgentTaskStep) -> AgentTask:
    return AgentTask(
        task=pb.task,
        capabilities=tuple(pb.capabilities),
        agent_id=pb.agent_id,
        context=from_struct(pb.context) if pb.HasField("context") else None,
        json_output=pb.json_output,
        fallback_to_any_agent=pb.fallback_to_any_agent,
    )


def _step_pb(s: Step) -> workflows_pb2.StepSpec:
    pb = workflows_pb2.StepSpec(
        id=s.id,
        name=s.name,
        depends_on=list(s.depends_on),
        timeout=_seconds(s.timeout),
        allow_failure=s.allow_failure,
    )
    if s.retry is not None:
        pb.retry.CopyFrom(_retry_pb(s.retry))
    k = s.kind
    if isinstance(k, AgentTask):
        pb.agent_task.CopyFrom(_agent_task_pb(k))
    elif isinstance(k, CoordinationStep):
        if k.mode not in _MODES:
            raise ValueError(f"unknown coordination mode {k.mode!r}; one of {', '.join(_MODES)}")
        pb.coordination.CopyFrom(
            workflows_pb2.CoordinationStep(
                mode=_MODES[k.mode],
                source_agent_id=k.source_agent_id,
                target_agent_id=k.target_agent_id,
                agent_ids=list(k.agent_ids),
                capabilities=list(k.capabilities),
                task=k.task,
                condition=condition_pb(k.condition) if k.condition else None,
            )
        )
    elif isinstance(k, ConditionStep):
        pb.condition.CopyFrom(
            workflows_pb2.ConditionStep(
                source_step_id=k.source_step_id,
                predicate=condition_pb(k.predicate),
                then_steps=list(k.then_steps),
                else_steps=list(k.else_steps),
            )
        )
    elif isinstance(k, FanOut):
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
    else:
        raise TypeError(f"step {s.id!r}: kind must be AgentTask, CoordinationStep, ConditionStep or FanOut")
    return pb


def _step(pb: workflows_pb2.StepSpec) -> Step:
    which = pb.WhichOneof("kind")
    kind: Any = None
    if which == "agent_task":
        kind = _agent_task(pb.agent_task)
    elif which == "coordination":
        c = pb.coordination
        kind = CoordinationStep(
            task=c.task,
            mode=_MODE_NAMES.get(c.mode, "sequential"),
            source_agent_id=c.source_agent_id,
            target_agent_id=c.target_agent_id,
            agent_ids=tuple(c.agent_ids),
            capabilities=tuple(c.capabilities),
            condition=condition_from_pb(c.condition) if c.HasField("condition") else None,
        )
    elif which == "condition":
        c = pb.condition
        kind = ConditionStep(
            c.source_step_id, condition_from_pb(c.predicate), tuple(c.then_steps), tuple(c.else_steps)
        )
    elif which == "fan_out":
        f = pb.fan_out
        kind = FanOut(
            f.items_from_step_id,
            _agent_task(f.task),
            f.items_path,
            f.max_parallel,
            f.max_items,
            f.truncate_items,
            f.item_dependencies,
        )
    return Step(
        id=pb.id,
        kind=kind,
        name=pb.name,
        depends_on=tuple(pb.depends_on),
        retry=_retry(pb.retry) if pb.HasField("retry") else None,
        timeout=from_duration(pb.timeout) if pb.HasField("timeout") else None,
        allow_failure=pb.allow_failure,
    )


def _param_pb(p: ParameterSpec) -> workflows_pb2.ParameterSpec:
    if p.type not in _PARAM_TYPES:
        raise ValueError(f"parameter {p.name!r}: unknown type {p.type!r}; one of {', '.join(_PARAM_TYPES)}")
    pb = workflows_pb2.ParameterSpec(
        name=p.name,
        type=_PARAM_TYPES[p.type],
        required=p.required,
        pattern=p.pattern,
        enum_values=[to_value(v) for v in p.enum],
        description=p.description,
    )
    if p.default is not _UNSET:
        pb.default_value.CopyFrom(to_value(p.default))
    if p.min is not None:
        pb.min = p.min
    if p.max is not None:
        pb.max = p.max
    return pb


def _param(pb: workflows_pb2.ParameterSpec) -> ParameterSpec:
    return ParameterSpec(
        name=pb.name,
        type=_PARAM_NAMES.get(pb.type, "string"),
        required=pb.required,
        default=from_value(pb.default_value) if pb.HasField("default_value") else _UNSET,
        min=pb.min if pb.HasField("min") else None,
        max=pb.max if pb.HasField("max") else None,
        pattern=pb.pattern,
        enum=tuple(from_value(v) for v in pb.enum_values),
        description=pb.description,
    )


def template_pb(t: WorkflowTemplate) -> workflows_pb2.WorkflowTemplate:
    pb = workflows_pb2.WorkflowTemplate(
        name=t.name,
        version=t.version,
        description=t.description,
        category=t.category,
        parameters=[_param_pb(p) for p in t.parameters],
        steps=[_step_pb(s) for s in t.steps],
        timeout=_seconds(t.timeout),
        labels=dict(t.labels),
    )
    if t.default_retry is not None:
        pb.default_retry.CopyFrom(_retry_pb(t.default_retry))
    return pb


def _template(pb: workflows_pb2.WorkflowTemplate) -> WorkflowTemplate:
    return WorkflowTemplate(
        name=pb.name,
        steps=[_step(s) for s in pb.steps],
        description=pb.description,
        category=pb.category,
        parameters=[_param(p) for p in pb.parameters],
        default_retry=_retry(pb.default_retry) if pb.HasField("default_retry") else None,
        timeout=from_duration(pb.timeout) if pb.HasField("timeout") else None,
        labels=dict(pb.labels),
        version=pb.version,
        builtin=pb.builtin,
        create_time=to_datetime(pb.create_time, pb.HasField("create_time")),
    )


def _step_execution(pb: workflows_pb2.StepExecution) -> StepExecution:
    return StepExecution(
        step_id=pb.step_id,
        name=pb.name,
        status=_STEP_STATUS.get(pb.status, "unspecified"),
        attempts=pb.attempts,
        output=pb.output,
        structured_output=from_value(pb.structured_output) if pb.HasField("structured_output") else None,
        error=task_error_from_pb(pb.error, pb.HasField("error")),
        agent_id=pb.agent_id,
        coordination_id=pb.coordination_id,
        start_time=to_datetime(pb.start_time, pb.HasField("start_time")),
        end_time=to_datetime(pb.end_time, pb.HasField("end_time")),
        next_retry_time=to_datetime(pb.next_retry_time, pb.HasField("next_retry_time")),
        children=[_step_execution(c) for c in pb.children],
    )


def _execution(pb: workflows_pb2.Execution) -> Execution:
    return Execution(
        id=pb.id,
        request_id=pb.request_id,
        template_name=pb.template_name,
        template_version=pb.template_version,
        status=_EXEC_STATUS.get(pb.status, "unspecified"),
        parameters=from_struct(pb.parameters),
        steps=[_step_execution(s) for s in pb.steps],
        result=from_value(pb.result) if pb.HasField("result") else None,
        error=task_error_from_pb(pb.error, pb.HasField("error")),
        priority=Priority.of(pb.priority),
        labels=dict(pb.labels),
        correlation_id=pb.correlation_id,
        trace_id=pb.trace_id,
        create_time=to_datetime(pb.create_time, pb.HasField("create_time")),
        start_time=to_datetime(pb.start_time, pb.HasField("start_time")),
        end_time=to_datetime(pb.end_time, pb.HasField("end_time")),
        update_time=to_datetime(pb.update_time, pb.HasField("update_time")),
    )


# -- the client --------------------------------------------------------------------------------------------


class WorkflowsClient:
    def __init__(self, stub: workflows_pb2_grpc.WorkflowServiceStub, timeout: float | None):
        self.stub = stub
        self.timeout = timeout

    # templates

    def register_template(self, template: WorkflowTemplate) -> WorkflowTemplate:
        """Register a new version (identical to the latest = that version, unchanged)."""
        req = workflows_pb2.RegisterTemplateRequest(template=template_pb(template))
        return _template(call(self.stub.RegisterTemplate, req, timeout=self.timeout).template)

    def get_template(self, name: str, version: int = 0) -> WorkflowTemplate:
        req = workflows_pb2.GetTemplateRequest(name=name, version=version)
        return _template(call(self.stub.GetTemplate, req, timeout=self.timeout).template)

    def list_templates(
        self, *, category: str = "", all_versions: bool = False, page_size: int = 0
    ) -> Iterator[WorkflowTemplate]:
        def fetch(token: str) -> tuple[list[WorkflowTemplate], str]:
            req = workflows_pb2.ListTemplatesRequest(
                category=category, all_versions=all_versions, page_size=page_size, page_token=token
            )
            resp = call(self.stub.ListTemplates, req, timeout=self.timeout)
            return [_template(t) for t in resp.templates], resp.next_page_token

        return pages(fetch)

    # executions

    def start(
        self,
        template_name: str,
        parameters: dict[str, Any] | None = None,
        *,
        version: int = 0,
        request_id: str = "",
        priority: Priority | int | str | None = None,
        labels: dict[str, str] | None = None,
        correlation_id: str = "",
    ) -> StartResult:
        """Start an execution; returns at once (running, or queued beyond the server's concurrency limit)."""
        req = workflows_pb2.StartExecutionRequest(
            request_id=request_id,
            template_name=template_name,
            template_version=version,
            parameters=to_struct(parameters),
            priority=int(Priority.of(priority)),
            labels=labels or {},
            correlation_id=correlation_id,
        )
        resp = call(self.stub.StartExecution, req, timeout=self.timeout)
        return StartResult(_execution(resp.execution), resp.existing)

    def execute_complete(
        self,
        requirement: str,
        *,
        request_id: str = "",
        max_tasks: int = 0,
        max_parallel: int = 0,
        skip_review: bool = False,
        timeout: Seconds | None = None,
        step_timeout: Seconds | None = None,
        retry: RetryPolicy | None = None,
        priority: Priority | int | str | None = None,
        labels: dict[str, str] | None = None,
    ) -> StartResult:
        """The complete workflow: analyse -> tasks -> run each on an agent -> review -> summary."""
        opts = workflows_pb2.CompleteWorkflowOptions(
            max_tasks=max_tasks,
            max_parallel=max_parallel,
            skip_review=skip_review,
            timeout=_seconds(timeout),
            step_timeout=_seconds(step_timeout),
        )
        if retry is not None:
            opts.retry.CopyFrom(_retry_pb(retry))
        req = workflows_pb2.ExecuteCompleteWorkflowRequest(
            requirement=requirement,
            request_id=request_id,
            options=opts,
            priority=int(Priority.of(priority)),
            labels=labels or {},
        )
        resp = call(self.stub.ExecuteCompleteWorkflow, req, timeout=self.timeout)
        return StartResult(_execution(resp.execution), resp.existing)

    def get(self, execution_id: str) -> Execution:
        req = workflows_pb2.GetExecutionRequest(execution_id=execution_id)
        return _execution(call(self.stub.GetExecution, req, timeout=self.timeout).execution)

    def list_page(
        self,
        *,
        status: str = "",
        template_name: str = "",
        created_after: datetime | float | None = None,
        created_before: datetime | float | None = None,
        include_steps: bool = False,
        page_size: int = 0,
        page_token: str = "",
    ) -> tuple[list[Execution], str]:
        if status and status not in _EXEC_STATUS_PB:
            raise ValueError(f"unknown status {status!r}; one of {', '.join(_EXEC_STATUS_PB)}")
        req = workflows_pb2.ListExecutionsRequest(
            status=_EXEC_STATUS_PB.get(status, 0),
            template_name=template_name,
            created_after=to_timestamp(created_after),
            created_before=to_timestamp(created_before),
            include_steps=include_steps,
            page_size=page_size,
            page_token=page_token,
        )
        resp = call(self.stub.ListExecutions, req, timeout=self.timeout)
        return [_execution(e) for e in resp.executions], resp.next_page_token

    def list(self, **filters: Any) -> Iterator[Execution]:
        """Executions newest first: status=, template_name=, created_after=, created_before=, include_steps=."""
        return pages(lambda tok: self.list_page(**filters, page_token=tok))

    def cancel(self, execution_id: str, reason: str = "") -> Execution:
        req = workflows_pb2.CancelExecutionRequest(execution_id=execution_id, reason=reason)
        return _execution(call(self.stub.CancelExecution, req, timeout=self.timeout).execution)

    def pause(self, execution_id: str, reason: str = "") -> Execution:
        req = workflows_pb2.PauseExecutionRequest(execution_id=execution_id, reason=reason)
        return _execution(call(self.stub.PauseExecution, req, timeout=self.timeout).execution)

    def resume(self, execution_id: str) -> Execution:
        req = workflows_pb2.ResumeExecutionRequest(execution_id=execution_id)
        return _execution(call(self.stub.ResumeExecution, req, timeout=self.timeout).execution)

    def watch(
        self,
        execution_id: str,
        *,
        from_sequence: int = 0,
        include_execution: bool = False,
        resume: bool = True,
        timeout: float | None = None,
    ) -> Iterator[WorkflowEvent]:
        """The execution's events from the start (or from_sequence), then live; ends after its last event.

        With resume=True a stream the server ends with a resume point is reopened from there. `timeout`
        bounds the whole watch (DeadlineExceededError)."""
        position = from_sequence
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            req = workflows_pb2.WatchExecutionRequest(
                execution_id=execution_id,
                from_sequence=position,
                include_execution=include_execution,
                max_batch=STREAM_BATCH,
            )
            try:
                left = None if deadline is None else max(deadline - time.monotonic(), 0.001)
                for batch in stream(self.stub.WatchExecution, req, timeout=left):
                    for resp in batch.updates or (batch,):  # a server without batching sends single events
                        ev = event_from_pb(resp.event)
                        position = ev.sequence + 1
                        yield WorkflowEvent(
                            ev, _execution(resp.execution) if resp.HasField("execution") else None
                        )
                return
            except (ResourceExhaustedError, UnavailableError) as exc:
                nxt = exc.metadata.get("from_sequence")
                if not resume or nxt is None:
                    raise
                position = int(nxt)

    def wait(self, execution_id: str, timeout: float | None = None) -> Execution:
        """Block until the execution ends (at most `timeout` s, else DeadlineExceededError); return it."""
        for _ in self.watch(execution_id, timeout=timeout):
            pass
        return self.get(execution_id)
