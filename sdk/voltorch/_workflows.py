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
from ._rpc import RECONNECT_TIMEOUT, STREAM_BATCH, Reconnect, call, new_request_id, pages, stream
from .errors import ResourceExhaustedError, UnavailableError
from .wire import (
    EXECUTION_STATUSES,
    STEP_STATUSES,
    WAIT_KINDS,
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
    to_value,
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
class WaitingFor:
    """Something an execution waits for: a signal, an approval, a sleep or a start_after delay."""

    step_id: str
    kind: str  # signal | approval | sleep | start_after
    signal: str  # signal / approval: the signal that ends the wait
    prompt: str  # approval: what the reviewer is asked
    data: Any  # approval: the data under review
    deadline: datetime | None  # timers: when they fire; waits: when they time out (None = never)


@dataclass(frozen=True)
class Signal:
    id: str
    execution_id: str
    name: str
    payload: Any
    request_id: str
    sender: str
    create_time: datetime | None
    consumed_by_step: str  # "" while it is kept for a later wait


@dataclass(frozen=True)
class SignalResult:
    signal: Signal
    existing: bool  # the request_id matched an earlier signal: nothing was delivered again


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
    waiting: list[WaitingFor] = field(default_factory=list)
    # The replica that runs it (its lease) and the lease's epoch, grown at each takeover; "" while it
    # waits queued for a replica of a cluster to claim it.
    replica_id: str = ""
    epoch: int = 0

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


def execution_from_pb(pb: workflows_pb2.Execution) -> Execution:
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
        waiting=[
            WaitingFor(
                step_id=w.step_id,
                kind=WAIT_KINDS.names.get(w.kind, "unspecified"),
                signal=w.signal,
                prompt=w.prompt,
                data=from_value(w.data) if w.HasField("data") else None,
                deadline=to_datetime(w.deadline, w.HasField("deadline")),
            )
            for w in pb.waiting
        ],
        replica_id=pb.replica_id,
        epoch=pb.epoch,
    )


