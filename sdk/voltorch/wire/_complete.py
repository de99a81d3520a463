"""ExecuteCompleteWorkflow's options on the wire: CompleteOptions, written by the SDK and read by the server
(request=True: a negative duration is a WireError naming the field, a zero one counts as unset)."""

from __future__ import annotations

from dataclasses import dataclass

from ..v1 import workflows_pb2
from ._conditions import seconds_from_pb
from ._templates import Budget, RetryPolicy, Seconds, budget_from_pb, budget_pb, retry_from_pb, retry_pb
from ._values import to_duration


@dataclass(frozen=True)
class CompleteOptions:
    max_tasks: int = 0  # most tasks the planner may produce; 0 = 8
    max_parallel: int = 0  # tasks running at once; 0 = 4
    skip_review: bool = False
    timeout: Seconds | None = None  # whole execution; None = the template's (1 h)
    step_timeout: Seconds | None = None  # per step attempt; None = the template's
    retry: RetryPolicy | None = None  # None = the template's default
    budget: Budget | None = None  # None = no limit
    approve_tasks: bool = False  # a person approves (or edits) the task list before the fan-out


def complete_options_pb(o: CompleteOptions) -> workflows_pb2.CompleteWorkflowOptions:
    return workflows_pb2.CompleteWorkflowOptions(
        max_tasks=o.max_tasks,
        max_parallel=o.max_parallel,
        skip_review=o.skip_review,
        timeout=None if o.timeout is None else to_duration(o.timeout),
        step_timeout=None if o.step_timeout is None else to_duration(o.step_timeout),
        retry=None if o.retry is None else retry_pb(o.retry),
        budget=None if o.budget is None else budget_pb(o.budget),
        approve_tasks=o.approve_tasks,
    )


def complete_options_from_pb(
    m: workflows_pb2.CompleteWorkflowOptions, field: str = "options", *, request: bool = False
) -> CompleteOptions:
    return CompleteOptions(
        max_tasks=m.max_tasks,
        max_parallel=m.max_parallel,
        skip_review=m.skip_review,
        timeout=seconds_from_pb(m, "timeout", f"{field}.timeout", request=request),
        step_timeout=seconds_from_pb(m, "step_timeout", f"{field}.step_timeout", request=request),
        retry=retry_from_pb(m.retry, f"{field}.retry", request=request) if m.HasField("retry") else None,
        budget=budget_from_pb(m.budget) if m.HasField("budget") else None,
        approve_tasks=m.approve_tasks,
    )
