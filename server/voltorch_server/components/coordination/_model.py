"""The values of the coordination API: requests, coordinations, results, agents — frozen dataclasses —
and the pure rules on them (validation of names, conditions, output selection)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ...agents.base import NO_USAGE, TokenUsage, ToolSpec
from ...agents.llm import LlmSettings
from ...errors import InvalidArgument, NotFound
from ...json_encoders import encoder
from ...priority import Priority
from ..shared import PathError, parse_path, resolve


class CoordinationMode(StrEnum):
    SEQUENTIAL = "sequential"
    PARALLEL = "parallel"
    CONDITIONAL = "conditional"
    PIPELINE = "pipeline"


class CoordinationStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


class AgentKind(StrEnum):
    LLM = "llm"
    OFFLINE = "offline"
    REMOTE = "remote"
    FUNCTION = "function"


class AgentStatus(StrEnum):
    IDLE = "idle"
    BUSY = "busy"
    OFFLINE = "offline"
    ERROR = "error"


MODES = tuple(CoordinationMode)
STATUSES = tuple(CoordinationStatus)
TERMINAL = frozenset(
    {
        CoordinationStatus.COMPLETED,
        CoordinationStatus.FAILED,
        CoordinationStatus.CANCELLED,
        CoordinationStatus.TIMED_OUT,
    }
)
AGENT_KINDS = tuple(AgentKind)
AGENT_STATUSES = tuple(AgentStatus)

MAX_TASK_CHARS = 100_000
MAX_CONTEXT_BYTES = 1 << 20
MAX_OUTPUT_BYTES = 1 << 20
MAX_CAPABILITIES = 64
MAX_LABELS = 64
MAX_CONCURRENCY = 1000
MAX_TIMEOUT = 24 * 3600.0
MAX_AGENTS_PARALLEL = 32
MAX_AGENT_IDS = 64  # named participants; a pipeline may repeat them, so the registry does not bound it
DEFAULT_PARALLEL_AGENTS = 3
_NAME_RE = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")


@dataclass(frozen=True)
class CoordinationCondition:
    """A predicate on an agent's output: exactly one of contains / regex / json_path (with json_value)."""

    contains: str | None = None
    regex: str | None = None
    json_path: str | None = None  # JSON field equals: dotted path with [i] indexes; "" = the whole value
    json_value: Any = None
    negate: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "contains": self.contains,
            "regex": self.regex,
            "json_path": self.json_path,
            "json_value": self.json_value,
            "negate": self.negate,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> CoordinationCondition | None:
        return None if d is None else cls(**d)


@dataclass(frozen=True)
class CoordinationRequest:
    task: str
    mode: str = "sequential"  # "sequential" | "parallel" | "conditional" | "pipeline"
    source_agent_id: str = ""
    target_agent_id: str = ""
    agent_ids: tuple[str, ...] = ()
    required_capabilities: tuple[str, ...] = ()
    context: dict[str, Any] = field(default_factory=dict)
    priority: Priority = Priority.NORMAL
    timeout: float | None = None  # seconds, queueing included; None = config default
    condition: CoordinationCondition | None = None
    correlation_id: str = ""
    request_id: str = ""
    max_agents: int = 0  # PARALLEL with selection; 0 = 3
    traceparent: str = ""
    # Set by the workflow engine: shown to remote workers in TaskAssignment.
    execution_id: str = ""
    step_id: str = ""


@dataclass(frozen=True)
class TaskError:
    code: str
    message: str
    retryable: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "retryable": self.retryable}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> TaskError | None:
        return None if not d else cls(d["code"], d["message"], bool(d.get("retryable")))


@dataclass(frozen=True)
class AgentResult:
    agent_id: str
    position: int = 0
    task_id: str = ""
    attempts: int = 0
    output: str = ""
    structured_output: Any = None
    error: TaskError | None = None
    latency: float = 0.0
    usage: TokenUsage = NO_USAGE
    skipped: bool = False
    condition_result: bool | None = None
    start_time: float | None = None
    end_time: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and not self.skipped

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent_id": self.agent_id,
            "position": self.position,
            "task_id": self.task_id,
            "attempts": self.attempts,
            "output": self.output,
            "structured_output": self.structured_output,
            "error": self.error.to_dict() if self.error else None,
            "latency": self.latency,
            "usage": self.usage.to_dict(),
            "skipped": self.skipped,
            "condition_result": self.condition_result,
            "start_time": self.start_time,
            "end_time": self.end_time,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AgentResult:
        return cls(
            **{
                **d,
                "error": TaskError.from_dict(d.get("error")),
                "usage": TokenUsage.from_dict(d.get("usage")),
            }
        )


@dataclass(frozen=True)
class Candidate:
    agent_id: str
    score: float
    success_rate: float
    avg_latency: float
    current_load: int
    max_concurrency: int
    eligible: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Selection:
    selected_agent_ids: tuple[str, ...] = ()
    candidates: tuple[Candidate, ...] = ()
    explanation: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "selected_agent_ids": list(self.selected_agent_ids),
            "candidates": [c.to_dict() for c in self.candidates],
            "explanation": self.explanation,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Selection | None:
        if not d:
            return None
        return cls(
            tuple(d.get("selected_agent_ids", ())),
            tuple(Candidate(**c) for c in d.get("candidates", ())),
            d.get("explanation", ""),
        )