def _signal(pb: workflows_pb2.Signal) -> Signal:
    return Signal(
        id=pb.id,
        execution_id=pb.execution_id,
        name=pb.name,
        payload=from_value(pb.payload) if pb.HasField("payload") else None,
        request_id=pb.request_id,
        sender=pb.sender,
        create_time=to_datetime(pb.create_time, pb.HasField("create_time")),
        consumed_by_step=pb.consumed_by_step,
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
            request_id=new_request_id(request_id),
            template_name=template_name,
            template_version=version,
            parameters=to_struct(parameters),
            priority=Priority.of(priority).pb,
            labels=labels or {},
            correlation_id=correlation_id,
        )
        resp = call(self.stub.StartExecution, req, timeout=self.timeout)
        return StartResult(execution_from_pb(resp.execution), resp.existing)

    def execute_complete(
        self,
        requirement: str,
        *,
        request_id: str = "",
        max_tasks: int = 0,
        max_parallel: int = 0,
        skip_review: bool = False,
        approve_tasks: bool = False,
        timeout: Seconds | None = None,
        step_timeout: Seconds | None = None,
        retry: RetryPolicy | None = None,
        priority: Priority | int | str | None = None,
        labels: dict[str, str] | None = None,
        budget: Budget | None = None,
    ) -> StartResult:
        """The complete workflow: analyse -> tasks -> run each on an agent -> review -> summary. A budget
        (max_tokens, max_cost, max_llm_calls) fails it with BUDGET_EXCEEDED before a call beyond it. With
        approve_tasks the task list waits for approve / reject / edit (signal "approval") before the fan-out."""
        opts = workflows_pb2.CompleteWorkflowOptions(
            max_tasks=max_tasks,
            max_parallel=max_parallel,
            skip_review=skip_review,
            approve_tasks=approve_tasks,
            timeout=to_duration(timeout) if timeout is not None else None,
            step_timeout=to_duration(step_timeout) if step_timeout is not None else None,
        )
        if retry is not None:
            opts.retry.CopyFrom(retry_pb(retry))
        if budget is not None:
            opts.budget.CopyFrom(budget_pb(budget))
        req = workflows_pb2.ExecuteCompleteWorkflowRequest(
            requirement=requirement,
            request_id=new_request_id(request_id),
            options=opts,
            priority=Priority.of(priority).pb,
            labels=labels or {},
        )
        resp = call(self.stub.ExecuteCompleteWorkflow, req, timeout=self.timeout)
        return StartResult(execution_from_pb(resp.execution), resp.existing)

    # signals and approvals

    def signal(
        self, execution_id: str, name: str, payload: Any = None, *, request_id: str = "", sender: str = ""
    ) -> SignalResult:
        """Send a named signal; kept until a step waits for it. Idempotent by request_id."""
        req = workflows_pb2.SignalExecutionRequest(
            execution_id=execution_id, name=name, request_id=new_request_id(request_id), sender=sender
        )
        req.payload.CopyFrom(to_value(payload))
        resp = call(self.stub.SignalExecution, req, timeout=self.timeout)
        return SignalResult(_signal(resp.signal), resp.existing)

    def approve(
        self,
        execution_id: str,
        *,
        comment: str = "",
        by: str = "",
        signal: str = "approval",
        request_id: str = "",
    ) -> SignalResult:
        """Approve what an ApprovalStep shows; `by` names who decided (default: the caller's token role)."""
        return self._decide(execution_id, "approve", comment, by, signal, request_id)

    def reject(
        self,
        execution_id: str,
        *,
        comment: str = "",
        by: str = "",
        signal: str = "approval",
        request_id: str = "",
    ) -> SignalResult:
        return self._decide(execution_id, "reject", comment, by, signal, request_id)

    def edit(
        self,
        execution_id: str,
        data: Any,
        *,
        comment: str = "",
        by: str = "",
        signal: str = "approval",
        request_id: str = "",
    ) -> SignalResult:
        """Approve with changes: `data` replaces the data under review in the step's output."""
        return self._decide(execution_id, "edit", comment, by, signal, request_id, data)

    def _decide(
        self,
        execution_id: str,
        decision: str,
        comment: str,
        by: str,
        signal: str,
        request_id: str,
        data: Any = None,
    ) -> SignalResult:
        payload: dict[str, Any] = {"decision": decision, "comment": comment}
        if decision == "edit":
            payload["data"] = data
        return self.signal(execution_id, signal, payload, request_id=request_id, sender=by)

    def get(self, execution_id: str) -> Execution:
        req = workflows_pb2.GetExecutionRequest(execution_id=execution_id)
        return execution_from_pb(call(self.stub.GetExecution, req, timeout=self.timeout).execution)

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
        return [execution_from_pb(e) for e in resp.executions], resp.next_page_token

    def list(self, **filters: Any) -> Iterator[Execution]:
        """Executions newest first: status=, template_name=, created_after=, created_before=, include_steps=."""
        return pages(lambda tok: self.list_page(**filters, page_token=tok))

    def cancel(self, execution_id: str, reason: str = "") -> Execution:
        req = workflows_pb2.CancelExecutionRequest(execution_id=execution_id, reason=reason)
        return execution_from_pb(call(self.stub.CancelExecution, req, timeout=self.timeout).execution)

    def pause(self, execution_id: str, reason: str = "") -> Execution:
        req = workflows_pb2.PauseExecutionRequest(execution_id=execution_id, reason=reason)
        return execution_from_pb(call(self.stub.PauseExecution, req, timeout=self.timeout).execution)

    def resume(self, execution_id: str) -> Execution:
        req = workflows_pb2.ResumeExecutionRequest(execution_id=execution_id)
        return execution_from_pb(call(self.stub.ResumeExecution, req, timeout=self.timeout).execution)

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
        return self._follow(execution_id, from_sequence, include_execution, resume, timeout, deltas, False)

    def wait(self, execution_id: str, timeout: float | None = None) -> Execution:
        """Block until the execution ends (at most `timeout` s, else DeadlineExceededError); return it.

        Asks for the terminal event alone, which carries the final execution: one stream message, no
        GetExecution. A server without that option sends every event and no execution: then it is fetched."""
        final = None
        for ev in self._follow(execution_id, 0, False, True, timeout, False, True):
            final = ev.execution
        return final if final is not None else self.get(execution_id)

    def _follow(
        self,
        execution_id: str,
        from_sequence: int,
        include_execution: bool,
        resume: bool,
        timeout: float | None,
        deltas: bool,
        terminal_only: bool,
    ) -> Iterator[WorkflowEvent]:
        position = from_sequence
        deadline = None if timeout is None else time.monotonic() + timeout
        backoff = Reconnect(RECONNECT_TIMEOUT)
        while True:
            req = workflows_pb2.WatchExecutionRequest(
                execution_id=execution_id,
                from_sequence=position,
                include_execution=include_execution,
                max_batch=STREAM_BATCH,
                terminal_only=terminal_only,
            )
            try:
                left = None if deadline is None else max(deadline - time.monotonic(), 0.001)
                for batch in stream(self.stub.WatchExecution, req, timeout=left):
                    for resp in batch.updates or (batch,):  # a server without batching sends single events
                        ev = event_from_pb(resp.event)
                        position = ev.sequence + 1
                        backoff.progress()
                        if ev.type == DELTA_EVENT and not deltas:
                            continue
                        yield WorkflowEvent(
                            ev, execution_from_pb(resp.execution) if resp.HasField("execution") else None
                        )
                return
            except (ResourceExhaustedError, UnavailableError) as exc:
                nxt = exc.metadata.get("from_sequence")
                if not resume:
                    raise
                if nxt is not None:
                    position = int(nxt)
                    continue
                # Gone without a resume point (killed): continue after the last event delivered, on
                # whichever server the channel reaches now.
                delay = backoff.next_delay()
                if not isinstance(exc, UnavailableError) or delay is None:
                    raise
                time.sleep(delay)
