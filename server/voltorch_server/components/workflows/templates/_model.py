"""Workflow templates: the definition types, their JSON form for storage, and parameter validation.

A template is immutable once registered (a change is a new version), so executions can refer to it and a
restarted server runs exactly what was started. Structural validation lives in `_check.py`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from dataclasses import dataclass, field, replace
from typing import Any

from ....errors import FieldViolation, InvalidArgument
from ...coordination import CoordinationCondition

STRING, NUMBER, INTEGER, BOOLEAN, LIST, OBJECT = "string", "number", "integer", "boolean", "list", "object"
PARAM_TYPES = (STRING, NUMBER, INTEGER, BOOLEAN, LIST, OBJECT)

DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_INITIAL_BACKOFF = 1.0
DEFAULT_MULTIPLIER = 2.0
DEFAULT_MAX_BACKOFF = 60.0
DEFAULT_STEP_TIMEOUT = 600.0
DEFAULT_WORKFLOW_TIMEOUT = 3600.0
DEFAULT_FAN_OUT_PARALLEL = 4
MAX_FAN_OUT_PARALLEL = 64
DEFAULT_MAX_ITEMS = 1000


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    type: str = STRING
    required: bool = False
    default: Any = None
    has_default: bool = False
    min: float | None = None
    max: float | None = None
    pattern: str = ""
    enum: tuple[Any, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class RetryPolicy:
    """Unset fields (0 / None) inherit: step -> template default_retry -> built-in defaults."""

    max_attempts: int = 0
    initial_backoff: float | None = None
    backoff_multiplier: float = 0.0
    max_backoff: float | None = None
    non_retryable_errors: tuple[str, ...] = ()

    def over(self, base: RetryPolicy | None) -> RetryPolicy:
        """This policy with its unset fields taken from base."""
        if base is None:
            return self
        return RetryPolicy(
            self.max_attempts or base.max_attempts,
            self.initial_backoff if self.initial_backoff is not None else base.initial_backoff,
            self.backoff_multiplier or base.backoff_multiplier,
            self.max_backoff if self.max_backoff is not None else base.max_backoff,
            tuple(dict.fromkeys((*self.non_retryable_errors, *base.non_retryable_errors))),
        )

    def delay(self, failed_attempts: int) -> float:
        """Backoff before attempt failed_attempts + 1: min(initial * multiplier^(n-1), max)."""
        initial = DEFAULT_INITIAL_BACKOFF if self.initial_backoff is None else self.initial_backoff
        cap = DEFAULT_MAX_BACKOFF if self.max_backoff is None else self.max_backoff
        mult = self.backoff_multiplier or DEFAULT_MULTIPLIER
        return min(initial * mult ** max(failed_attempts - 1, 0), cap)

    @property
    def attempts(self) -> int:
        return self.max_attempts or DEFAULT_MAX_ATTEMPTS


@dataclass(frozen=True)
class AgentTaskSpec:
    task: str
    agent_id: str = ""
    capabilities: tuple[str, ...] = ()
    context: dict[str, Any] | None = None
    json_output: bool = False
    fallback_to_any_agent: bool = False


@dataclass(frozen=True)
class CoordinationSpec:
    task: str
    mode: str = "sequential"
    source_agent_id: str = ""
    target_agent_id: str = ""
    agent_ids: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()
    condition: CoordinationCondition | None = None


@dataclass(frozen=True)
class ConditionSpec:
    source_step_id: str
    predicate: CoordinationCondition
    then_steps: tuple[str, ...] = ()
    else_steps: tuple[str, ...] = ()


@dataclass(frozen=True)
class FanOutSpec:
    items_from_step_id: str
    task: AgentTaskSpec
    items_path: str = ""
    max_parallel: int = 0
    max_items: int = 0
    truncate_items: bool = False
    item_dependencies: bool = False

    @property
    def parallel(self) -> int:
        return min(self.max_parallel or DEFAULT_FAN_OUT_PARALLEL, MAX_FAN_OUT_PARALLEL)

    @property
    def item_limit(self) -> int:
        return self.max_items or DEFAULT_MAX_ITEMS


DEFAULT_APPROVAL_SIGNAL = "approval"


@dataclass(frozen=True)
class WaitSpec:
    """Wait for a named signal; with a timeout the step completes saying it timed out."""

    signal: str
    timeout: float | None = None


@dataclass(frozen=True)
class ApprovalSpec:
    """A wait for a person's decision (approve / reject / edit) on rendered data."""

    prompt: str = ""
    data: str = ""
    signal: str = ""
    timeout: float | None = None

    @property
    def signal_name(self) -> str:
        return self.signal or DEFAULT_APPROVAL_SIGNAL


