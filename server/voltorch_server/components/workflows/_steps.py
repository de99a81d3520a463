"""What one step attempt does: an agent task or coordination run through the CoordinationEngine (request,
record the coordination id, wait, map the outcome), a condition evaluated on an earlier output, and the
element list of a fan-out. Lenient JSON parsing of agent output lives here too."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from ...agents.base import NO_USAGE, TokenUsage
from ...errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
    VoltorchError,
)
from ...frozen import made
from ...priority import Priority
from ..coordination import TERMINAL, CoordinationCondition, CoordinationRequest, TaskError
from ..shared import PathError, resolve

WAIT_SLICE = 1.0  # how often a waiting attempt notices a stopping server
TIMEOUT_GRACE = 2.0
IDLE_PAUSE = 0.2  # beyond the coordination's own deadline, before we give up on it ourselves


@dataclass(frozen=True)
class AgentCall:
    """A rendered agent task or coordination, ready to request."""

    task: str
    mode: str = "sequential"
    source_agent_id: str = ""
    target_agent_id: str = ""
    agent_ids: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()
    context: dict[str, Any] = field(default_factory=dict)
    condition: CoordinationCondition | None = None
    json_output: bool = False
    fallback_to_any_agent: bool = False


@dataclass(frozen=True)
class AttemptResult:
    output: str = ""
    structured: Any = None
    error: TaskError | None = None
    agent_id: str = ""
    coordination_id: str = ""
    usage: TokenUsage = NO_USAGE

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class AttemptContext:
    request_id: str  # idempotency key of the coordination: the same for a re-attached attempt
    correlation_id: str
    priority: Priority
    timeout: float
    traceparent: str
    execution_id: str
    step_id: str


def run_attempt(
    engine: Any,
    call: AgentCall,
    ctx: AttemptContext,
    *,
    known_coordination_id: str = "",
    on_coordination: Callable[[str], bool],
    stop: threading.Event,
) -> AttemptResult | None:
    """Run one attempt to its end; None when the server is stopping (the attempt resumes after restart).

    on_coordination(id) is called once the coordination exists (so it is checkpointed before we wait);
    returning False abandons the attempt (the step or execution was cancelled meanwhile).
    """
    deadline = time.monotonic() + ctx.timeout + TIMEOUT_GRACE
    cid = known_coordination_id
    while not cid:
        created = _request(engine, call, ctx)
        if isinstance(created, AttemptResult):
            return created
        cid = created
        # "": the coordination engine is stopped or restarting. Not the step's failure (that would use up
        # an attempt and start the step again): ask again until it is back, the server stops or time is up.
        if not cid and (stop.wait(IDLE_PAUSE) or time.monotonic() >= deadline):
            return None if stop.is_set() else _timed_out(ctx, "")
    if not on_coordination(cid):
        _cancel(engine, cid, "workflow step cancelled")
        return AttemptResult(error=TaskError("CANCELLED", "step cancelled"), coordination_id=cid)
    while True:
        if stop.is_set():
            return None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            _cancel(engine, cid, "workflow step timed out")
            return _timed_out(ctx, cid)
        began = time.monotonic()
        try:
            c = engine.wait(cid, min(remaining, WAIT_SLICE))
        except DeadlineExceeded:
            continue
        except Unavailable:  # the coordination engine is restarting
            stop.wait(IDLE_PAUSE)
            continue
        except NotFound:
            return AttemptResult(
                error=TaskError("COORDINATION_LOST", f"coordination {cid} no longer exists", True),
                coordination_id=cid,
            )
        if _status(c) in TERMINAL:
            return outcome(c, call)
        if time.monotonic() - began < IDLE_PAUSE / 4:
            stop.wait(IDLE_PAUSE)  # the engine answered at once without finishing (e.g. restarting)


def _timed_out(ctx: AttemptContext, cid: str) -> AttemptResult:
    return AttemptResult(
        error=TaskError("TIMEOUT", f"step attempt exceeded its timeout of {ctx.timeout:g}s", True),
        coordination_id=cid,
    )


def coordination_request(call: AgentCall, ctx: AttemptContext) -> CoordinationRequest:
    """The coordination an attempt asks for: CoordinationRequest(...) as its constructor makes it (every
    field, in order), without the frozen dataclass's __init__ (an object.__setattr__ per field)."""
    req = made(
        CoordinationRequest,
        task=call.task,
        mode=call.mode,
        source_agent_id=call.source_agent_id,
        target_agent_id=call.target_agent_id,
        agent_ids=call.agent_ids,
        required_capabilities=tuple(c for c in call.capabilities if c),
        context=call.context,
        priority=ctx.priority,
        timeout=ctx.timeout,
        condition=call.condition,
        correlation_id=ctx.correlation_id,
        request_id=ctx.request_id,
        max_agents=0,
        traceparent=ctx.traceparent,
        execution_id=ctx.execution_id,
        step_id=ctx.step_id,
    )
    return req


def _request(engine: Any, call: AgentCall, ctx: AttemptContext) -> str | AttemptResult:
    """The new (or, by request id, existing) coordination's id; "" while the engine is unavailable."""
    req = coordination_request(call, ctx)
    caps = req.required_capabilities
    try:
        return engine.request(req).id
    except Unavailable:
        return ""
    except (FailedPrecondition, InvalidArgument) as exc:
        # No agent has the capabilities (or a generated capability is not even a valid name): any agent will do.
        unusable = isinstance(exc, FailedPrecondition) or exc.violations[0].field.startswith(
            "required_capabilities"
        )
        if call.fallback_to_any_agent and caps and unusable:
            fallback = replace(req, required_capabilities=(), request_id=ctx.request_id + ":any")
            try:
                return engine.request(fallback).id
            except Unavailable:
                return ""
            except VoltorchError as exc2:
                return AttemptResult(error=_request_error(exc2))
        return AttemptResult(error=_request_error(exc))
    except VoltorchError as exc:
        return AttemptResult(error=_request_error(exc))


