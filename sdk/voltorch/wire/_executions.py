"""Workflow executions on the wire: Execution, StepExecution, WaitingFor and Signal, both directions.

The SDK reads answers into these types; the server writes its own read models with the same `*_pb`
functions, passing them as they are (the `...Like` protocols below): times may be datetimes or seconds
since 1970 (to_timestamp takes both, to the nanosecond), sequences tuples or lists, so GetExecution and
ListExecutions pay for no copy of an execution before it is written. The one field the server names
differently, a signal's consumed_by_step, is given to signal_pb apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from ..v1 import workflows_pb2
from ._conditions import (
    TaskError,
    TaskErrorLike,
    TokenUsage,
    TokenUsageLike,
    task_error_from_pb,
    task_error_pb,
    usage_from_pb,
    usage_pb,
)
from ._enums import EXECUTION_STATUSES, STEP_STATUSES, WAIT_KINDS
from ._priority import Priority
from ._templates import Budget, BudgetLike, budget_from_pb, budget_pb
from ._values import from_struct, from_value, to_datetime, to_struct, to_timestamp, to_value

TERMINAL = frozenset({"completed", "failed", "cancelled", "timed_out"})

Time = datetime | float | None  # what the writers take: the SDK's datetimes, the server's epoch seconds


# -- the SDK's types --------------------------------------------------------------------------------------


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


# -- what the writers read (the SDK's types above, or the server's read models) ---------------------------


class StepExecutionLike(Protocol):
    @property
    def step_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def attempts(self) -> int: ...
    @property
    def output(self) -> str: ...
    @property
    def structured_output(self) -> Any: ...
    @property
    def error(self) -> TaskErrorLike | None: ...
    @property
    def agent_id(self) -> str: ...
    @property
    def coordination_id(self) -> str: ...
    @property
    def start_time(self) -> Time: ...
    @property
    def end_time(self) -> Time: ...
    @property
    def next_retry_time(self) -> Time: ...
    @property
    def children(self) -> Sequence[StepExecutionLike]: ...
    @property
    def usage(self) -> TokenUsageLike: ...


class WaitingForLike(Protocol):
    @property
    def step_id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def signal(self) -> str: ...
    @property
    def prompt(self) -> str: ...
    @property
    def data(self) -> Any: ...
    @property
    def deadline(self) -> Time: ...


class SignalLike(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def execution_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def payload(self) -> Any: ...
    @property
    def request_id(self) -> str: ...
    @property
    def sender(self) -> str: ...
    @property
    def create_time(self) -> Time: ...


class ExecutionLike(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def request_id(self) -> str: ...
    @property
    def template_name(self) -> str: ...
    @property
    def template_version(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def parameters(self) -> dict[str, Any]: ...
    @property
    def steps(self) -> Sequence[StepExecutionLike]: ...
    @property
    def result(self) -> Any: ...
    @property
    def error(self) -> TaskErrorLike | None: ...
    @property
    def priority(self) -> Priority: ...
    @property
    def labels(self) -> Mapping[str, str]: ...
    @property
    def correlation_id(self) -> str: ...
    @property
    def trace_id(self) -> str: ...
    @property
    def create_time(self) -> Time: ...
    @property
    def start_time(self) -> Time: ...
    @property
    def end_time(self) -> Time: ...
    @property
    def update_time(self) -> Time: ...
    @property
    def usage(self) -> TokenUsageLike: ...
    @property
    def budget(self) -> BudgetLike | None: ...
    @property
    def waiting(self) -> Sequence[WaitingForLike]: ...
    @property
    def replica_id(self) -> str: ...
    @property
    def epoch(self) -> int: ...


# -- writers -----------------------------------------------------------------------------------------------


def step_execution_pb(s: StepExecutionLike) -> workflows_pb2.StepExecution:
    pb = workflows_pb2.StepExecution(
        step_id=s.step_id,
        name=s.name,
        status=STEP_STATUSES.numbers.get(s.status, workflows_pb2.STEP_STATUS_UNSPECIFIED),
        attempts=s.attempts,
        output=s.output,
        error=task_error_pb(s.error),
        agent_id=s.agent_id,
        coordination_id=s.coordination_id,
        start_time=to_timestamp(s.start_time),
        end_time=to_timestamp(s.end_time),
        next_retry_time=to_timestamp(s.next_retry_time),
        children=[step_execution_pb(c) for c in s.children],
        usage=usage_pb(s.usage),
    )
    if s.structured_output is not None:
        pb.structured_output.CopyFrom(to_value(s.structured_output))
    return pb


def waiting_pb(w: WaitingForLike) -> workflows_pb2.WaitingFor:
    pb = workflows_pb2.WaitingFor(
        step_id=w.step_id,
        kind=WAIT_KINDS.numbers[w.kind],
        signal=w.signal,
        prompt=w.prompt,
        deadline=to_timestamp(w.deadline),
    )
    if w.data is not None:
        pb.data.CopyFrom(to_value(w.data))
    return pb


def signal_pb(s: SignalLike, consumed_by_step: str) -> workflows_pb2.Signal:
    """`consumed_by_step`: the SDK's s.consumed_by_step, the server's s.consumed_by."""
    return workflows_pb2.Signal(
        id=s.id,
        execution_id=s.execution_id,
        name=s.name,
        payload=to_value(s.payload),
        request_id=s.request_id,
        sender=s.sender,
        create_time=to_timestamp(s.create_time),
        consumed_by_step=consumed_by_step,
    )


def execution_pb(e: ExecutionLike) -> workflows_pb2.Execution:
    pb = workflows_pb2.Execution(
        id=e.id,
        request_id=e.request_id,
        template_name=e.template_name,
        template_version=e.template_version,
        status=EXECUTION_STATUSES.numbers[e.status],
        parameters=to_struct(e.parameters),
        steps=[step_execution_pb(s) for s in e.steps],
        error=task_error_pb(e.error),
        priority=e.priority.pb,
        labels=e.labels,
        correlation_id=e.correlation_id,
        trace_id=e.trace_id,
        create_time=to_timestamp(e.create_time),
        start_time=to_timestamp(e.start_time),
        end_time=to_timestamp(e.end_time),
        update_time=to_timestamp(e.update_time),
        waiting=[waiting_pb(w) for w in e.waiting],
        replica_id=e.replica_id,
        epoch=e.epoch,
    )
    if e.result is not None:
        pb.result.CopyFrom(to_value(e.result))
    pb.usage.CopyFrom(usage_pb(e.usage))
    if e.budget is not None:
        pb.budget.CopyFrom(budget_pb(e.budget))
    return pb


# -- readers -----------------------------------------------------------------------------------------------


def step_execution_from_pb(pb: workflows_pb2.StepExecution) -> StepExecution:
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
        children=[step_execution_from_pb(c) for c in pb.children],
        usage=usage_from_pb(pb.usage),
    )


def waiting_from_pb(pb: workflows_pb2.WaitingFor) -> WaitingFor:
    return WaitingFor(
        step_id=pb.step_id,
        kind=WAIT_KINDS.names.get(pb.kind, "unspecified"),
        signal=pb.signal,
        prompt=pb.prompt,
        data=from_value(pb.data) if pb.HasField("data") else None,
        deadline=to_datetime(pb.deadline, pb.HasField("deadline")),
    )


def signal_from_pb(pb: workflows_pb2.Signal) -> Signal:
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


def execution_from_pb(pb: workflows_pb2.Execution) -> Execution:
    return Execution(
        id=pb.id,
        request_id=pb.request_id,
        template_name=pb.template_name,
        template_version=pb.template_version,
        status=EXECUTION_STATUSES.names.get(pb.status, "unspecified"),
        parameters=from_struct(pb.parameters),
        steps=[step_execution_from_pb(s) for s in pb.steps],
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
        waiting=[waiting_from_pb(w) for w in pb.waiting],
        replica_id=pb.replica_id,
        epoch=pb.epoch,
    )