@dataclass(frozen=True)
class SleepSpec:
    """A durable timer: a duration from the step's start, or until a wall-clock time (epoch seconds)."""

    duration: float | None = None
    until: float | None = None


StepKind = AgentTaskSpec | CoordinationSpec | ConditionSpec | FanOutSpec | WaitSpec | ApprovalSpec | SleepSpec
WAITS = (WaitSpec, ApprovalSpec)


@dataclass(frozen=True)
class StepSpec:
    id: str
    kind: StepKind | None
    name: str = ""
    depends_on: tuple[str, ...] = ()
    retry: RetryPolicy | None = None
    timeout: float | None = None
    allow_failure: bool = False
    start_after: float | None = None

    @property
    def display_name(self) -> str:
        return self.name or self.id


@dataclass(frozen=True)
class Budget:
    """Limits on what one execution may spend; 0 = no limit."""

    max_tokens: int = 0
    max_cost: float = 0.0
    max_llm_calls: int = 0


@dataclass(frozen=True)
class Template:
    name: str
    steps: tuple[StepSpec, ...]
    version: int = 0
    description: str = ""
    category: str = ""
    parameters: tuple[ParameterSpec, ...] = ()
    default_retry: RetryPolicy | None = None
    timeout: float | None = None
    labels: dict[str, str] = field(default_factory=dict)
    builtin: bool = False
    create_time: float | None = None
    budget: Budget | None = None

    def step(self, step_id: str) -> StepSpec:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)

    def retry_for(self, step: StepSpec) -> RetryPolicy:
        base = self.default_retry or RetryPolicy()
        return step.retry.over(base) if step.retry else base

    @property
    def run_timeout(self) -> float:
        return self.timeout or DEFAULT_WORKFLOW_TIMEOUT

    def definition_digest(self) -> str:
        """Identity of the definition (name + content, not version/builtin/create_time)."""
        d = to_dict(self)
        for k in ("version", "builtin", "create_time"):
            d.pop(k, None)
        return hashlib.sha256(json.dumps(d, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# -- JSON form ------------------------------------------------------------------------------------------

_KIND_KEYS = {
    AgentTaskSpec: "agent_task",
    CoordinationSpec: "coordination",
    ConditionSpec: "condition",
    FanOutSpec: "fan_out",
    WaitSpec: "wait",
    ApprovalSpec: "approval",
    SleepSpec: "sleep",
}


def _plain(obj: Any) -> Any:
    if isinstance(obj, tuple | list):
        return [_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if hasattr(obj, "__dataclass_fields__"):
        return {k: _plain(getattr(obj, k)) for k in obj.__dataclass_fields__}
    return obj


def to_dict(t: Template) -> dict[str, Any]:
    d = _plain(t)
    d["steps"] = [_step_dict(s) for s in t.steps]
    if t.budget is None:  # templates stored before budgets keep their digest
        del d["budget"]
    return d


def _step_dict(s: StepSpec) -> dict[str, Any]:
    d = _plain(s)
    d["kind"] = {_KIND_KEYS[type(s.kind)]: _plain(s.kind)} if s.kind is not None else None
    return d


def _pred(d: dict | None) -> CoordinationCondition | None:
    return CoordinationCondition(**d) if d else None


def _retry(d: dict | None) -> RetryPolicy | None:
    if not d:
        return None
    return RetryPolicy(**{**d, "non_retryable_errors": tuple(d.get("non_retryable_errors", ()))})


def _agent_task(d: dict) -> AgentTaskSpec:
    return AgentTaskSpec(**{**d, "capabilities": tuple(d.get("capabilities", ()))})


def _kind(d: dict | None) -> StepKind | None:
    if not d:
        return None
    ((key, v),) = d.items()
    if key == "agent_task":
        return _agent_task(v)
    if key == "coordination":
        return CoordinationSpec(
            **{
                **v,
                "agent_ids": tuple(v.get("agent_ids", ())),
                "capabilities": tuple(v.get("capabilities", ())),
                "condition": _pred(v.get("condition")),
            }
        )
    if key == "condition":
        return ConditionSpec(
            source_step_id=v["source_step_id"],
            predicate=_pred(v["predicate"]) or CoordinationCondition(),
            then_steps=tuple(v.get("then_steps", ())),
            else_steps=tuple(v.get("else_steps", ())),
        )
    if key == "wait":
        return WaitSpec(**v)
    if key == "approval":
        return ApprovalSpec(**v)
    if key == "sleep":
        return SleepSpec(**v)
    return FanOutSpec(**{**v, "task": _agent_task(v["task"])})


def from_dict(d: dict[str, Any]) -> Template:
    return Template(
        name=d["name"],
        version=d.get("version", 0),
        description=d.get("description", ""),
        category=d.get("category", ""),
        parameters=tuple(
            ParameterSpec(**{**p, "enum": tuple(p.get("enum", ()))}) for p in d.get("parameters", ())
        ),
        steps=tuple(
            StepSpec(
                id=s["id"],
                kind=_kind(s.get("kind")),
                name=s.get("name", ""),
                depends_on=tuple(s.get("depends_on", ())),
                retry=_retry(s.get("retry")),
                timeout=s.get("timeout"),
                allow_failure=s.get("allow_failure", False),
                start_after=s.get("start_after"),
            )
            for s in d["steps"]
        ),
        default_retry=_retry(d.get("default_retry")),
        timeout=d.get("timeout"),
        labels=dict(d.get("labels") or {}),
        builtin=d.get("builtin", False),
        create_time=d.get("create_time"),
        budget=Budget(**d["budget"]) if d.get("budget") else None,
    )


def dumps(t: Template) -> str:
    return json.dumps(to_dict(t), separators=(",", ":"), sort_keys=True)


@functools.lru_cache(maxsize=256)
def loads(raw: str) -> Template:
    """Parse a stored definition (cached: templates are immutable, and every run of one shares it)."""
    return from_dict(json.loads(raw))


def with_version(t: Template, version: int, create_time: float, builtin: bool) -> Template:
    return replace(t, version=version, create_time=create_time, builtin=builtin)


# -- parameter values -------------------------------------------------------------------------------------


def type_error(spec: ParameterSpec, value: Any) -> str | None:
    """Why value does not fit spec (type, bounds, pattern, enum), or None when it does."""
    t = spec.type
    ok = {
        STRING: isinstance(value, str),
        NUMBER: isinstance(value, int | float) and not isinstance(value, bool),
        INTEGER: isinstance(value, int | float) and not isinstance(value, bool) and float(value).is_integer(),
        BOOLEAN: isinstance(value, bool),
        LIST: isinstance(value, list),
        OBJECT: isinstance(value, dict),
    }[t]
    if not ok:
        return f"must be {'an' if t in (INTEGER, OBJECT) else 'a'} {t}, got {_json_type(value)}"
    why = unstorable(value)
    if why:
        return why
    size = None
    if t in (NUMBER, INTEGER):
        size, what = value, "value"
    elif t in (STRING, LIST):
        size, what = len(value), "length"
    if size is not None:
        if spec.min is not None and size < spec.min:
            return f"{what} {size} is below the minimum {_num(spec.min)}"
        if spec.max is not None and size > spec.max:
            return f"{what} {size} is above the maximum {_num(spec.max)}"
    if spec.pattern and t == STRING and not re.fullmatch(spec.pattern, value):
        return f"does not match the pattern {spec.pattern!r}"
    if spec.enum and not any(_json_equal(value, e) for e in spec.enum):
        return f"must be one of {json.dumps(list(spec.enum))}"
    return None


def unstorable(value: Any) -> str | None:
    """Why a JSON value cannot be kept as it is: a NUL (rendered into a task, it would reach a text column
    PostgreSQL refuses) or a NaN/Infinity (not JSON), at any depth."""
    if isinstance(value, str):
        return "must not contain a NUL character" if "\x00" in value else None
    if isinstance(value, float):
        return None if math.isfinite(value) else "must be finite (JSON has no NaN or Infinity)"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        why = unstorable(k) or unstorable(v)
        if why:
            return why
    return None


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int | float):
        return "a number"
    if isinstance(v, str):
        return "a string"
    return "a list" if isinstance(v, list) else "an object"


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def apply_parameters(specs: tuple[ParameterSpec, ...], values: dict[str, Any]) -> dict[str, Any]:
    """Validated parameters with defaults applied; INVALID_ARGUMENT naming 'parameters.<name>'."""
    problems: list[FieldViolation] = []
    known = {s.name: s for s in specs}
    for name in values:
        if name not in known:
            hint = f"; known: {', '.join(sorted(known))}" if known else "; the template takes none"
            problems.append(FieldViolation(f"parameters.{name}", f"unknown parameter{hint}"))
    out: dict[str, Any] = {}
    for spec in specs:
        if spec.name in values:
            value = values[spec.name]
            if spec.type == INTEGER and isinstance(value, float) and value.is_integer():
                value = int(value)
            why = type_error(spec, value)
            if why:
                problems.append(FieldViolation(f"parameters.{spec.name}", why))
            out[spec.name] = value
        elif spec.has_default:
            out[spec.name] = spec.default
        elif spec.required:
            problems.append(FieldViolation(f"parameters.{spec.name}", "required parameter is missing"))
    if problems:
        raise InvalidArgument(
            problems[0].field, problems[0].description, more=problems[1:], reason="PARAMETERS_INVALID"
        )
    return out