def _request_error(exc: VoltorchError) -> TaskError:
    if isinstance(exc, FailedPrecondition):
        return TaskError("NO_CAPABLE_AGENT", exc.message, True)
    if isinstance(exc, NotFound):
        return TaskError("AGENT_NOT_FOUND", exc.message, False)
    if isinstance(exc, InvalidArgument):
        return TaskError("INVALID_TASK", exc.message, False)
    return TaskError("COORDINATION_ERROR", exc.message, True)


def _cancel(engine: Any, cid: str, reason: str) -> None:
    try:
        engine.cancel(cid, reason)
    except VoltorchError:
        pass  # already terminal or gone


def _status(c: Any) -> str:
    s = getattr(c, "status", "")
    return getattr(s, "value", s)


def outcome(c: Any, call: AgentCall) -> AttemptResult:
    """Map a terminal coordination to the attempt's result."""
    status = _status(c)
    results = list(getattr(c, "results", ()) or ())
    agent_id = ""
    for r in reversed(results):  # a loop: a generator left unfinished is closed by an exception thrown in
        if getattr(r, "agent_id", ""):
            agent_id = r.agent_id
            break
    usage = sum((r.usage for r in results if isinstance(getattr(r, "usage", None), TokenUsage)), NO_USAGE)
    if status == "completed":
        structured = c.structured_output
        if call.json_output and structured is None:
            ok, structured = parse_json_output(c.output or "")
            if not ok:
                preview = (c.output or "").strip().replace("\n", " ")[:200]
                return AttemptResult(
                    output=c.output or "",
                    error=TaskError(
                        "INVALID_OUTPUT", f"agent {agent_id} did not return JSON: {preview!r}", True
                    ),
                    agent_id=agent_id,
                    coordination_id=c.id,
                    usage=usage,
                )
        # AttemptResult(...) without its frozen __init__: every field, in order
        return made(
            AttemptResult,
            output=c.output or "",
            structured=structured,
            error=None,
            agent_id=agent_id,
            coordination_id=c.id,
            usage=usage,
        )
    err = getattr(c, "error", None)
    if status == "timed_out":
        error = TaskError("TIMEOUT", getattr(err, "message", "") or "coordination timed out", True)
    elif err is not None:
        error = TaskError(err.code or "AGENT_ERROR", err.message, bool(err.retryable))
    elif status == "cancelled":
        error = TaskError("CANCELLED", "coordination cancelled", False)
    else:
        error = TaskError("AGENT_ERROR", f"coordination ended {status}", True)
    return AttemptResult(error=error, agent_id=agent_id, coordination_id=c.id, usage=usage)


# -- JSON output ----------------------------------------------------------------------------------------

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n(.*?)```", re.S)


def parse_json_output(text: str) -> tuple[bool, Any]:
    """(True, value) for text that is JSON, or holds one JSON value in a code fence or amid prose."""
    text = text.strip()
    if not text:
        return False, None
    candidates = [text, *(m.group(1).strip() for m in _FENCE.finditer(text))]
    for c in candidates:
        try:
            return True, json.loads(c)
        except ValueError:
            pass
    decoder = json.JSONDecoder()
    for i, ch in enumerate(text):
        if ch in "{[":
            try:
                value, _ = decoder.raw_decode(text, i)
            except ValueError:
                continue
            if isinstance(value, dict | list):
                return True, value
    return False, None


# -- conditions and fan-out items -------------------------------------------------------------------------


def items_of(output: str, structured: Any, path: str) -> tuple[list[Any] | None, str]:
    """The JSON list at path in a step's output, or (None, why)."""
    value = structured
    if value is None:
        ok, value = parse_json_output(output)
        if not ok:
            return None, "the source step's output is not JSON"
    try:
        found, got = resolve(value, path)
    except PathError as exc:
        return None, str(exc)
    if not found:
        return None, f"the source step's output has no {path!r}"
    if not isinstance(got, list):
        return None, f"{path or 'the output'} is not a list"
    return got, ""


def item_order(items: list[Any]) -> tuple[dict[int, list[int]] | None, str]:
    """For item_dependencies: index -> indexes it waits for, or (None, why) on a cycle."""
    ids: dict[str, int] = {}
    for i, it in enumerate(items):
        if isinstance(it, dict) and isinstance(it.get("id"), str | int):
            ids.setdefault(str(it["id"]), i)
    deps: dict[int, list[int]] = {}
    for i, it in enumerate(items):
        raw = it.get("depends_on") if isinstance(it, dict) else None
        wanted = raw if isinstance(raw, list) else []
        deps[i] = sorted({ids[str(d)] for d in wanted if str(d) in ids and ids[str(d)] != i})
    state: dict[int, int] = {}
    for n in deps:
        if state.get(n) is None and not _acyclic(n, deps, state):
            return None, "the elements' depends_on form a cycle"
    return deps, ""


def _acyclic(n: int, deps: dict[int, list[int]], state: dict[int, int]) -> bool:
    """Depth-first from n: False if it meets a node on its own path (1 = on the path, 2 = done)."""
    state[n] = 1
    for d in deps[n]:
        if state.get(d) == 1 or (state.get(d) is None and not _acyclic(d, deps, state)):
            return False
    state[n] = 2
    return True
