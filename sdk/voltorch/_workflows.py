"""client.workflows: templates, durable executions (start, run, get, list, cancel, pause, resume, watch) and the
headline `execute_complete(requirement)`."""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from voltorch.v1 import workflows_pb2, workflows_pb2_grpc

from ._events import Event, event_from_pb
from ._rpc import RECONNECT_TIMEOUT, STREAM_BATCH, Reconnect, call, new_request_id, pages, stream
from .errors import ResourceExhaustedError, UnavailableError, UnimplementedError
from .wire import (
    EXECUTION_STATUSES,
    Budget,
    CompleteOptions,
    Execution,
    Priority,
    RetryPolicy,
    Seconds,
    Signal,
    WorkflowTemplate,
    complete_options_pb,
    execution_from_pb,
    signal_from_pb,
    template_from_pb,
    template_pb,
    to_struct,
    to_timestamp,
    to_value,
)

DELTA_EVENT = "agent.output.delta"  # live text of a streaming agent, batched by the server


def _start_request(
    template_name: str,
    parameters: dict[str, Any] | None,
    version: int,
    request_id: str,
    priority: Priority | int | str | None,
    labels: dict[str, str] | None,
    correlation_id: str,
) -> workflows_pb2.StartExecutionRequest:
    return workflows_pb2.StartExecutionRequest(
        request_id=new_request_id(request_id),
        template_name=template_name,
        template_version=version,
        parameters=to_struct(parameters),
        priority=Priority.of(priority).pb,
        labels=labels or {},
        correlation_id=correlation_id,
    )


def _left(deadline: float | None) -> float | None:
    """The seconds left before a time.monotonic() deadline (None: no deadline); a little past it, not 0."""
    return None if deadline is None else max(deadline - time.monotonic(), 0.001)


# -- executions (their types and proto mapping: voltorch.wire) ---------------------------------------------


@dataclass(frozen=True)
class SignalResult:
    signal: Signal
    existing: bool  # the request_id matched an earlier signal: nothing was delivered again


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
        req = _start_request(template_name, parameters, version, request_id, priority, labels, correlation_id)
        resp = call(self.stub.StartExecution, req, timeout=self.timeout)
        return StartResult(execution_from_pb(resp.execution), resp.existing)

    def run(
        self,
        template_name: str,
        parameters: dict[str, Any] | None = None,
        *,
        version: int = 0,
        request_id: str = "",
        priority: Priority | int | str | None = None,
        labels: dict[str, str] | None = None,
        correlation_id: str = "",
        timeout: float | None = None,
    ) -> Execution:
        """Start an execution and wait for its end: start() then wait(), in one call (one round trip less).

        Returns the final execution, whatever its status (at most `timeout` s, else DeadlineExceededError).
        Its start errors are start()'s, an InvalidArgumentError's fields named under "start." (e.g.
        "start.parameters.n"; a server without RunExecution names them as for start()). A stream that
        breaks after the start is followed with wait(); a server without RunExecution gets start() and
        wait(), with the same request id."""
        start = _start_request(
            template_name, parameters, version, request_id, priority, labels, correlation_id
        )
        req = workflows_pb2.RunExecutionRequest(start=start, terminal_only=True, max_batch=STREAM_BATCH)
        deadline = None if timeout is None else time.monotonic() + timeout
        execution_id = ""
        messages = stream(self.stub.RunExecution, req, timeout=timeout)
        try:
            for msg in messages:
                if msg.HasField("start"):
                    execution_id = msg.start.execution.id
                for update in msg.updates:
                    if update.HasField("execution"):
                        final = execution_from_pb(update.execution)
                        if final.done:
                            return final
        except UnimplementedError:
            # run()'s timeout bounds this start too, not only the wait: the sooner of it and the client's.
            limit = min((t for t in (_left(deadline), self.timeout) if t is not None), default=None)
            execution_id = call(self.stub.StartExecution, start, timeout=limit).execution.id
        except (ResourceExhaustedError, UnavailableError):
            if not execution_id:  # before the start's answer: the channel has already retried it
                raise
        finally:
            messages.close()
        return self.wait(execution_id, timeout=_left(deadline))

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
        options = CompleteOptions(
            max_tasks=max_tasks,
            max_parallel=max_parallel,
            skip_review=skip_review,
            timeout=timeout,
            step_timeout=step_timeout,
            retry=retry,
            budget=budget,
            approve_tasks=approve_tasks,
        )
        req = workflows_pb2.ExecuteCompleteWorkflowRequest(
            requirement=requirement,
            request_id=new_request_id(request_id),
            options=complete_options_pb(options),
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
        return SignalResult(signal_from_pb(resp.signal), resp.existing)

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
        events = self._follow(execution_id, 0, False, True, timeout, False, True)
        try:
            for ev in events:
                final = ev.execution
                if final is not None and final.done:  # the result: the stream's end would add nothing
                    return final
        finally:
            events.close()
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
    ) -> Generator[WorkflowEvent, None, None]:
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
