"""client.workflows: templates, durable executions (start, get, list, cancel, pause, resume, watch) and the
headline `execute_complete(requirement)`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from voltorch.v1 import workflows_pb2, workflows_pb2_grpc

from ._events import Event, event_from_pb
from ._rpc import STREAM_BATCH, call, pages, stream
from .errors import ResourceExhaustedError, UnavailableError
from .wire import (
    EXECUTION_STATUSES,
    STEP_STATUSES,
    Budget,
    Priority,
    RetryPolicy,
    Seconds,
    TaskError,
    TokenUsage,
    WorkflowTemplate,
    budget_from_pb,
    budget_pb,
    from_struct,
    from_value,
    retry_pb,
    task_error_from_pb,
    template_from_pb,
    template_pb,
    to_datetime,
    to_duration,
    to_struct,
    to_timestamp,
    usage_from_pb,
)

TERMINAL = frozenset({"completed", "failed", "cancelled", "timed_out"})
DELTA_EVENT = "agent.output.delta"  # live text of a streaming agent, batched by the server


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
    usage: TokenUsage = field(default_factory=TokenUsage)  # tokens in/out, cost, model calls


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
    usage: TokenUsage = field(default_factory=TokenUsage)  # the sum over its steps
    budget: Budget | None = None  # the limits it runs under

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

    @property
    def delta(self) -> str:
        """The new text of an `agent.output.delta` event (live output of a streaming agent), else ""."""
        if self.event.type != DELTA_EVENT or not isinstance(self.event.data, dict):
            return ""
        return str(self.event.data.get("delta", ""))


# -- conversions (templates: voltorch.wire) -------------------------------------------------------------


def _step_execution(pb: workflows_pb2.StepExecution) -> StepExecution:
    return StepExecution(
        step_id=pb.step_id,
        name=pb.name,
        status=STEP_STATUSES.names.get(pb.status, "unspecified"),
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
        usage=usage_from_pb(pb.usage),
    )


def _execution(pb: workflows_pb2.Execution) -> Execution:
    return Execution(
        id=pb.id,
        request_id=pb.request_id,
        template_name=pb.template_name,
        template_version=pb.template_version,
        status=EXECUTION_STATUSES.names.get(pb.status, "unspecified"),
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
        usage=usage_from_pb(pb.usage),
        budget=budget_from_pb(pb.budget) if pb.HasField("budget") else None,
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
        return template_from_pb(call(self.stub.RegisterTemplate, req, timeout=self.timeout).template)

    def get_template(self, name: str, version: int = 0) -> WorkflowTemplate:
        req = workflows_pb2.GetTemplateRequest(name=name, version=version)
        return template_from_pb(call(self.stub.GetTemplate, req, timeout=self.timeout).template)

    def list_templates(
        self, *, category: str = "", all_versions: bool = False, page_size: int = 0
    ) -> Iterator[WorkflowTemplate]:
        def fetch(token: str) -> tuple[list[WorkflowTemplate], str]:
            req = workflows_pb2.ListTemplatesRequest(
                category=category, all_versions=all_versions, page_size=page_size, page_token=token
            )
            resp = call(self.stub.ListTemplates, req, timeout=self.timeout)
            return [template_from_pb(t) for t in resp.templates], resp.next_page_token

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
            priority=Priority.of(priority).pb,
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
        budget: Budget | None = None,
    ) -> StartResult:
        """The complete workflow: analyse -> tasks -> run each on an agent -> review -> summary. A budget
        (max_tokens, max_cost, max_llm_calls) fails it with BUDGET_EXCEEDED before a call beyond it."""
        opts = workflows_pb2.CompleteWorkflowOptions(
            max_tasks=max_tasks,
            max_parallel=max_parallel,
            skip_review=skip_review,
            timeout=to_duration(timeout) if timeout is not None else None,
            step_timeout=to_duration(step_timeout) if step_timeout is not None else None,
        )
        if retry is not None:
            opts.retry.CopyFrom(retry_pb(retry))
        if budget is not None:
            opts.budget.CopyFrom(budget_pb(budget))
        req = workflows_pb2.ExecuteCompleteWorkflowRequest(
            requirement=requirement,
            request_id=request_id,
            options=opts,
            priority=Priority.of(priority).pb,
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
        if status and status not in EXECUTION_STATUSES.numbers:
            raise ValueError(f"unknown status {status!r}; one of {', '.join(EXECUTION_STATUSES.numbers)}")
        req = workflows_pb2.ListExecutionsRequest(
            status=EXECUTION_STATUSES.numbers.get(status),
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
        deltas: bool = False,
    ) -> Iterator[WorkflowEvent]:
        """The execution's events from the start (or from_sequence), then live; ends after its last event.

        With deltas=True the live text of streaming agents comes too, as `agent.output.delta` events
        whose `.delta` is the new text (`print(ev.delta, end="")` shows it as it is written); without,
        they are left out. With resume=True a stream the server ends with a resume point is reopened
        from there. `timeout` bounds the whole watch (DeadlineExceededError)."""
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
                        if ev.type == DELTA_EVENT and not deltas:
                            continue
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
