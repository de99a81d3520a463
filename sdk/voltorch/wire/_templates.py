"""Workflow templates (parameters, steps of seven kinds, retry policies): their Python form and their one
proto mapping, used by the SDK (to register and read templates) and by the server (to read requests,
strictly, and to answer).

Read with `request=True` (the server), a message is checked as it is read: an unknown enum number or a
negative duration is a WireError naming the proto field, a zero duration counts as unset, an unset
predicate stays None (template validation names it), and fields only the server sets (builtin,
create_time) are ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from ..v1 import coordination_pb2, workflows_pb2
from ._conditions import Condition, condition_from_pb, condition_pb, enum_name, seconds_from_pb
from ._enums import COORDINATION_MODES, PARAMETER_TYPES
from ._errors import WireError
from ._values import (
    from_struct,
    from_value,
    to_datetime,
    to_duration,
    to_struct,
    to_timestamp,
    to_value,
)

Seconds = float | timedelta


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()  # ParameterSpec.default when the parameter has no default


@dataclass(frozen=True)
class ParameterSpec:
    """A template parameter. type: string, number, integer, boolean, list or object."""

    name: str
    type: str = "string"
    required: bool = False
    default: Any = UNSET  # leave unset for "no default"
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


@dataclass(frozen=True)
class WaitStep:
    """Wait for the named signal (client.workflows.signal); with a timeout the step completes with
    {"timed_out": true}. The output: {"signal", "timed_out", "payload", "signal_id", "sender"}."""

    signal: str
    timeout: Seconds | None = None


@dataclass(frozen=True)
class ApprovalStep:
    """Ask a person to approve, reject or edit `data` (a text template; one placeholder keeps its JSON).
    Decided by client.workflows.approve / reject / edit (signal `signal`, default "approval")."""

    prompt: str = ""
    data: str = ""
    signal: str = ""
    timeout: Seconds | None = None


@dataclass(frozen=True)
class SleepStep:
    """A durable timer: exactly one of `duration` (from the step's start) or `until` (a time)."""

    duration: Seconds | None = None
    until: datetime | None = None


StepKind = AgentTask | CoordinationStep | ConditionStep | FanOut | WaitStep | ApprovalStep | SleepStep


@dataclass(frozen=True)
class Step:
    id: str
    kind: StepKind
    name: str = ""
    depends_on: Sequence[str] = ()
    retry: RetryPolicy | None = None
    timeout: Seconds | None = None  # per attempt; None = 10 min; not for waits (their own timeout)
    allow_failure: bool = False
    start_after: Seconds | None = None  # once ready, wait this long (a durable timer) before starting


@dataclass(frozen=True)
class Budget:
    """Limits on what one execution may spend; 0 = no limit. Reaching one fails the execution with
    BUDGET_EXCEEDED before the next model call."""

    max_tokens: int = 0  # prompt + completion tokens
    max_cost: float = 0.0  # USD, priced by the server's llm_prices
    max_llm_calls: int = 0


class BudgetLike(Protocol):
    """What budget_pb reads of a budget (the SDK's Budget, or the server's)."""

    @property
    def max_tokens(self) -> int: ...
    @property
    def max_cost(self) -> float: ...
    @property
    def max_llm_calls(self) -> int: ...


def budget_pb(b: BudgetLike) -> workflows_pb2.Budget:
    return workflows_pb2.Budget(max_tokens=b.max_tokens, max_cost=b.max_cost, max_llm_calls=b.max_llm_calls)


def budget_from_pb(pb: workflows_pb2.Budget) -> Budget:
    return Budget(max_tokens=pb.max_tokens, max_cost=pb.max_cost, max_llm_calls=pb.max_llm_calls)


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
    budget: Budget | None = None  # limits of each execution; None = none


# -- Python -> proto ---------------------------------------------------------------------------------------


def _seconds(v: Seconds | None) -> Any:
    return to_duration(v) if v is not None else None


def retry_pb(r: RetryPolicy) -> workflows_pb2.RetryPolicy:
    return workflows_pb2.RetryPolicy(
        max_attempts=r.max_attempts,
        initial_backoff=_seconds(r.initial_backoff),
        backoff_multiplier=r.backoff_multiplier,
        max_backoff=_seconds(r.max_backoff),
        non_retryable_errors=list(r.non_retryable_errors),
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


def _step_pb(s: Step) -> workflows_pb2.StepSpec:
    pb = workflows_pb2.StepSpec(
        id=s.id,
        name=s.name,
        depends_on=list(s.depends_on),
        timeout=_seconds(s.timeout),
        allow_failure=s.allow_failure,
        start_after=_seconds(s.start_after),
    )
    if s.retry is not None:
        pb.retry.CopyFrom(retry_pb(s.retry))
    k = s.kind
    if isinstance(k, AgentTask):
        pb.agent_task.CopyFrom(_agent_task_pb(k))
    elif isinstance(k, CoordinationStep):
        modes = COORDINATION_MODES.numbers
        if k.mode not in modes:
            raise ValueError(f"unknown coordination mode {k.mode!r}; one of {', '.join(modes)}")
        pb.coordination.CopyFrom(
            workflows_pb2.CoordinationStep(
                mode=modes[k.mode],
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
    elif isinstance(k, WaitStep):
        pb.wait.CopyFrom(workflows_pb2.WaitStep(signal=k.signal, timeout=_seconds(k.timeout)))
    elif isinstance(k, ApprovalStep):
        pb.approval.CopyFrom(
            workflows_pb2.ApprovalStep(
                prompt=k.prompt, data=k.data, signal=k.signal, timeout=_seconds(k.timeout)
            )
        )
    elif isinstance(k, SleepStep):
        pb.sleep.CopyFrom(workflows_pb2.SleepStep(duration=_seconds(k.duration), until=to_timestamp(k.until)))
    else:
        raise TypeError(
            f"step {s.id!r}: kind must be AgentTask, CoordinationStep, ConditionStep, FanOut, WaitStep,"
            " ApprovalStep or SleepStep"
        )
    return pb


def _param_pb(p: ParameterSpec) -> workflows_pb2.ParameterSpec:
    types = PARAMETER_TYPES.numbers
    if p.type not in types:
        raise ValueError(f"parameter {p.name!r}: unknown type {p.type!r}; one of {', '.join(types)}")
    pb = workflows_pb2.ParameterSpec(
        name=p.name,
        type=types[p.type],
        required=p.required,
        pattern=p.pattern,
        enum_values=[to_value(v) for v in p.enum],
        description=p.description,
    )
    if p.default is not UNSET:
        pb.default_value.CopyFrom(to_value(p.default))
    if p.min is not None:
        pb.min = p.min
    if p.max is not None:
        pb.max = p.max
    return pb


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
        pb.default_retry.CopyFrom(retry_pb(t.default_retry))
    if t.budget is not None:
        pb.budget.CopyFrom(budget_pb(t.budget))
    return pb


# -- proto -> Python ---------------------------------------------------------------------------------------


def retry_from_pb(
    pb: workflows_pb2.RetryPolicy, field: str = "retry", *, request: bool = False
) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=pb.max_attempts,
        initial_backoff=seconds_from_pb(pb, "initial_backoff", f"{field}.initial_backoff", request=request),
        backoff_multiplier=pb.backoff_multiplier,
        max_backoff=seconds_from_pb(pb, "max_backoff", f"{field}.max_backoff", request=request),
        non_retryable_errors=tuple(pb.non_retryable_errors),
    )


def _agent_task(pb: workflows_pb2.AgentTaskStep) -> AgentTask:
    return AgentTask(
        task=pb.task,
        capabilities=tuple(pb.capabilities),
        agent_id=pb.agent_id,
        context=from_struct(pb.context) if pb.HasField("context") else None,
        json_output=pb.json_output,
        fallback_to_any_agent=pb.fallback_to_any_agent,
    )


def _predicate(pb: coordination_pb2.CoordinationCondition, request: bool) -> Condition | None:
    return condition_from_pb(pb) if pb.WhichOneof("predicate") or not request else None


def _kind(pb: workflows_pb2.StepSpec, field: str, request: bool) -> StepKind | None:
    which = pb.WhichOneof("kind")
    if which == "agent_task":
        return _agent_task(pb.agent_task)
    if which == "coordination":
        c = pb.coordination
        return CoordinationStep(
            task=c.task,
            mode=enum_name(
                COORDINATION_MODES.names,
                c.mode,
                f"{field}.coordination.mode",
                unspecified="sequential",
                request=request,
            ),
            source_agent_id=c.source_agent_id,
            target_agent_id=c.target_agent_id,
            agent_ids=tuple(c.agent_ids),
            capabilities=tuple(c.capabilities),
            condition=_predicate(c.condition, request) if c.HasField("condition") else None,
        )
    if which == "condition":
        cond = pb.condition
        predicate = _predicate(cond.predicate, request) if cond.HasField("predicate") or not request else None
        return ConditionStep(cond.source_step_id, predicate, tuple(cond.then_steps), tuple(cond.else_steps))  # type: ignore[arg-type]  # lenient read: may lack its predicate
    if which == "fan_out":
        f = pb.fan_out
        return FanOut(
            f.items_from_step_id,
            _agent_task(f.task),
            f.items_path,
            f.max_parallel,
            f.max_items,
            f.truncate_items,
            f.item_dependencies,
        )
    if which == "wait":
        return WaitStep(
            pb.wait.signal, seconds_from_pb(pb.wait, "timeout", f"{field}.wait.timeout", request=request)
        )
    if which == "approval":
        a = pb.approval
        return ApprovalStep(
            a.prompt,
            a.data,
            a.signal,
            seconds_from_pb(a, "timeout", f"{field}.approval.timeout", request=request),
        )
    if which == "sleep":
        z = pb.sleep
        return SleepStep(
            duration=seconds_from_pb(z, "duration", f"{field}.sleep.duration", request=request),
            until=to_datetime(z.until, z.HasField("until")),
        )
    return None


def _step(pb: workflows_pb2.StepSpec, field: str, request: bool) -> Step:
    return Step(
        id=pb.id,
        kind=_kind(pb, field, request),  # type: ignore[arg-type]  # lenient read: None when no kind is set
        name=pb.name,
        depends_on=tuple(pb.depends_on),
        retry=retry_from_pb(pb.retry, f"{field}.retry", request=request) if pb.HasField("retry") else None,
        timeout=seconds_from_pb(pb, "timeout", f"{field}.timeout", request=request),
        allow_failure=pb.allow_failure,
        start_after=seconds_from_pb(pb, "start_after", f"{field}.start_after", request=request),
    )


def _param(pb: workflows_pb2.ParameterSpec, field: str, request: bool) -> ParameterSpec:
    if request and pb.type and pb.type not in PARAMETER_TYPES.names:
        raise WireError(f"{field}.type", f"unknown parameter type {pb.type}", "ENUM_VALUE_INVALID")
    return ParameterSpec(
        name=pb.name,
        type=PARAMETER_TYPES.names.get(pb.type, "string"),
        required=pb.required,
        default=from_value(pb.default_value) if pb.HasField("default_value") else UNSET,
        min=pb.min if pb.HasField("min") else None,
        max=pb.max if pb.HasField("max") else None,
        pattern=pb.pattern,
        enum=tuple(from_value(v) for v in pb.enum_values),
        description=pb.description,
    )


def template_from_pb(
    pb: workflows_pb2.WorkflowTemplate, field: str = "template", *, request: bool = False
) -> WorkflowTemplate:
    return WorkflowTemplate(
        name=pb.name,
        # parameters before steps: with several problems, the first one named is the same as ever
        parameters=[_param(p, f"{field}.parameters[{i}]", request) for i, p in enumerate(pb.parameters)],
        steps=[_step(s, f"{field}.steps[{i}]", request) for i, s in enumerate(pb.steps)],
        description=pb.description,
        category=pb.category,
        default_retry=retry_from_pb(pb.default_retry, f"{field}.default_retry", request=request)
        if pb.HasField("default_retry")
        else None,
        timeout=seconds_from_pb(pb, "timeout", f"{field}.timeout", request=request),
        labels=dict(pb.labels),
        version=pb.version,
        builtin=pb.builtin and not request,
        create_time=None if request else to_datetime(pb.create_time, pb.HasField("create_time")),
        budget=budget_from_pb(pb.budget) if pb.HasField("budget") else None,
    )
