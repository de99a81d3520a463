"""Structural validation of a template before it is stored: every problem is reported with its field path
(e.g. "template.steps[2].depends_on"), all at once, and nothing is written when there is one."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from ....errors import FieldViolation, InvalidArgument
from ...coordination import MAX_AGENT_IDS, MODES, CoordinationCondition, check_condition
from ...shared import PathError, parse_path
from . import _dag
from ._model import (
    INTEGER,
    LIST,
    NUMBER,
    PARAM_TYPES,
    STRING,
    AgentTaskSpec,
    ApprovalSpec,
    Budget,
    ConditionSpec,
    CoordinationSpec,
    FanOutSpec,
    ParameterSpec,
    RetryPolicy,
    SleepSpec,
    Template,
    WaitSpec,
    type_error,
)
from ._placeholders import Ref, refs_in, refs_in_value

NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")
PARAM_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
STEP_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
AGENT_RE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
SIGNAL_RE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
MAX_STEPS = 500
MAX_TASK_CHARS = 100_000
MAX_LABELS = 64
MAX_STEP_TIMEOUT = 24 * 3600.0  # a step attempt is one coordination, whose deadline is capped there
MAX_WAIT = 366 * 24 * 3600.0  # waits and timers: at most a year


class Problems:
    def __init__(self, prefix: str, *, reason: str):
        self.prefix = prefix
        self.reason = reason
        self.items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self.items.append(FieldViolation(f"{self.prefix}{field}", description))

    def raise_if_any(self) -> None:
        if self.items:
            first, *more = self.items
            raise InvalidArgument(first.field, first.description, more=more, reason=self.reason)


def validate_template(t: Template, prefix: str = "template.") -> None:
    """Raise InvalidArgument listing every problem of t (field paths start with prefix)."""
    p = Problems(prefix, reason="TEMPLATE_INVALID")
    if not NAME_RE.fullmatch(t.name or ""):
        p.add("name", "a template name is 1..128 of [a-z0-9._-], starting with a letter or digit")
    if t.version < 0:
        p.add("version", "must not be negative")
    if len(t.description) > 4096:
        p.add("description", "at most 4096 characters")
    if len(t.category) > 128:
        p.add("category", "at most 128 characters")
    _labels(p, t.labels, "labels")
    if t.timeout is not None and t.timeout <= 0:
        p.add("timeout", "must be positive")
    if t.default_retry:
        check_retry(p, t.default_retry, "default_retry")
    if t.budget is not None:
        check_budget(p, t.budget, "budget")
    params = _parameters(p, t.parameters)
    _steps(p, t, params)
    p.raise_if_any()


def _labels(p: Problems, labels: dict[str, str], field: str) -> None:
    if len(labels) > MAX_LABELS:
        p.add(field, f"at most {MAX_LABELS} labels")
    for k, v in labels.items():
        if not k or len(k) > 128 or len(v) > 1024:
            p.add(f"{field}[{k}]", "label keys are 1..128 characters, values at most 1024")


def check_budget(p: Problems, b: Budget, path: str) -> None:
    """Each limit is 0 (none) or positive."""
    for name in ("max_tokens", "max_cost", "max_llm_calls"):
        value = getattr(b, name)
        if not math.isfinite(value) or value < 0:
            p.add(f"{path}.{name}", f"must be 0 (no limit) or positive, got {value}")


def check_retry(p: Problems, r: RetryPolicy, field: str) -> None:
    if not 0 <= r.max_attempts <= 100:
        p.add(f"{field}.max_attempts", "must be 0..100 (0 = inherit)")
    m = r.backoff_multiplier
    if m and (not math.isfinite(m) or m < 1):
        p.add(f"{field}.backoff_multiplier", "must be >= 1 and finite (0 = 2.0)")
    for name in ("initial_backoff", "max_backoff"):
        v = getattr(r, name)
        if v is not None and not 0 <= v <= MAX_WAIT:  # a retry's time is a Timestamp: year <= 9999
            p.add(f"{field}.{name}", "must not be negative (and at most a year)")
    for i, code in enumerate(r.non_retryable_errors):
        if not re.fullmatch(r"[A-Z][A-Z0-9_]{0,63}", code):
            p.add(f"{field}.non_retryable_errors[{i}]", f"{code!r} is not an UPPER_SNAKE error code")


def _parameters(p: Problems, specs: tuple[ParameterSpec, ...]) -> set[str]:
    names: set[str] = set()
    for i, s in enumerate(specs):
        f = f"parameters[{i}]"
        if not PARAM_RE.fullmatch(s.name or ""):
            p.add(f"{f}.name", "a parameter name is [A-Za-z_][A-Za-z0-9_]{0,63}")
        elif s.name in names:
            p.add(f"{f}.name", f"duplicate parameter {s.name!r}")
        names.add(s.name)
        if s.type not in PARAM_TYPES:
            p.add(f"{f}.type", f"unknown type {s.type!r}")
            continue
        if s.required and s.has_default:
            p.add(f"{f}.default_value", "a required parameter must not have a default")
        if (s.min is not None or s.max is not None) and s.type not in (NUMBER, INTEGER, STRING, LIST):
            p.add(f"{f}.min", f"min/max do not apply to {s.type} parameters")
        for bound in ("min", "max"):
            if getattr(s, bound) is not None and not math.isfinite(getattr(s, bound)):
                p.add(f"{f}.{bound}", "must be finite")
        if s.min is not None and s.max is not None and s.min > s.max:
            p.add(f"{f}.max", "max must be >= min")
        if s.pattern:
            if s.type != STRING:
                p.add(f"{f}.pattern", "pattern applies to string parameters only")
            else:
                try:
                    re.compile(s.pattern)
                except re.error as exc:
                    p.add(f"{f}.pattern", f"does not compile: {exc}")
                    continue
        bare = ParameterSpec(name=s.name, type=s.type)
        for j, e in enumerate(s.enum):
            why = type_error(bare, e)
            if why:
                p.add(f"{f}.enum_values[{j}]", why)
        if s.has_default and s.default is not None:
            why = type_error(s, s.default)
            if why:
                p.add(f"{f}.default_value", f"default {why}")
    return names


def _steps(p: Problems, t: Template, params: set[str]) -> None:
    if not 1 <= len(t.steps) <= MAX_STEPS:
        p.add("steps", f"a template has 1..{MAX_STEPS} steps (got {len(t.steps)})")
        return
    ids: dict[str, int] = {}
    for i, s in enumerate(t.steps):
        if not STEP_RE.fullmatch(s.id or ""):
            p.add(f"steps[{i}].id", "a step id is [A-Za-z_][A-Za-z0-9_-]{0,63}")
        elif s.id in ids:
            p.add(f"steps[{i}].id", f"duplicate step id {s.id!r} (also steps[{ids[s.id]}])")
        else:
            ids[s.id] = i
    for i, s in enumerate(t.steps):
        seen: set[str] = set()
        for j, d in enumerate(s.depends_on):
            f = f"steps[{i}].depends_on[{j}]"
            if d == s.id:
                p.add(f, "a step cannot depend on itself")
            elif d not in ids:
                p.add(f, f"unknown step {d!r}")
            elif d in seen:
                p.add(f, f"{d!r} is listed twice")
            seen.add(d)
        if s.timeout is not None and not 0 < s.timeout <= MAX_STEP_TIMEOUT:
            p.add(f"steps[{i}].timeout", f"must be positive and at most {MAX_STEP_TIMEOUT:.0f} s (24 h)")
        if s.retry:
            check_retry(p, s.retry, f"steps[{i}].retry")
        if s.start_after is not None and not 0 <= s.start_after <= MAX_WAIT:
            p.add(f"steps[{i}].start_after", "must not be negative (and at most a year)")
        if len(s.name) > 256:
            p.add(f"steps[{i}].name", "at most 256 characters")
        if isinstance(s.kind, ConditionSpec):
            _branches(p, s.kind, s.id, ids, i)
    if p.items:
        return  # the graph checks below need consistent ids
    graph = _dag.build(t.steps)
    cycle = _dag.find_cycle(graph)
    if cycle:
        first = ids[cycle[0]]
        p.add(f"steps[{first}].depends_on", "dependency cycle: " + " -> ".join(cycle))
        return
    for i, s in enumerate(t.steps):
        ctx = _StepCtx(p, f"steps[{i}]", params, graph.ancestors(s.id), ids)
        kind = s.kind
        own = _OWN_LIMIT.get(type(kind))
        if own and s.timeout is not None:  # never applied: the run would wait on past it
            ctx.add("timeout", f"bounds an agent's attempt; a wait has none: set its {own}")
        if kind is None:
            p.add(
                f"steps[{i}]",
                "a step needs one of agent_task, coordination, condition, fan_out, wait, approval, sleep",
            )
        elif isinstance(kind, AgentTaskSpec):
            ctx.agent_task(kind, "agent_task", in_fan_out=False)
        elif isinstance(kind, CoordinationSpec):
            ctx.coordination(kind)
        elif isinstance(kind, ConditionSpec):
            ctx.ancestor(kind.source_step_id, "condition.source_step_id")
            _predicate(p, kind.predicate, f"steps[{i}].condition.predicate")
        elif isinstance(kind, FanOutSpec):
            ctx.fan_out(kind)
        elif isinstance(kind, WaitSpec):
            ctx.signal(kind.signal, "wait.signal", required=True)
            ctx.wait_timeout(kind.timeout, "wait.timeout")
        elif isinstance(kind, ApprovalSpec):
            ctx.signal(kind.signal, "approval.signal", required=False)
            ctx.wait_timeout(kind.timeout, "approval.timeout")
            ctx.text(kind.prompt, "approval.prompt", item=False)
            ctx.text(kind.data, "approval.data", item=False)
        elif isinstance(kind, SleepSpec):
            ctx.sleep(kind)


_OWN_LIMIT = {WaitSpec: "wait.timeout", ApprovalSpec: "approval.timeout", SleepSpec: "sleep.duration"}


def _branches(p: Problems, c: ConditionSpec, own: str, ids: dict[str, int], i: int) -> None:
    both = set(c.then_steps) & set(c.else_steps)
    for branch, targets in (("then_steps", c.then_steps), ("else_steps", c.else_steps)):
        for j, target in enumerate(targets):
            f = f"steps[{i}].condition.{branch}[{j}]"
            if target == own:
                p.add(f, "a condition cannot branch to itself")
            elif target not in ids:
                p.add(f, f"unknown step {target!r}")
            elif target in both and branch == "else_steps":
                p.add(f, f"{target!r} is in both then_steps and else_steps")


def _predicate(p: Problems, pred: CoordinationCondition | None, field: str) -> None:
    if pred is None:
        p.add(field, "a predicate is required")
        return
    try:
        check_condition(pred, field)
    except InvalidArgument as exc:
        for v in exc.violations:
            p.add(v.field, v.description)


class _StepCtx:
    """Checks of one step's kind, with what its templates may refer to."""

    def __init__(self, p: Problems, base: str, params: set[str], ancestors: set[str], ids: dict[str, int]):
        self.p, self.base, self.params, self.ancestors, self.ids = p, base, params, ancestors, ids

    def add(self, field: str, description: str) -> None:
        self.p.add(f"{self.base}.{field}", description)

    def ancestor(self, step_id: str, field: str) -> None:
        if step_id not in self.ids:
            self.add(field, f"unknown step {step_id!r}")
        elif step_id not in self.ancestors:
            self.add(field, f"step {step_id!r} must be among this step's (transitive) dependencies")

    def text(self, value: str, field: str, *, item: bool, required: bool = False) -> None:
        if required and not value.strip():
            self.add(field, "required")
        if len(value) > MAX_TASK_CHARS:
            self.add(field, f"at most {MAX_TASK_CHARS} characters")
        try:
            refs = list(refs_in(value))
        except ValueError as exc:
            self.add(field, str(exc))
            return
        self._refs(refs, field, item)

    def value(self, value: Any, field: str, *, item: bool) -> None:
        try:
            json.dumps(value, allow_nan=False)
        except ValueError as exc:
            self.add(field, f"not JSON: {exc}")
        try:
            refs = list(refs_in_value(value))
        except ValueError as exc:
            self.add(field, str(exc))
            return
        self._refs(refs, field, item)

    def _refs(self, refs: list[Ref], field: str, item: bool) -> None:
        for r in refs:
            if r.kind == "param" and r.name not in self.params:
                self.add(field, f"{{{{{r.name}}}}} refers to an undeclared parameter")
            elif r.kind == "step" and r.name not in self.ancestors:
                self.add(field, f"steps.{r.name} must be among this step's (transitive) dependencies")
            elif r.kind in ("item", "item_index") and not item:
                self.add(field, "{{item}} is only available inside a fan_out task")

    def agent_id(self, value: str, field: str, *, item: bool) -> None:
        if "{{" in value:
            self.text(value, field, item=item)
        elif value and not AGENT_RE.fullmatch(value):
            self.add(field, f"{value!r} is not a valid agent id")

    def agent_task(self, a: AgentTaskSpec, field: str, *, in_fan_out: bool) -> None:
        if bool(a.agent_id) == bool(a.capabilities):
            self.add(field, "set exactly one of agent_id or capabilities")
        self.agent_id(a.agent_id, f"{field}.agent_id", item=in_fan_out)
        for j, cap in enumerate(a.capabilities):
            self.agent_id(cap, f"{field}.capabilities[{j}]", item=in_fan_out)
        self.text(a.task, f"{field}.task", item=in_fan_out, required=True)
        if a.context is not None:
            self.value(a.context, f"{field}.context", item=in_fan_out)

    def signal(self, name: str, field: str, *, required: bool) -> None:
        if (name or required) and not SIGNAL_RE.fullmatch(name):
            self.add(field, "a signal name is 1..128 of [A-Za-z0-9_.:-]")

    def wait_timeout(self, timeout: float | None, field: str) -> None:
        if timeout is not None and not 0 < timeout <= MAX_WAIT:
            self.add(field, "must be positive and at most a year")

    def sleep(self, s: SleepSpec) -> None:
        if (s.duration is None) == (s.until is None):
            self.add("sleep", "set exactly one of duration or until")
        elif s.duration is not None and not 0 <= s.duration <= MAX_WAIT:
            self.add("sleep.duration", "must not be negative (and at most a year)")

    def coordination(self, c: CoordinationSpec) -> None:
        f = "coordination"
        if c.mode not in MODES:
            self.add(f"{f}.mode", f"unknown mode {c.mode!r}; one of {', '.join(MODES)}")
        self.text(c.task, f"{f}.task", item=False, required=True)
        for name in ("source_agent_id", "target_agent_id"):
            self.agent_id(getattr(c, name), f"{f}.{name}", item=False)
        if len(c.agent_ids) > MAX_AGENT_IDS:
            self.add(f"{f}.agent_ids", f"at most {MAX_AGENT_IDS} agents")
        for j, a in enumerate(c.agent_ids):
            self.agent_id(a, f"{f}.agent_ids[{j}]", item=False)
        for j, cap in enumerate(c.capabilities):
            self.agent_id(cap, f"{f}.capabilities[{j}]", item=False)
        if c.mode in ("sequential", "conditional") and c.agent_ids:
            self.add(f"{f}.agent_ids", f"{c.mode} coordinations take source/target, not agent_ids")
        if c.mode == "conditional":
            if not c.source_agent_id:
                self.add(f"{f}.source_agent_id", "a conditional coordination needs a source agent")
            _predicate(self.p, c.condition, f"{self.base}.{f}.condition")
        elif c.condition is not None:
            self.add(f"{f}.condition", "a condition applies to conditional coordinations only")
        if c.mode == "pipeline" and len(c.agent_ids) + bool(c.source_agent_id) + bool(c.target_agent_id) < 2:
            self.add(f"{f}.agent_ids", "a pipeline needs at least two agents")

    def fan_out(self, fo: FanOutSpec) -> None:
        self.ancestor(fo.items_from_step_id, "fan_out.items_from_step_id")
        try:
            parse_path(fo.items_path)
        except PathError as exc:
            self.add("fan_out.items_path", str(exc))
        if fo.max_parallel < 0:
            self.add("fan_out.max_parallel", "must not be negative")
        if fo.max_items < 0:
            self.add("fan_out.max_items", "must not be negative")
        self.agent_task(fo.task, "fan_out.task", in_fan_out=True)