@dataclass(frozen=True)
class Coordination:
    id: str
    status: str  # queued | running | completed | failed | cancelled | timed_out
    mode: str
    task: str
    request_id: str = ""
    source_agent_id: str = ""
    target_agent_id: str = ""
    agent_ids: tuple[str, ...] = ()  # resolved participants in run order ("" = not yet selected)
    required_capabilities: tuple[str, ...] = ()
    context: dict[str, Any] = field(default_factory=dict)
    priority: Priority = Priority.NORMAL
    timeout: float = 0.0
    condition: CoordinationCondition | None = None
    correlation_id: str = ""
    trace_id: str = ""
    results: tuple[AgentResult, ...] = ()
    output: str = ""
    structured_output: Any = None
    error: TaskError | None = None
    selection: Selection | None = None
    queue_position: int = 0
    create_time: float = 0.0
    start_time: float | None = None
    end_time: float | None = None
    execution_id: str = ""
    step_id: str = ""

    @property
    def done(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True)
class AgentInfo:
    id: str
    name: str
    kind: str  # llm | offline | remote | function
    capabilities: tuple[str, ...]
    max_concurrency: int
    status: str  # idle | busy | offline | error
    current_load: int
    success_rate: float
    error_rate: float
    avg_latency: float
    tasks_completed: int
    tasks_failed: int
    llm: LlmSettings | None
    labels: dict[str, str]
    register_time: float
    last_seen_time: float | None
    last_error: TaskError | None
    tools: tuple[ToolSpec, ...] = ()


# -- validation ------------------------------------------------------------------------------------


def check_name(value: str, field_name: str, what: str = "an id") -> None:
    if not _NAME_RE.fullmatch(value or ""):
        raise InvalidArgument(
            field_name,
            f"{what} must be 1..128 characters of A-Z a-z 0-9 _ . : - (got {value!r})",
            reason="NAME_INVALID",
        )


def check_capabilities(caps: tuple[str, ...] | list[str], field_name: str) -> tuple[str, ...]:
    if isinstance(caps, str):
        raise InvalidArgument(
            field_name, "capabilities are a list of names, not one string", reason="NAME_INVALID"
        )
    if len(caps) > MAX_CAPABILITIES:
        raise InvalidArgument(field_name, f"at most {MAX_CAPABILITIES} capabilities (got {len(caps)})")
    out: list[str] = []
    for i, c in enumerate(caps):
        check_name(c, f"{field_name}[{i}]", "a capability")
        if c not in out:
            out.append(c)
    return tuple(out)


_CHECKED = encoder(separators=(",", ":"), allow_nan=False)  # one encoder, not one per call


def check_json(obj: Any, field_name: str, limit: int) -> str:
    try:
        raw = _CHECKED(obj)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(field_name, f"not JSON: {exc}", reason="VALUE_INVALID") from None
    if len(raw) > limit:  # ASCII (ensure_ascii): as many bytes as characters
        raise InvalidArgument(
            field_name, f"{len(raw)} bytes encoded; the limit is {limit}", reason="VALUE_TOO_LARGE"
        )
    return raw


def require_id(value: str, field_name: str) -> None:
    """An unset id is the caller's mistake (INVALID_ARGUMENT), not a missing agent or coordination."""
    if not value:
        raise InvalidArgument(field_name, "required", reason="FIELD_REQUIRED")


def agent_not_found(agent_id: str, field_name: str) -> NotFound:
    err = NotFound("agent", agent_id, f"{field_name}: agent {agent_id!r} is not registered")
    err.metadata["field"] = field_name
    return err


def check_condition(cond: CoordinationCondition, field_name: str = "condition") -> None:
    given = [n for n in ("contains", "regex", "json_path") if getattr(cond, n) is not None]
    if len(given) != 1:
        raise InvalidArgument(
            field_name, "set exactly one of contains, regex or json_field_equals", reason="CONDITION_INVALID"
        )
    if cond.regex is not None:
        if len(cond.regex) > 1000:
            raise InvalidArgument(
                f"{field_name}.regex", "at most 1000 characters", reason="CONDITION_INVALID"
            )
        try:
            re.compile(cond.regex)
        except re.error as exc:
            raise InvalidArgument(
                f"{field_name}.regex", f"does not compile: {exc}", reason="CONDITION_INVALID"
            ) from None
    if cond.json_path is not None:
        try:
            parse_path(cond.json_path)
        except PathError as exc:
            raise InvalidArgument(
                f"{field_name}.json_field_equals.path", str(exc), reason="CONDITION_INVALID"
            ) from None
        check_json(cond.json_value, f"{field_name}.json_field_equals.value", 1 << 16)


# -- conditions ------------------------------------------------------------------------------------


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def evaluate(cond: CoordinationCondition, output: str, structured: Any) -> bool:
    """Whether the condition holds on an agent's output (after negate)."""
    if cond.contains is not None:
        result = cond.contains in output
    elif cond.regex is not None:
        result = re.search(cond.regex, output) is not None
    else:
        found, value = structured is not None, structured
        if not found:
            try:
                found, value = True, json.loads(output)
            except ValueError:
                pass
        if found:
            found, value = resolve(value, cond.json_path or "")
        result = found and _json_equal(value, cond.json_value)
    return result != cond.negate
